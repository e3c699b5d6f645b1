//! The cluster, as real processes on 127.0.0.1: three ingesters in three
//! zones (replication factor 3) and a distributor/querier in front, under
//! concurrent pushes while leaders are killed, nodes paused, an ingester
//! joins and another drains, and every node restarts at once. After each:
//! every acknowledged line is stored exactly once, and no push failed.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::{settled, zone_aware, Cluster};
use common::load::{check_exactly_once, load, stored, History};
use common::wait_for;

const PARTITIONS: usize = 4;

/// Runs the writers against the front until `during` returns, then stops
/// them; returns the history.
fn under_load(c: &mut Cluster, round: usize, during: impl FnOnce(&mut Cluster, &AtomicUsize)) -> History {
    let hist = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let pushes = Arc::new(AtomicUsize::new(0));
    let writers = load(&c.front, round, stop.clone(), pushes.clone(), hist.clone());
    wait_for("pushes before the fault", Duration::from_secs(60), || pushes.load(Ordering::Relaxed) >= 50);
    during(c, &pushes);
    let before = pushes.load(Ordering::Relaxed);
    wait_for("pushes after the fault", Duration::from_secs(60), || pushes.load(Ordering::Relaxed) >= before + 50);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer thread");
    }
    Arc::try_unwrap(hist).ok().expect("writers done").into_inner().expect("history")
}

/// Waits until `pushes` grew by `n` (writes go on despite the fault).
fn progress(pushes: &AtomicUsize, n: usize, what: &str) {
    let before = pushes.load(Ordering::Relaxed);
    wait_for(what, Duration::from_secs(60), || pushes.load(Ordering::Relaxed) >= before + n);
}

#[test]
fn killing_partition_leaders_under_load_loses_and_duplicates_nothing() {
    let mut c = Cluster::start(3, PARTITIONS, "");
    let h = under_load(&mut c, 0, |c, pushes| {
        for round in 0..3 {
            let leader = c.leader_of(round % PARTITIONS).expect("a leader");
            c.node(leader).kill9();
            progress(pushes, 30, "pushes while a leader is down");
            c.node(leader).spawn();
            c.wait_settled(Duration::from_secs(60));
        }
    });
    check_exactly_once(&stored(&c.front), &h, "after killing leaders");
    assert!(h.acked.len() > 100);
}

#[test]
fn a_paused_leader_causes_no_split_brain_and_its_return_deposes_nobody() {
    let mut c = Cluster::start(3, PARTITIONS, "");
    let mut paused = 0;
    let mut before = serde_json::Value::Null;
    let h = under_load(&mut c, 0, |c, pushes| {
        paused = c.leader_of(0).expect("a leader");
        before = c.ring();
        c.node(paused).signal("STOP");
        // Longer than the election timeout: the others elect.
        wait_for("a new leader of partition 0", Duration::from_secs(30), || {
            c.leader_of(0).is_some_and(|l| l != paused)
        });
        progress(pushes, 30, "pushes while the old leader is paused");
        c.node(paused).signal("CONT");
        c.wait_settled(Duration::from_secs(60));
        progress(pushes, 30, "pushes after the return");
    });
    let r = c.ring();
    for (p, was) in r["partitions"].as_array().expect("partitions").iter().zip(before["partitions"].as_array().expect("before")) {
        // One leader per partition, and the resumed node follows it.
        let leaders = p["members"].as_array().expect("members").iter().filter(|m| m["role"] == "leader").count();
        assert_eq!(leaders, 1, "{p:#}");
        // Pre-vote: where the paused node was a follower, its return (after
        // its election timeout passed) did not start an election.
        if was["leader"].as_u64() != Some(paused) {
            assert_eq!((p["leader"].clone(), p["term"].clone()), (was["leader"].clone(), was["term"].clone()), "before: {was:#}\nafter: {p:#}");
        }
    }
    check_exactly_once(&stored(&c.front), &h, "after a pause");
}

#[test]
fn joining_and_draining_ingesters_keep_zones_balanced_and_writes_flowing() {
    let mut c = Cluster::start(3, PARTITIONS, "");
    let h = under_load(&mut c, 0, |c, pushes| {
        // A fourth ingester in zone-a takes half of zone-a's replicas.
        let i = c.add_ingester(4, "zone-a");
        c.ingesters[i].wait_ready();
        wait_for("node 4 holds replicas", Duration::from_secs(60), || {
            let r = c.ring();
            settled(&r) && r["nodes"].as_array().into_iter().flatten().any(|n| n["id"] == 4 && n["replicas"].as_u64() > Some(0))
        });
        let r = c.ring();
        assert!(zone_aware(&r), "one replica per zone: {r:#}");
        let count = |id: u64| r["nodes"].as_array().into_iter().flatten().find(|n| n["id"] == id).map(|n| n["replicas"].clone());
        assert_eq!(count(1), count(4), "zone-a's replicas split evenly: {r:#}");
        progress(pushes, 30, "pushes after the join");
        // Drain node 1: its replicas (and leaderships) move to node 4, then it exits.
        let (status, body) = c.node(1).post("/ingester/drain", &[], b"");
        assert_eq!(status, 202, "{body}");
        assert_eq!(c.node(1).wait_exit(Duration::from_secs(120)), Some(0), "the drained node exits by itself");
        c.wait_settled(Duration::from_secs(60));
        // The front follows the ring through a stream that may have been
        // served by node 1: it reconnects elsewhere and catches up.
        wait_for("the front to see node 1 LEFT with no replicas", Duration::from_secs(30), || {
            let r = c.ring();
            let node1 = r["nodes"].as_array().into_iter().flatten().find(|n| n["id"] == 1).cloned().unwrap_or_default();
            (node1["state"].as_str(), node1["replicas"].as_u64()) == (Some("LEFT"), Some(0))
        });
        let r = c.ring();
        assert!(zone_aware(&r), "{r:#}");
    });
    check_exactly_once(&stored(&c.front), &h, "after a join and a drain");
}

#[test]
fn restarting_every_node_at_once_keeps_every_acknowledged_line() {
    let mut c = Cluster::start(3, PARTITIONS, "raft:\n  snapshot_logs_since_last: 50\n");
    let h = under_load(&mut c, 0, |c, _| {
        // Power loss: all ingesters die together, then come back.
        for b in c.ingesters.iter_mut() {
            b.kill9();
        }
        for b in c.ingesters.iter_mut() {
            b.spawn_nowait();
        }
        for b in c.ingesters.iter_mut() {
            b.wait_ready();
        }
        c.wait_settled(Duration::from_secs(60));
    });
    // Pushes in flight while every node was down wait for the restart
    // (the router retries for 10 s) or fail as unavailable: both are
    // honest, neither is a loss. Only acknowledged lines must be there.
    let mut h = h;
    h.failures.retain(|(code, _)| *code != 503);
    check_exactly_once(&stored(&c.front), &h, "after a full restart");
}

/// Writes a CA and one certificate for 127.0.0.1 signed by it (every node
/// uses it as server and client identity); returns the config section.
fn tls_files(dir: &std::path::Path) -> String {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("ca key");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("params");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
    let write = |name: &str, pem: String| {
        let p = dir.join(name);
        std::fs::write(&p, pem).expect("pem");
        p.display().to_string()
    };
    format!(
        "server:\n  grpc_tls_config:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n",
        write("node.pem", cert.pem()),
        write("node-key.pem", key.serialize_pem()),
        write("ca.pem", ca.pem())
    )
}

#[test]
fn nodes_talk_over_mutual_tls_when_configured() {
    let certs = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(3, 2, &tls_files(certs.path()));
    let h = under_load(&mut c, 0, |_, pushes| progress(pushes, 20, "pushes over TLS"));
    let all = stored(&c.front);
    check_exactly_once(&all, &h, "over TLS");
    // Line filters reach the ingesters' unflushed entries too (over the
    // wire, the front being a separate process): same answer as filtering
    // everything here.
    let filtered: HashSet<String> =
        c.front.query_lines(None, r#"{writer="w1"} |= "-i7" != "-s1""#, 1, 1_000_000).into_iter().map(|(_, l)| l).collect();
    let expected: HashSet<String> =
        all.keys().filter(|l| l.contains("-w1-") && l.contains("-i7") && !l.contains("-s1")).cloned().collect();
    assert!(!expected.is_empty());
    assert_eq!(filtered, expected);
    // The gRPC port speaks TLS only: a plaintext request gets no answer.
    let plain = ureq::get(&format!("http://127.0.0.1:{}/", c.ingesters[0].grpc_port)).timeout(Duration::from_secs(5)).call();
    assert!(matches!(plain, Err(ureq::Error::Transport(_))), "plaintext was answered: {plain:?}");
}

#[test]
fn a_dead_node_is_replaced_within_its_zone_and_welcomed_back() {
    let mut c = Cluster::start(3, PARTITIONS, "ring:\n  dead_node_timeout: 5s\n");
    let i = c.add_ingester(4, "zone-a");
    c.ingesters[i].wait_ready();
    let holds = |r: &serde_json::Value, id: u64| {
        r["nodes"].as_array().into_iter().flatten().find(|n| n["id"] == id).and_then(|n| n["replicas"].as_u64()).unwrap_or(0)
    };
    wait_for("node 4 holds replicas", Duration::from_secs(60), || {
        let r = c.ring();
        settled(&r) && holds(&r, 4) > 0
    });
    // Node 1 dies: the node that bootstrapped the cluster, its first
    // controller leader; node 4 shares its zone.
    let h = under_load(&mut c, 0, |c, pushes| {
        c.node(1).kill9();
        wait_for("node 1 declared dead and replaced", Duration::from_secs(60), || {
            let r = c.ring();
            let state = r["nodes"].as_array().into_iter().flatten().find(|n| n["id"] == 1).map(|n| n["state"].clone());
            state == Some(serde_json::json!("DEAD")) && holds(&r, 1) == 0 && settled(&r)
        });
        assert!(zone_aware(&c.ring()), "replaced within zone-a: {:#}", c.ring());
        progress(pushes, 30, "pushes after the replacement");
        c.node(1).spawn();
        wait_for("node 1 active with replicas again", Duration::from_secs(60), || {
            let r = c.ring();
            let active = r["nodes"].as_array().into_iter().flatten().any(|n| n["id"] == 1 && n["state"] == "ACTIVE");
            active && settled(&r) && holds(&r, 1) > 0
        });
    });
    check_exactly_once(&stored(&c.front), &h, "after a node died and came back");
}

/// A node whose disk was wiped must not come back under its old id (it
/// would vote with an empty log and could elect a replica missing
/// acknowledged entries): it is refused, naming the recovery. Started
/// under a new id in the same zone, it takes over the dead id's replicas,
/// and no acknowledged line is lost.
#[test]
fn a_wiped_ingester_is_refused_under_its_old_id_and_rebuilt_under_a_new_one() {
    let mut c = Cluster::start(3, PARTITIONS, "ring:\n  dead_node_timeout: 5s\n");
    let holds = |r: &serde_json::Value, id: u64| {
        r["nodes"].as_array().into_iter().flatten().find(|n| n["id"] == id).and_then(|n| n["replicas"].as_u64()).unwrap_or(0)
    };
    let h = under_load(&mut c, 0, |c, pushes| {
        c.node(3).kill9();
        std::fs::remove_dir_all(c.node(3).data_dir()).expect("wipe node 3's disk");
        c.node(3).spawn_nowait();
        assert_eq!(c.node(3).wait_exit(Duration::from_secs(60)), Some(1), "a wiped node must not rejoin under its old id");
        let logs = c.node(3).logs();
        assert!(logs.contains("this data directory is empty") && logs.contains("new --node.id"), "{logs}");
        progress(pushes, 30, "pushes while node 3 is gone");
        let i = c.add_ingester(4, "zone-c");
        c.ingesters[i].wait_ready();
        wait_for("node 4 replaces node 3", Duration::from_secs(90), || {
            let r = c.ring();
            settled(&r) && holds(&r, 3) == 0 && holds(&r, 4) > 0
        });
        assert!(zone_aware(&c.ring()), "{:#}", c.ring());
    });
    check_exactly_once(&stored(&c.front), &h, "after a node lost its disk and was rebuilt");
}

/// Regression: a 70 MB push to one partition became one Raft entry past
/// the transport's message cap; it was appended on the leader but every
/// AppendEntries carrying it failed while heartbeats went on, so nothing
/// of that partition committed again. Now it is split into bounded
/// proposals, is acknowledged whole, and later small pushes commit.
#[test]
fn a_70_mb_push_to_one_partition_commits_and_later_pushes_still_do() {
    let limits = "  ingestion_rate_mb: 1000\n  ingestion_burst_size_mb: 1000\n  per_stream_rate_limit: 1GB\n  per_stream_rate_limit_burst: 1GB\n";
    let c = Cluster::start(3, PARTITIONS, limits);
    let t = common::now_ns() - 60_000_000_000;
    let line = "x".repeat(100_000);
    let values: Vec<serde_json::Value> = (0..700).map(|i| serde_json::json!([(t + i).to_string(), format!("{i:04} {line}")])).collect();
    let body = serde_json::json!({"streams": [{"stream": {"job": "big"}, "values": values}]});
    let (status, text) = c.front.push_json(None, &body);
    assert_eq!(status, 204, "{text}");
    for i in 0..5 {
        let small = serde_json::json!({"streams": [{"stream": {"job": "big"}, "values": [[(t + 1000 + i).to_string(), format!("small {i}")]]}]});
        let (status, text) = c.front.push_json(None, &small);
        assert_eq!(status, 204, "small push {i} after the big one: {text}");
    }
    // Read in two windows: one ingester read reply is capped at 64 MiB
    // too (a separate limit, noted in docs/reliability.md).
    let window = |from: i64, to: i64| -> Vec<String> {
        let v = c.front.get_json(
            "/loki/api/v1/query_range",
            &[("query", r#"{job="big"}"#), ("start", &from.to_string()), ("end", &to.to_string()), ("limit", "100000"), ("direction", "forward")],
            &[],
        );
        v["data"]["result"].as_array().expect("result").iter().flat_map(|s| s["values"].as_array().expect("values").clone()).map(|e| e[1].as_str().expect("line").to_string()).collect()
    };
    let mut got = window(t, t + 350);
    got.extend(window(t + 350, t + 2000));
    assert_eq!(got.len(), 705, "every line of the big push and the small ones");
    assert!(got.iter().take(700).enumerate().all(|(i, l)| l.starts_with(&format!("{i:04} "))), "in order");
}

#[test]
fn a_rolling_restart_with_sigterm_moves_leaders_first_and_fails_no_push() {
    let mut c = Cluster::start(3, PARTITIONS, "");
    let h = under_load(&mut c, 0, |c, pushes| {
        for id in 1..=3 {
            c.node(id).signal("TERM");
            assert_eq!(c.node(id).wait_exit(Duration::from_secs(90)), Some(0), "node {id} stops cleanly on SIGTERM");
            // It handed its leaderships over before exiting: every
            // partition is led by a running node already, no election due.
            let r = c.ring();
            for p in r["partitions"].as_array().expect("partitions") {
                assert!(p["leader"].as_u64().is_some_and(|l| l != id), "node {id} exited still leading: {p:#}");
            }
            progress(pushes, 20, "pushes while a node restarts");
            c.node(id).spawn();
            c.wait_settled(Duration::from_secs(60));
        }
    });
    check_exactly_once(&stored(&c.front), &h, "after a rolling restart");
}

#[test]
fn leaders_move_back_to_a_restarted_node_without_failing_pushes() {
    let mut c = Cluster::start(3, 6, "");
    let leads = |r: &serde_json::Value| -> Vec<u64> {
        r["nodes"].as_array().into_iter().flatten().map(|n| n["leaders"].as_u64().unwrap_or(0)).collect()
    };
    let h = under_load(&mut c, 0, |c, pushes| {
        c.node(1).kill9();
        wait_for("nodes 2 and 3 lead every partition", Duration::from_secs(60), || {
            let r = c.ring();
            r["partitions"].as_array().is_some_and(|ps| ps.iter().all(|p| p["leader"].as_u64().is_some_and(|l| l != 1)))
        });
        c.node(1).spawn();
        progress(pushes, 20, "pushes after the restart");
        // Six partitions over three nodes: each leads the two it is the
        // preferred replica of once the others handed them back.
        wait_for("two leaderships per node again", Duration::from_secs(60), || {
            let r = c.ring();
            settled(&r) && leads(&r) == vec![2, 2, 2]
        });
    });
    check_exactly_once(&stored(&c.front), &h, "after leaders moved back");
}
