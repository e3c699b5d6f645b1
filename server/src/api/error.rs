//! Errors of the HTTP API, answered as Loki answers them: plain text with
//! Loki's status codes and reasons.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error_code::{Coded, ErrorCode};

/// An HTTP error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: String,
}

impl ApiError {
    /// A `code` failure (its status from the one table) saying `body`.
    pub fn new(code: ErrorCode, body: impl Into<String>) -> Self {
        Self { status: code.http_status(), body: body.into() }
    }

    pub fn bad_request(body: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.body).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        r
    }
}

/// Every error a client sees answers through the one table of
/// [`crate::error_code`]: its kind's status, and its body as Loki words it.
impl<E: Coded> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError::new(e.code(), e.http_body())
    }
}
