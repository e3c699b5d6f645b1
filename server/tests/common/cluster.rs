//! A cluster of real `balsa` processes on 127.0.0.1: ingesters in zones and
//! one stateless process (distributor, querier, query-frontend) in front.
//! All share one object-storage folder, as they would share a bucket.

use std::time::Duration;

use serde_json::Value;

use super::{wait_for, Balsa};

/// Clusters of one test binary run one at a time: each is five processes
/// plus eight writers, and two at once overload a 2-core machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Cluster {
    pub ingesters: Vec<Balsa>,
    /// Distributor + querier + query-frontend.
    pub front: Balsa,
    pub objects: tempfile::TempDir,
    config: std::path::PathBuf,
    partitions: usize,
    _turn: std::sync::MutexGuard<'static, ()>,
}

pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

impl Cluster {
    /// Starts `n` ingesters (node ids 1..=n, zones round-robin over three)
    /// with replication factor 3 and `partitions` partitions, then the
    /// front, and waits until every partition has three voters and a leader.
    pub fn start(n: usize, partitions: usize, extra_yaml: &str) -> Self {
        let objects = tempfile::tempdir().expect("temp dir");
        let config = objects.path().join("cluster.yaml");
        std::fs::write(
            &config,
            format!(
                "storage:\n  filesystem:\n    directory: {}\nlimits_config:\n  max_entries_limit_per_query: 1000000\n{extra_yaml}",
                objects.path().join("objects").display()
            ),
        )
        .expect("config");
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut c = Cluster { ingesters: Vec::new(), front: Balsa::new(&[]), objects, config, partitions, _turn: turn };
        for id in 1..=n as u64 {
            c.add_ingester(id, ZONES[(id as usize - 1) % 3]);
        }
        let seeds: Vec<String> = c.ingesters.iter().map(Balsa::grpc_addr).collect();
        c.front.add_args(&[
            "--target=distributor,querier,query-frontend".into(),
            "--node.id=100".into(),
            format!("--join={}", seeds.join(",")),
            format!("--config.file={}", c.config.display()),
        ]);
        c.front.spawn_nowait();
        for b in c.ingesters.iter_mut() {
            b.wait_ready();
        }
        c.front.wait_ready();
        c.wait_settled(Duration::from_secs(60));
        c
    }

    /// Starts ingester `id` in `zone`, joining through node 1 (node 1
    /// bootstraps). Does not wait for it.
    pub fn add_ingester(&mut self, id: u64, zone: &str) -> usize {
        let mut b = Balsa::new(&[]);
        let mut args = vec![
            "--target=ingester".to_string(),
            format!("--node.id={id}"),
            format!("--zone={zone}"),
            format!("--config.file={}", self.config.display()),
            format!("--ring.partitions={}", self.partitions),
            "--ring.replication-factor=3".to_string(),
        ];
        if let Some(first) = self.ingesters.first() {
            args.push(format!("--join={}", first.grpc_addr()));
        }
        b.add_args(&args);
        b.spawn_nowait();
        self.ingesters.push(b);
        self.ingesters.len() - 1
    }

    /// `/ring` as JSON, from the front.
    pub fn ring(&self) -> Value {
        self.front.get_json("/ring", &[("format", "json")], &[])
    }

    /// Waits until every partition's leader reports voters equal to the
    /// ring's replicas, all reachable and caught up.
    pub fn wait_settled(&self, deadline: Duration) {
        let until = std::time::Instant::now() + deadline;
        loop {
            let r = self.ring();
            if settled(&r) {
                return;
            }
            assert!(std::time::Instant::now() < until, "cluster did not settle: {r:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Node id of partition `p`'s leader.
    pub fn leader_of(&self, p: usize) -> Option<u64> {
        self.ring()["partitions"][p]["leader"].as_u64()
    }

    /// The ingester process with node id `id`.
    pub fn node(&mut self, id: u64) -> &mut Balsa {
        &mut self.ingesters[id as usize - 1]
    }

    /// Waits for a leader for every partition (a quorum is up).
    pub fn wait_leaders(&self, deadline: Duration) {
        wait_for("a leader for every partition", deadline, || {
            let r = self.ring();
            r["partitions"].as_array().is_some_and(|ps| ps.iter().all(|p| p["leader"].is_u64()))
        });
    }
}

/// Entries a follower may be behind and still count as caught up (under
/// load a few are always in flight).
pub const MAX_LAG: u64 = 100;

/// Every partition: a leader whose voters are the ring's replicas, three
/// of them, each caught up.
pub fn settled(r: &Value) -> bool {
    let Some(ps) = r["partitions"].as_array() else { return false };
    !ps.is_empty()
        && ps.iter().all(|p| {
            let mut replicas: Vec<u64> = p["replicas"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default();
            let mut voters: Vec<u64> = p["voters"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default();
            replicas.sort_unstable();
            voters.sort_unstable();
            p["leader"].is_u64()
                && replicas.len() == 3
                && replicas == voters
                && p["lag"].as_object().is_some_and(|l| l.len() == 3 && l.values().all(|v| v.as_u64().is_some_and(|n| n <= MAX_LAG)))
        })
}

/// Zones of each partition's replicas are distinct.
pub fn zone_aware(r: &Value) -> bool {
    let zone_of = |id: u64| {
        r["nodes"].as_array().and_then(|ns| ns.iter().find(|n| n["id"].as_u64() == Some(id))).map(|n| n["zone"].to_string())
    };
    r["partitions"].as_array().is_some_and(|ps| {
        ps.iter().all(|p| {
            let zones: std::collections::BTreeSet<_> =
                p["replicas"].as_array().into_iter().flatten().filter_map(Value::as_u64).map(zone_of).collect();
            zones.len() == p["replicas"].as_array().map_or(0, Vec::len)
        })
    })
}

/// A failed test shows what the cluster looked like: the ring and the last
/// log lines of every node.
impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let ring = self.front.get("/ring", &[("format", "json")], &[]).1;
        eprintln!("--- ring at failure:\n{ring}");
        for (i, n) in self.ingesters.iter().enumerate() {
            // Balsa's own lines (openraft's are many and rarely the clue).
            let logs = n.logs();
            let ours: Vec<&str> = logs.lines().filter(|l| l.contains("balsa")).collect();
            let tail = &ours[ours.len().saturating_sub(40)..];
            eprintln!("--- node {} (last lines):\n{}", i + 1, tail.join("\n"));
        }
    }
}
