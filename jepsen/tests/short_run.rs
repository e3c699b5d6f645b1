//! The short failure-injection runs `.ci/run` does on every change, each on
//! a fresh 5-node cluster in 3 zones; every history must be valid.
//!
//! 1. 75 s under kills, pauses, drains, a brand-new node joining, full
//!    crashes, failing writes and fsyncs (faultio), a wiped disk (refused
//!    under its old id, rebuilt under a new one), and, where the machine
//!    allows, network partitions and packet loss (root and nftables), clock
//!    skew (libfaketime) and an object-store outage during flushes
//!    (moto_server).
//! 2. 45 s with the links going through jepsen's TCP proxy (no root
//!    needed): partitions and added latency, with kills.
//!
//! The runs take turns (a lock): two clusters at once would starve each
//! other on a small machine.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The `balsa` binary of the same build (`target/<profile>/balsa`).
fn balsa() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(|d| d.parent()).expect("target directory").join("balsa")
}

/// Runs `jepsen test` with `args` and checks its results directory.
fn run_valid(name: &str, args: &[&str]) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let results = std::env::temp_dir().join(format!("jepsen-ci-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&results).expect("results directory");
    let out = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .arg("test")
        .args(args)
        .arg("--balsa")
        .arg(balsa())
        .arg("--results")
        .arg(&results)
        .output()
        .expect("run jepsen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "jepsen found anomalies or failed:\n{stdout}\n{stderr}");
    let run = std::fs::read_dir(&results).expect("results").flatten().next().expect("a run directory").path();
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("results.json")).expect("results.json")).expect("JSON");
    assert_eq!(r["valid"], true, "{r:#}");
    assert!(r["analysis"]["acknowledged"].as_u64() > Some(1000), "too little load to mean anything: {r:#}");
    assert!(r["faults"].as_array().is_some_and(|f| f.len() >= 4), "too few faults: {r:#}");
    for f in ["history.jsonl", "report.html", "schedule.json"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let _ = std::fs::remove_dir_all(&results);
}

#[test]
fn a_short_run_under_faults_loses_nothing() {
    let root = unsafe { libc::geteuid() } == 0;
    let nft = Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success());
    let have = |path: &str| std::path::Path::new(path).is_file();
    // Network faults need root and nftables, clock skew libfaketime (.ci/run
    // installs them and runs as root); disk faults are jepsen's own.
    let mut nemesis = vec!["kill", "pause", "drain", "crash-all"];
    if root && nft {
        nemesis.extend(["partition", "loss"]);
    }
    if have(jepsen::cluster::LIBFAKETIME) {
        nemesis.push("clock");
    }
    nemesis.extend(["disk", "join", "wipe"]);
    // With `store`, chunks are flushed to moto_server within seconds.
    if Command::new("moto_server").arg("--help").output().is_ok_and(|o| o.status.success()) {
        nemesis.push("store");
    }
    let nemesis = nemesis.join(",");
    let net = if root && nft { "netns" } else { "local" };
    run_valid(
        "all",
        &["--net", net, "--nodes", "5", "--zones", "3", "--workload", "set,order,tenants", "--nemesis", &nemesis, "--time-limit", "75"]
            .into_iter()
            .chain(["--rate", "100", "--interval", "3", "--hold", "6", "--seed", "20261126"])
            .collect::<Vec<_>>(),
    );
}

#[test]
fn a_short_run_through_the_proxy_loses_nothing() {
    run_valid(
        "proxy",
        &["--net", "proxy", "--nodes", "5", "--zones", "3", "--workload", "set,order", "--nemesis", "partition,latency,kill"]
            .into_iter()
            .chain(["--time-limit", "45", "--rate", "100", "--interval", "3", "--hold", "6", "--seed", "20261127"])
            .collect::<Vec<_>>(),
    );
}
