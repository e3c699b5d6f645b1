//! The gRPC server: Loki's `logproto.Pusher/Push`, so gRPC clients of Loki
//! can push to Balsa, through the same distributor as HTTP pushes.

use std::sync::Arc;

use balsa_proto::logproto::pusher_server::{Pusher, PusherServer};
use balsa_proto::logproto::{PushRequest, PushResponse};
use tonic::{Request, Response, Status};

use crate::distributor::{decode::from_proto, DecodeError, Distributor, PushError};
use crate::auth::{Access, Auth, AuthError};
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
            Some(auth) => auth.authorize(Access::Write, meta("authorization"), meta("x-scope-orgid"), None).map_err(|e| match e {
                AuthError::Tenant(e) => Status::invalid_argument(e.to_string()),
                e if e.is_forbidden() => Status::permission_denied(e.to_string()),
                e => Status::unauthenticated(e.to_string()),
            })?,
            None => None,
        };
        let org = granted.as_deref().or(meta("x-scope-orgid"));
        let tenant = tenant::resolve(self.auth_enabled, org).map_err(|e| match e {
            tenant::TenantError::NoOrgId => Status::unauthenticated(e.to_string()),
            e => Status::invalid_argument(e.to_string()),
        })?;
        let streams = from_proto(request.into_inner()).map_err(|e| match e {
            DecodeError::TooLarge(m) => Status::resource_exhausted(m),
            DecodeError::Bad(m) => Status::invalid_argument(m),
        })?;
        match self.distributor.push(&tenant, streams).await {
            Ok(_) => Ok(Response::new(PushResponse {})),
            Err(e @ (PushError::NoStreams | PushError::Rejected(_))) => Err(Status::invalid_argument(e.to_string())),
            Err(e @ PushError::RateLimited(_)) => Err(Status::resource_exhausted(e.to_string())),
            Err(e @ PushError::Unavailable(_)) => Err(Status::unavailable(e.to_string())),
        }
    }
}
