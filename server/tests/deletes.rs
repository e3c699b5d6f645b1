//! Delete requests: lines gone from queries at once, chunks rewritten by the
//! compactor after the cancel period, nothing back after restart; cancel.

mod common;

use std::time::Duration;

use common::{now_ns, wait_for, Balsa};
use serde_json::json;

fn chunk_files(b: &Balsa) -> Vec<String> {
    common::files_under(&b.data_dir().join("objects/chunks"))
}

#[test]
fn deleted_lines_are_gone_from_memory_and_chunks_and_stay_gone() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "ingester:\n  flush_check_period: 1h\ncompactor:\n  compaction_interval: 100ms\n  delete_request_cancel_period: 2s\n  retention_delete_delay: 0s\n",
    )
    .unwrap();
    let mut b = Balsa::start(&[&format!("--config.file={}", cfg.display())]);
    let t = now_ns() - 600_000_000_000;
    let push = |b: &Balsa, job: &str, lines: &[(i64, &str)]| {
        let values: Vec<_> = lines.iter().map(|(ts, l)| json!([ts.to_string(), l])).collect();
        assert_eq!(b.push_json(None, &json!({"streams": [{"stream": {"job": job}, "values": values}]})).0, 204);
    };
    push(&b, "a", &[(t, "keep 1"), (t + 1, "secret 1"), (t + 2, "keep 2")]);
    push(&b, "b", &[(t, "secret in b")]);
    assert_eq!(b.post("/flush", &[], b"").0, 204);
    let flushed = chunk_files(&b);
    push(&b, "a", &[(t + 3, "secret 2"), (t + 4, "keep 3")]);

    let (start, end) = ((t / 1_000_000_000).to_string(), ((t + 10) / 1_000_000_000 + 1).to_string());
    let q = format!("/loki/api/v1/delete?query={}&start={start}&end={end}", urlencode(r#"{job="a"} |= "secret""#));
    assert_eq!(b.post(&q, &[], b"").0, 204);
    let lines = |b: &Balsa, job: &str| b.query_lines(None, &format!("{{job=\"{job}\"}}"), 1, 100).into_iter().map(|(_, l)| l).collect::<Vec<_>>();
    assert_eq!(lines(&b, "a"), ["keep 1", "keep 2", "keep 3"], "gone at once, flushed or not");
    assert_eq!(lines(&b, "b"), ["secret in b"], "other streams stay");
    let listed = b.get_json("/loki/api/v1/delete", &[], &[]);
    assert_eq!(listed[0]["query"], r#"{job="a"} |= "secret""#);

    // A cancelled request gives the lines back.
    let q2 = format!("/loki/api/v1/delete?query={}&start={start}", urlencode(r#"{job="b"}"#));
    assert_eq!(b.post(&q2, &[], b"").0, 204);
    assert!(lines(&b, "b").is_empty());
    let id = b.get_json("/loki/api/v1/delete", &[], &[]).as_array().unwrap().iter()
        .find(|r| r["query"] == r#"{job="b"}"#).unwrap()["request_id"].as_str().unwrap().to_string();
    let r = ureq::delete(&b.url(&format!("/loki/api/v1/delete?request_id={id}"))).call();
    assert_eq!(r.map(|r| r.status()).unwrap_or(0), 204);
    assert_eq!(lines(&b, "b"), ["secret in b"]);

    // After the cancel period the compactor rewrites the flushed chunk of "a".
    wait_for("the compactor to rewrite the chunk", Duration::from_secs(30), || {
        let now = chunk_files(&b);
        flushed.iter().filter(|f| f.contains("/fake/")).any(|f| !now.contains(f))
    });
    assert_eq!(b.post("/flush", &[], b"").0, 204);
    b.kill9();
    b.spawn();
    assert_eq!(lines(&b, "a"), ["keep 1", "keep 2", "keep 3"], "still gone after restart and flush");
    let r = ureq::delete(&b.url(&format!("/loki/api/v1/delete?request_id={id}x"))).call();
    assert!(matches!(r, Err(ureq::Error::Status(404, _))));
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|c| if c.is_ascii_alphanumeric() { (c as char).to_string() } else { format!("%{c:02X}") })
        .collect()
}

/// Regression: a delete request reached only the process that accepted it;
/// another querier kept returning the deleted lines until it restarted,
/// and cancelling through it answered 404. Now every process re-reads the
/// requests within `delete_request_refresh_period`, and listing and
/// cancelling read the store first.
#[test]
fn a_delete_made_through_one_querier_holds_in_another_and_can_be_cancelled_there() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "storage:\n  filesystem:\n    directory: {}\ncompactor:\n  delete_request_refresh_period: 1s\n",
            dir.path().join("objects").display()
        ),
    )
    .unwrap();
    let cfg = format!("--config.file={}", cfg.display());
    let a = Balsa::start(&[&cfg]);
    let b = Balsa::start(&[&cfg, "--target=distributor,querier,query-frontend", "--node.id=50", &format!("--join={}", a.grpc_addr())]);
    let t = now_ns() - 60_000_000_000;
    let body = json!({"streams": [{"stream": {"job": "x"}, "values": [[t.to_string(), "secret"], [(t + 1).to_string(), "kept"]]}]});
    assert_eq!(a.push_json(None, &body).0, 204);
    let lines = |p: &Balsa| p.query_lines(None, r#"{job="x"}"#, 1, 100).into_iter().map(|(_, l)| l).collect::<Vec<_>>();
    wait_for("the second querier to see both lines", Duration::from_secs(30), || lines(&b) == ["secret", "kept"]);

    let q = format!("/loki/api/v1/delete?query={}&start={}&end={}", "%7Bjob%3D%22x%22%7D%20%7C%3D%20%22secret%22", t - 1, t + 10);
    assert_eq!(a.post(&q, &[], b"").0, 204);
    assert_eq!(lines(&a), ["kept"], "at once where it was made");
    wait_for("the other querier to hide the deleted line", Duration::from_secs(15), || lines(&b) == ["kept"]);

    // Listed and cancelled through the other process.
    let listed = b.get_json("/loki/api/v1/delete", &[], &[]);
    let id = listed.as_array().unwrap().first().expect("the request is listed by the other process")["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = ureq::delete(&b.url(&format!("/loki/api/v1/delete?request_id={id}"))).call();
    assert_eq!(r.map(|r| r.status()).unwrap_or(0), 204, "cancel through the other process");
    assert_eq!(lines(&b), ["secret", "kept"]);
    wait_for("the first process to see the cancel", Duration::from_secs(15), || lines(&a) == ["secret", "kept"]);
}
