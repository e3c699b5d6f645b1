//! The querier: answers log queries, label and series look-ups by reading
//! every partition's leader (linearizably) for unflushed data and object
//! storage ([`store`]) for flushed data, and merging the two by timestamp
//! without the duplicates a flush hand-over can produce.
//!
//! PERFORMANCE-CRITICAL PATH: [`Querier::select_logs`] scans every entry of
//! the matching streams in the time range.

mod fair;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use balsa_storage::chunk::{Decoded, LineSieve};
use balsa_storage::index::ChunkRef;
use balsa_storage::{Direction, Entry};
use futures::{StreamExt, TryStreamExt};

use crate::deletes::{filter_entries, Deletes};
use crate::error_code::{Coded, ErrorCode};
use crate::ingester::client::IngesterClient;
use crate::ingester::read::{wire_matchers, HeadLimit, ReadConsistency, ReadRequest};
use crate::ingester::IngesterError;
use crate::metrics::Metrics;
use crate::overrides::Overrides;
use balsa_logql::labels::LabelSet;
use balsa_logql::eval::{self, EvalError, SeriesSamples, Selection, Steps, Value};
use balsa_logql::pipeline::{self, ParserSkip};
use balsa_logql::{Expr, LineFilter, LogExpr, Matcher, Stage};
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
    /// the frontend spaces them ([`keep_spaced`]) before the limit.
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

/// Whether the running request's deadline has passed.
fn past(deadline: Option<std::time::Instant>) -> bool {
    deadline.is_some_and(|d| std::time::Instant::now() >= d)
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

    /// `f` over every stream of `tenants` that `scan` selects, stream by
    /// stream as their entries are gathered, on every core: only the streams
    /// of one batch are held as lines at a time. Results in the streams'
    /// order. With several tenants (`X-Scope-OrgID: a|b`) each stream
    /// carries `__tenant_id__`, which selectors may match, as in Loki.
    async fn map_streams<T: Send>(
        &self,
        tenants: &[String],
        scan: &Scan<'_>,
        stats: &mut ScanStats,
        f: &(dyn Fn(LabelSet, Vec<Entry>) -> Result<T, QueryError> + Sync),
    ) -> Result<Vec<T>, QueryError> {
        let (on_tenant, rest) = split_tenant_matchers(scan.matchers);
        let scan = Scan { matchers: &rest, ..*scan };
        let mut out = Vec::new();
        for t in tenants {
            if !on_tenant.iter().all(|m| m.matches(Some(t))) {
                continue;
            }
            let multi = tenants.len() > 1;
            let tagged = |labels, entries| f(tag_tenant(labels, t, multi), entries);
            out.extend(self.tenant_streams(t, &scan, stats, &tagged).await?);
        }
        Ok(out)
    }

    /// `f` over every stream of `tenant` that `scan` selects: unflushed
    /// entries from the partitions plus flushed chunks, ascending, each
    /// entry once.
    async fn tenant_streams<T: Send>(
        &self,
        tenant: &str,
        scan: &Scan<'_>,
        stats: &mut ScanStats,
        f: &(dyn Fn(LabelSet, Vec<Entry>) -> Result<T, QueryError> + Sync),
    ) -> Result<Vec<T>, QueryError> {
        let Scan { matchers, prefilter, from, through, head_limit } = *scan;
        let limits = self.overrides.get(tenant);
        let now = balsa_logql::time::now_ns();
        let deletes = self.deletes.active(tenant)?;
        // Deletes drop entries after the read; so does retention, which
        // drops only the oldest, harmless when the newest are asked for.
        let head_limit = head_limit.filter(|l| deletes.is_empty() && (l.newest || !limits.has_retention()));
        let mut unflushed: BTreeMap<LabelSet, Vec<Entry>> = BTreeMap::new();
        let mut refs: HashMap<String, ChunkRef> = HashMap::new();
        let read = ReadRequest::Streams {
            tenant: tenant.to_string(),
            matchers: wire_matchers(matchers),
            filters: prefilter.iter().map(|f| f.spec.clone()).collect(),
            from,
            through,
        };
        let reads = (0..self.partitions()?).map(|p| self.ingesters.read(p, &read, self.consistency, head_limit));
        for reply in futures::future::join_all(reads).await {
            let reply = reply?;
            for (labels, entries) in reply.streams {
                if !entries.is_empty() {
                    unflushed.entry(labels).or_default().extend(entries);
                }
            }
            refs.extend(reply.pending.into_iter().map(|r| (r.key.clone(), r)));
        }
        refs.extend(self.store.refs(tenant, from, through).await?.into_iter().map(|r| (r.key.clone(), r)));
        let mut chunks: BTreeMap<LabelSet, Vec<ChunkRef>> = BTreeMap::new();
        for r in refs.into_values() {
            if r.through < from || r.from >= through {
                continue;
            }
            let labels = self.store.labels_of(&r)?;
            if matchers.iter().all(|m| m.matches(labels.get(&m.name))) {
                chunks.entry(labels).or_default().push(r);
            }
        }
        let deadline = DEADLINE.try_with(|d| *d).ok();
        let all: Vec<LabelSet> = unflushed.keys().chain(chunks.keys()).cloned().collect::<BTreeSet<_>>().into_iter().collect();
        stats.streams += all.len() as u64;
        let mut out = Vec::with_capacity(all.len());
        for batch in all.chunks(STREAMS_PER_BATCH) {
            // Fetch the batch's chunks, then decode and hand over its streams
            // on every core.
            let refs: Vec<(usize, ChunkRef)> = batch
                .iter()
                .enumerate()
                .flat_map(|(i, labels)| chunks.remove(labels).unwrap_or_default().into_iter().map(move |r| (i, r)))
                .collect();
            stats.chunks += refs.len() as u64;
            // Object stores answer one GET at a time slowly: fetch several.
            let fetched: Vec<_> = futures::stream::iter(refs)
                .map(|(i, r)| async move { self.store.chunk(&r).await.map(|b| (i, r.key, b)) })
                .buffered(CHUNK_FETCHES)
                .try_collect()
                .await?;
            let mut work: Vec<StreamWork> =
                batch.iter().map(|labels| (labels.clone(), unflushed.remove(labels).unwrap_or_default(), Vec::new())).collect();
            for (i, key, fetch) in fetched {
                stats.compressed_bytes += fetch.bytes.len() as u64;
                stats.chunks_downloaded += u64::from(fetch.downloaded);
                work[i].2.push((key, fetch.bytes));
            }
            let gather = |(labels, mut entries, bytes): StreamWork| -> (Result<Option<T>, QueryError>, ScanStats) {
                // What reading this stream cost.
                let mut cost = ScanStats {
                    head_lines: entries.len() as u64,
                    head_bytes: entries.iter().map(|e| e.size() as u64).sum(),
                    ..ScanStats::default()
                };
                let mut decoded = Decoded::default();
                for (key, b) in bytes {
                    if past(deadline) {
                        return (Err(QueryError::Timeout), cost);
                    }
                    match self.store.entries(&key, &b, from, through, &Prefilter(prefilter), &mut decoded) {
                        Ok(e) => entries.extend(e),
                        Err(e) => return (Err(e.into()), cost),
                    }
                }
                (cost.chunk_lines, cost.chunk_bytes) = (decoded.lines, decoded.bytes);
                // Flush hand-over and retries can store an entry twice; equal
                // timestamps keep their arrival order.
                entries.sort_by_key(|e| e.ts);
                let read = entries.len();
                dedup_equal_timestamps(&mut entries);
                cost.duplicates = (read - entries.len()) as u64;
                filter_entries(&deletes, &labels, &mut entries);
                // Expired entries are hidden at once, before the compactor deletes them.
                if let Some(cutoff) = limits.retention_cutoff(&labels, now) {
                    entries.retain(|e| e.ts >= cutoff);
                }
                if entries.is_empty() {
                    return (Ok(None), cost);
                }
                if past(deadline) {
                    return (Err(QueryError::Timeout), cost);
                }
                (f(labels, entries).map(Some), cost)
            };
            // As many batches decode at once as there are cores (each on
            // every core): concurrent queries queue here instead of piling
            // up threads and lines in memory, tenants taking turns.
            let _slot = DECODE_SLOTS.acquire(tenant).await;
            for (r, cost) in parallel_map(work, &gather) {
                stats.add_scan(&cost);
                out.extend(r?);
            }
        }
        Ok(out)
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

/// What a query reads: the streams matching `matchers`, their entries in
/// `[from, through)` whose lines pass `prefilter`.
#[derive(Clone, Copy)]
struct Scan<'a> {
    matchers: &'a [Matcher],
    prefilter: &'a [LineFilter],
    from: i64,
    through: i64,
    /// For log queries the pipeline cannot shrink: how many entries of
    /// each stream's head can matter ([`HeadLimit`]); checked again per
    /// tenant (deletes, retention).
    head_limit: Option<HeadLimit>,
}

/// One stream of a batch: its labels, unflushed entries, and its chunks
/// (object key and bytes) still to decode.
type StreamWork = (LabelSet, Vec<Entry>, Vec<(String, Arc<Vec<u8>>)>);

/// Registers the gauge of stream batches waiting for a decoding slot
/// (over all queries of the process), set at each scrape.
pub fn report(metrics: &Metrics) {
    let waiting = metrics.gauge("balsa_querier_batches_waiting", "Stream batches of running queries waiting for a decoding slot (tenants take turns).");
    metrics.on_scrape(move || waiting.set(DECODE_SLOTS.waiting() as i64));
}

/// Batches decoding at once, over all queries of the process: one per
/// core, handed to waiting tenants in turn.
static DECODE_SLOTS: std::sync::LazyLock<fair::FairSlots> =
    std::sync::LazyLock::new(|| fair::FairSlots::new(std::thread::available_parallelism().map_or(1, |n| n.get())));

/// A query's leading line filters, as a chunk read applies them: a block
/// in which one of them finds none of its required strings (by the block's
/// trigram filter), or nothing at all in its bytes, is skipped.
struct Prefilter<'a>(&'a [LineFilter]);

impl LineSieve for Prefilter<'_> {
    fn may_hold(&self, occurs: &dyn Fn(&[u8]) -> bool) -> bool {
        self.0.iter().all(|f| f.required_strings().is_none_or(|mut any_of| any_of.any(occurs)))
    }

    fn may_hold_within(&self, raw: &[u8]) -> bool {
        self.0.iter().all(|f| f.may_pass_within(raw))
    }

    fn keep(&self, line: &str) -> bool {
        self.0.iter().all(|f| f.matches(line))
    }
}

/// Chunk fetches of a batch in flight at once.
const CHUNK_FETCHES: usize = 16;

/// Streams gathered and handed over together (see [`parallel_map`]).
const STREAMS_PER_BATCH: usize = 32;

/// `f` over every item, on every core when the runtime has several worker
/// threads (the calling worker hands its other tasks over meanwhile);
/// results in the items' order.
fn parallel_map<I: Send, T: Send>(items: Vec<I>, f: &(dyn Fn(I) -> T + Sync)) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len());
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if threads <= 1 || !multi_threaded {
        return items.into_iter().map(f).collect();
    }
    tokio::task::block_in_place(|| {
        let slots: Vec<parking_lot::Mutex<Option<I>>> = items.into_iter().map(|i| parking_lot::Mutex::new(Some(i))).collect();
        let results: Vec<parking_lot::Mutex<Option<T>>> = slots.iter().map(|_| parking_lot::Mutex::new(None)).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(slot) = slots.get(i) else { break };
            if let Some(item) = slot.lock().take() {
                *results[i].lock() = Some(f(item));
            }
        };
        std::thread::scope(|s| {
            for _ in 1..threads {
                s.spawn(work);
            }
            work();
        });
        results.into_iter().filter_map(parking_lot::Mutex::into_inner).collect()
    })
}

/// Drops entries equal to an earlier one (timestamp, line, metadata) in a
/// list sorted by timestamp; only entries sharing a timestamp are compared,
/// through positions by [`Entry::same_hash`] once there are many.
fn dedup_equal_timestamps(entries: &mut Vec<Entry>) {
    const INDEX_FROM: usize = 16;
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    let mut run_start = 0;
    let mut index: HashMap<u64, Vec<usize>> = HashMap::new();
    for e in entries.drain(..) {
        let same = |x: &Entry| x.line == e.line && x.metadata == e.metadata;
        if out.last().is_none_or(|l: &Entry| l.ts != e.ts) {
            run_start = out.len();
            index.clear();
        } else if out.len() - run_start < INDEX_FROM {
            if out[run_start..].iter().any(same) {
                continue;
            }
        } else {
            if index.is_empty() {
                for (i, x) in out.iter().enumerate().skip(run_start) {
                    index.entry(x.same_hash()).or_default().push(i);
                }
            }
            let at = index.entry(e.same_hash()).or_default();
            if at.iter().any(|&i| same(&out[i])) {
                continue;
            }
            at.push(out.len());
        }
        out.push(e);
    }
    *entries = out;
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

/// Joins results with equal labels (the same labels can come out of the
/// pipeline of several streams), keeping each one's entries in order.
pub(crate) fn merge_same_labels(found: Vec<StreamResult>, direction: Direction) -> Vec<StreamResult> {
    let mut out: Vec<StreamResult> = Vec::new();
    for r in found {
        match out.iter_mut().find(|o| o.labels == r.labels) {
            Some(o) => {
                o.entries.extend(r.entries);
                match direction {
                    Direction::Forward => o.entries.sort_by_key(|e| e.ts),
                    Direction::Backward => o.entries.sort_by_key(|e| std::cmp::Reverse(e.ts)),
                }
            }
            None => out.push(r),
        }
    }
    out
}

/// Loki's `interval`: walking the entries of all streams in `direction` as
/// one sequence (equal times in label order), keeps an entry only when it
/// is at least `interval` after (forward) or before (backward) the last one
/// kept, the first always. `last` carries the walk over consecutive pieces
/// of one query.
pub(crate) fn keep_spaced(streams: Vec<StreamResult>, direction: Direction, interval: i64, last: &mut Option<i64>) -> Vec<StreamResult> {
    let mut by_labels: Vec<usize> = (0..streams.len()).collect();
    by_labels.sort_by(|a, b| streams[*a].labels.cmp(&streams[*b].labels));
    let mut rank = vec![0; streams.len()];
    for (r, s) in by_labels.into_iter().enumerate() {
        rank[s] = r;
    }
    let mut order: Vec<(i64, usize, usize)> =
        streams.iter().enumerate().flat_map(|(s, r)| r.entries.iter().enumerate().map(move |(e, x)| (x.ts, s, e))).collect();
    order.sort_by_key(|&(ts, s, e)| (if direction == Direction::Forward { ts } else { -ts }, rank[s], e));
    let mut keep: Vec<Vec<bool>> = streams.iter().map(|r| vec![false; r.entries.len()]).collect();
    for (ts, s, e) in order {
        let spaced = match (*last, direction) {
            (None, _) => true,
            (Some(l), Direction::Forward) => ts >= l.saturating_add(interval),
            (Some(l), Direction::Backward) => ts <= l.saturating_sub(interval),
        };
        if spaced {
            keep[s][e] = true;
            *last = Some(ts);
        }
    }
    streams
        .into_iter()
        .zip(keep)
        .filter_map(|(mut r, k)| {
            let mut flags = k.into_iter();
            r.entries.retain(|_| flags.next().unwrap_or(false));
            (!r.entries.is_empty()).then_some(r)
        })
        .collect()
}

/// Keeps the `limit` entries that come first in `direction` across all
/// streams (each stream's entries already in that order).
pub(crate) fn keep_first(streams: Vec<StreamResult>, limit: usize, direction: Direction) -> Vec<StreamResult> {
    let total: usize = streams.iter().map(|s| s.entries.len()).sum();
    if total <= limit {
        return streams;
    }
    let mut ts: Vec<i64> = streams.iter().flat_map(|s| s.entries.iter().map(|e| e.ts)).collect();
    let cut_at = limit.saturating_sub(1);
    let boundary = match direction {
        Direction::Forward => *ts.select_nth_unstable(cut_at).1,
        Direction::Backward => *ts.select_nth_unstable_by(cut_at, |a, b| b.cmp(a)).1,
    };
    let before = |t: i64| match direction {
        Direction::Forward => t < boundary,
        Direction::Backward => t > boundary,
    };
    // Everything strictly before the boundary is in; entries at the boundary
    // fill the remaining places, in stream order, so exactly `limit` remain.
    let mut room = limit - streams.iter().flat_map(|s| s.entries.iter()).filter(|e| before(e.ts)).count();
    streams
        .into_iter()
        .filter_map(|mut s| {
            s.entries.retain(|e| {
                if before(e.ts) {
                    true
                } else if e.ts == boundary && room > 0 {
                    room -= 1;
                    true
                } else {
                    false
                }
            });
            (!s.entries.is_empty()).then_some(s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_map_keeps_the_items_order_and_uses_several_threads() {
        let threads = parking_lot::Mutex::new(std::collections::HashSet::new());
        let out = parallel_map((0..200u64).collect(), &|i| {
            threads.lock().insert(std::thread::current().id());
            std::thread::sleep(std::time::Duration::from_micros(200));
            i * 2
        });
        assert_eq!(out, (0..200u64).map(|i| i * 2).collect::<Vec<_>>());
        if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
            assert!(threads.lock().len() > 1, "work stayed on one thread");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn parallel_map_runs_inline_on_a_single_threaded_runtime() {
        assert_eq!(parallel_map(vec![1, 2, 3], &|i| i + 1), vec![2, 3, 4]);
    }

    fn sr(name: &str, ts: &[i64]) -> StreamResult {
        StreamResult {
            labels: LabelSet::parse(&format!("{{s=\"{name}\"}}")).unwrap(),
            entries: ts.iter().map(|&t| Entry::new(t, "l").into()).collect(),
        }
    }

    #[test]
    fn limit_applies_across_streams_in_direction() {
        let got = keep_first(vec![sr("a", &[9, 5, 1]), sr("b", &[8, 7, 2])], 3, Direction::Backward);
        let ts: Vec<Vec<i64>> = got.iter().map(|s| s.entries.iter().map(|e| e.ts).collect()).collect();
        assert_eq!(ts, vec![vec![9], vec![8, 7]]);
        let got = keep_first(vec![sr("a", &[1, 5, 9]), sr("b", &[2, 7, 8])], 3, Direction::Forward);
        let ts: Vec<Vec<i64>> = got.iter().map(|s| s.entries.iter().map(|e| e.ts).collect()).collect();
        assert_eq!(ts, vec![vec![1, 5], vec![2]]);
    }

    #[test]
    fn interval_spaces_entries_across_streams_and_pieces() {
        let spaced = |streams: Vec<StreamResult>, dir, last: &mut Option<i64>| -> Vec<(String, Vec<i64>)> {
            keep_spaced(streams, dir, 10, last).iter().map(|s| (s.labels.to_string(), s.entries.iter().map(|e| e.ts).collect())).collect()
        };
        let (a, b) = (r#"{s="a"}"#.to_string(), r#"{s="b"}"#.to_string());
        let mut last = None;
        let got = spaced(vec![sr("a", &[0, 4, 12, 25]), sr("b", &[3, 10, 21, 22])], Direction::Forward, &mut last);
        assert_eq!(got, [(a.clone(), vec![0]), (b.clone(), vec![10, 21])]);
        // The walk goes on into the next piece; of equal times, the stream first in label order.
        let got = spaced(vec![sr("b", &[30, 35, 36]), sr("a", &[35])], Direction::Forward, &mut last);
        assert_eq!(got, [(a.clone(), vec![35])]);
        let mut last = None;
        let got = spaced(vec![sr("a", &[30, 19, 5]), sr("b", &[29, 20, 9])], Direction::Backward, &mut last);
        assert_eq!(got, [(a, vec![30]), (b, vec![20, 9])]);
    }

    #[test]
    fn duplicates_at_crowded_timestamps_are_dropped() {
        let mut entries: Vec<Entry> = (0..100_000).map(|i| Entry::new(5, format!("{}", i % 50_000))).collect();
        entries.extend((0..3).map(|i| Entry::new(6, format!("{i}"))));
        entries.push(Entry::new(6, "0"));
        dedup_equal_timestamps(&mut entries);
        assert_eq!(entries.len(), 50_000 + 3);
        assert_eq!(entries.iter().filter(|e| e.ts == 6).count(), 3);
    }

    #[test]
    fn ties_at_the_boundary_keep_exactly_limit() {
        let got = keep_first(vec![sr("a", &[1, 3]), sr("b", &[3, 4])], 2, Direction::Forward);
        assert_eq!(got.iter().map(|s| s.entries.len()).sum::<usize>(), 2);
    }
}
