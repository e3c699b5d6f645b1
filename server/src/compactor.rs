//! The compactor: merges each tenant's small index segments of a day into
//! one, enforces `retention_period` by dropping the refs of expired chunks
//! and deleting those chunks, and executes delete requests past their cancel
//! period by rewriting the chunks they cover without the deleted lines.
//!
//! Order of writes, so a crash at any point loses no live data: the merged
//! segment is written (durable) before the segments it replaces are
//! deleted. Chunks that no segment lists any more are not deleted at once:
//! a query may have listed them just before. They are named in a
//! **tombstone** (`compactor/tombstones/<tenant>/<due>-<crc>`), written
//! before the segments change, and deleted by the first round after
//! `retention_delete_delay` — and only if no segment lists them then (a
//! crash between tombstone and segments must not delete a listed chunk).
//!
//! A tenant whose segments cannot be read (corrupt, or listing a chunk the
//! store lacks) is reported and skipped; the other tenants are compacted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use balsa_storage::chunk::{self, Chunk, Codec};
use balsa_storage::index::{decode_segment, encode_segment, ChunkRef};
use balsa_storage::keys::{self as bucket, TOMBSTONES_ROOT as TOMBSTONES};
use balsa_storage::Entry;
use balsa_storage::object_store::{ObjectError, ObjectStore};

use crate::deletes::{filter_entries, ActiveDelete, Deletes};
use balsa_logql::labels::LabelSet;
use crate::overrides::Overrides;
use crate::metrics::Metrics;

/// Why a compaction round stopped.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Store(#[from] ObjectError),
    #[error("object {key} is corrupt: {problem}")]
    Corrupt { key: String, problem: String },
    #[error("chunk {key} is listed by the index but missing from the object store")]
    Missing { key: String },
    #[error("tenant {tenant}: {source}")]
    Tenant { tenant: String, source: Box<CompactError> },
    #[error(transparent)]
    Chunk(#[from] balsa_storage::chunk::ChunkError),
    #[error(transparent)]
    Segment(#[from] balsa_storage::index::SegmentError),
}

/// Settings of the compactor.
#[derive(Clone, Copy, Debug)]
pub struct CompactorConfig {
    /// Time between rounds (`compactor.compaction_interval`).
    pub interval: Duration,
    /// How long an unlisted chunk stays readable (`retention_delete_delay`).
    pub delete_delay: Duration,
}

/// Compacts index segments and applies retention.
pub struct Compactor {
    store: Arc<dyn ObjectStore>,
    overrides: Arc<Overrides>,
    deletes: Arc<Deletes>,
    cfg: CompactorConfig,
    metrics: CompactorMetrics,
}

/// What the compactor counts.
struct CompactorMetrics {
    /// Shared with the querier's reads of the bucket.
    corrupt_objects: prometheus::IntCounter,
    chunks_deleted_by_retention: prometheus::IntCounter,
    compaction_failures: prometheus::IntCounter,
}

/// One tenant's objects as a round lists them.
#[derive(Default)]
struct Listing {
    /// Index segment keys by day.
    days: BTreeMap<i64, Vec<String>>,
    /// Tombstone keys.
    tombs: Vec<String>,
}

impl Compactor {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        overrides: Arc<Overrides>,
        deletes: Arc<Deletes>,
        cfg: CompactorConfig,
        metrics: &Metrics,
    ) -> Self {
        let metrics = CompactorMetrics {
            corrupt_objects: metrics.corrupt_objects.clone(),
            chunks_deleted_by_retention: metrics
                .counter("balsa_compactor_chunks_deleted_total", "Chunks deleted because they expired (retention)."),
            compaction_failures: metrics.counter(
                "balsa_compactor_tenant_failures_total",
                "Tenants a compaction round could not compact (reported and skipped).",
            ),
        };
        Self { store, overrides, deletes, cfg, metrics }
    }

    fn corrupt(&self, key: &str, problem: String) -> CompactError {
        self.metrics.corrupt_objects.inc();
        CompactError::Corrupt { key: key.to_string(), problem }
    }

    /// Rewrites a chunk without the lines `deletes` cover. `None`: nothing
    /// to remove. `Some(None)`: every line goes (drop the ref).
    async fn apply_deletes(&self, r: &ChunkRef, labels: &LabelSet, deletes: &[ActiveDelete]) -> Result<Option<Option<ChunkRef>>, CompactError> {
        let relevant: Vec<ActiveDelete> = deletes
            .iter()
            .filter(|d| d.req.tenant == r.tenant && d.req.start <= r.through && d.req.end >= r.from && d.matches_stream(labels))
            .cloned()
            .collect();
        if relevant.is_empty() {
            return Ok(None);
        }
        let bytes = match self.store.get(&r.key).await {
            Ok(b) => b,
            Err(ObjectError::NotFound(_)) => return Err(CompactError::Missing { key: r.key.clone() }),
            Err(e) => return Err(e.into()),
        };
        let corrupt = |e: String| self.corrupt(&r.key, e);
        let mut entries: Vec<Entry> = Chunk::open(&bytes)
            .map_err(|e| corrupt(e.to_string()))?
            .entries(i64::MIN, i64::MAX)
            .map_err(|e| corrupt(e.to_string()))?;
        let before = entries.len();
        filter_entries(&relevant, labels, &mut entries);
        if entries.len() == before {
            return Ok(None);
        }
        if entries.is_empty() {
            return Ok(Some(None));
        }
        let bytes = chunk::encode(&entries, Codec::default())?;
        let (from, through) = (entries[0].ts, entries[entries.len() - 1].ts);
        let key = bucket::chunk(&r.tenant, &r.labels, from, through, &bytes);
        self.store.put(&key, bytes).await?;
        Ok(Some(Some(ChunkRef {
            from,
            through,
            key,
            entries: entries.len() as u64,
            bytes: entries.iter().map(|e| e.size() as u64).sum(),
            ..r.clone()
        })))
    }

    /// Compacts every `interval` until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut every = tokio::time::interval(self.cfg.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    // A round runs as its own task: should it panic (a bug,
                    // or a client's delete request), the next round still comes.
                    let this = self.clone();
                    match tokio::spawn(async move { this.compact(balsa_logql::time::now_ns()).await }).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::warn!(error = %e, "compaction round failed; retrying next round"),
                        Err(e) => tracing::error!(error = %e, "compaction round panicked; retrying next round"),
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
        }
    }

    /// One tenant: decides once per chunk (a chunk spanning days is listed
    /// in each day's segments) whether it expired or loses deleted lines,
    /// then rewrites every day's segments, then deletes what no segment
    /// lists any more.
    async fn compact_tenant(
        &self,
        tenant: &str,
        Listing { days, tombs }: Listing,
        deletes: &[ActiveDelete],
        now: i64,
    ) -> Result<(), CompactError> {
        let limits = self.overrides.get(tenant);
        let mut segments: BTreeMap<i64, (Vec<String>, Vec<ChunkRef>)> = BTreeMap::new();
        for (day, keys) in days {
            let mut refs = Vec::new();
            for key in &keys {
                let bytes = match self.store.get(key).await {
                    Ok(b) => b,
                    Err(ObjectError::NotFound(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                refs.extend(decode_segment(&bytes).map_err(|e| self.corrupt(key, e.to_string()))?);
            }
            segments.insert(day, (keys, refs));
        }
        // Each chunk's fate, decided once: kept as is, replaced, or gone.
        let mut fate: HashMap<String, Option<Option<ChunkRef>>> = HashMap::new();
        let mut expired = 0usize;
        for (_, refs) in segments.values() {
            for r in refs {
                if fate.contains_key(&r.key) {
                    continue;
                }
                // Balsa writes labels in normal form: unparsable ones are
                // corruption, not a stream to give the default retention.
                let labels = LabelSet::parse(&r.labels)
                    .map_err(|e| self.corrupt(&r.key, format!("unparsable stream labels {:?} in its index entry: {e}", r.labels)))?;
                let f = if limits.retention_cutoff(&labels, now).is_some_and(|c| r.through < c) {
                    expired += 1;
                    Some(None)
                } else {
                    self.apply_deletes(r, &labels, deletes).await?
                };
                fate.insert(r.key.clone(), f);
            }
        }
        // Chunks that will leave the index: tombstoned before any segment
        // changes, deleted after the delay by a later round.
        let mut leaving: Vec<&str> = fate.iter().filter(|(_, f)| f.is_some()).map(|(k, _)| k.as_str()).collect();
        leaving.sort_unstable();
        if !leaving.is_empty() {
            let body = leaving.join("\n").into_bytes();
            let due = now.saturating_add(i64::try_from(self.cfg.delete_delay.as_nanos()).unwrap_or(i64::MAX));
            let key = bucket::tombstone(tenant, due, &body);
            self.store.put(&key, body).await?;
        }
        let mut listed: HashSet<String> = HashSet::new();
        for (day, (keys, refs)) in &segments {
            let changed = refs.iter().any(|r| fate.get(&r.key).is_some_and(Option::is_some));
            let new_refs: Vec<ChunkRef> = refs
                .iter()
                .filter_map(|r| match fate.get(&r.key) {
                    Some(Some(replacement)) => replacement.clone(),
                    _ => Some(r.clone()),
                })
                .collect();
            listed.extend(new_refs.iter().map(|r| r.key.clone()));
            if keys.len() <= 1 && !changed {
                continue;
            }
            let mut written = None;
            if !new_refs.is_empty() {
                let bytes = encode_segment(&new_refs)?;
                let key = bucket::compacted_segment(tenant, *day, &bytes);
                self.store.put(&key, bytes).await?;
                written = Some(key);
            }
            for old in keys.iter().filter(|k| Some(*k) != written.as_ref()) {
                self.store.delete(old).await?;
            }
        }
        self.delete_due(&tombs, &listed, now).await?;
        self.metrics.chunks_deleted_by_retention.inc_by(expired as u64);
        if expired > 0 || fate.values().any(Option::is_some) {
            tracing::info!(tenant, expired, rewritten = fate.values().filter(|f| matches!(f, Some(Some(_)))).count(), "compacted");
        }
        Ok(())
    }

    /// Deletes the chunks of the tenant's due tombstones (`tombs`) that no
    /// segment lists (`listed`: every chunk the tenant's segments list
    /// now), then the tombstones.
    async fn delete_due(&self, tombs: &[String], listed: &HashSet<String>, now: i64) -> Result<(), CompactError> {
        for tomb in tombs {
            if bucket::tombstone_tenant_due(&tomb).is_none_or(|(_, due)| due > now) {
                continue;
            }
            let body = match self.store.get(tomb).await {
                Ok(b) => b,
                Err(ObjectError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let body = String::from_utf8(body).map_err(|e| self.corrupt(tomb, e.to_string()))?;
            for key in body.lines().filter(|k| !k.is_empty() && !listed.contains(*k)) {
                self.store.delete(key).await?;
            }
            self.store.delete(tomb).await?;
        }
        Ok(())
    }

    /// One round over all tenants. A tenant that fails is reported (and
    /// counted) and skipped: one corrupt object must not stop retention and
    /// deletes for everyone else. The first failure is returned at the end.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn compact(&self, now: i64) -> Result<(), CompactError> {
        if let Err(e) = self.deletes.refresh().await {
            tracing::warn!(error = %e, "cannot refresh delete requests");
        }
        let deletes = self.deletes.executable(now);
        let mut tenants: BTreeMap<String, Listing> = BTreeMap::new();
        for key in self.store.list(bucket::INDEX_ROOT).await? {
            let Some((tenant, day)) = bucket::segment_tenant_day(&key) else { continue };
            tenants.entry(tenant.to_string()).or_default().days.entry(day).or_default().push(key);
        }
        // Tenants whose segments are all gone may still have tombstones.
        for key in self.store.list(TOMBSTONES).await? {
            if let Some((tenant, _)) = bucket::tombstone_tenant_due(&key) {
                tenants.entry(tenant.to_string()).or_default().tombs.push(key);
            }
        }
        let mut first_failure = None;
        for (tenant, listing) in tenants {
            if let Err(e) = self.compact_tenant(&tenant, listing, &deletes, now).await {
                self.metrics.compaction_failures.inc();
                tracing::error!(tenant = %tenant, error = %e, "cannot compact this tenant; going on with the others");
                first_failure.get_or_insert(CompactError::Tenant { tenant, source: Box::new(e) });
            }
        }
        first_failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use balsa_storage::object_store::FilesystemStore;

    const H: i64 = 3_600_000_000_000;

    fn chunk_ref(tenant: &str, labels: &str, at: i64, key: &str) -> ChunkRef {
        ChunkRef { tenant: tenant.into(), labels: labels.into(), from: at, through: at, key: key.into(), entries: 1, bytes: 1 }
    }

    async fn compactor(store: Arc<dyn ObjectStore>, delay: Duration) -> Compactor {
        let limits = crate::limits::Limits { retention_period: crate::units::Dur(Duration::from_secs(2 * 3600)), ..Default::default() };
        let overrides = Arc::new(Overrides::new(limits, None).unwrap());
        let deletes = Arc::new(Deletes::load(store.clone(), Duration::from_secs(3600), Duration::from_secs(10)).await.unwrap());
        let cfg = CompactorConfig { interval: Duration::from_secs(60), delete_delay: delay };
        Compactor::new(store, overrides, deletes, cfg, &Metrics::new())
    }

    /// A query that listed a chunk just before the compactor dropped it
    /// must still read it: expired chunks stay for `retention_delete_delay`.
    /// And a corrupt segment of one tenant stops nobody else's retention.
    #[tokio::test]
    async fn dropped_chunks_stay_readable_for_the_delay_and_one_bad_tenant_blocks_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(FilesystemStore::new(dir.path()));
        let now = 100 * 24 * H;
        let day = (now - 3 * H).div_euclid(24 * H);
        let old = chunk_ref("t", r#"{a="1"}"#, now - 3 * H, "chunks/t/old");
        let new = chunk_ref("t", r#"{a="1"}"#, now - H / 2, "chunks/t/new");
        store.put("chunks/t/old", b"x".to_vec()).await.unwrap();
        store.put("chunks/t/new", b"y".to_vec()).await.unwrap();
        store.put(&format!("index/t/{day}/0-1"), encode_segment(&[old.clone(), new.clone()]).unwrap()).await.unwrap();
        store.put(&format!("index/bad/{day}/0-1"), b"not a segment".to_vec()).await.unwrap();

        let c = compactor(store.clone(), Duration::from_secs(3600)).await;
        let err = c.compact(now).await.expect_err("the corrupt tenant is reported");
        assert!(err.to_string().contains("index/bad/"), "{err}");
        assert_eq!(c.metrics.compaction_failures.get(), 1);
        let listed: Vec<ChunkRef> = {
            let keys = store.list("index/t/").await.unwrap();
            assert_eq!(keys.len(), 1);
            decode_segment(&store.get(&keys[0]).await.unwrap()).unwrap()
        };
        assert_eq!(listed, vec![new.clone()], "tenant t was compacted despite tenant bad");
        assert_eq!(store.get("chunks/t/old").await.unwrap(), b"x", "still readable during the delay");

        let _ = c.compact(now + H / 2).await;
        assert!(store.get("chunks/t/old").await.is_ok(), "not due yet");
        let _ = c.compact(now + H + 1).await;
        assert!(matches!(store.get("chunks/t/old").await, Err(ObjectError::NotFound(_))), "deleted once due");
        assert!(store.get("chunks/t/new").await.is_ok(), "a listed chunk is never deleted");
        assert!(store.list(TOMBSTONES).await.unwrap().is_empty(), "the tombstone is gone with its chunks");
    }

    /// A tombstone whose chunks are listed again (a crash after the
    /// tombstone, before the segments changed) deletes nothing listed.
    #[tokio::test]
    async fn a_tombstone_never_deletes_a_listed_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(FilesystemStore::new(dir.path()));
        let now = 100 * 24 * H;
        let live = chunk_ref("t", r#"{a="1"}"#, now - H / 2, "chunks/t/live");
        store.put("chunks/t/live", b"y".to_vec()).await.unwrap();
        store.put(&format!("index/t/{}/0-1", now.div_euclid(24 * H)), encode_segment(&[live]).unwrap()).await.unwrap();
        store.put(&format!("{TOMBSTONES}t/{:016x}-0", now - 1), b"chunks/t/live".to_vec()).await.unwrap();
        compactor(store.clone(), Duration::ZERO).await.compact(now).await.unwrap();
        assert!(store.get("chunks/t/live").await.is_ok());
        assert!(store.list(TOMBSTONES).await.unwrap().is_empty());
    }

    /// Unparsable labels in an index entry are corruption, reported, not a
    /// stream given the default retention.
    #[tokio::test]
    async fn unparsable_labels_are_reported_not_given_a_default() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(FilesystemStore::new(dir.path()));
        let now = 100 * 24 * H;
        let r = chunk_ref("t", "{not labels", now - H / 2, "chunks/t/x");
        store.put(&format!("index/t/{}/0-1", now.div_euclid(24 * H)), encode_segment(&[r]).unwrap()).await.unwrap();
        let err = compactor(store, Duration::ZERO).await.compact(now).await.expect_err("corrupt");
        assert!(err.to_string().contains("unparsable stream labels"), "{err}");
    }
}
