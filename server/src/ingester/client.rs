//! The router distributors and queriers use: sends a partition's push or
//! read to the partition's leader — a direct call when this process hosts
//! the leader, the `Ingester` gRPC API otherwise.
//!
//! Leaders are learned from answers: the first guess is the ring's
//! preferred replica, a `NotLeader{hint}` redirects at once, and an
//! unreachable node or a leaderless partition is retried on the next
//! replica with backoff until [`RETRY_DEADLINE`] (each call at most
//! [`CALL_TIMEOUT`]). A push keeps its request
//! id across every retry, so the partition applies it once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use balsa_proto::cluster as pb;
use balsa_proto::cluster::ingester_client::IngesterClient as GrpcClient;
use balsa_raft::network::{DialError, Dialer};
use balsa_raft::NodeId;
use parking_lot::Mutex;
use tonic::transport::Channel;

use super::command::{self, PushBatch, PushOutcome};
use super::read::{HeadLimit, ReadConsistency, ReadReply, ReadRequest};
use super::{Ingester, IngesterError};
use crate::metrics::Metrics;
use crate::ring::{RingState, RingWatch};

/// How long a call keeps retrying a partition that has no reachable leader:
/// a failover (3–4 s) with room for a slow, loaded machine.
pub const RETRY_DEADLINE: Duration = Duration::from_secs(20);

/// Longest one remote call may take before the next replica is tried (a
/// paused or partitioned node must not hold a request for long).
const CALL_TIMEOUT: Duration = Duration::from_secs(4);

/// Timeout of a call to a node that already failed to answer during the
/// same request (it may be back, or still gone).
const RECALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Routes partition calls to leaders.
pub struct IngesterClient {
    local: Option<Arc<Ingester>>,
    ring: RingWatch,
    leaders: Mutex<HashMap<u32, NodeId>>,
    channels: Mutex<HashMap<String, Channel>>,
    dialer: Dialer,
    /// Proposals retried after a leader change.
    push_retries: prometheus::IntCounter,
}

enum Call<'a> {
    Push(&'a PushBatch),
    Read(&'a ReadRequest, ReadConsistency, Option<HeadLimit>),
}

enum Answer {
    Pushed(PushOutcome),
    Read(ReadReply),
}

impl IngesterClient {
    /// Registers the client's counter on `metrics`.
    pub fn new(local: Option<Arc<Ingester>>, ring: RingWatch, dialer: Dialer, metrics: &Metrics) -> Self {
        let push_retries = metrics.counter("balsa_distributor_push_retries_total", "Proposals retried after a leader change.");
        Self { local, ring, leaders: Mutex::default(), channels: Mutex::default(), dialer, push_retries }
    }

    /// The newest ring known.
    pub fn ring(&self) -> Arc<RingState> {
        self.ring.borrow().clone()
    }

    /// Partitions of the ring (0 until it is bootstrapped).
    pub fn partitions(&self) -> u32 {
        self.ring.borrow().partitions.len() as u32
    }

    /// Waits until the ring has partitions, up to `deadline`.
    async fn ready_ring(&self, deadline: Instant) -> Result<Arc<RingState>, IngesterError> {
        let mut rx = self.ring.clone();
        let wait = async move { rx.wait_for(|r| !r.partitions.is_empty()).await.map(|r| r.clone()) };
        match tokio::time::timeout_at(deadline.into(), wait).await {
            Ok(Ok(r)) => Ok(r),
            _ => Err(IngesterError::NoRing("no ring received from the controller yet".into())),
        }
    }

    /// Proposes `batch` to partition `p`'s leader; `Ok` once it is committed.
    pub async fn push(&self, p: u32, batch: &PushBatch) -> Result<PushOutcome, IngesterError> {
        match self.call(p, Call::Push(batch)).await? {
            Answer::Pushed(o) => Ok(o),
            Answer::Read(_) => Err(IngesterError::Unavailable { partition: p, problem: "mismatched answer".into() }),
        }
    }

    /// Reads partition `p`: on its leader, or with `Any` on the replica
    /// nearest (this process's own, else the ring's first).
    pub async fn read(
        &self,
        p: u32,
        req: &ReadRequest,
        consistency: ReadConsistency,
        head_limit: Option<HeadLimit>,
    ) -> Result<ReadReply, IngesterError> {
        match self.call(p, Call::Read(req, consistency, head_limit)).await? {
            Answer::Read(r) => Ok(r),
            Answer::Pushed(_) => Err(IngesterError::Unavailable { partition: p, problem: "mismatched answer".into() }),
        }
    }

    async fn call(&self, p: u32, call: Call<'_>) -> Result<Answer, IngesterError> {
        let deadline = Instant::now() + RETRY_DEADLINE;
        let mut backoff = Duration::from_millis(20);
        let mut attempt = 0usize;
        // Nodes that did not answer during this call: tried last.
        let mut silent: Vec<NodeId> = Vec::new();
        let mut redirects = 0usize;
        loop {
            let ring = self.ready_ring(deadline).await?;
            let Some(a) = ring.partitions.get(p as usize) else { return Err(IngesterError::NoSuchPartition(p)) };
            if a.replicas.is_empty() {
                return Err(IngesterError::NoRing(format!("partition {p} has no replicas yet")));
            }
            let local = self.local.as_ref().map(|l| l.node_id()).filter(|id| a.replicas.contains(id));
            let target = match (&call, local) {
                (Call::Read(_, ReadConsistency::Any, _), Some(me)) if attempt == 0 => me,
                _ => self.leaders.lock().get(&p).copied().unwrap_or_else(|| {
                    let n = a.replicas.len();
                    (0..n).map(|i| a.replicas[(attempt + i) % n]).find(|r| !silent.contains(r)).unwrap_or(a.replicas[attempt % n])
                }),
            };
            let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
            let limit = if silent.contains(&target) { RECALL_TIMEOUT } else { CALL_TIMEOUT };
            let answer = tokio::time::timeout(limit.min(remaining), self.call_node(&ring, target, p, &call))
                .await
                .unwrap_or_else(|_| Err(IngesterError::Unreachable { node: target, problem: format!("no answer within {CALL_TIMEOUT:?}") }));
            if matches!(answer, Err(IngesterError::Unreachable { .. })) && !silent.contains(&target) {
                silent.push(target);
            }
            let err = match answer {
                Ok(answer) => {
                    self.leaders.lock().insert(p, target);
                    return Ok(answer);
                }
                // A redirect: go to the named leader (if it did not answer
                // before, it gets a short timeout: the hint may be stale).
                Err(IngesterError::NotLeader { leader: Some(l), .. }) if l != target && ring.nodes.contains_key(&l) => {
                    self.leaders.lock().insert(p, l);
                    self.push_retries.inc();
                    redirects += 1;
                    // Two nodes can name each other while an election settles:
                    // after a few hops, wait before the next.
                    if redirects > 3 {
                        tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                    }
                    if Instant::now() < deadline {
                        continue;
                    }
                    IngesterError::NotLeader { partition: p, leader: Some(l) }
                }
                // No other replica can take over: answer now, not at the deadline.
                Err(e @ IngesterError::Stopped { .. }) if a.replicas.len() == 1 => return Err(e),
                Err(e @ (IngesterError::NotLeader { .. }
                | IngesterError::NoSuchPartition(_)
                | IngesterError::Unreachable { .. }
                | IngesterError::Unavailable { .. }
                | IngesterError::Stopped { .. })) => e,
                Err(e) => return Err(e),
            };
            self.leaders.lock().remove(&p);
            attempt += 1;
            if Instant::now() + backoff >= deadline {
                return Err(err);
            }
            self.push_retries.inc();
            tracing::debug!(partition = p, node = target, error = %err, "retrying on another replica");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    async fn call_node(&self, ring: &RingState, node: NodeId, p: u32, call: &Call<'_>) -> Result<Answer, IngesterError> {
        if let Some(local) = self.local.as_ref().filter(|l| l.node_id() == node) {
            return match call {
                Call::Push(b) => local.push(p, (*b).clone()).await.map(Answer::Pushed),
                Call::Read(r, c, l) => local.serve_read(p, r, *c, *l).await.map(Answer::Read),
            };
        }
        let addr = ring.addr(node).ok_or(IngesterError::Unreachable { node, problem: "not in the ring".into() })?;
        let unreachable = |problem: String| IngesterError::Unreachable { node, problem };
        let mut client = GrpcClient::new(self.channel(addr).map_err(|e| unreachable(e.to_string()))?)
            .max_decoding_message_size(balsa_raft::network::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(balsa_raft::network::MAX_MESSAGE_BYTES);
        let payload = match call {
            Call::Push(b) => command::encode(*b),
            // The limit last: a node that does not know it ignores it.
            Call::Read(r, c, l) => command::encode(&(*c, *r, *l)),
        }
        .map_err(|e| IngesterError::Unavailable { partition: p, problem: e.to_string() })?;
        let mut req = tonic::Request::new(pb::PartitionRequest { partition: p, payload });
        req.set_timeout(CALL_TIMEOUT);
        let reply = match call {
            Call::Push(_) => client.push(req).await,
            Call::Read(..) => client.read(req).await,
        }
        .map_err(|s| unreachable(s.message().to_string()))?
        .into_inner();
        use pb::partition_reply::Result as R;
        let bytes = match reply.result {
            Some(R::Ok(b)) => b,
            Some(R::NotLeader(n)) => return Err(IngesterError::NotLeader { partition: p, leader: n.known.then_some(n.leader) }),
            Some(R::NoSuchPartition(_)) => return Err(IngesterError::NoSuchPartition(p)),
            Some(R::Unavailable(m)) => return Err(IngesterError::Unavailable { partition: p, problem: m }),
            None => return Err(unreachable("empty reply".into())),
        };
        let bad = |e: command::CodecError| IngesterError::Unavailable { partition: p, problem: e.to_string() };
        Ok(match call {
            Call::Push(_) => Answer::Pushed(command::decode(&bytes).map_err(bad)?),
            Call::Read(..) => Answer::Read(command::decode(&bytes).map_err(bad)?),
        })
    }

    fn channel(&self, addr: &str) -> Result<Channel, DialError> {
        let mut channels = self.channels.lock();
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = self.dialer.endpoint(addr)?.connect_lazy();
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Every ingester's replica status, for `/ring` (nodes that do not
    /// answer within a second are listed with their error).
    pub async fn statuses(&self) -> Vec<(NodeId, Result<pb::NodeStatus, StatusError>)> {
        let ring = self.ring();
        let calls = ring.nodes.values().map(|n| {
            let channel = self.channel(&n.grpc_addr);
            async move {
                let r = async {
                    let mut c = GrpcClient::new(channel?);
                    let mut req = tonic::Request::new(pb::StatusRequest {});
                    req.set_timeout(Duration::from_secs(1));
                    c.status(req).await.map(|r| r.into_inner()).map_err(StatusError::Call)
                }
                .await;
                (n.id, r)
            }
        });
        futures::future::join_all(calls).await
    }
}

/// Why a node's status could not be read for `/ring`.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("{}", .0.message())]
    Call(tonic::Status),
}
