//! Reading what a query selects: every matching stream's unflushed entries
//! from its partition's leader and its flushed chunks from object storage,
//! merged by timestamp without the duplicates a flush hand-over can
//! produce. Streams are decoded in batches on every core, batches of all
//! queries taking turns per tenant; a chunk block is skipped when the
//! query's leading line filters rule it out.
//!
//! PERFORMANCE-CRITICAL PATH: every entry a query reads passes here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use balsa_logql::labels::LabelSet;
use balsa_logql::{LineFilter, Matcher};
use balsa_storage::chunk::{Decoded, LineSieve};
use balsa_storage::index::ChunkRef;
use balsa_storage::Entry;
use futures::{StreamExt, TryStreamExt};

use super::{fair, split_tenant_matchers, tag_tenant, Querier, QueryError, ScanStats, DEADLINE};
use crate::deletes::filter_entries;
use crate::ingester::read::{wire_matchers, HeadLimit, ReadRequest};
use crate::metrics::Metrics;

impl Querier {
    /// `f` over every stream of `tenants` that `scan` selects, stream by
    /// stream as their entries are gathered, on every core: only the streams
    /// of one batch are held as lines at a time. Results in the streams'
    /// order. With several tenants (`X-Scope-OrgID: a|b`) each stream
    /// carries `__tenant_id__`, which selectors may match, as in Loki.
    pub(super) async fn map_streams<T: Send>(
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
                // Mostly sorted already (one chunk, or chunks in order):
                // checked first, as the sort would allocate its scratch.
                if !entries.is_sorted_by_key(|e| e.ts) {
                    entries.sort_by_key(|e| e.ts);
                }
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
}

/// Whether the running request's deadline has passed.
fn past(deadline: Option<std::time::Instant>) -> bool {
    deadline.is_some_and(|d| std::time::Instant::now() >= d)
}

/// What a query reads: the streams matching `matchers`, their entries in
/// `[from, through)` whose lines pass `prefilter`.
#[derive(Clone, Copy)]
pub(super) struct Scan<'a> {
    pub matchers: &'a [Matcher],
    pub prefilter: &'a [LineFilter],
    pub from: i64,
    pub through: i64,
    /// For log queries the pipeline cannot shrink: how many entries of
    /// each stream's head can matter ([`HeadLimit`]); checked again per
    /// tenant (deletes, retention).
    pub head_limit: Option<HeadLimit>,
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
/// list sorted by timestamp, in place (no second list of a stream's
/// entries); only entries sharing a timestamp are compared, through
/// positions by [`Entry::same_hash`] once there are many.
fn dedup_equal_timestamps(entries: &mut Vec<Entry>) {
    const INDEX_FROM: usize = 16;
    // `entries[..kept]` is the result so far; kept entries move down.
    let mut kept = 0;
    let mut run_start = 0;
    let mut index: HashMap<u64, Vec<usize>> = HashMap::new();
    for r in 0..entries.len() {
        let keep = {
            let e = &entries[r];
            let same = |x: &Entry| x.line == e.line && x.metadata == e.metadata;
            if kept == 0 || entries[kept - 1].ts != e.ts {
                run_start = kept;
                index.clear();
                true
            } else if kept - run_start < INDEX_FROM {
                !entries[run_start..kept].iter().any(same)
            } else {
                if index.is_empty() {
                    for (i, x) in entries.iter().enumerate().take(kept).skip(run_start) {
                        index.entry(x.same_hash()).or_default().push(i);
                    }
                }
                let at = index.entry(e.same_hash()).or_default();
                let duplicate = at.iter().any(|&i| same(&entries[i]));
                if !duplicate {
                    at.push(kept);
                }
                !duplicate
            }
        };
        if keep {
            entries.swap(kept, r);
            kept += 1;
        }
    }
    entries.truncate(kept);
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

    #[test]
    fn duplicates_at_crowded_timestamps_are_dropped() {
        let mut entries: Vec<Entry> = (0..100_000).map(|i| Entry::new(5, format!("{}", i % 50_000))).collect();
        entries.extend((0..3).map(|i| Entry::new(6, format!("{i}"))));
        entries.push(Entry::new(6, "0"));
        dedup_equal_timestamps(&mut entries);
        assert_eq!(entries.len(), 50_000 + 3);
        // The first of each, in their order.
        let lines: Vec<(i64, &str)> = entries.iter().map(|e| (e.ts, e.line.as_str())).collect();
        let want: Vec<(i64, String)> = (0..50_000).map(|i| (5, i.to_string())).chain((0..3).map(|i| (6, i.to_string()))).collect();
        assert_eq!(lines, want.iter().map(|(t, l)| (*t, l.as_str())).collect::<Vec<_>>());
    }
}
