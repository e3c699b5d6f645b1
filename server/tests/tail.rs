//! `/loki/api/v1/tail`: the newest lines first, then new lines as they come.

mod common;

use std::time::{Duration, Instant};

use common::{now_ns, Balsa};
use serde_json::{json, Value};

fn lines_of(msg: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for s in msg["streams"].as_array().into_iter().flatten() {
        for v in s["values"].as_array().into_iter().flatten() {
            out.push(v[1].as_str().unwrap_or_default().to_string());
        }
    }
    out
}

#[test]
fn tail_sends_the_last_lines_then_new_ones_once() {
    let b = Balsa::start(&[]);
    let t = now_ns() - 5_000_000_000;
    let push = |ts: i64, line: &str| {
        let body = json!({"streams": [{"stream": {"app": "t"}, "values": [[ts.to_string(), line]]}]});
        assert_eq!(b.push_json(None, &body).0, 204);
    };
    push(t, "one");
    push(t + 1, "two");
    push(t + 2, "three");
    let url = format!("ws://127.0.0.1:{}/loki/api/v1/tail?query=%7Bapp%3D%22t%22%7D&limit=2", b.http_port);
    let (mut ws, _) = tungstenite::connect(url).expect("websocket");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    }
    let mut seen: Vec<String> = Vec::new();
    let mut first: Option<Vec<String>> = None;
    let mut pushed_new = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !seen.contains(&"four".to_string()) {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let msg: Value = serde_json::from_str(&t).expect("JSON message");
                assert!(msg.get("dropped_entries").is_some(), "{msg}");
                let lines = lines_of(&msg);
                if first.is_none() {
                    first = Some(lines.clone());
                }
                seen.extend(lines);
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("websocket: {e}"),
        }
        if first.is_some() && !pushed_new {
            push(now_ns() - 1_000_000, "four");
            pushed_new = true;
        }
    }
    assert_eq!(first.expect("a first message"), ["two", "three"], "the newest `limit` lines");
    assert_eq!(seen, ["two", "three", "four"], "each line once");
}

/// `/api/prom/tail`, which old clients use, sends the legacy shape:
/// `{"streams":[{"labels":"{…}","entries":[{"ts":RFC3339,"line":…}]}]}`.
#[test]
fn legacy_tail_sends_the_old_shape() {
    let b = Balsa::start(&[]);
    let t = (now_ns() - 5_000_000_000) / 1_000_000_000 * 1_000_000_000 + 250_000_000;
    let body = json!({"streams": [{"stream": {"app": "t", "env": "x"}, "values": [[t.to_string(), "old client"]]}]});
    assert_eq!(b.push_json(None, &body).0, 204);
    let url = format!("ws://127.0.0.1:{}/api/prom/tail?query=%7Bapp%3D%22t%22%7D", b.http_port);
    let (mut ws, _) = tungstenite::connect(url).expect("websocket");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    }
    let msg = loop {
        match ws.read().expect("a message within 20 s") {
            tungstenite::Message::Text(t) => break serde_json::from_str::<Value>(&t).expect("JSON message"),
            _ => continue,
        }
    };
    let expected_ts = rfc3339_by_date(t);
    assert_eq!(msg["streams"], json!([{"labels": "{app=\"t\", env=\"x\", service_name=\"t\"}", "entries": [{"ts": expected_ts, "line": "old client"}]}]), "{msg}");
}

/// The time as coreutils `date` writes it, with the .25 s fraction Go's RFC3339Nano prints.
fn rfc3339_by_date(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let out = std::process::Command::new("date").args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%S"]).output().expect("date");
    format!("{}.25Z", String::from_utf8_lossy(&out.stdout).trim())
}

/// As in Loki: a tenant may have `max_concurrent_tail_requests` tails open
/// (more answer 400), and a tail is closed after `querier.tail_max_duration`,
/// which frees its place.
#[test]
fn tails_are_limited_in_number_and_duration() {
    let b = Balsa::with_config("limits_config:\n  max_concurrent_tail_requests: 1\nquerier:\n  tail_max_duration: 2s\n");
    let url = format!("ws://127.0.0.1:{}/loki/api/v1/tail?query=%7Bapp%3D%22t%22%7D", b.http_port);
    let opened = Instant::now();
    let (mut first, _) = tungstenite::connect(&url).expect("the first tail opens");
    match tungstenite::connect(&url) {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 400);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            assert_eq!(body, "max concurrent tail requests limit exceeded, count > limit (2 > 1)");
        }
        other => panic!("a second tail must be refused, got {:?}", other.map(|_| ())),
    }
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = first.get_mut() {
        s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    }
    loop {
        match first.read() {
            Ok(tungstenite::Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => break,
            Ok(_) => continue,
            Err(e) => panic!("the tail must be closed by the server, got {e}"),
        }
    }
    let lasted = opened.elapsed();
    assert!(lasted >= Duration::from_secs(2) && lasted < Duration::from_secs(20), "closed after {lasted:?}");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tungstenite::connect(&url).is_err() {
        assert!(Instant::now() < deadline, "the closed tail's place is freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}
