//! Query endpoints, answering with Loki's JSON.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::params::Params;
use super::{ApiError, AppState};
use balsa_logql::labels::LabelSet;
use balsa_logql::eval::{Steps, Value as Metric};
use balsa_logql::{self as logql, parse_selector, Expr};
use crate::querier::{LogRequest, ResultEntry, ScanStats, StreamResult};
use balsa_logql::time::now_ns;

const INSTANT_LOG_QUERY: &str =
    "log queries are not supported as an instant query type, please change your query to a range query type";

/// What every read endpoint needs: the tenants (Loki's 401/400 when
/// missing or invalid), the parameters from the URL and, for POST, from the
/// form body, and the headers.
pub struct ReadRequest {
    pub tenants: Vec<String>,
    pub params: Params,
    pub headers: HeaderMap,
}

/// Largest form body a query may send.
const MAX_FORM_BODY: usize = 1 << 20;

impl axum::extract::FromRequest<AppState> for ReadRequest {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, api: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let tenants = api.tenants(&parts.headers)?;
        let form = if parts.method == Method::POST {
            Some(
                axum::body::to_bytes(body, MAX_FORM_BODY)
                    .await
                    .map_err(|e| ApiError::bad_request(format!("cannot read the form body: {e}")))?,
            )
        } else {
            None
        };
        let params = Params::parse(parts.uri.query(), form.as_deref().filter(|b| !b.is_empty()));
        Ok(Self { tenants, params, headers: parts.headers })
    }
}

pub fn wants_categorized_labels(headers: &HeaderMap) -> bool {
    headers
        .get_all("x-loki-response-encoding-flags")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|f| f.trim() == "categorize-labels"))
}

/// `GET|POST /loki/api/v1/query_range`
pub async fn query_range(
    State(api): State<AppState>,
    ReadRequest { tenants, params: p, headers }: ReadRequest,
) -> Result<Response, ApiError> {
    let query = p.get("query").unwrap_or("");
    let parsed = logql::parse_expr(query).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (start, end) = p.bounds(now_ns())?;
    if end < start {
        return Err(ApiError::bad_request("end timestamp must not be before or equal to start time"));
    }
    let limits = api.query_limits(&tenants);
    limits.check_length(start, end)?;
    let log = match parsed {
        Expr::Log(l) => l,
        metric => {
            let step = p.step(start, end)?;
            let steps = Steps { start, end, step };
            let read = api.read()?;
            let _slot = read.frontend.admit(&tenants)?;
            let run = async { Ok(read.frontend.metric_range(&tenants, query, &metric, steps, limits.plan).await?) };
            let (value, stats) = limits.within_timeout(run).await?;
            return Ok(axum::Json(metric_response(value, steps, false, true, stats)).into_response());
        }
    };
    let categorize = wants_categorized_labels(&headers);
    let (streams, stats) = log_range(&api, &tenants, &p, log, (start, end), categorize).await?;
    Ok(axum::Json(streams_response(streams, stats, categorize)).into_response())
}

/// A log query over `[start, end)` with the request's `limit`, `direction`
/// and `interval`, through the frontend (the tenant's limits apply).
pub async fn log_range(
    api: &AppState,
    tenants: &[String],
    p: &Params,
    query: logql::LogExpr,
    (start, end): (i64, i64),
    categorize: bool,
) -> Result<(Vec<StreamResult>, ScanStats), ApiError> {
    let limits = api.query_limits(tenants);
    let limit = p.limit()?;
    limits.check_entries(limit)?;
    let req = LogRequest { query, start, end, limit, direction: p.direction()?, categorize, interval: p.interval()? };
    let read = api.read()?;
    let _slot = read.frontend.admit(tenants)?;
    let run = async { Ok(read.frontend.log_range(tenants, &req, limits.plan.split).await?) };
    limits.within_timeout(run).await
}


/// Prometheus' number format: shortest decimal, `NaN`, `+Inf`, `-Inf`.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

/// A timestamp in seconds as a JSON number (integral when whole).
fn ts_json(ns: i64) -> Value {
    if ns % 1_000_000_000 == 0 {
        json!(ns / 1_000_000_000)
    } else {
        json!(ns as f64 / 1e9)
    }
}

/// Whether the query orders its answer itself (`sort`, `sort_desc`).
fn sorts_by_value(e: &Expr) -> bool {
    match e {
        Expr::Vector(v) => matches!(v.op, logql::VecOp::Sort | logql::VecOp::SortDesc) || sorts_by_value(&v.inner),
        Expr::Binary(b) => sorts_by_value(&b.lhs) || sorts_by_value(&b.rhs),
        Expr::LabelReplace(l) => sorts_by_value(&l.inner),
        _ => false,
    }
}

/// Loki's (Prometheus') answer to a metric query: a matrix for ranges, a
/// vector or scalar for instants; series in label order (as Loki sorts
/// them) unless the query sorted them by value.
fn metric_response(value: Metric, steps: Steps, instant: bool, by_labels: bool, stats: ScanStats) -> Value {
    let value = match value {
        Metric::Vector(mut series) if by_labels => {
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
            Metric::Vector(series)
        }
        other => other,
    };
    let (result_type, result) = match value {
        Metric::Scalar(v) => {
            if instant {
                ("scalar", json!([ts_json(steps.start), format_value(v.first().copied().unwrap_or(f64::NAN))]))
            } else {
                let values: Vec<Value> = v.iter().enumerate().map(|(i, x)| json!([ts_json(steps.at(i)), format_value(*x)])).collect();
                ("matrix", json!([{"metric": {}, "values": values}]))
            }
        }
        Metric::Vector(series) => {
            if instant {
                let out: Vec<Value> = series
                    .iter()
                    .filter_map(|s| {
                        let v = s.points.first().copied().flatten()?;
                        Some(json!({"metric": s.labels.to_json(), "value": [ts_json(steps.start), format_value(v)]}))
                    })
                    .collect();
                ("vector", Value::Array(out))
            } else {
                let out: Vec<Value> = series
                    .iter()
                    .map(|s| {
                        let values: Vec<Value> = s
                            .points
                            .iter()
                            .enumerate()
                            .filter_map(|(i, p)| p.map(|v| json!([ts_json(steps.at(i)), format_value(v)])))
                            .collect();
                        json!({"metric": s.labels.to_json(), "values": values})
                    })
                    .collect();
                ("matrix", Value::Array(out))
            }
        }
    };
    json!({"status": "success", "data": {"resultType": result_type, "result": result, "stats": stats_json(&stats)}})
}

/// `GET|POST /loki/api/v1/query`: instant queries are metric queries; a log
/// query gets Loki's error.
pub async fn instant_query(
    State(api): State<AppState>,
    ReadRequest { tenants, params: p, .. }: ReadRequest,
) -> Result<Response, ApiError> {
    let expr = logql::parse_expr(p.get("query").unwrap_or("")).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if matches!(expr, Expr::Log(_)) {
        return Err(ApiError::bad_request(INSTANT_LOG_QUERY));
    }
    let t = p.time(now_ns())?;
    let steps = Steps::instant(t);
    let limits = api.query_limits(&tenants);
    let read = api.read()?;
    let _slot = read.frontend.admit(&tenants)?;
    let run = async { Ok(read.querier.eval_metric(&tenants, &expr, steps, limits.max_series).await?) };
    let (value, stats) = limits.within_timeout(run).await?;
    Ok(axum::Json(metric_response(value, steps, true, !sorts_by_value(&expr), stats)).into_response())
}

/// Loki's answer to a log query. Without `categorize-labels`, structured
/// metadata is folded into the stream labels (entries with different
/// metadata become different streams), as Loki does.
fn streams_response(streams: Vec<StreamResult>, stats: ScanStats, categorize: bool) -> Value {
    let result = streams_json(streams, categorize);
    let mut data = serde_json::Map::new();
    data.insert("resultType".into(), json!("streams"));
    if categorize {
        data.insert("encodingFlags".into(), json!(["categorize-labels"]));
    }
    data.insert("result".into(), Value::Array(result));
    data.insert("stats".into(), stats_json(&stats));
    json!({"status": "success", "data": data})
}

/// Streams as Loki's JSON `{"stream": …, "values": …}` objects.
pub fn streams_json(streams: Vec<StreamResult>, categorize: bool) -> Vec<Value> {
    let mut result = Vec::new();
    if categorize {
        for s in streams {
            let values: Vec<Value> = s
                .entries
                .iter()
                .map(|e| {
                    let mut extra = serde_json::Map::new();
                    let obj = |pairs: &[(String, String)]| -> Value {
                        Value::Object(pairs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
                    };
                    if !e.metadata.is_empty() {
                        extra.insert("structuredMetadata".into(), obj(&e.metadata));
                    }
                    if !e.parsed.is_empty() {
                        extra.insert("parsed".into(), obj(&e.parsed));
                    }
                    json!([e.ts.to_string(), e.line, extra])
                })
                .collect();
            result.push(json!({"stream": s.labels.to_json(), "values": values}));
        }
    } else {
        for (labels, entries) in by_full_labels(streams) {
            let values: Vec<Value> = entries.into_iter().map(|(ts, line)| json!([ts.to_string(), line])).collect();
            result.push(json!({"stream": labels.to_json(), "values": values}));
        }
    }
    result
}

/// Entries grouped by their whole label set (stream labels with the
/// entry's structured metadata), as answers without categorized labels
/// show them.
pub fn by_full_labels(streams: Vec<StreamResult>) -> BTreeMap<LabelSet, Vec<(i64, String)>> {
    let mut grouped: BTreeMap<LabelSet, Vec<(i64, String)>> = BTreeMap::new();
    for s in streams {
        for ResultEntry { entry: e, .. } in s.entries {
            let labels = if e.metadata.is_empty() {
                s.labels.clone()
            } else {
                let mut pairs: Vec<(String, String)> = s.labels.iter().cloned().collect();
                pairs.retain(|(n, _)| !e.metadata.iter().any(|(m, _)| m == n));
                pairs.extend(e.metadata.iter().cloned());
                LabelSet::from_pairs(pairs)
            };
            grouped.entry(labels).or_default().push((e.ts, e.line));
        }
    }
    grouped
}

/// Loki's `stats` object, every field present: flushed chunks count as the
/// querier's store, unflushed entries as the ingesters' head chunks, the
/// query-frontend's pieces as splits and its results cache under `result`.
pub fn stats_json(s: &ScanStats) -> Value {
    let per_sec = |n: u64| if s.exec_seconds > 0.0 { (n as f64 / s.exec_seconds) as u64 } else { 0 };
    let chunk = |head_lines: u64, head_bytes: u64, lines: u64, bytes: u64, compressed: u64, duplicates: u64, post: u64| {
        json!({"headChunkBytes": head_bytes, "headChunkLines": head_lines, "decompressedBytes": bytes,
            "decompressedLines": lines, "compressedBytes": compressed, "totalDuplicates": duplicates, "postFilterLines": post,
            "headChunkStructuredMetadataBytes": 0, "decompressedStructuredMetadataBytes": 0})
    };
    let dataobj = json!({"prePredicateDecompressedRows": 0, "prePredicateDecompressedBytes": 0,
        "prePredicateDecompressedStructuredMetadataBytes": 0, "postPredicateRows": 0, "postPredicateDecompressedBytes": 0,
        "postPredicateStructuredMetadataBytes": 0, "postFilterRows": 0, "pagesScanned": 0, "pagesDownloaded": 0,
        "pagesDownloadedBytes": 0, "pageBatches": 0, "totalRowsAvailable": 0, "totalPageDownloadTime": 0,
        "wireBytesTransferred": 0});
    let store = |refs: u64, downloaded: u64, chunk: Value| {
        json!({"totalChunksRef": refs, "totalChunksDownloaded": downloaded, "chunksDownloadTime": 0,
            "queryReferencedStructuredMetadata": false, "queryUsedV2Engine": false, "chunk": chunk,
            "chunkRefsFetchTime": 0, "congestionControlLatency": 0, "pipelineWrapperFilteredLines": 0,
            "dataobj": dataobj.clone()})
    };
    let cache = |requested: u64, found: u64, stored: u64| {
        json!({"entriesFound": found, "entriesRequested": requested, "entriesStored": stored, "bytesReceived": 0,
            "bytesSent": 0, "requests": requested, "downloadTime": 0, "queryLengthServed": 0})
    };
    let unused = cache(0, 0, 0);
    let querier_chunk = chunk(0, 0, s.chunk_lines, s.chunk_bytes, s.compressed_bytes, s.duplicates, s.post_filter_lines);
    json!({
        "summary": {"bytesProcessedPerSecond": per_sec(s.bytes()), "linesProcessedPerSecond": per_sec(s.lines()),
            "totalBytesProcessed": s.bytes(), "totalLinesProcessed": s.lines(), "execTime": s.exec_seconds,
            "queueTime": 0, "subqueries": s.splits, "totalEntriesReturned": s.returned, "splits": s.splits, "shards": 0,
            "totalPostFilterLines": s.post_filter_lines, "totalStructuredMetadataBytesProcessed": 0},
        "querier": {"store": store(s.chunks, s.chunks_downloaded, querier_chunk), "querierExecTime": s.exec_seconds},
        "ingester": {"totalReached": 1, "totalChunksMatched": 0, "totalBatches": 1, "totalLinesSent": s.head_lines,
            "store": store(0, 0, chunk(s.head_lines, s.head_bytes, 0, 0, 0, 0, 0))},
        "cache": {"chunk": cache(s.chunks, s.chunks - s.chunks_downloaded.min(s.chunks), 0), "index": unused.clone(),
            "result": cache(s.cache_requested, s.cache_found, s.cache_stored), "statsResult": unused.clone(),
            "volumeResult": unused.clone(), "seriesResult": unused.clone(), "labelResult": unused.clone(),
            "instantMetricResult": unused.clone(), "logResult": unused.clone(), "taskResult": unused},
        "index": {"totalChunks": s.chunks, "postFilterChunks": s.chunks, "shardsDuration": 0, "usedBloomFilters": false,
            "totalStreams": s.streams, "chunkRefsLookupTime": 0, "bloomFilterTime": 0}
    })
}

/// `{"status":"success","data":[...]}`, `data` omitted when empty (Loki's
/// `omitempty`).
fn label_response(values: Vec<String>) -> Response {
    if values.is_empty() {
        axum::Json(json!({"status": "success"})).into_response()
    } else {
        axum::Json(json!({"status": "success", "data": values})).into_response()
    }
}

/// `GET|POST /loki/api/v1/labels`, with an optional `query` selector
pub async fn labels(State(api): State<AppState>, req: ReadRequest) -> Result<Response, ApiError> {
    Ok(label_response(label_names(&api, &req, None).await?))
}

/// Label names, or with `name` the values of that label, of the streams in
/// the request's time range (and `query` selector).
pub async fn label_names(api: &AppState, req: &ReadRequest, name: Option<&str>) -> Result<Vec<String>, ApiError> {
    let (start, end) = req.params.bounds(now_ns())?;
    let selector = query_selector(&req.params)?;
    Ok(match name {
        None => api.read()?.querier.label_names(&req.tenants, selector, start, end).await?,
        Some(n) => api.read()?.querier.label_values(&req.tenants, n, selector, start, end).await?,
    })
}

/// The optional `query` stream selector of the label endpoints.
fn query_selector(p: &Params) -> Result<Option<Vec<logql::Matcher>>, ApiError> {
    match p.get("query").filter(|s| !s.trim().is_empty()) {
        Some(s) => Ok(Some(parse_selector(s).map_err(|e| ApiError::bad_request(e.to_string()))?)),
        None => Ok(None),
    }
}

/// `GET|POST /loki/api/v1/label/<name>/values`, with an optional `query`
/// selector.
pub async fn label_values(State(api): State<AppState>, Path(name): Path<String>, req: ReadRequest) -> Result<Response, ApiError> {
    Ok(label_response(label_names(&api, &req, Some(&name)).await?))
}

/// `GET|POST /loki/api/v1/format_query`: the query as Loki formats it; a
/// query that does not parse answers 400 with Loki's `invalid-query` body.
pub async fn format_query(ReadRequest { params: p, .. }: ReadRequest) -> Response {
    let q = p.get("query").unwrap_or("");
    match logql::format_query(q) {
        Ok(formatted) => axum::Json(json!({"status": "success", "data": formatted})).into_response(),
        Err(e) => {
            (StatusCode::BAD_REQUEST, axum::Json(json!({"status": "invalid-query", "error": e.to_string()}))).into_response()
        }
    }
}

/// `GET|POST /loki/api/v1/series` with `match[]` (or `match`) selectors.
pub async fn series(
    State(api): State<AppState>,
    ReadRequest { tenants, params: p, .. }: ReadRequest,
) -> Result<Response, ApiError> {
    let (start, end) = p.bounds(now_ns())?;
    let mut selectors = Vec::new();
    for s in p.all("match[]").iter().chain(p.all("match")) {
        if s.chars().filter(|c| !c.is_whitespace()).collect::<String>() == "{}" {
            continue;
        }
        selectors.push(parse_selector(s).map_err(|e| ApiError::bad_request(e.to_string()))?);
    }
    let limits = api.query_limits(&tenants);
    let found = limits.within_timeout(async { Ok(api.read()?.querier.series(&tenants, &selectors, start, end).await?) }).await?;
    if found.len() > limits.max_series {
        return Err(ApiError::bad_request(format!(
            "the query hit the max number of series limit (limit: {} series)",
            limits.max_series
        )));
    }
    let data: Vec<Value> = found.iter().map(LabelSet::to_json).collect();
    Ok(axum::Json(json!({"status": "success", "data": data})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use balsa_storage::Entry;

    #[test]
    fn metadata_folds_into_labels_unless_categorized() {
        let mut e = Entry::new(2, "b");
        e.metadata.push(("trace_id".into(), "t1".into()));
        let s = StreamResult { labels: LabelSet::parse(r#"{app="x"}"#).unwrap(), entries: vec![Entry::new(1, "a").into(), e.into()] };
        let plain = streams_response(vec![s.clone()], ScanStats::default(), false);
        let result = plain["data"]["result"].as_array().unwrap();
        assert_eq!(result.len(), 2);
        assert_eq!(result[1]["stream"], json!({"app": "x", "trace_id": "t1"}));
        assert_eq!(result[1]["values"], json!([["2", "b"]]));
        let cat = streams_response(vec![s], ScanStats::default(), true);
        assert_eq!(cat["data"]["encodingFlags"], json!(["categorize-labels"]));
        assert_eq!(cat["data"]["result"][0]["values"][1], json!(["2", "b", {"structuredMetadata": {"trace_id": "t1"}}]));
        assert_eq!(cat["data"]["result"][0]["values"][0], json!(["1", "a", {}]));
        assert!(cat["data"]["stats"]["summary"]["execTime"].is_number());
    }
}
