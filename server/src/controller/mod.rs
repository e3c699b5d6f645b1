//! The controller: a Raft group on the ingesters that owns the ring.
//!
//! Every ingester hosts a replica of it (group [`CONTROLLER_GROUP`]): up to
//! [`MAX_VOTERS`] voters in distinct zones, the other ingesters learners, so
//! each ingester reads the ring from its own replica. The state machine is
//! the [`RingState`]; its commands are [`ControllerCommand`]s, and applying
//! one re-runs the pure [`placement`], so every replica computes the same
//! replica sets.
//!
//! - The first ingester, started without `--join`, initializes the group
//!   with itself and proposes `Bootstrap`; every ingester (re)joins by
//!   proposing `Join` with its addresses (forwarded to the leader).
//! - The leader keeps the group's own membership in step with the ring
//!   (learners for new nodes, voters spread over zones).
//! - [`service`] serves the `Controller` gRPC API: join, drain, and the ring
//!   as a stream for distributors and queriers.

pub mod admission;
pub mod placement;
pub mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use balsa_proto::cluster as pb;
use balsa_raft::codec::CodecError;
use balsa_raft::state_machine::{bincode_decode, bincode_encode};
use balsa_raft::{GroupId, Groups, ImageError, LogDb, NodeId, Peers, Raft, Replicated, Shared};
use balsa_raft::network::Dialer;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::ring::{Assignment, NodeInfo, NodeState, RingState, RingWatch};

/// Group id of the controller (partition groups use ids below 2³²).
pub const CONTROLLER_GROUP: GroupId = 1 << 32;

/// Most voters of the controller group.
pub const MAX_VOTERS: usize = 3;

/// How long a proposal keeps retrying while the group has no leader.
const PROPOSE_DEADLINE: Duration = Duration::from_secs(15);

/// What the controller replicates.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControllerCommand {
    /// Creates the partitions (once; later ones change nothing).
    Bootstrap { partitions: u32, replication_factor: u32 },
    /// A node starts or restarts: records its addresses; a node that had
    /// left or died is active again.
    Join(NodeInfo),
    SetState { node: NodeId, state: NodeState },
    /// Each (partition, epoch): the partition's leader has the voters of
    /// that ring epoch.
    Converged { partitions: Vec<(u32, u64)> },
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, CodecError> {
    balsa_raft::codec::to_vec(&[], v)
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, CodecError> {
    balsa_raft::codec::from_slice(b)
}

/// The ring epoch a command produced, or the ring's refusal.
fn answer(b: &[u8]) -> Result<u64, ControllerError> {
    decode::<Result<u64, String>>(b)?.map_err(ControllerError::Refused)
}

/// Why the ring refuses a node's join, if it does: its id is in the ring
/// with another data directory (incarnation) and has not left. Such a node
/// lost or wiped its disk: as a replica it would vote with an empty log and
/// could elect a replica missing acknowledged entries. Pure.
pub fn join_refusal(ring: &RingState, node: &NodeInfo) -> Option<String> {
    let old = ring.nodes.get(&node.id)?;
    let same = old.incarnation == 0 || node.incarnation == old.incarnation;
    if same || old.state == NodeState::Left {
        return None;
    }
    let why = format!("with another data directory (incarnation {:016x}; this one is {:016x})", old.incarnation, node.incarnation);
    Some(admission::lost_disk_refusal(ring, node.id, &why))
}

impl Replicated for RingState {
    type ApplyError = CodecError;
    const SNAPSHOT_KIND: [u8; 4] = *b"BRNG";
    /// Version 1: bincode of [`RingState`], a plain record (no caches, no
    /// shared pointers) whose parts (`NodeInfo`, `Assignment`) the
    /// controller's commands carry too.
    const IMAGE_VERSION: u16 = 1;
    /// The ring is small: its image is a copy.
    type Image = RingState;

    fn image(&self) -> RingState {
        self.clone()
    }

    fn encode_image(image: &RingState) -> Result<Vec<u8>, ImageError> {
        bincode_encode(image)
    }

    fn decode_image(version: u16, bytes: &[u8]) -> Result<Self, ImageError> {
        match version {
            1 => bincode_decode(bytes),
            found => Err(ImageError::UnknownVersion { found, newest: Self::IMAGE_VERSION }),
        }
    }

    /// Answers `Result<epoch, refusal>`.
    fn apply(&mut self, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
        let changed = match decode::<ControllerCommand>(bytes)? {
            ControllerCommand::Bootstrap { partitions, replication_factor } => {
                if self.partitions.is_empty() {
                    self.partitions = vec![Assignment::default(); partitions as usize];
                    self.replication_factor = replication_factor;
                    true
                } else {
                    false
                }
            }
            ControllerCommand::Join(mut node) => {
                if let Some(refusal) = join_refusal(self, &node) {
                    return encode(&Err::<u64, String>(refusal));
                }
                if let Some(old) = self.nodes.get(&node.id) {
                    // A draining node that restarts keeps draining.
                    node.state = if old.state == NodeState::Draining { NodeState::Draining } else { NodeState::Active };
                } else {
                    node.state = NodeState::Active;
                }
                let changed = self.nodes.get(&node.id) != Some(&node);
                self.nodes.insert(node.id, node);
                changed
            }
            ControllerCommand::SetState { node, state } => match self.nodes.get_mut(&node) {
                Some(n) if n.state != state => {
                    n.state = state;
                    true
                }
                _ => false,
            },
            ControllerCommand::Converged { partitions } => {
                let mut changed = false;
                for (p, epoch) in partitions {
                    if let Some(a) = self.partitions.get_mut(p as usize).filter(|a| a.epoch == epoch && !a.led) {
                        a.led = true;
                        changed = true;
                    }
                }
                changed
            }
        };
        if changed {
            placement::place(self);
            self.epoch += 1;
        }
        encode(&Ok::<u64, String>(self.epoch))
    }
}

/// Why the controller could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("cannot open the controller group: {0}")]
    Open(String),
    #[error("cannot open the controller group: {0}")]
    Group(#[from] balsa_raft::GroupError),
    #[error("controller record: {0}")]
    Codec(#[from] CodecError),
    #[error("the controller has no leader yet: {0}")]
    NoLeader(String),
    /// The ring refuses the command for good (retrying will not help).
    #[error("{0}")]
    Refused(String),
    #[error("controller: {0}")]
    Failed(String),
}

/// Settings of this node's controller replica.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// This node as it joins the ring.
    pub node: NodeInfo,
    /// Addresses of ingesters to join through; empty: bootstrap a new
    /// cluster (or restart the node that did).
    pub join: Vec<String>,
    pub partitions: u32,
    pub replication_factor: u32,
    /// An active node the controller's leader cannot reach for this long is
    /// marked `DEAD` (its replicas move where a zone has room).
    pub dead_node_timeout: Duration,
}

/// This node's replica of the controller group.
pub struct Controller {
    cfg: ControllerConfig,
    raft: Raft,
    shared: Arc<RwLock<Shared<RingState>>>,
    ring_tx: watch::Sender<Arc<RingState>>,
    dialer: Dialer,
    /// The Raft transport: when each node last answered (the leader's
    /// heartbeats reach every node, all being members of this group).
    peers: Peers,
    /// On the leader: when each node was last known alive.
    last_seen: parking_lot::Mutex<std::collections::HashMap<NodeId, Instant>>,
    /// When dead-node detection last ran.
    last_detection: parking_lot::Mutex<Option<Instant>>,
}

impl Controller {
    /// Opens the controller replica; on a node without `join` that was never
    /// initialized, makes it the group's only voter.
    pub async fn open(
        cfg: ControllerConfig,
        data_dir: &Path,
        db: &LogDb,
        peers: &Peers,
        groups: &Groups,
        dialer: Dialer,
    ) -> Result<Arc<Self>, ControllerError> {
        let config = balsa_raft::group_config("balsa-controller".into(), 1000)?;
        let (raft, shared) = balsa_raft::open_group::<RingState>(
            cfg.node.id,
            CONTROLLER_GROUP,
            config,
            db,
            peers,
            groups,
            data_dir.join("controller.snap"),
        )
        .await?;
        let initialized = raft.is_initialized().await.map_err(|e| ControllerError::Open(e.to_string()))?;
        if !initialized && cfg.join.is_empty() {
            let members = BTreeMap::from([(cfg.node.id, BasicNode::new(cfg.node.grpc_addr.clone()))]);
            raft.initialize(members).await.map_err(|e| ControllerError::Open(e.to_string()))?;
        }
        let ring = Arc::new(shared.read().state.clone());
        let (ring_tx, _) = watch::channel(ring);
        Ok(Arc::new(Self { cfg, raft, shared, ring_tx, dialer, peers: peers.clone(), last_seen: Default::default(), last_detection: Default::default() }))
    }

    /// The newest ring this replica has applied.
    pub fn watch(&self) -> RingWatch {
        self.ring_tx.subscribe()
    }

    pub fn ring(&self) -> Arc<RingState> {
        self.ring_tx.borrow().clone()
    }

    /// The controller group's leader, as this replica knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Proposes on this replica, which must be the leader.
    pub async fn propose_here(&self, cmd: &ControllerCommand) -> Result<u64, ControllerError> {
        let bytes = encode(cmd)?;
        match self.raft.client_write(bytes.into()).await {
            Ok(r) => answer(&r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ControllerError::NoLeader(format!("node {} is not the leader (leader: {:?})", self.cfg.node.id, f.leader_id)))
            }
            Err(e) => Err(ControllerError::Failed(e.to_string())),
        }
    }

    /// Proposes on the leader, forwarding there if needed, retrying while
    /// the group elects one.
    pub async fn propose(&self, cmd: &ControllerCommand) -> Result<u64, ControllerError> {
        let deadline = Instant::now() + PROPOSE_DEADLINE;
        let bytes = encode(cmd)?;
        loop {
            let problem = match self.raft.client_write(bytes.clone().into()).await {
                Ok(r) => return answer(&r.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => match f.leader_node {
                    Some(node) => match service::send(&node.addr, &self.dialer, cmd).await {
                        Ok(epoch) => return Ok(epoch),
                        Err(ControllerError::Refused(m)) => return Err(ControllerError::Refused(m)),
                        Err(e) => e.to_string(),
                    },
                    None => "no leader elected yet".to_string(),
                },
                Err(e) => return Err(ControllerError::Failed(e.to_string())),
            };
            if Instant::now() > deadline {
                return Err(ControllerError::NoLeader(problem));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Joins (or re-joins) this node to the ring: through the seeds, or
    /// locally on the node that bootstraps. Retries until it succeeds or
    /// `stop` is set.
    pub async fn join(&self, mut stop: watch::Receiver<bool>) -> Result<(), ControllerError> {
        let join = ControllerCommand::Join(self.cfg.node.clone());
        loop {
            let result = if self.cfg.join.is_empty() {
                // The bootstrapping node: on its first start it is the
                // group's only voter and creates the ring; restarted, it
                // already holds the ring and only re-joins (forwarded to
                // the leader, which may be another node by then).
                let boot = ControllerCommand::Bootstrap {
                    partitions: self.cfg.partitions,
                    replication_factor: self.cfg.replication_factor,
                };
                let fresh = self.shared.read().state.partitions.is_empty();
                let booted = if fresh { self.propose(&boot).await.map(|_| ()) } else { Ok(()) };
                match booted {
                    Ok(()) => self.propose(&join).await.map(|_| ()),
                    Err(e) => Err(e),
                }
            } else {
                let mut last = ControllerError::NoLeader("no seed answered".into());
                let mut ok = false;
                for seed in &self.cfg.join {
                    match service::send(seed, &self.dialer, &join).await {
                        Ok(_) => {
                            ok = true;
                            break;
                        }
                        Err(ControllerError::Refused(m)) => return Err(ControllerError::Refused(m)),
                        Err(e) => last = ControllerError::NoLeader(format!("{seed}: {e}")),
                    }
                }
                if ok {
                    Ok(())
                } else {
                    Err(last)
                }
            };
            match result {
                Ok(()) => {
                    tracing::info!(node = self.cfg.node.id, zone = %self.cfg.node.zone, "joined the ring");
                    return Ok(());
                }
                Err(ControllerError::Refused(m)) => return Err(ControllerError::Refused(m)),
                Err(e) => tracing::warn!(error = %e, "cannot join the ring yet; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return Err(ControllerError::Failed("stopped before joining".into())),
            }
        }
    }

    /// Publishes every newly applied ring, and while this replica leads,
    /// keeps the group's membership in step and detects dead nodes. Runs
    /// until `stop`.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut metrics = self.raft.metrics();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
                r = metrics.changed() => if r.is_err() { return },
                _ = tick.tick() => {
                    if self.leader() == Some(self.cfg.node.id) {
                        if let Err(e) = self.lead().await {
                            tracing::warn!(error = %e, "controller duties");
                        }
                        if let Err(e) = self.detect_dead().await {
                            tracing::warn!(error = %e, "dead-node detection");
                        }
                    } else {
                        self.last_seen.lock().clear();
                    }
                }
            }
            let state = self.shared.read().state.clone();
            if state.epoch != self.ring_tx.borrow().epoch {
                self.ring_tx.send_replace(Arc::new(state));
            }
        }
    }

    /// The leader's duty: the group's membership follows the ring's nodes.
    async fn lead(&self) -> Result<(), ControllerError> {
        let ring = self.ring();
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        if membership.get_joint_config().len() > 1 {
            return Ok(()); // a change is in progress
        }
        let members: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        // New nodes become learners.
        for n in ring.nodes.values() {
            if matches!(n.state, NodeState::Active | NodeState::Draining) && !members.contains(&n.id) {
                self.raft
                    .add_learner(n.id, BasicNode::new(n.grpc_addr.clone()), false)
                    .await
                    .map_err(|e| ControllerError::Failed(e.to_string()))?;
            }
        }
        // Voters: up to MAX_VOTERS active nodes, distinct zones first,
        // current voters kept where possible.
        let wanted = pick_voters(&ring, &voters);
        if !wanted.is_empty() && wanted != voters && wanted.iter().all(|v| members.contains(v)) {
            let up_to_date = wanted.iter().all(|v| {
                voters.contains(v)
                    || m.replication
                        .as_ref()
                        .and_then(|r| r.get(v))
                        .and_then(|l| *l)
                        .is_some_and(|l| l.index + 10 >= m.last_log_index.unwrap_or(0))
            });
            if up_to_date {
                tracing::info!(?voters, ?wanted, "changing controller voters");
                self.raft
                    .change_membership(ChangeMembers::ReplaceAllVoters(wanted), true)
                    .await
                    .map_err(|e| ControllerError::Failed(e.to_string()))?;
            }
        }
        // Nodes that left are forgotten by the group.
        let gone: BTreeSet<NodeId> = ring
            .nodes
            .values()
            .filter(|n| n.state == NodeState::Left && members.contains(&n.id) && !voters.contains(&n.id))
            .map(|n| n.id)
            .collect();
        if !gone.is_empty() {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(gone), false)
                .await
                .map_err(|e| ControllerError::Failed(e.to_string()))?;
        }
        Ok(())
    }
}

impl Controller {
    /// On the leader: marks an active node that has not answered the Raft
    /// transport (this group's heartbeats reach every node each second) for
    /// `dead_node_timeout` as `DEAD`. No extra RPC.
    async fn detect_dead(&self) -> Result<(), ControllerError> {
        // Answered a heartbeat batch within the last few seconds.
        const ALIVE: Duration = Duration::from_secs(3);
        let ring = self.ring();
        let now = Instant::now();
        {
            // After a stall of this process (suspended, starved) nobody's
            // answers are fresh: start counting again rather than declare
            // every node dead at once.
            let mut last = self.last_detection.lock();
            if last.is_some_and(|t| now.duration_since(t) > ALIVE) {
                self.last_seen.lock().clear();
            }
            *last = Some(now);
        }
        let answers = ring
            .nodes
            .values()
            .filter(|n| n.state == NodeState::Active)
            .map(|n| (n.id, self.peers.last_answer(n.id).is_some_and(|t| now.duration_since(t) < ALIVE)));
        let mut dead = Vec::new();
        {
            let mut seen = self.last_seen.lock();
            for (id, ok) in answers {
                let last = seen.entry(id).or_insert(now);
                if ok || id == self.cfg.node.id {
                    *last = now;
                } else if now.duration_since(*last) >= self.cfg.dead_node_timeout {
                    dead.push(id);
                }
            }
        }
        for id in dead {
            tracing::warn!(node = id, timeout = ?self.cfg.dead_node_timeout, "node unreachable; marking it dead");
            self.propose_here(&ControllerCommand::SetState { node: id, state: NodeState::Dead }).await?;
            self.last_seen.lock().remove(&id);
        }
        Ok(())
    }
}

/// The controller voters the ring calls for: active nodes, one per zone
/// first, current voters preferred, at most [`MAX_VOTERS`].
fn pick_voters(ring: &RingState, current: &BTreeSet<NodeId>) -> BTreeSet<NodeId> {
    let mut active: Vec<&NodeInfo> = ring.nodes.values().filter(|n| n.state == NodeState::Active).collect();
    active.sort_by_key(|n| (!current.contains(&n.id), n.id));
    let mut out = BTreeSet::new();
    let mut zones = BTreeSet::new();
    for n in &active {
        if out.len() < MAX_VOTERS && zones.insert(n.zone.clone()) {
            out.insert(n.id);
        }
    }
    for n in &active {
        if out.len() < MAX_VOTERS {
            out.insert(n.id);
        }
    }
    out
}

/// One replica's Raft state, as `/ring` and the `Status` RPC show it.
pub fn replica_status(partition: u32, m: &openraft::RaftMetrics<NodeId, BasicNode>) -> pb::ReplicaStatus {
    let membership = m.membership_config.membership();
    let lag = match (&m.replication, m.last_log_index) {
        (Some(rep), Some(last)) => rep.iter().map(|(id, l)| (*id, last.saturating_sub(l.map_or(0, |l| l.index)))).collect(),
        _ => Default::default(),
    };
    let role = match m.state {
        openraft::ServerState::Leader => "leader",
        openraft::ServerState::Follower => "follower",
        openraft::ServerState::Learner => "learner",
        openraft::ServerState::Candidate => "candidate",
        openraft::ServerState::Shutdown => "shutdown",
    };
    pb::ReplicaStatus {
        partition,
        role: role.into(),
        term: m.current_term,
        leader_known: m.current_leader.is_some(),
        leader: m.current_leader.unwrap_or(0),
        last_log_index: m.last_log_index.unwrap_or(0),
        committed_index: m.last_applied.map_or(0, |l| l.index),
        applied_index: m.last_applied.map_or(0, |l| l.index),
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        lag,
    }
}
