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
//! Steps 2 and 3 also run as soon as a push cuts a head by size, so under a
//! steady load closed chunks leave memory within seconds instead of
//! waiting up to a period (they would otherwise make every snapshot of the
//! partition carry them: `docs/performance.md`, the push tail).
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
    #[error("encoding a chunk stopped: {0}")]
    Encode(#[from] tokio::task::JoinError),
}

/// What the flusher counts.
struct FlushMetrics {
    chunks: prometheus::IntCounter,
    bytes: prometheus::IntCounter,
    failures: prometheus::IntCounter,
}

/// Uploads closed chunks and index segments of the partitions this node leads.
pub struct Flusher {
    ingester: Arc<Ingester>,
    store: Arc<dyn ObjectStore>,
    cfg: FlushConfig,
    metrics: FlushMetrics,
    round: tokio::sync::Mutex<()>,
}

/// Object key of a chunk: tenant, stream fingerprint, time range, checksum.
pub fn chunk_key(c: &ChunkToFlush, bytes: &[u8]) -> String {
    let from = c.entries.first().map_or(0, |e| e.ts);
    let through = c.entries.last().map_or(0, |e| e.ts);
    keys::chunk(&c.tenant, &c.labels.to_string(), from, through, bytes)
}

/// The index segments (object key → refs) that ship partition `p`'s
/// pending `refs` up to `through_seq`: one per tenant and day, a chunk
/// listed under every day it spans, so a query of any of those days finds
/// it. The same refs always give the same keys (a retried round overwrites).
fn index_segments(p: u32, through_seq: u64, refs: Vec<ChunkRef>) -> BTreeMap<String, Vec<ChunkRef>> {
    let mut out: BTreeMap<String, Vec<ChunkRef>> = BTreeMap::new();
    for r in refs {
        for day in r.from.div_euclid(DAY_NS)..=r.through.div_euclid(DAY_NS) {
            out.entry(keys::shipped_segment(&r.tenant, day, p, through_seq)).or_default().push(r.clone());
        }
    }
    out
}

impl Flusher {
    /// Registers the flush counters on `metrics`.
    pub fn new(ingester: Arc<Ingester>, store: Arc<dyn ObjectStore>, cfg: FlushConfig, metrics: &Metrics) -> Self {
        let metrics = FlushMetrics {
            chunks: metrics.counter("balsa_ingester_chunks_flushed_total", "Chunks uploaded to object storage."),
            bytes: metrics.counter("balsa_ingester_chunk_bytes_flushed_total", "Compressed bytes of chunks uploaded."),
            failures: metrics.counter("balsa_ingester_flush_failures_total", "Flush rounds that failed (retried)."),
        };
        Self { ingester, store, cfg, metrics, round: tokio::sync::Mutex::new(()) }
    }

    /// Flushes every `period`, and uploads closed chunks as soon as a push
    /// cuts them, until `stop` turns true. After an upload fails, cut chunks
    /// wait for the next period (no retry loop against a failing store).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut every = tokio::time::interval(self.cfg.period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backing_off = false;
        loop {
            let result = tokio::select! {
                _ = every.tick() => {
                    backing_off = false;
                    self.flush(false).await
                }
                _ = self.ingester.chunks_cut(), if !backing_off => self.upload_cut().await,
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                    Ok(())
                }
            };
            if let Err(e) = result {
                backing_off = true;
                self.metrics.failures.inc();
                tracing::warn!(error = %e, "flush round failed; retrying next round");
            }
        }
    }

    /// Uploads and records the closed chunks of the led partitions (no
    /// tick, no index shipping: those wait for the period).
    async fn upload_cut(&self) -> Result<(), FlushError> {
        let _one_at_a_time = self.round.lock().await;
        for p in self.ingester.led_partitions() {
            if self.ingester.read_local(p, |s| s.flush_queue_len())? > 0 {
                self.upload(p).await?;
            }
        }
        Ok(())
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
        self.upload(p).await?;
        if let Some((through_seq, refs)) = self.ingester.read_local(p, |s| s.pending_refs())? {
            for (key, refs) in index_segments(p, through_seq, refs) {
                self.store.put(&key, encode_segment(&refs)?).await?;
            }
            self.ingester.propose(p, &Command::IndexShipped { through_seq }).await?;
        }
        Ok(())
    }

    /// Steps 2 and 3 for partition `p`: upload its closed chunks and
    /// propose that they are flushed. Encoding runs off the async workers
    /// (compressing a chunk takes milliseconds of CPU).
    async fn upload(&self, p: u32) -> Result<(), FlushError> {
        let chunks = self.ingester.read_local(p, |s| s.chunks_to_flush())?;
        if chunks.is_empty() {
            return Ok(());
        }
        let mut flushed = Vec::with_capacity(chunks.len());
        for c in chunks {
            let codec = self.cfg.codec;
            let (c, bytes) = tokio::task::spawn_blocking(move || {
                let bytes = chunk::encode(&c.entries, codec);
                (c, bytes)
            })
            .await?;
            let bytes = bytes?;
            let key = chunk_key(&c, &bytes);
            let raw: u64 = c.entries.iter().map(|e| e.size() as u64).sum();
            let size = bytes.len();
            self.store.put(&key, bytes).await?;
            self.metrics.chunks.inc();
            self.metrics.bytes.inc_by(size as u64);
            flushed.push(FlushedChunk {
                stream: c.stream,
                chunk: c.chunk,
                chunk_ref: ChunkRef {
                    tenant: c.tenant,
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(tenant: &str, from: i64, through: i64) -> ChunkRef {
        ChunkRef { tenant: tenant.into(), labels: "{a=\"b\"}".into(), from, through, key: format!("c-{tenant}-{from}"), entries: 1, bytes: 1 }
    }

    /// A chunk across midnight is listed in both days' segments; tenants
    /// never share a segment; keys name the partition and sequence.
    #[test]
    fn each_chunk_is_listed_under_every_day_it_spans_per_tenant() {
        let day = DAY_NS;
        let refs = vec![chunk("a", day - 10, day + 10), chunk("a", 5, 6), chunk("b", 2 * day, 2 * day + 1)];
        let segments = index_segments(3, 42, refs);
        let listed: Vec<(String, Vec<String>)> =
            segments.iter().map(|(k, v)| (k.clone(), v.iter().map(|r| r.key.clone()).collect())).collect();
        assert_eq!(
            listed,
            [
                (keys::shipped_segment("a", 0, 3, 42), vec![format!("c-a-{}", day - 10), "c-a-5".to_string()]),
                (keys::shipped_segment("a", 1, 3, 42), vec![format!("c-a-{}", day - 10)]),
                (keys::shipped_segment("b", 2, 3, 42), vec![format!("c-b-{}", 2 * day)]),
            ]
        );
    }
}
