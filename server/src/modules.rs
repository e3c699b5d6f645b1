//! The composition root: builds each component of a role and wires them.
//! With `--target=all` (the only target today) that is, in order: metrics →
//! ingester (Raft groups over the shared log) → distributor and querier →
//! HTTP and gRPC servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::{self, Api};
use crate::config::{Config, Target};
use crate::distributor::Distributor;
use crate::frontend::Frontend;
use crate::grpc::PushService;
use crate::compactor::Compactor;
use crate::deletes::{DeleteError, Deletes};
use crate::config::StorageConfig;
use crate::ingester::flush::{FlushConfig, Flusher};
use crate::ingester::{Ingester, IngesterConfig, IngesterError};
use crate::querier::store::StoreReader;
use balsa_storage::object_store::{FilesystemStore, ObjectStore};
use crate::metrics::Metrics;
use crate::overrides::{Overrides, OverridesError};
use crate::querier::Querier;
use crate::ring::Ring;

/// Why the process could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Ingester(#[from] IngesterError),
    #[error(transparent)]
    Overrides(#[from] OverridesError),
    #[error("cannot load delete requests: {0}")]
    Deletes(#[from] DeleteError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("gRPC server failed: {0}")]
    Grpc(tonic::transport::Error),
}

/// Runs the roles of `cfg` until SIGINT or SIGTERM.
pub async fn run(cfg: Config) -> Result<(), RunError> {
    match cfg.target {
        Target::All => run_all(cfg).await,
    }
}

async fn run_all(cfg: Config) -> Result<(), RunError> {
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|source| RunError::DataDir { path: cfg.data_dir.display().to_string(), source })?;
    let metrics = Arc::new(Metrics::new());
    let overrides = Arc::new(Overrides::new(cfg.limits.clone(), cfg.runtime_config_file.clone())?);
    let ingester = Arc::new(
        Ingester::open(&IngesterConfig {
            node_id: cfg.node_id,
            data_dir: cfg.data_dir.clone(),
            partitions: cfg.partitions,
            advertise_addr: cfg.grpc_addr.to_string(),
            snapshot_logs_since_last: cfg.snapshot_logs_since_last,
        })
        .await?,
    );
    let store: Arc<dyn ObjectStore> = match &cfg.storage {
        StorageConfig::Filesystem { directory } => Arc::new(FilesystemStore::new(directory.clone())),
        StorageConfig::S3(s3) => Arc::new(balsa_storage::s3::S3Store::new(s3).await),
    };
    tracing::info!(store = %store.describe(), "object store");
    let deletes = Arc::new(Deletes::load(store.clone(), cfg.delete_request_cancel_period).await?);
    let distributor = Arc::new(Distributor::new(
        Ring::new(cfg.partitions),
        ingester.clone(),
        overrides.clone(),
        cfg.max_chunk_age,
        cfg.chunk_target_raw_size,
        metrics.clone(),
    ));
    let querier = Arc::new(Querier::new(
        ingester.clone(),
        StoreReader::new(store.clone(), cfg.chunk_cache_bytes, metrics.clone()),
        overrides.clone(),
        deletes.clone(),
    ));
    let compactor = Arc::new(Compactor::new(store.clone(), overrides.clone(), deletes.clone(), cfg.compaction_interval, metrics.clone()));
    let flusher = Arc::new(Flusher::new(
        ingester.clone(),
        store,
        FlushConfig {
            max_chunk_age: cfg.max_chunk_age,
            chunk_idle_period: cfg.chunk_idle_period,
            codec: cfg.chunk_encoding,
            period: cfg.flush_check_period,
        },
        metrics.clone(),
    ));
    let frontend = Arc::new(Frontend::new(querier.clone(), cfg.max_outstanding_per_tenant, cfg.results_cache_entries));
    let api = Arc::new(Api {
        auth_enabled: cfg.auth_enabled,
        max_recv_msg_size: cfg.max_recv_msg_size,
        max_decompressed_size: cfg.max_decompressed_size,
        overrides: overrides.clone(),
        deletes,
        config_yaml: cfg.to_yaml(),
        distributor: distributor.clone(),
        querier,
        frontend,
        ingester: ingester.clone(),
        metrics,
        flusher: flusher.clone(),
    });

    let http = TcpListener::bind(cfg.http_addr)
        .await
        .map_err(|source| RunError::Listen { addr: cfg.http_addr, source })?;
    let grpc = TcpListener::bind(cfg.grpc_addr)
        .await
        .map_err(|source| RunError::Listen { addr: cfg.grpc_addr, source })?;
    tracing::info!(
        http = %cfg.http_addr, grpc = %cfg.grpc_addr, data = %cfg.data_dir.display(),
        partitions = cfg.partitions, auth_enabled = cfg.auth_enabled, "balsa started"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let flush_loop = tokio::spawn(flusher.clone().run(stop_rx.clone()));
    let compact_loop = tokio::spawn(compactor.run(stop_rx.clone()));
    let overrides_loop = tokio::spawn(overrides.clone().run(cfg.runtime_config_period, stop_rx.clone()));
    let http_stop = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let grpc_stop = {
        let mut rx = stop_rx;
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let http_server = axum::serve(http, api::router(api)).with_graceful_shutdown(http_stop);
    let grpc_server = tonic::transport::Server::builder()
        .add_service(PushService { auth_enabled: cfg.auth_enabled, distributor }.into_server())
        .serve_with_incoming_shutdown(tokio_stream_listener(grpc), grpc_stop);

    let signal = async {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    };
    let (http_res, grpc_res, ()) = tokio::join!(http_server, grpc_server, signal);
    let _ = flush_loop.await;
    let _ = compact_loop.await;
    let _ = overrides_loop.await;
    // Graceful shutdown hands everything over to object storage.
    match tokio::time::timeout(Duration::from_secs(60), flusher.flush(true)).await {
        Ok(Ok(())) => tracing::info!("flushed everything before exit"),
        Ok(Err(e)) => tracing::warn!(error = %e, "final flush failed; the Raft log still has the data"),
        Err(_) => tracing::warn!("final flush timed out; the Raft log still has the data"),
    }
    ingester.shutdown(Duration::from_secs(5)).await;
    http_res.map_err(RunError::Http)?;
    grpc_res.map_err(RunError::Grpc)?;
    Ok(())
}

fn tokio_stream_listener(l: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(l)
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
