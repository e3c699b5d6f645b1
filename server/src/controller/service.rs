//! The `Controller` gRPC API, its client, and the ring watch of processes
//! that host no controller replica (distributors, queriers).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use balsa_proto::cluster as pb;
use balsa_proto::cluster::controller_client::ControllerClient;
use balsa_proto::cluster::controller_server::{Controller as ControllerApi, ControllerServer};
use balsa_raft::network::{DialError, Dialer};
use futures::Stream;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::{Controller, ControllerCommand, ControllerError};
use crate::ring::{NodeInfo, NodeState, RingState, RingWatch};

/// Serves the controller API from this node's replica.
pub struct ControllerService {
    pub controller: Arc<Controller>,
    /// Set when the process stops: ring streams end, so the server's
    /// graceful shutdown does not wait on them.
    pub stop: watch::Receiver<bool>,
}

impl ControllerService {
    pub fn into_server(self) -> ControllerServer<Self> {
        ControllerServer::new(self)
    }
}

fn status(e: ControllerError) -> Status {
    match e {
        ControllerError::NoLeader(m) => Status::unavailable(m),
        ControllerError::Refused(m) => Status::failed_precondition(m),
        e => Status::internal(e.to_string()),
    }
}

#[tonic::async_trait]
impl ControllerApi for ControllerService {
    async fn join(&self, request: Request<pb::JoinRequest>) -> Result<Response<pb::ControllerReply>, Status> {
        let n = request.into_inner().node.ok_or_else(|| Status::invalid_argument("join without a node"))?;
        if n.id == 0 || n.grpc_addr.is_empty() {
            return Err(Status::invalid_argument("a joining node needs an id above 0 and a gRPC address"));
        }
        let node = NodeInfo {
            id: n.id,
            zone: n.zone,
            grpc_addr: n.grpc_addr,
            http_addr: n.http_addr,
            state: NodeState::Active,
            incarnation: n.incarnation,
        };
        let epoch = self.controller.propose(&ControllerCommand::Join(node)).await.map_err(status)?;
        Ok(Response::new(pb::ControllerReply { ring_epoch: epoch }))
    }

    async fn set_state(&self, request: Request<pb::SetStateRequest>) -> Result<Response<pb::ControllerReply>, Status> {
        let r = request.into_inner();
        let state = NodeState::from_pb(r.state).ok_or_else(|| Status::invalid_argument("unknown node state"))?;
        if !self.controller.ring().nodes.contains_key(&r.node) {
            return Err(Status::not_found(format!("node {} is not in the ring", r.node)));
        }
        let epoch = self.controller.propose(&ControllerCommand::SetState { node: r.node, state }).await.map_err(status)?;
        Ok(Response::new(pb::ControllerReply { ring_epoch: epoch }))
    }

    async fn converged(&self, request: Request<pb::ConvergedRequest>) -> Result<Response<pb::ControllerReply>, Status> {
        let known = self.controller.ring().partitions.len();
        let mut partitions = Vec::new();
        for pe in request.into_inner().partitions {
            if pe.partition as usize >= known {
                return Err(Status::not_found(format!("no partition {}", pe.partition)));
            }
            partitions.push((pe.partition, pe.epoch));
        }
        let cmd = ControllerCommand::Converged { partitions };
        let epoch = self.controller.propose(&cmd).await.map_err(status)?;
        Ok(Response::new(pb::ControllerReply { ring_epoch: epoch }))
    }

    async fn get_ring(&self, _request: Request<pb::RingRequest>) -> Result<Response<pb::Ring>, Status> {
        Ok(Response::new(self.controller.ring().to_pb(self.controller.leader())))
    }

    type WatchRingStream = Pin<Box<dyn Stream<Item = Result<pb::Ring, Status>> + Send>>;

    async fn watch_ring(&self, request: Request<pb::RingRequest>) -> Result<Response<Self::WatchRingStream>, Status> {
        let after = request.into_inner().after_epoch;
        let controller = self.controller.clone();
        let rx = controller.watch();
        let stop = self.stop.clone();
        let stream = futures::stream::unfold((rx, after, controller, stop), |(mut rx, mut after, controller, mut stop)| async move {
            loop {
                if *stop.borrow() {
                    return None;
                }
                let ring = rx.borrow_and_update().clone();
                if ring.epoch > after && !ring.partitions.is_empty() {
                    after = ring.epoch;
                    let msg = ring.to_pb(controller.leader());
                    return Some((Ok(msg), (rx, after, controller, stop)));
                }
                tokio::select! {
                    r = rx.changed() => r.ok()?,
                    r = stop.changed() => r.ok()?,
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Why a call to another node's controller service failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{addr}: {source}")]
    Dial { addr: String, source: DialError },
    #[error("cannot reach {addr}: {source}")]
    Connect { addr: String, source: tonic::transport::Error },
    #[error("{addr}: {}", status.message())]
    Call { addr: String, status: Status },
}

async fn client(addr: &str, dialer: &Dialer, timeout: Option<Duration>) -> Result<ControllerClient<tonic::transport::Channel>, RemoteError> {
    let mut endpoint = dialer.endpoint(addr).map_err(|source| RemoteError::Dial { addr: addr.into(), source })?;
    if let Some(t) = timeout {
        endpoint = endpoint.timeout(t);
    }
    let channel = endpoint.connect().await.map_err(|source| RemoteError::Connect { addr: addr.into(), source })?;
    Ok(ControllerClient::new(channel))
}

/// The ring as the node at `addr` knows it.
pub async fn fetch_ring(addr: &str, dialer: &Dialer) -> Result<RingState, RemoteError> {
    let mut c = client(addr, dialer, Some(CALL_TIMEOUT)).await?;
    let r = c.get_ring(pb::RingRequest { after_epoch: 0 }).await.map_err(|status| RemoteError::Call { addr: addr.into(), status })?;
    Ok(RingState::from_pb(r.get_ref()))
}

/// How long one call to another node's controller service may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Sends a command to the controller through the node at `addr`. A
/// refusal by the ring is [`ControllerError::Refused`]; anything else is
/// worth retrying elsewhere.
pub async fn send(addr: &str, dialer: &Dialer, cmd: &ControllerCommand) -> Result<u64, ControllerError> {
    send_once(addr, dialer, cmd).await.map_err(|(code, m)| match code {
        tonic::Code::FailedPrecondition => ControllerError::Refused(m),
        _ => ControllerError::NoLeader(m),
    })
}

async fn send_once(addr: &str, dialer: &Dialer, cmd: &ControllerCommand) -> Result<u64, (tonic::Code, String)> {
    let mut c = client(addr, dialer, Some(CALL_TIMEOUT)).await.map_err(|e| (tonic::Code::Unavailable, e.to_string()))?;
    let reply = match cmd {
        // A joining node asks to be active, whatever its state was.
        ControllerCommand::Join(n) => {
            c.join(pb::JoinRequest { node: Some(pb::NodeInfo { state: pb::NodeState::Active as i32, ..n.to_pb() }) }).await
        }
        ControllerCommand::SetState { node, state } => {
            c.set_state(pb::SetStateRequest { node: *node, state: state.to_pb() as i32 }).await
        }
        ControllerCommand::Converged { partitions } => {
            let partitions = partitions.iter().map(|(partition, epoch)| pb::PartitionEpoch { partition: *partition, epoch: *epoch }).collect();
            c.converged(pb::ConvergedRequest { partitions }).await
        }
        ControllerCommand::Bootstrap { .. } => return Err((tonic::Code::Internal, "bootstrap is never forwarded".into())),
    };
    reply.map(|r| r.into_inner().ring_epoch).map_err(|s| (s.code(), s.message().to_string()))
}

/// Follows the ring from the ingesters at `seeds` (and, once known, every
/// node of the ring), reconnecting to the next one when a stream ends.
pub fn watch_remote(seeds: Vec<String>, dialer: Dialer) -> RingWatch {
    let (tx, rx) = watch::channel(Arc::new(RingState::default()));
    tokio::spawn(async move {
        let mut i = 0usize;
        loop {
            let ring = tx.borrow().clone();
            let mut addrs = seeds.clone();
            addrs.extend(ring.nodes.values().filter(|n| n.state == NodeState::Active).map(|n| n.grpc_addr.clone()));
            addrs.dedup();
            let addr = addrs[i % addrs.len().max(1)].clone();
            i += 1;
            if let Err(e) = follow(&addr, &dialer, &tx).await {
                tracing::debug!(%addr, error = %e, "ring watch ended; trying the next node");
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    rx
}

async fn follow(addr: &str, dialer: &Dialer, tx: &watch::Sender<Arc<RingState>>) -> Result<(), RemoteError> {
    // A watch is a long-lived stream: no call timeout.
    let mut c = client(addr, dialer, None).await?;
    let after = tx.borrow().epoch;
    let call = |status| RemoteError::Call { addr: addr.into(), status };
    let mut stream = c.watch_ring(pb::RingRequest { after_epoch: after }).await.map_err(call)?.into_inner();
    while let Some(r) = stream.message().await.map_err(call)? {
        let ring = RingState::from_pb(&r);
        if ring.epoch > tx.borrow().epoch {
            tx.send_replace(Arc::new(ring));
        }
    }
    Ok(())
}
