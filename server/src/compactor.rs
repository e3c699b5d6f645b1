//! The compactor: merges each tenant's small index segments of a day into
//! one, and enforces `retention_period` by dropping the refs of expired
//! chunks and deleting those chunks.
//!
//! Order of writes, so a crash at any point loses no live data: the merged
//! segment is written (durable) before the segments it replaces are
//! deleted, and expired chunks are deleted last (a crash can only leave an
//! unreferenced chunk behind, removed by a later round).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use balsa_storage::index::{decode_segment, encode_segment, ChunkRef};
use balsa_storage::object_store::{ObjectError, ObjectStore};

use crate::ingester::flush::index_day;
use crate::limits::Limits;
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
    interval: Duration,
    metrics: Arc<Metrics>,
}

impl Compactor {
    pub fn new(store: Arc<dyn ObjectStore>, overrides: Arc<Overrides>, interval: Duration, metrics: Arc<Metrics>) -> Self {
        Self { store, overrides, interval, metrics }
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

    /// The oldest timestamp a tenant keeps at `now` (`None`: keep forever).
    pub fn retention_cutoff(limits: &Limits, now: i64) -> Option<i64> {
        let p = limits.retention_period.0;
        (!p.is_zero()).then(|| now.saturating_sub(p.as_nanos() as i64))
    }

    /// One round over all tenants.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn compact(&self, now: i64) -> Result<(), CompactError> {
        let keys = self.store.list("index/").await?;
        let mut groups: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
        for key in keys {
            let (Some(tenant), Some(day)) = (key.split('/').nth(1), index_day(&key)) else { continue };
            groups.entry((tenant.to_string(), day)).or_default().push(key);
        }
        for ((tenant, day), keys) in groups {
            let cutoff = Self::retention_cutoff(&self.overrides.get(&tenant), now);
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
            let (keep, expired): (Vec<ChunkRef>, Vec<ChunkRef>) =
                refs.into_iter().partition(|r| cutoff.is_none_or(|c| r.through >= c));
            if keys.len() <= 1 && expired.is_empty() {
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
            tracing::info!(tenant, day, segments = keys.len(), kept = keep.len(), expired = expired.len(), "compacted index");
        }
        Ok(())
    }
}
