//! The composition root: builds what the roles in `--target` need
//! ([`NEEDS`]) and wires it. Every process has metrics, limits, the auth
//! file, the object store, the ring (its own controller replica's, or
//! watched from the ingesters given by `--join`) and the router to
//! partition leaders; then, per role, in order: the ingester's replicas
//! (`ingester.rs`) → the distributor (`distributor.rs`) → the querier and
//! its frontend (`querier.rs`, `frontend.rs`) → the compactor
//! (`compactor.rs`) → HTTP and gRPC servers with the routes of those roles.

mod compactor;
mod distributor;
mod frontend;
mod ingester;
mod querier;

use std::net::SocketAddr;
use std::sync::Arc;

use balsa_storage::object_store::{FilesystemStore, ObjectStore};
use tokio::net::TcpListener;

use crate::api::{self, Api};
use crate::auth::{Auth, AuthFileError};
use crate::config::{Config, Role, StorageConfig, Target};
use crate::controller::service::watch_remote;
use crate::controller::ControllerError;
use crate::deletes::{DeleteError, Deletes};
use crate::ingester::client::IngesterClient;
use crate::ingester::IngesterError;
use crate::metrics::Metrics;
use crate::overrides::{Overrides, OverridesError};
use ingester::IngesterRole;

/// Why the process could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Ingester(#[from] IngesterError),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("cannot open the Raft log: {0}")]
    Log(#[from] balsa_raft::LogDbError),
    #[error("this data directory may not join the cluster: {0}")]
    Admission(#[from] crate::controller::admission::AdmissionError),
    #[error(transparent)]
    Overrides(#[from] OverridesError),
    #[error(transparent)]
    Auth(#[from] AuthFileError),
    #[error("cannot load delete requests: {0}")]
    Deletes(#[from] DeleteError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("server.http_tls_config: {0}")]
    HttpTls(api::tls::TlsConfigError),
    #[error("gRPC server failed: {0}")]
    Grpc(tonic::transport::Error),
    /// Not a failure: the node was drained and leaves.
    #[error("drained")]
    Drained,
}

/// A part of a process that roles need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// Partition replicas, the controller replica and the flush loop.
    Replicas,
    Distributor,
    Querier,
    /// Splits, queues and caches queries for the querier of its process.
    Frontend,
    /// Delete requests: hidden by the querier, carried out by the compactor.
    Deletes,
    Compactor,
}

/// What each role needs built in its process. The querier answers
/// queries through a frontend of its own (splitting and the per-tenant
/// queue apply either way), and the frontend runs them on the querier of
/// its process.
const NEEDS: [(Role, &[Part]); 5] = [
    (Role::Ingester, &[Part::Replicas]),
    (Role::Distributor, &[Part::Distributor]),
    (Role::Querier, &[Part::Querier, Part::Frontend, Part::Deletes]),
    (Role::QueryFrontend, &[Part::Frontend, Part::Querier, Part::Deletes]),
    (Role::Compactor, &[Part::Compactor, Part::Deletes]),
];

/// Whether a role of `target` needs `part`.
fn needs(target: Target, part: Part) -> bool {
    NEEDS.iter().any(|(role, parts)| target.has(*role) && parts.contains(&part))
}

/// Runs the roles of `cfg` until SIGINT or SIGTERM.
pub async fn run(cfg: Config) -> Result<(), RunError> {
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|source| RunError::DataDir { path: cfg.data_dir.display().to_string(), source })?;
    let metrics = Arc::new(Metrics::new());
    let overrides = Arc::new(Overrides::new(cfg.limits.clone(), cfg.runtime_config_file.clone())?);
    let auth = cfg.auth_file.clone().map(Auth::new).transpose()?.map(Arc::new);
    let http_tls = cfg.http_tls.as_ref().map(api::tls::server_config).transpose().map_err(RunError::HttpTls)?;
    let store: Arc<dyn ObjectStore> = match &cfg.storage {
        StorageConfig::Filesystem { directory } => Arc::new(FilesystemStore::new(directory.clone())),
        StorageConfig::S3(s3) => Arc::new(balsa_storage::s3::S3Store::new(s3).await),
    };
    tracing::info!(store = %store.describe(), "object store");
    let want = |part| needs(cfg.target, part);
    let role = if want(Part::Replicas) { Some(IngesterRole::start(&cfg, store.clone(), &metrics).await?) } else { None };
    overrides.report(&metrics);
    if let Some(a) = &auth {
        a.report(&metrics);
    }
    let ring = match &role {
        Some(r) => r.controller.watch(),
        None => watch_remote(cfg.join.clone(), cfg.dialer()),
    };
    let ingesters = Arc::new(IngesterClient::new(role.as_ref().map(|r| r.ingester.clone()), ring, cfg.dialer(), &metrics));
    let deletes = match want(Part::Deletes) {
        true => Some(Arc::new(
            Deletes::load(store.clone(), cfg.delete_request_cancel_period, cfg.delete_request_refresh_period).await?,
        )),
        false => None,
    };
    let distributor = want(Part::Distributor).then(|| distributor::build(&cfg, &ingesters, &overrides, &metrics));
    let read = match &deletes {
        Some(d) if want(Part::Querier) => Some(querier::build(&cfg, &ingesters, &store, &overrides, d, &metrics)),
        _ => None,
    };
    let compactor = match &deletes {
        Some(d) if want(Part::Compactor) => Some(compactor::build(&cfg, &store, &overrides, d, &metrics)),
        _ => None,
    };
    // `POST /ingester/drain` asks for a drain; the process exits once drained.
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let frontend = read.as_ref().map(|r| r.frontend.clone());
    let api = Arc::new(Api {
        auth_enabled: cfg.auth_enabled,
        auth: auth.clone(),
        max_recv_msg_size: cfg.max_recv_msg_size,
        max_decompressed_size: cfg.max_decompressed_size,
        overrides: overrides.clone(),
        config_yaml: cfg.to_yaml(),
        distributor: distributor.clone(),
        read,
        ingester: role.as_ref().map(|r| r.ingester.clone()),
        ingesters,
        metrics,
        flusher: role.as_ref().map(|r| r.flusher.clone()),
        drain: role.as_ref().map(|_| drain_tx),
        tails: crate::api::Tails::new(cfg.tail_max_duration),
    });

    let http = TcpListener::bind(cfg.http_addr)
        .await
        .map_err(|source| RunError::Listen { addr: cfg.http_addr, source })?;
    let grpc = TcpListener::bind(cfg.grpc_addr)
        .await
        .map_err(|source| RunError::Listen { addr: cfg.grpc_addr, source })?;
    tracing::info!(
        target = %cfg.target.names(), node = cfg.node_id, zone = %cfg.zone,
        http = %cfg.http_addr, grpc = %cfg.grpc_addr, data = %cfg.data_dir.display(),
        partitions = cfg.partitions, auth_enabled = cfg.auth_enabled, "balsa started"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel::<RunError>();
    let mut loops = Vec::new();
    if let Some(r) = &role {
        loops.extend(r.spawn_loops(&cfg, &stop_rx, &fatal_tx, drain_rx));
    }
    if let Some(c) = compactor {
        loops.push(tokio::spawn(c.run(stop_rx.clone())));
    }
    loops.push(tokio::spawn(overrides.clone().run(cfg.runtime_config_period, stop_rx.clone())));
    if let Some(auth) = auth.clone() {
        let (period, stop) = (cfg.runtime_config_period, stop_rx.clone());
        loops.push(tokio::spawn(async move { crate::reload::periodically("auth file", period, stop, || auth.reload()).await }));
    }
    if let Some(d) = deletes {
        // Delete requests made through other processes: hidden here within
        // one refresh period, and cached answers dropped.
        loops.push(tokio::spawn(d.run(
            move || {
                if let Some(f) = &frontend {
                    f.invalidate();
                }
            },
            stop_rx.clone(),
        )));
    }
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let router = api::router(api);
    let http_stop = stopped(stop_rx.clone());
    let http_server = async {
        match http_tls {
            None => axum::serve(http, router).with_graceful_shutdown(http_stop).await,
            Some(config) => {
                let listener = api::tls::TlsListener::new(http, config)?;
                let service = router.into_make_service_with_connect_info::<api::tls::PeerInfo>();
                axum::serve(listener, service).with_graceful_shutdown(http_stop).await
            }
        }
    };
    let mut grpc_builder = balsa_raft::network::serve_settings(tonic::transport::Server::builder());
    if let Some(t) = &cfg.tls {
        grpc_builder = grpc_builder.tls_config(t.server()).map_err(RunError::Grpc)?;
    }
    let mut routes = tonic::service::Routes::default();
    if let Some(d) = distributor {
        routes = routes.add_service(distributor::grpc_service(&cfg, auth.clone(), d).into_server());
    }
    if let Some(r) = &role {
        routes = r.grpc_services(&cfg, routes, stop_rx.clone());
    }
    let grpc_server =
        grpc_builder.add_routes(routes).serve_with_incoming_shutdown(tokio_stream_listener(grpc), stopped(stop_rx.clone()));

    let signal = async {
        let fatal = tokio::select! {
            _ = shutdown_signal() => None,
            e = fatal_rx.recv() => e,
        };
        match &fatal {
            None => {
                tracing::info!("shutting down");
                // Leaderships move while this node still answers, so
                // writes go on elsewhere before it stops.
                if let Some(r) = &role {
                    r.ingester.hand_over_leaderships().await;
                }
            }
            Some(e) => tracing::error!(error = %e, "stopping"),
        }
        let _ = stop_tx.send(true);
        fatal
    };
    let (http_res, grpc_res, fatal) = tokio::join!(http_server, grpc_server, signal);
    drop(fatal_tx);
    for l in loops {
        let _ = l.await;
    }
    if let Some(r) = &role {
        // Graceful shutdown hands everything this node leads over to object storage.
        r.stop(fatal.is_none()).await;
    }
    match fatal {
        Some(RunError::Drained) => return Ok(()),
        Some(e) => return Err(e),
        None => {}
    }
    http_res.map_err(RunError::Http)?;
    grpc_res.map_err(RunError::Grpc)?;
    Ok(())
}

/// The gRPC listener's connections, with Nagle's algorithm off: a reply or
/// a replicated batch is sent as soon as it is written, not held back
/// until the peer acknowledges the previous segment (which delayed ACKs
/// hold for up to 40 ms: a 200 KB push took 46 ms through a 3-node cluster
/// against 4 ms on one node).
fn tokio_stream_listener(l: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_builds_what_it_serves_and_every_part_has_a_role() {
        let t = |s: &str| Target::parse(s).unwrap();
        let built = |target: Target| {
            [Part::Replicas, Part::Distributor, Part::Querier, Part::Frontend, Part::Deletes, Part::Compactor]
                .into_iter()
                .filter(|p| needs(target, *p))
                .collect::<Vec<_>>()
        };
        assert_eq!(built(t("write")), [Part::Replicas, Part::Distributor]);
        assert_eq!(built(t("read")), [Part::Querier, Part::Frontend, Part::Deletes]);
        assert_eq!(built(t("backend")), [Part::Deletes, Part::Compactor]);
        assert_eq!(built(t("query-frontend")), built(t("querier")), "the frontend runs the querier of its process");
        assert_eq!(built(t("all")).len(), 6);
        for role in Role::ALL {
            assert!(NEEDS.iter().any(|(r, parts)| *r == role && !parts.is_empty()), "{role:?} has no entry");
        }
    }
}
