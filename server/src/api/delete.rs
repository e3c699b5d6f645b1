//! `/loki/api/v1/delete`: create (POST/PUT), list (GET), cancel (DELETE).

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::params::{parse_timestamp, Params};
use super::{ApiError, AppState};
use balsa_logql::time::now_ns;

/// `?query=<selector and line filters>&start=<time>&end=<time>` → 204.
pub async fn create(State(api): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let tenant = api.tenant(&headers)?;
    let p = Params::parse(q.as_deref(), None);
    let query = p.get("query").filter(|s| !s.is_empty()).ok_or_else(|| ApiError::bad_request("query not set"))?;
    let start = p
        .get("start")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("start not set"))
        .and_then(|s| parse_timestamp(s).map_err(|e| ApiError::bad_request(format!("invalid start time: {e}"))))?;
    let now = now_ns();
    let end = match p.get("end").filter(|s| !s.is_empty()) {
        Some(s) => parse_timestamp(s).map_err(|e| ApiError::bad_request(format!("invalid end time: {e}")))?,
        None => now,
    };
    let read = api.read()?;
    let req = read.deletes.add(&tenant, query, start, end, now).await.map_err(ApiError::from)?;
    read.frontend.invalidate();
    tracing::info!(tenant, request_id = %req.request_id, query, "delete request received");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The tenant's delete requests.
pub async fn list(State(api): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let tenant = api.tenant(&headers)?;
    let now = now_ns();
    let secs = |ns: i64| ns as f64 / 1e9;
    let deletes = &api.read()?.deletes;
    let out: Vec<_> = deletes
        .list(&tenant)
        .await
        .map_err(ApiError::from)?
        .iter()
        .map(|r| {
            json!({
                "request_id": r.request_id,
                "start_time": secs(r.start),
                "end_time": secs(r.end),
                "query": r.query,
                "status": deletes.status(r, now),
                "created_at": secs(r.created_at),
            })
        })
        .collect();
    Ok(axum::Json(out).into_response())
}

/// `?request_id=<id>` → 204 while it can still be cancelled.
pub async fn cancel(State(api): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let tenant = api.tenant(&headers)?;
    let p = Params::parse(q.as_deref(), None);
    let id = p.get("request_id").filter(|s| !s.is_empty()).ok_or_else(|| ApiError::bad_request("request_id not set"))?;
    let read = api.read()?;
    read.deletes.cancel(&tenant, id, now_ns()).await.map_err(ApiError::from)?;
    read.frontend.invalidate();
    Ok(StatusCode::NO_CONTENT.into_response())
}
