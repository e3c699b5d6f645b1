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
//! - [`network`]: how groups reach their peers.
//!
//! What it does not own: state machines, snapshots' contents, routing.
//!
//! ```no_run
//! # async fn demo() -> Result<(), balsa_raft::LogDbError> {
//! let db = balsa_raft::LogDb::open(std::path::Path::new("./data/raft"))?;
//! let log_of_group_7 = db.group(7);
//! # Ok(()) }
//! ```

mod log_store;
pub mod network;

pub use log_store::{GroupLog, LogDb, LogDbError, LogDbStats};

use std::io::Cursor;

/// A command for a group's state machine, already encoded by its owner.
pub type Proposal = Vec<u8>;

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
