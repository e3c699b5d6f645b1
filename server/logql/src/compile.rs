//! Why part of a query cannot be compiled: a matcher's or filter's regex, a
//! `|>` pattern, an `ip()` range, a parser's capture names or expressions.
//! Each is worded as Loki words it; the parser places it in a
//! [`crate::ParseError`].

/// Why part of a query cannot be compiled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A regular expression, worded as Go's `regexp` words it.
    #[error("{0}")]
    Regex(String),
    #[error("named captures are not allowed in a line filter pattern: {0}")]
    NamedCaptureInFilter(String),
    #[error("at least one capture is required")]
    NoCapture,
    #[error("found consecutive capture: invalid expression")]
    ConsecutiveCaptures,
    #[error("duplicate capture name ({0}): invalid expression")]
    DuplicateCapture(String),
    #[error("invalid capture label name '{0}'")]
    InvalidCaptureName(String),
    #[error("at least one named capture must be supplied")]
    NoNamedCapture,
    #[error("duplicate extracted label name '{0}'")]
    DuplicateExtractedName(String),
    #[error("invalid extracted label name '{0}'")]
    InvalidExtractedName(String),
    #[error("no logfmt expression provided")]
    NoLogfmtExpression,
    /// A `json` or `logfmt` parser's expression.
    #[error("cannot parse expression [{expr}]: {reason}")]
    Expression { expr: String, reason: String },
    #[error("ip: invalid pattern \"{0}\"")]
    IpPattern(String),
}
