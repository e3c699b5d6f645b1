//! The short failure-injection run `.ci/run` does on every change: a fresh
//! 5-node cluster in 3 zones for 60 s under kills, pauses, drains, full
//! crashes and, where the machine allows, network partitions, packet loss
//! (root and nftables), clock skew (libfaketime), failing writes and fsyncs (faultio)
//! and an object-store outage during flushes (moto_server); the history
//! must be valid.

use std::path::PathBuf;
use std::process::Command;

/// The `balsa` binary of the same build (`target/<profile>/balsa`).
fn balsa() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(|d| d.parent()).expect("target directory").join("balsa")
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
    nemesis.push("disk");
    // With `store`, chunks are flushed to moto_server within seconds.
    if Command::new("moto_server").arg("--help").output().is_ok_and(|o| o.status.success()) {
        nemesis.push("store");
    }
    let nemesis = nemesis.join(",");
    let results = tempfile_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args(["test", "--nodes", "5", "--zones", "3", "--workload", "set,order,tenants", "--nemesis", &nemesis])
        .args(["--time-limit", "75", "--rate", "100", "--interval", "3", "--hold", "6", "--seed", "20261126"])
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
    assert!(r["faults"].as_array().is_some_and(|f| f.len() >= 5), "too few faults: {r:#}");
    for f in ["history.jsonl", "report.html", "schedule.json"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let _ = std::fs::remove_dir_all(&results);
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("jepsen-ci-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("results directory");
    d
}
