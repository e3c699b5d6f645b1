//! Reading flushed data: index segments and chunks from object storage,
//! through caches (segments are immutable; chunks are content-addressed).
//!
//! PERFORMANCE-CRITICAL PATH: queries of flushed data fetch and decode here.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use balsa_storage::chunk::{Chunk, Decoded, LineSieve};
use balsa_storage::index::{decode_segment, ChunkRef};
use balsa_storage::keys;
use balsa_storage::object_store::{ObjectError, ObjectStore};
use balsa_storage::Entry;
use parking_lot::Mutex;

use balsa_logql::labels::LabelSet;
use crate::metrics::Metrics;

const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// Why flushed data could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key} is corrupt: {problem}")]
    Corrupt { key: String, problem: String },
    /// The index lists a chunk the store does not have: answering without
    /// it would silently return fewer lines.
    #[error("chunk {key} is listed by the index but missing from the object store")]
    Missing { key: String },
    #[error(transparent)]
    Store(#[from] ObjectError),
}

/// Bounded cache of chunk bytes, oldest first out.
struct ChunkCache {
    max_bytes: usize,
    bytes: usize,
    map: HashMap<String, Arc<Vec<u8>>>,
    order: VecDeque<String>,
}

impl ChunkCache {
    fn get(&self, key: &str) -> Option<Arc<Vec<u8>>> {
        self.map.get(key).cloned()
    }

    fn insert(&mut self, key: String, v: Arc<Vec<u8>>) {
        if v.len() > self.max_bytes || self.map.contains_key(&key) {
            return;
        }
        self.bytes += v.len();
        self.order.push_back(key.clone());
        self.map.insert(key, v);
        while self.bytes > self.max_bytes {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(b) = self.map.remove(&old) {
                self.bytes -= b.len();
            }
        }
    }
}

/// Reads index segments and chunks.
/// A chunk's stored bytes, and whether they came from object storage
/// (rather than the chunk cache).
pub struct Fetched {
    pub bytes: Arc<Vec<u8>>,
    pub downloaded: bool,
}

pub struct StoreReader {
    store: Arc<dyn ObjectStore>,
    segments: Mutex<HashMap<String, Arc<Vec<ChunkRef>>>>,
    chunks: Mutex<ChunkCache>,
    /// Shared with the compactor's reads of the bucket.
    corrupt_objects: prometheus::IntCounter,
    missing_chunks: prometheus::IntCounter,
}

impl StoreReader {
    /// Registers the reader's counters on `metrics`.
    pub fn new(store: Arc<dyn ObjectStore>, chunk_cache_bytes: usize, metrics: &Metrics) -> Self {
        Self {
            store,
            segments: Mutex::new(HashMap::new()),
            chunks: Mutex::new(ChunkCache {
                max_bytes: chunk_cache_bytes,
                bytes: 0,
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            corrupt_objects: metrics.corrupt_objects.clone(),
            missing_chunks: metrics
                .counter("balsa_querier_missing_chunks_total", "Chunks listed by an index segment but gone when read."),
        }
    }

    fn corrupt(&self, key: &str, problem: String) -> StoreError {
        self.corrupt_objects.inc();
        tracing::error!(object = key, %problem, "corrupt object");
        StoreError::Corrupt { key: key.to_string(), problem }
    }

    /// Refs of the tenant's flushed chunks overlapping `[from, through)`,
    /// from every index segment of the days in range. A segment deleted
    /// between listing and reading was replaced by the compactor: list again.
    pub async fn refs(&self, tenant: &str, from: i64, through: i64) -> Result<Vec<ChunkRef>, StoreError> {
        // The compactor replaces segments while we read: if the listing
        // changed under us, read again (a few times at most).
        let mut last = None;
        for _ in 0..3 {
            match self.refs_once(tenant, from, through).await {
                Ok((refs, stable)) if stable => return Ok(refs),
                Ok((refs, _)) => last = Some(refs),
                Err(StoreError::Store(ObjectError::NotFound(_))) => {}
                Err(e) => return Err(e),
            }
        }
        match last {
            Some(refs) => Ok(refs),
            None => Ok(self.refs_once(tenant, from, through).await?.0),
        }
    }

    /// The refs, and whether the listing was the same after reading.
    async fn refs_once(&self, tenant: &str, from: i64, through: i64) -> Result<(Vec<ChunkRef>, bool), StoreError> {
        let (first_day, last_day) = (from.div_euclid(DAY_NS), through.div_euclid(DAY_NS));
        let prefix = keys::index_prefix(tenant);
        let keys = self.store.list(&prefix).await?;
        {
            // Forget cached segments the compactor removed.
            let listed: std::collections::HashSet<&String> = keys.iter().collect();
            self.segments.lock().retain(|k, _| !k.starts_with(&prefix) || listed.contains(k));
        }
        let mut out = Vec::new();
        for key in keys.iter().cloned() {
            if keys::segment_tenant_day(&key).is_some_and(|(_, d)| d < first_day || d > last_day) {
                continue;
            }
            let cached = self.segments.lock().get(&key).cloned();
            let refs = match cached {
                Some(r) => r,
                None => {
                    let bytes = self.store.get(&key).await?;
                    let refs = Arc::new(decode_segment(&bytes).map_err(|e| self.corrupt(&key, e.to_string()))?);
                    self.segments.lock().insert(key.clone(), refs.clone());
                    refs
                }
            };
            out.extend(refs.iter().filter(|r| r.tenant == tenant && r.through >= from && r.from < through).cloned());
        }
        let stable = self.store.list(&prefix).await? == keys;
        Ok((out, stable))
    }

    /// The bytes of a flushed chunk (from the cache or the store). A chunk
    /// the index lists but the store lacks is an error: the compactor keeps
    /// the chunks it replaces for `retention_delete_delay` (longer than any
    /// query), so a missing one is lost data, never a race to hide.
    pub async fn chunk(&self, r: &ChunkRef) -> Result<Fetched, StoreError> {
        if let Some(bytes) = self.chunks.lock().get(&r.key) {
            return Ok(Fetched { bytes, downloaded: false });
        }
        match self.store.get(&r.key).await {
            Ok(b) => {
                let bytes = Arc::new(b);
                self.chunks.lock().insert(r.key.clone(), bytes.clone());
                Ok(Fetched { bytes, downloaded: true })
            }
            Err(ObjectError::NotFound(_)) => {
                self.missing_chunks.inc();
                tracing::error!(object = %r.key, "chunk listed by the index is missing from the object store");
                Err(StoreError::Missing { key: r.key.clone() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The stream labels of a ref; unparsable ones mean a corrupt segment
    /// (Balsa writes labels in normal form), reported rather than skipped.
    pub fn labels_of(&self, r: &ChunkRef) -> Result<LabelSet, StoreError> {
        LabelSet::parse(&r.labels).map_err(|e| self.corrupt(&r.key, format!("unparsable stream labels {:?} in its index entry: {e}", r.labels)))
    }

    /// The entries of chunk `key` (its `bytes`) in `[from, through)` whose
    /// line passes `sieve`, ascending, counting what was decoded into
    /// `decoded`; every block read is checked against its checksum. CPU
    /// only: runs on any thread.
    pub fn entries(
        &self,
        key: &str,
        bytes: &[u8],
        from: i64,
        through: i64,
        sieve: &impl LineSieve,
        decoded: &mut Decoded,
    ) -> Result<Vec<Entry>, StoreError> {
        let chunk = Chunk::open(bytes).map_err(|e| self.corrupt(key, e.to_string()))?;
        chunk.entries_where(from, through, sieve, decoded).map_err(|e| self.corrupt(key, e.to_string()))
    }
}
