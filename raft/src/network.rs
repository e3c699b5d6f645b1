//! How groups reach their peers: one batching sender per peer node, and the
//! gRPC service that hands incoming messages to the local groups.
//!
//! Every Raft message (append-entries, heartbeats — which are empty
//! append-entries — votes and snapshot chunks) of *every* group on this node
//! bound for the same peer goes into that peer's queue. The peer's sender
//! takes everything queued, sends it as one `RaftTransport/Send` RPC, and
//! hands each reply back to the group that asked. While RPCs are in flight
//! (at most [`MAX_IN_FLIGHT`] per peer), new messages wait and join the next
//! batch: the busier the node, the bigger the batches, so the RPC rate stays
//! bounded however many groups share a pair of nodes (TiKV's and
//! CockroachDB's batching of Raft traffic).
//!
//! The receiving side ([`TransportService`]) hands each message to its group
//! concurrently, so the followers' appends of one batch are made durable by
//! one group-commit fsync, and answers once every message is answered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use balsa_proto::cluster::raft_transport_client::RaftTransportClient;
use balsa_proto::cluster::raft_transport_server::{RaftTransport, RaftTransportServer};
use balsa_proto::cluster::{raft_reply, RaftBatch, RaftBatchReply, RaftKind, RaftMessage, RaftReply};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{AnyError, BasicNode};
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::transport::{Channel, Endpoint};

use crate::codec::CodecError;
use crate::elections::{answer_pre_vote, Contacts, PreVoteRequest};
use crate::{GroupId, LogDb, NodeId, Raft, TypeConfig};

/// RPCs in flight to one peer at a time.
pub const MAX_IN_FLIGHT: usize = 4;

/// Most messages in one RPC (snapshot chunks are large: they go alone).
const MAX_BATCH_MESSAGES: usize = 4096;

/// Bytes of payload after which a batch is sent without taking more.
const MAX_BATCH_BYTES: usize = 8 << 20;

/// Longest a batch RPC may take before every message in it fails.
const BATCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest RPC a node accepts (snapshot chunks plus a full batch).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Most bytes of entries one AppendEntries carries. openraft bounds a
/// message by its number of entries only (`max_payload_entries`); a larger
/// message is refused here with `PayloadTooLarge` and a hint of how many
/// entries fit, and openraft sends fewer. Without it, entries whose sum
/// passed [`MAX_MESSAGE_BYTES`] failed every send while heartbeats went
/// through: nothing committed and nobody campaigned.
pub const MAX_APPEND_BYTES: usize = 16 << 20;

/// How many of `sizes` (bytes per entry, in order) one AppendEntries may
/// carry: as many as fit in [`MAX_APPEND_BYTES`], and at least one. `None`
/// if all fit.
pub fn entries_that_fit(sizes: impl IntoIterator<Item = usize>) -> Option<u64> {
    let (mut n, mut total) = (0u64, 0usize);
    for size in sizes {
        total = total.saturating_add(size);
        if total > MAX_APPEND_BYTES {
            return Some(n.max(1));
        }
        n += 1;
    }
    None
}

/// The groups hosted by this node, by id: where incoming messages go.
#[derive(Clone, Default)]
pub struct Groups {
    inner: Arc<RwLock<HashMap<GroupId, Raft>>>,
    /// Groups led here whose heartbeats are stopped (being handed over).
    muted: Arc<Mutex<std::collections::HashSet<GroupId>>>,
}

impl Groups {
    pub fn insert(&self, group: GroupId, raft: Raft) {
        self.inner.write().insert(group, raft);
    }

    pub fn remove(&self, group: GroupId) -> Option<Raft> {
        self.inner.write().remove(&group)
    }

    pub fn get(&self, group: GroupId) -> Option<Raft> {
        self.inner.read().get(&group).cloned()
    }

    pub fn ids(&self) -> Vec<GroupId> {
        let mut ids: Vec<GroupId> = self.inner.read().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Stops (`true`) or resumes the heartbeats of a group led here.
    pub fn mute(&self, group: GroupId, muted: bool) {
        let mut m = self.muted.lock();
        if muted {
            m.insert(group);
        } else {
            m.remove(&group);
        }
    }

    pub fn is_muted(&self, group: GroupId) -> bool {
        self.muted.lock().contains(&group)
    }
}

/// Counters an operator graphs: how well Raft traffic batches.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Batch RPCs sent.
    pub batches_sent: AtomicU64,
    /// Messages sent in those batches.
    pub messages_sent: AtomicU64,
    /// Batch RPCs that failed (peer down, timeout).
    pub batches_failed: AtomicU64,
    /// Messages received from peers.
    pub messages_received: AtomicU64,
}

/// A message waiting for its peer's next batch.
struct Pending {
    message: RaftMessage,
    reply: oneshot::Sender<Result<Vec<u8>, String>>,
}

/// The queue of one peer node and where it lives.
struct Peer {
    addr: String,
    queue: mpsc::UnboundedSender<Pending>,
}

/// Senders to every peer this node has talked to; shared by all groups.
#[derive(Clone)]
pub struct Peers {
    node_id: NodeId,
    peers: Arc<Mutex<HashMap<NodeId, Peer>>>,
    dialer: Dialer,
    stats: Arc<TransportStats>,
    contacts: Contacts,
    answered: Answered,
}

/// When each peer last answered a batch.
type Answered = Arc<Mutex<HashMap<NodeId, std::time::Instant>>>;

impl Peers {
    /// `dialer`: how to reach peers (TLS or plain HTTP/2, source address).
    pub fn new(node_id: NodeId, dialer: Dialer) -> Self {
        Self { node_id, peers: Arc::default(), dialer, stats: Arc::default(), contacts: Contacts::default(), answered: Arc::default() }
    }

    /// When `node` last answered a batch from this node: leaders send
    /// heartbeats every second, so this is a free liveness signal for
    /// every peer that shares a group with this node.
    pub fn last_answer(&self, node: NodeId) -> Option<std::time::Instant> {
        self.answered.lock().get(&node).copied()
    }

    pub fn stats(&self) -> &TransportStats {
        &self.stats
    }

    /// When each local group last heard from its leader.
    pub fn contacts(&self) -> &Contacts {
        &self.contacts
    }

    /// Asks `target` whether this node may campaign in `group`; any
    /// failure counts as no.
    pub async fn pre_vote(&self, target: NodeId, addr: &str, group: GroupId, last: &PreVoteRequest) -> bool {
        self.ask(target, addr, group, RaftKind::PreVote, last).await
    }

    /// Tells `target` that `next` is to lead `group` (see
    /// [`crate::elections::start_hand_over`]); true once `target` noted it.
    pub async fn announce_hand_over(&self, target: NodeId, addr: &str, group: GroupId, next: NodeId, term: u64) -> bool {
        self.ask(target, addr, group, RaftKind::HandOver, &(next, term)).await
    }

    /// A yes/no question to `target` about `group`, through its queue;
    /// no answer within a second counts as no.
    async fn ask<Q: Serialize>(&self, target: NodeId, addr: &str, group: GroupId, kind: RaftKind, question: &Q) -> bool {
        let Ok(payload) = encode(question) else { return false };
        let (tx, rx) = oneshot::channel();
        let message = RaftMessage { group, kind: kind as i32, payload };
        if self.queue(target, addr).send(Pending { message, reply: tx }).is_err() {
            return false;
        }
        match tokio::time::timeout(Duration::from_secs(1), rx).await {
            Ok(Ok(Ok(answer))) => decode::<bool>(&answer).unwrap_or(false),
            _ => false,
        }
    }

    /// The network factory of one group.
    pub fn network(&self, group: GroupId) -> Network {
        Network { peers: self.clone(), group }
    }

    /// The queue to `target` at `addr`, started on first use (and again if
    /// the peer moved to a new address).
    fn queue(&self, target: NodeId, addr: &str) -> mpsc::UnboundedSender<Pending> {
        let mut peers = self.peers.lock();
        if let Some(p) = peers.get(&target) {
            if p.addr == addr && !p.queue.is_closed() {
                return p.queue.clone();
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let channel = self.dialer.endpoint(addr).map(|e| e.connect_lazy()).map_err(Arc::new);
        tokio::spawn(send_loop(self.node_id, target, channel, rx, self.stats.clone(), self.answered.clone()));
        peers.insert(target, Peer { addr: addr.to_string(), queue: tx.clone() });
        tx
    }
}

/// How this process dials other Balsa nodes; every gRPC client of the
/// process (Raft transport, controller, ingester client) uses the one
/// dialer.
#[derive(Clone, Debug, Default)]
pub struct Dialer {
    /// TLS towards peers; `None` for plain HTTP/2.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// The local address connections leave from (`--grpc.source-addr`);
    /// `None`: chosen by the kernel.
    pub source: Option<std::net::IpAddr>,
}

/// HTTP/2 flow control and framing between nodes (and for the gRPC
/// server, [`serve_settings`]). HTTP/2's defaults (64 KiB windows, 16 KiB
/// frames) make a 200 KB replicated batch wait for window updates and go
/// out as a dozen frames; nodes trust each other, so they allow megabytes.
pub const H2_STREAM_WINDOW: u32 = 4 << 20;
pub const H2_CONNECTION_WINDOW: u32 = 16 << 20;
pub const H2_MAX_FRAME: u32 = 1 << 20;

/// The gRPC server with the HTTP/2 settings nodes dial with.
pub fn serve_settings(server: tonic::transport::Server) -> tonic::transport::Server {
    server
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(H2_MAX_FRAME)
}

/// Why a peer address cannot be dialed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("bad peer address {addr}: {source}")]
    Address { addr: String, source: tonic::transport::Error },
    #[error("TLS towards {addr}: {source}")]
    Tls { addr: String, source: tonic::transport::Error },
}

impl Dialer {
    /// The gRPC endpoint of a peer address (`host:port`, or a full URI).
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, DialError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let uri = if addr.contains("://") { addr.to_string() } else { format!("{scheme}://{addr}") };
        let mut e = Endpoint::from_shared(uri)
            .map_err(|source| DialError::Address { addr: addr.to_string(), source })?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .max_frame_size(H2_MAX_FRAME)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .local_address(self.source);
        if let Some(tls) = &self.tls {
            e = e.tls_config(tls.clone()).map_err(|source| DialError::Tls { addr: addr.to_string(), source })?;
        }
        Ok(e)
    }
}

/// Sends the queued messages of one peer in batches until every sender of
/// the queue is gone.
async fn send_loop(
    from: NodeId,
    to: NodeId,
    channel: Result<Channel, Arc<DialError>>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    stats: Arc<TransportStats>,
    answered: Answered,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        // Let the other groups' messages of this instant (a heartbeat
        // round) join the batch.
        tokio::task::yield_now().await;
        let mut batch = vec![first];
        let mut bytes = batch[0].message.payload.len();
        while batch.len() < MAX_BATCH_MESSAGES && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.message.payload.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let channel = channel.clone();
        let (stats, answered) = (stats.clone(), answered.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if send_batch(from, to, channel, batch, &stats).await {
                answered.lock().insert(to, std::time::Instant::now());
            }
        });
    }
}

/// Sends one batch and hands out the replies; true if the peer answered.
async fn send_batch(from: NodeId, to: NodeId, channel: Result<Channel, Arc<DialError>>, batch: Vec<Pending>, stats: &TransportStats) -> bool {
    let (messages, replies): (Vec<RaftMessage>, Vec<_>) = batch.into_iter().map(|p| (p.message, p.reply)).unzip();
    let n = messages.len() as u64;
    let result = match channel {
        Err(e) => Err(e.to_string()),
        Ok(ch) => {
            let mut client = RaftTransportClient::new(ch)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            let mut req = tonic::Request::new(RaftBatch { from, to, messages });
            req.set_timeout(BATCH_TIMEOUT);
            match client.send(req).await {
                Ok(r) if r.get_ref().replies.len() == replies.len() => Ok(r.into_inner().replies),
                Ok(r) => Err(format!("node {to} answered {} replies to {} messages", r.get_ref().replies.len(), replies.len())),
                Err(s) => Err(format!("node {to}: {}", s.message())),
            }
        }
    };
    stats.batches_sent.fetch_add(1, Ordering::Relaxed);
    stats.messages_sent.fetch_add(n, Ordering::Relaxed);
    match result {
        Ok(answers) => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let r = match answer.result {
                    Some(raft_reply::Result::Answer(b)) => Ok(b),
                    Some(raft_reply::Result::Unreachable(e)) => Err(e),
                    None => Err(format!("node {to} sent an empty reply")),
                };
                let _ = reply.send(r);
            }
            true
        }
        Err(e) => {
            stats.batches_failed.fetch_add(1, Ordering::Relaxed);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
            false
        }
    }
}

/// The network factory of one group.
#[derive(Clone)]
pub struct Network {
    peers: Peers,
    group: GroupId,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient { group: self.group, target, queue: self.peers.queue(target, &node.addr) }
    }
}

/// One group's connection to one peer: a handle on the peer's queue.
pub struct PeerClient {
    group: GroupId,
    target: NodeId,
    queue: mpsc::UnboundedSender<Pending>,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, CodecError> {
    crate::codec::to_vec(&[], v)
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, CodecError> {
    crate::codec::from_slice(b)
}

impl PeerClient {
    /// Queues `req` for the peer's next batch and waits for the answer.
    async fn call<Req, Resp, E>(
        &self,
        kind: RaftKind,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let unreachable = |e: String| RPCError::Unreachable(Unreachable::new(&AnyError::error(e)));
        let payload = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&AnyError::error(e))))?;
        let (tx, rx) = oneshot::channel();
        let message = RaftMessage { group: self.group, kind: kind as i32, payload };
        self.queue
            .send(Pending { message, reply: tx })
            .map_err(|_| unreachable(format!("node {}: its sender stopped", self.target)))?;
        let answer = match tokio::time::timeout(option.hard_ttl(), rx).await {
            Ok(Ok(Ok(bytes))) => bytes,
            Ok(Ok(Err(e))) => return Err(unreachable(e)),
            Ok(Err(_)) => return Err(unreachable(format!("node {}: the batch was dropped", self.target))),
            Err(_) => {
                return Err(RPCError::Network(NetworkError::new(&AnyError::error(format!(
                    "node {}: no answer within {:?}",
                    self.target,
                    option.hard_ttl()
                )))))
            }
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(&answer).map_err(|e| RPCError::Network(NetworkError::new(&AnyError::error(e))))?;
        result.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let sizes = rpc.entries.iter().map(|e| match &e.payload {
            openraft::EntryPayload::Normal(bytes) => bytes.len() + 32,
            _ => 256,
        });
        if rpc.entries.len() > 1 {
            if let Some(fit) = entries_that_fit(sizes) {
                return Err(RPCError::PayloadTooLarge(openraft::error::PayloadTooLarge::new_entries_hint(fit)));
            }
        }
        self.call(RaftKind::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(RaftKind::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RaftKind::Vote, &rpc, &option).await
    }
}

/// The receiving side: hands each message of a batch to its local group.
pub struct TransportService {
    node_id: NodeId,
    groups: Groups,
    stats: Arc<TransportStats>,
    contacts: Contacts,
    db: LogDb,
}

impl TransportService {
    pub fn new(node_id: NodeId, groups: Groups, peers: &Peers, db: LogDb) -> Self {
        Self { node_id, groups, stats: peers.stats.clone(), contacts: peers.contacts.clone(), db }
    }

    pub fn into_server(self) -> RaftTransportServer<Self> {
        RaftTransportServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    async fn deliver(&self, from: NodeId, m: RaftMessage) -> RaftReply {
        let undelivered = |why: String| RaftReply { result: Some(raft_reply::Result::Unreachable(why)) };
        let result = match self.groups.get(m.group) {
            None => return undelivered(format!("group {} is not hosted on node {}", m.group, self.node_id)),
            Some(raft) => match RaftKind::try_from(m.kind) {
                Ok(RaftKind::AppendEntries) => match decode::<AppendEntriesRequest<TypeConfig>>(&m.payload) {
                    Ok(req) => {
                        let term = req.vote.leader_id().get_term();
                        let answer = raft.append_entries(req).await;
                        if matches!(&answer, Ok(r) if r.is_success()) {
                            self.contacts.heard(m.group, term);
                        }
                        encode(&answer)
                    }
                    Err(e) => Err(e),
                },
                Ok(RaftKind::PreVote) => match decode::<PreVoteRequest>(&m.payload) {
                    Ok(last) => encode(&answer_pre_vote(&self.contacts, &self.db, &raft, m.group, from, &last).await),
                    Err(e) => Err(e),
                },
                Ok(RaftKind::HandOver) => match decode::<(NodeId, u64)>(&m.payload) {
                    // A node shutting down takes no leadership; an
                    // announcement from an older term is stale.
                    Ok((next, _)) if next == self.node_id && self.contacts.is_retiring() => encode(&false),
                    Ok((_, term)) if term < raft.metrics().borrow().current_term => encode(&false),
                    Ok((next, term)) => {
                        tracing::info!(group = m.group, from, next, term, "leader hands the group over");
                        self.contacts.handing_over(m.group, next, term);
                        encode(&true)
                    }
                    Err(e) => Err(e),
                },
                Ok(RaftKind::Vote) => match decode::<VoteRequest<NodeId>>(&m.payload) {
                    Ok(req) => encode(&raft.vote(req).await),
                    Err(e) => Err(e),
                },
                Ok(RaftKind::InstallSnapshot) => match decode::<InstallSnapshotRequest<TypeConfig>>(&m.payload) {
                    Ok(req) => encode(&raft.install_snapshot(req).await),
                    Err(e) => Err(e),
                },
                _ => return undelivered(format!("unknown Raft message kind {}", m.kind)),
            },
        };
        match result {
            Ok(b) => RaftReply { result: Some(raft_reply::Result::Answer(b)) },
            Err(e) => undelivered(e.to_string()),
        }
    }
}

#[tonic::async_trait]
impl RaftTransport for TransportService {
    async fn send(&self, request: tonic::Request<RaftBatch>) -> Result<tonic::Response<RaftBatchReply>, tonic::Status> {
        let batch = request.into_inner();
        if batch.to != self.node_id {
            return Err(tonic::Status::failed_precondition(format!(
                "this is node {}, not node {} (a stale address in the ring?)",
                self.node_id, batch.to
            )));
        }
        self.stats.messages_received.fetch_add(batch.messages.len() as u64, Ordering::Relaxed);
        let from = batch.from;
        let replies = futures::future::join_all(batch.messages.into_iter().map(|m| self.deliver(from, m))).await;
        Ok(tonic::Response::new(RaftBatchReply { replies }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_entries_carry_what_fits_and_always_one() {
        assert_eq!(entries_that_fit([1 << 20; 10]), None);
        assert_eq!(entries_that_fit([4 << 20; 300]), Some(4));
        assert_eq!(entries_that_fit([40 << 20, 1]), Some(1), "one entry alone always goes");
        assert_eq!(entries_that_fit([1, 40 << 20]), Some(1));
    }
}
