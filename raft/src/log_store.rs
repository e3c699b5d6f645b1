//! The node-wide Raft log: one RocksDB for every group, with group commit.
//!
//! PERFORMANCE-CRITICAL PATH: every acknowledged push goes through
//! [`GroupLog::append`] and waits for the syncer's fsync.
//!
//! # Layout (version 1)
//! Column family `raft_log`: key = group id (u64 BE) ‖ log index (u64 BE),
//! value = [`LOG_RECORD_VERSION`] ‖ bincode(`Entry`). Big-endian keys keep one
//! group's entries contiguous and in index order.
//!
//! Column family `raft_state`: key = group id (u64 BE) ‖ one tag byte
//! ([`StateKey`]), value = [`LOG_RECORD_VERSION`] ‖ bincode(value).
//!
//! The same family holds the directory's identity under [`IDENTITY_KEY`]
//! (a key no group's state key can equal: those are 9 bytes long).
//!
//! # What is durable when
//! - [`GroupLog::append`] writes the entries to RocksDB without syncing, so
//!   they are readable when it returns, and hands the `LogFlushed` callback to
//!   the syncer thread. The syncer takes every callback queued so far, calls
//!   `FlushWAL(sync = true)` once, and only then fires them: when openraft
//!   learns an entry is flushed, it is on disk, together with the entries of
//!   every other group appended before that fsync (group commit).
//! - [`GroupLog::save_vote`] is synced before it returns.
//! - `truncate`, `purge` and `save_committed` are not synced themselves; the
//!   next synced write (RocksDB's WAL is ordered) persists them. Losing one in
//!   a crash is safe: openraft redoes a truncation, and a purge or committed
//!   index that went missing only means replaying a little more log.
//!
//! # Recovery after a crash
//! RocksDB replays its WAL on open in `TolerateCorruptedTailRecords` mode
//! (chosen over RocksDB's default, point-in-time recovery): a record cut
//! short at the very end of the WAL — a write torn by power loss, which
//! was never fsynced and so never acknowledged — is dropped; any other
//! damage (a checksum mismatch in the middle) refuses to open, naming it.
//! Point-in-time recovery would instead open with everything after the
//! damage silently gone, synced records included: a replica that forgot
//! entries it acknowledged, or a vote it gave. `AbsoluteConsistency` would
//! refuse the torn tail too, turning every power loss into a rebuilt node
//! without protecting a single acknowledged write more.
//!
//! # When the disk fails
//! The first failed write or fsync marks the database failed until the
//! process restarts ([`LogDb::failure`]): every later write is refused
//! without touching RocksDB. Retrying is unsafe — after a failed fsync the
//! kernel may have dropped the dirty pages, and a second fsync can succeed
//! without them — and RocksDB's own writers must not be used after an error
//! (debug builds of RocksDB abort). On restart RocksDB replays its WAL and
//! Raft repairs whatever the node had not acknowledged.

use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{GroupId, NodeId, TypeConfig};

const CF_LOG: &str = "raft_log";
const CF_STATE: &str = "raft_state";

/// First byte of every value this store writes; bump on a layout change.
pub const LOG_RECORD_VERSION: u8 = 1;

/// Key of the data directory's [`Identity`] in `raft_state`.
const IDENTITY_KEY: &[u8] = b"node-identity";

/// Which node a data directory belongs to, and which life of that node: a
/// random incarnation made when the directory was first used. A node whose
/// disk was wiped comes back with a new one, so the cluster can tell it
/// from the replica that voted and acknowledged before (Raft's safety
/// assumes votes and log survive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Identity {
    pub node: NodeId,
    pub incarnation: u64,
}

/// Per-group keys of the `raft_state` column family.
#[derive(Clone, Copy)]
#[repr(u8)]
enum StateKey {
    Vote = 1,
    Committed = 2,
    LastPurged = 3,
}

/// Failure to open the log database.
#[derive(Debug, thiserror::Error)]
pub enum LogDbError {
    #[error(
        "cannot open the Raft log database at {path}: {source}{}",
        if source.to_string().contains("Corruption") {
            " (the log is damaged past its unsynced tail; this node's replicas cannot be trusted: move the data \
             directory away and start the node empty under a new --node.id, so the cluster re-replicates to it)"
        } else {
            ""
        }
    )]
    Open { path: String, source: rocksdb::Error },
    #[error("cannot start the log syncer thread: {0}")]
    Syncer(std::io::Error),
    #[error(
        "the data directory {path} belongs to node {found}, not to node {wanted}: start node {found} on it, \
         or give node {wanted} its own directory"
    )]
    OtherNode { path: String, found: NodeId, wanted: NodeId },
    #[error("cannot read or write the identity of the data directory {path}: {problem}")]
    Identity { path: String, problem: String },
}

/// Counters an operator graphs: how well group commit batches.
#[derive(Debug, Default)]
pub struct LogDbStats {
    /// WAL fsyncs performed for appends.
    pub syncs: AtomicU64,
    /// Append calls made durable by those fsyncs.
    pub synced_appends: AtomicU64,
    /// Nanoseconds spent in those fsyncs.
    pub sync_nanos: AtomicU64,
}

/// The node's Raft log database, shared by every group on the node.
#[derive(Clone)]
pub struct LogDb {
    inner: Arc<Inner>,
}

struct Inner {
    db: DB,
    to_syncer: mpsc::Sender<LogFlushed<TypeConfig>>,
    stats: Arc<LogDbStats>,
    /// The first write or fsync error; set once, never cleared.
    failed: OnceLock<String>,
}

impl Inner {
    /// Writes `batch` (synced or not) unless the database has failed; a
    /// failure of this write fails the database.
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), AnyError> {
        self.usable()?;
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(batch, &wo).map_err(|e| self.fail("write", &e))
    }

    /// Makes everything written so far durable, unless the database has failed.
    fn sync(&self) -> Result<(), AnyError> {
        self.usable()?;
        self.db.flush_wal(true).map_err(|e| self.fail("fsync", &e))
    }

    fn usable(&self) -> Result<(), AnyError> {
        match self.failed.get() {
            Some(first) => Err(AnyError::error(format!("the Raft log's disk failed earlier ({first}); restart the node"))),
            None => Ok(()),
        }
    }

    fn fail(&self, what: &str, e: &rocksdb::Error) -> AnyError {
        let first = format!("{what}: {e}");
        if self.failed.set(first.clone()).is_ok() {
            tracing::error!(error = %first, "the Raft log's disk failed: this node acknowledges nothing more until it restarts");
        }
        AnyError::new(e)
    }
}

impl LogDb {
    /// Opens (or creates) the database in `dir` and starts its syncer thread.
    pub fn open(dir: &Path) -> Result<Self, LogDbError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // RocksDB's own info log (the `LOG` file) only for fatal errors: Balsa
        // logs the errors that matter itself. When the disk fails, RocksDB
        // reports the error to that log on the same disk, and RocksDB builds
        // with assertions (Debian's) abort on the second write to a file that
        // failed, before the error reaches us.
        opts.set_log_level(rocksdb::LogLevel::Fatal);
        // See "Recovery after a crash" above.
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        opts.set_paranoid_checks(true);
        let cfs = [CF_LOG, CF_STATE].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|source| LogDbError::Open {
            path: dir.display().to_string(),
            source,
        })?;
        let (to_syncer, from_groups) = mpsc::channel();
        let stats = Arc::new(LogDbStats::default());
        let inner = Arc::new(Inner { db, to_syncer, stats: stats.clone(), failed: OnceLock::new() });
        let weak = Arc::downgrade(&inner);
        thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || syncer(weak, from_groups, stats))
            .map_err(LogDbError::Syncer)?;
        Ok(Self { inner })
    }

    /// The directory's identity. `Ok(None)`: never written, and the log
    /// holds nothing (a new or wiped directory). A directory that holds a
    /// log but no identity (made before identities existed) gets one now.
    /// Fails if the directory belongs to another node.
    pub fn identity(&self, node: NodeId, path: &Path) -> Result<Option<Identity>, LogDbError> {
        let fail = |problem: String| LogDbError::Identity { path: path.display().to_string(), problem };
        let db = &self.inner.db;
        let stored = db.get_cf(cf(db, CF_STATE), IDENTITY_KEY).map_err(|e| fail(e.to_string()))?;
        let found = match stored {
            Some(bytes) => decode::<Identity>(&bytes).map_err(|e| fail(e.to_string()))?,
            None => {
                let empty = [CF_LOG, CF_STATE].iter().all(|name| db.iterator_cf(cf(db, name), IteratorMode::Start).next().is_none());
                if empty {
                    return Ok(None);
                }
                self.create_identity(node, path)?
            }
        };
        if found.node != node {
            return Err(LogDbError::OtherNode { path: path.display().to_string(), found: found.node, wanted: node });
        }
        Ok(Some(found))
    }

    /// Gives the directory a new identity for `node` (durable on return).
    pub fn create_identity(&self, node: NodeId, path: &Path) -> Result<Identity, LogDbError> {
        let fail = |problem: String| LogDbError::Identity { path: path.display().to_string(), problem };
        // Never 0: 0 means "unknown" in rings written before incarnations.
        let id = Identity { node, incarnation: rand::random::<u64>().max(1) };
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&self.inner.db, CF_STATE), IDENTITY_KEY, encode(&id).map_err(|e| fail(e.to_string()))?);
        self.inner.write(batch, true).map_err(|e| fail(e.to_string()))?;
        Ok(id)
    }

    /// The log of one group; cheap, any number may exist.
    pub fn group(&self, group: GroupId) -> GroupLog {
        GroupLog { group, db: self.inner.clone() }
    }

    /// Deletes every record of `group` (a replica that moved away). Durable
    /// when it returns.
    pub fn remove_group(&self, group: GroupId) -> Result<(), AnyError> {
        let db = &self.inner.db;
        let mut batch = WriteBatch::default();
        let (log, state) = (cf(db, CF_LOG), cf(db, CF_STATE));
        batch.delete_range_cf(log, log_key(group, 0), log_key(group, u64::MAX));
        batch.delete_cf(log, log_key(group, u64::MAX));
        for k in [StateKey::Vote, StateKey::Committed, StateKey::LastPurged] {
            batch.delete_cf(state, state_key(group, k));
        }
        self.inner.write(batch, true)
    }

    /// Why the database refuses writes (its first write or fsync error),
    /// if it does: the node must be restarted.
    pub fn failure(&self) -> Option<&str> {
        self.inner.failed.get().map(String::as_str)
    }

    /// Group-commit counters.
    pub fn stats(&self) -> &LogDbStats {
        &self.inner.stats
    }
}

/// Takes callbacks as they come, makes everything written so far durable with
/// one fsync, then fires them all.
fn syncer(
    db: std::sync::Weak<Inner>,
    from_groups: mpsc::Receiver<LogFlushed<TypeConfig>>,
    stats: Arc<LogDbStats>,
) {
    let mut pending = Vec::new();
    while let Ok(first) = from_groups.recv() {
        pending.push(first);
        pending.extend(from_groups.try_iter());
        let Some(inner) = db.upgrade() else { break };
        let started = std::time::Instant::now();
        let result = inner.sync();
        drop(inner);
        stats.syncs.fetch_add(1, Ordering::Relaxed);
        stats.synced_appends.fetch_add(pending.len() as u64, Ordering::Relaxed);
        stats.sync_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        for cb in pending.drain(..) {
            let r = result
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string()));
            cb.log_io_completed(r);
        }
    }
}

/// One group's view of the shared log database.
#[derive(Clone)]
pub struct GroupLog {
    group: GroupId,
    db: Arc<Inner>,
}

fn log_key(group: GroupId, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

fn state_key(group: GroupId, key: StateKey) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8] = key as u8;
    k
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, AnyError> {
    crate::codec::to_vec(&[LOG_RECORD_VERSION], v).map_err(|e| AnyError::new(&e))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AnyError> {
    match bytes.split_first() {
        Some((&LOG_RECORD_VERSION, body)) => bincode::serde::decode_from_slice(body, bincode::config::standard())
            .map(|(v, _)| v)
            .map_err(|e| AnyError::new(&e)),
        Some((v, _)) => Err(AnyError::error(format!("unknown Raft log record version {v}"))),
        None => Err(AnyError::error("empty Raft log record")),
    }
}

type SResult<T> = Result<T, StorageError<NodeId>>;

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    // Both families are created by `LogDb::open` (create_missing_column_families).
    db.cf_handle(name).expect("column family created at open")
}

impl GroupLog {
    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        cf(&self.db.db, name)
    }

    fn get_state<T: DeserializeOwned>(&self, key: StateKey) -> Result<Option<T>, AnyError> {
        let raw = self
            .db
            .db
            .get_cf(self.cf(CF_STATE), state_key(self.group, key))
            .map_err(|e| AnyError::new(&e))?;
        raw.map(|b| decode(&b)).transpose()
    }

    fn put_state<T: Serialize>(&self, key: StateKey, v: &T, sync: bool) -> Result<(), AnyError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_STATE), state_key(self.group, key), encode(v)?);
        self.db.write(batch, sync)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId<NodeId>>, AnyError> {
        let start = log_key(self.group, u64::MAX);
        let mut it = self.db.db.iterator_cf(self.cf(CF_LOG), IteratorMode::From(&start, Direction::Reverse));
        match it.next() {
            Some(Ok((k, v))) if k[..8] == self.group.to_be_bytes() => {
                let e: Entry<TypeConfig> = decode(&v)?;
                Ok(Some(e.log_id))
            }
            Some(Err(e)) => Err(AnyError::new(&e)),
            _ => Ok(None),
        }
    }

    fn write_batch(&self, batch: WriteBatch) -> Result<(), AnyError> {
        self.db.write(batch, false)
    }
}

impl RaftLogReader<TypeConfig> for GroupLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> SResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let it = self
            .db
            .db
            .iterator_cf(self.cf(CF_LOG), IteratorMode::From(&log_key(self.group, start), Direction::Forward));
        for item in it {
            let (k, v) = item.map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
            if k[..8] != self.group.to_be_bytes() {
                break;
            }
            let mut idx = [0u8; 8];
            idx.copy_from_slice(&k[8..16]);
            if !range.contains(&u64::from_be_bytes(idx)) {
                break;
            }
            out.push(decode(&v).map_err(StorageIOError::read_logs)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for GroupLog {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> SResult<LogState<TypeConfig>> {
        let last_purged: Option<LogId<NodeId>> =
            self.get_state(StateKey::LastPurged).map_err(StorageIOError::read_logs)?;
        let last = self.last_entry_log_id().map_err(StorageIOError::read_logs)?;
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last.or(last_purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> SResult<()> {
        Ok(self.put_state(StateKey::Vote, vote, true).map_err(StorageIOError::write_vote)?)
    }

    async fn read_vote(&mut self) -> SResult<Option<Vote<NodeId>>> {
        Ok(self.get_state(StateKey::Vote).map_err(StorageIOError::read_vote)?)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> SResult<()> {
        Ok(self.put_state(StateKey::Committed, &committed, false).map_err(StorageIOError::write)?)
    }

    async fn read_committed(&mut self) -> SResult<Option<LogId<NodeId>>> {
        let v: Option<Option<LogId<NodeId>>> = self.get_state(StateKey::Committed).map_err(StorageIOError::read)?;
        Ok(v.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> SResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let cf = self.cf(CF_LOG);
        for e in entries {
            let v = encode(&e).map_err(|err| StorageIOError::write_log_entry(e.log_id, err))?;
            batch.put_cf(cf, log_key(self.group, e.log_id.index), v);
        }
        self.write_batch(batch).map_err(StorageIOError::write_logs)?;
        // Durable (and acknowledged) only after the syncer's next fsync.
        self.db
            .to_syncer
            .send(callback)
            .map_err(|_| StorageIOError::write_logs(AnyError::error("log syncer stopped")))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> SResult<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(CF_LOG), log_key(self.group, log_id.index), log_key(self.group, u64::MAX));
        Ok(self.write_batch(batch).map_err(StorageIOError::write_logs)?)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> SResult<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_STATE),
            state_key(self.group, StateKey::LastPurged),
            encode(&log_id).map_err(StorageIOError::write_logs)?,
        );
        batch.delete_range_cf(self.cf(CF_LOG), log_key(self.group, 0), log_key(self.group, log_id.index + 1));
        Ok(self.write_batch(batch).map_err(StorageIOError::write_logs)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry { log_id: LogId::new(CommittedLeaderId::new(term, 1), index), payload: EntryPayload::Normal(vec![index as u8].into()) }
    }

    /// Appends through openraft's callback and waits for the fsync.
    async fn append(log: &mut GroupLog, entries: Vec<Entry<TypeConfig>>) {
        log.blocking_append(entries).await.unwrap();
    }

    fn big_entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(vec![index as u8; 20_000].into()),
        }
    }

    fn wal_files(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        out.sort();
        out
    }

    /// Entries 1..=n, each fsynced before the next, in a closed database.
    async fn synced_log(dir: &Path, n: u64) {
        let db = LogDb::open(dir).unwrap();
        let mut g = db.group(1);
        for i in 1..=n {
            append(&mut g, vec![big_entry(i)]).await;
        }
    }

    /// A write torn at the WAL's end (power loss mid-append) drops only that
    /// unsynced record; every synced entry is still there.
    #[tokio::test]
    async fn a_torn_wal_tail_keeps_every_synced_entry() {
        let dir = tempfile::tempdir().unwrap();
        synced_log(dir.path(), 21).await;
        let wal = wal_files(dir.path()).pop().expect("a WAL file");
        // Entry 21's record cut short, as if power failed before its fsync.
        let bytes = std::fs::read(&wal).unwrap();
        std::fs::write(&wal, &bytes[..bytes.len() - 5_000]).unwrap();
        let db = LogDb::open(dir.path()).expect("a torn tail is not a reason to refuse");
        let got: Vec<u64> = db.group(1).try_get_log_entries(..).await.unwrap().iter().map(|e| e.log_id.index).collect();
        assert_eq!(got, (1..=20).collect::<Vec<_>>());
    }

    /// Damage in the middle of the WAL refuses to open, naming it, instead
    /// of opening with the synced entries after it silently gone
    /// (RocksDB's default point-in-time recovery).
    #[tokio::test]
    async fn a_corrupt_wal_record_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        synced_log(dir.path(), 20).await;
        let wal = wal_files(dir.path()).pop().expect("a WAL file");
        let mut bytes = std::fs::read(&wal).unwrap();
        let at = bytes.len() / 3;
        bytes[at] ^= 0xff;
        std::fs::write(&wal, &bytes).unwrap();
        let err = LogDb::open(dir.path()).err().expect("must not open with a hole in the log");
        let text = err.to_string();
        assert!(text.contains("Corruption") && text.contains("--node.id"), "{text}");
        // The damage stays for an operator to inspect: nothing was dropped.
        assert_eq!(std::fs::read(&wal).unwrap(), bytes);
    }

    /// A new directory has no identity until one is made; it then survives
    /// reopening, and another node id cannot use the directory.
    #[tokio::test]
    async fn the_identity_is_made_once_and_names_its_node() {
        let dir = tempfile::tempdir().unwrap();
        let made = {
            let db = LogDb::open(dir.path()).unwrap();
            assert_eq!(db.identity(7, dir.path()).unwrap(), None, "a new directory");
            db.create_identity(7, dir.path()).unwrap()
        };
        let db = LogDb::open(dir.path()).unwrap();
        assert_eq!(db.identity(7, dir.path()).unwrap(), Some(made));
        let err = db.identity(8, dir.path()).unwrap_err().to_string();
        assert!(err.contains("belongs to node 7, not to node 8"), "{err}");
        // A directory with a log but no identity (older layout) gets one.
        let old = tempfile::tempdir().unwrap();
        let db = LogDb::open(old.path()).unwrap();
        db.group(1).save_vote(&Vote::new(1, 1)).await.unwrap();
        assert!(db.identity(1, old.path()).unwrap().is_some());
    }

    #[tokio::test]
    async fn groups_do_not_see_each_others_entries_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = LogDb::open(dir.path()).unwrap();
            let (mut a, mut b) = (db.group(1), db.group(2));
            append(&mut a, (1..=5).map(|i| entry(1, i)).collect()).await;
            append(&mut b, (1..=3).map(|i| entry(2, i)).collect()).await;
            a.save_vote(&Vote::new(3, 1)).await.unwrap();
            a.purge(LogId::new(CommittedLeaderId::new(1, 1), 2)).await.unwrap();
            b.truncate(LogId::new(CommittedLeaderId::new(2, 1), 2)).await.unwrap();
            assert!(db.stats().syncs.load(Ordering::Relaxed) >= 1);
        }
        let db = LogDb::open(dir.path()).unwrap();
        let (mut a, mut b) = (db.group(1), db.group(2));
        let got: Vec<u64> = a.try_get_log_entries(0..100).await.unwrap().iter().map(|e| e.log_id.index).collect();
        assert_eq!(got, vec![3, 4, 5]);
        let st = a.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id.map(|l| l.index), Some(2));
        assert_eq!(st.last_log_id.map(|l| l.index), Some(5));
        assert_eq!(a.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
        let got: Vec<u64> = b.try_get_log_entries(..).await.unwrap().iter().map(|e| e.log_id.index).collect();
        assert_eq!(got, vec![1]);
        assert_eq!(db.group(3).get_log_state().await.unwrap().last_log_id, None);
    }
}
