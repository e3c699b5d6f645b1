//! The ingester: hosts this node's partition replicas, one openraft group
//! each, all sharing one RocksDB log ([`balsa_raft::LogDb`]).
//!
//! - [`command`]: what is proposed and answered, as bytes in the log;
//! - [`partition`]: the pure state of a partition and how a push changes it;
//! - [`flush`]: the leader's flush loop: cut, upload, record, ship index;
//! - [`state_machine`]: openraft's view of it, with snapshots.

pub mod command;
pub mod flush;
pub mod partition;
mod state_machine;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use balsa_raft::network::NoPeers;
use balsa_raft::{LogDb, NodeId, Raft};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, RaftMetrics, SnapshotPolicy};
use parking_lot::RwLock;

use command::{Command, PushBatch, PushOutcome};
use partition::PartitionState;
use state_machine::{PartitionMachine, Shared};

/// Why the ingester could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum IngesterError {
    #[error("cannot open the ingester's data in {path}: {problem}")]
    Open { path: String, problem: String },
    #[error("partition {partition} is not led by this node (leader: {leader:?})")]
    NotLeader { partition: u32, leader: Option<NodeId> },
    #[error("partition {0} does not exist")]
    NoSuchPartition(u32),
    #[error("partition {partition} cannot serve: {problem}")]
    Unavailable { partition: u32, problem: String },
}

/// Settings of the ingester role.
#[derive(Clone, Debug)]
pub struct IngesterConfig {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    pub partitions: u32,
    /// Address peers use to reach this node's gRPC server.
    pub advertise_addr: String,
    /// Log entries between snapshots.
    pub snapshot_logs_since_last: u64,
}

struct Partition {
    raft: Raft,
    shared: Arc<RwLock<Shared>>,
}

/// This node's partition replicas.
pub struct Ingester {
    node_id: NodeId,
    partitions: Vec<Partition>,
    log_db: LogDb,
}

fn raft_config(partition: u32, snapshot_logs_since_last: u64) -> Result<Arc<openraft::Config>, IngesterError> {
    let cfg = openraft::Config {
        cluster_name: format!("balsa-partition-{partition}"),
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_logs_since_last),
        max_in_snapshot_log_to_keep: (snapshot_logs_since_last / 10).min(200),
        purge_batch_size: 256,
        ..Default::default()
    };
    cfg.validate()
        .map(Arc::new)
        .map_err(|e| IngesterError::Open { path: String::new(), problem: format!("raft config: {e}") })
}

/// Records the partition count on first start and refuses to start with
/// another: the data on disk is laid out by partition.
fn check_layout(dir: &Path, partitions: u32) -> Result<(), IngesterError> {
    let file = dir.join("ring.partitions");
    let err = |problem: String| IngesterError::Open { path: file.display().to_string(), problem };
    match std::fs::read_to_string(&file) {
        Ok(s) => match s.trim().parse::<u32>() {
            Ok(n) if n == partitions => Ok(()),
            Ok(n) => Err(err(format!(
                "this data directory was created with {n} partitions; start with --ring.partitions={n} \
                 (changing the partition count of existing data is not supported)"
            ))),
            Err(_) => Err(err(format!("unreadable partition count '{}'", s.trim()))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&file, format!("{partitions}\n")).map_err(|e| err(e.to_string()))
        }
        Err(e) => Err(err(e.to_string())),
    }
}

impl Ingester {
    /// Opens the log and every partition's snapshot, starts the groups and,
    /// on first start, makes this node the only voter of each.
    pub async fn open(cfg: &IngesterConfig) -> Result<Self, IngesterError> {
        let open_err = |path: &Path, problem: String| IngesterError::Open { path: path.display().to_string(), problem };
        let snap_dir = cfg.data_dir.join("snapshots");
        balsa_storage::object_store::create_dir_all_durable(&snap_dir).map_err(|e| open_err(&snap_dir, e.to_string()))?;
        check_layout(&cfg.data_dir, cfg.partitions)?;
        let raft_dir = cfg.data_dir.join("raft");
        let log_db = LogDb::open(&raft_dir).map_err(|e| open_err(&raft_dir, e.to_string()))?;
        let mut partitions = Vec::with_capacity(cfg.partitions as usize);
        for p in 0..cfg.partitions {
            let (sm, shared) = PartitionMachine::open(&snap_dir, p).map_err(|e| open_err(&snap_dir, e.to_string()))?;
            let raft = Raft::new(cfg.node_id, raft_config(p, cfg.snapshot_logs_since_last)?, NoPeers, log_db.group(u64::from(p)), sm)
                .await
                .map_err(|e| open_err(&raft_dir, format!("partition {p}: {e}")))?;
            let initialized = raft.is_initialized().await.map_err(|e| open_err(&raft_dir, e.to_string()))?;
            if !initialized {
                let members = BTreeMap::from([(cfg.node_id, BasicNode::new(cfg.advertise_addr.clone()))]);
                raft.initialize(members)
                    .await
                    .map_err(|e| open_err(&raft_dir, format!("initializing partition {p}: {e}")))?;
            }
            partitions.push(Partition { raft, shared });
        }
        Ok(Self { node_id: cfg.node_id, partitions, log_db })
    }

    fn partition(&self, p: u32) -> Result<&Partition, IngesterError> {
        self.partitions.get(p as usize).ok_or(IngesterError::NoSuchPartition(p))
    }

    /// Proposes `batch` to partition `p` and waits until it is committed on a
    /// majority's disks and applied; returns what applying it did.
    #[tracing::instrument(level = "debug", skip(self, batch), fields(streams = batch.streams.len()))]
    pub async fn push(&self, p: u32, mut batch: PushBatch) -> Result<PushOutcome, IngesterError> {
        batch.now = crate::time::now_ns();
        let answer = self.propose(p, &Command::Push(batch)).await?;
        command::decode(&answer).map_err(|e| IngesterError::Unavailable { partition: p, problem: e.to_string() })
    }

    /// Proposes a command and waits until it is committed and applied;
    /// returns the state machine's encoded answer.
    pub async fn propose(&self, p: u32, cmd: &Command) -> Result<Vec<u8>, IngesterError> {
        let part = self.partition(p)?;
        let unavailable = |problem: String| IngesterError::Unavailable { partition: p, problem };
        let bytes = command::encode(cmd).map_err(|e| unavailable(e.to_string()))?;
        match part.raft.client_write(bytes).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(IngesterError::NotLeader { partition: p, leader: f.leader_id })
            }
            Err(e) => Err(unavailable(e.to_string())),
        }
    }

    /// Whether this node leads partition `p`.
    pub fn is_leader(&self, p: u32) -> bool {
        self.partitions
            .get(p as usize)
            .is_some_and(|part| part.raft.metrics().borrow().current_leader == Some(self.node_id))
    }

    /// Runs `f` on partition `p`'s local state, without a read barrier (for
    /// the leader's own flush decisions).
    pub fn read_local<R>(&self, p: u32, f: impl FnOnce(&PartitionState) -> R) -> Result<R, IngesterError> {
        let part = self.partition(p)?;
        let s = part.shared.read();
        Ok(f(&s.state))
    }

    /// Runs `f` on partition `p`'s state once it reflects every write
    /// acknowledged before this call (a linearizable read).
    pub async fn read<R>(&self, p: u32, f: impl FnOnce(&PartitionState) -> R) -> Result<R, IngesterError> {
        let part = self.partition(p)?;
        part.raft.ensure_linearizable().await.map_err(|e| match e {
            RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f)) => {
                IngesterError::NotLeader { partition: p, leader: f.leader_id }
            }
            e => IngesterError::Unavailable { partition: p, problem: e.to_string() },
        })?;
        let s = part.shared.read();
        Ok(f(&s.state))
    }

    /// Number of partitions hosted.
    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// Partitions without a leader yet, for `/ready`.
    pub fn leaderless(&self) -> Vec<u32> {
        (0..self.partitions.len() as u32)
            .filter(|&p| self.partitions[p as usize].raft.metrics().borrow().current_leader.is_none())
            .collect()
    }

    /// openraft's metrics of every partition, for `/metrics`.
    pub fn raft_metrics(&self) -> Vec<RaftMetrics<NodeId, BasicNode>> {
        self.partitions.iter().map(|p| p.raft.metrics().borrow().clone()).collect()
    }

    /// Closed chunks waiting for a flush, per partition.
    pub fn flush_queue(&self) -> Vec<usize> {
        self.partitions.iter().map(|p| p.shared.read().state.flush_queue_len()).collect()
    }

    /// (streams, entries, bytes) held in memory per partition.
    pub fn memory_sizes(&self) -> Vec<(usize, usize, usize)> {
        self.partitions.iter().map(|p| p.shared.read().state.sizes()).collect()
    }

    /// The shared log database, for its group-commit counters.
    pub fn log_db(&self) -> &LogDb {
        &self.log_db
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Stops every group; waits up to `timeout` for each.
    pub async fn shutdown(&self, timeout: Duration) {
        for (i, p) in self.partitions.iter().enumerate() {
            if tokio::time::timeout(timeout, p.raft.shutdown()).await.is_err() {
                tracing::warn!(partition = i, "raft group did not stop in time");
            }
        }
    }
}
