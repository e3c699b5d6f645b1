//! Loki's HTTP API end to end against the real binary: push in every format
//! clients use, read back with Loki's response shapes, tenants, errors.

mod common;

use std::io::Write;

use common::{now_ns, run_to_exit, Balsa};
use prost013::Message;
use serde_json::{json, Value};

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn snappy(b: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(b).unwrap()
}

/// Protobuf field `tag` of wire type 2 (length-delimited) holding `bytes`.
fn field(tag: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost013::encoding::encode_varint(u64::from(tag << 3 | 2), &mut out);
    prost013::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// A push whose entry carries structured metadata (EntryAdapter field 3 of
/// Loki's push.proto), encoded by hand around the `loki-api` types, which
/// predate that field.
fn push_with_metadata(labels: &str, t: i64, line: &str, md: (&str, &str)) -> Vec<u8> {
    use loki_api::logproto::{EntryAdapter, LabelPair};
    let mut entry = EntryAdapter { timestamp: Some(ts(t)), line: line.into() }.encode_to_vec();
    entry.extend(field(3, &LabelPair { name: md.0.into(), value: md.1.into() }.encode_to_vec()));
    let mut stream = field(1, labels.as_bytes());
    stream.extend(field(2, &entry));
    field(1, &stream)
}

fn ts(ns: i64) -> loki_api::prost_types::Timestamp {
    loki_api::prost_types::Timestamp { seconds: ns.div_euclid(1_000_000_000), nanos: ns.rem_euclid(1_000_000_000) as i32 }
}

/// A protobuf push encoded by the `loki-api` crate (as `tracing-loki` does).
fn loki_api_push(labels: &str, entries: &[(i64, &str)]) -> Vec<u8> {
    use loki_api::logproto::{EntryAdapter, PushRequest, StreamAdapter};
    PushRequest {
        streams: vec![StreamAdapter {
            labels: labels.into(),
            entries: entries.iter().map(|(t, l)| EntryAdapter { timestamp: Some(ts(*t)), line: l.to_string() }).collect(),
            hash: 0,
        }],
    }
    .encode_to_vec()
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().map(String::as_str).collect()
}

#[test]
fn every_client_format_reads_back_with_lokis_response_shapes() {
    let b = Balsa::start(&[]);
    let t0 = now_ns() - 60_000_000_000;
    // JSON: one stream split over two objects, unknown keys, metadata.
    let body = json!({"streams": [
        {"stream": {"app": "shop", "env": "prod"}, "values": [[(t0).to_string(), "GET /cart 200"]], "unknown": 1},
        {"stream": {"env": "prod", "app": "shop"}, "values": [[(t0 + 1).to_string(), "GET /pay 500 error", {"trace_id": "abc"}]]}
    ], "extra": true});
    assert_eq!(b.push_json(None, &body), (204, String::new()));
    // gzip-compressed JSON.
    let body = json!({"streams": [{"stream": {"app": "shop", "env": "prod"}, "values": [[(t0 + 2).to_string(), "gzip line"]]}]});
    let (s, txt) = b.post(
        "/loki/api/v1/push",
        &[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
        &gzip(body.to_string().as_bytes()),
    );
    assert_eq!(s, 204, "{txt}");
    // protobuf + raw snappy, with and without Content-Encoding: snappy.
    let pb = snappy(&loki_api_push(r#"{app="billing"}"#, &[(t0 + 3, "pb line one"), (t0 + 4, "pb line two error")]));
    assert_eq!(b.post("/loki/api/v1/push", &[("Content-Type", "application/x-protobuf")], &pb).0, 204);
    let pb = snappy(&loki_api_push(r#"{app="billing"}"#, &[(t0 + 5, "pb line three")]));
    let h = [("Content-Type", "application/x-protobuf"), ("Content-Encoding", "snappy")];
    assert_eq!(b.post("/loki/api/v1/push", &h, &pb).0, 204);
    // protobuf with structured metadata.
    let md = push_with_metadata(r#"{app="billing"}"#, t0 + 6, "pb with metadata", ("user", "u1"));
    assert_eq!(b.post("/loki/api/v1/push", &h, &snappy(&md)).0, 204);

    // query_range: Loki's full shape.
    let start = (t0 - 1).to_string();
    let v = b.get_json(
        "/loki/api/v1/query_range",
        &[("query", r#"{app="shop"}"#), ("start", &start), ("direction", "forward")],
        &[],
    );
    assert_eq!(keys(&v), ["status", "data"]);
    assert_eq!(v["status"], "success");
    assert_eq!(keys(&v["data"]), ["resultType", "result", "stats"]);
    assert_eq!(v["data"]["resultType"], "streams");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2, "metadata splits the stream without categorize-labels: {result:?}");
    assert_eq!(result[0]["stream"], json!({"app": "shop", "env": "prod", "service_name": "shop"}));
    assert_eq!(result[0]["values"], json!([[t0.to_string(), "GET /cart 200"], [(t0 + 2).to_string(), "gzip line"]]));
    assert_eq!(result[1]["stream"], json!({"app": "shop", "env": "prod", "service_name": "shop", "trace_id": "abc"}));
    let stats = &v["data"]["stats"];
    assert_eq!(keys(stats), ["summary", "querier", "ingester", "cache", "index"]);
    for k in ["bytesProcessedPerSecond", "linesProcessedPerSecond", "totalBytesProcessed", "totalLinesProcessed", "execTime", "queueTime", "subqueries", "totalEntriesReturned"] {
        assert!(stats["summary"][k].is_number(), "summary.{k}");
    }
    assert_eq!(stats["summary"]["totalEntriesReturned"], 3);
    let caches = ["chunk", "index", "result", "statsResult", "volumeResult", "seriesResult", "labelResult", "instantMetricResult"];
    assert_eq!(keys(&stats["cache"]), [&caches[..], &["logResult", "taskResult"]].concat(), "Loki 3's cache sections");

    // categorize-labels: metadata per entry, one stream.
    let v = b.get_json(
        "/loki/api/v1/query_range",
        &[("query", r#"{app="billing"} |= "metadata""#), ("start", &start)],
        &[("X-Loki-Response-Encoding-Flags", "categorize-labels")],
    );
    assert_eq!(v["data"]["encodingFlags"], json!(["categorize-labels"]));
    assert_eq!(
        v["data"]["result"][0]["values"],
        json!([[(t0 + 6).to_string(), "pb with metadata", {"structuredMetadata": {"user": "u1"}}]])
    );

    // Line filters, chained; limit and direction.
    let lines = b.query_lines(None, r#"{app=~"shop|billing"} |= "error" != "GET""#, 1, 100);
    assert_eq!(lines, vec![(t0 + 4, "pb line two error".to_string())]);
    let lines = b.query_lines(None, r#"{app="billing"} |~ "line (one|three)""#, 1, 100);
    assert_eq!(lines.len(), 2);
    let v = b.get_json("/loki/api/v1/query_range", &[("query", r#"{app="billing"}"#), ("start", &start), ("limit", "2")], &[]);
    let mut got: Vec<String> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter().map(|e| e[0].as_str().unwrap().to_string()))
        .collect();
    got.sort();
    assert_eq!(got, vec![(t0 + 5).to_string(), (t0 + 6).to_string()], "limit 2, backward: the newest two");
    // start/end in seconds, float seconds and RFC3339 select the same window.
    let secs = ((t0 + 4) / 1_000_000_000 + 1).to_string();
    let (s, body) = b.get("/loki/api/v1/query_range", &[("query", r#"{app="billing"}"#), ("start", "2000-01-01T00:00:00Z")], &[]);
    assert_eq!(s, 400, "longer than max_query_length (721h)");
    assert!(body.starts_with("the query time range exceeds the limit (query length: "), "{body}");
    let rfc = balsa_logql::time::format_rfc3339(t0 - 3_600_000_000_000);
    let rfc = rfc.as_str();
    let v = b.get_json("/loki/api/v1/query_range", &[("query", r#"{app="billing"}"#), ("start", rfc), ("end", &secs)], &[]);
    let n = v["data"]["result"][0]["values"].as_array().map_or(0, |a| a.len());
    assert!((2..=4).contains(&n), "entries before the end second: {n}");
    let v = b.get_json("/loki/api/v1/query_range", &[("query", r#"{app="billing"}"#), ("since", "10s")], &[]);
    assert_eq!(v["data"]["result"], json!([]), "since=10s excludes entries from a minute ago");

    // labels, label values, series.
    let v = b.get_json("/loki/api/v1/labels", &[("start", &start)], &[]);
    assert_eq!(v, json!({"status": "success", "data": ["app", "env", "service_name"]}));
    let v = b.get_json("/loki/api/v1/labels", &[("start", &start), ("query", r#"{app="billing"}"#)], &[]);
    assert_eq!(v, json!({"status": "success", "data": ["app", "service_name"]}), "only the names of the selected streams");
    let v = b.get_json("/loki/api/v1/label/app/values", &[("start", &start)], &[]);
    assert_eq!(v, json!({"status": "success", "data": ["billing", "shop"]}));
    let v = b.get_json("/loki/api/v1/label/nope/values", &[("start", &start)], &[]);
    assert_eq!(v, json!({"status": "success"}), "Loki omits empty data");
    let v = b.get_json("/loki/api/v1/series", &[("match[]", r#"{app="shop"}"#), ("start", &start)], &[]);
    assert_eq!(v, json!({"status": "success", "data": [{"app": "shop", "env": "prod", "service_name": "shop"}]}));
}

#[test]
fn query_errors_are_lokis() {
    let b = Balsa::start(&[]);
    let (s, body) = b.get("/loki/api/v1/query_range", &[("query", r#"{app="x""#)], &[]);
    assert_eq!((s, body.as_str()), (400, "parse error at line 1, col 9: syntax error: unexpected $end, expecting } or ,"));
    let (s, body) = b.get("/loki/api/v1/query_range", &[("query", r#"{app=~".*"}"#)], &[]);
    assert_eq!(s, 400);
    assert!(body.starts_with("parse error : queries require at least one regexp or equality matcher"), "{body}");
    let (s, body) = b.get("/loki/api/v1/query_range", &[("query", r#"{app="x"}"#), ("limit", "5001")], &[]);
    assert_eq!((s, body.as_str()), (400, "max entries limit per query exceeded, limit > max_entries_limit_per_query (5001 > 5000)"));
    let (s, body) = b.get("/loki/api/v1/query_range", &[("query", r#"{app="x"}"#), ("direction", "sideways")], &[]);
    assert_eq!((s, body.as_str()), (400, "invalid direction 'sideways'"));
    // A range at the end of time is split without wrapping around.
    let v = b.get_json("/loki/api/v1/query_range", &[("query", r#"{app="x"}"#), ("start", "9223365000000000000"), ("end", "9223372036854775807")], &[]);
    assert_eq!(v["data"]["result"], json!([]), "{v}");
    let (s, body) = b.get("/loki/api/v1/query_range", &[("query", r#"{app="x"}"#), ("interval", "-1")], &[]);
    assert_eq!((s, body.as_str()), (400, "interval must be >= 0"));
    let (s, body) = b.get("/loki/api/v1/query_range", &[("query", r#"{app="x"}"#), ("interval", "often")], &[]);
    assert_eq!((s, body.as_str()), (400, "cannot parse \"often\" to a valid duration"));
    let (s, body) = b.get("/loki/api/v1/query", &[("query", r#"{app="x"}"#)], &[]);
    assert_eq!(s, 400);
    assert!(body.starts_with("log queries are not supported as an instant query type"), "{body}");
    let v = b.get_json("/loki/api/v1/format_query", &[("query", r#"rate( {app = "x"}|="y" [1m])"#)], &[]);
    assert_eq!(v, json!({"status": "success", "data": r#"rate({app="x"} |= "y"[1m])"#}));
    let v = b.get_json("/loki/api/v1/format_query", &[("query", r#"sum(rate({app="x"} | logfmt | status>=400 [5m])) by (path)"#)], &[]);
    assert_eq!(v, json!({"status": "success", "data": r#"sum by (path)(rate({app="x"} | logfmt | status>=400[5m]))"#}));
    let (s, body) = b.get("/loki/api/v1/format_query", &[("query", r#"{app="x""#)], &[]);
    assert_eq!(s, 400);
    let v: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(v["status"], "invalid-query");
    assert!(v["error"].as_str().is_some_and(|e| e.starts_with("parse error at line 1")), "{v}");
    // A query nested past the parser's bound is refused; one just within it runs.
    let deep = format!("{}vector(1){}", "(".repeat(50_000), ")".repeat(50_000));
    let (s, body) = b.post("/loki/api/v1/query", &[("Content-Type", "application/x-www-form-urlencoded")], format!("query={deep}").as_bytes());
    assert_eq!((s, body.as_str()), (400, "parse error : query nests more than 128 levels deep"));
    let sums = format!("{}vector(1){}", "sum(".repeat(100), ")".repeat(100));
    let chain = vec!["vector(1)"; 120].join(" + ");
    for (q, want) in [(sums, "1"), (chain, "120")] {
        let v = b.get_json("/loki/api/v1/query", &[("query", &q)], &[]);
        assert_eq!(v["data"]["result"][0]["value"][1], want, "{v}");
    }
    let v = b.get_json("/loki/api/v1/status/buildinfo", &[], &[]);
    assert_eq!(keys(&v), ["version", "revision", "branch", "buildUser", "buildDate", "goVersion"]);
}

/// Loki 3 still serves the `/api/prom/…` query endpoints in their old shapes.
#[test]
fn legacy_endpoints_answer_in_the_old_shapes() {
    let b = Balsa::start(&[]);
    let t = now_ns() - 10_000_000_000;
    let body = json!({"streams": [
        {"stream": {"app": "old", "env": "a"}, "values": [[t.to_string(), "GET /x 200"], [(t + 1).to_string(), "GET /y 500"]]},
        {"stream": {"app": "old", "env": "b"}, "values": [[(t + 2).to_string(), "POST /z 500"]]},
    ]});
    assert_eq!(b.push_json(None, &body).0, 204);
    let v = b.get_json("/api/prom/query", &[("query", "{app=\"old\"} # a comment"), ("regexp", " 5\\d\\d$"), ("limit", "10")], &[]);
    let streams = v["streams"].as_array().expect("legacy streams");
    let mut got: Vec<(String, String)> = Vec::new();
    for s in streams {
        for e in s["entries"].as_array().unwrap() {
            assert!(e["ts"].as_str().is_some_and(|ts| ts.ends_with('Z') && ts.contains('T')), "{e}");
            got.push((s["labels"].as_str().unwrap().to_string(), e["line"].as_str().unwrap().to_string()));
        }
    }
    got.sort();
    let (a, b_) = (r#"{app="old", env="a", service_name="old"}"#, r#"{app="old", env="b", service_name="old"}"#);
    assert_eq!(got, [(a.into(), "GET /y 500".into()), (b_.into(), "POST /z 500".into())]);
    assert!(v["stats"]["summary"]["totalLinesProcessed"].as_u64().is_some(), "{v}");
    let (s, body) = b.get("/api/prom/query", &[("query", r#"count_over_time({app="old"}[1m])"#)], &[]);
    assert_eq!((s, body.as_str()), (400, "legacy endpoints only support streams result type"));
    assert_eq!(b.get_json("/api/prom/label", &[], &[]), json!({"values": ["app", "env", "service_name"]}));
    assert_eq!(b.get_json("/api/prom/label/env/values", &[], &[]), json!({"values": ["a", "b"]}));
    assert_eq!(b.get_json("/api/prom/label/nothing/values", &[], &[]), json!({}));
    let v = b.get_json("/api/prom/series", &[("match[]", r#"{env="b"}"#)], &[]);
    assert_eq!(v, json!({"status": "success", "data": [{"app": "old", "env": "b", "service_name": "old"}]}));
}

#[test]
fn tenants_are_isolated_and_need_an_org_id() {
    let b = Balsa::start(&["--auth.enabled=true"]);
    let t = now_ns() - 1_000_000_000;
    let push = |tenant: &str, line: &str| {
        b.push_json(Some(tenant), &json!({"streams": [{"stream": {"job": "same"}, "values": [[t.to_string(), line]]}]}))
    };
    let (s, body) = b.push_json(None, &json!({"streams": []}));
    assert_eq!(s, 401);
    assert!(body.starts_with("no org id\n") && body.contains("X-Scope-OrgID"), "{body}");
    assert_eq!(b.get("/loki/api/v1/labels", &[], &[]).0, 401);
    assert_eq!(push("team-a", "line of a").0, 204);
    assert_eq!(push("team-b", "line of b").0, 204);
    assert_eq!(b.query_lines(Some("team-a"), r#"{job="same"}"#, 1, 100), vec![(t, "line of a".to_string())]);
    assert_eq!(b.query_lines(Some("team-b"), r#"{job="same"}"#, 1, 100), vec![(t, "line of b".to_string())]);
    assert_eq!(b.query_lines(Some("team-c"), r#"{job="same"}"#, 1, 100), vec![]);
    let v = b.get_json("/loki/api/v1/series", &[("match[]", r#"{job="same"}"#)], &[("X-Scope-OrgID", "team-c")]);
    assert_eq!(v["data"], json!([]));
    let v = b.get_json("/loki/api/v1/labels", &[], &[("X-Scope-OrgID", "team-c")]);
    assert_eq!(v, json!({"status": "success"}));
    let (s, body) = push("../etc", "x");
    assert_eq!((s, body.as_str()), (400, "tenant ID '../etc' contains unsupported character '/'\n"));
    // Grafana's Logs Drilldown asks for the tenant's published limits first.
    assert_eq!(b.get("/loki/api/v1/drilldown-limits", &[], &[]).0, 401);
    let v = b.get_json("/loki/api/v1/drilldown-limits", &[], &[("X-Scope-OrgID", "team-a")]);
    assert_eq!(v["pattern_ingester_enabled"], true);
    assert_eq!(v["limits"]["max_entries_limit_per_query"], 5000);
    assert_eq!(v["limits"]["max_query_length"], "30d1h", "durations as Loki writes them");
    assert!(v["limits"].get("ingestion_rate_mb").is_none(), "only the published limits: {v}");
}

#[test]
fn invalid_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "limits_config:\n  max_line_size: lots\n").unwrap();
    let (code, err) = run_to_exit(&["-config.file", cfg.to_str().unwrap()], dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("max_line_size") && err.contains("'lots'"), "{err}");
    let (code, err) = run_to_exit(&["--ring.partitions=0"], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("ring.partitions"), "{err}");
    let (code, err) = run_to_exit(&["--no-such-flag"], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("--no-such-flag"), "{err}");
}

#[test]
fn metric_queries_answer_with_prometheus_shapes() {
    let b = Balsa::start(&[]);
    // Grafana's health check.
    let v = b.get_json("/loki/api/v1/query", &[("query", "vector(1)+vector(1)"), ("time", "1700000000")], &[]);
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"], json!([{"metric": {}, "value": [1700000000, "2"]}]));
    let (s, body) = b.post(
        "/loki/api/v1/query",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"query=vector%281%29%2Bvector%281%29&time=1700000000",
    );
    assert_eq!(s, 200, "POST with a form body, as Grafana sends: {body}");
    assert!(body.contains(r#""value":[1700000000,"2"]"#), "{body}");
    let v = b.get_json("/loki/api/v1/query", &[("query", "1 + 2 * 3"), ("time", "1700000000")], &[]);
    assert_eq!(v["data"]["resultType"], "scalar");
    assert_eq!(v["data"]["result"], json!([1700000000, "7"]));

    let t0 = (now_ns() / 1_000_000_000 - 120) * 1_000_000_000;
    let values: Vec<Value> = (0..6)
        .map(|i| json!([(t0 + i * 10_000_000_000).to_string(), format!("level={} took={}ms", if i % 2 == 0 { "info" } else { "error" }, i * 100)]))
        .collect();
    assert_eq!(b.push_json(None, &json!({"streams": [{"stream": {"app": "m"}, "values": values}]})).0, 204);
    let end = ((t0 / 1_000_000_000) + 60).to_string();
    let start = (t0 / 1_000_000_000).to_string();
    let v = b.get_json(
        "/loki/api/v1/query_range",
        &[("query", r#"sum by (level) (count_over_time({app="m"} | logfmt [1m]))"#), ("start", &start), ("end", &end), ("step", "30")],
        &[],
    );
    assert_eq!(v["data"]["resultType"], "matrix");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2);
    assert_eq!(result[0]["metric"], json!({"level": "error"}));
    // Windows (t-60s, t]: at start+60s all six entries (t0..t0+50s) are in.
    let last = result[0]["values"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last, json!([t0 / 1_000_000_000 + 60, "3"]));
    let v = b.get_json(
        "/loki/api/v1/query",
        &[("query", r#"max_over_time({app="m"} | logfmt | unwrap duration(took) [5m])"#), ("time", &end)],
        &[],
    );
    assert_eq!(v["data"]["result"][0]["value"][1], "0.5");
    // A log query with a parser: streams carry the extracted labels.
    let v = b.get_json(
        "/loki/api/v1/query_range",
        &[("query", r#"{app="m"} | logfmt | level="error" | line_format "{{.took}}""#), ("start", &start), ("end", &end)],
        &[],
    );
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 3, "one stream per label set after the pipeline");
    assert_eq!(v["data"]["result"][0]["stream"], json!({"app": "m", "level": "error", "service_name": "m", "took": "100ms"}));
    assert_eq!(v["data"]["result"][0]["values"][0][1], "100ms");
    // Categorized: stream labels apart from what the parser extracted.
    let v = b.get_json(
        "/loki/api/v1/query_range",
        &[("query", r#"{app="m"} | logfmt | level="error""#), ("start", &start), ("end", &end), ("direction", "forward")],
        &[("X-Loki-Response-Encoding-Flags", "categorize-labels")],
    );
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1, "one stream");
    assert_eq!(v["data"]["result"][0]["stream"], json!({"app": "m", "service_name": "m"}));
    assert_eq!(v["data"]["result"][0]["values"][0][2], json!({"parsed": {"level": "error", "took": "100ms"}}));
    // A pipeline error fails a metric query with Loki's hint.
    let (s, body) = b.get("/loki/api/v1/query", &[("query", r#"count_over_time({app="m"} | logfmt | level > 1 [5m])"#), ("time", &end)], &[]);
    assert_eq!(s, 400);
    assert!(body.contains("LabelFilterErr") && body.contains("__error__"), "{body}");
}

#[test]
fn index_stats_volumes_and_detected_labels() {
    let b = Balsa::start(&["--auth.enabled=true"]);
    let t = now_ns() - 60_000_000_000;
    let push = |labels: Value, lines: &[&str]| {
        let values: Vec<Value> = lines.iter().enumerate().map(|(i, l)| json!([(t + i as i64).to_string(), l])).collect();
        assert_eq!(b.push_json(Some("ix"), &json!({"streams": [{"stream": labels, "values": values}]})).0, 204);
    };
    push(json!({"app": "a", "env": "prod"}), &["12345", "67890"]);
    push(json!({"app": "b", "env": "prod"}), &["xyz"]);
    let h = [("X-Scope-OrgID", "ix")];
    let v = b.get_json("/loki/api/v1/index/stats", &[("query", r#"{env="prod"}"#), ("since", "1h")], &h);
    assert_eq!((v["streams"].as_u64(), v["entries"].as_u64(), v["bytes"].as_u64()), (Some(2), Some(3), Some(13)));
    // The index endpoints keep the query limits: here max_query_length (721h).
    for path in ["/loki/api/v1/index/stats", "/loki/api/v1/index/volume", "/loki/api/v1/patterns", "/loki/api/v1/detected_fields"] {
        let (s, body) = b.get(path, &[("query", r#"{env="prod"}"#), ("start", "0")], &h);
        assert_eq!(s, 400, "{path}");
        assert!(body.starts_with("the query time range exceeds the limit"), "{path}: {body}");
    }
    let v = b.get_json("/loki/api/v1/index/volume", &[("query", r#"{env="prod"}"#), ("since", "1h"), ("targetLabels", "app")], &h);
    let r = &v["data"]["result"];
    assert_eq!(r[0]["metric"], json!({"app": "a"}));
    assert_eq!(r[0]["value"][1], "10");
    assert_eq!(r[1]["value"][1], "3");
    let v = b.get_json("/loki/api/v1/index/volume", &[("query", r#"{env="prod"}"#), ("since", "1h"), ("aggregateBy", "labels")], &h);
    assert_eq!(v["data"]["result"], json!([{"metric": {"env": "prod"}, "value": v["data"]["result"][0]["value"].clone()}]));
    assert_eq!(v["data"]["result"][0]["value"][1], "13");
    let v = b.get_json("/loki/api/v1/index/volume_range", &[("query", r#"{app="a"}"#), ("since", "1h"), ("step", "600")], &h);
    assert_eq!(v["data"]["resultType"], "matrix");
    assert_eq!(v["data"]["result"][0]["values"].as_array().unwrap().len(), 1);
    let v = b.get_json("/loki/api/v1/detected_labels", &[("query", r#"{env="prod"}"#), ("since", "1h")], &h);
    let labels = v["detectedLabels"].as_array().unwrap();
    assert!(labels.contains(&json!({"label": "app", "cardinality": 2})), "{v}");
    assert!(labels.contains(&json!({"label": "env", "cardinality": 1})), "{v}");
    push(json!({"app": "f"}), &["status=200 took=5ms msg=ok", "status=500 took=1.5s msg=bad"]);
    let v = b.get_json("/loki/api/v1/detected_fields", &[("query", r#"{app="f"}"#), ("since", "1h")], &h);
    let fields = v["fields"].as_array().unwrap();
    assert!(fields.contains(&json!({"label": "status", "type": "int", "cardinality": 2, "parsers": ["logfmt"]})), "{v}");
    assert!(fields.contains(&json!({"label": "took", "type": "duration", "cardinality": 2, "parsers": ["logfmt"]})), "{v}");
    let v = b.get_json("/loki/api/v1/detected_field/status/values", &[("query", r#"{app="f"}"#), ("since", "1h")], &h);
    assert_eq!(v["values"], json!(["200", "500"]));
    push(json!({"app": "j"}), &[r#"{"user":{"id":7,"name":"ann"},"ok":true}"#]);
    let v = b.get_json("/loki/api/v1/detected_fields", &[("query", r#"{app="j"}"#), ("since", "1h")], &h);
    let fields = v["fields"].as_array().unwrap();
    let want = json!({"label": "user_id", "type": "int", "cardinality": 1, "parsers": ["json"], "jsonPath": ["user", "id"]});
    assert!(fields.contains(&want), "nested JSON fields carry their path: {v}");
    let v = b.get_json("/loki/api/v1/detected_field/took/values", &[("query", r#"{app="f"} | logfmt | status >= 500"#), ("since", "1h")], &h);
    assert_eq!(v["values"], json!(["1.5s"]), "only the lines the query's pipeline keeps");
    let v = b.get_json("/loki/api/v1/detected_fields", &[("query", r#"{app="none"}"#), ("since", "1h")], &h);
    assert_eq!(v, json!({"limit": 1000}), "no fields: omitted, as Loki does");
    let v = b.get_json("/loki/api/v1/patterns", &[("query", r#"{app="f"}"#), ("since", "1h")], &h);
    let mut patterns: Vec<&str> = v["data"].as_array().unwrap().iter().map(|p| p["pattern"].as_str().unwrap()).collect();
    patterns.sort();
    // Drain: the lines agree on half their tokens (the keys), so they form one pattern.
    assert_eq!(patterns, ["status=<_> took=<_> msg=<_>"]);
    assert_eq!(v["data"][0]["samples"][0][1], 2);
}

#[test]
fn detected_levels_are_added_when_discovery_is_on() {
    let b = Balsa::with_config("limits_config:\n  discover_log_levels: true\n");
    let t = now_ns() - 1_000_000_000;
    let values = json!([[t.to_string(), "level=ERR msg=boom"], [(t + 1).to_string(), r#"{"level":"info"}"#], [(t + 2).to_string(), "plain WARNING"], [(t + 3).to_string(), "nothing to see"]]);
    assert_eq!(b.push_json(None, &json!({"streams": [{"stream": {"app": "lv"}, "values": values}]})).0, 204);
    let v = b.get_json("/loki/api/v1/query", &[("query", r#"sum by (detected_level) (count_over_time({app="lv"}[5m]))"#)], &[]);
    let mut got: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["metric"]["detected_level"].as_str().unwrap_or("-").to_string(), r["value"][1].as_str().unwrap().to_string()))
        .collect();
    got.sort();
    let want: Vec<(String, String)> =
        [("error", "1"), ("info", "1"), ("unknown", "1"), ("warn", "1")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(got, want, "{v}");
}
