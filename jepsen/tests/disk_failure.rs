//! A node whose disk fails refuses to acknowledge, says why, and after a
//! restart on a working disk holds every line it acknowledged and none it
//! refused (faultio makes every file write and sync fail with EIO).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn balsa() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(|d| d.parent()).expect("target directory").join("balsa")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

struct Node {
    child: Child,
    http: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a single-process balsa on `data`, with faultio preloaded when
/// `faultio` names the library and its control file; waits for /ready.
fn start(data: &std::path::Path, faultio: Option<(&std::path::Path, &std::path::Path)>) -> Node {
    let http = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(balsa());
    cmd.arg(format!("--http.addr={http}"))
        .arg(format!("--grpc.addr=127.0.0.1:{}", free_port()))
        .arg(format!("--data.dir={}", data.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some((lib, control)) = faultio {
        cmd.env("LD_PRELOAD", lib).env("BALSA_FAULTIO_CONTROL", control);
    }
    let node = Node { child: cmd.spawn().expect("start balsa"), http };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ureq::get(&format!("http://{}/ready", node.http)).call().is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "balsa not ready within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    node
}

fn push(node: &Node, ts: u128, line: &str) -> u16 {
    let body = serde_json::json!({"streams": [{"stream": {"app": "disk"}, "values": [[ts.to_string(), line]]}]});
    match ureq::post(&format!("http://{}/loki/api/v1/push", node.http)).timeout(Duration::from_secs(60)).send_json(body) {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("push: {e}"),
    }
}

fn lines(node: &Node) -> Vec<String> {
    let r: serde_json::Value = ureq::get(&format!("http://{}/loki/api/v1/query_range", node.http))
        .query("query", r#"{app="disk"}"#)
        .query("since", "1h")
        .call()
        .expect("query")
        .into_json()
        .expect("JSON");
    r["data"]["result"].as_array().into_iter().flatten().flat_map(|s| s["values"].as_array().cloned().unwrap_or_default()).filter_map(|v| v[1].as_str().map(str::to_string)).collect()
}

#[test]
fn a_failed_disk_refuses_writes_and_loses_nothing_acknowledged() {
    let dir = std::env::temp_dir().join(format!("jepsen-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test directory");
    let lib = jepsen::cluster::write_faultio(&dir).expect("faultio");
    let control = dir.join("disk-failing");
    let data = dir.join("data");
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    {
        let node = start(&data, Some((&lib, &control)));
        assert_eq!(push(&node, now(), "written before the failure"), 204);
        std::fs::write(&control, b"").expect("arm faultio");
        std::thread::sleep(Duration::from_millis(300));
        let status = push(&node, now(), "refused by the failing disk");
        assert!(status >= 500, "a push the disk could not take must not be acknowledged (got {status})");
        let r = ureq::get(&format!("http://{}/ready", node.http)).call();
        let Err(ureq::Error::Status(503, body)) = r else { panic!("/ready must fail once the disk has failed") };
        assert!(body.into_string().unwrap_or_default().contains("disk failed"), "/ready names the failure");
        let metrics = ureq::get(&format!("http://{}/metrics", node.http)).call().expect("metrics").into_string().expect("text");
        assert!(metrics.contains("balsa_raft_log_disk_failed 1"), "the failure is a metric");
    }
    std::fs::remove_file(&control).expect("disarm faultio");
    let node = start(&data, None);
    assert_eq!(lines(&node), vec!["written before the failure".to_string()]);
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
