//! `balsa canary` against a three-zone cluster while the leader of the
//! canary's partition is killed and restarted: every acknowledged entry
//! comes back exactly once, and the canary's metrics say so.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{now_ns, wait_for, Balsa, BIN};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn the_canary_loses_nothing_while_an_ingester_is_killed() {
    let mut c = Cluster::start(3, 1, "");
    let metrics_port = free_port();
    let mut canary = Command::new(BIN)
        .args([
            "canary",
            "--addr",
            &c.front.url(""),
            "--interval=50ms",
            "--wait=5s",
            "--duration=20s",
            &format!("--metrics-addr=127.0.0.1:{metrics_port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let scrape = || {
        ureq::get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .unwrap_or_default()
    };
    let entries = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("loki_canary_entries_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait_for("the canary to write", Duration::from_secs(20), || entries(&scrape()) >= 40);

    let started = Instant::now();
    let leader = c.leader_of(0).expect("a leader");
    c.node(leader).kill9();
    wait_for("a new leader", Duration::from_secs(20), || c.leader_of(0).is_some_and(|l| l != leader));
    c.node(leader).spawn();
    assert!(started.elapsed() < Duration::from_secs(15), "the fault fits in the canary's run");

    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = canary.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the canary did not finish");
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = canary.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "the canary found a problem:\n{stdout}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(summary["lost"], 0, "{summary}");
    assert_eq!(summary["stored_twice"], 0, "{summary}");
    assert!(summary["acknowledged"].as_u64().unwrap() >= 200, "{summary}");
    let seen = summary["seen_in_tail"].as_u64().unwrap() + summary["late"].as_u64().unwrap();
    assert_eq!(seen, summary["acknowledged"].as_u64().unwrap(), "every entry came back through the tail or a query: {summary}");
}

#[test]
fn the_canary_counts_refused_writes_as_errors_not_losses() {
    let port = free_port();
    let out = Command::new(BIN)
        .args(["canary", "--addr", &format!("http://127.0.0.1:{port}"), "--interval=50ms", "--wait=1s", "--duration=1s", "--metrics-addr=127.0.0.1:0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(summary["acknowledged"], 0, "nothing was acknowledged, so nothing is lost: {summary}");
    assert!(summary["write_errors"].as_u64().unwrap() >= 5, "{summary}");
    assert!(out.status.success(), "refused writes are not losses");
}

#[test]
fn the_canary_fails_when_acknowledged_entries_disappear() {
    let b = Balsa::start(&[]);
    let canary = Command::new(BIN)
        .args(["canary", "--addr", &b.url(""), "--interval=50ms", "--wait=2s", "--duration=4s", "--metrics-addr=127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let written = || b.query_lines(None, r#"{name="balsa-canary"}"#, 1, 1000).len();
    wait_for("canary lines", Duration::from_secs(10), || written() >= 10);
    // A delete request hides what the canary already wrote, as a loss would.
    let now = now_ns() / 1_000_000_000;
    let q = format!("/loki/api/v1/delete?query=%7Bname%3D%22balsa-canary%22%7D&start={}&end={}", now - 60, now + 1);
    assert_eq!(b.post(&q, &[], b"").0, 204);
    let out = canary.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the canary must fail:\n{stdout}\n{stderr}");
    assert!(stderr.contains("lost or stored twice"), "{stderr}");
}
