//! `POST /loki/api/v1/push`.
//!
//! PERFORMANCE-CRITICAL PATH.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::{ApiError, AppState};
use crate::distributor::{decode_body, BodyLimits};

/// Reads the body up to the size limit (413 past it), decodes it, and hands
/// it to the distributor: 204 when everything is committed.
pub async fn push(State(api): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let tenant = api.tenant(&headers)?;
    let max = api.max_recv_msg_size;
    let too_large = |size: String| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large: message size too large than max ({size} vs {max})\n"),
        )
    };
    if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok()) {
        if len > max {
            return Err(too_large(len.to_string()));
        }
    }
    let bytes: Bytes = match http_body_util::Limited::new(body, max).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err(too_large(format!("more than {max}")))
        }
        Err(e) => return Err(ApiError::bad_request(format!("cannot read the request body: {e}\n"))),
    };
    let header_str = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let limits = BodyLimits { max_decompressed: api.max_decompressed_size };
    let streams = decode_body(header_str(header::CONTENT_TYPE), header_str(header::CONTENT_ENCODING), &bytes, limits)?;
    api.distributor.push(&tenant, streams).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
