//! Elections with a pre-vote, driven by one loop per node.
//!
//! openraft 0.9 campaigns as soon as a follower's timer expires, raising its
//! term; a node cut off from its peers keeps doing so, and when it returns
//! its higher term makes the healthy leader step down. Balsa turns
//! openraft's own elections off (`enable_elect: false`) and decides here:
//!
//! 1. a voter that has not received an append-entries (heartbeats included)
//!    for its group for a random 1.5–3 s asks the group's other voters for a
//!    **pre-vote**, without changing any term;
//! 2. a peer grants it only if it has not heard from a leader of that group
//!    for a whole leader lease ([`LEASE`]) and the candidate's log is at
//!    least as up to date as its own;
//! 3. with a majority of grants (its own included) the node starts a real
//!    election (`trigger().elect()`), which its peers will accept.
//!
//! A node that cannot reach a majority never gets past step 1, so its term
//! stays where it was and its return disturbs nobody. A leader refuses
//! pre-votes for the groups it leads. The last contact per group is
//! recorded by the transport as messages arrive ([`Contacts`]).
//!
//! **Hand-over.** openraft 0.9 has no leadership transfer; [`start_hand_over`]
//! builds one on the pre-vote: the leader tells the group's voters that a
//! named target is to lead next (every voter then grants pre-votes to that
//! target only, for [`HAND_OVER_WINDOW`]), stops the group's heartbeats,
//! and the target campaigns as soon as its lease has run out, without
//! waiting for its random timeout. The old leader grants its vote (its own
//! openraft lease ran out long ago) and steps down on the new term.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::RaftLogStorage;
use openraft::{LogId, ServerState};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::network::Peers;
use crate::{GroupId, Groups, LogDb, NodeId};

/// Shortest time without a leader's message before a voter asks for votes.
pub const ELECTION_TIMEOUT_MIN: Duration = Duration::from_millis(1500);
/// Longest such time (each attempt draws between the two).
pub const ELECTION_TIMEOUT_MAX: Duration = Duration::from_millis(3000);
/// How long a follower trusts a leader it heard from: it refuses pre-votes
/// (and openraft refuses votes) for this long after the last contact.
pub const LEASE: Duration = ELECTION_TIMEOUT_MAX;

/// How long the voters of a group being handed over favour the named target.
pub const HAND_OVER_WINDOW: Duration = Duration::from_secs(10);

/// A hand-over announced by a group's leader.
#[derive(Clone, Copy, Debug)]
struct Announced {
    /// The node to lead next.
    target: NodeId,
    /// The announcing leader's term.
    term: u64,
    at: Instant,
}

/// When each group last heard from a leader, and which groups are being
/// handed to whom, per node.
#[derive(Clone, Default)]
pub struct Contacts {
    inner: Arc<Mutex<HashMap<GroupId, Instant>>>,
    hand_overs: Arc<Mutex<HashMap<GroupId, Announced>>>,
    retiring: Arc<std::sync::atomic::AtomicBool>,
}

impl Contacts {
    /// This node is shutting down: from now on it neither campaigns nor
    /// accepts a hand-over.
    pub fn retire(&self) {
        self.retiring.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_retiring(&self) -> bool {
        self.retiring.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `group`'s leader of `term` announced that `target` is to lead it next.
    pub fn handing_over(&self, group: GroupId, target: NodeId, term: u64) {
        self.hand_overs.lock().insert(group, Announced { target, term, at: Instant::now() });
    }

    /// The announced next leader of `group`, within [`HAND_OVER_WINDOW`].
    pub fn hand_over_target(&self, group: GroupId) -> Option<NodeId> {
        let mut h = self.hand_overs.lock();
        match h.get(&group) {
            Some(a) if a.at.elapsed() < HAND_OVER_WINDOW => Some(a.target),
            Some(_) => {
                h.remove(&group);
                None
            }
            None => None,
        }
    }

    /// An append-entries of `group`'s leader of `term` arrived now. A
    /// leader of a later term than an announced hand-over ends it (the
    /// hand-over happened, or another leader took over).
    pub fn heard(&self, group: GroupId, term: u64) {
        self.inner.lock().insert(group, Instant::now());
        let mut h = self.hand_overs.lock();
        if h.get(&group).is_some_and(|a| term > a.term) {
            h.remove(&group);
        }
    }

    /// Time since the last contact; a group never heard from counts from
    /// its first look-up (so a fresh node waits a full timeout too).
    pub fn silence(&self, group: GroupId) -> Duration {
        self.inner.lock().entry(group).or_insert_with(Instant::now).elapsed()
    }
}

/// The pre-vote question: may this candidate, with this last log id, run?
pub type PreVoteRequest = Option<LogId<NodeId>>;

/// What a node knows when a pre-vote for one of its groups arrives.
#[derive(Debug, Clone, Copy)]
pub struct PreVoteContext {
    /// Time since this node last heard from the group's leader.
    pub silence: Duration,
    /// This node leads the group now.
    pub leading: bool,
    /// The node the group is being handed to (see [`start_hand_over`]).
    pub hand_over_to: Option<NodeId>,
    /// This node's last log id in the group.
    pub own_last: Option<LogId<NodeId>>,
}

/// The pre-vote decision: may `candidate`, whose log ends at
/// `candidate_last`, campaign? A group being handed over favours its named
/// target only; otherwise a leader refuses, and a follower agrees once its
/// lease ran out; never to a candidate with a shorter log.
pub fn grant_pre_vote(ctx: &PreVoteContext, candidate: NodeId, candidate_last: &PreVoteRequest) -> bool {
    let allowed = match ctx.hand_over_to {
        Some(target) => candidate == target,
        None => !ctx.leading,
    };
    allowed && ctx.silence >= LEASE && *candidate_last >= ctx.own_last
}

/// A peer's answer to `candidate`'s pre-vote for `group` (see the module docs).
pub async fn answer_pre_vote(
    contacts: &Contacts,
    db: &LogDb,
    raft: &crate::Raft,
    group: GroupId,
    candidate: NodeId,
    candidate_last: &PreVoteRequest,
) -> bool {
    let Ok(st) = db.group(group).get_log_state().await else { return false };
    let ctx = PreVoteContext {
        silence: contacts.silence(group),
        leading: raft.metrics().borrow().state == ServerState::Leader,
        hand_over_to: contacts.hand_over_target(group),
        own_last: st.last_log_id,
    };
    grant_pre_vote(&ctx, candidate, candidate_last)
}

fn draw_timeout() -> Duration {
    let span = (ELECTION_TIMEOUT_MAX - ELECTION_TIMEOUT_MIN).as_millis() as u64;
    ELECTION_TIMEOUT_MIN + Duration::from_millis(rand_u64() % span.max(1))
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// The voters of a group other than `node`, with their addresses.
fn other_voters(m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>, node: NodeId) -> Vec<(NodeId, String)> {
    let membership = m.membership_config.membership();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    membership
        .nodes()
        .filter(|(id, _)| **id != node && voters.contains(id))
        .map(|(id, n)| (*id, n.addr.clone()))
        .collect()
}

/// Why a hand-over did not happen.
#[derive(Debug, thiserror::Error)]
pub enum HandOverError {
    #[error("group {0} is not led by this node")]
    NotLeader(GroupId),
    #[error("node {target} is not a voter of group {group}")]
    NotVoter { group: GroupId, target: NodeId },
    #[error("node {target} did not accept the hand-over of group {group} (unreachable or shutting down)")]
    Declined { group: GroupId, target: NodeId },
    #[error("group {group} was still led here {waited:?} after handing it to node {target}")]
    TimedOut { group: GroupId, target: NodeId, waited: Duration },
}

/// A hand-over in progress: the voters were told, the heartbeats stopped.
#[must_use = "finish the hand-over, or the group's heartbeats stay off"]
pub struct HandOver {
    groups: Groups,
    raft: crate::Raft,
    group: GroupId,
    target: NodeId,
}

/// On the leader of `group`: makes `target` (another voter) its next
/// leader, as the module docs describe: tells every voter, then stops the
/// group's heartbeats. The caller should stop proposing to the group until
/// [`HandOver::finish`] returns: a write would renew the followers' lease.
/// Nothing changes if `target` cannot be reached or is shutting down.
pub async fn start_hand_over(
    node: NodeId,
    groups: &Groups,
    peers: &Peers,
    group: GroupId,
    target: NodeId,
) -> Result<HandOver, HandOverError> {
    let raft = groups.get(group).ok_or(HandOverError::NotLeader(group))?;
    let (others, term) = {
        let m = raft.metrics();
        let m = m.borrow();
        if m.state != ServerState::Leader {
            return Err(HandOverError::NotLeader(group));
        }
        (other_voters(&m, node), m.current_term)
    };
    let Some(addr) = others.iter().find(|(id, _)| *id == target).map(|(_, a)| a.clone()) else {
        return Err(HandOverError::NotVoter { group, target });
    };
    if !peers.announce_hand_over(target, &addr, group, target, term).await {
        return Err(HandOverError::Declined { group, target });
    }
    let rest = others.iter().filter(|(id, _)| *id != target);
    futures::future::join_all(rest.map(|(id, addr)| peers.announce_hand_over(*id, addr, group, target, term))).await;
    peers.contacts().handing_over(group, target, term);
    groups.mute(group, true);
    Ok(HandOver { groups: groups.clone(), raft, group, target })
}

impl HandOver {
    /// Waits until this node stepped down or `give_up` passed; the group's
    /// heartbeats resume either way.
    pub async fn finish(self, give_up: Duration) -> Result<(), HandOverError> {
        let mut metrics = self.raft.metrics();
        let stepped_down = tokio::time::timeout(give_up, metrics.wait_for(|m| m.state != ServerState::Leader)).await;
        self.groups.mute(self.group, false);
        match stepped_down {
            Ok(_) => Ok(()),
            Err(_) => Err(HandOverError::TimedOut { group: self.group, target: self.target, waited: give_up }),
        }
    }
}

/// Runs the elections of every group on this node until `stop`.
pub async fn run(node: NodeId, groups: Groups, peers: Peers, db: LogDb, mut stop: watch::Receiver<bool>) {
    let mut timeouts: HashMap<GroupId, Duration> = HashMap::new();
    // When this node last campaigned per group: paces its own attempts. It
    // is not contact with a leader, so it never makes this node refuse a
    // peer's pre-vote (two candidates doing so would block each other).
    let mut campaigned: HashMap<GroupId, Instant> = HashMap::new();
    let mut candidates = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
        if peers.contacts().is_retiring() {
            continue;
        }
        for g in groups.ids() {
            // Most groups heard from their leader recently: one map look-up.
            let silence = peers.contacts().silence(g);
            if silence < ELECTION_TIMEOUT_MIN {
                continue;
            }
            let Some(raft) = groups.get(g) else { continue };
            let (voters, others): (usize, Vec<(NodeId, String)>) = {
                let m = raft.metrics();
                let m = m.borrow();
                let membership = m.membership_config.membership();
                if m.state == ServerState::Leader || m.state == ServerState::Shutdown || !membership.voter_ids().any(|v| v == node) {
                    continue;
                }
                (membership.voter_ids().count(), other_voters(&m, node))
            };
            if voters == 1 {
                // The only voter: nobody to ask, nobody to disturb.
                let _ = raft.trigger().elect().await;
                continue;
            }
            let timeout = *timeouts.entry(g).or_insert_with(draw_timeout);
            let recently = campaigned.get(&g).is_some_and(|t| t.elapsed() < timeout);
            let due = match peers.contacts().hand_over_target(g) {
                // The named next leader goes as soon as the others' leases
                // allow it (once); the rest leave the group to it.
                Some(target) => target == node && silence >= LEASE && !recently,
                None => silence >= timeout && !recently,
            };
            if !due {
                continue;
            }
            timeouts.insert(g, draw_timeout());
            campaigned.insert(g, Instant::now());
            candidates.push((g, raft, voters, others));
        }
        // Every group due for an election asks at once: when a node dies,
        // the hundreds of groups it led must not wait for each other.
        let rounds = candidates.drain(..).map(|(g, raft, voters, others)| {
            let (peers, db) = (&peers, &db);
            async move {
                let Ok(st) = db.group(g).get_log_state().await else { return };
                let last = st.last_log_id;
                let asks = others.iter().map(|(id, addr)| peers.pre_vote(*id, addr, g, &last));
                let granted = 1 + futures::future::join_all(asks).await.into_iter().filter(|ok| *ok).count();
                if granted * 2 > voters {
                    tracing::info!(group = g, granted, voters, "pre-vote won; campaigning");
                    let _ = raft.trigger().elect().await;
                } else {
                    tracing::debug!(group = g, granted, voters, "pre-vote lost; not campaigning");
                }
            }
        });
        futures::future::join_all(rounds).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn log(term: u64, index: u64) -> Option<LogId<NodeId>> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    fn follower(silence: Duration) -> PreVoteContext {
        PreVoteContext { silence, leading: false, hand_over_to: None, own_last: log(2, 10) }
    }

    #[test]
    fn a_follower_agrees_only_after_its_lease_and_to_an_up_to_date_log() {
        assert!(!grant_pre_vote(&follower(LEASE - Duration::from_millis(1)), 2, &log(2, 10)));
        assert!(grant_pre_vote(&follower(LEASE), 2, &log(2, 10)));
        assert!(grant_pre_vote(&follower(LEASE), 2, &log(3, 4)), "a later term wins over a longer log");
        assert!(!grant_pre_vote(&follower(LEASE), 2, &log(2, 9)), "shorter log");
        assert!(!grant_pre_vote(&follower(LEASE), 2, &None));
    }

    #[test]
    fn a_leader_refuses_unless_it_hands_the_group_to_the_candidate() {
        let leader = PreVoteContext { leading: true, ..follower(Duration::from_secs(60)) };
        assert!(!grant_pre_vote(&leader, 2, &log(2, 10)));
        let handing = PreVoteContext { hand_over_to: Some(3), ..leader };
        assert!(grant_pre_vote(&handing, 3, &log(2, 10)));
        assert!(!grant_pre_vote(&handing, 2, &log(2, 10)), "only the named target");
        assert!(!grant_pre_vote(&handing, 3, &log(2, 9)), "the target must have every entry");
    }

    #[test]
    fn during_a_hand_over_followers_favour_the_target() {
        let f = PreVoteContext { hand_over_to: Some(3), ..follower(LEASE) };
        assert!(grant_pre_vote(&f, 3, &log(2, 10)));
        assert!(!grant_pre_vote(&f, 2, &log(2, 10)));
        let early = PreVoteContext { silence: Duration::from_secs(1), ..f };
        assert!(!grant_pre_vote(&early, 3, &log(2, 10)), "openraft would refuse its vote within the lease");
    }

    #[test]
    fn a_hand_over_announcement_ends_with_a_new_leader_or_in_time() {
        let c = Contacts::default();
        assert_eq!(c.hand_over_target(5), None);
        c.handing_over(5, 3, 7);
        assert_eq!(c.hand_over_target(5), Some(3));
        c.heard(5, 7);
        assert_eq!(c.hand_over_target(5), Some(3), "the announcing leader's own appends");
        c.heard(5, 8);
        assert_eq!(c.hand_over_target(5), None, "a later leader ends it");
        c.handing_over(5, 3, 8);
        c.hand_overs.lock().insert(5, Announced { target: 3, term: 8, at: Instant::now() - HAND_OVER_WINDOW });
        assert_eq!(c.hand_over_target(5), None, "and so does time");
    }
}
