//! LogQL: the query language of Loki, parsed into an AST and evaluated
//! against log entries.
//!
//! Today this covers log queries — a stream selector with `=`, `!=`, `=~`,
//! `!~` matchers followed by any chain of line filters (`|=`, `!=`, `|~`,
//! `!~`). Parse errors carry the line and column, like Loki's.
//!
//! ```text
//! lexer (tokens with positions) → parser → ast::LogQuery → LineFilter::matches
//! ```

mod ast;
mod lexer;
mod parser;

pub use ast::{LineFilter, LineFilterOp, LogQuery, MatchOp, Matcher};
pub use parser::{parse_labels, parse_query, parse_selector, ParseError};
