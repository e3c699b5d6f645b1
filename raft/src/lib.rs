//! Raft for Balsa: the openraft type configuration, the node-wide RocksDB log
//! store that every partition's group shares, and the network factory.
//!
//! What this crate owns:
//! - [`TypeConfig`]: the openraft types. A proposal is an opaque byte string
//!   ([`Proposal`]) encoded and applied by the state machine that owns it (the
//!   ingester's partition), so this crate knows nothing about log lines.
//! - [`LogDb`] / [`GroupLog`]: one RocksDB per node holding the Raft logs,
//!   votes and commit indexes of *all* groups in column families, with group
//!   commit: appends of many groups are written as they come and made durable
//!   together by one WAL fsync before any of their callbacks fire.
//! - [`network`]: how groups reach their peers: one batching sender per peer
//!   node for the messages of all groups, and the gRPC service that hands
//!   incoming batches to the local groups ([`Groups`]).
//! - [`state_machine`]: a replicated state machine with snapshot files,
//!   generic over what it holds ([`Replicated`]).
//! - [`elections`]: campaigns only after a pre-vote, for all groups of a
//!   node from one loop; [`heartbeats`]: the leaders' heartbeats of all
//!   groups at once.
//!
//! What it does not own: what the state machines hold, routing, placement.
//!
//! ```no_run
//! # async fn demo() -> Result<(), balsa_raft::LogDbError> {
//! let db = balsa_raft::LogDb::open(std::path::Path::new("./data/raft"))?;
//! let log_of_group_7 = db.group(7);
//! # Ok(()) }
//! ```

pub mod codec;
pub mod elections;
mod log_store;
pub mod network;
pub mod state_machine;

pub use log_store::{GroupLog, Identity, LogDb, LogDbError, LogDbStats};
pub use network::{Groups, Peers};
pub use state_machine::{ImageError, Replicated, Shared, StateMachine};

use std::io::Cursor;

/// A command for a group's state machine, already encoded by its owner.
///
/// Serialized as one byte string: in bincode the same bytes as a `Vec<u8>`
/// (length, then the bytes), so the log on disk and the wire format are
/// unchanged, but written and read as one copy. Serde's `Vec<u8>` goes
/// through one call per byte, which took ~15 % of a 3-node cluster's CPU
/// under load (encoding entries for the log and the followers, decoding
/// them on every replica).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Proposal(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl From<Vec<u8>> for Proposal {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl std::ops::Deref for Proposal {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// What the state machine answers to a proposal, encoded by its owner.
pub type ProposalResponse = Vec<u8>;

/// Identifier of a Balsa node (ingester).
pub type NodeId = u64;

/// Identifier of a Raft group (one per ring partition).
pub type GroupId = u64;

openraft::declare_raft_types!(
    /// openraft's types for every Balsa group.
    pub TypeConfig:
        D = Proposal,
        R = ProposalResponse,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft handle of one group.
pub type Raft = openraft::Raft<TypeConfig>;

/// Why a group could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("invalid Raft settings: {0}")]
    Config(#[from] openraft::ConfigError),
    /// The snapshot file could not be read or is damaged (the error names it).
    #[error("{0}")]
    Snapshot(#[from] openraft::StorageError<NodeId>),
    #[error("the group stopped while starting: {0}")]
    Start(#[from] openraft::error::Fatal<NodeId>),
}

/// Opens (or creates) one group on this node: its state machine from
/// `snapshot_path`, its log in `db`, its network through `peers`; and
/// registers it in `groups` so peers' messages reach it. A group that was
/// never initialized waits for a leader to add it.
pub async fn open_group<S: Replicated>(
    node: NodeId,
    group: GroupId,
    config: std::sync::Arc<openraft::Config>,
    db: &LogDb,
    peers: &Peers,
    groups: &Groups,
    snapshot_path: std::path::PathBuf,
) -> Result<(Raft, std::sync::Arc<parking_lot::RwLock<Shared<S>>>), GroupError> {
    let (sm, shared) = StateMachine::<S>::open(snapshot_path)?;
    let due = sm.snapshot_due();
    let raft = Raft::new(node, config, peers.network(group), db.group(group), sm).await?;
    groups.insert(group, raft.clone());
    // Triggers the snapshots the log's bytes call for; ends once the group
    // stopped (its state machine's drop wakes it one last time).
    let trigger = raft.clone();
    tokio::spawn(async move {
        loop {
            due.wait().await;
            if trigger.trigger().snapshot().await.is_err() {
                return;
            }
        }
    });
    Ok((raft, shared))
}

/// Interval of the leaders' heartbeats, sent for all groups at once by
/// [`heartbeats`].
pub const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1000);

/// Timing and snapshot settings every Balsa group uses. Snapshots come
/// after `snapshot_logs_since_last` entries at the latest, sooner when the
/// log's bytes call for one ([`state_machine::SnapshotDue`]). A follower that has
/// not heard from its leader for 1.5–3 s asks for a pre-vote and campaigns
/// once its peers' leases (3 s) ran out too ([`elections`]), so a failed
/// leader is replaced in about 3–4 s. Groups do not send their own heartbeats:
/// [`heartbeats`] sends those of every group on a node at the same instant,
/// so they travel to each peer in one batch (coalesced heartbeats).
pub fn group_config(name: String, snapshot_logs_since_last: u64) -> Result<std::sync::Arc<openraft::Config>, GroupError> {
    let cfg = openraft::Config {
        cluster_name: name,
        heartbeat_interval: HEARTBEAT_INTERVAL.as_millis() as u64,
        election_timeout_min: elections::ELECTION_TIMEOUT_MIN.as_millis() as u64,
        election_timeout_max: elections::ELECTION_TIMEOUT_MAX.as_millis() as u64,
        enable_heartbeat: false,
        // Elections are decided by `elections::run`, after a pre-vote.
        enable_elect: false,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_logs_since_last),
        max_in_snapshot_log_to_keep: (snapshot_logs_since_last / 10).min(200),
        purge_batch_size: 256,
        ..Default::default()
    };
    Ok(std::sync::Arc::new(cfg.validate()?))
}

/// Every [`HEARTBEAT_INTERVAL`] (1 s; followers wait a 3 s lease before a
/// pre-vote succeeds), makes every group this node leads send its
/// heartbeats, all at once: the transport then carries them to each peer
/// in one or a few RPCs, however many groups there are. Runs until `stop`.
pub async fn heartbeats(groups: Groups, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
        for id in groups.ids() {
            let Some(raft) = groups.get(id) else { continue };
            if raft.metrics().borrow().state == openraft::ServerState::Leader && !groups.is_muted(id) {
                let _ = raft.trigger().heartbeat().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Proposal;

    /// Logs written before `Proposal` was a byte string still read back.
    #[test]
    fn a_proposal_is_encoded_like_the_byte_vector_it_replaced() {
        let cfg = bincode::config::standard();
        let bytes: Vec<u8> = (0..=255u8).chain([0, 7]).collect();
        let old = bincode::serde::encode_to_vec(&bytes, cfg).unwrap();
        assert_eq!(bincode::serde::encode_to_vec(Proposal(bytes.clone()), cfg).unwrap(), old);
        let (back, used): (Proposal, usize) = bincode::serde::decode_from_slice(&old, cfg).unwrap();
        assert_eq!((back.0, used), (bytes, old.len()));
    }
}
