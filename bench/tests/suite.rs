//! The benchmark suite runs end to end (`balsa-bench all --quick`, what CI
//! runs): every benchmark starts its real processes and anchors, measures,
//! and reports its rows. No timing is asserted, only that each benchmark
//! produced finite figures and the anchors agreed with Balsa's answers
//! (the scan and LogQL benchmarks fail on a different count).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_quick_suite_reports_every_benchmark() {
    let bench = env!("CARGO_BIN_EXE_balsa-bench");
    let balsa = std::path::Path::new(bench).with_file_name("balsa");
    assert!(balsa.is_file(), "no balsa binary next to {bench}: build the workspace (cargo build --release -p balsa)");
    let dir = tempfile::tempdir_in("/var/tmp").expect("a working directory");
    let out_path = dir.path().join("table.md");
    let err_path = dir.path().join("progress.txt");
    let mut child = Command::new(bench)
        .args(["all", "--quick", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::from(std::fs::File::create(&out_path).expect("stdout file")))
        .stderr(Stdio::from(std::fs::File::create(&err_path).expect("stderr file")))
        .spawn()
        .expect("start balsa-bench");
    // Bounded: the quick suite takes about a minute here; five is generous.
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for balsa-bench") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("balsa-bench all --quick ran over 300 s:\n{}", std::fs::read_to_string(&err_path).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let table = std::fs::read_to_string(&out_path).expect("the table");
    let progress = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "balsa-bench failed ({status}):\n{table}\n{progress}");
    assert!(!table.contains("FAILED"), "{table}");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| bench "))
        .map(|l| l.split(" | ").collect())
        .collect();
    for bench in ["push", "cluster", "scan", "logql", "restart", "snapshot", "memory"] {
        assert!(rows.iter().any(|r| r[0] == format!("| {bench}")), "no row for {bench}:\n{table}");
    }
    // Both encodings of the cluster benchmark, both scan anchors, every
    // LogQL question.
    for what in ["(JSON,", "(protobuf+snappy,", "grep -c", "rg -c", "`line filter`", "`topk by status`"] {
        assert!(rows.iter().any(|r| r[1].contains(what)), "no row for {what}:\n{table}");
    }
    for r in &rows {
        let ratio: f64 = r[4].trim().parse().unwrap_or_else(|_| panic!("ratio {:?} is not a number:\n{table}", r[4]));
        assert!(ratio.is_finite() && ratio >= 0.0, "ratio {ratio} in {r:?}");
    }
}
