//! The flush loop of the partitions this node leads.
//!
//! For each led partition, every `flush_check_period` (and on `POST /flush`
//! or shutdown, with `force`):
//! 1. **cut**: if a head is older than `max_chunk_age` or idle longer than
//!    `chunk_idle_period` by the leader's clock, propose `Tick{now}`; every
//!    replica cuts the same heads (the decision is in the log);
//! 2. **upload**: encode each closed chunk (deterministic bytes) and put it
//!    under a content-addressed key — durable when `put` returns;
//! 3. **record**: propose `ChunksFlushed{refs}`; on apply every replica drops
//!    the chunk from memory and keeps its ref as pending;
//! 4. **ship**: write the pending refs as index segments (one per tenant and
//!    day), then propose `IndexShipped{through_seq}`.
//!
//! A crash between any two steps repeats the later steps after restart (or
//! on the new leader): uploads and segments overwrite identical objects,
//! and applying a flush twice changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use balsa_storage::chunk::{self, Codec};
use balsa_storage::index::{encode_segment, ChunkRef};
use balsa_storage::keys;
use balsa_storage::object_store::{ObjectError, ObjectStore};

use super::command::{Command, FlushedChunk, Tick};
use super::partition::ChunkToFlush;
use super::{Ingester, IngesterError};
use crate::metrics::Metrics;

const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// Settings of the flush loop.
#[derive(Clone, Debug)]
pub struct FlushConfig {
    pub max_chunk_age: Duration,
    pub chunk_idle_period: Duration,
    pub codec: Codec,
    pub period: Duration,
}

/// Why a flush round stopped.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error(transparent)]
    Ingester(#[from] IngesterError),
    #[error(transparent)]
    Store(#[from] ObjectError),
    #[error(transparent)]
    Chunk(#[from] balsa_storage::chunk::ChunkError),
    #[error(transparent)]
    Segment(#[from] balsa_storage::index::SegmentError),
}

/// Uploads closed chunks and index segments of the partitions this node leads.
pub struct Flusher {
    ingester: Arc<Ingester>,
    store: Arc<dyn ObjectStore>,
    cfg: FlushConfig,
    metrics: Arc<Metrics>,
    round: tokio::sync::Mutex<()>,
}

/// Object key of a chunk: tenant, stream fingerprint, time range, checksum.
pub fn chunk_key(c: &ChunkToFlush, bytes: &[u8]) -> String {
    let from = c.entries.first().map_or(0, |e| e.ts);
    let through = c.entries.last().map_or(0, |e| e.ts);
    keys::chunk(&c.tenant, &c.labels.to_string(), from, through, bytes)
}

impl Flusher {
    pub fn new(ingester: Arc<Ingester>, store: Arc<dyn ObjectStore>, cfg: FlushConfig, metrics: Arc<Metrics>) -> Self {
        Self { ingester, store, cfg, metrics, round: tokio::sync::Mutex::new(()) }
    }

    /// Flushes every `period` until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut every = tokio::time::interval(self.cfg.period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    if let Err(e) = self.flush(false).await {
                        self.metrics.flush_failures.inc();
                        tracing::warn!(error = %e, "flush round failed; retrying next round");
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

    /// One round over the led partitions; with `force`, every head is cut
    /// and everything is shipped.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn flush(&self, force: bool) -> Result<(), FlushError> {
        let _one_at_a_time = self.round.lock().await;
        for p in self.ingester.led_partitions() {
            self.flush_partition(p, force).await?;
        }
        Ok(())
    }

    async fn flush_partition(&self, p: u32, force: bool) -> Result<(), FlushError> {
        let now = balsa_logql::time::now_ns();
        let max_age = self.cfg.max_chunk_age.as_nanos() as i64;
        let idle = self.cfg.chunk_idle_period.as_nanos() as i64;
        if force || self.ingester.read_local(p, |s| s.needs_tick(now, max_age, idle))? {
            let tick = Tick { now, max_chunk_age: max_age, chunk_idle_period: idle, force };
            self.ingester.propose(p, &Command::Tick(tick)).await?;
        }
        let chunks = self.ingester.read_local(p, |s| s.chunks_to_flush())?;
        if !chunks.is_empty() {
            let mut flushed = Vec::with_capacity(chunks.len());
            for c in &chunks {
                let bytes = chunk::encode(&c.entries, self.cfg.codec)?;
                let key = chunk_key(c, &bytes);
                let raw: u64 = c.entries.iter().map(|e| e.size() as u64).sum();
                let size = bytes.len();
                self.store.put(&key, bytes).await?;
                self.metrics.chunks_flushed.inc();
                self.metrics.chunk_bytes_flushed.inc_by(size as u64);
                flushed.push(FlushedChunk {
                    stream: c.stream,
                    chunk: c.chunk,
                    chunk_ref: ChunkRef {
                        tenant: c.tenant.clone(),
                        labels: c.labels.to_string(),
                        from: c.entries.first().map_or(0, |e| e.ts),
                        through: c.entries.last().map_or(0, |e| e.ts),
                        key,
                        entries: c.entries.len() as u64,
                        bytes: raw,
                    },
                });
            }
            self.ingester.propose(p, &Command::ChunksFlushed(flushed)).await?;
        }
        if let Some((through_seq, refs)) = self.ingester.read_local(p, |s| s.pending_refs())? {
            let mut by_segment: BTreeMap<(String, i64), Vec<ChunkRef>> = BTreeMap::new();
            // A chunk is listed under every day it spans, so a query of any
            // of those days finds it.
            for r in refs {
                for day in r.from.div_euclid(DAY_NS)..=r.through.div_euclid(DAY_NS) {
                    by_segment.entry((r.tenant.clone(), day)).or_default().push(r.clone());
                }
            }
            for ((tenant, day), refs) in by_segment {
                let key = keys::shipped_segment(&tenant, day, p, through_seq);
                self.store.put(&key, encode_segment(&refs)?).await?;
            }
            self.ingester.propose(p, &Command::IndexShipped { through_seq }).await?;
        }
        Ok(())
    }
}
