//! Flushed data lives in object storage: it is read back merged with
//! unflushed data, survives losing everything but the objects, is checked
//! for corruption, and kill -9 during flushes loses and duplicates nothing.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::load::{check_exactly_once, load, stored, History};
use common::{now_ns, wait_for, Balsa};
use serde_json::json;

fn config(dir: &Path, extra: &str) -> String {
    let cfg = dir.join("c.yaml");
    std::fs::write(
        &cfg,
        format!("limits_config:\n  max_entries_limit_per_query: 1000000\n  discover_service_name: []\n{extra}"),
    )
    .unwrap();
    format!("--config.file={}", cfg.display())
}

fn objects(b: &Balsa, prefix: &str) -> Vec<std::path::PathBuf> {
    fn walk(d: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    walk(&b.data_dir().join("objects").join(prefix), &mut out);
    out
}

fn push(b: &Balsa, stream: &str, entries: &[(i64, &str)]) {
    let values: Vec<_> = entries.iter().map(|(t, l)| json!([t.to_string(), l])).collect();
    let (s, body) = b.push_json(None, &json!({"streams": [{"stream": {"job": stream}, "values": values}]}));
    assert_eq!(s, 204, "{body}");
}

/// A search over flushed chunks (which skips blocks that cannot hold its
/// strings) finds exactly the lines the same search finds in memory.
#[test]
fn line_filters_find_the_same_lines_in_chunks_as_in_memory() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = config(cfg_dir.path(), "ingester:\n  flush_check_period: 1h\n");
    let b = Balsa::start(&[&cfg]);
    let t = now_ns() - 600_000_000_000;
    // ~1 MB of lines: several 256 KiB blocks; the rare ones in a few of them.
    let lines: Vec<(i64, String)> = (0..6000)
        .map(|i| {
            let tag = match i {
                100 | 4100 => "rare-a",
                2500 => "rare-b",
                _ => "common",
            };
            (t + i, format!("level=info i={i} msg=\"{tag} request\" pad={}", "p".repeat(120)))
        })
        .collect();
    for chunk in lines.chunks(500) {
        push(&b, "a", &chunk.iter().map(|(t, l)| (*t, l.as_str())).collect::<Vec<_>>());
    }
    let queries = [
        (r#"{job="a"} |= "rare-a""#, 2),
        (r#"{job="a"} |= "rare-a" or "rare-b""#, 3),
        (r#"{job="a"} |= "rare" |= "-b""#, 1),
        (r#"{job="a"} |= "rare-" != "rare-a""#, 1),
        (r#"{job="a"} |~ "rare-(a|b)""#, 3),
        (r#"{job="a"} |~ "(?i)RARE-B""#, 1),
        (r#"{job="a"} |~ "^level=info i=2500 ""#, 1),
        (r#"{job="a"} |~ "rare-a\\b""#, 2),
        (r#"{job="a"} |= "no such string""#, 0),
        (r#"{job="a"} != "common""#, 3),
    ];
    let in_memory: Vec<Vec<(i64, String)>> = queries.iter().map(|(q, _)| b.query_lines(None, q, 1, 10_000)).collect();
    assert_eq!(b.post("/flush", &[], b"").0, 204);
    for ((q, n), want) in queries.iter().zip(&in_memory) {
        assert_eq!(want.len(), *n, "{q} in memory");
        assert_eq!(&b.query_lines(None, q, 1, 10_000), want, "{q} over chunks");
    }
    // The rare string's search decompressed only the blocks holding it.
    let v = b.get_json("/loki/api/v1/query", &[("query", r#"count_over_time({job="a"} |= "rare-b" [1h])"#)], &[]);
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");
    let s = &v["data"]["stats"];
    assert_eq!(s["ingester"]["store"]["chunk"]["headChunkLines"], 0, "all read from chunks: {s}");
    let decompressed = s["querier"]["store"]["chunk"]["decompressedLines"].as_u64().unwrap();
    assert!(decompressed > 0 && decompressed < 3000, "{decompressed} of 6000 lines decompressed");
}

#[test]
fn flushed_and_unflushed_data_read_back_once_in_order_and_from_objects_alone() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = config(cfg_dir.path(), "ingester:\n  flush_check_period: 1h\n");
    let mut b = Balsa::start(&[&cfg]);
    let t = now_ns() - 600_000_000_000;
    let first: Vec<(i64, String)> = (0..500).map(|i| (t + i, format!("old line {i}"))).collect();
    for chunk in first.chunks(100) {
        push(&b, "a", &chunk.iter().map(|(t, l)| (*t, l.as_str())).collect::<Vec<_>>());
    }
    push(&b, "b", &[(t, "b line")]);
    assert_eq!(b.post("/flush", &[], b"").0, 204);
    assert!(!objects(&b, "chunks").is_empty() && !objects(&b, "index").is_empty(), "chunks and index written");
    let (_, metrics) = b.get("/metrics", &[], &[]);
    assert!(metrics.contains("balsa_ingester_chunks_flushed_total 2"), "{metrics}");

    // New data stays in memory; a retried old entry is a duplicate.
    push(&b, "a", &[(t + 1000, "new line"), (t + 5, "old line 5")]);
    let want: Vec<(i64, String)> = first.iter().cloned().chain([(t + 1000, "new line".to_string())]).collect();
    assert_eq!(b.query_lines(None, r#"{job="a"}"#, 1, 10_000), want, "memory and objects merged, once each");
    let v = b.get_json("/loki/api/v1/query", &[("query", r#"count_over_time({job=~"a|b"}[1h])"#)], &[]);
    let counts: Vec<&str> = v["data"]["result"].as_array().unwrap().iter().map(|r| r["value"][1].as_str().unwrap()).collect();
    assert_eq!(counts, vec!["501", "1"]);
    // The stats say where the lines came from: flushed chunks (the querier's
    // store), unflushed entries (the ingesters' head), one duplicate dropped.
    let s = &v["data"]["stats"];
    assert_eq!(s["querier"]["store"]["totalChunksRef"], 2, "{s}");
    assert_eq!(s["querier"]["store"]["chunk"]["decompressedLines"], 501, "{s}");
    assert_eq!(s["ingester"]["store"]["chunk"]["headChunkLines"], 2, "{s}");
    assert_eq!(s["querier"]["store"]["chunk"]["totalDuplicates"], 1, "{s}");
    assert_eq!(s["summary"]["totalLinesProcessed"], 503, "{s}");
    assert_eq!(s["summary"]["totalPostFilterLines"], 502, "{s}");

    // Lose everything but the objects: the flushed lines are all there.
    assert_eq!(b.post("/flush", &[], b"").0, 204);
    b.kill9();
    for entry in std::fs::read_dir(b.data_dir()).unwrap().flatten() {
        if entry.file_name() != "objects" {
            let p = entry.path();
            if p.is_dir() { std::fs::remove_dir_all(&p).unwrap() } else { std::fs::remove_file(&p).unwrap() }
        }
    }
    // An empty directory beside a store that names a cluster is a wiped
    // bootstrap node: refused (a second ring would be split brain) ...
    b.spawn_nowait();
    assert_eq!(b.wait_exit(Duration::from_secs(30)), Some(1), "a wiped bootstrap node must not start");
    assert!(b.logs().contains("split brain"), "{}", b.logs());
    // ... unless the operator says the old cluster is gone for good.
    b.add_args(&["--ring.new-cluster=true".into()]);
    b.spawn();
    assert_eq!(b.query_lines(None, r#"{job="a"}"#, 1, 10_000), want);
    let v = b.get_json("/loki/api/v1/label/job/values", &[("since", "1h")], &[]);
    assert_eq!(v["data"], json!(["a", "b"]));
}

#[test]
fn a_corrupt_chunk_fails_the_query_naming_it() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = config(cfg_dir.path(), "ingester:\n  flush_check_period: 1h\n  chunk_encoding: lz4\n");
    let b = Balsa::start(&[&cfg]);
    let t = now_ns() - 60_000_000_000;
    push(&b, "c", &[(t, "some line"), (t + 1, "another line")]);
    assert_eq!(b.post("/flush", &[], b"").0, 204);
    let chunk = objects(&b, "chunks").pop().expect("a chunk object");
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[8] ^= 0x10;
    std::fs::write(&chunk, bytes).unwrap();
    let (s, body) = b.get("/loki/api/v1/query_range", &[("query", r#"{job="c"}"#)], &[]);
    assert_eq!(s, 500);
    let name = chunk.file_name().unwrap().to_string_lossy().to_string();
    assert!(body.contains("corrupt") && body.contains(&name), "{body}");
    assert_eq!(b.get("/ready", &[], &[]).0, 200, "the process keeps running");
    let (_, metrics) = b.get("/metrics", &[], &[]);
    assert!(metrics.contains("balsa_corrupt_objects_total 1"), "{metrics}");
}

#[test]
fn kill_9_during_flushes_under_load_loses_and_duplicates_nothing() {
    let cfg_dir = tempfile::tempdir().unwrap();
    // Tiny chunks flushed every 50 ms: the kill lands in the middle of flushes.
    let cfg = config(cfg_dir.path(), "ingester:\n  flush_check_period: 50ms\n  chunk_target_raw_size: 4KB\nraft:\n  snapshot_logs_since_last: 50\n");
    let mut b = Balsa::start(&[&cfg]);
    let hist = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let pushes = Arc::new(AtomicUsize::new(0));
    let writers = load(&b, 0, stop.clone(), pushes.clone(), hist.clone());
    wait_for("chunks flushed under load", Duration::from_secs(60), || {
        pushes.load(Ordering::Relaxed) >= 200 && objects(&b, "index").len() >= 3
    });
    b.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer thread");
    }
    b.spawn();
    let h = hist.lock().unwrap();
    check_exactly_once(&stored(&b), &h, "after kill -9 during flushes");
    assert!(objects(&b, "chunks").len() >= 10, "the test flushed while writing");
}

#[test]
fn s3_backend_a_new_node_reads_what_another_flushed() {
    let Some(moto) = common::Moto::start() else { return };
    moto.create_bucket("balsa-e2e");
    let cfg_dir = tempfile::tempdir().unwrap();
    let s3 = format!(
        "storage:\n  backend: s3\n  s3:\n    bucket: balsa-e2e\n    endpoint: {}\n    region: us-east-1\n    access_key_id: test\n    secret_access_key: test\n    force_path_style: true\ningester:\n  flush_check_period: 1h\n",
        moto.endpoint
    );
    let cfg = config(cfg_dir.path(), &s3);
    let mut first = Balsa::start(&[&cfg]);
    let t = now_ns() - 60_000_000_000;
    let lines: Vec<(i64, String)> = (0..300).map(|i| (t + i, format!("s3 line {i}"))).collect();
    push(&first, "s3", &lines.iter().map(|(t, l)| (*t, l.as_str())).collect::<Vec<_>>());
    assert_eq!(first.post("/flush", &[], b"").0, 204);
    first.kill9();
    // Another node, empty disk, same bucket: a new cluster over the old
    // one's objects, said explicitly.
    let second = Balsa::start(&[&cfg, "--ring.new-cluster=true"]);
    assert_eq!(second.query_lines(None, r#"{job="s3"}"#, 1, 10_000), lines);
}

#[test]
fn retention_removes_expired_entries_from_queries_and_storage() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = config(
        cfg_dir.path(),
        "  retention_period: 2h\ningester:\n  flush_check_period: 1h\ncompactor:\n  compaction_interval: 100ms\n  retention_delete_delay: 0s\n",
    );
    let b = Balsa::start(&[&cfg]);
    let now = now_ns();
    push(&b, "old", &[(now - 3 * 3_600_000_000_000, "expired line")]);
    push(&b, "new", &[(now - 600_000_000_000, "kept line")]);
    assert!(b.query_lines(None, r#"{job="old"}"#, 6, 10).is_empty(), "hidden from queries at once");
    assert_eq!(b.post("/flush", &[], b"").0, 204);
    wait_for("the expired chunk to be deleted", Duration::from_secs(30), || objects(&b, "chunks").len() == 1);
    assert!(b.query_lines(None, r#"{job="old"}"#, 6, 10).is_empty());
    assert_eq!(b.query_lines(None, r#"{job="new"}"#, 6, 10).len(), 1);
    let (_, metrics) = b.get("/metrics", &[], &[]);
    assert!(metrics.contains("balsa_compactor_chunks_deleted_total 1"), "{metrics}");
}

/// Regression: the filesystem store hid every key containing `.tmp-` (its
/// temporary files' mark), so a tenant with that in its id lost its
/// flushed data from queries.
#[test]
fn a_tenant_id_like_a_temporary_file_keeps_its_flushed_data() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = config(cfg_dir.path(), "ingester:\n  flush_check_period: 1h\n");
    let b = Balsa::start(&[&cfg, "--auth.enabled=true"]);
    let tenant = "a.tmp-b";
    let t = now_ns() - 60_000_000_000;
    let body = json!({"streams": [{"stream": {"job": "x"}, "values": [[t.to_string(), "kept"]]}]});
    assert_eq!(b.push_json(Some(tenant), &body).0, 204);
    assert_eq!(b.post("/flush", &[], b"").0, 204);
    assert!(objects(&b, "chunks").iter().any(|p| p.to_string_lossy().contains("/a.tmp-b/")), "flushed under the tenant");
    assert_eq!(b.query_lines(Some(tenant), r#"{job="x"}"#, 1, 10), vec![(t, "kept".to_string())]);
}

/// A chunk the index lists but the store lost fails the query naming the
/// object (5xx), never answers 200 with fewer lines.
#[test]
fn a_missing_chunk_fails_the_query_naming_it() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = config(cfg_dir.path(), "ingester:\n  flush_check_period: 1h\n");
    let b = Balsa::start(&[&cfg]);
    let t = now_ns() - 60_000_000_000;
    push(&b, "gone", &[(t, "line 1"), (t + 1, "line 2")]);
    assert_eq!(b.post("/flush", &[], b"").0, 204);
    let chunks = objects(&b, "chunks");
    assert_eq!(chunks.len(), 1);
    std::fs::remove_file(&chunks[0]).unwrap();
    let start = (t - 1).to_string();
    let (status, body) = b.get("/loki/api/v1/query_range", &[("query", r#"{job="gone"}"#), ("start", &start)], &[]);
    assert_eq!(status, 500, "{body}");
    let name = chunks[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(body.contains(&name) && body.contains("missing"), "{body}");
}

/// A client retries a push (Loki clients retry 5xx and 429 with the same
/// body) after part of it was committed and that part was cut and flushed
/// since: the retry must not store those lines again.
#[test]
fn a_retried_push_after_cut_and_flush_stores_nothing_twice() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = config(cfg_dir.path(), "ingester:\n  flush_check_period: 1h\n");
    let b = Balsa::start(&[&cfg]);
    let t = now_ns() - 60_000_000_000;
    let values: Vec<_> = (0..50).map(|i| json!([(t + i * 1000).to_string(), format!("line {i}")])).collect();
    let body = json!({"streams": [{"stream": {"job": "retry", "n": "1"}, "values": values}, {"stream": {"job": "retry", "n": "2"}, "values": values}]});
    assert_eq!(b.push_json(None, &body).0, 204);
    // Other lines reach the stream before the cut, so the chunk holding
    // the first copy differs from anything the retry could produce.
    let later = json!({"streams": [{"stream": {"job": "retry", "n": "1"}, "values": [[(t + 100_000).to_string(), "later line"]]}]});
    assert_eq!(b.push_json(None, &later).0, 204);
    assert_eq!(b.post("/flush", &[], b"").0, 204);
    let chunks = objects(&b, "chunks").len();
    assert_eq!(chunks, 2);
    // The client saw a 5xx (another partition failed) and sends it again.
    assert_eq!(b.push_json(None, &body).0, 204);
    assert_eq!(b.post("/flush", &[], b"").0, 204);
    // Queries drop identical lines when merging, so the count alone would
    // not show a second copy; what is stored must hold each line once.
    assert_eq!(objects(&b, "chunks").len(), chunks, "the retry stored no second copy");
    let v = b.get_json("/loki/api/v1/query", &[("query", r#"sum(count_over_time({job="retry"}[10m]))"#)], &[]);
    assert_eq!(v["data"]["result"][0]["value"][1], "101", "{v}");
    assert_eq!(v["data"]["stats"]["querier"]["store"]["chunk"]["totalDuplicates"], 0, "{}", v["data"]["stats"]);
}

/// A head cut by size is uploaded at once, not at the next flush period:
/// under a steady load the unflushed lines (and every snapshot, which
/// carries them) stay bounded by the heads.
#[test]
fn a_chunk_cut_by_size_is_uploaded_without_waiting_for_the_flush_period() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = config(cfg_dir.path(), "ingester:\n  flush_check_period: 1h\n  chunk_target_raw_size: 1KB\n");
    let b = Balsa::start(&[&cfg]);
    let t = now_ns() - 60_000_000_000;
    let lines: Vec<(i64, String)> = (0..40).map(|i| (t + i, format!("a line of about forty bytes, number {i:03}"))).collect();
    push(&b, "cut", &lines.iter().map(|(t, l)| (*t, l.as_str())).collect::<Vec<_>>());
    wait_for("the cut chunk in the object store", Duration::from_secs(20), || !objects(&b, "chunks").is_empty());
    wait_for("the flush queue to empty", Duration::from_secs(20), || {
        let (_, m) = b.get("/metrics", &[], &[]);
        m.lines().any(|l| l.starts_with("balsa_ingester_chunks_flushed_total ") && !l.ends_with(" 0"))
            && m.lines().filter(|l| l.starts_with("balsa_ingester_flush_queue_length")).all(|l| l.ends_with(" 0"))
    });
    // Flushed but not yet listed by an index segment: still found, once.
    assert!(objects(&b, "index").is_empty(), "index segments wait for the period");
    assert_eq!(b.query_lines(None, r#"{job="cut"}"#, 1, 1000), lines);
}
