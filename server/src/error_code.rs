//! One table of how a failure is answered. Every error type a client can
//! see says which kind of failure it is ([`Coded::code`]); the kind gives
//! the HTTP status and the gRPC code, so the HTTP API, the gRPC push and
//! any new protocol answer the same failure the same way, by lookup.

use axum::http::StatusCode;

/// The kinds of failure a client is told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed or refused as written (the client must change it).
    BadRequest,
    /// A well-formed push with nothing to store (Loki: 422).
    Unprocessable,
    /// The body is larger than allowed.
    TooLarge,
    /// No or unknown credentials, or no tenant named.
    Unauthenticated,
    /// The credentials do not allow this.
    Forbidden,
    /// What the request names does not exist (a delete request's id).
    NotFound,
    /// Over a rate or a limit of outstanding requests: retry later.
    RateLimited,
    /// Not now: a partition without a quorum, an unreadable delete log.
    Unavailable,
    /// The request ran out of time.
    Timeout,
    /// A fault of ours or of the storage (an object that cannot be read).
    Internal,
}

impl ErrorCode {
    /// Every kind.
    #[cfg(test)]
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::BadRequest,
        ErrorCode::Unprocessable,
        ErrorCode::TooLarge,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::Internal,
    ];

    /// The one table: each kind's HTTP status and gRPC code (a `match`, so
    /// a new kind cannot be left out).
    fn answers(self) -> (StatusCode, tonic::Code) {
        match self {
            ErrorCode::BadRequest => (StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument),
            ErrorCode::Unprocessable => (StatusCode::UNPROCESSABLE_ENTITY, tonic::Code::InvalidArgument),
            ErrorCode::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, tonic::Code::ResourceExhausted),
            ErrorCode::Unauthenticated => (StatusCode::UNAUTHORIZED, tonic::Code::Unauthenticated),
            ErrorCode::Forbidden => (StatusCode::FORBIDDEN, tonic::Code::PermissionDenied),
            ErrorCode::NotFound => (StatusCode::NOT_FOUND, tonic::Code::NotFound),
            ErrorCode::RateLimited => (StatusCode::TOO_MANY_REQUESTS, tonic::Code::ResourceExhausted),
            ErrorCode::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, tonic::Code::Unavailable),
            ErrorCode::Timeout => (StatusCode::GATEWAY_TIMEOUT, tonic::Code::DeadlineExceeded),
            ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, tonic::Code::Internal),
        }
    }

    /// The HTTP status of this kind of failure.
    pub fn http_status(self) -> StatusCode {
        self.answers().0
    }

    /// The gRPC code of this kind of failure.
    pub fn grpc_code(self) -> tonic::Code {
        self.answers().1
    }
}

/// An error a client sees: its kind, and its text as Loki words it.
pub trait Coded: std::fmt::Display {
    fn code(&self) -> ErrorCode;

    /// The HTTP answer's body. Loki writes push and auth errors with Go's
    /// `http.Error`, which ends them with a newline; query errors without.
    fn http_body(&self) -> String {
        format!("{self}\n")
    }

    /// The error as a gRPC status.
    fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.code().grpc_code(), self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_answers_an_error_status() {
        for code in ErrorCode::ALL {
            let http = code.http_status();
            assert!(http.is_client_error() || http.is_server_error(), "{code:?}");
            assert_ne!(code.grpc_code(), tonic::Code::Ok, "{code:?}");
        }
        assert_eq!(ErrorCode::Unprocessable.http_status(), StatusCode::UNPROCESSABLE_ENTITY, "Loki answers an empty push 422");
        assert_eq!(ErrorCode::RateLimited.grpc_code(), tonic::Code::ResourceExhausted);
    }
}
