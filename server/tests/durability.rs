//! kill -9 under concurrent load, restart: every acknowledged line is there,
//! exactly once. Snapshots are taken every few entries so the restart goes
//! through snapshot + log replay, not the log alone.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::load::{check_exactly_once, load, stored, History, LINES_PER_PUSH};
use common::{wait_for, Balsa};

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

        let h = hist.lock().unwrap();
        check_exactly_once(&stored(&b), &h, &format!("round {round}"));
        assert!(h.acked.len() >= 300 * LINES_PER_PUSH);
    }
    let (_, metrics) = b.get("/metrics", &[], &[]);
    let snapshotted = metrics
        .lines()
        .filter(|l| l.starts_with("balsa_raft_snapshot_index{"))
        .any(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) > 0);
    assert!(snapshotted, "snapshots were taken during the test:\n{metrics}");
}
