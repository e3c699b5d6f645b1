//! Index statistics and volumes: `/loki/api/v1/index/stats`,
//! `/index/volume`, `/index/volume_range`, and `/detected_labels`, as
//! Grafana's Explore and Logs Drilldown ask for them.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::query::ReadRequest;
use super::{ApiError, AppState};
use crate::labels::LabelSet;
use crate::logql::parse_selector;
use crate::time::now_ns;

fn selector(req: &ReadRequest) -> Result<Vec<crate::logql::Matcher>, ApiError> {
    let q = req.params.get("query").unwrap_or("{}");
    if q.chars().filter(|c| !c.is_whitespace()).collect::<String>() == "{}" {
        return Ok(Vec::new());
    }
    parse_selector(q).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `{"streams":…, "chunks":…, "entries":…, "bytes":…}` of a selector.
pub async fn stats(State(api): State<AppState>, req: ReadRequest) -> Result<Response, ApiError> {
    let matchers = selector(&req)?;
    let (start, end) = req.params.bounds(now_ns())?;
    let (streams, scan) = api.querier.matching_streams(&req.tenants, &matchers, start, end).await?;
    let entries: usize = streams.iter().map(|(_, e)| e.len()).sum();
    let bytes: u64 = streams.iter().flat_map(|(_, e)| e.iter()).map(|e| e.size() as u64).sum();
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
    let (streams, _) = api.querier.matching_streams(&req.tenants, &matchers, start, end).await?;
    let mut by: BTreeMap<LabelSet, BTreeMap<i64, u64>> = BTreeMap::new();
    for (labels, entries) in streams {
        let slot = by.entry(volume_key(&labels, &targets, by_series)).or_default();
        for e in entries {
            let bucket = match step {
                Some(s) => end - (end - e.ts).div_euclid(s) * s,
                None => end,
            };
            *slot.entry(bucket).or_default() += e.size() as u64;
        }
    }
    let limit: usize = req.params.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
    let mut all: Vec<(LabelSet, BTreeMap<i64, u64>)> = by.into_iter().collect();
    all.sort_by_key(|(_, b)| std::cmp::Reverse(b.values().sum::<u64>()));
    all.truncate(limit);
    Ok((all, start, end))
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
    let series = api.querier.series(&req.tenants, &[matchers], start, end).await?;
    let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &series {
        for (k, v) in s.iter() {
            values.entry(k.clone()).or_default().insert(v.clone());
        }
    }
    let labels: Vec<_> = values.into_iter().map(|(k, v)| json!({"label": k, "cardinality": v.len()})).collect();
    Ok(axum::Json(json!({"detectedLabels": labels})).into_response())
}
