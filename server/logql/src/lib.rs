//! LogQL, Loki's query language, and the vocabulary it shares with the
//! rest of Balsa: label sets, Loki's timestamp formats, and its units.
//!
//! This crate depends on no other Balsa crate (nor on RocksDB, tonic or
//! the AWS SDK): its tests and the conformance of the language build alone
//! (`cargo test -p balsa-logql`).
//!
//! ```text
//! lexer (tokens with positions) → parser → ast::Expr
//!   log query:    ast::LogExpr → pipeline::process per entry
//!   metric query: eval::selections → (caller fetches) → eval::evaluate
//! ```
//! - [`extract`]: the parser stages json, logfmt, regexp, pattern, unpack;
//! - [`template`]: Go templates for `line_format` / `label_format`;
//! - [`ip`]: `ip("…")` filters;
//! - [`units`]: every duration and size Loki reads or prints;
//! - [`labels`]: label sets and their text form; [`time`]: timestamps as
//!   Loki prints and parses them.
//!
//! Parse errors carry the line and column, like Loki's.
//!
//! ```
//! use balsa_logql::{parse_expr, Expr};
//! let q = parse_expr(r#"sum by (level) (rate({app="api"} |= "error" [5m]))"#).unwrap();
//! assert!(matches!(q, Expr::Vector(_)));
//! ```

mod ast;
mod compile;
pub mod eval;
mod format;
pub mod ip;
pub mod labels;
mod lexer;
mod parser;
pub mod extract;
pub mod pipeline;
pub mod template;
pub mod time;
pub mod units;

pub use ast::{
    BinOp, CmpOp, Expr, Grouping, LabelFilter, LineFilter, LineFilterOp, LineFilterSpec, LineTestSpec, LogExpr, MatchOp, Matcher,
    RangeAgg, RangeOp,
    Stage, VecOp,
};
pub use compile::CompileError;
pub use format::format_query;
pub use parser::{parse_expr, parse_labels, parse_selector, ParseError};

/// A seeded xorshift generator for the randomized tests: `next(n)` is in `0..n`.
#[cfg(test)]
pub(crate) fn test_rng(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    }
}
