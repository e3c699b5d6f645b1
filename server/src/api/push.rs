//! `POST /loki/api/v1/push`.
//!
//! PERFORMANCE-CRITICAL PATH.

use axum::body::{Body, Bytes};
use bytes::BytesMut;
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
    let bytes = read_limited(body, max).await.map_err(|e| match e {
        ReadError::TooLarge(seen) => too_large(seen),
        ReadError::Io(e) => ApiError::bad_request(format!("cannot read the request body: {e}\n")),
    })?;
    let header_str = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let limits = BodyLimits { max_decompressed: api.max_decompressed_size };
    let streams = decode_body(header_str(header::CONTENT_TYPE), header_str(header::CONTENT_ENCODING), &bytes, limits)?;
    api.distributor.push(&tenant, streams).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Past the limit, this much more is read and discarded so the client gets
/// the 413 instead of a reset connection; beyond it the connection is cut.
const DRAIN_LIMIT: usize = 64 << 20;

enum ReadError {
    /// How much was seen, for the message.
    TooLarge(String),
    Io(axum::Error),
}

/// Collects the body while it stays within `max` bytes.
async fn read_limited(body: Body, max: usize) -> Result<Bytes, ReadError> {
    let mut body = body;
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Io)?;
        let Ok(data) = frame.into_data() else { continue };
        total = total.saturating_add(data.len());
        if total <= max {
            buf.extend_from_slice(&data);
        } else if total > max.saturating_add(DRAIN_LIMIT) {
            return Err(ReadError::TooLarge(format!("more than {total}")));
        }
    }
    if total > max {
        return Err(ReadError::TooLarge(total.to_string()));
    }
    Ok(buf.freeze())
}
