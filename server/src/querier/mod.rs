//! The querier: answers log queries, label and series look-ups by reading
//! every partition's leader (linearizably) for unflushed data and object
//! storage ([`store`]) for flushed data, and merging the two by timestamp
//! without the duplicates a flush hand-over can produce.
//!
//! [`scan`] reads the streams a query selects (PERFORMANCE-CRITICAL PATH);
//! [`merge`] puts the per-stream results together; this file answers each
//! kind of question with them.

mod fair;
pub(crate) mod merge;
mod scan;
pub mod store;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use balsa_storage::index::ChunkRef;
use balsa_storage::{Direction, Entry};

use crate::deletes::Deletes;
use crate::error_code::{Coded, ErrorCode};
use crate::ingester::client::IngesterClient;
use crate::ingester::read::{wire_matchers, HeadLimit, ReadConsistency, ReadRequest};
use crate::ingester::IngesterError;
use crate::overrides::Overrides;
use balsa_logql::labels::LabelSet;
use balsa_logql::eval::{self, EvalError, SeriesSamples, Selection, Steps, Value};
use balsa_logql::pipeline::{self, ParserSkip};
use balsa_logql::{Expr, LogExpr, Matcher, Stage};
use merge::{keep_first, merge_same_labels};
pub use scan::report;
use scan::Scan;
use store::{StoreError, StoreReader};

/// A log query over `[start, end)`.
#[derive(Clone, Debug)]
pub struct LogRequest {
    pub query: LogExpr,
    pub start: i64,
    pub end: i64,
    pub limit: usize,
    pub direction: Direction,
    /// Keep stream labels, structured metadata and parsed labels apart
    /// (`X-Loki-Response-Encoding-Flags: categorize-labels`).
    pub categorize: bool,
    /// Loki's `interval` (ns, 0 = every entry): entries at least this far
    /// apart. The querier then answers every matching entry, unlimited, and
    /// the frontend spaces them ([`merge::keep_spaced`]) before the limit.
    pub interval: i64,
}

/// One stream of an answer, entries in the requested direction.
#[derive(Clone, Debug)]
pub struct StreamResult {
    pub labels: LabelSet,
    pub entries: Vec<ResultEntry>,
}

/// An entry of an answer, with the labels a parser extracted from it when
/// the client asked for categorized labels.
#[derive(Clone, Debug)]
pub struct ResultEntry {
    pub entry: Entry,
    pub parsed: Vec<(String, String)>,
}

impl std::ops::Deref for ResultEntry {
    type Target = Entry;
    fn deref(&self) -> &Entry {
        &self.entry
    }
}

impl From<Entry> for ResultEntry {
    fn from(entry: Entry) -> Self {
        Self { entry, parsed: Vec::new() }
    }
}

/// What a query cost, for Loki's `stats` object.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScanStats {
    /// Unflushed entries the partitions sent (Loki's head chunks).
    pub head_lines: u64,
    pub head_bytes: u64,
    /// Lines decoded from flushed chunks in the time range, and their bytes.
    pub chunk_lines: u64,
    pub chunk_bytes: u64,
    /// Stored (compressed) size of the chunks read.
    pub compressed_bytes: u64,
    /// Flushed chunks referenced, and those fetched from object storage
    /// rather than the chunk cache.
    pub chunks: u64,
    pub chunks_downloaded: u64,
    /// Entries stored twice (flush hand-over, retries) and read once.
    pub duplicates: u64,
    /// Lines that passed the whole pipeline.
    pub post_filter_lines: u64,
    /// Entries (log queries) or series (metric queries) answered.
    pub returned: u64,
    /// Streams that matched the selector.
    pub streams: u64,
    pub exec_seconds: f64,
    /// Pieces the query-frontend ran, and its results cache at work.
    pub splits: u64,
    pub cache_requested: u64,
    pub cache_found: u64,
    pub cache_stored: u64,
}

impl ScanStats {
    /// Lines read, flushed or not.
    pub fn lines(&self) -> u64 {
        self.head_lines + self.chunk_lines
    }

    /// Bytes read, flushed or not.
    pub fn bytes(&self) -> u64 {
        self.head_bytes + self.chunk_bytes
    }

    /// Adds what another piece of the same query read (answer counts and
    /// times excluded).
    pub fn add_scan(&mut self, o: &ScanStats) {
        self.head_lines += o.head_lines;
        self.head_bytes += o.head_bytes;
        self.chunk_lines += o.chunk_lines;
        self.chunk_bytes += o.chunk_bytes;
        self.compressed_bytes += o.compressed_bytes;
        self.chunks += o.chunks;
        self.chunks_downloaded += o.chunks_downloaded;
        self.duplicates += o.duplicates;
        self.post_filter_lines += o.post_filter_lines;
        self.streams += o.streams;
    }
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Ingester(#[from] IngesterError),
    /// The query's `query_timeout` passed while it read (504).
    #[error("{TIMEOUT_TEXT}")]
    Timeout,
    /// A query that cannot be evaluated (400).
    #[error("{0}")]
    Eval(#[from] EvalError),
    /// Flushed data could not be read (500, naming the object).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Delete requests could not be read (503): answering could return
    /// deleted lines.
    #[error("{0}")]
    Deletes(#[from] crate::deletes::DeleteError),
}

impl Coded for QueryError {
    fn code(&self) -> ErrorCode {
        match self {
            QueryError::Eval(_) => ErrorCode::BadRequest,
            QueryError::Store(_) => ErrorCode::Internal,
            QueryError::Deletes(_) | QueryError::Ingester(_) => ErrorCode::Unavailable,
            QueryError::Timeout => ErrorCode::Timeout,
        }
    }

    /// Query errors are written without a trailing newline, as Loki's.
    fn http_body(&self) -> String {
        self.to_string()
    }
}

/// The most matching lines a log query with `interval` gathers per split
/// piece before spacing them (see [`LogRequest::interval`]).
pub const MAX_INTERVAL_LINES: usize = 1_000_000;

/// Loki's words for a query past its `query_timeout`.
pub const TIMEOUT_TEXT: &str = "request timed out, decrease the duration of the request or add more label matchers (prefer exact \
match over regex match) to reduce the amount of data processed";

tokio::task_local! {
    /// When the running request's `query_timeout` passes: stream reads
    /// check it between streams and chunks (the work between two awaits
    /// can be long, and a timeout only cancels at an await).
    pub static DEADLINE: std::time::Instant;
}


/// Reads partitions and object storage.
pub struct Querier {
    ingesters: Arc<IngesterClient>,
    consistency: ReadConsistency,
    store: StoreReader,
    overrides: Arc<Overrides>,
    deletes: Arc<Deletes>,
}

impl Querier {
    pub fn new(
        ingesters: Arc<IngesterClient>,
        consistency: ReadConsistency,
        store: StoreReader,
        overrides: Arc<Overrides>,
        deletes: Arc<Deletes>,
    ) -> Self {
        Self { ingesters, consistency, store, overrides, deletes }
    }

    /// Partitions to read; an error while the ring is not known yet.
    fn partitions(&self) -> Result<u32, QueryError> {
        match self.ingesters.partitions() {
            0 => Err(IngesterError::NoRing("no partitions received from the controller yet".into()).into()),
            n => Ok(n),
        }
    }

    /// One stream's part of a log query: its first `limit` entries in the
    /// request's direction that pass the pipeline (as streams after the
    /// pipeline). `sieve`: a lighter run of the pipeline that decides which
    /// lines pass (carrying only the labels its filters read), so that only
    /// those pay for a full label set.
    fn select_in_stream(req: &LogRequest, sieve: Option<&ParserSkip>, labels: LabelSet, mut entries: Vec<Entry>) -> Vec<StreamResult> {
        let fast = req.query.only_line_filters();
        if req.direction == Direction::Backward {
            entries.reverse();
        }
        // Streams after the pipeline: labels may change per entry.
        let mut produced: Vec<StreamResult> = Vec::new();
        let mut kept = 0usize;
        for e in entries {
            if fast {
                if !line_filters_pass(&req.query.stages, &e.line) {
                    continue;
                }
                match produced.first_mut() {
                    Some(r) => r.entries.push(e.into()),
                    None => produced.push(StreamResult { labels: labels.clone(), entries: vec![e.into()] }),
                }
            } else {
                let ts = e.ts;
                if let Some(sieve) = sieve {
                    if pipeline::process_skipping(&req.query.stages, &labels, e.clone().into_parts(), sieve).is_none() {
                        continue;
                    }
                }
                let came_with = if req.categorize { e.metadata.clone() } else { Vec::new() };
                let Some(p) = pipeline::process(&req.query.stages, &labels, e.into_parts()) else { continue };
                let (out_labels, entry) = if req.categorize {
                    // Stream labels stay the stream's; the rest is metadata or parsed.
                    let (mut stream, mut metadata, mut parsed) = (Vec::new(), Vec::new(), Vec::new());
                    for (k, v) in p.labels {
                        if labels.get(&k) == Some(v.as_str()) {
                            stream.push((k, v));
                        } else if came_with.iter().any(|(m, mv)| *m == k && *mv == v) {
                            metadata.push((k, v));
                        } else {
                            parsed.push((k, v));
                        }
                    }
                    let entry = Entry { ts, line: p.line, metadata };
                    (LabelSet::from_pairs_keep_empty(stream), ResultEntry { entry, parsed })
                } else {
                    (p.label_set(), Entry { ts, line: p.line, metadata: Vec::new() }.into())
                };
                match produced.iter_mut().find(|r| r.labels == out_labels) {
                    Some(r) => r.entries.push(entry),
                    None => produced.push(StreamResult { labels: out_labels, entries: vec![entry] }),
                }
            }
            kept += 1;
            if kept >= req.limit && req.interval == 0 {
                break;
            }
        }
        produced
    }

    /// The `limit` entries nearest to the start of `direction` among the
    /// matching lines of every matching stream, grouped by stream.
    #[tracing::instrument(level = "info", skip_all, fields(tenants = ?tenants, limit = req.limit))]
    pub async fn select_logs(&self, tenants: &[String], req: &LogRequest) -> Result<(Vec<StreamResult>, ScanStats), QueryError> {
        let started = Instant::now();
        let mut stats = ScanStats::default();
        let prefilter = req.query.leading_line_filters();
        // Only line filters, all applied where the entries are, and no
        // spacing: each stream's first `limit` entries are all that can be
        // answered.
        let head_limit = (req.query.only_line_filters() && req.interval == 0 && req.limit > 0).then(|| HeadLimit {
            n: u32::try_from(req.limit).unwrap_or(u32::MAX),
            newest: req.direction == Direction::Backward,
        });
        let scan = Scan { matchers: &req.query.matchers, prefilter: &prefilter, from: req.start, through: req.end, head_limit };
        // With label filters that read few labels, most lines are dropped
        // before their full label set is built.
        let sieve = pipeline::filter_labels(&req.query.stages).filter(|n| !n.is_empty()).map(ParserSkip::Only);
        // With `interval`, every matching line of the range is gathered before
        // the spacing: bounded, to keep one query's memory bounded.
        let gathered = std::sync::atomic::AtomicUsize::new(0);
        let per_stream = self
            .map_streams(tenants, &scan, &mut stats, &|labels, entries| {
                let produced = Self::select_in_stream(req, sieve.as_ref(), labels, entries);
                let n: usize = produced.iter().map(|s| s.entries.len()).sum();
                if req.interval > 0 && gathered.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n > MAX_INTERVAL_LINES {
                    return Err(QueryError::Eval(EvalError(format!(
                        "a query with interval reads at most {MAX_INTERVAL_LINES} matching lines per split; narrow the time range or the selector"
                    ))));
                }
                Ok(produced)
            })
            .await?;
        let mut found: Vec<StreamResult> = Vec::new();
        for produced in per_stream {
            stats.post_filter_lines += produced.iter().map(|s| s.entries.len() as u64).sum::<u64>();
            found.extend(produced);
        }
        let merged = merge_same_labels(found, req.direction);
        let mut result = if req.interval > 0 { merged } else { keep_first(merged, req.limit, req.direction) };
        result.sort_by(|a, b| a.labels.cmp(&b.labels));
        stats.returned = result.iter().map(|s| s.entries.len() as u64).sum();
        stats.exec_seconds = started.elapsed().as_secs_f64();
        Ok((result, stats))
    }

    /// Label sets of the tenants' streams that match any of `selectors` (all
    /// streams when empty) and have entries in `[start, end)`, flushed or not.
    pub async fn series(
        &self,
        tenants: &[String],
        selectors: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Result<Vec<LabelSet>, QueryError> {
        let mut out = BTreeSet::new();
        let all: Vec<Vec<Matcher>> = if selectors.is_empty() { vec![Vec::new()] } else { selectors.to_vec() };
        for t in tenants {
            // The selectors that apply to this tenant, read in one pass.
            let applicable: Vec<Vec<Matcher>> = all
                .iter()
                .map(|sel| split_tenant_matchers(sel))
                .filter(|(on_tenant, _)| on_tenant.iter().all(|m| m.matches(Some(t))))
                .map(|(_, rest)| rest)
                .collect();
            if applicable.is_empty() {
                continue;
            }
            for labels in self.tenant_series(t, &applicable, start, end).await? {
                out.insert(tag_tenant(labels, t, tenants.len() > 1));
            }
        }
        Ok(out.into_iter().collect())
    }

    async fn tenant_series(
        &self,
        tenant: &str,
        selectors: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Result<Vec<LabelSet>, QueryError> {
        let mut out = BTreeSet::new();
        let mut refs: Vec<ChunkRef> = Vec::new();
        let read = ReadRequest::Series {
            tenant: tenant.to_string(),
            selectors: selectors.iter().map(|m| wire_matchers(m)).collect(),
            from: start,
            through: end,
        };
        let reads = (0..self.partitions()?).map(|p| self.ingesters.read(p, &read, self.consistency, None));
        for reply in futures::future::join_all(reads).await {
            let reply = reply?;
            out.extend(reply.series);
            refs.extend(reply.pending);
        }
        refs.extend(self.store.refs(tenant, start, end).await?);
        for r in refs {
            if r.through < start || r.from >= end {
                continue;
            }
            let labels = self.store.labels_of(&r)?;
            if selectors.iter().any(|ms| ms.iter().all(|m| m.matches(labels.get(&m.name)))) {
                out.insert(labels);
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Label names of the tenants' streams with entries in `[start, end)`,
    /// optionally only of streams matching `selector`.
    pub async fn label_names(
        &self,
        tenants: &[String],
        selector: Option<Vec<Matcher>>,
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, QueryError> {
        let sel: Vec<Vec<Matcher>> = selector.into_iter().collect();
        let names: BTreeSet<String> = self
            .series(tenants, &sel, start, end)
            .await?
            .iter()
            .flat_map(|l| l.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>())
            .collect();
        Ok(names.into_iter().collect())
    }

    /// Values of label `name` in the tenant's streams with entries in
    /// `[start, end)`, optionally only of streams matching `selector`.
    pub async fn label_values(
        &self,
        tenants: &[String],
        name: &str,
        selector: Option<Vec<Matcher>>,
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, QueryError> {
        let sel: Vec<Vec<Matcher>> = selector.into_iter().collect();
        let values: BTreeSet<String> = self
            .series(tenants, &sel, start, end)
            .await?
            .iter()
            .filter_map(|l| l.get(name).map(str::to_string))
            .collect();
        Ok(values.into_iter().collect())
    }

    /// `f` over every stream matching `matchers` and its entries in
    /// `[from, through)`, ascending (for index statistics, volumes, detected
    /// fields and patterns): streams are handed over as they are read, so
    /// only what `f` keeps stays in memory.
    pub async fn map_matching<T: Send>(
        &self,
        tenants: &[String],
        matchers: &[Matcher],
        from: i64,
        through: i64,
        f: &(dyn Fn(LabelSet, Vec<Entry>) -> T + Sync),
    ) -> Result<(Vec<T>, ScanStats), QueryError> {
        let mut stats = ScanStats::default();
        let scan = Scan { matchers, prefilter: &[], from, through, head_limit: None };
        let s = self.map_streams(tenants, &scan, &mut stats, &|labels, entries| Ok(f(labels, entries))).await?;
        Ok((s, stats))
    }

    /// Evaluates a metric query at `steps`.
    #[tracing::instrument(level = "info", skip_all, fields(tenants = ?tenants, steps = steps.len()))]
    pub async fn eval_metric(
        &self,
        tenants: &[String],
        expr: &Expr,
        steps: Steps,
        max_series: usize,
    ) -> Result<(Value, ScanStats), QueryError> {
        let started = Instant::now();
        let mut data: Vec<SeriesSamples> = Vec::new();
        let mut stats = ScanStats::default();
        for sel in eval::selections(expr, steps) {
            data.push(self.samples(tenants, &sel, &mut stats).await?);
        }
        let value = eval::evaluate(expr, steps, &mut data.into_iter(), max_series)?;
        if let Value::Vector(series) = &value {
            stats.returned = series.len() as u64;
        }
        stats.exec_seconds = started.elapsed().as_secs_f64();
        Ok((value, stats))
    }

    /// The samples of one selection, extracted stream by stream as the
    /// streams are read.
    async fn samples(&self, tenants: &[String], sel: &Selection, stats: &mut ScanStats) -> Result<SeriesSamples, QueryError> {
        let scan = Scan { matchers: &sel.matchers, prefilter: &sel.prefilter, from: sel.from, through: sel.through, head_limit: None };
        let per_stream = self
            .map_streams(tenants, &scan, stats, &|labels, entries| {
                let mut samples = SeriesSamples::new();
                sel.extract(&labels, entries.into_iter().map(balsa_storage::Entry::into_parts), &mut samples)?;
                Ok(samples)
            })
            .await?;
        let mut out = SeriesSamples::new();
        for samples in per_stream {
            for (series, s) in samples {
                stats.post_filter_lines += s.len() as u64;
                out.entry(series).or_default().extend(s);
            }
        }
        Ok(out)
    }
}

/// The label multi-tenant answers carry.
pub const TENANT_LABEL: &str = "__tenant_id__";

/// Matchers on `__tenant_id__` (which choose tenants) and the others.
fn split_tenant_matchers(matchers: &[Matcher]) -> (Vec<Matcher>, Vec<Matcher>) {
    matchers.iter().cloned().partition(|m| m.name == TENANT_LABEL)
}

fn tag_tenant(labels: LabelSet, tenant: &str, multi: bool) -> LabelSet {
    if !multi {
        return labels;
    }
    let mut pairs: Vec<(String, String)> = labels.iter().cloned().collect();
    pairs.push((TENANT_LABEL.to_string(), tenant.to_string()));
    LabelSet::from_pairs_keep_empty(pairs)
}

/// Whether a line passes every line filter of a filter-only pipeline.
fn line_filters_pass(stages: &[Stage], line: &str) -> bool {
    stages.iter().all(|s| match s {
        Stage::LineFilter(f) => f.matches(line),
        _ => true,
    })
}
