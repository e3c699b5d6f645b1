//! Admission: may this data directory take part in the cluster? Decided
//! before any Raft group of the node opens, so a node that lost its disk
//! never answers a vote or an append with an empty log.
//!
//! Raft's safety assumes a replica keeps what it voted and acknowledged. A
//! node whose disk was wiped and that comes back under its old id breaks
//! that: with entry E on A and B, A wiped, B down, C (without E) can win
//! A's vote and E — acknowledged — is gone after the loss of one disk. So:
//!
//! - every data directory has an [`Identity`] (node id, random
//!   incarnation), written in the Raft log database, made here once the
//!   directory is admitted;
//! - a **joining** node with an empty directory asks its seeds for the ring
//!   and is refused if the ring still lists its id (other than as `LEFT`);
//!   a node with a directory joins with its incarnation, and the ring
//!   refuses an id whose incarnation changed ([`super::join_refusal`]);
//! - a **bootstrapping** node (no `--join`) cannot ask anyone: the object
//!   store holds a marker ([`CLUSTER_MARKER`]) naming the directory that
//!   bootstrapped the cluster. An empty directory finding a marker is a
//!   wiped bootstrap node (starting a second ring would be split brain),
//!   and a directory finding another's marker shares the store with
//!   another cluster; both are refused, unless `ring.new_cluster` says the
//!   old cluster is gone for good.
//!
//! The recovery the refusals name: start the node empty under a new
//! `--node.id` (with `--join`); the cluster marks the old id dead and
//! re-replicates its partitions to the new node.

use std::path::Path;
use std::time::Duration;

use balsa_raft::network::Dialer;
use balsa_raft::{Identity, LogDb, LogDbError, NodeId};
use balsa_storage::object_store::{ObjectError, ObjectStore};

use super::service::fetch_ring;
use crate::ring::{NodeState, RingState};

/// Object naming the data directory that bootstrapped the cluster using
/// this store: `node=<id> incarnation=<hex>`.
pub const CLUSTER_MARKER: &str = "cluster/bootstrap";

/// How long a seed may take to answer before the next is asked.
const SEED_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the directory may not take part.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Identity(#[from] LogDbError),
    #[error("cannot read or write the cluster marker {CLUSTER_MARKER}: {0}")]
    Store(#[from] ObjectError),
}

/// What admission needs to know about this node.
pub struct Candidate<'a> {
    pub node: NodeId,
    /// Ingesters to join through; empty: this node bootstraps.
    pub join: &'a [String],
    /// `ring.new_cluster`: bootstrap over another cluster's marker.
    pub new_cluster: bool,
    /// The Raft log's directory (for messages).
    pub raft_dir: &'a Path,
}

fn marker_text(id: &Identity) -> String {
    format!("node={} incarnation={:016x}\n", id.node, id.incarnation)
}

fn parse_marker(text: &str) -> Option<Identity> {
    let mut node = None;
    let mut incarnation = None;
    for field in text.split_whitespace() {
        match field.split_once('=') {
            Some(("node", v)) => node = v.parse().ok(),
            Some(("incarnation", v)) => incarnation = u64::from_str_radix(v, 16).ok(),
            _ => {}
        }
    }
    Some(Identity { node: node?, incarnation: incarnation? })
}

/// Admits the directory (making its identity if it is new) or refuses it.
/// A joining node with a new directory waits here until a seed answers.
pub async fn admit(c: &Candidate<'_>, db: &LogDb, store: &dyn ObjectStore, dialer: &Dialer) -> Result<Identity, AdmissionError> {
    let known = db.identity(c.node, c.raft_dir)?;
    if c.join.is_empty() {
        return admit_bootstrap(c, known, db, store).await;
    }
    if let Some(id) = known {
        return Ok(id);
    }
    let ring = ring_from_seeds(c.join, dialer).await;
    if let Some(refusal) = empty_directory_refusal(&ring, c.node) {
        return Err(AdmissionError::Refused(refusal));
    }
    Ok(db.create_identity(c.node, c.raft_dir)?)
}

/// Why a new (empty) directory may not join under `node`: the ring still
/// lists the id. Pure.
pub fn empty_directory_refusal(ring: &RingState, node: NodeId) -> Option<String> {
    ring.nodes.get(&node).filter(|n| n.state != NodeState::Left)?;
    Some(lost_disk_refusal(ring, node, "but this data directory is empty"))
}

/// The refusal of a node id the ring lists (`why`: what is wrong with
/// the directory): what the ring knows of the node, and the recovery.
pub fn lost_disk_refusal(ring: &RingState, node: NodeId, why: &str) -> String {
    let (zone, state) = ring.nodes.get(&node).map_or(("?", "?"), |n| (n.zone.as_str(), n.state.name()));
    let replicas: Vec<usize> = ring.partitions.iter().enumerate().filter(|(_, a)| a.replicas.contains(&node)).map(|(p, _)| p).collect();
    format!(
        "node {node} ({zone}, {state}, replica of partitions {replicas:?}) is in the ring {why}: its disk was lost \
         or wiped, and it must not vote with an empty log. Start it under a new --node.id with this empty \
         directory; the cluster marks node {node} dead and re-replicates its partitions (see docs/cluster.md, \
         \"A node lost its disk\")"
    )
}

/// The newest ring any seed knows; retries (logging) until one answers.
async fn ring_from_seeds(seeds: &[String], dialer: &Dialer) -> RingState {
    loop {
        let asks = seeds.iter().map(|s| tokio::time::timeout(SEED_TIMEOUT, fetch_ring(s, dialer)));
        let answers = futures::future::join_all(asks).await;
        let mut problems = Vec::new();
        let mut newest: Option<RingState> = None;
        for (seed, a) in seeds.iter().zip(answers) {
            match a {
                Ok(Ok(ring)) => {
                    if newest.as_ref().is_none_or(|n| ring.epoch > n.epoch) {
                        newest = Some(ring);
                    }
                }
                Ok(Err(e)) => problems.push(e.to_string()),
                Err(_) => problems.push(format!("{seed}: no answer within {SEED_TIMEOUT:?}")),
            }
        }
        if let Some(ring) = newest {
            return ring;
        }
        tracing::warn!(?problems, "a new data directory joins only once a seed tells whether its node id is in use; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn admit_bootstrap(
    c: &Candidate<'_>,
    known: Option<Identity>,
    db: &LogDb,
    store: &dyn ObjectStore,
) -> Result<Identity, AdmissionError> {
    let marker = match store.get(CLUSTER_MARKER).await {
        Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Err(ObjectError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let owner = marker.as_deref().map(|m| parse_marker(m).ok_or_else(|| format!("unreadable marker {m:?}")));
    let id = match (known, owner) {
        (Some(id), Some(Ok(owner))) if owner == id => return Ok(id),
        (Some(id), Some(owner)) => {
            let owner = match owner {
                Ok(o) => format!("node {} (incarnation {:016x})", o.node, o.incarnation),
                Err(e) => e,
            };
            return Err(AdmissionError::Refused(format!(
                "the object store was bootstrapped by {owner}, not by this data directory (node {}, incarnation {:016x}): \
                 two clusters must not share one store (their index segments would overwrite each other). Give this \
                 cluster its own bucket or folder",
                id.node, id.incarnation
            )));
        }
        (Some(id), None) => id,
        (None, Some(owner)) if !c.new_cluster => {
            let owner = owner.map_or_else(|e| e, |o| format!("node {} (incarnation {:016x})", o.node, o.incarnation));
            return Err(AdmissionError::Refused(format!(
                "this node has no --join and an empty data directory ({}), but the object store holds a cluster \
                 bootstrapped by {owner}: bootstrapping again would start a second ring beside the first (split \
                 brain). If that cluster runs, start this node with --join=<a running ingester> under a new \
                 --node.id. If every ingester of it is gone for good, start with --ring.new-cluster=true to begin a \
                 new ring over its flushed data",
                c.raft_dir.display()
            )));
        }
        (None, _) => {
            if marker.is_some() {
                tracing::warn!("ring.new_cluster: bootstrapping a new ring over the object store of a former cluster");
            }
            db.create_identity(c.node, c.raft_dir)?
        }
    };
    store.put(CLUSTER_MARKER, marker_text(&id).into_bytes()).await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use balsa_storage::object_store::FilesystemStore;

    fn candidate(dir: &Path, new_cluster: bool) -> Candidate<'_> {
        Candidate { node: 1, join: &[], new_cluster, raft_dir: dir }
    }

    /// A bootstrap node whose disk was wiped must not start a second ring;
    /// a directory that bootstrapped is admitted again; a second cluster on
    /// the same store is refused; `new_cluster` is the explicit way out.
    #[tokio::test]
    async fn a_wiped_bootstrap_node_is_refused_and_a_restarted_one_admitted() {
        let objects = tempfile::tempdir().unwrap();
        let store = FilesystemStore::new(objects.path());
        let dialer = Dialer::default();
        let first = tempfile::tempdir().unwrap();
        let id = {
            let db = LogDb::open(first.path()).unwrap();
            admit(&candidate(first.path(), false), &db, &store, &dialer).await.unwrap()
        };
        let again = LogDb::open(first.path()).unwrap();
        assert_eq!(admit(&candidate(first.path(), false), &again, &store, &dialer).await.unwrap(), id);
        drop(again);

        let wiped = tempfile::tempdir().unwrap();
        let db = LogDb::open(wiped.path()).unwrap();
        let err = admit(&candidate(wiped.path(), false), &db, &store, &dialer).await.unwrap_err().to_string();
        assert!(err.contains("split brain") && err.contains("--ring.new-cluster"), "{err}");
        assert_eq!(db.identity(1, wiped.path()).unwrap(), None, "a refused directory stays empty: refused again next time");

        let other = tempfile::tempdir().unwrap();
        {
            let db = LogDb::open(other.path()).unwrap();
            db.create_identity(1, other.path()).unwrap();
        }
        let db2 = LogDb::open(other.path()).unwrap();
        let err = admit(&candidate(other.path(), false), &db2, &store, &dialer).await.unwrap_err().to_string();
        assert!(err.contains("must not share one store"), "{err}");

        let fresh = admit(&candidate(wiped.path(), true), &db, &store, &dialer).await.unwrap();
        assert_ne!(fresh, id);
        let marker = String::from_utf8(store.get(CLUSTER_MARKER).await.unwrap()).unwrap();
        assert_eq!(parse_marker(&marker), Some(fresh));
    }

    #[test]
    fn an_empty_directory_may_not_reuse_an_id_the_ring_lists() {
        let mut ring = RingState::default();
        assert!(empty_directory_refusal(&ring, 2).is_none(), "an id the ring does not know");
        ring.nodes.insert(
            2,
            crate::ring::NodeInfo {
                id: 2,
                zone: "zone-b".into(),
                grpc_addr: String::new(),
                http_addr: String::new(),
                state: NodeState::Dead,
                incarnation: 9,
            },
        );
        ring.partitions = vec![crate::ring::Assignment { replicas: vec![1, 2, 3], ..Default::default() }];
        let why = empty_directory_refusal(&ring, 2).expect("refused");
        assert!(why.contains("replica of partitions [0]") && why.contains("new --node.id"), "{why}");
        ring.nodes.get_mut(&2).unwrap().state = NodeState::Left;
        assert!(empty_directory_refusal(&ring, 2).is_none(), "a node that left may come back empty");
    }
}
