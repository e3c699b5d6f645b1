//! Index statistics and volumes: `/loki/api/v1/index/stats`,
//! `/index/volume`, `/index/volume_range`, and `/detected_labels`, as
//! Grafana's Explore and Logs Drilldown ask for them.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::query::ReadRequest;
use super::{ApiError, AppState};
use balsa_logql::labels::LabelSet;
use balsa_logql::parse_selector;
use balsa_logql::time::now_ns;

fn selector(req: &ReadRequest) -> Result<Vec<balsa_logql::Matcher>, ApiError> {
    let q = req.params.get("query").unwrap_or("{}");
    if q.chars().filter(|c| !c.is_whitespace()).collect::<String>() == "{}" {
        return Ok(Vec::new());
    }
    parse_selector(q).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Maps `f` over the entries of every stream matching `matchers` in
/// `[start, end)`, within the tenants' query limits: the time range, a place
/// in the frontend's queue and `query_timeout`.
async fn scan<T: Send>(
    api: &AppState,
    req: &ReadRequest,
    matchers: &[balsa_logql::Matcher],
    (start, end): (i64, i64),
    f: &(dyn Fn(LabelSet, Vec<balsa_storage::Entry>) -> T + Sync),
) -> Result<(Vec<T>, crate::querier::ScanStats), ApiError> {
    let limits = api.query_limits(&req.tenants);
    limits.check_length(start, end)?;
    let read = api.read()?;
    let _slot = read.frontend.admit(&req.tenants)?;
    limits.within_timeout(async { Ok(read.querier.map_matching(&req.tenants, matchers, start, end, f).await?) }).await
}

/// `{"streams":…, "chunks":…, "entries":…, "bytes":…}` of a selector.
pub async fn stats(State(api): State<AppState>, req: ReadRequest) -> Result<Response, ApiError> {
    let matchers = selector(&req)?;
    let (start, end) = req.params.bounds(now_ns())?;
    let count = |_, entries: Vec<balsa_storage::Entry>| (entries.len(), entries.iter().map(|e| e.size() as u64).sum::<u64>());
    let (streams, scan) = scan(&api, &req, &matchers, (start, end), &count).await?;
    let entries: usize = streams.iter().map(|(n, _)| n).sum();
    let bytes: u64 = streams.iter().map(|(_, b)| b).sum();
    let body = json!({"streams": streams.len(), "chunks": scan.chunks + streams.len() as u64, "entries": entries, "bytes": bytes});
    Ok(axum::Json(body).into_response())
}

/// The labels a volume is aggregated by: `targetLabels`, else the names the
/// selector mentions; `aggregateBy=series` keeps whole label sets.
fn volume_key(labels: &LabelSet, targets: &[String], by_series: bool) -> LabelSet {
    if by_series && targets.is_empty() {
        return labels.clone();
    }
    LabelSet::from_pairs(labels.iter().filter(|(k, _)| targets.iter().any(|t| t == k)).cloned().collect())
}

async fn volumes(api: &AppState, req: &ReadRequest, step: Option<i64>) -> Result<(Vec<(LabelSet, BTreeMap<i64, u64>)>, i64, i64), ApiError> {
    let matchers = selector(req)?;
    let (start, end) = req.params.bounds(now_ns())?;
    let mut targets: Vec<String> = req
        .params
        .get("targetLabels")
        .map(|t| t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let by_series = req.params.get("aggregateBy").unwrap_or("series") == "series";
    if targets.is_empty() && !by_series {
        targets = matchers.iter().map(|m| m.name.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    }
    let per_bucket = |labels: LabelSet, entries: Vec<balsa_storage::Entry>| {
        let mut buckets: BTreeMap<i64, u64> = BTreeMap::new();
        for e in entries {
            let bucket = match step {
                Some(s) => end - (end - e.ts).div_euclid(s) * s,
                None => end,
            };
            *buckets.entry(bucket).or_default() += e.size() as u64;
        }
        (volume_key(&labels, &targets, by_series), buckets)
    };
    let (streams, _) = scan(api, req, &matchers, (start, end), &per_bucket).await?;
    let mut by: BTreeMap<LabelSet, BTreeMap<i64, u64>> = BTreeMap::new();
    for (key, buckets) in streams {
        add_counts(by.entry(key).or_default(), buckets);
    }
    let limit: usize = req.params.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
    let mut all: Vec<(LabelSet, BTreeMap<i64, u64>)> = by.into_iter().collect();
    all.sort_by_key(|(_, b)| std::cmp::Reverse(b.values().sum::<u64>()));
    all.truncate(limit);
    Ok((all, start, end))
}

/// Adds per-bucket counts of one stream to a total.
fn add_counts(total: &mut BTreeMap<i64, u64>, counts: BTreeMap<i64, u64>) {
    for (bucket, n) in counts {
        *total.entry(bucket).or_default() += n;
    }
}

fn secs(ns: i64) -> serde_json::Value {
    json!(ns as f64 / 1e9)
}

/// Bytes per series (or per `targetLabels` group) over the range, largest first.
pub async fn volume(State(api): State<AppState>, req: ReadRequest) -> Result<Response, ApiError> {
    let (vols, _, end) = volumes(&api, &req, None).await?;
    let result: Vec<_> = vols
        .into_iter()
        .map(|(l, b)| json!({"metric": l.to_json(), "value": [secs(end), b.values().sum::<u64>().to_string()]}))
        .collect();
    Ok(axum::Json(json!({"status": "success", "data": {"resultType": "vector", "result": result}})).into_response())
}

/// The same per `step` bucket.
pub async fn volume_range(State(api): State<AppState>, req: ReadRequest) -> Result<Response, ApiError> {
    let (start, end) = req.params.bounds(now_ns())?;
    let step = req.params.step(start, end)?;
    let (vols, _, _) = volumes(&api, &req, Some(step)).await?;
    let result: Vec<_> = vols
        .into_iter()
        .map(|(l, b)| {
            let values: Vec<_> = b.into_iter().map(|(t, v)| json!([secs(t), v.to_string()])).collect();
            json!({"metric": l.to_json(), "values": values})
        })
        .collect();
    Ok(axum::Json(json!({"status": "success", "data": {"resultType": "matrix", "result": result}})).into_response())
}

/// `{"detectedLabels": [{"label": …, "cardinality": …}]}` of the matching streams.
pub async fn detected_labels(State(api): State<AppState>, req: ReadRequest) -> Result<Response, ApiError> {
    let matchers = selector(&req)?;
    let (start, end) = req.params.bounds(now_ns())?;
    let series = api.read()?.querier.series(&req.tenants, &[matchers], start, end).await?;
    let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &series {
        for (k, v) in s.iter() {
            values.entry(k.clone()).or_default().insert(v.clone());
        }
    }
    let labels: Vec<_> = values.into_iter().map(|(k, v)| json!({"label": k, "cardinality": v.len()})).collect();
    Ok(axum::Json(json!({"detectedLabels": labels})).into_response())
}

/// Fields parsed out of a sample of the matching lines: the JSON parser for
/// lines that look like JSON, logfmt for the rest (Loki's detection). The
/// query may carry a pipeline (Logs Drilldown sends its active filters):
/// only the lines it keeps, as it leaves them, are sampled.
async fn detect(api: &AppState, req: &ReadRequest) -> Result<BTreeMap<String, Detected>, ApiError> {
    use balsa_logql::{extract, pipeline, Expr};
    let (matchers, stages) = match selector(req) {
        Ok(m) => (m, Vec::new()),
        Err(selector_error) => match balsa_logql::parse_expr(req.params.get("query").unwrap_or("")) {
            Ok(Expr::Log(l)) => (l.matchers, l.stages),
            _ => return Err(selector_error),
        },
    };
    let (start, end) = req.params.bounds(now_ns())?;
    let line_limit: usize = req.params.get("line_limit").and_then(|l| l.parse().ok()).unwrap_or(1000);
    // Each stream's newest `line_limit` lines the pipeline keeps, then the
    // newest of them all.
    let newest = |labels: LabelSet, entries: Vec<balsa_storage::Entry>| {
        let mut kept: Vec<balsa_storage::Entry> = Vec::new();
        for e in entries.into_iter().rev() {
            if kept.len() >= line_limit {
                break;
            }
            let (ts, metadata) = (e.ts, e.metadata.clone());
            if let Some(p) = pipeline::process(&stages, &labels, e.into_parts()) {
                kept.push(balsa_storage::Entry { ts, line: p.line, metadata });
            }
        }
        kept.reverse();
        (labels, kept)
    };
    let (streams, _) = scan(api, req, &matchers, (start, end), &newest).await?;
    let mut fields: BTreeMap<String, Detected> = BTreeMap::new();
    let mut lines: Vec<(&LabelSet, &balsa_storage::Entry)> =
        streams.iter().flat_map(|(l, es)| es.iter().map(move |e| (l, e))).collect();
    lines.sort_by_key(|(_, e)| std::cmp::Reverse(e.ts));
    for (labels, e) in lines.into_iter().take(line_limit) {
        let json = e.line.trim_start().starts_with('{');
        let (parser, found) = if json {
            ("json", extract::json(&e.line).unwrap_or_default())
        } else {
            ("logfmt", extract::logfmt(&e.line, false, false).unwrap_or_default())
        };
        let paths = if json { json_paths(&e.line) } else { BTreeMap::new() };
        for (k, v) in found {
            if labels.get(&k).is_some() {
                continue;
            }
            let slot = fields.entry(k.clone()).or_default();
            slot.values.insert(v);
            slot.parsers.insert(parser);
            if slot.json_path.is_none() {
                slot.json_path = paths.get(&k).cloned();
            }
        }
        for (k, v) in &e.metadata {
            fields.entry(k.clone()).or_default().values.insert(v.clone());
        }
    }
    Ok(fields)
}

/// What detection learnt of one field.
#[derive(Default)]
struct Detected {
    values: BTreeSet<String>,
    parsers: BTreeSet<&'static str>,
    /// The keys leading to it in JSON lines (`["user", "id"]` for `user_id`).
    json_path: Option<Vec<String>>,
}

/// The label each leaf of a JSON line becomes under `| json`, with its
/// original keys.
fn json_paths(line: &str) -> BTreeMap<String, Vec<String>> {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut BTreeMap<String, Vec<String>>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    path.push(k.clone());
                    walk(x, path, out);
                    path.pop();
                }
            }
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                let keys: Vec<&str> = path.iter().map(String::as_str).collect();
                out.entry(balsa_logql::extract::json_label_name(&keys)).or_insert_with(|| path.clone());
            }
            Value::Array(_) | Value::Null => {}
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        walk(&v, &mut Vec::new(), &mut out);
    }
    out
}

/// Loki's field types: int, float, boolean, duration, bytes, string.
fn field_type(values: &BTreeSet<String>) -> &'static str {
    let all = |f: &dyn Fn(&str) -> bool| !values.is_empty() && values.iter().all(|v| f(v));
    if all(&|v| v.parse::<i64>().is_ok()) {
        "int"
    } else if all(&|v| v.parse::<f64>().is_ok()) {
        "float"
    } else if all(&|v| v == "true" || v == "false") {
        "boolean"
    } else if all(&|v| balsa_logql::units::parse_go_duration(v).is_ok()) {
        "duration"
    } else if all(&|v| v.starts_with(|c: char| c.is_ascii_digit()) && balsa_logql::units::parse_bytes(v).is_ok()) {
        "bytes"
    } else {
        "string"
    }
}

/// `{"fields": [{"label", "type", "cardinality", "parsers", "jsonPath"}], "limit": N}`
/// (`fields` and `jsonPath` omitted when empty, as Loki does).
pub async fn detected_fields(State(api): State<AppState>, req: ReadRequest) -> Result<Response, ApiError> {
    let limit: usize = req.params.get("limit").and_then(|l| l.parse().ok()).unwrap_or(1000);
    let fields = detect(&api, &req).await?;
    let out: Vec<_> = fields
        .iter()
        .take(limit)
        .map(|(k, d)| {
            let parsers: Option<Vec<&str>> = (!d.parsers.is_empty()).then(|| d.parsers.iter().copied().collect());
            let mut f = json!({"label": k, "type": field_type(&d.values), "cardinality": d.values.len(), "parsers": parsers});
            if let Some(path) = &d.json_path {
                f["jsonPath"] = json!(path);
            }
            f
        })
        .collect();
    let mut body = json!({"limit": limit});
    if !out.is_empty() {
        body["fields"] = json!(out);
    }
    Ok(axum::Json(body).into_response())
}

/// `{"values": [...], "limit": N}` of one detected field.
pub async fn detected_field_values(
    State(api): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    req: ReadRequest,
) -> Result<Response, ApiError> {
    let limit: usize = req.params.get("limit").and_then(|l| l.parse().ok()).unwrap_or(1000);
    let fields = detect(&api, &req).await?;
    let values: Vec<&String> = fields.get(&name).map(|d| d.values.iter().take(limit).collect()).unwrap_or_default();
    Ok(axum::Json(json!({"values": values, "limit": limit})).into_response())
}

/// `/loki/api/v1/patterns`: the most frequent line patterns of the
/// matching streams (Drain, see [`crate::patterns`]), with counts per
/// `step`, most frequent first (`limit`, default 50).
pub async fn patterns(State(api): State<AppState>, req: ReadRequest) -> Result<Response, ApiError> {
    let matchers = selector(&req)?;
    let (start, end) = req.params.bounds(now_ns())?;
    let step = req.params.step(start, end)?;
    let mine = |_, entries: Vec<balsa_storage::Entry>| {
        let mut miner = crate::patterns::Miner::default();
        for e in entries {
            miner.add(&e.line, start + (e.ts - start).div_euclid(step) * step);
        }
        miner.patterns()
    };
    let (streams, _) = scan(&api, &req, &matchers, (start, end), &mine).await?;
    let mut by: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
    for patterns in streams {
        for (pattern, counts) in patterns {
            add_counts(by.entry(pattern).or_default(), counts);
        }
    }
    let mut all: Vec<(String, BTreeMap<i64, u64>)> = by.into_iter().collect();
    all.sort_by_key(|(_, s)| std::cmp::Reverse(s.values().sum::<u64>()));
    all.truncate(req.params.get("limit").and_then(|l| l.parse().ok()).unwrap_or(50));
    let data: Vec<_> = all
        .into_iter()
        .map(|(pattern, samples)| {
            let samples: Vec<_> = samples.into_iter().map(|(t, n)| json!([t / 1_000_000_000, n])).collect();
            json!({"pattern": pattern, "samples": samples})
        })
        .collect();
    Ok(axum::Json(json!({"status": "success", "data": data})).into_response())
}
