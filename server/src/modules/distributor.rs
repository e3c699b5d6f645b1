//! The distributor role: validates pushes and routes them to partition
//! leaders, over HTTP (Loki's push API, OTLP) and gRPC (Loki's `Pusher`).

use std::sync::Arc;

use crate::config::Config;
use crate::distributor::Distributor;
use crate::grpc::PushService;
use crate::ingester::client::IngesterClient;
use crate::metrics::Metrics;
use crate::overrides::Overrides;

pub(super) fn build(cfg: &Config, ingesters: &Arc<IngesterClient>, overrides: &Arc<Overrides>, metrics: &Metrics) -> Arc<Distributor> {
    Arc::new(Distributor::new(ingesters.clone(), overrides.clone(), cfg.max_chunk_age, cfg.chunk_target_raw_size, metrics))
}

/// Loki's gRPC push service, answered by `distributor`.
pub(super) fn grpc_service(cfg: &Config, auth: Option<Arc<crate::auth::Auth>>, distributor: Arc<Distributor>) -> PushService {
    PushService { auth_enabled: cfg.auth_enabled, auth, distributor }
}
