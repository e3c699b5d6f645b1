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
//! stays where it was and its return disturbs nobody. The last contact per
//! group is recorded by the transport as messages arrive ([`Contacts`]).

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

/// When each group last heard from a leader, per node.
#[derive(Clone, Default)]
pub struct Contacts {
    inner: Arc<Mutex<HashMap<GroupId, Instant>>>,
}

impl Contacts {
    /// A leader's append-entries for `group` arrived now.
    pub fn heard(&self, group: GroupId) {
        self.inner.lock().insert(group, Instant::now());
    }

    /// Time since the last contact; a group never heard from counts from
    /// its first look-up (so a fresh node waits a full timeout too).
    pub fn silence(&self, group: GroupId) -> Duration {
        self.inner.lock().entry(group).or_insert_with(Instant::now).elapsed()
    }
}

/// The pre-vote question: may this candidate, with this last log id, run?
pub type PreVoteRequest = Option<LogId<NodeId>>;

/// A peer's answer to a pre-vote for `group` (see the module docs).
pub async fn answer_pre_vote(contacts: &Contacts, db: &LogDb, group: GroupId, candidate_last: &PreVoteRequest) -> bool {
    if contacts.silence(group) < LEASE {
        return false;
    }
    match db.group(group).get_log_state().await {
        Ok(st) => *candidate_last >= st.last_log_id,
        Err(_) => false,
    }
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

/// Runs the elections of every group on this node until `stop`.
pub async fn run(node: NodeId, groups: Groups, peers: Peers, db: LogDb, mut stop: watch::Receiver<bool>) {
    let mut timeouts: HashMap<GroupId, Duration> = HashMap::new();
    let mut candidates = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
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
                let voter_ids: Vec<NodeId> = membership.voter_ids().collect();
                let others = membership
                    .nodes()
                    .filter(|(id, _)| **id != node && voter_ids.contains(id))
                    .map(|(id, n)| (*id, n.addr.clone()))
                    .collect();
                (voter_ids.len(), others)
            };
            if voters == 1 {
                // The only voter: nobody to ask, nobody to disturb.
                let _ = raft.trigger().elect().await;
                continue;
            }
            let timeout = *timeouts.entry(g).or_insert_with(draw_timeout);
            if silence < timeout {
                continue;
            }
            timeouts.insert(g, draw_timeout());
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
                    // The campaign counts as contact: give it a timeout to finish.
                    peers.contacts().heard(g);
                } else {
                    tracing::debug!(group = g, granted, voters, "pre-vote lost; not campaigning");
                }
            }
        });
        futures::future::join_all(rounds).await;
    }
}
