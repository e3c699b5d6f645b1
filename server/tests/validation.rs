//! Loki's validation rules, one case each, with status code and reason;
//! malformed bodies never hurt the process or earlier data.

mod common;

use common::{now_ns, Balsa};
use serde_json::{json, Value};

const H: i64 = 3_600_000_000_000;

fn push(b: &Balsa, labels: Value, values: Value) -> (u16, String) {
    b.push_json(None, &json!({"streams": [{"stream": labels, "values": values}]}))
}

fn pb_push(b: &Balsa, labels: &str, line: &str) -> (u16, String) {
    use loki_api::logproto::{EntryAdapter, PushRequest, StreamAdapter};
    use prost013::Message;
    let t = now_ns();
    let ts = loki_api::prost_types::Timestamp { seconds: t / 1_000_000_000, nanos: (t % 1_000_000_000) as i32 };
    let req = PushRequest {
        streams: vec![StreamAdapter {
            labels: labels.into(),
            entries: vec![EntryAdapter { timestamp: Some(ts), line: line.into() }],
            hash: 0,
        }],
    };
    let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap();
    b.post("/loki/api/v1/push", &[("Content-Type", "application/x-protobuf")], &body)
}

fn metric(b: &Balsa, reason: &str) -> u64 {
    let (_, text) = b.get("/metrics", &[], &[]);
    let prefix = format!("loki_discarded_samples_total{{reason=\"{reason}\",tenant=\"fake\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |v| v.trim().parse().unwrap_or(0))
}

#[test]
fn each_rule_answers_with_lokis_code_and_reason() {
    let b = Balsa::with_config("limits_config:\n  discover_service_name: []\ndistributor:\n  max_recv_msg_size: 1MB\n");
    let now = now_ns();
    let ok = json!([[now.to_string(), "fine"]]);

    let (s, body) = push(&b, json!({}), ok.clone());
    assert_eq!((s, body.as_str()), (400, "error at least one label pair is required per stream\n"));
    let many: serde_json::Map<String, Value> = (0..16).map(|i| (format!("l{i:02}"), json!("v"))).collect();
    let (s, body) = push(&b, Value::Object(many), ok.clone());
    assert_eq!(s, 400);
    assert!(body.ends_with("has 16 label names; limit 15\n"), "{body}");
    let (s, body) = push(&b, json!({"n".repeat(1025): "v"}), ok.clone());
    assert_eq!(s, 400);
    assert!(body.contains("has label name too long"), "{body}");
    let (s, body) = push(&b, json!({"a": "v".repeat(2049)}), ok.clone());
    assert_eq!(s, 400);
    assert!(body.contains("has label value too long"), "{body}");
    let (s, body) = pb_push(&b, r#"{a="1", a="2"}"#, "x");
    assert_eq!((s, body.as_str()), (400, "stream '{a=\"1\", a=\"2\"}' has duplicate label name: 'a'\n"));
    let (s, body) = pb_push(&b, r#"{a=}"#, "x");
    assert_eq!(s, 400);
    assert!(body.starts_with("couldn't parse labels: parse error at line 1, col 4"), "{body}");
    let (s, body) = push(&b, json!({"a": "1"}), json!([[now.to_string(), "x".repeat(256 * 1024 + 1)]]));
    assert_eq!(
        (s, body.as_str()),
        (400, "max entry size '262144' bytes exceeded for stream '{a=\"1\"}' while adding an entry with length '262145' bytes\n")
    );
    let (s, body) = push(&b, json!({"a": "1"}), json!([[(now - 8 * 24 * H).to_string(), "old"]]));
    assert_eq!(s, 400);
    assert!(body.starts_with("entry for stream '{a=\"1\"}' has timestamp too old: "), "{body}");
    let (s, body) = push(&b, json!({"a": "1"}), json!([[(now + H).to_string(), "new"]]));
    assert_eq!(s, 400);
    assert!(body.starts_with("entry for stream '{a=\"1\"}' has timestamp too new: "), "{body}");
    // Out of order within the 1 h window is accepted; beyond it, refused.
    let (s, _) = push(&b, json!({"w": "1"}), json!([[now.to_string(), "newest"], [(now - H / 2).to_string(), "half an hour older"]]));
    assert_eq!(s, 204);
    let (s, body) = push(&b, json!({"w": "1"}), json!([[(now - 2 * H).to_string(), "too far behind"]]));
    assert_eq!(s, 400);
    assert!(body.contains("entry too far behind") && body.ends_with("user 'fake', total ignored: 1 out of 1 for stream: {w=\"1\"}\n"), "{body}");
    // Partial success: the valid entry is stored, the answer lists the rest.
    let (s, body) = push(&b, json!({"p": "1"}), json!([[now.to_string(), "kept"], [(now - 8 * 24 * H).to_string(), "old"]]));
    assert_eq!(s, 400);
    assert!(body.contains("timestamp too old"), "{body}");
    assert_eq!(b.query_lines(None, r#"{p="1"}"#, 1, 10), vec![(now, "kept".to_string())]);
    // No streams: 422. Too large: 413. Unknown encoding: 400.
    let (s, body) = b.push_json(None, &json!({"streams": []}));
    assert_eq!((s, body.as_str()), (422, "error at least one valid stream is required for ingestion\n"));
    let big = vec![b'x'; 2 << 20];
    let (s, body) = b.post("/loki/api/v1/push", &[("Content-Type", "application/json")], &big);
    assert_eq!(s, 413);
    assert!(body.starts_with("request body too large"), "{body}");
    let (s, body) = b.post("/loki/api/v1/push", &[("Content-Type", "application/json"), ("Content-Encoding", "br")], b"{}");
    assert_eq!((s, body.as_str()), (400, "Content-Encoding \"br\" not supported\n"));
    // Every refusal is counted by reason.
    for r in ["missing_labels", "max_label_names_per_series", "label_name_too_long", "label_value_too_long", "duplicate_label_names", "line_too_long", "greater_than_max_sample_age", "too_far_in_future", "too_far_behind"] {
        assert!(metric(&b, r) >= 1, "no discarded samples counted for {r}");
    }
}

/// A small deterministic generator (xorshift), so failures replay.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn malformed_bodies_get_4xx_and_never_hurt() {
    let b = Balsa::start(&[]);
    let t = now_ns();
    let good = json!({"streams": [{"stream": {"job": "keep"}, "values": [[t.to_string(), "before the storm"]]}]});
    assert_eq!(b.push_json(None, &good).0, 204);
    let json_body = json!({"streams": [{"stream": {"job": "f"}, "values": [[t.to_string(), "x", {"k": "v"}]]}]}).to_string();
    let pb = {
        use loki_api::logproto::{EntryAdapter, PushRequest, StreamAdapter};
        use prost013::Message;
        PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{job="f"}"#.into(),
                entries: vec![EntryAdapter { timestamp: None, line: "y".into() }],
                hash: 0,
            }],
        }
        .encode_to_vec()
    };
    let mut rng = Rng(0x5eed_ba15a);
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..300 {
        let (ct, enc, mut body): (&str, Option<&str>, Vec<u8>) = match i % 5 {
            0 => ("application/json", None, json_body.clone().into_bytes()),
            1 => ("application/x-protobuf", None, snap::raw::Encoder::new().compress_vec(&pb).unwrap()),
            2 => ("application/x-protobuf", None, pb.clone()),
            3 => ("application/json", Some("gzip"), {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(json_body.as_bytes()).unwrap();
                e.finish().unwrap()
            }),
            _ => ("application/json", None, (0..rng.below(200)).map(|_| rng.next() as u8).collect()),
        };
        // Mutate: flip bytes, truncate, or splice garbage.
        for _ in 0..1 + rng.below(4) {
            if body.is_empty() {
                break;
            }
            let p = rng.below(body.len());
            match rng.below(3) {
                0 => body[p] ^= 1 << rng.below(8),
                1 => body.truncate(p),
                _ => body.insert(p, rng.next() as u8),
            }
        }
        let mut h = vec![("Content-Type", ct)];
        if let Some(e) = enc {
            h.push(("Content-Encoding", e));
        }
        let (s, body) = b.post("/loki/api/v1/push", &h, &body);
        assert!(s == 204 || (400..500).contains(&s), "case {i}: status {s}: {body}");
        *statuses.entry(s).or_insert(0) += 1;
    }
    assert!(b.clone_alive(), "the process survived");
    assert!(statuses.keys().any(|s| *s == 400), "mutations were refused: {statuses:?}");
    assert_eq!(b.query_lines(None, r#"{job="keep"}"#, 1, 10), vec![(t, "before the storm".to_string())]);
}

trait Alive {
    fn clone_alive(&self) -> bool;
}
impl Alive for Balsa {
    fn clone_alive(&self) -> bool {
        self.get("/ready", &[], &[]).0 == 200
    }
}
