//! The `Ingester` gRPC API: pushes and reads addressed to a partition's
//! leader on this node, and this node's replica status.

use std::sync::Arc;

use balsa_proto::cluster as pb;
use balsa_proto::cluster::ingester_server::{Ingester as IngesterApi, IngesterServer};
use tonic::{Request, Response, Status};

use super::command::{self, PushBatch};
use super::read::{HeadLimit, ReadConsistency, ReadRequest};
use super::{Ingester, IngesterError};
use crate::controller::{replica_status, Controller};

/// Serves the ingester API from this node's replicas.
pub struct IngesterService {
    pub ingester: Arc<Ingester>,
    pub controller: Arc<Controller>,
}

impl IngesterService {
    pub fn into_server(self) -> IngesterServer<Self> {
        IngesterServer::new(self)
            .max_decoding_message_size(balsa_raft::network::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(balsa_raft::network::MAX_MESSAGE_BYTES)
    }
}

/// The wire form of a partition call's result.
pub fn reply(r: Result<Vec<u8>, IngesterError>) -> pb::PartitionReply {
    use pb::partition_reply::Result as R;
    let result = match r {
        Ok(b) => R::Ok(b),
        Err(IngesterError::NotLeader { leader, .. }) => {
            R::NotLeader(pb::NotLeader { known: leader.is_some(), leader: leader.unwrap_or(0) })
        }
        Err(IngesterError::NoSuchPartition(p)) => R::NoSuchPartition(format!("partition {p} is not hosted here")),
        Err(e) => R::Unavailable(e.to_string()),
    };
    pb::PartitionReply { result: Some(result) }
}

#[tonic::async_trait]
impl IngesterApi for IngesterService {
    async fn push(&self, request: Request<pb::PartitionRequest>) -> Result<Response<pb::PartitionReply>, Status> {
        let r = request.into_inner();
        let batch: PushBatch =
            command::decode(&r.payload).map_err(|e| Status::invalid_argument(format!("undecodable push batch: {e}")))?;
        let result = match self.ingester.push(r.partition, batch).await {
            Ok(outcome) => command::encode(&outcome)
                .map_err(|e| IngesterError::Unavailable { partition: r.partition, problem: e.to_string() }),
            Err(e) => Err(e),
        };
        Ok(Response::new(reply(result)))
    }

    async fn read(&self, request: Request<pb::PartitionRequest>) -> Result<Response<pb::PartitionReply>, Status> {
        let r = request.into_inner();
        // With a head limit after the request, or (from an older querier)
        // without one.
        let (consistency, req, head_limit): (ReadConsistency, ReadRequest, Option<HeadLimit>) =
            match command::decode(&r.payload) {
                Ok(with_limit) => with_limit,
                Err(_) => command::decode::<(ReadConsistency, ReadRequest)>(&r.payload)
                    .map(|(c, q)| (c, q, None))
                    .map_err(|e| Status::invalid_argument(format!("undecodable read: {e}")))?,
            };
        let result = match self.ingester.serve_read(r.partition, &req, consistency, head_limit).await {
            Ok(answer) => command::encode(&answer)
                .map_err(|e| IngesterError::Unavailable { partition: r.partition, problem: e.to_string() }),
            Err(e) => Err(e),
        };
        Ok(Response::new(reply(result)))
    }

    async fn status(&self, _request: Request<pb::StatusRequest>) -> Result<Response<pb::NodeStatus>, Status> {
        let replicas = self.ingester.raft_metrics().iter().map(|(p, m)| replica_status(*p, m)).collect();
        let controller = replica_status(u32::MAX, &self.controller.raft().metrics().borrow());
        Ok(Response::new(pb::NodeStatus { node: self.ingester.node_id(), replicas, controller: Some(controller) }))
    }
}
