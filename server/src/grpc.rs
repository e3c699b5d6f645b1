//! The gRPC server: Loki's `logproto.Pusher/Push`, so gRPC clients of Loki
//! can push to Balsa, through the same distributor as HTTP pushes.

use std::sync::Arc;

use balsa_proto::logproto::pusher_server::{Pusher, PusherServer};
use balsa_proto::logproto::{PushRequest, PushResponse};
use tonic::{Request, Response, Status};

use crate::distributor::{decode::from_proto, Distributor};
use crate::auth::{Access, Auth};
use crate::error_code::Coded;
use crate::tenant;

/// `logproto.Pusher` backed by the distributor.
pub struct PushService {
    pub auth_enabled: bool,
    /// Tokens granting tenants (`auth.file`), from the `authorization`
    /// metadata as over HTTP.
    pub auth: Option<Arc<Auth>>,
    pub distributor: Arc<Distributor>,
}

impl PushService {
    pub fn into_server(self) -> PusherServer<Self> {
        PusherServer::new(self).max_decoding_message_size(100 << 20)
    }
}

#[tonic::async_trait]
impl Pusher for PushService {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let meta = |name| request.metadata().get(name).and_then(|v| v.to_str().ok());
        let granted = match &self.auth {
            Some(auth) => auth.authorize(Access::Write, meta("authorization"), meta("x-scope-orgid"), None).map_err(|e| e.to_status())?,
            None => None,
        };
        let org = granted.as_deref().or(meta("x-scope-orgid"));
        let tenant = tenant::resolve(self.auth_enabled, org).map_err(|e| e.to_status())?;
        let streams = from_proto(request.into_inner()).map_err(|e| e.to_status())?;
        self.distributor.push(&tenant, streams).await.map_err(|e| e.to_status())?;
        Ok(Response::new(PushResponse {}))
    }
}
