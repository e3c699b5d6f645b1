//! The hash ring: which partition owns a stream, and which nodes hold each
//! partition.
//!
//! A stream's token is the 32-bit xxHash of its tenant and its labels in
//! normal form; the token space is cut into `partitions` equal, contiguous
//! ranges, partition `i` owning `[i·2³²/n, (i+1)·2³²/n)` ([`Ring`], pure).
//!
//! [`RingState`] is what the controller group replicates: the nodes (id,
//! zone, addresses, state) and each partition's replica set with its epoch.
//! Every process keeps the newest copy it has seen in a [`RingWatch`].

use std::collections::BTreeMap;
use std::sync::Arc;

use balsa_proto::cluster as pb;
use balsa_raft::NodeId;
use serde::{Deserialize, Serialize};

use balsa_logql::labels::LabelSet;

/// The partitioning of the token space.
#[derive(Clone, Copy, Debug)]
pub struct Ring {
    partitions: u32,
}

impl Ring {
    pub fn new(partitions: u32) -> Self {
        Self { partitions: partitions.max(1) }
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The stream's token: a hash of tenant and labels.
    pub fn token(tenant: &str, labels: &LabelSet) -> u32 {
        let mut key = Vec::with_capacity(tenant.len() + 64);
        key.extend_from_slice(tenant.as_bytes());
        key.push(0);
        for (n, v) in labels.iter() {
            key.extend_from_slice(n.as_bytes());
            key.push(0xff);
            key.extend_from_slice(v.as_bytes());
            key.push(0xff);
        }
        xxhash_rust::xxh32::xxh32(&key, 0)
    }

    /// The partition whose range holds `token`.
    pub fn partition_of(&self, token: u32) -> u32 {
        ((u64::from(token) * u64::from(self.partitions)) >> 32) as u32
    }

    /// The partition owning a stream.
    pub fn partition_for(&self, tenant: &str, labels: &LabelSet) -> u32 {
        self.partition_of(Self::token(tenant, labels))
    }
}

/// What a node is doing, as the controller records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    Active,
    /// Its replicas move away; it exits once it holds none.
    Draining,
    /// Unreachable for longer than the dead-node timeout.
    Dead,
    /// Drained and gone.
    Left,
}

impl NodeState {
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Active => "ACTIVE",
            NodeState::Draining => "DRAINING",
            NodeState::Dead => "DEAD",
            NodeState::Left => "LEFT",
        }
    }

    pub fn to_pb(self) -> pb::NodeState {
        match self {
            NodeState::Active => pb::NodeState::Active,
            NodeState::Draining => pb::NodeState::Draining,
            NodeState::Dead => pb::NodeState::Dead,
            NodeState::Left => pb::NodeState::Left,
        }
    }

    pub fn from_pb(v: i32) -> Option<Self> {
        match pb::NodeState::try_from(v).ok()? {
            pb::NodeState::Active => Some(NodeState::Active),
            pb::NodeState::Draining => Some(NodeState::Draining),
            pb::NodeState::Dead => Some(NodeState::Dead),
            pb::NodeState::Left => Some(NodeState::Left),
            pb::NodeState::Unspecified => None,
        }
    }
}

/// A node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    pub zone: String,
    pub grpc_addr: String,
    pub http_addr: String,
    pub state: NodeState,
    /// Its data directory's incarnation ([`balsa_raft::Identity`]); 0 if
    /// unknown. The ring refuses the node's id with another incarnation
    /// unless the node has left.
    pub incarnation: u64,
}

impl NodeInfo {
    pub fn to_pb(&self) -> pb::NodeInfo {
        pb::NodeInfo {
            id: self.id,
            zone: self.zone.clone(),
            grpc_addr: self.grpc_addr.clone(),
            http_addr: self.http_addr.clone(),
            state: self.state.to_pb() as i32,
            ingester: true,
            incarnation: self.incarnation,
        }
    }
}

/// Where a partition's replicas live.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Desired voters; the first is the preferred leader.
    pub replicas: Vec<NodeId>,
    /// Bumped whenever `replicas` changes.
    pub epoch: u64,
    /// The first replica set the partition ever had: the group's initial
    /// voters, initialized by the first of them (once).
    pub initial: Vec<NodeId>,
    /// A leader reported the group's voters equal to `replicas` once. Until
    /// then placement leaves the partition where it is (only the initial
    /// replicas can form the group), and only until then may the first
    /// initial replica initialize it.
    pub led: bool,
}

/// The ring as the controller group replicates it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingState {
    /// Bumped by every change.
    pub epoch: u64,
    pub replication_factor: u32,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// Indexed by partition; empty until the cluster is bootstrapped.
    pub partitions: Vec<Assignment>,
}

impl RingState {
    /// Token arithmetic of this ring.
    pub fn ring(&self) -> Ring {
        Ring::new(self.partitions.len() as u32)
    }

    /// The gRPC address of a node.
    pub fn addr(&self, node: NodeId) -> Option<&str> {
        self.nodes.get(&node).map(|n| n.grpc_addr.as_str())
    }

    pub fn to_pb(&self, controller_leader: Option<NodeId>) -> pb::Ring {
        pb::Ring {
            epoch: self.epoch,
            replication_factor: self.replication_factor,
            nodes: self.nodes.values().map(NodeInfo::to_pb).collect(),
            partitions: self
                .partitions
                .iter()
                .enumerate()
                .map(|(i, a)| pb::PartitionInfo {
                    id: i as u32,
                    replicas: a.replicas.clone(),
                    epoch: a.epoch,
                    initial: a.initial.clone(),
                    led: a.led,
                })
                .collect(),
            controller_leader_known: controller_leader.is_some(),
            controller_leader: controller_leader.unwrap_or(0),
        }
    }

    pub fn from_pb(r: &pb::Ring) -> Self {
        let mut partitions = vec![Assignment::default(); r.partitions.len()];
        for p in &r.partitions {
            if let Some(a) = partitions.get_mut(p.id as usize) {
                *a = Assignment { replicas: p.replicas.clone(), epoch: p.epoch, initial: p.initial.clone(), led: p.led };
            }
        }
        Self {
            epoch: r.epoch,
            replication_factor: r.replication_factor,
            nodes: r
                .nodes
                .iter()
                .filter_map(|n| {
                    Some((
                        n.id,
                        NodeInfo {
                            id: n.id,
                            zone: n.zone.clone(),
                            grpc_addr: n.grpc_addr.clone(),
                            http_addr: n.http_addr.clone(),
                            state: NodeState::from_pb(n.state)?,
                            incarnation: n.incarnation,
                        },
                    ))
                })
                .collect(),
            partitions,
        }
    }
}

/// The newest ring this process knows, and a way to wait for a newer one.
pub type RingWatch = tokio::sync::watch::Receiver<Arc<RingState>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_contiguous_and_cover_the_token_space() {
        let r = Ring::new(8);
        assert_eq!(r.partition_of(0), 0);
        assert_eq!(r.partition_of(u32::MAX), 7);
        assert_eq!(r.partition_of(1 << 29), 1);
        assert_eq!(r.partition_of((1 << 29) - 1), 0);
    }

    #[test]
    fn tenants_and_labels_spread_over_partitions() {
        let r = Ring::new(8);
        let mut seen = [0u32; 8];
        for i in 0..800 {
            let l = LabelSet::parse(&format!("{{job=\"j{i}\"}}")).unwrap();
            seen[r.partition_for("t", &l) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        let l = LabelSet::parse(r#"{job="x"}"#).unwrap();
        assert_ne!(Ring::token("a", &l), Ring::token("b", &l));
    }
}
