//! `POST /loki/api/v1/push` and OTLP's `POST /otlp/v1/logs`.
//!
//! PERFORMANCE-CRITICAL PATH.

use axum::body::{Body, Bytes};
use bytes::BytesMut;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use prost::Message;

use super::{ApiError, AppState};
use crate::error_code::ErrorCode;
use crate::distributor::otlp::decode_otlp;
use crate::distributor::{decode_body, BodyLimits};

/// Reads the body up to the size limit (413 past it), decodes it, and hands
/// it to the distributor: 204 when everything is committed.
#[tracing::instrument(name = "push", skip_all, fields(tenant))]
pub async fn push(State(api): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let r = received(&api, &headers, body).await?;
    let streams = decode_body(r.content_type, r.content_encoding, &r.bytes, r.limits)?;
    let tenant = r.tenant;
    api.distributor()?.push(&tenant, streams).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An OTLP/HTTP logs export, mapped with the tenant's `otlp_config`: 204
/// when everything is committed, as Loki answers (OTLP clients take any 2xx).
/// Errors are answered as OTLP asks and Loki does: a protobuf
/// `google.rpc.Status` holding the message, and 503 for a 500 so that
/// clients retry it.
#[tracing::instrument(name = "otlp_push", skip_all, fields(tenant))]
pub async fn otlp_push(State(api): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match otlp_export(api, headers, body).await {
        Ok(r) => r,
        Err(e) => {
            let status = if e.status == StatusCode::INTERNAL_SERVER_ERROR { StatusCode::SERVICE_UNAVAILABLE } else { e.status };
            let body = balsa_proto::otlp::Status { code: 0, message: e.body.trim_end().to_string() }.encode_to_vec();
            (status, [(header::CONTENT_TYPE, "application/octet-stream")], body).into_response()
        }
    }
}

async fn otlp_export(api: AppState, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let r = received(&api, &headers, body).await?;
    let config = &api.distributor()?.limits(&r.tenant).otlp_config;
    let streams = decode_otlp(r.content_type, r.content_encoding, &r.bytes, r.limits, config, balsa_logql::time::now_ns())?;
    let tenant = r.tenant;
    if streams.iter().all(|s| s.entries.is_empty()) {
        // An export with no records is a success (Loki's distributor
        // answers an empty push so); Loki's push path would say 422.
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    api.distributor()?.push(&tenant, streams).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// What every push reads before decoding: its tenant (recorded on the
/// request's span), body and encoding headers.
struct Received<'h> {
    tenant: String,
    bytes: Bytes,
    content_type: Option<&'h str>,
    content_encoding: Option<&'h str>,
    limits: BodyLimits,
}

async fn received<'h>(api: &AppState, headers: &'h HeaderMap, body: Body) -> Result<Received<'h>, ApiError> {
    let tenant = api.tenant(headers)?;
    tracing::Span::current().record("tenant", tenant.as_str());
    let bytes = read_body(api, body).await?;
    let header_str = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    Ok(Received {
        tenant,
        bytes,
        content_type: header_str(header::CONTENT_TYPE),
        content_encoding: header_str(header::CONTENT_ENCODING),
        limits: BodyLimits { max_decompressed: api.max_decompressed_size },
    })
}

/// The body, within `max_recv_msg_size` (413 past it).
async fn read_body(api: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let max = api.max_recv_msg_size;
    let too_large = |size: String| {
        ApiError::new(
            ErrorCode::TooLarge,
            format!("request body too large: message size too large than max ({size} vs {max})\n"),
        )
    };
    read_limited(body, max).await.map_err(|e| match e {
        ReadError::TooLarge(seen) => too_large(seen),
        ReadError::Io(e) => ApiError::bad_request(format!("cannot read the request body: {e}\n")),
    })
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
