//! The distributor: validates a push, groups its entries by partition and
//! proposes one batch per partition, answering only once every partition of
//! the request has committed.
//!
//! PERFORMANCE-CRITICAL PATH: every push goes through [`Distributor::push`].
//!
//! Phases of a push: decode ([`decode`]) → merge stream objects with the same
//! labels → validate labels and entries (Loki's rules) → route each stream to
//! its partition ([`crate::ring`]) → propose every partition's batch
//! concurrently, retrying a leader change with the same request id → combine
//! the outcomes into Loki's answer.

pub mod decode;
pub mod levels;
pub mod otlp;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use balsa_storage::Entry;

use crate::error_code::{Coded, ErrorCode};
use crate::ingester::client::IngesterClient;
use crate::ingester::command::{PushBatch, PushOutcome, RequestId, StreamBatch, MAX_PROPOSAL_BYTES, SESSION_TTL_NS};
use crate::limits::Limits;
use crate::overrides::Overrides;
use crate::metrics::Metrics;
use prometheus::IntCounterVec;
use balsa_logql::labels::LabelSet;
use crate::rate::RateLimiter;
use crate::ring::Ring;
use crate::validation::{self, grouped, Reason, MISSING_STREAMS};
pub use decode::{decode_body, BodyLimits, DecodedStream};

/// Why a push was not (entirely) accepted.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// 422: the request held no stream at all.
    #[error("{MISSING_STREAMS}")]
    NoStreams,
    /// 400: some or all entries were refused; the valid ones are stored.
    #[error("{0}")]
    Rejected(String),
    /// 429: over the tenant's or a stream's rate, or the stream limit.
    #[error("{0}")]
    RateLimited(String),
    /// 503: a partition could not commit; nothing is acknowledged for it.
    #[error("{0}")]
    Unavailable(String),
}

impl Coded for PushError {
    fn code(&self) -> ErrorCode {
        match self {
            PushError::NoStreams => ErrorCode::Unprocessable,
            PushError::Rejected(_) => ErrorCode::BadRequest,
            PushError::RateLimited(_) => ErrorCode::RateLimited,
            PushError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}

/// Counts of a fully accepted push.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushSummary {
    pub accepted: u64,
    pub duplicates: u64,
}

/// What the distributor counts, per tenant.
struct DistributorMetrics {
    lines_received: IntCounterVec,
    bytes_received: IntCounterVec,
    /// By reason too: Loki's names, which dashboards graph.
    discarded_samples: IntCounterVec,
    discarded_bytes: IntCounterVec,
    duplicate_lines: IntCounterVec,
}

/// Routes pushes to partitions.
pub struct Distributor {
    ingesters: Arc<IngesterClient>,
    overrides: Arc<Overrides>,
    too_far_behind_window: i64,
    chunk_target_raw_size: u64,
    metrics: DistributorMetrics,
    tenant_rates: RateLimiter<String>,
    stream_rates: RateLimiter<(String, LabelSet)>,
}

/// A size as Loki's `flagext.ByteSize` prints it: `3MB`, `512KB`, `100B`.
fn byte_size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}GB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KB", n >> 10),
        n => format!("{n}B"),
    }
}

impl Distributor {
    pub fn new(
        ingesters: Arc<IngesterClient>,
        overrides: Arc<Overrides>,
        max_chunk_age: Duration,
        chunk_target_raw_size: u64,
        metrics: &Metrics,
    ) -> Self {
        let metrics = DistributorMetrics {
            lines_received: metrics.counter_vec("loki_distributor_lines_received_total", "Log lines received, by tenant.", &["tenant"]),
            bytes_received: metrics.counter_vec("loki_distributor_bytes_received_total", "Bytes of log lines received, by tenant.", &["tenant"]),
            discarded_samples: metrics.counter_vec("loki_discarded_samples_total", "Entries refused, by reason and tenant.", &["reason", "tenant"]),
            discarded_bytes: metrics.counter_vec("loki_discarded_bytes_total", "Bytes of entries refused, by reason and tenant.", &["reason", "tenant"]),
            duplicate_lines: metrics.counter_vec("balsa_ingester_duplicate_lines_total", "Entries dropped as duplicates of stored ones.", &["tenant"]),
        };
        Self {
            ingesters,
            overrides,
            too_far_behind_window: (max_chunk_age / 2).as_nanos() as i64,
            chunk_target_raw_size,
            metrics,
            tenant_rates: RateLimiter::default(),
            stream_rates: RateLimiter::default(),
        }
    }

    /// The limits in force for `tenant` (defaults with its overrides).
    pub fn limits(&self, tenant: &str) -> Arc<crate::limits::Limits> {
        self.overrides.get(tenant)
    }

    /// Validates and stores `streams` for `tenant`. `Ok` means every entry
    /// is committed (or was a duplicate of a stored one).
    #[tracing::instrument(level = "info", skip_all, fields(tenant = tenant, streams = streams.len()))]
    pub async fn push(&self, tenant: &str, streams: Vec<DecodedStream>) -> Result<PushSummary, PushError> {
        if streams.is_empty() {
            return Err(PushError::NoStreams);
        }
        let ring = self.ingesters.ring();
        if ring.partitions.is_empty() {
            return Err(PushError::Unavailable("the ring is not ready: no partitions received from the controller yet".into()));
        }
        let partitions = ring.partitions.len() as u32;
        let limits = self.overrides.get(tenant);
        let plan = plan_push(&limits, &ring.ring(), tenant, balsa_logql::time::now_ns(), streams);
        self.metrics.lines_received.with_label_values(&[tenant]).inc_by(plan.received.0);
        self.metrics.bytes_received.with_label_values(&[tenant]).inc_by(plan.received.1);
        let mut errors: Vec<String> = Vec::new();
        for r in plan.refused {
            self.discard(tenant, r.reason, r.lines, r.bytes);
            errors.push(r.message);
        }
        let mut by_partition = plan.by_partition;
        // Rate limits on what passed validation: the tenant's (whole request,
        // 429), then each stream's (that stream, 429).
        let clock = std::time::Instant::now();
        let (lines, bytes) = by_partition.values().flatten().fold((0u64, 0u64), |(l, b), s| {
            (l + s.entries.len() as u64, b + s.entries.iter().map(|e| e.size() as u64).sum::<u64>())
        });
        if lines > 0 {
            let share = if limits.ingestion_rate_strategy == "global" { self.healthy_distributors() as f64 } else { 1.0 };
            let rate = limits.ingestion_rate_mb * 1e6 / share;
            let burst = limits.ingestion_burst_size_mb * 1e6;
            if !self.tenant_rates.allow(&tenant.to_string(), bytes as f64, rate, burst, clock) {
                self.discard(tenant, Reason::RateLimited, lines, bytes);
                return Err(PushError::RateLimited(format!(
                    "ingestion rate limit exceeded for user {tenant} (limit: {} bytes/sec) while attempting to ingest '{lines}' lines totaling '{bytes}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased",
                    rate as u64
                )));
            }
        }
        let mut limited: Vec<String> = Vec::new();
        let stream_rate = limits.per_stream_rate_limit.0;
        if stream_rate > 0 {
            for streams in by_partition.values_mut() {
                streams.retain(|s| {
                    let b: u64 = s.entries.iter().map(|e| e.size() as u64).sum();
                    let key = (tenant.to_string(), s.labels.clone());
                    let burst = limits.per_stream_rate_limit_burst.0.max(stream_rate) as f64;
                    if self.stream_rates.allow(&key, b as f64, stream_rate as f64, burst, clock) {
                        return true;
                    }
                    self.discard(tenant, Reason::PerStreamRateLimit, s.entries.len() as u64, b);
                    limited.push(format!(
                        "Per stream rate limit exceeded (limit: {}/sec) while attempting to ingest for stream '{}' totaling {}, consider splitting a stream via additional labels or contact your Loki administrator to see if the limit can be increased",
                        byte_size(stream_rate),
                        s.labels,
                        byte_size(b)
                    ));
                    false
                });
            }
        }
        let max_streams = match limits.max_global_streams_per_user as u64 {
            0 => 0,
            n => n.div_ceil(u64::from(partitions)),
        };
        let proposals = by_partition.into_iter().filter(|(_, s)| !s.is_empty()).map(|(p, streams)| {
            let batch = PushBatch {
                request_id: RequestId::of(&streams),
                now: 0,
                too_far_behind_window: self.too_far_behind_window,
                chunk_target_raw_size: self.chunk_target_raw_size,
                max_streams_per_tenant: max_streams,
                session_ttl: SESSION_TTL_NS,
                streams,
            };
            // Partitions in parallel; one partition's parts in order, so
            // a stream's entries arrive as they were sent.
            async move {
                let mut outcomes = Vec::new();
                for part in batch.split(MAX_PROPOSAL_BYTES) {
                    outcomes.push(self.propose(p, part).await?);
                }
                Ok::<_, PushError>(outcomes)
            }
        });
        let outcomes = futures::future::join_all(proposals).await;
        let mut summary = PushSummary::default();
        let mut ingester_errors = Vec::new();
        for o in outcomes.into_iter().map(|o| o.map(Vec::into_iter)).collect::<Result<Vec<_>, _>>()?.into_iter().flatten() {
            summary.accepted += o.accepted;
            summary.duplicates += o.duplicates;
            if o.duplicates > 0 {
                self.metrics.duplicate_lines.with_label_values(&[tenant]).inc_by(o.duplicates);
            }
            for r in o.rejected {
                self.discard(tenant, Reason::TooFarBehind, r.ignored as u64, r.ignored_bytes);
                ingester_errors.push(r.message());
            }
            for s in o.stream_limited {
                self.discard(tenant, Reason::StreamLimit, s.entries, s.bytes);
                limited.push(format!(
                    "maximum active stream limit exceeded when trying to create stream {}, reduce the number of active streams (reduce labels or reduce label values), or contact your Loki administrator to see if the limit can be increased, user: '{tenant}'",
                    s.labels
                ));
            }
        }
        if !limited.is_empty() {
            return Err(PushError::RateLimited(grouped(&limited)));
        }
        if !ingester_errors.is_empty() {
            return Err(PushError::Rejected(ingester_errors.join("\n")));
        }
        if !errors.is_empty() {
            return Err(PushError::Rejected(grouped(&errors)));
        }
        Ok(summary)
    }

    /// Distributors sharing a tenant's `global` rate. One process runs one
    /// distributor; the cluster's ring will count the healthy ones.
    fn healthy_distributors(&self) -> usize {
        1
    }

    fn discard(&self, tenant: &str, reason: Reason, lines: u64, bytes: u64) {
        self.metrics.discarded_samples.with_label_values(&[reason.as_str(), tenant]).inc_by(lines);
        self.metrics.discarded_bytes.with_label_values(&[reason.as_str(), tenant]).inc_by(bytes);
    }

    /// Proposes to a partition's leader (retries, with the same request
    /// id, are the router's).
    async fn propose(&self, p: u32, batch: PushBatch) -> Result<PushOutcome, PushError> {
        self.ingesters.push(p, &batch).await.map_err(|e| PushError::Unavailable(e.to_string()))
    }
}

/// What a push comes to before rate limits and I/O: its valid entries by
/// partition, and what validation refused.
#[derive(Debug, Default)]
struct PushPlan {
    by_partition: HashMap<u32, Vec<StreamBatch>>,
    refused: Vec<Refusal>,
    /// Lines and bytes received (valid or not).
    received: (u64, u64),
}

/// Entries validation refused: why, how many, and Loki's message.
#[derive(Debug)]
struct Refusal {
    reason: Reason,
    lines: u64,
    bytes: u64,
    message: String,
}

/// Decides a push of `tenant` at `now` under `limits`: stream objects with
/// equal labels joined, `service_name` discovered, each stream's labels and
/// each entry validated (a refused entry does not refuse its stream's
/// others), levels detected, each stream routed to its partition.
fn plan_push(limits: &Limits, ring: &Ring, tenant: &str, now: i64, streams: Vec<DecodedStream>) -> PushPlan {
    let mut plan = PushPlan::default();
    let detect_levels = limits.discover_log_levels && limits.allow_structured_metadata;
    for (mut labels, entries) in merge_same_labels(streams) {
        labels.discover_service_name(&limits.discover_service_name);
        let lines = entries.len() as u64;
        let bytes: u64 = entries.iter().map(|e| e.size() as u64).sum();
        plan.received = (plan.received.0 + lines, plan.received.1 + bytes);
        if let Err(r) = validation::validate_labels(limits, &labels) {
            plan.refused.push(Refusal { reason: r.reason, lines, bytes, message: r.message });
            continue;
        }
        let mut valid = Vec::with_capacity(entries.len());
        for mut e in entries {
            match validation::validate_entry(limits, now, &labels, &mut e) {
                Ok(()) => {
                    if detect_levels {
                        levels::detect(&labels, &limits.log_level_fields, limits.log_level_from_json_max_depth, &mut e);
                    }
                    valid.push(e)
                }
                Err(r) => plan.refused.push(Refusal { reason: r.reason, lines: 1, bytes: e.size() as u64, message: r.message }),
            }
        }
        if !valid.is_empty() {
            let p = ring.partition_for(tenant, &labels);
            plan.by_partition.entry(p).or_default().push(StreamBatch { tenant: tenant.to_string(), labels, entries: valid });
        }
    }
    plan
}

/// Joins stream objects with equal labels (clients may split one stream
/// over several objects of a push), keeping first-seen order.
fn merge_same_labels(streams: Vec<DecodedStream>) -> Vec<(balsa_logql::labels::LabelSet, Vec<Entry>)> {
    let mut out: Vec<(balsa_logql::labels::LabelSet, Vec<Entry>)> = Vec::new();
    let mut index: HashMap<balsa_logql::labels::LabelSet, usize> = HashMap::new();
    for s in streams {
        if s.entries.is_empty() {
            continue;
        }
        match index.get(&s.labels) {
            Some(&i) => out[i].1.extend(s.entries),
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push((s.labels, s.entries));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;
    const DAY: i64 = 86_400_000_000_000;

    fn stream(labels: &str, entries: &[(i64, &str)]) -> DecodedStream {
        let labels = if labels.is_empty() { LabelSet::default() } else { LabelSet::parse(labels).unwrap() };
        DecodedStream { labels, entries: entries.iter().map(|(t, l)| Entry::new(*t, *l)).collect() }
    }

    fn batches(plan: &PushPlan) -> Vec<(u32, &StreamBatch)> {
        let mut out: Vec<(u32, &StreamBatch)> = plan.by_partition.iter().flat_map(|(p, b)| b.iter().map(move |s| (*p, s))).collect();
        out.sort_by_key(|(_, s)| s.labels.to_string());
        out
    }

    /// Clients split one stream over several objects of a push: it is one
    /// stream, in the order sent, on the partition the ring gives it.
    #[test]
    fn one_label_set_in_several_objects_is_one_stream_on_its_partition() {
        let ring = Ring::new(16);
        let streams = vec![
            stream(r#"{app="a"}"#, &[(NOW, "1")]),
            stream(r#"{app="b"}"#, &[(NOW, "x")]),
            stream(r#"{app="a"}"#, &[(NOW - 5, "2")]),
            stream(r#"{app="c"}"#, &[]),
        ];
        let plan = plan_push(&Limits::default(), &ring, "t", NOW, streams);
        assert!(plan.refused.is_empty(), "{:?}", plan.refused);
        assert_eq!(plan.received.0, 3);
        let got = batches(&plan);
        assert_eq!(got.len(), 2, "the empty stream is no stream");
        let (p, a) = got[0];
        assert_eq!(a.labels.get("app"), Some("a"));
        assert_eq!(a.labels.get("service_name"), Some("a"), "service_name discovered from app");
        assert_eq!(a.entries.iter().map(|e| e.line.as_str()).collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(p, ring.partition_for("t", &a.labels));
        assert_eq!(got[1].0, ring.partition_for("t", &got[1].1.labels));
    }

    /// A stream without labels is refused whole (when no `service_name` is
    /// discovered for it); an entry too old or too long is refused alone,
    /// the rest of its stream kept; each refusal carries its reason, counts
    /// and Loki's message.
    #[test]
    fn refusals_are_per_stream_for_labels_and_per_entry_for_entries() {
        let long = "x".repeat(300 << 10);
        let streams = vec![
            stream("", &[(NOW, "no labels"), (NOW, "either")]),
            stream(r#"{job="j"}"#, &[(NOW - 8 * DAY, "too old"), (NOW, "fine"), (NOW, &long)]),
        ];
        let limits = Limits { discover_service_name: Vec::new(), ..Limits::default() };
        let plan = plan_push(&limits, &Ring::new(4), "t", NOW, streams);
        let refused: Vec<(Reason, u64, u64)> = plan.refused.iter().map(|r| (r.reason, r.lines, r.bytes)).collect();
        assert_eq!(
            refused,
            [
                (Reason::MissingLabels, 2, ("no labels".len() + "either".len()) as u64),
                (Reason::GreaterThanMaxSampleAge, 1, "too old".len() as u64),
                (Reason::LineTooLong, 1, long.len() as u64),
            ]
        );
        assert!(plan.refused.iter().all(|r| !r.message.is_empty()));
        let got = batches(&plan);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.entries.iter().map(|e| e.line.as_str()).collect::<Vec<_>>(), ["fine"]);
        assert_eq!(plan.received.0, 5);
    }

    /// With Loki's default discovery, a stream without labels is stored as
    /// `{service_name="unknown_service"}`.
    #[test]
    fn a_stream_without_labels_gets_the_unknown_service_name() {
        let plan = plan_push(&Limits::default(), &Ring::new(4), "t", NOW, vec![stream("", &[(NOW, "bare")])]);
        assert!(plan.refused.is_empty());
        assert_eq!(batches(&plan)[0].1.labels.to_string(), r#"{service_name="unknown_service"}"#);
    }
}
