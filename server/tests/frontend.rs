//! The query-frontend: answers are identical with and without splitting,
//! and repeated (cached) answers too.

mod common;

use common::{now_ns, Balsa};
use serde_json::{json, Value};

#[test]
fn split_and_cached_answers_equal_unsplit_ones() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("o.yaml");
    std::fs::write(&o, "overrides:\n  whole:\n    split_queries_by_interval: 0\n").unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, format!("auth_enabled: true\nruntime_config:\n  file: {}\n", o.display())).unwrap();
    let b = Balsa::start(&[&format!("--config.file={}", cfg.display())]);
    let now = now_ns();
    let start = now - 5 * 3_600_000_000_000;
    let levels = ["info", "warn", "error", "info", "debug"];
    // Five hours of lines, every 20 s, in four streams.
    let streams: Vec<Value> = (0..4)
        .map(|s| {
            let values: Vec<Value> = (0..900)
                .map(|i: i64| json!([(start + i * 20_000_000_000 + s).to_string(), format!("level={} n={i}", levels[(i as usize + s as usize) % 5])]))
                .collect();
            json!({"stream": {"app": "f", "pod": format!("p{s}")}, "values": values})
        })
        .collect();
    for tenant in ["split", "whole"] {
        for s in &streams {
            let (st, body) = b.push_json(Some(tenant), &json!({"streams": [s]}));
            assert_eq!(st, 204, "{body}");
        }
    }
    let (qs, qe) = ((start / 1_000_000_000).to_string(), (now / 1_000_000_000).to_string());
    let ask = |tenant: &str, path: &str, q: &[(&str, &str)]| -> Value {
        let mut all: Vec<(&str, &str)> = vec![("start", &qs), ("end", &qe)];
        all.extend_from_slice(q);
        let v = b.get_json(path, &all, &[("X-Scope-OrgID", tenant)]);
        v["data"]["result"].clone()
    };
    let queries: [&[(&str, &str)]; 7] = [
        &[("query", r#"sum by (level) (count_over_time({app="f"} | logfmt [5m]))"#), ("step", "60")],
        &[("query", r#"topk(2, rate({app="f"}[10m])) / 2"#), ("step", "300")],
        &[("query", r#"{app="f"} |= "error""#), ("limit", "100")],
        &[("query", r#"{app="f"}"#), ("limit", "333"), ("direction", "forward")],
        &[("query", r#"{app="f", pod="p1"} | logfmt | level="warn""#), ("limit", "5000")],
        &[("query", r#"{app="f"} |= "info""#), ("interval", "7m1s"), ("limit", "30"), ("direction", "forward")],
        &[("query", r#"{app="f"}"#), ("interval", "300.5"), ("limit", "40")],
    ];
    for q in queries {
        let whole = ask("whole", "/loki/api/v1/query_range", q);
        let split = ask("split", "/loki/api/v1/query_range", q);
        assert!(!whole.as_array().unwrap().is_empty(), "{q:?} found data");
        assert_eq!(sorted(&split), sorted(&whole), "{q:?}");
        assert_eq!(sorted(&ask("split", "/loki/api/v1/query_range", q)), sorted(&whole), "{q:?} again (cache)");
    }
    // `interval`: the first line of the range, then each next one at least
    // that far from the last one kept, up to the limit, across streams.
    for (q, gap, forward) in [(queries[5], 421_000_000_000i64, true), (queries[6], 300_500_000_000, false)] {
        let all: Vec<(&str, &str)> = q.iter().filter(|(k, _)| *k != "interval" && *k != "limit").copied().chain([("limit", "5000")]).collect();
        let mut every: Vec<i64> = timestamps(&ask("whole", "/loki/api/v1/query_range", &all));
        let mut want = Vec::new();
        if !forward {
            every.reverse();
        }
        for t in every {
            if want.last().is_none_or(|l: &i64| if forward { t >= l + gap } else { t <= l - gap }) && want.len() < q[2].1.parse().unwrap() {
                want.push(t);
            }
        }
        let mut got = timestamps(&ask("split", "/loki/api/v1/query_range", q));
        if !forward {
            got.reverse();
        }
        assert_eq!(got, want, "{q:?}");
    }
    // The stats tell the pieces and the cache hits: the hours older than the
    // out-of-order window come from the cache, the recent ones are read again.
    let params = [("query", queries[0][0].1), ("step", "60"), ("start", qs.as_str()), ("end", qe.as_str())];
    let stats = b.get_json("/loki/api/v1/query_range", &params, &[("X-Scope-OrgID", "split")])["data"]["stats"].clone();
    let (pieces, cache) = (&stats["summary"]["splits"], &stats["cache"]["result"]);
    assert!(pieces.as_u64().is_some_and(|n| n >= 5), "{stats}");
    assert_eq!(&cache["entriesRequested"], pieces, "{stats}");
    let found = cache["entriesFound"].as_u64().unwrap_or(0);
    assert!(found >= 2 && found < pieces.as_u64().unwrap_or(0), "{stats}");
    let whole = b.get_json("/loki/api/v1/query_range", &params, &[("X-Scope-OrgID", "whole")])["data"]["stats"].clone();
    assert_eq!(whole["summary"]["splits"], 1, "{whole}");
    assert!(whole["summary"]["totalLinesProcessed"].as_u64().is_some_and(|n| n >= 3600), "every line read: {whole}");
}

/// Results compared as sets of series/streams.
/// Every entry's timestamp, oldest first.
fn timestamps(v: &Value) -> Vec<i64> {
    let mut ts: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter().map(|e| e[0].as_str().unwrap().parse::<i64>().unwrap()))
        .collect();
    ts.sort();
    ts
}

fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v.as_array().unwrap().iter().map(|x| x.to_string()).collect();
    out.sort();
    out
}

/// A query past `query_timeout` answers Loki's 504, also when its time goes
/// to work between awaits (templates over many lines), and the server then
/// answers other queries.
#[test]
fn a_query_past_query_timeout_answers_504() {
    let b = Balsa::with_config("limits_config:\n  query_timeout: 50ms\n");
    let t = now_ns() - 60_000_000_000;
    let streams: Vec<Value> = (0..50)
        .map(|s| {
            let values: Vec<Value> = (0..400).map(|i: i64| json!([(t + i * 1000).to_string(), format!("n={i}")])).collect();
            json!({"stream": {"app": "slow", "pod": format!("p{s}")}, "values": values})
        })
        .collect();
    assert_eq!(b.push_json(None, &json!({"streams": streams})).0, 204);
    let slow = r#"sum(count_over_time({app="slow"} | line_format "{{ range 2000 }}{{ printf \"%05d\" . }}{{ end }}" [5m]))"#;
    let (s, body) = b.get("/loki/api/v1/query", &[("query", slow)], &[]);
    assert_eq!(s, 504, "{body}");
    assert!(body.starts_with("request timed out, decrease the duration of the request"), "{body}");
    let v = b.get_json("/loki/api/v1/query", &[("query", r#"vector(1)"#)], &[]);
    assert_eq!(v["data"]["result"][0]["value"][1], "1");
}
