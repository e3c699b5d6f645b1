//! The composition root: builds the components of the roles in
//! `--target` and wires them. In order: metrics and limits → (ingester role)
//! the node's Raft log, transport, controller replica and partition
//! replicas → the ring (from the local controller replica, or watched from
//! the ingesters given by `--join`) → the router to partition leaders →
//! distributor, querier, frontend, compactor → HTTP and gRPC servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use balsa_raft::network::TransportService;
use balsa_raft::{Groups, LogDb, Peers};
use balsa_storage::object_store::{FilesystemStore, ObjectStore};
use tokio::net::TcpListener;

use crate::api::{self, Api};
use crate::compactor::{Compactor, CompactorConfig};
use crate::config::{Config, StorageConfig};
use crate::controller::service::{watch_remote, ControllerService};
use crate::controller::admission::{self, Candidate};
use crate::controller::{Controller, ControllerConfig, ControllerError};
use crate::deletes::{DeleteError, Deletes};
use crate::distributor::Distributor;
use crate::frontend::Frontend;
use crate::grpc::PushService;
use crate::ingester::client::IngesterClient;
use crate::ingester::flush::{FlushConfig, Flusher};
use crate::ingester::service::IngesterService;
use crate::ingester::{Ingester, IngesterConfig, IngesterError};
use crate::metrics::Metrics;
use crate::auth::{Auth, AuthFileError};
use crate::overrides::{Overrides, OverridesError};
use crate::querier::store::StoreReader;
use crate::querier::Querier;
use crate::ring::{NodeInfo, NodeState};

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

/// The stateful parts of the ingester role.
struct IngesterRole {
    ingester: Arc<Ingester>,
    controller: Arc<Controller>,
    groups: Groups,
    peers: Peers,
    log_db: LogDb,
}

async fn start_ingester(cfg: &Config, store: &dyn ObjectStore) -> Result<IngesterRole, RunError> {
    let raft_dir = cfg.data_dir.join("raft");
    let log_db = LogDb::open(&raft_dir)?;
    let dialer = cfg.dialer();
    // Before any group opens: a node that lost its disk must not vote.
    let candidate = Candidate { node: cfg.node_id, join: &cfg.join, new_cluster: cfg.new_cluster, raft_dir: &raft_dir };
    let identity = admission::admit(&candidate, &log_db, store, &dialer).await?;
    let peers = Peers::new(cfg.node_id, dialer.clone());
    let groups = Groups::default();
    let node = NodeInfo {
        id: cfg.node_id,
        zone: cfg.zone.clone(),
        grpc_addr: cfg.grpc_advertise_addr.clone(),
        http_addr: cfg.http_advertise_addr.clone(),
        state: NodeState::Active,
        incarnation: identity.incarnation,
    };
    let controller = Controller::open(
        ControllerConfig {
            node,
            join: cfg.join.clone(),
            partitions: cfg.partitions,
            replication_factor: cfg.replication_factor,
            dead_node_timeout: cfg.dead_node_timeout,
        },
        &cfg.data_dir,
        &log_db,
        &peers,
        &groups,
        dialer.clone(),
    )
    .await?;
    let ingester = Arc::new(Ingester::new(
        IngesterConfig {
            node_id: cfg.node_id,
            data_dir: cfg.data_dir.clone(),
            snapshot_logs_since_last: cfg.snapshot_logs_since_last,
            dialer,
        },
        log_db.clone(),
        peers.clone(),
        groups.clone(),
        controller.watch(),
    )?);
    Ok(IngesterRole { ingester, controller, groups, peers, log_db })
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
    let role = if cfg.target.ingester { Some(start_ingester(&cfg, store.as_ref()).await?) } else { None };
    overrides.report(&metrics);
    crate::querier::report(&metrics);
    if let Some(r) = &role {
        crate::ingester::metrics::report(&metrics, &r.ingester);
    }
    let ring = match &role {
        Some(r) => r.controller.watch(),
        None => watch_remote(cfg.join.clone(), cfg.dialer()),
    };
    let ingesters = Arc::new(IngesterClient::new(role.as_ref().map(|r| r.ingester.clone()), ring, cfg.dialer(), &metrics));
    let deletes = Arc::new(Deletes::load(store.clone(), cfg.delete_request_cancel_period, cfg.delete_request_refresh_period).await?);
    let distributor = Arc::new(Distributor::new(
        ingesters.clone(),
        overrides.clone(),
        cfg.max_chunk_age,
        cfg.chunk_target_raw_size,
        &metrics,
    ));
    let querier = Arc::new(Querier::new(
        ingesters.clone(),
        cfg.read_consistency,
        StoreReader::new(store.clone(), cfg.chunk_cache_bytes, &metrics),
        overrides.clone(),
        deletes.clone(),
    ));
    let compactor = cfg
        .target
        .compactor
        .then(|| {
            Arc::new(Compactor::new(
                store.clone(),
                overrides.clone(),
                deletes.clone(),
                CompactorConfig { interval: cfg.compaction_interval, delete_delay: cfg.retention_delete_delay },
                &metrics,
            ))
        });
    let flusher = role.as_ref().map(|r| {
        Arc::new(Flusher::new(
            r.ingester.clone(),
            store.clone(),
            FlushConfig {
                max_chunk_age: cfg.max_chunk_age,
                chunk_idle_period: cfg.chunk_idle_period,
                codec: cfg.chunk_encoding,
                period: cfg.flush_check_period,
            },
            &metrics,
        ))
    });
    // `POST /ingester/drain` asks for a drain; the process exits once drained.
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let frontend = Arc::new(Frontend::new(querier.clone(), cfg.max_outstanding_per_tenant, cfg.results_cache_entries));
    let api = Arc::new(Api {
        auth_enabled: cfg.auth_enabled,
        auth: auth.clone(),
        max_recv_msg_size: cfg.max_recv_msg_size,
        max_decompressed_size: cfg.max_decompressed_size,
        overrides: overrides.clone(),
        deletes,
        config_yaml: cfg.to_yaml(),
        distributor: distributor.clone(),
        querier,
        frontend,
        ingester: role.as_ref().map(|r| r.ingester.clone()),
        ingesters,
        metrics,
        flusher: flusher.clone(),
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
    let mut loops = Vec::new();
    if let Some(f) = &flusher {
        loops.push(tokio::spawn(f.clone().run(stop_rx.clone())));
    }
    if let Some(c) = compactor {
        loops.push(tokio::spawn(c.run(stop_rx.clone())));
    }
    loops.push(tokio::spawn(overrides.clone().run(cfg.runtime_config_period, stop_rx.clone())));
    if let Some(auth) = auth.clone() {
        let (period, stop) = (cfg.runtime_config_period, stop_rx.clone());
        loops.push(tokio::spawn(async move { crate::reload::periodically("auth file", period, stop, || auth.reload()).await }));
    }
    {
        // Delete requests made through other processes: hidden here within
        // one refresh period, and cached answers dropped.
        let frontend = api.frontend.clone();
        loops.push(tokio::spawn(api.deletes.clone().run(move || frontend.invalidate(), stop_rx.clone())));
    }
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel::<RunError>();
    if let Some(r) = &role {
        loops.push(tokio::spawn(r.controller.clone().run(stop_rx.clone())));
        loops.push(tokio::spawn(balsa_raft::heartbeats(r.groups.clone(), stop_rx.clone())));
        loops.push(tokio::spawn(balsa_raft::elections::run(
            cfg.node_id,
            r.groups.clone(),
            r.peers.clone(),
            r.log_db.clone(),
            stop_rx.clone(),
        )));
        let (ingester, controller, stop, fatal) = (r.ingester.clone(), r.controller.clone(), stop_rx.clone(), fatal_tx.clone());
        loops.push(tokio::spawn(async move {
            if let Err(e) = ingester.run(controller, stop).await {
                let _ = fatal.send(e.into());
            }
        }));
        let (controller, stop, fatal) = (r.controller.clone(), stop_rx.clone(), fatal_tx.clone());
        loops.push(tokio::spawn(async move {
            // The ring refusing this node (another incarnation of its id)
            // stops it; other failures are retried inside `join`.
            if let Err(e @ ControllerError::Refused(_)) = controller.join(stop).await {
                let _ = fatal.send(e.into());
            }
        }));
        let (ingester, controller, fatal, mut asked, mut stop) =
            (r.ingester.clone(), r.controller.clone(), fatal_tx.clone(), drain_rx, stop_rx.clone());
        loops.push(tokio::spawn(async move {
            tokio::select! {
                r = asked.wait_for(|d| *d) => if r.is_err() { return },
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            }
            let outcome = tokio::select! {
                r = ingester.drain(&controller) => r,
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            };
            let _ = fatal.send(match outcome {
                Ok(()) => RunError::Drained,
                Err(e) => e.into(),
            });
        }));
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
    let mut router = grpc_builder.add_service(PushService { auth_enabled: cfg.auth_enabled, auth: auth.clone(), distributor }.into_server());
    if let Some(r) = &role {
        router = router
            .add_service(TransportService::new(cfg.node_id, r.groups.clone(), &r.peers, r.log_db.clone()).into_server())
            .add_service(IngesterService { ingester: r.ingester.clone(), controller: r.controller.clone() }.into_server())
            .add_service(ControllerService { controller: r.controller.clone(), stop: stop_rx.clone() }.into_server());
    }
    let grpc_server = router.serve_with_incoming_shutdown(tokio_stream_listener(grpc), stopped(stop_rx.clone()));

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
    if let Some(e) = fatal {
        if let Some(r) = &role {
            r.ingester.shutdown(Duration::from_secs(5)).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), r.controller.raft().shutdown()).await;
        }
        return match e {
            RunError::Drained => Ok(()),
            e => Err(e),
        };
    }
    if let (Some(r), Some(f)) = (&role, &flusher) {
        // Graceful shutdown hands everything this node leads over to object storage.
        match tokio::time::timeout(Duration::from_secs(60), f.flush(true)).await {
            Ok(Ok(())) => tracing::info!("flushed everything before exit"),
            Ok(Err(e)) => tracing::warn!(error = %e, "final flush failed; the Raft log still has the data"),
            Err(_) => tracing::warn!("final flush timed out; the Raft log still has the data"),
        }
        r.ingester.shutdown(Duration::from_secs(5)).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), r.controller.raft().shutdown()).await;
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
