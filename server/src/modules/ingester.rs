//! The ingester role: the node's Raft log, its admission to the cluster,
//! the transport, the controller replica, the partition replicas and their
//! flush loop; the loops that keep them running and how they stop.

use std::sync::Arc;
use std::time::Duration;

use balsa_raft::network::TransportService;
use balsa_raft::{Groups, LogDb, Peers};
use balsa_storage::object_store::ObjectStore;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::RunError;
use crate::config::Config;
use crate::controller::admission::{self, Candidate};
use crate::controller::service::ControllerService;
use crate::controller::{Controller, ControllerConfig, ControllerError};
use crate::ingester::flush::{FlushConfig, Flusher};
use crate::ingester::service::IngesterService;
use crate::ingester::{Ingester, IngesterConfig};
use crate::metrics::Metrics;
use crate::ring::{NodeInfo, NodeState};

/// The stateful parts of the ingester role.
pub(super) struct IngesterRole {
    pub ingester: Arc<Ingester>,
    pub controller: Arc<Controller>,
    pub flusher: Arc<Flusher>,
    groups: Groups,
    peers: Peers,
    log_db: LogDb,
}

impl IngesterRole {
    /// Opens the Raft log, is admitted (a node that lost its disk must not
    /// vote), and opens the controller replica and the replicas' host.
    pub async fn start(cfg: &Config, store: Arc<dyn ObjectStore>, metrics: &Metrics) -> Result<Self, RunError> {
        let raft_dir = cfg.data_dir.join("raft");
        let log_db = LogDb::open(&raft_dir)?;
        let dialer = cfg.dialer();
        // Before any group opens: a node that lost its disk must not vote.
        let candidate = Candidate { node: cfg.node_id, join: &cfg.join, new_cluster: cfg.new_cluster, raft_dir: &raft_dir };
        let identity = admission::admit(&candidate, &log_db, store.as_ref(), &dialer).await?;
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
        crate::ingester::metrics::report(metrics, &ingester);
        let flusher = Arc::new(Flusher::new(
            ingester.clone(),
            store,
            FlushConfig {
                max_chunk_age: cfg.max_chunk_age,
                chunk_idle_period: cfg.chunk_idle_period,
                codec: cfg.chunk_encoding,
                period: cfg.flush_check_period,
            },
            metrics,
        ));
        Ok(IngesterRole { ingester, controller, flusher, groups, peers, log_db })
    }

    /// The gRPC services of the role: Raft transport, partition reads and
    /// status, the controller.
    pub fn grpc_services(&self, cfg: &Config, routes: tonic::service::Routes, stop: watch::Receiver<bool>) -> tonic::service::Routes {
        routes
            .add_service(TransportService::new(cfg.node_id, self.groups.clone(), &self.peers, self.log_db.clone()).into_server())
            .add_service(IngesterService { ingester: self.ingester.clone(), controller: self.controller.clone() }.into_server())
            .add_service(ControllerService { controller: self.controller.clone(), stop }.into_server())
    }

    /// Starts the role's loops: flushing, the controller, heartbeats and
    /// elections, replicas following the ring, joining the ring, and a
    /// drain once `drain` is set. A failure the node must not serve past
    /// goes to `fatal`; [`RunError::Drained`] once drained.
    pub fn spawn_loops(
        &self,
        cfg: &Config,
        stop: &watch::Receiver<bool>,
        fatal: &mpsc::UnboundedSender<RunError>,
        mut drain: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let mut loops = vec![
            tokio::spawn(self.flusher.clone().run(stop.clone())),
            tokio::spawn(self.controller.clone().run(stop.clone())),
            tokio::spawn(balsa_raft::heartbeats(self.groups.clone(), stop.clone())),
            tokio::spawn(balsa_raft::elections::run(
                cfg.node_id,
                self.groups.clone(),
                self.peers.clone(),
                self.log_db.clone(),
                stop.clone(),
            )),
        ];
        let (ingester, controller, stop_rx, fatal_tx) = (self.ingester.clone(), self.controller.clone(), stop.clone(), fatal.clone());
        loops.push(tokio::spawn(async move {
            if let Err(e) = ingester.run(controller, stop_rx).await {
                let _ = fatal_tx.send(e.into());
            }
        }));
        let (controller, stop_rx, fatal_tx) = (self.controller.clone(), stop.clone(), fatal.clone());
        loops.push(tokio::spawn(async move {
            // The ring refusing this node (another incarnation of its id)
            // stops it; other failures are retried inside `join`.
            if let Err(e @ ControllerError::Refused(_)) = controller.join(stop_rx).await {
                let _ = fatal_tx.send(e.into());
            }
        }));
        let (ingester, controller, fatal_tx, mut stop_rx) =
            (self.ingester.clone(), self.controller.clone(), fatal.clone(), stop.clone());
        loops.push(tokio::spawn(async move {
            tokio::select! {
                r = drain.wait_for(|d| *d) => if r.is_err() { return },
                _ = async { let _ = stop_rx.wait_for(|s| *s).await; } => return,
            }
            let outcome = tokio::select! {
                r = ingester.drain(&controller) => r,
                _ = async { let _ = stop_rx.wait_for(|s| *s).await; } => return,
            };
            let _ = fatal_tx.send(match outcome {
                Ok(()) => RunError::Drained,
                Err(e) => e.into(),
            });
        }));
        loops
    }

    /// Stops the replicas and the controller replica. After a graceful
    /// stop (`flush_first`) everything this node leads goes to object
    /// storage first.
    pub async fn stop(&self, flush_first: bool) {
        if flush_first {
            match tokio::time::timeout(Duration::from_secs(60), self.flusher.flush(true)).await {
                Ok(Ok(())) => tracing::info!("flushed everything before exit"),
                Ok(Err(e)) => tracing::warn!(error = %e, "final flush failed; the Raft log still has the data"),
                Err(_) => tracing::warn!("final flush timed out; the Raft log still has the data"),
            }
        }
        self.ingester.shutdown(Duration::from_secs(5)).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.controller.raft().shutdown()).await;
    }
}
