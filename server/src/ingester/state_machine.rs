//! openraft's state machine for a partition: applies committed commands to
//! the [`PartitionState`] and keeps its snapshot.
//!
//! A write's phases: the distributor's batch is proposed on the leader
//! (`Ingester::push`) → replicated and fsynced with group commit
//! (`balsa_raft::GroupLog::append`) → committed → [`PartitionMachine::apply`]
//! here, whose outcome answers the proposer.
//!
//! Snapshot file: `<dir>/partition-<n>.snap`, an [`envelope`] of kind `BSNP`
//! around bincode([`SnapshotFile`]). It is written to a temporary name,
//! fsynced and renamed, so a crash leaves the old or the new one, whole.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use balsa_raft::{NodeId, TypeConfig};
use balsa_storage::envelope;
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, StorageError, StorageIOError,
    StoredMembership,
};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::command::{self, Command};
use super::partition::PartitionState;

const SNAPSHOT_KIND: [u8; 4] = *b"BSNP";

/// A partition's state with what has been applied to it.
#[derive(Debug, Default)]
pub struct Shared {
    pub state: PartitionState,
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, BasicNode>,
}

/// What a snapshot file holds.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, BasicNode>,
    state: PartitionState,
}

type SResult<T> = Result<T, StorageError<NodeId>>;

/// The state machine openraft drives for one partition.
pub struct PartitionMachine {
    shared: Arc<RwLock<Shared>>,
    file: SnapshotFileHandle,
}

/// The partition's snapshot file; writes are serialized, and a snapshot
/// never replaces one that covers more of the log.
#[derive(Clone)]
struct SnapshotFileHandle {
    path: PathBuf,
    /// Log id the file on disk covers.
    written: Arc<parking_lot::Mutex<Option<LogId<NodeId>>>>,
}

impl SnapshotFileHandle {
    fn write(&self, bytes: &[u8], covers: Option<LogId<NodeId>>) -> std::io::Result<()> {
        let mut written = self.written.lock();
        if covers < *written {
            return Ok(());
        }
        write_atomically(&self.path, bytes)?;
        *written = covers;
        Ok(())
    }
}

impl PartitionMachine {
    /// Loads the partition's latest snapshot, if any. A corrupt snapshot is
    /// an error naming the file, never silently replaced by an empty state.
    pub fn open(dir: &Path, partition: u32) -> Result<(Self, Arc<RwLock<Shared>>), StorageError<NodeId>> {
        let snapshot_path = dir.join(format!("partition-{partition}.snap"));
        let mut shared = Shared::default();
        if let Some(bytes) = read_if_exists(&snapshot_path)? {
            let (meta, state) = decode_snapshot(&bytes, &snapshot_path)?;
            shared = Shared { state, last_applied: meta.last_log_id, membership: meta.last_membership };
        }
        let file = SnapshotFileHandle { path: snapshot_path, written: Arc::new(parking_lot::Mutex::new(shared.last_applied)) };
        let shared = Arc::new(RwLock::new(shared));
        Ok((Self { shared: shared.clone(), file }, shared))
    }
}

fn read_if_exists(path: &Path) -> SResult<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageIOError::read_snapshot(None, AnyError::new(&e)).into()),
    }
}

fn decode_snapshot(bytes: &[u8], path: &Path) -> SResult<(SnapshotMeta<NodeId, BasicNode>, PartitionState)> {
    let corrupt = |what: String| -> StorageError<NodeId> {
        StorageIOError::read_snapshot(None, AnyError::error(format!("snapshot {}: {what}", path.display()))).into()
    };
    let payload = envelope::open(SNAPSHOT_KIND, bytes).map_err(|e| corrupt(e.to_string()))?;
    let (file, _): (SnapshotFile, _) =
        bincode::serde::decode_from_slice(payload, bincode::config::standard()).map_err(|e| corrupt(e.to_string()))?;
    let mut state = file.state;
    state.rebuild_indexes();
    Ok((file.meta, state))
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the
/// new one: temporary file, fsync, rename, fsync of the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("snap.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Builds snapshots from the shared state.
pub struct Builder {
    shared: Arc<RwLock<Shared>>,
    file: SnapshotFileHandle,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> SResult<Snapshot<TypeConfig>> {
        let shared = self.shared.clone();
        let file = self.file.clone();
        let task = tokio::task::spawn_blocking(move || -> SResult<Snapshot<TypeConfig>> {
            let (meta, bytes) = {
                let s = shared.read();
                let meta = SnapshotMeta {
                    last_log_id: s.last_applied,
                    last_membership: s.membership.clone(),
                    snapshot_id: match s.last_applied {
                        Some(l) => format!("{}-{}", l.leader_id, l.index),
                        None => "empty".into(),
                    },
                };
                let file = SnapshotFileRef { meta: &meta, state: &s.state };
                let payload = bincode::serde::encode_to_vec(&file, bincode::config::standard())
                    .map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)))?;
                (meta, envelope::seal(SNAPSHOT_KIND, &payload))
            };
            file.write(&bytes, meta.last_log_id)
                .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)))?;
            Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
        });
        task.await.map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)))?
    }
}

/// Borrowing twin of [`SnapshotFile`], to encode without cloning the state.
#[derive(Serialize)]
struct SnapshotFileRef<'a> {
    meta: &'a SnapshotMeta<NodeId, BasicNode>,
    state: &'a PartitionState,
}

impl RaftStateMachine<TypeConfig> for PartitionMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(&mut self) -> SResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let s = self.shared.read();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> SResult<Vec<Vec<u8>>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut s = self.shared.write();
        for e in entries {
            let log_id = e.log_id;
            match e.payload {
                EntryPayload::Blank => out.push(Vec::new()),
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(Vec::new());
                }
                EntryPayload::Normal(bytes) => {
                    // A record we cannot decode is corruption or a version we
                    // do not know: stop rather than skip an acknowledged write.
                    let cmd: Command = command::decode(&bytes).map_err(|err| StorageIOError::apply(e.log_id, AnyError::new(&err)))?;
                    let answer = match cmd {
                        Command::Push(batch) => command::encode(&s.state.apply_push(&batch)),
                        Command::Tick(t) => {
                            s.state.apply_tick(&t);
                            Ok(Vec::new())
                        }
                        Command::ChunksFlushed(chunks) => {
                            s.state.apply_flushed(&chunks);
                            Ok(Vec::new())
                        }
                        Command::IndexShipped { through_seq } => {
                            s.state.apply_index_shipped(through_seq);
                            Ok(Vec::new())
                        }
                    };
                    out.push(answer.map_err(|err| StorageIOError::apply(e.log_id, AnyError::new(&err)))?);
                }
            }
            // Only what was applied counts as applied (a snapshot may be
            // built from this at any time).
            s.last_applied = Some(log_id);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Builder {
        Builder { shared: self.shared.clone(), file: self.file.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> SResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> SResult<()> {
        let bytes = snapshot.into_inner();
        let (_, state) = decode_snapshot(&bytes, &self.file.path)?;
        self.file
            .write(&bytes, meta.last_log_id)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)))?;
        let mut s = self.shared.write();
        *s = Shared { state, last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> SResult<Option<Snapshot<TypeConfig>>> {
        let _serialized = self.file.written.lock();
        let Some(bytes) = read_if_exists(&self.file.path)? else { return Ok(None) };
        let (meta, _) = decode_snapshot(&bytes, &self.file.path)?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) }))
    }
}
