//! Errors of the HTTP API, answered as Loki answers them: plain text with
//! Loki's status codes and reasons.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::distributor::{DecodeError, PushError};
use crate::querier::QueryError;

/// Second line of the 401 answer: how to send a tenant.
pub const NO_ORG_ID_HINT: &str = "hint: auth_enabled is true, so every request needs an X-Scope-OrgID header naming \
the tenant (in Grafana: Loki data source > HTTP headers > X-Scope-OrgID)";

/// An HTTP error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: String,
}

impl ApiError {
    pub fn new(status: StatusCode, body: impl Into<String>) -> Self {
        Self { status, body: body.into() }
    }

    pub fn bad_request(body: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, body)
    }

    /// Push errors end with a newline, as Go's `http.Error` writes them.
    fn with_newline(mut self) -> Self {
        self.body.push('\n');
        self
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

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        let status = match e {
            PushError::NoStreams => StatusCode::UNPROCESSABLE_ENTITY,
            PushError::Rejected(_) => StatusCode::BAD_REQUEST,
            PushError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            PushError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string()).with_newline()
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
        match e {
            AuthError::Tenant(t) => t.into(),
            e if e.is_forbidden() => ApiError::new(StatusCode::FORBIDDEN, e.to_string()).with_newline(),
            e => ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()).with_newline(),
        }
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        let status = match e {
            DecodeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            DecodeError::Bad(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string()).with_newline()
    }
}

impl From<crate::frontend::FrontendError> for ApiError {
    fn from(e: crate::frontend::FrontendError) -> Self {
        match e {
            crate::frontend::FrontendError::TooManyOutstanding => ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
            crate::frontend::FrontendError::Query(q) => q.into(),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let status = match e {
            QueryError::Eval(_) => StatusCode::BAD_REQUEST,
            QueryError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            QueryError::Deletes(_) => StatusCode::SERVICE_UNAVAILABLE,
            QueryError::Ingester(_) => StatusCode::SERVICE_UNAVAILABLE,
            QueryError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<crate::tenant::TenantError> for ApiError {
    fn from(e: crate::tenant::TenantError) -> Self {
        match e {
            crate::tenant::TenantError::NoOrgId => ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!("{e}\n{NO_ORG_ID_HINT}\n"),
            ),
            _ => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()).with_newline(),
        }
    }
}
