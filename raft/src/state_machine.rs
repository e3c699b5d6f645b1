//! A replicated state machine with file snapshots, generic over what it
//! holds: the ingester's partitions and the controller's ring both use it.
//!
//! A write's phases: a command is proposed on the leader → replicated and
//! fsynced with group commit ([`crate::GroupLog`]) → committed →
//! [`Replicated::apply`] on every replica, whose answer goes to the proposer.
//!
//! Snapshot file: an [`envelope`] of the machine's kind around
//! bincode(meta, image). It is written to a temporary name, fsynced and
//! renamed, so a crash leaves the old or the new one, whole.
//!
//! Building a snapshot holds the group's read lock only while the
//! machine's [`Replicated::image`] is taken, which shares the state's large
//! parts instead of copying them; encoding and writing happen after the
//! lock is released, so commands keep applying while a large snapshot is
//! written (`docs/performance.md` has the measured apply latency).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use balsa_storage::envelope;
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, StorageError, StorageIOError,
    StoredMembership,
};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{NodeId, TypeConfig};

/// What a group replicates. Applying must be deterministic: the same
/// commands in the same order give every replica the same state.
pub trait Replicated: Default + Send + Sync + 'static {
    /// Names the snapshot format (the envelope's kind).
    const SNAPSHOT_KIND: [u8; 4];

    /// What a snapshot holds: the state without what can be rebuilt from it.
    type Image: Serialize + DeserializeOwned + Send + 'static;

    /// The state's image. Taken under the group's read lock, so it must be
    /// cheap: share large parts (`Arc`) rather than copy them.
    fn image(&self) -> Self::Image;

    /// The state an image describes (indexes rebuilt).
    fn from_image(image: Self::Image) -> Self;

    /// Applies one committed command and returns the answer for its
    /// proposer. An error (a record that cannot be decoded) stops the group
    /// rather than skip an acknowledged write.
    fn apply(&mut self, command: &[u8]) -> Result<Vec<u8>, String>;
}

/// A group's state with what has been applied to it.
#[derive(Debug, Default)]
pub struct Shared<S> {
    pub state: S,
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, BasicNode>,
}

/// What a snapshot file holds.
#[derive(Serialize, Deserialize)]
#[serde(bound = "I: Serialize + DeserializeOwned")]
struct SnapshotFile<I> {
    meta: SnapshotMeta<NodeId, BasicNode>,
    image: I,
}

type SResult<T> = Result<T, StorageError<NodeId>>;

/// The state machine openraft drives for one group.
pub struct StateMachine<S> {
    shared: Arc<RwLock<Shared<S>>>,
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

impl<S: Replicated> StateMachine<S> {
    /// Loads the group's latest snapshot from `snapshot_path`, if any. A
    /// corrupt snapshot is an error naming the file, never silently replaced
    /// by an empty state.
    pub fn open(snapshot_path: PathBuf) -> Result<(Self, Arc<RwLock<Shared<S>>>), StorageError<NodeId>> {
        let mut shared = Shared::default();
        if let Some(bytes) = read_if_exists(&snapshot_path)? {
            let (meta, state) = decode_snapshot::<S>(&bytes, &snapshot_path)?;
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

/// Deletes a snapshot file and its temporary twin (a replica that moved away).
pub fn remove_snapshot(path: &Path) -> std::io::Result<()> {
    for p in [path.to_path_buf(), path.with_extension("snap.tmp")] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn decode_snapshot<S: Replicated>(bytes: &[u8], path: &Path) -> SResult<(SnapshotMeta<NodeId, BasicNode>, S)> {
    let corrupt = |what: String| -> StorageError<NodeId> {
        StorageIOError::read_snapshot(None, AnyError::error(format!("snapshot {}: {what}", path.display()))).into()
    };
    let payload = envelope::open(S::SNAPSHOT_KIND, bytes).map_err(|e| corrupt(e.to_string()))?;
    let (file, _): (SnapshotFile<S::Image>, _) =
        bincode::serde::decode_from_slice(payload, bincode::config::standard()).map_err(|e| corrupt(e.to_string()))?;
    Ok((file.meta, S::from_image(file.image)))
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
pub struct Builder<S> {
    shared: Arc<RwLock<Shared<S>>>,
    file: SnapshotFileHandle,
}

impl<S: Replicated> RaftSnapshotBuilder<TypeConfig> for Builder<S> {
    async fn build_snapshot(&mut self) -> SResult<Snapshot<TypeConfig>> {
        let shared = self.shared.clone();
        let file = self.file.clone();
        let task = tokio::task::spawn_blocking(move || -> SResult<Snapshot<TypeConfig>> {
            let (meta, image) = {
                let s = shared.read();
                let meta = SnapshotMeta {
                    last_log_id: s.last_applied,
                    last_membership: s.membership.clone(),
                    snapshot_id: match s.last_applied {
                        Some(l) => format!("{}-{}", l.leader_id, l.index),
                        None => "empty".into(),
                    },
                };
                (meta, s.state.image())
            };
            let payload = bincode::serde::encode_to_vec(SnapshotFile { meta: meta.clone(), image }, bincode::config::standard())
                .map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)))?;
            let bytes = envelope::seal(S::SNAPSHOT_KIND, &payload);
            drop(payload);
            file.write(&bytes, meta.last_log_id)
                .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)))?;
            Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
        });
        task.await.map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)))?
    }
}

impl<S: Replicated> RaftStateMachine<TypeConfig> for StateMachine<S> {
    type SnapshotBuilder = Builder<S>;

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
                    let answer = s.state.apply(&bytes).map_err(|err| StorageIOError::apply(e.log_id, AnyError::error(err)))?;
                    out.push(answer);
                }
            }
            // Only what was applied counts as applied (a snapshot may be
            // built from this at any time).
            s.last_applied = Some(log_id);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Builder<S> {
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
        let (_, state) = decode_snapshot::<S>(&bytes, &self.file.path)?;
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
        let (meta, _) = decode_snapshot::<S>(&bytes, &self.file.path)?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) }))
    }
}
