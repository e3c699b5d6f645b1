//! The compactor: merges each tenant's small index segments of a day into
//! one, enforces `retention_period` by dropping the refs of expired chunks
//! and deleting those chunks, and executes delete requests past their cancel
//! period by rewriting the chunks they cover without the deleted lines.
//!
//! Order of writes, so a crash at any point loses no live data: the merged
//! segment is written (durable) before the segments it replaces are
//! deleted, and expired chunks are deleted last (a crash can only leave an
//! unreferenced chunk behind, removed by a later round).

use std::collections::{BTreeMap, HashMap};
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
                    // A round runs as its own task: should it panic (a bug,
                    // or a client's delete request), the next round still comes.
                    let this = self.clone();
                    match tokio::spawn(async move { this.compact(crate::time::now_ns()).await }).await {
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
        days: BTreeMap<i64, Vec<String>>,
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
                refs.extend(decode_segment(&bytes).map_err(|e| {
                    self.metrics.corrupt_objects.inc();
                    CompactError::Corrupt { key: key.clone(), problem: e.to_string() }
                })?);
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
                let labels = LabelSet::parse(&r.labels).unwrap_or_default();
                let f = if limits.retention_cutoff(&labels, now).is_some_and(|c| r.through < c) {
                    expired += 1;
                    Some(None)
                } else {
                    match self.apply_deletes(r, deletes).await {
                        Ok(f) => f,
                        // Already rewritten or removed by an earlier round.
                        Err(CompactError::Store(ObjectError::NotFound(_))) => Some(None),
                        Err(e) => return Err(e),
                    }
                };
                fate.insert(r.key.clone(), f);
            }
        }
        let mut listed: std::collections::HashSet<String> = std::collections::HashSet::new();
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
                let bytes = encode_segment(&new_refs);
                let key = format!("index/{tenant}/{day}/c-{:08x}", crc32c::crc32c(&bytes));
                self.store.put(&key, bytes).await?;
                written = Some(key);
            }
            for old in keys.iter().filter(|k| Some(*k) != written.as_ref()) {
                self.store.delete(old).await?;
            }
        }
        // Chunks no segment lists any more.
        for (key, f) in &fate {
            if f.is_some() && !listed.contains(key) {
                self.store.delete(key).await?;
            }
        }
        self.metrics.chunks_deleted_by_retention.inc_by(expired as u64);
        if expired > 0 || fate.values().any(Option::is_some) {
            tracing::info!(tenant, expired, rewritten = fate.values().filter(|f| matches!(f, Some(Some(_)))).count(), "compacted");
        }
        Ok(())
    }

    /// One round over all tenants.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn compact(&self, now: i64) -> Result<(), CompactError> {
        if let Err(e) = self.deletes.refresh().await {
            tracing::warn!(error = %e, "cannot refresh delete requests");
        }
        let deletes = self.deletes.executable(now);
        let keys = self.store.list("index/").await?;
        let mut tenants: BTreeMap<String, BTreeMap<i64, Vec<String>>> = BTreeMap::new();
        for key in keys {
            let (Some(tenant), Some(day)) = (key.split('/').nth(1), index_day(&key)) else { continue };
            tenants.entry(tenant.to_string()).or_default().entry(day).or_default().push(key);
        }
        for (tenant, days) in tenants {
            self.compact_tenant(&tenant, days, &deletes, now).await?;
        }
        Ok(())
    }
}
