//! Loki's simple scalable deployment: `--target=write` (distributor and
//! ingester), `read` (query-frontend and querier) and `backend` (compactor)
//! as three processes sharing one object store.

mod common;

use std::time::Duration;

use common::{now_ns, wait_for, Balsa};
use serde_json::json;


#[test]
fn write_read_and_backend_processes_form_one_loki() {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "storage:\n  filesystem:\n    directory: {}\ningester:\n  flush_check_period: 1h\ncompactor:\n  compaction_interval: 100ms\n  delete_request_cancel_period: 1s\n  delete_request_refresh_period: 1s\n  retention_delete_delay: 0s\n",
            objects.display()
        ),
    )
    .unwrap();
    let cfg = format!("--config.file={}", cfg.display());
    let write = Balsa::start(&[&cfg, "--target=write", "--node.id=1", "--ring.replication-factor=1"]);
    let join = format!("--join={}", write.grpc_addr());
    let read = Balsa::start(&[&cfg, "--target=read", "--node.id=2", &join]);
    let backend = Balsa::start(&[&cfg, "--target=backend", "--node.id=3", &join]);
    let target = |b: &Balsa| {
        let yaml = b.get("/config", &[], &[]).1;
        yaml.lines().find(|l| l.starts_with("target:")).unwrap_or_default().to_string()
    };
    assert_eq!(target(&write), "target: ingester,distributor");
    assert_eq!(target(&read), "target: querier,query-frontend");
    assert_eq!(target(&backend), "target: compactor");

    // Written through the write path, read through the read path.
    let t = now_ns() - 60_000_000_000;
    let body = json!({"streams": [{"stream": {"job": "ssd"}, "values": [[t.to_string(), "keep"], [(t + 1).to_string(), "secret"]]}]});
    assert_eq!(write.push_json(None, &body).0, 204);
    let lines = |b: &Balsa| b.query_lines(None, r#"{job="ssd"}"#, 1, 100).into_iter().map(|(_, l)| l).collect::<Vec<_>>();
    assert_eq!(lines(&read), ["keep", "secret"]);
    assert_eq!(write.post("/flush", &[], b"").0, 204);
    let flushed: Vec<String> = common::files_under(&objects.join("chunks"));
    assert!(!flushed.is_empty(), "the write process flushed to the shared store");

    // A delete made through the read path is carried out by the backend's
    // compactor: the flushed chunk is rewritten without the line.
    let q = format!(
        "/loki/api/v1/delete?query={}&start={}&end={}",
        "%7Bjob%3D%22ssd%22%7D%20%7C%3D%20%22secret%22",
        t / 1_000_000_000 - 1,
        t / 1_000_000_000 + 1
    );
    assert_eq!(read.post(&q, &[], b"").0, 204);
    assert_eq!(lines(&read), ["keep"], "hidden at once");
    wait_for("the backend's compactor to rewrite the chunk", Duration::from_secs(30), || {
        let now = common::files_under(&objects.join("chunks"));
        flushed.iter().any(|f| !now.contains(f))
    });
    assert_eq!(lines(&read), ["keep"]);

    // Each process serves the routes of its roles, and the admin routes.
    let query = [("query", r#"{job="ssd"}"#)];
    for (process, pushes, queries) in [(&write, true, false), (&read, false, true), (&backend, false, false)] {
        let pushed = process.push_json(None, &body).0;
        assert_eq!(pushed != 404, pushes, "push answered {pushed}");
        let queried = process.get("/loki/api/v1/query_range", &query, &[]).0;
        assert_eq!(queried != 404, queries, "query answered {queried}");
        assert_eq!(process.get("/ready", &[], &[]).0, 200);
        assert_eq!(process.get("/ring", &[], &[]).0, 200);
    }
}

/// Transparent huge pages are off for the server process (`main.rs`): with
/// them, every partition replica's mostly unused 620 KiB Raft command queue
/// took whole 2 MiB pages: 158 MiB for 200 idle replicas instead of 8.
#[test]
fn the_server_runs_without_transparent_huge_pages() {
    let b = Balsa::start(&["--ring.partitions=16"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", b.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("THP_enabled:")).expect("THP_enabled in /proc/PID/status (Linux 5.0+)");
    assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
}
