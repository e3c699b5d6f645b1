//! Prometheus metrics an operator graphs: ingestion and rejection rates,
//! request latencies, and per-partition Raft state (collected at scrape).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::ingester::Ingester;

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    pub lines_received: IntCounterVec,
    pub bytes_received: IntCounterVec,
    pub discarded_samples: IntCounterVec,
    pub discarded_bytes: IntCounterVec,
    pub duplicate_lines: IntCounterVec,
    pub request_duration: HistogramVec,
    pub push_retries: IntCounter,
    pub chunks_flushed: IntCounter,
    pub chunk_bytes_flushed: IntCounter,
    pub flush_failures: IntCounter,
    pub corrupt_objects: IntCounter,
    pub chunks_deleted_by_retention: IntCounter,
    pub missing_chunks: IntCounter,
    pub compaction_failures: IntCounter,
    /// Requests refused by `auth.file`'s tokens, by reason.
    pub auth_refusals: IntCounterVec,
    /// Whether the last reload of the auth file succeeded.
    pub auth_file_ok: prometheus::IntGauge,
    query_batches_waiting: prometheus::IntGauge,
    flush_queue: IntGaugeVec,
    runtime_config_ok: prometheus::IntGauge,
    raft_term: IntGaugeVec,
    raft_leader: IntGaugeVec,
    raft_last_log_index: IntGaugeVec,
    raft_applied_index: IntGaugeVec,
    raft_snapshot_index: IntGaugeVec,
    memory_streams: IntGaugeVec,
    memory_entries: IntGaugeVec,
    memory_bytes: IntGaugeVec,
    log_fsyncs: IntGaugeVec,
    log_disk_failed: IntGaugeVec,
    raft_transport: IntGaugeVec,
    raft_follower_lag: IntGaugeVec,
    raft_hand_overs: IntGaugeVec,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    // Names are fixed and unique below; a duplicate is a programming error
    // caught by the unit test `registers_and_renders`.
    r.register(Box::new(m.clone())).expect("metric registered twice");
    m
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            reg(&r, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            reg(&r, IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        Self {
            lines_received: counter("loki_distributor_lines_received_total", "Log lines received, by tenant.", &["tenant"]),
            bytes_received: counter("loki_distributor_bytes_received_total", "Bytes of log lines received, by tenant.", &["tenant"]),
            discarded_samples: counter("loki_discarded_samples_total", "Entries refused, by reason and tenant.", &["reason", "tenant"]),
            discarded_bytes: counter("loki_discarded_bytes_total", "Bytes of entries refused, by reason and tenant.", &["reason", "tenant"]),
            duplicate_lines: counter("balsa_ingester_duplicate_lines_total", "Entries dropped as duplicates of stored ones.", &["tenant"]),
            request_duration: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("loki_request_duration_seconds", "Time to answer HTTP and gRPC requests.")
                        .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                    &["route", "method", "status_code"],
                )
                .expect("valid metric"),
            ),
            push_retries: reg(
                &r,
                IntCounter::new("balsa_distributor_push_retries_total", "Proposals retried after a leader change.")
                    .expect("valid metric"),
            ),
            chunks_flushed: reg(&r, IntCounter::new("balsa_ingester_chunks_flushed_total", "Chunks uploaded to object storage.").expect("valid metric")),
            chunk_bytes_flushed: reg(
                &r,
                IntCounter::new("balsa_ingester_chunk_bytes_flushed_total", "Compressed bytes of chunks uploaded.").expect("valid metric"),
            ),
            flush_failures: reg(&r, IntCounter::new("balsa_ingester_flush_failures_total", "Flush rounds that failed (retried).").expect("valid metric")),
            corrupt_objects: reg(
                &r,
                IntCounter::new("balsa_corrupt_objects_total", "Chunks or index segments that failed their checksum.").expect("valid metric"),
            ),
            chunks_deleted_by_retention: reg(
                &r,
                IntCounter::new("balsa_compactor_chunks_deleted_total", "Chunks deleted because they expired (retention).")
                    .expect("valid metric"),
            ),
            runtime_config_ok: reg(
                &r,
                prometheus::IntGauge::new(
                    "balsa_runtime_config_last_reload_successful",
                    "Whether the last reload of the runtime overrides file succeeded.",
                )
                .expect("valid metric"),
            ),
            auth_refusals: counter("balsa_auth_refusals_total", "Requests refused for their credentials, by reason.", &["reason"]),
            auth_file_ok: reg(
                &r,
                prometheus::IntGauge::new("balsa_auth_file_last_reload_successful", "Whether the last reload of the auth file succeeded.")
                    .expect("valid metric"),
            ),
            compaction_failures: reg(
                &r,
                IntCounter::new("balsa_compactor_tenant_failures_total", "Tenants a compaction round could not compact (reported and skipped).")
                    .expect("valid metric"),
            ),
            missing_chunks: reg(
                &r,
                IntCounter::new("balsa_querier_missing_chunks_total", "Chunks listed by an index segment but gone when read.")
                    .expect("valid metric"),
            ),
            query_batches_waiting: reg(
                &r,
                prometheus::IntGauge::new(
                    "balsa_querier_batches_waiting",
                    "Stream batches of running queries waiting for a decoding slot (tenants take turns).",
                )
                .expect("valid metric"),
            ),
            flush_queue: gauge("balsa_ingester_flush_queue_length", "Closed chunks waiting for a flush.", &["partition"]),
            raft_term: gauge("balsa_raft_term", "Current Raft term, per partition.", &["partition"]),
            raft_leader: gauge("balsa_raft_leader_id", "Node id of the partition's leader (0: none).", &["partition"]),
            raft_last_log_index: gauge("balsa_raft_last_log_index", "Last index in the partition's log.", &["partition"]),
            raft_applied_index: gauge("balsa_raft_applied_index", "Last index applied to the state machine.", &["partition"]),
            raft_snapshot_index: gauge("balsa_raft_snapshot_index", "Last index covered by a snapshot.", &["partition"]),
            memory_streams: gauge("balsa_ingester_memory_streams", "Streams held in memory.", &["partition"]),
            memory_entries: gauge("balsa_ingester_memory_entries", "Entries held in memory.", &["partition"]),
            memory_bytes: gauge("balsa_ingester_memory_bytes", "Bytes of entries held in memory.", &["partition"]),
            log_fsyncs: gauge("balsa_raft_log_sync_stats", "Group commit: fsyncs, appends they covered, nanoseconds spent.", &["kind"]),
            log_disk_failed: gauge(
                "balsa_raft_log_disk_failed",
                "1 once a write or fsync of the Raft log failed: the node acknowledges nothing until restarted.",
                &[],
            ),
            raft_transport: gauge(
                "balsa_raft_transport_stats",
                "Raft transport: batch RPCs sent and failed, messages sent in them and received.",
                &["kind"],
            ),
            raft_follower_lag: gauge(
                "balsa_raft_follower_lag_entries",
                "On a partition's leader: log entries each follower is behind.",
                &["partition", "follower"],
            ),
            raft_hand_overs: gauge(
                "balsa_raft_leader_hand_overs",
                "Leaderships this node handed to their preferred replica (leader balance), by result.",
                &["result"],
            ),
            registry: r,
        }
    }

    /// Renders every metric in Prometheus' text format, reading the
    /// ingester's current Raft and memory state first.
    pub fn render(&self, ingester: Option<&Ingester>, overrides: Option<&crate::overrides::Overrides>) -> String {
        if let Some(o) = overrides {
            self.runtime_config_ok.set(i64::from(o.last_reload_ok()));
        }
        self.query_batches_waiting.set(crate::querier::batches_waiting() as i64);
        if let Some(ing) = ingester {
            for (p, m) in ing.raft_metrics() {
                let p = p.to_string();
                let l = [p.as_str()];
                self.raft_term.with_label_values(&l).set(m.current_term as i64);
                self.raft_leader.with_label_values(&l).set(m.current_leader.unwrap_or(0) as i64);
                self.raft_last_log_index.with_label_values(&l).set(m.last_log_index.unwrap_or(0) as i64);
                self.raft_applied_index.with_label_values(&l).set(m.last_applied.map_or(0, |x| x.index) as i64);
                self.raft_snapshot_index.with_label_values(&l).set(m.snapshot.map_or(0, |x| x.index) as i64);
                if let (Some(rep), Some(last)) = (&m.replication, m.last_log_index) {
                    for (f, matched) in rep {
                        let lag = last.saturating_sub(matched.map_or(0, |x| x.index));
                        self.raft_follower_lag.with_label_values(&[p.as_str(), f.to_string().as_str()]).set(lag as i64);
                    }
                }
            }
            for (p, (streams, entries, bytes)) in ing.memory_sizes() {
                let l = [p.to_string()];
                let l = [l[0].as_str()];
                self.memory_streams.with_label_values(&l).set(streams as i64);
                self.memory_entries.with_label_values(&l).set(entries as i64);
                self.memory_bytes.with_label_values(&l).set(bytes as i64);
            }
            for (p, n) in ing.flush_queue() {
                self.flush_queue.with_label_values(&[p.to_string().as_str()]).set(n as i64);
            }
            let s = ing.log_db().stats();
            use std::sync::atomic::Ordering::Relaxed;
            self.log_fsyncs.with_label_values(&["fsyncs"]).set(s.syncs.load(Relaxed) as i64);
            self.log_fsyncs.with_label_values(&["appends"]).set(s.synced_appends.load(Relaxed) as i64);
            self.log_fsyncs.with_label_values(&["nanoseconds"]).set(s.sync_nanos.load(Relaxed) as i64);
            self.log_disk_failed.with_label_values(&[] as &[&str]).set(i64::from(ing.log_db().failure().is_some()));
            let (completed, failed) = ing.hand_over_counts();
            self.raft_hand_overs.with_label_values(&["completed"]).set(completed as i64);
            self.raft_hand_overs.with_label_values(&["failed"]).set(failed as i64);
            let t = ing.transport_stats();
            self.raft_transport.with_label_values(&["batches_sent"]).set(t.batches_sent.load(Relaxed) as i64);
            self.raft_transport.with_label_values(&["batches_failed"]).set(t.batches_failed.load(Relaxed) as i64);
            self.raft_transport.with_label_values(&["messages_sent"]).set(t.messages_sent.load(Relaxed) as i64);
            self.raft_transport.with_label_values(&["messages_received"]).set(t.messages_received.load(Relaxed) as i64);
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_renders() {
        let m = Metrics::new();
        m.discarded_samples.with_label_values(&["line_too_long", "t"]).inc();
        let text = m.render(None, None);
        assert!(text.contains(r#"loki_discarded_samples_total{reason="line_too_long",tenant="t"} 1"#), "{text}");
    }
}
