//! The compactor: merges each tenant's small index segments of a day into
//! one, enforces `retention_period` by dropping the refs of expired chunks
//! and deleting those chunks, and executes delete requests past their cancel
//! period by rewriting the chunks they cover without the deleted lines.
//!
//! Order of writes, so a crash at any point loses no live data: the merged
//! segment is written (durable) before the segments it replaces are
//! deleted, and expired chunks are deleted last (a crash can only leave an
//! unreferenced chunk behind, removed by a later round).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use balsa_storage::chunk::{self, Chunk, Codec};
use balsa_storage::index::{decode_segment, encode_segment, ChunkRef};
use balsa_storage::Entry;
use balsa_storage::object_store::{ObjectError, ObjectStore};

use crate::deletes::{filter_entries, ActiveDelete, Deletes};
use crate::ingester::flush::{chunk_object_key, index_day};
use crate::labels::LabelSet;
use crate::overrides::Overrides;
use crate::metrics::Metrics;

/// Why a compaction round stopped.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Store(#[from] ObjectError),
    #[error("index segment {key} is corrupt: {problem}")]
    Corrupt { key: String, problem: String },
}

/// Compacts index segments and applies retention.
pub struct Compactor {
    store: Arc<dyn ObjectStore>,
    overrides: Arc<Overrides>,
    deletes: Arc<Deletes>,
    interval: Duration,
    metrics: Arc<Metrics>,
}

impl Compactor {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        overrides: Arc<Overrides>,
        deletes: Arc<Deletes>,
        interval: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { store, overrides, deletes, interval, metrics }
    }

    /// Rewrites a chunk without the lines `deletes` cover. `None`: nothing
    /// to remove. `Some(None)`: every line goes (drop the ref).
    async fn apply_deletes(&self, r: &ChunkRef, deletes: &[ActiveDelete]) -> Result<Option<Option<ChunkRef>>, CompactError> {
        let Ok(labels) = LabelSet::parse(&r.labels) else { return Ok(None) };
        let relevant: Vec<ActiveDelete> = deletes
            .iter()
            .filter(|d| d.req.tenant == r.tenant && d.req.start <= r.through && d.req.end >= r.from && d.matches_stream(&labels))
            .cloned()
            .collect();
        if relevant.is_empty() {
            return Ok(None);
        }
        let bytes = self.store.get(&r.key).await?;
        let corrupt = |e: String| CompactError::Corrupt { key: r.key.clone(), problem: e };
        let mut entries: Vec<Entry> = Chunk::open(&bytes)
            .map_err(|e| corrupt(e.to_string()))?
            .entries(i64::MIN, i64::MAX)
            .map_err(|e| corrupt(e.to_string()))?;
        let before = entries.len();
        filter_entries(&relevant, &labels, &mut entries);
        if entries.len() == before {
            return Ok(None);
        }
        if entries.is_empty() {
            return Ok(Some(None));
        }
        let bytes = chunk::encode(&entries, Codec::default());
        let (from, through) = (entries[0].ts, entries[entries.len() - 1].ts);
        let key = chunk_object_key(&r.tenant, &r.labels, from, through, &bytes);
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
        let mut every = tokio::time::interval(self.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    if let Err(e) = self.compact(crate::time::now_ns()).await {
                        tracing::warn!(error = %e, "compaction round failed; retrying next round");
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

    /// One round over all tenants.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn compact(&self, now: i64) -> Result<(), CompactError> {
        if let Err(e) = self.deletes.refresh().await {
            tracing::warn!(error = %e, "cannot refresh delete requests");
        }
        let deletes = self.deletes.executable(now);
        let keys = self.store.list("index/").await?;
        let mut groups: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
        for key in keys {
            let (Some(tenant), Some(day)) = (key.split('/').nth(1), index_day(&key)) else { continue };
            groups.entry((tenant.to_string(), day)).or_default().push(key);
        }
        for ((tenant, day), keys) in groups {
            let limits = self.overrides.get(&tenant);
            let mut refs: Vec<ChunkRef> = Vec::new();
            for key in &keys {
                let bytes = match self.store.get(key).await {
                    Ok(b) => b,
                    Err(ObjectError::NotFound(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                let seg = decode_segment(&bytes).map_err(|e| {
                    self.metrics.corrupt_objects.inc();
                    CompactError::Corrupt { key: key.clone(), problem: e.to_string() }
                })?;
                refs.extend(seg);
            }
            let (keep, expired): (Vec<ChunkRef>, Vec<ChunkRef>) = refs.into_iter().partition(|r| {
                let labels = LabelSet::parse(&r.labels).unwrap_or_default();
                limits.retention_cutoff(&labels, now).is_none_or(|c| r.through >= c)
            });
            let mut rewritten = Vec::with_capacity(keep.len());
            let mut replaced = Vec::new();
            for r in keep {
                match self.apply_deletes(&r, &deletes).await? {
                    None => rewritten.push(r),
                    Some(new) => {
                        rewritten.extend(new);
                        replaced.push(r);
                    }
                }
            }
            let keep = rewritten;
            if keys.len() <= 1 && expired.is_empty() && replaced.is_empty() {
                continue;
            }
            let mut written = None;
            if !keep.is_empty() {
                let bytes = encode_segment(&keep);
                let key = format!("index/{tenant}/{day}/c-{:08x}", crc32c::crc32c(&bytes));
                self.store.put(&key, bytes).await?;
                written = Some(key);
            }
            for old in keys.iter().filter(|k| Some(*k) != written.as_ref()) {
                self.store.delete(old).await?;
            }
            for r in &expired {
                self.store.delete(&r.key).await?;
                self.metrics.chunks_deleted_by_retention.inc();
            }
            for r in replaced.drain(..) {
                if !keep.iter().any(|k| k.key == r.key) {
                    self.store.delete(&r.key).await?;
                }
            }
            tracing::info!(tenant, day, segments = keys.len(), kept = keep.len(), expired = expired.len(), "compacted index");
        }
        Ok(())
    }
}
