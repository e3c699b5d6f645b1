//! Faults and their schedule. The schedule is drawn from a seed before the
//! test starts and printed, so a run can be replayed with `--seed`; which
//! node is "the leader of partition p" is resolved when the fault starts.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::cluster::{Cluster, ClusterError};

/// A kind of fault the nemesis can inject (`--nemesis`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// kill -9 of a node (random, a partition leader, or the controller leader), then restart.
    Kill,
    /// SIGSTOP of a node longer than the election timeout, then SIGCONT.
    Pause,
    /// Network partition: random halves, an isolated leader, a zone cut
    /// off, or a majority ring (each node reaches a different majority).
    Partition,
    /// Packet loss: a node drops a share of its peers' packets (nftables
    /// `numgen random`).
    Loss,
    /// Added latency: every link of a node delays its bytes by 0.1–1.1 s
    /// each way (the proxy).
    Latency,
    /// Clock skew: a node's wall clock jumps by tens of seconds, forward
    /// or back (libfaketime; monotonic clocks are left alone).
    Clock,
    /// Disk faults: every write and fsync of a node's files fails with EIO
    /// (faultio, preloaded); healed by a restart.
    Disk,
    /// Object-store outage: the S3-compatible server stops answering while
    /// chunks are being flushed (SIGSTOP), then resumes.
    Store,
    /// Membership change: a node is drained (`POST /ingester/drain`: its
    /// replicas move away, it exits), then started again and rejoins.
    Drain,
    /// Every ingester killed at once, then all restarted (power loss).
    CrashAll,
    /// Membership change: a brand-new node (the next id) joins during the
    /// load and gets replicas; at the heal it is drained out again.
    Join,
    /// A lost disk: a node is killed and its data directory deleted; started
    /// again under its old id it must refuse to run (an empty replica that
    /// votes could elect one missing acknowledged entries); it is then
    /// rebuilt under a new id. At most one per run: a second could take a
    /// partition's majority of disks, which no system survives.
    Wipe,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "kill" => Kind::Kill,
            "pause" => Kind::Pause,
            "partition" => Kind::Partition,
            "crash-all" => Kind::CrashAll,
            "loss" => Kind::Loss,
            "drain" => Kind::Drain,
            "clock" => Kind::Clock,
            "disk" => Kind::Disk,
            "store" => Kind::Store,
            "latency" => Kind::Latency,
            "join" => Kind::Join,
            "wipe" => Kind::Wipe,
            other => {
                return Err(format!(
                    "unknown nemesis `{other}` (known: kill, pause, partition, loss, latency, clock, disk, store, drain, join, wipe, crash-all)"
                ))
            }
        })
    }
}

/// Who a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// A node drawn with this number (modulo the node count).
    Random(u64),
    /// The leader of this partition (modulo the partition count).
    LeaderOf(u64),
    ControllerLeader,
    /// Partition: a random half (by this draw) against the rest.
    Halves(u64),
    /// Partition: this zone (modulo the zones) against the rest.
    Zone(u64),
    /// Partition: node i reaches only its ring neighbours i-1 and i+1.
    MajorityRing,
    All,
}

/// One scheduled fault.
#[derive(Clone, Debug, Serialize)]
pub struct Fault {
    /// Seconds after the start of the load.
    pub at: f64,
    /// How long it lasts before it is healed.
    pub hold: f64,
    pub kind: Kind,
    pub target: Target,
}

/// Draws the faults of a test: every `interval` seconds (jittered) a fault
/// of one of `kinds`, held for `hold` seconds, until `time_limit`.
pub fn schedule(seed: u64, kinds: &[Kind], time_limit: f64, interval: f64, hold: f64) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut t = interval / 2.0;
    while !kinds.is_empty() && t + hold < time_limit {
        let Some(&kind) = kinds.choose(&mut rng) else { break };
        let draw: u64 = rng.random();
        let target = match (kind, rng.random_range(0..4)) {
            (Kind::CrashAll | Kind::Store | Kind::Join, _) => Target::All,
            (Kind::Loss | Kind::Latency | Kind::Drain | Kind::Clock | Kind::Disk | Kind::Wipe, 0 | 1) => Target::Random(draw),
            (Kind::Loss | Kind::Latency | Kind::Drain | Kind::Clock | Kind::Disk | Kind::Wipe, _) => Target::LeaderOf(draw),
            (Kind::Kill | Kind::Pause, 0 | 3) => Target::Random(draw),
            (Kind::Kill | Kind::Pause, 1) => Target::LeaderOf(draw),
            (Kind::Kill | Kind::Pause, _) => Target::ControllerLeader,
            (Kind::Partition, 0) => Target::Halves(draw),
            (Kind::Partition, 1) => Target::LeaderOf(draw),
            (Kind::Partition, 2) => Target::Zone(draw),
            (Kind::Partition, _) => Target::MajorityRing,
        };
        let h = hold * rng.random_range(0.75..1.25);
        out.push(Fault { at: t, hold: h, kind, target });
        t += h + interval * rng.random_range(0.75..1.25);
    }
    out
}

/// A fault in progress: what to undo.
pub enum Active {
    Killed(Vec<u64>),
    Paused(Vec<u64>),
    /// Cuts, losses or delays in the network.
    Partitioned,
    Skewed(Vec<u64>),
    /// A node that joined: drained out at the heal.
    Joined(u64),
    /// Disks failing: restart to heal.
    Broken(Vec<u64>),
    /// A node wiped and retired; its replacement (new id) joined.
    Replaced,
    StoreDown,
}

/// Share of packets a lossy node drops.
const LOSS_PERCENT: u32 = 30;

/// Resolves `target` to node ids now (members of the cluster only).
fn nodes_of(c: &Cluster, target: Target) -> Vec<u64> {
    let members = c.members();
    if members.is_empty() {
        return Vec::new();
    }
    let pick = |d: u64| members[(d % members.len() as u64) as usize];
    match target {
        Target::Random(d) | Target::Halves(d) => vec![pick(d)],
        Target::LeaderOf(d) => {
            let parts = c.partitions().max(1) as u64;
            vec![c.leader_of((d % parts) as usize).filter(|l| members.contains(l)).unwrap_or_else(|| pick(d))]
        }
        Target::ControllerLeader => vec![c.controller_leader().filter(|l| members.contains(l)).unwrap_or(members[0])],
        Target::Zone(d) => {
            let zone = format!("zone-{}", (b'a' + (d % c.zones as u64) as u8) as char);
            c.ingesters.iter().filter(|x| x.zone == zone && members.contains(&x.id)).map(|x| x.id).collect()
        }
        Target::All | Target::MajorityRing => members,
    }
}

/// Starts `f`; returns what to heal and the nodes hit.
pub fn start(c: &mut Cluster, f: &Fault) -> Result<(Active, Vec<u64>), ClusterError> {
    let ids = nodes_of(c, f.target);
    Ok(match f.kind {
        Kind::Kill | Kind::CrashAll => {
            for id in &ids {
                c.node(*id).kill();
            }
            (Active::Killed(ids.clone()), ids)
        }
        Kind::Pause => {
            for id in &ids {
                c.node(*id).pause();
            }
            (Active::Paused(ids.clone()), ids)
        }
        Kind::Partition if f.target == Target::MajorityRing => {
            let n = ids.len();
            let cuts: Vec<(u64, Vec<u64>)> = (0..n)
                .map(|i| {
                    let near = [ids[(i + n - 1) % n], ids[i], ids[(i + 1) % n]];
                    (ids[i], ids.iter().copied().filter(|x| !near.contains(x)).collect())
                })
                .collect();
            c.cut(&cuts, None)?;
            (Active::Partitioned, ids)
        }
        Kind::Loss => {
            let all = c.members();
            let cuts: Vec<(u64, Vec<u64>)> =
                ids.iter().map(|id| (*id, all.iter().copied().filter(|x| x != id).collect())).collect();
            c.cut(&cuts, Some(LOSS_PERCENT))?;
            (Active::Partitioned, ids)
        }
        Kind::Clock => {
            // 20–80 s, forward or back, from the schedule.
            let secs = 20 + (f.at as i64 * 7919) % 61;
            let offset = if (f.at as i64) % 2 == 0 { secs } else { -secs };
            for id in &ids {
                c.skew_clock(*id, offset)?;
            }
            (Active::Skewed(ids.clone()), ids)
        }
        Kind::Latency => {
            // 0.1–1.1 s each way, from the schedule.
            let delay = std::time::Duration::from_millis(100 + (f.at * 1000.0) as u64 % 1000);
            for id in &ids {
                c.slow_down(*id, delay)?;
            }
            (Active::Partitioned, ids)
        }
        Kind::Join => {
            let id = c.add_node()?;
            (Active::Joined(id), vec![id])
        }
        Kind::Store => {
            c.pause_store(true)?;
            (Active::StoreDown, Vec::new())
        }
        Kind::Disk => {
            for id in &ids {
                c.fail_disk(*id)?;
            }
            (Active::Broken(ids.clone()), ids)
        }
        Kind::Drain => {
            let id = ids[0];
            c.drain(id)?;
            (Active::Killed(vec![id]), ids)
        }
        Kind::Wipe => {
            let id = ids[0];
            let new = c.wipe_and_replace(id)?;
            (Active::Replaced, vec![id, new])
        }
        Kind::Partition => {
            let all = c.members();
            let side: Vec<u64> = match f.target {
                // A random minority of the nodes (at least one).
                Target::Halves(d) => {
                    let mut rng = StdRng::seed_from_u64(d);
                    let k = (all.len() - 1) / 2;
                    let mut v = all.clone();
                    rand::seq::SliceRandom::shuffle(v.as_mut_slice(), &mut rng);
                    v.truncate(k.max(1));
                    v
                }
                _ => ids,
            };
            let rest: Vec<u64> = all.iter().copied().filter(|x| !side.contains(x)).collect();
            c.partition(&[side.clone(), rest])?;
            (Active::Partitioned, side)
        }
    })
}

/// Undoes a fault.
pub fn heal(c: &mut Cluster, a: Active) -> Result<(), ClusterError> {
    match a {
        Active::StoreDown => c.pause_store(false)?,
        Active::Broken(ids) => {
            for id in ids {
                c.repair_disk(id)?;
            }
        }
        Active::Killed(ids) => {
            // Every node is restarted even if one fails to start.
            let mut first_error = None;
            for id in ids {
                if let Err(e) = c.restart(id) {
                    first_error.get_or_insert(e);
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
        }
        Active::Paused(ids) => {
            for id in ids {
                c.node(id).resume();
            }
        }
        Active::Partitioned => c.heal_network(),
        Active::Replaced => {}
        Active::Joined(id) => c.retire(id)?,
        Active::Skewed(ids) => {
            for id in ids {
                c.skew_clock(id, 0)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let kinds = [Kind::Kill, Kind::Pause, Kind::Partition];
        let a = schedule(42, &kinds, 120.0, 10.0, 8.0);
        let b = schedule(42, &kinds, 120.0, 10.0, 8.0);
        assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
        assert!(a.len() >= 4, "{a:?}");
        assert!(a.iter().all(|f| f.at + f.hold < 120.0));
        assert!(a.windows(2).all(|w| w[0].at + w[0].hold < w[1].at), "faults do not overlap");
        let c = schedule(43, &kinds, 120.0, 10.0, 8.0);
        assert_ne!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&c).unwrap());
    }

    #[test]
    fn no_kinds_no_faults() {
        assert!(schedule(1, &[], 60.0, 5.0, 5.0).is_empty());
    }
}
