//! The ingester: hosts this node's partition replicas, one openraft group
//! each, all sharing one RocksDB log ([`balsa_raft::LogDb`]), one batching
//! transport ([`balsa_raft::Peers`]) and the controller's ring.
//!
//! - [`command`]: what is proposed and answered, as bytes in the log;
//! - [`partition`]: the pure state of a partition and how a push changes it;
//! - [`flush`]: the leader's flush loop: cut, upload, record, ship index;
//! - [`membership`]: replicas follow the ring (open, initialize, move, drop);
//! - [`metrics`]: its gauges, read from the partitions at each scrape;
//! - [`read`]: what queriers ask of a partition's leader;
//! - [`service`] / [`client`]: the `Ingester` gRPC API and the router that
//!   sends a partition's request to its leader, local or remote.

pub mod client;
pub mod command;
pub mod flush;
pub mod membership;
pub mod metrics;
pub mod partition;
pub mod read;
pub mod service;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use balsa_raft::{Groups, LogDb, NodeId, Peers, Raft, Shared};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, RaftMetrics};
use parking_lot::RwLock;

use command::{Command, PushBatch, PushOutcome};
use partition::PartitionState;

use crate::ring::RingWatch;

/// Why the ingester could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum IngesterError {
    #[error("cannot open the ingester's data in {path}: {problem}")]
    Open { path: String, problem: String },
    #[error("partition {partition} is not led by this node (leader: {leader:?})")]
    NotLeader { partition: u32, leader: Option<NodeId> },
    #[error("partition {0} is not hosted here")]
    NoSuchPartition(u32),
    #[error("partition {partition} cannot serve: {problem}")]
    Unavailable { partition: u32, problem: String },
    /// A read this version cannot serve as sent (a querier of another version).
    #[error("partition {partition} cannot serve the read as sent: {source}")]
    BadRead { partition: u32, source: read::WireError },
    /// The partition's Raft group stopped on this node for good (its log's
    /// disk failed): only another replica can serve it.
    #[error("partition {partition} stopped on this node: {problem}")]
    Stopped { partition: u32, problem: String },
    #[error("node {node} cannot be reached: {problem}")]
    Unreachable { node: NodeId, problem: String },
    #[error("the ring is not ready: {0}")]
    NoRing(String),
}

/// Settings of the ingester role.
#[derive(Clone, Debug)]
pub struct IngesterConfig {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    /// Log entries between snapshots.
    pub snapshot_logs_since_last: u64,
    /// How calls to other nodes are made (TLS, source address).
    pub dialer: balsa_raft::network::Dialer,
}

/// One partition replica hosted here.
pub struct Partition {
    raft: Raft,
    shared: Arc<RwLock<Shared<PartitionState>>>,
}

/// This node's partition replicas.
pub struct Ingester {
    cfg: IngesterConfig,
    snap_dir: PathBuf,
    partitions: RwLock<BTreeMap<u32, Arc<Partition>>>,
    log_db: LogDb,
    peers: Peers,
    groups: Groups,
    ring: RingWatch,
    /// Partitions whose voters this node is changing now.
    changing: parking_lot::Mutex<HashSet<u32>>,
    /// Formed groups are being reported to the controller now.
    reporting: std::sync::atomic::AtomicBool,
    /// Leader balance (see `membership`): partitions this node is handing
    /// to another node now, when each may be handed over again, and how
    /// many hand-overs completed and failed.
    handing_over: parking_lot::Mutex<std::collections::HashMap<u32, NodeId>>,
    hand_over_after: parking_lot::Mutex<std::collections::HashMap<u32, std::time::Instant>>,
    hand_overs: [std::sync::atomic::AtomicU64; 2],
    /// Woken when a push leaves closed chunks in a partition: the flusher
    /// uploads them now rather than at its next period, so unflushed lines
    /// (and with them every snapshot) stay small under a steady load.
    chunks_cut: tokio::sync::Notify,
}

impl Ingester {
    /// Prepares the ingester; replicas are opened by [`Ingester::run`] as
    /// the ring assigns them.
    pub fn new(cfg: IngesterConfig, log_db: LogDb, peers: Peers, groups: Groups, ring: RingWatch) -> Result<Self, IngesterError> {
        let snap_dir = cfg.data_dir.join("snapshots");
        balsa_storage::object_store::create_dir_all_durable(&snap_dir)
            .map_err(|e| IngesterError::Open { path: snap_dir.display().to_string(), problem: e.to_string() })?;
        Ok(Self {
            cfg,
            snap_dir,
            partitions: RwLock::default(),
            log_db,
            peers,
            groups,
            ring,
            changing: Default::default(),
            reporting: Default::default(),
            handing_over: Default::default(),
            hand_over_after: Default::default(),
            hand_overs: Default::default(),
            chunks_cut: Default::default(),
        })
    }

    fn partition(&self, p: u32) -> Result<Arc<Partition>, IngesterError> {
        self.partitions.read().get(&p).cloned().ok_or(IngesterError::NoSuchPartition(p))
    }

    /// Proposes `batch` to partition `p` and waits until it is committed on a
    /// majority's disks and applied; returns what applying it did.
    #[tracing::instrument(level = "debug", skip(self, batch), fields(streams = batch.streams.len()))]
    pub async fn push(&self, p: u32, mut batch: PushBatch) -> Result<PushOutcome, IngesterError> {
        batch.now = balsa_logql::time::now_ns();
        let answer = self.propose(p, &Command::Push(batch)).await?;
        // The push is committed whatever this finds (a replica moved away
        // since has nothing to flush here).
        if self.read_local(p, |s| s.flush_queue_len()).is_ok_and(|n| n > 0) {
            self.chunks_cut.notify_one();
        }
        command::decode(&answer).map_err(|e| IngesterError::Unavailable { partition: p, problem: e.to_string() })
    }

    /// Proposes a command and waits until it is committed and applied;
    /// returns the state machine's encoded answer.
    pub async fn propose(&self, p: u32, cmd: &Command) -> Result<Vec<u8>, IngesterError> {
        self.check_not_handing_over(p)?;
        let part = self.partition(p)?;
        let unavailable = |problem: String| IngesterError::Unavailable { partition: p, problem };
        let bytes = command::encode(cmd).map_err(|e| unavailable(e.to_string()))?;
        match part.raft.client_write(bytes.into()).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(IngesterError::NotLeader { partition: p, leader: f.leader_id })
            }
            Err(RaftError::Fatal(f)) => Err(IngesterError::Stopped { partition: p, problem: f.to_string() }),
            Err(e) => Err(unavailable(e.to_string())),
        }
    }

    /// While partition `p` is handed to another node, its requests go there.
    fn check_not_handing_over(&self, p: u32) -> Result<(), IngesterError> {
        match self.handing_over.lock().get(&p) {
            Some(&to) => Err(IngesterError::NotLeader { partition: p, leader: Some(to) }),
            None => Ok(()),
        }
    }

    /// Leader hand-overs from this node: (completed, failed).
    pub fn hand_over_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.hand_overs[0].load(Relaxed), self.hand_overs[1].load(Relaxed))
    }

    /// Partitions this node leads now.
    pub fn led_partitions(&self) -> Vec<u32> {
        let me = self.cfg.node_id;
        self.partitions
            .read()
            .iter()
            .filter(|(_, part)| part.raft.metrics().borrow().current_leader == Some(me))
            .map(|(p, _)| *p)
            .collect()
    }

    /// Runs `f` on partition `p`'s local state, without a read barrier (for
    /// the leader's own flush decisions).
    pub fn read_local<R>(&self, p: u32, f: impl FnOnce(&PartitionState) -> R) -> Result<R, IngesterError> {
        let part = self.partition(p)?;
        let s = part.shared.read();
        Ok(f(&s.state))
    }

    /// Runs `f` on partition `p`'s state: with `Linearizable` once it
    /// reflects every write acknowledged before this call; with `Leader` if
    /// this node believes it leads; with `Any` as it is.
    pub async fn read_with<R>(
        &self,
        p: u32,
        consistency: read::ReadConsistency,
        f: impl FnOnce(&PartitionState) -> R,
    ) -> Result<R, IngesterError> {
        // A read index would reach the followers and renew their lease.
        self.check_not_handing_over(p)?;
        let part = self.partition(p)?;
        match consistency {
            read::ReadConsistency::Linearizable => part.raft.ensure_linearizable().await.map(|_| ()).map_err(|e| match e {
                RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f)) => {
                    IngesterError::NotLeader { partition: p, leader: f.leader_id }
                }
                RaftError::Fatal(f) => IngesterError::Stopped { partition: p, problem: f.to_string() },
                e => IngesterError::Unavailable { partition: p, problem: e.to_string() },
            })?,
            read::ReadConsistency::Leader => {
                let m = part.raft.metrics().borrow().clone();
                if m.state != openraft::ServerState::Leader {
                    return Err(IngesterError::NotLeader { partition: p, leader: m.current_leader });
                }
            }
            read::ReadConsistency::Any => {}
        }
        let s = part.shared.read();
        Ok(f(&s.state))
    }

    /// Why this node is not ready to serve: partitions the ring assigns
    /// to it that are not open or have no leader yet.
    pub fn not_ready(&self) -> Option<String> {
        if let Some(failure) = self.log_db.failure() {
            return Some(format!("the Raft log's disk failed ({failure}); restart the node"));
        }
        let ring = self.ring.borrow().clone();
        if ring.partitions.is_empty() {
            return Some("the ring is not bootstrapped yet".into());
        }
        if ring.partitions.iter().any(|a| a.replicas.is_empty()) {
            let active = ring.nodes.values().filter(|n| n.state == crate::ring::NodeState::Active).count();
            return Some(format!(
                "waiting for {} ingesters to join before placing partitions ({active} joined)",
                ring.replication_factor
            ));
        }
        let parts = self.partitions.read();
        let waiting: Vec<u32> = ring
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, a)| a.replicas.contains(&self.cfg.node_id))
            .map(|(p, _)| p as u32)
            .filter(|p| parts.get(p).is_none_or(|part| part.raft.metrics().borrow().current_leader.is_none()))
            .collect();
        (!waiting.is_empty()).then(|| format!("partitions without a leader yet: {waiting:?}"))
    }

    /// openraft's metrics of every hosted partition, for `/metrics`.
    pub fn raft_metrics(&self) -> Vec<(u32, RaftMetrics<NodeId, BasicNode>)> {
        self.partitions.read().iter().map(|(p, part)| (*p, part.raft.metrics().borrow().clone())).collect()
    }

    /// Resolves when a push has left closed chunks to flush since the last
    /// call (a wake-up that came while nobody waited is kept).
    pub async fn chunks_cut(&self) {
        self.chunks_cut.notified().await
    }

    /// Closed chunks waiting for a flush, per hosted partition.
    pub fn flush_queue(&self) -> Vec<(u32, usize)> {
        self.partitions.read().iter().map(|(p, part)| (*p, part.shared.read().state.flush_queue_len())).collect()
    }

    /// (streams, entries, bytes) held in memory per hosted partition.
    pub fn memory_sizes(&self) -> Vec<(u32, (usize, usize, usize))> {
        self.partitions.read().iter().map(|(p, part)| (*p, part.shared.read().state.sizes())).collect()
    }

    /// Counters of the Raft transport.
    pub fn transport_stats(&self) -> &balsa_raft::network::TransportStats {
        self.peers.stats()
    }

    /// The shared log database, for its group-commit counters.
    pub fn log_db(&self) -> &LogDb {
        &self.log_db
    }

    pub fn node_id(&self) -> NodeId {
        self.cfg.node_id
    }

    /// Stops every group; waits up to `timeout` for each.
    pub async fn shutdown(&self, timeout: Duration) {
        let parts: Vec<(u32, Arc<Partition>)> = self.partitions.read().iter().map(|(p, x)| (*p, x.clone())).collect();
        for (p, part) in parts {
            if tokio::time::timeout(timeout, part.raft.shutdown()).await.is_err() {
                tracing::warn!(partition = p, "raft group did not stop in time");
            }
        }
    }
}
