//! kill -9 under concurrent load, restart: every acknowledged line is there,
//! exactly once. Snapshots are taken every few entries so the restart goes
//! through snapshot + log replay, not the log alone.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{now_ns, Balsa};
use serde_json::json;

const WRITERS: usize = 8;
const LINES_PER_PUSH: usize = 50;

/// What the writers saw: lines acknowledged (204) and lines whose push had
/// no answer (the process died): those may or may not be stored.
#[derive(Default)]
struct History {
    acked: Vec<String>,
    indeterminate: Vec<String>,
}

/// Runs WRITERS threads pushing unique lines until `stop`; each stops at its
/// first transport error (the process was killed).
fn load(b: &Balsa, round: usize, stop: Arc<AtomicBool>, pushes: Arc<AtomicUsize>, hist: Arc<Mutex<History>>) -> Vec<std::thread::JoinHandle<()>> {
    (0..WRITERS)
        .map(|w| {
            let url = b.url("/loki/api/v1/push");
            let (stop, pushes, hist) = (stop.clone(), pushes.clone(), hist.clone());
            std::thread::spawn(move || {
                let base = now_ns() - 60_000_000_000;
                for seq in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let lines: Vec<String> = (0..LINES_PER_PUSH).map(|i| format!("r{round}-w{w}-s{seq}-i{i}")).collect();
                    let values: Vec<_> = lines
                        .iter()
                        .enumerate()
                        .map(|(i, l)| json!([(base + (seq * LINES_PER_PUSH + i) as i64).to_string(), l]))
                        .collect();
                    let body = json!({"streams": [{"stream": {"writer": format!("w{w}"), "round": round.to_string()}, "values": values}]});
                    let r = ureq::post(&url)
                        .timeout(Duration::from_secs(20))
                        .set("Content-Type", "application/json")
                        .send_string(&body.to_string());
                    let mut h = hist.lock().unwrap();
                    match r {
                        Ok(resp) if resp.status() == 204 => {
                            h.acked.extend(lines);
                            pushes.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(resp) => panic!("unexpected status {}", resp.status()),
                        Err(ureq::Error::Status(code, resp)) => {
                            panic!("push refused: {code} {}", resp.into_string().unwrap_or_default())
                        }
                        Err(_) => {
                            h.indeterminate.extend(lines);
                            return;
                        }
                    }
                }
            })
        })
        .collect()
}

fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every stored line with its count, read back through the query API.
fn stored(b: &Balsa) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for w in 0..WRITERS {
        for (_, line) in b.query_lines(None, &format!("{{writer=\"w{w}\"}}"), 1, 1_000_000) {
            *counts.entry(line).or_insert(0) += 1;
        }
    }
    counts
}

#[test]
fn kill_9_under_load_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, "raft:\n  snapshot_logs_since_last: 40\nlimits_config:\n  max_entries_limit_per_query: 1000000\n").unwrap();
    let mut b = Balsa::start(&[&format!("--config.file={}", cfg.display())]);
    let hist = Arc::new(Mutex::new(History::default()));
    for round in 0..2 {
        let stop = Arc::new(AtomicBool::new(false));
        let pushes = Arc::new(AtomicUsize::new(0));
        let writers = load(&b, round, stop.clone(), pushes.clone(), hist.clone());
        // Kill in the middle of the load: once enough pushes are in.
        wait_for("acknowledged pushes", Duration::from_secs(60), || pushes.load(Ordering::Relaxed) >= 300);
        b.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().expect("writer thread");
        }
        b.spawn();

        let counts = stored(&b);
        let h = hist.lock().unwrap();
        let lost: Vec<&String> = h.acked.iter().filter(|l| !counts.contains_key(*l)).collect();
        let dups: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
        let unexpected: Vec<&String> =
            counts.keys().filter(|l| !h.acked.contains(l) && !h.indeterminate.contains(l)).collect();
        assert!(lost.is_empty(), "round {round}: {} acknowledged lines lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
        assert!(dups.is_empty(), "round {round}: duplicated lines, e.g. {:?}", &dups[..dups.len().min(5)]);
        assert!(unexpected.is_empty(), "round {round}: lines never written: {:?}", &unexpected[..unexpected.len().min(5)]);
        assert!(h.acked.len() >= 300 * LINES_PER_PUSH);
    }
    let (_, metrics) = b.get("/metrics", &[], &[]);
    let snapshotted = metrics
        .lines()
        .filter(|l| l.starts_with("balsa_raft_snapshot_index{"))
        .any(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) > 0);
    assert!(snapshotted, "snapshots were taken during the test:\n{metrics}");
}
