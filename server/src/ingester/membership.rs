//! Replicas follow the ring. On every ring change (and every second):
//!
//! - a partition assigned to this node that is not open here is opened
//!   (its snapshot and log, if any, are loaded); if this node is the first
//!   of the partition's *initial* replicas and the group was never
//!   initialized, it initializes it with those replicas;
//! - on the partition's leader, once the group's voters are the ring's
//!   replicas for the first time, the controller is told (`Converged`): only
//!   then may placement move the partition (before, only its initial
//!   replicas can form the group), and never again is it initialized;
//! - on the partition's leader, the group's voters converge to the ring's
//!   replicas: new nodes are added as learners and caught up (openraft's
//!   blocking `add_learner`), then one joint-consensus change replaces the
//!   voters; writes continue throughout;
//! - a replica that is no longer assigned here and no longer a member of
//!   its group is shut down and its log and snapshot deleted;
//! - leader balance: a node leading more than its share of partitions
//!   (⌈partitions ÷ active nodes⌉) hands those whose preferred replica (the
//!   ring's first) is another active, caught-up voter to that replica
//!   ([`balsa_raft::elections::start_hand_over`]). A partition only ever moves to
//!   its preferred replica, so leaderships converge to the placement's
//!   spread without moving back and forth.
//!
//! A node whose data directory was lost must rejoin under a new node id:
//! its old id is still a voter of groups it cannot rebuild alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use balsa_raft::NodeId;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use tokio::sync::watch;

use super::partition::PartitionState;
use super::{Ingester, IngesterError, Partition};
use crate::controller::{Controller, ControllerCommand};
use crate::ring::{NodeState, RingState};

/// What a membership change of openraft can fail with.
type MembershipError = RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>;

/// Why a partition's replicas could not be moved (retried at the next ring
/// change or check).
#[derive(Debug, thiserror::Error)]
enum MoveError {
    #[error("node {node} did not catch up within {CATCH_UP_TIMEOUT:?}")]
    CatchUp { node: NodeId },
    #[error("adding node {node} as a learner: {source}")]
    AddLearner { node: NodeId, source: MembershipError },
    #[error("changing the voters: {0}")]
    ChangeVoters(MembershipError),
}

/// Least time between two hand-overs of one partition from one node.
const HAND_OVER_COOLDOWN: Duration = Duration::from_secs(60);

/// Time before a hand-over the target did not accept is tried again.
const HAND_OVER_RETRY: Duration = Duration::from_secs(5);

/// Most entries a node may be behind to be handed a leadership.
const MAX_HAND_OVER_LAG: u64 = 100;

/// On a leader: how many entries `node` is behind (None: not replicated to).
fn lag_of(m: &openraft::RaftMetrics<NodeId, BasicNode>, node: NodeId) -> Option<u64> {
    let matched = m.replication.as_ref()?.get(&node)?.map_or(0, |l| l.index);
    Some(m.last_log_index.unwrap_or(0).saturating_sub(matched))
}

/// Longest a learner may take to catch up before the move is retried.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

impl Ingester {
    /// Keeps the hosted replicas in step with the ring until `stop`. A
    /// replica that cannot be opened (a corrupt snapshot, an unreadable
    /// log) ends it with that error: the node must not serve without it.
    pub async fn run(self: Arc<Self>, controller: Arc<Controller>, mut stop: watch::Receiver<bool>) -> Result<(), IngesterError> {
        let mut ring = self.ring.clone();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let current = ring.borrow_and_update().clone();
            self.reconcile(&current, &controller).await?;
            tokio::select! {
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return Ok(()),
                r = ring.changed() => if r.is_err() { return Ok(()) },
                _ = tick.tick() => {}
            }
        }
    }

    async fn reconcile(self: &Arc<Self>, ring: &RingState, controller: &Arc<Controller>) -> Result<(), IngesterError> {
        let me = self.cfg.node_id;
        let active = ring.nodes.values().filter(|n| n.state == NodeState::Active).count().max(1);
        let share = ring.partitions.len().div_ceil(active);
        // Partitions being handed over no longer count.
        let mut leading = self.led_partitions().len().saturating_sub(self.handing_over.lock().len());
        // Groups led here that formed: reported together, so a new cluster
        // of many partitions changes the ring once, not once per partition.
        let mut formed: Vec<(u32, u64)> = Vec::new();
        for (p, a) in ring.partitions.iter().enumerate() {
            let p = p as u32;
            let assigned = a.replicas.contains(&me);
            let local = self.partitions.read().get(&p).cloned();
            match local {
                None if assigned => self.open_replica(p, ring).await?,
                None => {}
                Some(part) => {
                    let m = part.raft.metrics().borrow().clone();
                    let membership = m.membership_config.membership().clone();
                    if m.state == openraft::ServerState::Leader {
                        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
                        let wanted: BTreeSet<NodeId> = a.replicas.iter().copied().collect();
                        let joint = membership.get_joint_config().len() > 1;
                        if !joint && voters == wanted && !a.led {
                            formed.push((p, a.epoch));
                        }
                        if !joint && voters == wanted && leading > share && self.hand_over(ring, p, a.replicas[0], &m) {
                            leading -= 1;
                        }
                        if !joint && voters != wanted && !wanted.is_empty() && self.changing.lock().insert(p) {
                            let this = self.clone();
                            let nodes: BTreeMap<NodeId, String> =
                                a.replicas.iter().filter_map(|n| Some((*n, ring.addr(*n)?.to_string()))).collect();
                            tokio::spawn(async move {
                                if let Err(e) = this.move_replicas(&part, p, nodes).await {
                                    tracing::warn!(partition = p, error = %e, "changing replicas; will retry");
                                }
                                this.changing.lock().remove(&p);
                            });
                        }
                    }
                    if !assigned && m.state != openraft::ServerState::Leader {
                        let member = membership.nodes().any(|(id, _)| *id == me);
                        // A removed follower may never hear of its removal
                        // (the leader stops sending): ask the leader.
                        if !member || self.leader_says_member(ring, p).await == Some(false) {
                            self.drop_replica(p).await;
                        }
                    }
                }
            }
        }
        if !formed.is_empty() && !self.reporting.swap(true, std::sync::atomic::Ordering::AcqRel) {
            // The groups formed: the ring may move them now.
            let (this, controller) = (self.clone(), controller.clone());
            tokio::spawn(async move {
                let n = formed.len();
                if let Err(e) = controller.propose(&ControllerCommand::Converged { partitions: formed }).await {
                    tracing::warn!(partitions = n, error = %e, "reporting groups' voters; will retry");
                }
                this.reporting.store(false, std::sync::atomic::Ordering::Release);
            });
        }
        Ok(())
    }

    /// Opens partition `p` here; initializes it if this node is the first
    /// of its initial replicas and it never was.
    async fn open_replica(&self, p: u32, ring: &RingState) -> Result<(), IngesterError> {
        let open_err = |problem: String| IngesterError::Open { path: self.snap_dir.display().to_string(), problem };
        let config =
            balsa_raft::group_config(format!("balsa-partition-{p}"), self.cfg.snapshot_logs_since_last)
                .map_err(|e| open_err(e.to_string()))?;
        let (raft, shared) = balsa_raft::open_group::<PartitionState>(
            self.cfg.node_id,
            u64::from(p),
            config,
            &self.log_db,
            &self.peers,
            &self.groups,
            self.snap_dir.join(format!("partition-{p}.snap")),
        )
        .await
        .map_err(|e| open_err(format!("partition {p}: {e}")))?;
        let a = &ring.partitions[p as usize];
        let initialized = raft.is_initialized().await.map_err(|e| open_err(e.to_string()))?;
        // Once the group reported its voters (`led`) it exists: a node that
        // lost or dropped its copy must never create a second one.
        if !initialized && !a.led && a.initial.first() == Some(&self.cfg.node_id) {
            let members: BTreeMap<NodeId, BasicNode> =
                a.initial.iter().filter_map(|n| Some((*n, BasicNode::new(ring.addr(*n)?)))).collect();
            tracing::info!(partition = p, ?members, "initializing partition");
            raft.initialize(members).await.map_err(|e| open_err(format!("initializing partition {p}: {e}")))?;
        }
        self.partitions.write().insert(p, Arc::new(Partition { raft, shared }));
        Ok(())
    }

    /// On the leader of partition `p`: starts handing it to `to`, its
    /// preferred replica, if that is another active node, caught up, and
    /// `p` was not handed over from here in the last minute (nor refused
    /// by `to` in the last seconds: it may be down).
    fn hand_over(self: &Arc<Self>, ring: &RingState, p: u32, to: NodeId, m: &openraft::RaftMetrics<NodeId, BasicNode>) -> bool {
        let active = ring.nodes.get(&to).is_some_and(|n| n.state == NodeState::Active);
        let now = std::time::Instant::now();
        let waiting = self.hand_over_after.lock().get(&p).is_some_and(|t| now < *t);
        if to == self.cfg.node_id || !active || lag_of(m, to).is_none_or(|l| l > MAX_HAND_OVER_LAG) || waiting {
            return false;
        }
        self.hand_over_after.lock().insert(p, now + HAND_OVER_COOLDOWN);
        tokio::spawn(self.clone().hand_over_to(p, to, "this node leads more than its share"));
        true
    }

    /// Hands partition `p` to `to` and waits until done. Requests for `p`
    /// are redirected to `to` meanwhile (about the 3 s lease; the router
    /// retries them).
    async fn hand_over_to(self: Arc<Self>, p: u32, to: NodeId, why: &'static str) {
        let me = self.cfg.node_id;
        {
            // One hand-over of a partition at a time; its requests are
            // redirected from now on.
            let mut h = self.handing_over.lock();
            if h.contains_key(&p) {
                return;
            }
            h.insert(p, to);
        }
        let result = match balsa_raft::elections::start_hand_over(me, &self.groups, &self.peers, u64::from(p), to).await {
            Ok(h) => {
                tracing::info!(partition = p, to, why, "handing leadership over");
                h.finish(balsa_raft::elections::HAND_OVER_WINDOW).await
            }
            Err(e) => {
                // Not started: `to` may be down or restarting; ask again soon.
                let soon = std::time::Instant::now() + HAND_OVER_RETRY;
                self.hand_over_after.lock().insert(p, soon);
                Err(e)
            }
        };
        self.handing_over.lock().remove(&p);
        let counter = match &result {
            Ok(()) => &self.hand_overs[0],
            Err(e) => {
                tracing::warn!(partition = p, to, error = %e, "leader hand-over failed");
                &self.hand_overs[1]
            }
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// On shutdown (SIGTERM): this node stops campaigning and hands every
    /// partition it leads to its most caught-up other voter that is active,
    /// so writes move on before the process goes. Returns when every
    /// hand-over ended (at most ~11 s).
    pub async fn hand_over_leaderships(self: &Arc<Self>) {
        self.peers.contacts().retire();
        let ring = self.ring.borrow().clone();
        let mut moves = Vec::new();
        for p in self.led_partitions() {
            let Ok(part) = self.partition(p) else { continue };
            let m = part.raft.metrics().borrow().clone();
            let target = m
                .membership_config
                .membership()
                .voter_ids()
                .filter(|v| *v != self.cfg.node_id && ring.nodes.get(v).is_some_and(|n| n.state == NodeState::Active))
                .filter_map(|v| Some((lag_of(&m, v)?, v)))
                .filter(|(lag, _)| *lag <= MAX_HAND_OVER_LAG)
                .min();
            if let Some((_, to)) = target {
                moves.push(self.clone().hand_over_to(p, to, "shutting down"));
            }
        }
        if !moves.is_empty() {
            tracing::info!(partitions = moves.len(), "handing leaderships over before exiting");
            futures::future::join_all(moves).await;
        }
    }

    /// On the leader: makes `nodes` the voters of partition `p`.
    async fn move_replicas(&self, part: &Partition, p: u32, nodes: BTreeMap<NodeId, String>) -> Result<(), MoveError> {
        let members: BTreeSet<NodeId> =
            part.raft.metrics().borrow().membership_config.membership().nodes().map(|(id, _)| *id).collect();
        for (id, addr) in &nodes {
            if !members.contains(id) {
                tracing::info!(partition = p, node = id, "adding a learner");
                tokio::time::timeout(CATCH_UP_TIMEOUT, part.raft.add_learner(*id, BasicNode::new(addr.clone()), true))
                    .await
                    .map_err(|_| MoveError::CatchUp { node: *id })?
                    .map_err(|source| MoveError::AddLearner { node: *id, source })?;
            }
        }
        let voters: BTreeSet<NodeId> = nodes.keys().copied().collect();
        tracing::info!(partition = p, ?voters, "changing voters");
        part.raft.change_membership(ChangeMembers::ReplaceAllVoters(voters), false).await.map_err(MoveError::ChangeVoters)?;
        Ok(())
    }

    /// Drains this node: marks it `DRAINING` so placement moves every
    /// replica (and with it every leadership) away, waits until it hosts
    /// none, then marks it `LEFT`. The caller exits afterwards.
    pub async fn drain(&self, controller: &Controller) -> Result<(), IngesterError> {
        let me = self.cfg.node_id;
        let fail = |e: crate::controller::ControllerError| IngesterError::NoRing(e.to_string());
        controller.propose(&ControllerCommand::SetState { node: me, state: NodeState::Draining }).await.map_err(fail)?;
        tracing::info!(node = me, "draining: moving every replica away");
        let mut ring = self.ring.clone();
        loop {
            let assigned = ring.borrow().partitions.iter().filter(|a| a.replicas.contains(&me)).count();
            let hosted = self.partitions.read().len();
            if assigned == 0 && hosted == 0 {
                break;
            }
            tracing::info!(assigned, hosted, "draining");
            let _ = tokio::time::timeout(Duration::from_secs(1), ring.changed()).await;
        }
        controller.propose(&ControllerCommand::SetState { node: me, state: NodeState::Left }).await.map_err(fail)?;
        tracing::info!(node = me, "drained: no replica left here");
        Ok(())
    }

    /// Whether partition `p`'s leader (looked for among the ring's
    /// replicas) counts this node as a member; `None` when no leader
    /// answered. Data is only deleted on a definite answer.
    async fn leader_says_member(&self, ring: &RingState, p: u32) -> Option<bool> {
        use balsa_proto::cluster::ingester_client::IngesterClient as GrpcClient;
        let me = self.cfg.node_id;
        for n in ring.partitions[p as usize].replicas.iter().filter(|n| **n != me) {
            let Some(addr) = ring.addr(*n) else { continue };
            let Ok(ep) = self.cfg.dialer.endpoint(addr) else { continue };
            let Ok(channel) = ep.timeout(Duration::from_secs(1)).connect().await else { continue };
            let Ok(status) = GrpcClient::new(channel).status(balsa_proto::cluster::StatusRequest {}).await else { continue };
            if let Some(r) = status.get_ref().replicas.iter().find(|r| r.partition == p && r.role == "leader") {
                return Some(r.voters.contains(&me) || r.learners.contains(&me));
            }
        }
        None
    }

    /// Shuts a replica that moved away down and deletes its data.
    async fn drop_replica(&self, p: u32) {
        let Some(part) = self.partitions.write().remove(&p) else { return };
        self.groups.remove(u64::from(p));
        if let Err(e) = part.raft.shutdown().await {
            tracing::warn!(partition = p, error = %e, "stopping a removed replica");
        }
        if let Err(e) = self.log_db.remove_group(u64::from(p)) {
            tracing::warn!(partition = p, error = %e, "deleting a removed replica's log");
        }
        if let Err(e) = balsa_raft::state_machine::remove_snapshot(&self.snap_dir.join(format!("partition-{p}.snap"))) {
            tracing::warn!(partition = p, error = %e, "deleting a removed replica's snapshot");
        }
        tracing::info!(partition = p, "replica moved away; removed");
    }
}
