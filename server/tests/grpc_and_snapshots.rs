//! Loki's gRPC push, and corruption of a snapshot detected at start.

mod common;

use std::time::{Duration, Instant};

use balsa_proto::logproto::pusher_client::PusherClient;
use common::{now_ns, run_to_exit, Balsa};
use serde_json::json;

#[test]
fn grpc_push_is_stored_like_http_push() {
    let b = Balsa::start(&["--auth.enabled=true"]);
    let t = now_ns() - 1_000_000_000;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ok, unauth) = rt.block_on(async {
        let mut c = PusherClient::connect(format!("http://127.0.0.1:{}", b.grpc_port)).await.unwrap();
        let req = || common::grpc_push_request(r#"{app="grpc"}"#, t, "over grpc", &[("k", "v")]);
        let mut with_tenant = tonic::Request::new(req());
        with_tenant.metadata_mut().insert("x-scope-orgid", "t1".parse().unwrap());
        let ok = c.push(with_tenant).await;
        let unauth = c.push(tonic::Request::new(req())).await;
        (ok, unauth)
    });
    assert!(ok.is_ok(), "{ok:?}");
    assert_eq!(unauth.unwrap_err().code(), tonic::Code::Unauthenticated);
    let v = b.get_json(
        "/loki/api/v1/query_range",
        &[("query", r#"{app="grpc"}"#), ("since", "1h")],
        &[("X-Scope-OrgID", "t1"), ("X-Loki-Response-Encoding-Flags", "categorize-labels")],
    );
    assert_eq!(v["data"]["result"][0]["values"], json!([[t.to_string(), "over grpc", {"structuredMetadata": {"k": "v"}}]]));
}

#[test]
fn a_corrupt_snapshot_stops_the_start_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, "raft:\n  snapshot_logs_since_last: 3\nring:\n  partitions: 2\n").unwrap();
    let cfg_arg = format!("--config.file={}", cfg.display());
    let mut b = Balsa::start(&[&cfg_arg]);
    let t = now_ns() - 1_000_000_000;
    for i in 0..40 {
        let body = json!({"streams": [{"stream": {"job": format!("j{}", i % 7)}, "values": [[(t + i).to_string(), "line"]]}]});
        assert_eq!(b.push_json(None, &body).0, 204);
    }
    let snaps = b.data_dir().join("snapshots");
    let deadline = Instant::now() + Duration::from_secs(30);
    let snap = loop {
        let found = std::fs::read_dir(&snaps)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "snap"));
        if let Some(p) = found {
            break p;
        }
        assert!(Instant::now() < deadline, "no snapshot was written");
        std::thread::sleep(Duration::from_millis(20));
    };
    b.kill9();
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&snap, &bytes).unwrap();
    let (code, err) = run_to_exit(
        &[
            &cfg_arg,
            &format!("--data.dir={}", b.data_dir().display()),
            &format!("--http.addr=127.0.0.1:{}", b.http_port),
            &format!("--grpc.addr=127.0.0.1:{}", b.grpc_port),
        ],
        dir.path(),
    );
    assert_ne!(code, 0, "started on a corrupt snapshot: {err}");
    let name = snap.file_name().unwrap().to_string_lossy().to_string();
    assert!(err.contains("checksum mismatch") && err.contains(&name), "{err}");
}
