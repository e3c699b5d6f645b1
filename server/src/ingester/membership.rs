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
//!
//! The decisions are [`plan`]'s: pure, from the ring and a view of this
//! node's replicas ([`Local`]); [`Ingester::reconcile`] carries out its
//! actions (opening groups, membership changes, hand-overs, deletions).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Longest a learner may take to catch up before the move is retried.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

/// What this node knows of a partition it hosts, read from its Raft metrics.
#[derive(Clone, Debug, Default)]
struct Hosted {
    leader: bool,
    voters: BTreeSet<NodeId>,
    /// Voters and learners.
    members: BTreeSet<NodeId>,
    /// A joint configuration (a voter change in progress).
    joint: bool,
    /// On a leader: how many entries each node replicated to is behind.
    lag: BTreeMap<NodeId, u64>,
}

impl Hosted {
    fn of(m: &openraft::RaftMetrics<NodeId, BasicNode>) -> Self {
        let membership = m.membership_config.membership();
        let lag = m
            .replication
            .iter()
            .flatten()
            .map(|(n, matched)| (*n, m.last_log_index.unwrap_or(0).saturating_sub(matched.map_or(0, |l| l.index))))
            .collect();
        Hosted {
            leader: m.state == openraft::ServerState::Leader,
            voters: membership.voter_ids().collect(),
            members: membership.nodes().map(|(id, _)| *id).collect(),
            joint: membership.get_joint_config().len() > 1,
            lag,
        }
    }

    /// Whether this leader replicates to `node` and it is no more than
    /// [`MAX_HAND_OVER_LAG`] entries behind.
    fn caught_up(&self, node: NodeId) -> bool {
        self.lag.get(&node).is_some_and(|l| *l <= MAX_HAND_OVER_LAG)
    }
}

/// This node's replicas and the membership work already under way.
#[derive(Debug, Default)]
struct Local {
    me: NodeId,
    hosted: BTreeMap<u32, Hosted>,
    /// Led partitions being handed over (they no longer count as led).
    handing_over: usize,
    /// Partitions whose voters are being changed.
    changing: BTreeSet<u32>,
    /// Partitions not to be handed over now (handed over a moment ago, or
    /// refused by their preferred replica).
    hand_over_waiting: BTreeSet<u32>,
}

/// One step that brings this node's replicas closer to the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    /// Open (and, if this node is the first initial replica of a group
    /// never formed, initialize) a replica assigned here.
    Open(u32),
    /// Make the ring's replicas (with their addresses) the group's voters.
    ChangeVoters { partition: u32, nodes: BTreeMap<NodeId, String> },
    /// Hand the leadership to the preferred replica.
    HandOver { partition: u32, to: NodeId },
    /// Tell the controller these groups' voters are the ring's (partition,
    /// assignment epoch).
    Converged(Vec<(u32, u64)>),
    /// Remove a replica that is no longer assigned here; unless `removed`
    /// (the group no longer lists this node), only once its leader says
    /// this node is not a member.
    Drop { partition: u32, removed: bool },
}

/// The actions that bring `local` closer to `ring`. Pure: the same inputs
/// give the same actions; [`Ingester::reconcile`] carries them out.
fn plan(ring: &RingState, local: &Local) -> Vec<Action> {
    let me = local.me;
    let active = ring.nodes.values().filter(|n| n.state == NodeState::Active).count().max(1);
    let share = ring.partitions.len().div_ceil(active);
    let mut leading = local.hosted.values().filter(|h| h.leader).count().saturating_sub(local.handing_over);
    let mut actions = Vec::new();
    let mut formed = Vec::new();
    for (p, a) in ring.partitions.iter().enumerate() {
        let p = p as u32;
        let assigned = a.replicas.contains(&me);
        let Some(h) = local.hosted.get(&p) else {
            if assigned {
                actions.push(Action::Open(p));
            }
            continue;
        };
        if h.leader && !h.joint {
            let wanted: BTreeSet<NodeId> = a.replicas.iter().copied().collect();
            if h.voters == wanted {
                if !a.led {
                    formed.push((p, a.epoch));
                }
                let to = a.replicas[0];
                let active = ring.nodes.get(&to).is_some_and(|n| n.state == NodeState::Active);
                if leading > share && to != me && active && h.caught_up(to) && !local.hand_over_waiting.contains(&p) {
                    actions.push(Action::HandOver { partition: p, to });
                    leading -= 1;
                }
            } else if !wanted.is_empty() && !local.changing.contains(&p) {
                let nodes = a.replicas.iter().filter_map(|n| Some((*n, ring.addr(*n)?.to_string()))).collect();
                actions.push(Action::ChangeVoters { partition: p, nodes });
            }
        }
        if !assigned && !h.leader {
            actions.push(Action::Drop { partition: p, removed: !h.members.contains(&me) });
        }
    }
    if !formed.is_empty() {
        actions.push(Action::Converged(formed));
    }
    actions
}

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

    /// Carries out [`plan`]'s actions for `ring`.
    async fn reconcile(self: &Arc<Self>, ring: &RingState, controller: &Arc<Controller>) -> Result<(), IngesterError> {
        for action in plan(ring, &self.local()) {
            match action {
                Action::Open(p) => self.open_replica(p, ring).await?,
                Action::ChangeVoters { partition, nodes } => self.start_changing_voters(partition, nodes),
                Action::HandOver { partition, to } => {
                    self.hand_over_after.lock().insert(partition, Instant::now() + HAND_OVER_COOLDOWN);
                    tokio::spawn(self.clone().hand_over_to(partition, to, "this node leads more than its share"));
                }
                Action::Converged(formed) => self.report_converged(formed, controller),
                Action::Drop { partition, removed } => {
                    // A removed follower may never hear of its removal (the
                    // leader stops sending): ask the leader.
                    if removed || self.leader_says_member(ring, partition).await == Some(false) {
                        self.drop_replica(partition).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// What [`plan`] needs to know of this node.
    fn local(&self) -> Local {
        let now = Instant::now();
        Local {
            me: self.cfg.node_id,
            hosted: self.partitions.read().iter().map(|(p, part)| (*p, Hosted::of(&part.raft.metrics().borrow()))).collect(),
            handing_over: self.handing_over.lock().len(),
            changing: self.changing.lock().iter().copied().collect(),
            hand_over_waiting: self.hand_over_after.lock().iter().filter(|(_, t)| now < **t).map(|(p, _)| *p).collect(),
        }
    }

    /// Starts making `nodes` the voters of partition `p` (in the background;
    /// a failure is retried at a later reconcile).
    fn start_changing_voters(self: &Arc<Self>, p: u32, nodes: BTreeMap<NodeId, String>) {
        let Ok(part) = self.partition(p) else { return };
        if !self.changing.lock().insert(p) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.move_replicas(&part, p, nodes).await {
                tracing::warn!(partition = p, error = %e, "changing replicas; will retry");
            }
            this.changing.lock().remove(&p);
        });
    }

    /// Tells the controller that these groups formed, so the ring may move
    /// them now: together, so a new cluster of many partitions changes the
    /// ring once, not once per partition. One report at a time.
    fn report_converged(self: &Arc<Self>, formed: Vec<(u32, u64)>, controller: &Arc<Controller>) {
        if self.reporting.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let (this, controller) = (self.clone(), controller.clone());
        tokio::spawn(async move {
            let n = formed.len();
            if let Err(e) = controller.propose(&ControllerCommand::Converged { partitions: formed }).await {
                tracing::warn!(partitions = n, error = %e, "reporting groups' voters; will retry");
            }
            this.reporting.store(false, std::sync::atomic::Ordering::Release);
        });
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
                let soon = Instant::now() + HAND_OVER_RETRY;
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
            let h = Hosted::of(&part.raft.metrics().borrow());
            let target = h
                .voters
                .iter()
                .filter(|v| **v != self.cfg.node_id && ring.nodes.get(v).is_some_and(|n| n.state == NodeState::Active))
                .filter_map(|v| Some((*h.lag.get(v)?, *v)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Assignment, NodeInfo};

    fn ring(nodes: &[(NodeId, NodeState)], partitions: &[(&[NodeId], bool)]) -> RingState {
        RingState {
            epoch: 1,
            replication_factor: 3,
            nodes: nodes
                .iter()
                .map(|(id, state)| {
                    let info = NodeInfo {
                        id: *id,
                        zone: String::new(),
                        grpc_addr: format!("127.0.0.1:{}", 9000 + id),
                        http_addr: String::new(),
                        state: *state,
                        incarnation: 1,
                    };
                    (*id, info)
                })
                .collect(),
            partitions: partitions
                .iter()
                .enumerate()
                .map(|(i, (replicas, led))| Assignment {
                    replicas: replicas.to_vec(),
                    epoch: 10 + i as u64,
                    initial: replicas.to_vec(),
                    led: *led,
                })
                .collect(),
        }
    }

    fn active(ids: &[NodeId]) -> Vec<(NodeId, NodeState)> {
        ids.iter().map(|id| (*id, NodeState::Active)).collect()
    }

    /// A replica led here with `voters`, every one `lag` entries behind.
    fn leading(voters: &[NodeId], lag: u64) -> Hosted {
        let voters: BTreeSet<NodeId> = voters.iter().copied().collect();
        Hosted { leader: true, lag: voters.iter().map(|v| (*v, lag)).collect(), members: voters.clone(), voters, joint: false }
    }

    fn following(members: &[NodeId]) -> Hosted {
        let members: BTreeSet<NodeId> = members.iter().copied().collect();
        Hosted { leader: false, voters: members.clone(), members, ..Hosted::default() }
    }

    #[test]
    fn opens_the_replicas_assigned_here_and_nothing_else() {
        let r = ring(&active(&[1, 2, 3]), &[(&[1, 2, 3], false), (&[2, 3, 4], false), (&[3, 1, 2], false)]);
        let local = Local { me: 1, ..Local::default() };
        assert_eq!(plan(&r, &local), vec![Action::Open(0), Action::Open(2)]);
    }

    #[test]
    fn a_leader_reports_groups_formed_once_and_moves_voters_to_the_ring() {
        let r = ring(&active(&[1, 2, 3, 4]), &[(&[1, 2, 3], false), (&[1, 2, 4], true), (&[1, 2, 3], true)]);
        let mut local = Local { me: 1, ..Local::default() };
        local.hosted.insert(0, leading(&[1, 2, 3], 0));
        local.hosted.insert(1, leading(&[1, 2, 3], 0));
        local.hosted.insert(2, leading(&[1, 2, 3], 0));
        let nodes: BTreeMap<NodeId, String> =
            [1, 2, 4].iter().map(|n| (*n, format!("127.0.0.1:{}", 9000 + n))).collect();
        assert_eq!(
            plan(&r, &local),
            vec![Action::ChangeVoters { partition: 1, nodes }, Action::Converged(vec![(0, 10)])],
            "partition 0 formed (not yet reported), 1 must gain node 4, 2 is done"
        );
        // Nothing is changed twice, nor during a joint configuration.
        local.changing.insert(1);
        assert_eq!(plan(&r, &local), vec![Action::Converged(vec![(0, 10)])]);
        local.changing.clear();
        if let Some(h) = local.hosted.get_mut(&1) {
            h.joint = true;
        }
        assert_eq!(plan(&r, &local), vec![Action::Converged(vec![(0, 10)])]);
        // A follower decides none of it.
        let hosted = (0..3).map(|p| (p, following(&[1, 2, 3]))).collect();
        let local = Local { me: 1, hosted, ..Local::default() };
        assert_eq!(plan(&r, &local), vec![]);
    }

    #[test]
    fn a_node_leading_more_than_its_share_hands_over_to_caught_up_preferred_replicas() {
        // 4 partitions over 2 active nodes: a share of 2. Node 1 leads all
        // four; 2 and 3 prefer node 2.
        let parts: &[(&[NodeId], bool)] = &[(&[1, 2], true), (&[1, 2], true), (&[2, 1], true), (&[2, 1], true)];
        let r = ring(&active(&[1, 2]), parts);
        let mut local = Local { me: 1, ..Local::default() };
        for p in 0..4 {
            local.hosted.insert(p, leading(&[1, 2], 0));
        }
        assert_eq!(
            plan(&r, &local),
            vec![Action::HandOver { partition: 2, to: 2 }, Action::HandOver { partition: 3, to: 2 }]
        );
        // One already going: one more brings it to its share.
        local.handing_over = 1;
        local.hand_over_waiting.insert(2);
        assert_eq!(plan(&r, &local), vec![Action::HandOver { partition: 3, to: 2 }]);
        // Not to a replica far behind, nor to one that is not active.
        local.handing_over = 0;
        local.hand_over_waiting.clear();
        local.hosted.insert(2, leading(&[1, 2], MAX_HAND_OVER_LAG + 1));
        assert_eq!(plan(&r, &local), vec![Action::HandOver { partition: 3, to: 2 }]);
        let r = ring(&[(1, NodeState::Active), (2, NodeState::Draining)], parts);
        assert_eq!(plan(&r, &local), vec![]);
        // At its share (4 partitions, 1 active node: a share of 4) it keeps them.
        local.hosted.insert(2, leading(&[1, 2], 0));
        assert_eq!(plan(&r, &local), vec![]);
    }

    #[test]
    fn a_replica_moved_away_is_dropped_only_by_a_follower_and_asks_its_leader_while_still_a_member() {
        let r = ring(&active(&[1, 2, 3, 4]), &[(&[2, 3, 4], true), (&[2, 3, 4], true), (&[2, 3, 4], true)]);
        let local = Local {
            me: 1,
            hosted: [(0, following(&[2, 3, 4])), (1, following(&[1, 2, 3])), (2, leading(&[1, 2, 3], 0))].into(),
            ..Local::default()
        };
        let nodes: BTreeMap<NodeId, String> = [2, 3, 4].iter().map(|n| (*n, format!("127.0.0.1:{}", 9000 + n))).collect();
        assert_eq!(
            plan(&r, &local),
            vec![
                Action::Drop { partition: 0, removed: true },
                Action::Drop { partition: 1, removed: false },
                // The leader moves the group first; it is dropped once it follows.
                Action::ChangeVoters { partition: 2, nodes },
            ]
        );
    }
}
