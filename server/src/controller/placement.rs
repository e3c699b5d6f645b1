//! Where each partition's replicas go: a pure, deterministic function of the
//! ring, run inside the controller's `apply` so every controller replica
//! computes the same placement.
//!
//! Rules, in order:
//! 1. replicas live on `ACTIVE` nodes; a `DRAINING` node's replicas always
//!    move; a `DEAD` node's replica moves only to a zone the partition does
//!    not use yet (otherwise it stays: the node may come back, and a second
//!    replica in one zone would not survive that zone's loss);
//! 2. a partition gets its first replicas once `replication_factor` nodes
//!    are active (so a new cluster starts fully replicated), preferred
//!    leaders (the first replica, which initializes the group and so leads
//!    it first) spread evenly; later it keeps `min(replication_factor,
//!    active nodes)` replicas, in distinct zones while there are enough
//!    zones;
//! 3. replica counts are balanced: a replica moves to a node of a
//!    compatible zone holding at least two fewer, so a joining node takes
//!    its share.
//!
//! A partition whose group never reported its voters equal to its replicas
//! (`led`) is left as it is: only its initial replicas can form the group.
//!
//! Nodes are visited in id order and ties broken by id, so the result
//! depends only on the ring.

use std::collections::{BTreeMap, BTreeSet};

use balsa_raft::NodeId;

use crate::ring::{NodeState, RingState};

/// Recomputes the replica sets; returns whether any changed (their epochs
/// are bumped).
pub fn place(ring: &mut RingState) -> bool {
    let active: Vec<NodeId> = ring.nodes.values().filter(|n| n.state == NodeState::Active).map(|n| n.id).collect();
    if active.is_empty() || ring.partitions.is_empty() {
        return false;
    }
    let zone = |n: &NodeId| ring.nodes.get(n).map(|i| i.zone.clone()).unwrap_or_default();
    let state = |n: &NodeId| ring.nodes.get(n).map(|i| i.state);
    let rf = (ring.replication_factor.max(1) as usize).min(active.len());

    let before: Vec<Vec<NodeId>> = ring.partitions.iter().map(|a| a.replicas.clone()).collect();
    let frozen: Vec<bool> = ring.partitions.iter().map(|a| !a.led && !a.replicas.is_empty()).collect();
    let mut load: BTreeMap<NodeId, usize> = active.iter().map(|&n| (n, 0)).collect();
    let mut sets: Vec<Vec<NodeId>> = Vec::with_capacity(before.len());
    for (replicas, frozen) in before.iter().zip(&frozen) {
        // Keep active replicas and dead ones (decided below); drop the rest.
        let keep: Vec<NodeId> = replicas
            .iter()
            .copied()
            .filter(|n| *frozen || matches!(state(n), Some(NodeState::Active | NodeState::Dead)))
            .collect();
        for n in &keep {
            if let Some(l) = load.get_mut(n) {
                *l += 1;
            }
        }
        sets.push(keep);
    }
    let mut leads: BTreeMap<NodeId, usize> = active.iter().map(|&n| (n, 0)).collect();
    for set in &sets {
        if let Some(l) = set.first().and_then(|n| leads.get_mut(n)) {
            *l += 1;
        }
    }
    for (set, frozen) in sets.iter_mut().zip(&frozen) {
        if *frozen {
            continue;
        }
        if set.is_empty() {
            if active.len() < ring.replication_factor.max(1) as usize {
                continue; // not enough nodes to start this partition yet
            }
            while set.len() < rf {
                let used: BTreeSet<String> = set.iter().map(&zone).collect();
                let pick = active.iter().filter(|n| !set.contains(n)).min_by_key(|n| (used.contains(&zone(n)), load[n], **n));
                let Some(&c) = pick else { break };
                set.push(c);
                *load.entry(c).or_default() += 1;
            }
            // The replica leading the fewest partitions goes first.
            if let Some(i) = (0..set.len()).min_by_key(|&i| (leads[&set[i]], set[i])) {
                set.swap(0, i);
                *leads.entry(set[0]).or_default() += 1;
            }
            continue;
        }
        // Replace dead replicas where a zone the partition lacks has room.
        let dead: Vec<NodeId> = set.iter().copied().filter(|n| state(n) == Some(NodeState::Dead)).collect();
        for d in dead {
            let used: BTreeSet<String> = set.iter().filter(|n| **n != d).map(&zone).collect();
            let pick = active
                .iter()
                .filter(|n| !set.contains(n) && !used.contains(&zone(n)))
                .min_by_key(|n| (load[n], **n));
            if let Some(&c) = pick {
                let i = set.iter().position(|n| *n == d).unwrap_or(0);
                set[i] = c;
                *load.entry(c).or_default() += 1;
            }
        }
        // Fill up to the replication factor, new zones first.
        while set.len() < rf {
            let used: BTreeSet<String> = set.iter().map(&zone).collect();
            let pick = active.iter().filter(|n| !set.contains(n)).min_by_key(|n| (used.contains(&zone(n)), load[n], **n));
            match pick {
                Some(&c) => {
                    set.push(c);
                    *load.entry(c).or_default() += 1;
                }
                None => break,
            }
        }
    }
    // Balance: move a replica whenever that narrows the gap between two
    // nodes (each move strictly lowers the sum of squared loads, so this ends).
    loop {
        let mut moved = false;
        for (set, _) in sets.iter_mut().zip(&frozen).filter(|(_, f)| !**f) {
            for i in 0..set.len() {
                let r = set[i];
                let Some(&lr) = load.get(&r) else { continue };
                if state(&r) != Some(NodeState::Active) {
                    continue;
                }
                let others: BTreeSet<String> = set.iter().filter(|n| **n != r).map(&zone).collect();
                let pick = active
                    .iter()
                    .filter(|n| !set.contains(n) && load[*n] + 1 < lr)
                    .filter(|n| zone(n) == zone(&r) || !others.contains(&zone(n)))
                    .min_by_key(|n| (load[n], **n));
                if let Some(&c) = pick {
                    set[i] = c;
                    *load.entry(r).or_default() -= 1;
                    *load.entry(c).or_default() += 1;
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    let mut changed = false;
    for (a, set) in ring.partitions.iter_mut().zip(sets) {
        if a.replicas != set {
            if a.initial.is_empty() {
                a.initial = set.clone();
            }
            a.replicas = set;
            a.epoch += 1;
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Assignment, NodeInfo};

    fn ring(nodes: &[(NodeId, &str)], partitions: usize, rf: u32) -> RingState {
        RingState {
            epoch: 1,
            replication_factor: rf,
            nodes: nodes
                .iter()
                .map(|&(id, z)| {
                    (id, NodeInfo { id, zone: z.into(), grpc_addr: String::new(), http_addr: String::new(), state: NodeState::Active, incarnation: 0 })
                })
                .collect(),
            partitions: vec![Assignment::default(); partitions],
        }
    }

    fn zones_of(r: &RingState, p: usize) -> BTreeSet<String> {
        r.partitions[p].replicas.iter().map(|n| r.nodes[n].zone.clone()).collect()
    }

    fn loads(r: &RingState) -> BTreeMap<NodeId, usize> {
        let mut l = BTreeMap::new();
        for a in &r.partitions {
            for n in &a.replicas {
                *l.entry(*n).or_default() += 1;
            }
        }
        l
    }

    /// Every placed partition's group reports its voters.
    fn led(r: &mut RingState) {
        for a in &mut r.partitions {
            a.led = !a.replicas.is_empty();
        }
    }

    fn node(id: NodeId, zone: &str) -> NodeInfo {
        NodeInfo { id, zone: zone.into(), grpc_addr: String::new(), http_addr: String::new(), state: NodeState::Active, incarnation: 0 }
    }

    #[test]
    fn partitions_start_once_enough_nodes_joined_with_leaders_spread_over_zones() {
        let mut r = ring(&[(1, "a")], 9, 3);
        assert!(!place(&mut r), "one node of three: nothing placed yet");
        r.nodes.insert(2, node(2, "b"));
        r.nodes.insert(3, node(3, "c"));
        r.nodes.insert(4, node(4, "a"));
        assert!(place(&mut r));
        for p in 0..9 {
            assert_eq!(zones_of(&r, p).len(), 3, "one replica per zone");
            assert_eq!(r.partitions[p].initial, r.partitions[p].replicas);
        }
        let mut firsts = BTreeMap::new();
        for a in &r.partitions {
            *firsts.entry(a.replicas[0]).or_insert(0) += 1;
        }
        assert!(firsts.values().all(|&n| n >= 2), "preferred leaders spread: {firsts:?}");
        assert!(!place(&mut r), "placement is stable");
    }

    #[test]
    fn a_single_node_ring_with_replication_factor_one_starts_at_once() {
        let mut r = ring(&[(1, "a")], 4, 1);
        assert!(place(&mut r));
        assert!(r.partitions.iter().all(|a| a.replicas == vec![1] && a.epoch == 1));
    }

    #[test]
    fn a_joining_node_takes_its_share_within_its_zone() {
        let mut r = ring(&[(1, "a"), (2, "b"), (3, "c")], 12, 3);
        place(&mut r);
        led(&mut r);
        r.nodes.insert(4, node(4, "a"));
        assert!(place(&mut r));
        let l = loads(&r);
        assert_eq!((l[&1], l[&4]), (6, 6), "{l:?}");
        assert_eq!((l[&2], l[&3]), (12, 12));
        assert!((0..12).all(|p| zones_of(&r, p).len() == 3), "still one replica per zone");
    }

    #[test]
    fn a_partition_stays_put_until_its_group_reported_its_voters() {
        let mut r = ring(&[(1, "a"), (2, "b"), (3, "c")], 6, 3);
        place(&mut r);
        let first: Vec<Vec<NodeId>> = r.partitions.iter().map(|a| a.replicas.clone()).collect();
        r.nodes.insert(4, node(4, "a"));
        r.nodes.insert(5, node(5, "b"));
        r.nodes.get_mut(&3).unwrap().state = NodeState::Draining;
        assert!(!place(&mut r), "nothing moves before the groups formed");
        assert_eq!(r.partitions.iter().map(|a| a.replicas.clone()).collect::<Vec<_>>(), first);
        led(&mut r);
        assert!(place(&mut r));
        assert!(r.partitions.iter().all(|a| !a.replicas.contains(&3)), "then the drain proceeds");
    }

    #[test]
    fn draining_moves_replicas_and_dead_ones_move_only_to_a_free_zone() {
        let mut r = ring(&[(1, "a"), (2, "b"), (3, "c"), (4, "a")], 8, 3);
        place(&mut r);
        led(&mut r);
        r.nodes.get_mut(&4).unwrap().state = NodeState::Draining;
        place(&mut r);
        assert!(r.partitions.iter().all(|a| !a.replicas.contains(&4) && a.replicas.len() == 3));
        // Node 2 dies: zone b has no other node, so its replicas stay.
        r.nodes.get_mut(&2).unwrap().state = NodeState::Dead;
        assert!(!place(&mut r));
        // A new node in zone b replaces it.
        r.nodes.insert(5, node(5, "b"));
        assert!(place(&mut r));
        assert!(r.partitions.iter().all(|a| !a.replicas.contains(&2) && a.replicas.contains(&5)));
    }
}
