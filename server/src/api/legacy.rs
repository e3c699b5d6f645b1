//! Loki's legacy `/api/prom/…` query endpoints, which Loki 3 still serves
//! for old clients: `query` (log queries only, with the old `regexp`
//! parameter), `label`, `label/<name>/values` and `tail` answer in the old
//! shapes (`{"streams":[{"labels","entries":[{"ts","line"}]}]}`,
//! `{"values":[…]}`); `series` and `push` are the v1 handlers.

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::query::{by_full_labels, label_names, log_range, stats_json, ReadRequest};
use super::{ApiError, AppState};
use balsa_logql::labels::go_quote;
use balsa_logql::{parse_expr, Expr};
use crate::querier::StreamResult;
use balsa_logql::time::{format_rfc3339_nano, now_ns};

/// `GET|POST /api/prom/query`: a log query over a time range.
pub async fn query(State(api): State<AppState>, req: ReadRequest) -> Result<Response, ApiError> {
    let p = &req.params;
    let mut text = p.get("query").unwrap_or("").to_string();
    // The old `regexp` parameter: a `|~` filter after the query's stages
    // (on a line of its own: the query may end in a `#` comment).
    if let Some(re) = p.get("regexp").filter(|r| !r.is_empty()) {
        text = format!("{text}\n|~ {}", go_quote(re));
    }
    let log = match parse_expr(&text).map_err(|e| ApiError::bad_request(e.to_string()))? {
        Expr::Log(l) => l,
        _ => return Err(ApiError::bad_request("legacy endpoints only support streams result type")),
    };
    let (start, end) = p.bounds(now_ns())?;
    if end < start {
        return Err(ApiError::bad_request("end timestamp must not be before or equal to start time"));
    }
    api.query_limits(&req.tenants).check_length(start, end)?;
    let (streams, stats) = log_range(&api, &req.tenants, p, log, (start, end), false).await?;
    Ok(axum::Json(json!({"streams": streams_json(streams), "stats": stats_json(&stats)})).into_response())
}

/// `GET|POST /api/prom/label`
pub async fn labels(State(api): State<AppState>, req: ReadRequest) -> Result<Response, ApiError> {
    Ok(values_response(label_names(&api, &req, None).await?))
}

/// `GET|POST /api/prom/label/<name>/values`
pub async fn label_values(State(api): State<AppState>, Path(name): Path<String>, req: ReadRequest) -> Result<Response, ApiError> {
    Ok(values_response(label_names(&api, &req, Some(&name)).await?))
}

/// `GET /api/prom/tail`: the v1 tail with the old message shape.
pub async fn tail(state: State<AppState>, ws: WebSocketUpgrade, req: ReadRequest) -> Result<Response, ApiError> {
    super::tail::open(state, ws, req, true).await
}

/// `{"values":[…]}`, `{}` when there are none (the protobuf's omitempty).
fn values_response(values: Vec<String>) -> Response {
    let body = if values.is_empty() { json!({}) } else { json!({"values": values}) };
    axum::Json(body).into_response()
}

/// Streams in the old shape: the whole label set as text, entries with
/// RFC3339 times.
pub fn streams_json(streams: Vec<StreamResult>) -> Vec<Value> {
    by_full_labels(streams)
        .into_iter()
        .map(|(labels, entries)| {
            let entries: Vec<Value> =
                entries.into_iter().map(|(ts, line)| json!({"ts": format_rfc3339_nano(ts), "line": line})).collect();
            json!({"labels": labels.to_string(), "entries": entries})
        })
        .collect()
}
