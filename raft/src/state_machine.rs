//! A replicated state machine with file snapshots, generic over what it
//! holds: the ingester's partitions and the controller's ring both use it.
//!
//! A write's phases: a command is proposed on the leader → replicated and
//! fsynced with group commit ([`crate::GroupLog`]) → committed →
//! [`Replicated::apply`] on every replica, whose answer goes to the proposer.
//!
//! Snapshot file: an [`envelope`] of the machine's kind and image format
//! version ([`Replicated::IMAGE_VERSION`]) around bincode(openraft's
//! `SnapshotMeta`) ‖ the image as [`Replicated::encode_image`] writes it.
//! It is written to a temporary name, fsynced and renamed, so a crash
//! leaves the old or the new one, whole. A snapshot travels to a lagging
//! replica as these same bytes, so a replica reads every image version its
//! build knows, whichever version wrote it.
//!
//! When a snapshot is taken ([`SnapshotDue`]): once the log since the last
//! one holds as many bytes as that snapshot had, and at least
//! [`SNAPSHOT_MIN_LOG_BYTES`] (openraft's entry count is a ceiling on top).
//! Writing snapshots then costs at most as many bytes as the log itself, and
//! a restart replays no more log than it loads snapshot. A fixed entry
//! count alone rewrote the whole state every few thousand small pushes
//! (`docs/performance.md`, the push tail).
//!
//! Building a snapshot holds the group's read lock only while the
//! machine's [`Replicated::image`] is taken, which shares the state's large
//! parts instead of copying them; encoding and writing happen after the
//! lock is released, so commands keep applying while a large snapshot is
//! written (`docs/performance.md` has the measured apply latency).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use balsa_storage::envelope;
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, StorageError, StorageIOError,
    StoredMembership,
};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{NodeId, TypeConfig};

/// What a group replicates. Applying must be deterministic: the same
/// commands in the same order give every replica the same state.
pub trait Replicated: Default + Send + Sync + 'static {
    /// Names the snapshot format (the envelope's kind).
    const SNAPSHOT_KIND: [u8; 4];

    /// The image format [`Replicated::encode_image`] writes.
    const IMAGE_VERSION: u16;

    /// What a snapshot holds: the state without what can be rebuilt from it.
    type Image: Send + 'static;

    /// The state's image. Taken under the group's read lock, so it must be
    /// cheap: share large parts (`Arc`) rather than copy them.
    fn image(&self) -> Self::Image;

    /// Encodes an image in format [`Replicated::IMAGE_VERSION`] (outside
    /// the lock).
    fn encode_image(image: &Self::Image) -> Result<Vec<u8>, ImageError>;

    /// The state an image of format `version` describes (indexes rebuilt);
    /// reads every version this build still supports.
    fn decode_image(version: u16, bytes: &[u8]) -> Result<Self, ImageError>;

    /// Why a command could not be applied (a record that cannot be
    /// decoded).
    type ApplyError: std::error::Error + Send + Sync + 'static;

    /// Applies one committed command and returns the answer for its
    /// proposer. An error stops the group rather than skip an acknowledged
    /// write.
    fn apply(&mut self, command: &[u8]) -> Result<Vec<u8>, Self::ApplyError>;
}

/// A group's state with what has been applied to it.
#[derive(Debug, Default)]
pub struct Shared<S> {
    pub state: S,
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, BasicNode>,
}

/// Why an image could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image format version {found} is unknown to this build (it reads versions up to {newest})")]
    UnknownVersion { found: u16, newest: u16 },
    #[error("cannot encode the image: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("cannot decode the image: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("{0} bytes after the image")]
    Trailing(usize),
}

/// `value` in bincode's standard configuration: how images are written
/// (their types, not the live state's, fix the layout).
pub fn bincode_encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ImageError> {
    Ok(bincode::serde::encode_to_vec(value, bincode::config::standard())?)
}

/// Reads what [`bincode_encode`] wrote; every byte must belong to it.
pub fn bincode_decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ImageError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())?;
    match bytes.len() - used {
        0 => Ok(value),
        n => Err(ImageError::Trailing(n)),
    }
}

type SResult<T> = Result<T, StorageError<NodeId>>;

/// The least log, in bytes of commands applied, between two snapshots of
/// a group whatever its state's size: small states are not rewritten for
/// every few pushes.
pub const SNAPSHOT_MIN_LOG_BYTES: u64 = 64 << 20;

/// Counts the log applied since the last snapshot and says when the next
/// one is due; [`crate::open_group`] triggers it.
#[derive(Debug)]
pub struct SnapshotDue {
    /// Bytes of commands applied since the state the last snapshot holds.
    since: AtomicU64,
    /// Size of the last snapshot, at least [`SNAPSHOT_MIN_LOG_BYTES`].
    threshold: AtomicU64,
    wake: tokio::sync::Notify,
}

impl SnapshotDue {
    fn new(snapshot_bytes: u64) -> Self {
        Self {
            since: AtomicU64::new(0),
            threshold: AtomicU64::new(snapshot_bytes.max(SNAPSHOT_MIN_LOG_BYTES)),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// `bytes` of commands were applied; wakes the trigger as the total
    /// crosses the threshold (once: until the next snapshot resets it).
    fn applied(&self, bytes: u64) {
        let before = self.since.fetch_add(bytes, Ordering::Relaxed);
        let threshold = self.threshold.load(Ordering::Relaxed);
        if before < threshold && before + bytes >= threshold {
            self.wake.notify_one();
        }
    }

    /// A snapshot now holds the state; counting starts again. Called while
    /// the image is taken under the group's lock, so no applied command is
    /// counted on the wrong side of it.
    fn reset(&self) {
        self.since.store(0, Ordering::Relaxed);
    }

    /// A snapshot of `bytes` was written: the next is due after as many
    /// bytes of log — already, if the log grew that much while this one was
    /// built (openraft ignores a trigger while a snapshot is being built).
    fn snapshot_written(&self, bytes: u64) {
        let threshold = bytes.max(SNAPSHOT_MIN_LOG_BYTES);
        self.threshold.store(threshold, Ordering::Relaxed);
        if self.since.load(Ordering::Relaxed) >= threshold {
            self.wake.notify_one();
        }
    }

    /// Resolves when a snapshot is due (or the state machine was dropped).
    pub async fn wait(&self) {
        self.wake.notified().await
    }
}

/// The state machine openraft drives for one group.
pub struct StateMachine<S> {
    shared: Arc<RwLock<Shared<S>>>,
    file: SnapshotFileHandle,
    due: Arc<SnapshotDue>,
}

impl<S> Drop for StateMachine<S> {
    /// Ends the group's snapshot trigger (it finds the group stopped).
    fn drop(&mut self) {
        self.due.wake.notify_one();
    }
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
        let mut snapshot_bytes = 0;
        if let Some(bytes) = read_if_exists(&snapshot_path)? {
            let (meta, state) = decode_snapshot::<S>(&bytes, &snapshot_path)?;
            shared = Shared { state, last_applied: meta.last_log_id, membership: meta.last_membership };
            snapshot_bytes = bytes.len() as u64;
        }
        let file = SnapshotFileHandle { path: snapshot_path, written: Arc::new(parking_lot::Mutex::new(shared.last_applied)) };
        let shared = Arc::new(RwLock::new(shared));
        let due = Arc::new(SnapshotDue::new(snapshot_bytes));
        Ok((Self { shared: shared.clone(), file, due }, shared))
    }

    /// When this group's next snapshot is due.
    pub fn snapshot_due(&self) -> Arc<SnapshotDue> {
        self.due.clone()
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

/// Reads a snapshot file's meta; with `Some(version)`, the image's bytes
/// and format version follow.
fn decode_meta<'a>(
    bytes: &'a [u8],
    kind: [u8; 4],
    path: &Path,
) -> SResult<(SnapshotMeta<NodeId, BasicNode>, u16, &'a [u8])> {
    let opened = envelope::open(kind, bytes).map_err(|e| corrupt(path, &e))?;
    let (meta, used) = bincode::serde::decode_from_slice(opened.payload, bincode::config::standard())
        .map_err(|e| corrupt(path, &e))?;
    Ok((meta, opened.version, &opened.payload[used..]))
}

fn decode_snapshot<S: Replicated>(bytes: &[u8], path: &Path) -> SResult<(SnapshotMeta<NodeId, BasicNode>, S)> {
    let (meta, version, image) = decode_meta(bytes, S::SNAPSHOT_KIND, path)?;
    let state = S::decode_image(version, image).map_err(|e| corrupt(path, &e))?;
    Ok((meta, state))
}

fn corrupt(path: &Path, what: &dyn std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_snapshot(None, AnyError::error(format!("snapshot {}: {what}", path.display()))).into()
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
    due: Arc<SnapshotDue>,
}

impl<S: Replicated> RaftSnapshotBuilder<TypeConfig> for Builder<S> {
    async fn build_snapshot(&mut self) -> SResult<Snapshot<TypeConfig>> {
        let (shared, file, due) = (self.shared.clone(), self.file.clone(), self.due.clone());
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
                due.reset();
                (meta, s.state.image())
            };
            let write_err = |e: ImageError| StorageIOError::write_snapshot(None, AnyError::new(&e));
            let mut payload = bincode_encode(&meta).map_err(write_err)?;
            payload.extend_from_slice(&S::encode_image(&image).map_err(write_err)?);
            drop(image);
            let bytes = envelope::seal(S::SNAPSHOT_KIND, S::IMAGE_VERSION, &payload);
            drop(payload);
            file.write(&bytes, meta.last_log_id)
                .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)))?;
            due.snapshot_written(bytes.len() as u64);
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
                    self.due.applied(bytes.len() as u64);
                    let answer = s.state.apply(&bytes).map_err(|err| StorageIOError::apply(e.log_id, AnyError::new(&err)))?;
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
        Builder { shared: self.shared.clone(), file: self.file.clone(), due: self.due.clone() }
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
        let bytes_len = bytes.len() as u64;
        let (_, state) = decode_snapshot::<S>(&bytes, &self.file.path)?;
        self.file
            .write(&bytes, meta.last_log_id)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)))?;
        let mut s = self.shared.write();
        *s = Shared { state, last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
        self.due.reset();
        self.due.snapshot_written(bytes_len);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> SResult<Option<Snapshot<TypeConfig>>> {
        let _serialized = self.file.written.lock();
        let Some(bytes) = read_if_exists(&self.file.path)? else { return Ok(None) };
        // The meta alone: the image is decoded where the bytes are installed.
        let (meta, _, _) = decode_meta(&bytes, S::SNAPSHOT_KIND, &self.file.path)?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn woken(due: &SnapshotDue) -> bool {
        due.wait().now_or_never().is_some()
    }

    #[test]
    fn a_snapshot_is_due_once_the_log_since_the_last_is_as_large_as_it() {
        let big = 3 * SNAPSHOT_MIN_LOG_BYTES;
        let due = SnapshotDue::new(big);
        due.applied(big - 1);
        assert!(!woken(&due), "less log than the snapshot");
        due.applied(1);
        assert!(woken(&due), "as much log as the snapshot");
        due.applied(1000);
        assert!(!woken(&due), "one wake-up per crossing");
        // A snapshot resets the count; a small state still waits for the minimum.
        due.reset();
        due.snapshot_written(10);
        due.applied(SNAPSHOT_MIN_LOG_BYTES - 1);
        assert!(!woken(&due), "a small state is not rewritten for every few pushes");
        due.applied(1);
        assert!(woken(&due));
    }

    #[test]
    fn log_that_grew_while_a_snapshot_was_built_makes_the_next_due_at_once() {
        let due = SnapshotDue::new(0);
        due.reset(); // the image is taken
        due.applied(SNAPSHOT_MIN_LOG_BYTES); // crossing while openraft is still building: its trigger is ignored
        assert!(woken(&due));
        due.snapshot_written(1000);
        assert!(woken(&due), "the next snapshot is due when this one is written");
    }
}
