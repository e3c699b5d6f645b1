//! LogQL, Loki's query language: parsed into an AST, run as a pipeline over
//! log entries, and evaluated as metric queries over a grid of steps.
//!
//! ```text
//! lexer (tokens with positions) → parser → ast::Expr
//!   log query:    ast::LogExpr → pipeline::process per entry
//!   metric query: eval::selections → (caller fetches) → eval::evaluate
//! ```
//! - [`parsers`]: json, logfmt, regexp, pattern, unpack;
//! - [`template`]: Go templates for `line_format` / `label_format`;
//! - [`ip`]: `ip("…")` filters; [`units`]: durations and sizes in filters.
//!
//! Parse errors carry the line and column, like Loki's.

mod ast;
pub mod eval;
mod format;
pub mod ip;
mod lexer;
mod parser;
pub mod parsers;
pub mod pipeline;
pub mod template;
pub mod units;

pub use ast::{
    BinOp, CmpOp, Expr, Grouping, LabelFilter, LineFilter, LineFilterOp, LineFilterSpec, LineTestSpec, LogExpr, MatchOp, Matcher,
    RangeAgg, RangeOp,
    Stage, VecOp,
};
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
