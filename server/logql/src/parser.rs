//! Recursive-descent parser for LogQL: log queries with pipelines, and
//! metric queries (precedence climbing for binary operators). The pipeline
//! after a selector is parsed in [`pipeline`].

use super::ast::*;
use super::ip::IpMatcher;
use super::lexer::{lex, Spanned, Tok};
use super::extract::{JsonExpressions, LogfmtExpressions, PatternParser, RegexpParser};
use super::template::Template;
use crate::CompileError;
use crate::units::parse_duration;

mod pipeline;

/// A LogQL syntax or semantic error, displayed exactly as Loki displays it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl ParseError {
    pub(super) fn at(line: usize, col: usize, msg: impl ToString) -> Self {
        Self { line, col, msg: msg.to_string() }
    }

    fn whole(msg: impl ToString) -> Self {
        Self { line: 0, col: 0, msg: msg.to_string() }
    }

    fn render(&self) -> String {
        if self.line == 0 && self.col == 0 {
            format!("parse error : {}", self.msg)
        } else {
            format!("parse error at line {}, col {}: {}", self.line, self.col, self.msg)
        }
    }
}

const EMPTY_COMPATIBLE: &str = "queries require at least one regexp or equality matcher that does not have an \
empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will";

type PResult<T> = Result<T, ParseError>;

struct Parser {
    toks: Vec<Spanned>,
    pos: usize,
    end: (usize, usize),
    /// Expressions (or label filter groups) being parsed inside each other.
    nesting: usize,
}

/// How deep a query may nest (parentheses, functions, chains of operators
/// or of label filters). The parser, evaluator and printer recurse over the
/// tree; a client's deeper query must get an error, not exhaust the stack.
pub const MAX_DEPTH: usize = 128;

fn too_deep() -> ParseError {
    ParseError::whole(format!("query nests more than {MAX_DEPTH} levels deep"))
}

fn expecting_suffix(expecting: &str) -> String {
    if expecting.is_empty() {
        String::new()
    } else {
        format!(", expecting {expecting}")
    }
}

impl Parser {
    fn new(src: &str) -> PResult<Self> {
        let toks = lex(src)?;
        let last_line = src.lines().count().max(1);
        let last_col = src.lines().last().map(|l| l.chars().count()).unwrap_or(0) + 1;
        Ok(Self { toks, pos: 0, end: (last_line, last_col), nesting: 0 })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|s| &s.tok)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.pos + n).map(|s| &s.tok)
    }

    fn peek_ident(&self) -> Option<&str> {
        match self.peek() {
            Some(Tok::Ident(s)) => Some(s.as_str()),
            _ => None,
        }
    }

    fn peek_other(&self) -> Option<&str> {
        match self.peek() {
            Some(Tok::Other(s)) => Some(s.as_str()),
            _ => None,
        }
    }

    fn here(&self) -> (usize, usize) {
        self.toks.get(self.pos).map_or(self.end, |s| (s.line, s.col))
    }

    fn err_here(&self, msg: String) -> ParseError {
        let (l, c) = self.here();
        ParseError::at(l, c, msg)
    }

    fn unexpected(&self, expecting: &str) -> ParseError {
        match self.toks.get(self.pos) {
            Some(s) => {
                // Loki's lexer makes a function name followed by `(` a token
                // of its own (`RATE`, `SUM`), named so in its errors.
                let what = match &s.tok {
                    Tok::Ident(w) if self.is_function_call() && function_token(w).is_some() => {
                        function_token(w).unwrap_or_default().to_string()
                    }
                    t => t.describe(),
                };
                let line = if loki_forgets_line(&s.tok) { 0 } else { s.line };
                ParseError::at(line, s.col, format!("syntax error: unexpected {what}{}", expecting_suffix(expecting)))
            }
            None => ParseError::at(
                self.end.0,
                self.end.1,
                format!("syntax error: unexpected $end{}", expecting_suffix(expecting)),
            ),
        }
    }

    /// Whether the current token is a word followed by `(`.
    fn is_function_call(&self) -> bool {
        matches!(self.peek(), Some(Tok::Ident(_))) && self.peek_at(1) == Some(&Tok::LParen)
    }

    fn eat(&mut self, want: &Tok) -> bool {
        if self.peek() == Some(want) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_ident(&mut self, word: &str) -> bool {
        if self.peek_ident() == Some(word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, want: Tok, name: &str) -> PResult<()> {
        if self.eat(&want) {
            Ok(())
        } else {
            Err(self.unexpected(name))
        }
    }

    fn ident(&mut self) -> PResult<String> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.unexpected("IDENTIFIER")),
        }
    }

    fn string(&mut self) -> PResult<String> {
        match self.peek() {
            Some(Tok::Str(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.unexpected("STRING")),
        }
    }

    fn number(&mut self) -> PResult<f64> {
        let neg = self.peek_other() == Some("-");
        if neg {
            self.pos += 1;
        }
        match self.peek_other().map(str::to_string) {
            Some(w) => {
                let v = parse_number(&w).ok_or_else(|| self.unexpected("NUMBER"))?;
                self.pos += 1;
                Ok(if neg { -v } else { v })
            }
            None => Err(self.unexpected("NUMBER")),
        }
    }

    fn duration(&mut self) -> PResult<i64> {
        match self.peek_other().map(str::to_string) {
            Some(w) => {
                let d = parse_duration(&w).map_err(|e| self.err_here(format!("invalid duration {w}: {e}")))?;
                self.pos += 1;
                Ok(d.as_nanos() as i64)
            }
            None => Err(self.unexpected("DURATION")),
        }
    }

    // ---- stream selectors and pipelines ----

    /// `{ name op "value", ... }`
    fn selector(&mut self) -> PResult<Vec<Matcher>> {
        self.expect(Tok::LBrace, "{")?;
        let mut out = Vec::new();
        if self.eat(&Tok::RBrace) {
            return Ok(out);
        }
        loop {
            let name = self.ident()?;
            let op = match self.peek() {
                Some(Tok::Eq) => MatchOp::Eq,
                Some(Tok::Neq) => MatchOp::Neq,
                Some(Tok::Re) => MatchOp::Re,
                Some(Tok::Nre) => MatchOp::Nre,
                _ => return Err(self.unexpected("=, !=, =~ or !~")),
            };
            self.pos += 1;
            let value = self.string()?;
            let m = Matcher::new(name, op, value).map_err(ParseError::whole)?;
            out.push(m);
            match self.peek() {
                Some(Tok::Comma) => self.pos += 1,
                Some(Tok::RBrace) => {
                    self.pos += 1;
                    return Ok(out);
                }
                _ => return Err(self.unexpected("} or ,")),
            }
        }
    }

    /// Runs `parse` one nesting level deeper, refusing past [`MAX_DEPTH`].
    fn nested<T>(&mut self, parse: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.nesting >= MAX_DEPTH {
            return Err(too_deep());
        }
        self.nesting += 1;
        let out = parse(self);
        self.nesting -= 1;
        out
    }

    /// A log expression: selector then pipeline (no unwrap).
    fn log_expr(&mut self) -> PResult<LogExpr> {
        let matchers = self.selector()?;
        require_selective(&matchers)?;
        let (stages, _) = self.pipeline(false)?;
        Ok(LogExpr { matchers, stages })
    }

    // ---- metric expressions ----

    fn expr(&mut self, min_prec: u8) -> PResult<Expr> {
        self.nested(|p| p.expr_at(min_prec))
    }

    fn expr_at(&mut self, min_prec: u8) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        let mut height = lhs.height();
        loop {
            if height > MAX_DEPTH {
                return Err(too_deep());
            }
            let Some(op) = self.peek_binop() else { return Ok(lhs) };
            let prec = op.precedence();
            if prec < min_prec {
                return Ok(lhs);
            }
            self.pos += 1;
            let return_bool = self.eat_ident("bool");
            if return_bool && !matches!(op, BinOp::Cmp(_)) {
                return Err(self.err_here("bool modifier can only be used on comparison operators".into()));
            }
            let mut matching = VectorMatching::default();
            if let Some(kw @ ("on" | "ignoring")) = self.peek_ident() {
                matching.on = kw == "on";
                self.pos += 1;
                matching.labels = self.label_list()?;
                if let Some(kw @ ("group_left" | "group_right")) = self.peek_ident() {
                    let side = if kw == "group_left" { GroupSide::Left } else { GroupSide::Right };
                    self.pos += 1;
                    let labels = if self.peek() == Some(&Tok::LParen) { self.label_list()? } else { Vec::new() };
                    matching.group = Some((side, labels));
                }
            }
            // `^` is right-associative; everything else left.
            let next_min = if op == BinOp::Pow { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            for (leg, e) in [("left", &lhs), ("right", &rhs)] {
                if let Expr::Log(l) = e {
                    let kind = if l.stages.is_empty() { "MatchersExpr" } else { "PipelineExpr" };
                    return Err(ParseError::whole(format!(
                        "unexpected type for {leg} leg of binary operation ({}): *syntax.{kind}",
                        super::format::binop_symbol(op)
                    )));
                }
            }
            // Prometheus' rules, which Loki shares: label matching needs a
            // vector on both sides; set operators match many-to-many.
            if !matching.labels.is_empty() && (lhs.is_scalar() || rhs.is_scalar()) {
                return Err(ParseError::whole("vector matching only allowed between instant vectors"));
            }
            if op.is_set() && matching.group.is_some() {
                return Err(ParseError::whole(format!("no grouping allowed for \"{}\" operation", format!("{op:?}").to_lowercase())));
            }
            if op.is_set() {
                for (leg, e) in [("left", &lhs), ("right", &rhs)] {
                    if let Expr::Literal(v) = e {
                        return Err(ParseError::whole(format!(
                            "unexpected literal for {leg} leg of logical/set binary operation ({}): {v:.6}",
                            format!("{op:?}").to_lowercase()
                        )));
                    }
                }
            }
            height = 1 + height.max(rhs.height());
            lhs = match (&lhs, &rhs) {
                // Two literals reduce to one, as in Loki (comparisons give 1 or 0).
                (Expr::Literal(a), Expr::Literal(b)) => Expr::Literal(super::eval::fold(op, *a, *b)),
                _ => Expr::Binary(Box::new(BinaryExpr { op, lhs, rhs, return_bool, matching })),
            };
        }
    }

    fn peek_binop(&self) -> Option<BinOp> {
        Some(match self.peek()? {
            Tok::Ident(s) if s == "or" => BinOp::Or,
            Tok::Ident(s) if s == "and" => BinOp::And,
            Tok::Ident(s) if s == "unless" => BinOp::Unless,
            Tok::Neq => BinOp::Cmp(CmpOp::Ne),
            Tok::Other(s) => match s.as_str() {
                "==" => BinOp::Cmp(CmpOp::Eq),
                ">" => BinOp::Cmp(CmpOp::Gt),
                ">=" => BinOp::Cmp(CmpOp::Ge),
                "<" => BinOp::Cmp(CmpOp::Lt),
                "<=" => BinOp::Cmp(CmpOp::Le),
                "+" => BinOp::Add,
                "-" => BinOp::Sub,
                "*" => BinOp::Mul,
                "/" => BinOp::Div,
                "%" => BinOp::Mod,
                "^" => BinOp::Pow,
                _ => return None,
            },
            _ => return None,
        })
    }

    /// A sign binds to a number only (Loki's `literalExpr`).
    fn unary(&mut self) -> PResult<Expr> {
        match self.peek_other() {
            Some(sign @ ("-" | "+")) => {
                let negative = sign == "-";
                self.pos += 1;
                let number = match self.peek() {
                    Some(Tok::Other(w)) => literal(w),
                    _ => None,
                };
                let Some(v) = number else { return Err(self.unexpected("NUMBER")) };
                self.pos += 1;
                let v = v.map_err(ParseError::whole)?;
                Ok(Expr::Literal(if negative { -v } else { v }))
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> PResult<Expr> {
        match self.peek().cloned() {
            Some(Tok::LParen) => {
                self.pos += 1;
                let e = self.expr(0)?;
                self.expect(Tok::RParen, ")")?;
                Ok(e)
            }
            Some(Tok::LBrace) => Ok(Expr::Log(self.log_expr()?)),
            Some(Tok::Other(w)) => match literal(&w) {
                Some(v) => {
                    self.pos += 1;
                    Ok(Expr::Literal(v.map_err(ParseError::whole)?))
                }
                None => Err(self.unexpected("")),
            },
            Some(Tok::Ident(name)) => {
                if let Some(op) = RangeOp::from_name(&name) {
                    self.pos += 1;
                    return self.range_agg(op);
                }
                if let Some(op) = VecOp::from_name(&name) {
                    self.pos += 1;
                    return self.vector_agg(op);
                }
                match name.as_str() {
                    "vector" => {
                        self.pos += 1;
                        self.expect(Tok::LParen, "(")?;
                        let v = self.number()?;
                        self.expect(Tok::RParen, ")")?;
                        Ok(Expr::VectorLit(v))
                    }
                    "label_replace" => {
                        self.pos += 1;
                        self.expect(Tok::LParen, "(")?;
                        let inner = self.expr(0)?;
                        let mut args = Vec::new();
                        for _ in 0..4 {
                            self.expect(Tok::Comma, ",")?;
                            args.push(self.string()?);
                        }
                        self.expect(Tok::RParen, ")")?;
                        let re = regex::Regex::new(&format!("^(?s:{})$", args[3])).map_err(|e| {
                            ParseError::whole(format!("invalid regex in label_replace: {}", super::extract::go_regex_error(&args[3], &e)))
                        })?;
                        Ok(Expr::LabelReplace(Box::new(LabelReplace {
                            inner,
                            dst: args[0].clone(),
                            replacement: args[1].clone(),
                            src: args[2].clone(),
                            regex: args[3].clone(),
                            re,
                        })))
                    }
                    _ => Err(self.unexpected("")),
                }
            }
            _ => Err(self.unexpected("")),
        }
    }

    fn label_list(&mut self) -> PResult<Vec<String>> {
        self.expect(Tok::LParen, "(")?;
        let mut out = Vec::new();
        if self.eat(&Tok::RParen) {
            return Ok(out);
        }
        if !matches!(self.peek(), Some(Tok::Ident(_))) || self.is_function_call() {
            return Err(self.unexpected("IDENTIFIER or )"));
        }
        loop {
            out.push(self.ident()?);
            if self.eat(&Tok::Comma) {
                continue;
            }
            self.expect(Tok::RParen, ", or )")?;
            return Ok(out);
        }
    }

    fn grouping(&mut self) -> PResult<Option<Grouping>> {
        match self.peek_ident() {
            Some(kw @ ("by" | "without")) => {
                let without = kw == "without";
                self.pos += 1;
                Ok(Some(Grouping { without, labels: self.label_list()? }))
            }
            _ => Ok(None),
        }
    }

    fn range_agg(&mut self, op: RangeOp) -> PResult<Expr> {
        self.expect(Tok::LParen, "(")?;
        let number_first = matches!(self.peek(), Some(Tok::Other(w)) if parse_number(w).is_some());
        let param = if op == RangeOp::QuantileOverTime {
            if matches!(self.peek(), Some(Tok::LBrace | Tok::LParen)) {
                return Err(ParseError::whole("parameter required for operation quantile_over_time"));
            }
            if !number_first {
                return Err(self.unexpected("NUMBER or { or ("));
            }
            let p = self.number()?;
            self.expect(Tok::Comma, ",")?;
            Some(p)
        } else {
            if number_first && self.peek_at(1) == Some(&Tok::Comma) {
                let w = self.peek_other().unwrap_or_default();
                return Err(ParseError::whole(format!("parameter {w} not supported for operation {}", op.name())));
            }
            None
        };
        // `(selector | pipeline)[range]` or `selector [range] pipeline` or
        // `selector pipeline [range]`.
        let (matchers, mut stages, mut unwrap, range) = if self.eat(&Tok::LParen) {
            let matchers = self.selector()?;
            let (stages, unwrap) = self.pipeline(true)?;
            self.expect(Tok::RParen, ")")?;
            let range = self.range()?;
            (matchers, stages, unwrap, range)
        } else {
            let matchers = self.selector()?;
            if self.peek() == Some(&Tok::LBracket) {
                let range = self.range()?;
                let (stages, unwrap) = self.pipeline(true)?;
                (matchers, stages, unwrap, range)
            } else {
                let (stages, unwrap) = self.pipeline(true)?;
                let range = self.range()?;
                (matchers, stages, unwrap, range)
            }
        };
        require_selective(&matchers)?;
        let offset = if self.eat_ident("offset") {
            // Loki reads a negative offset (`offset -5m`: the window moves forward).
            let negative = self.peek_other() == Some("-");
            if negative {
                self.pos += 1;
            }
            let d = self.duration()?;
            if negative { -d } else { d }
        } else {
            0
        };
        self.expect(Tok::RParen, ")")?;
        let grouping = self.grouping()?;
        if op.needs_unwrap() && unwrap.is_none() {
            return Err(ParseError::whole(format!("invalid aggregation {} without unwrap", op_name(op))));
        }
        if !op.needs_unwrap() && !matches!(op, RangeOp::Rate | RangeOp::AbsentOverTime) && unwrap.is_some() {
            return Err(ParseError::whole(format!("invalid aggregation {} with unwrap", op_name(op))));
        }
        let groupable = matches!(
            op,
            RangeOp::AvgOverTime
                | RangeOp::MinOverTime
                | RangeOp::MaxOverTime
                | RangeOp::StdvarOverTime
                | RangeOp::StddevOverTime
                | RangeOp::QuantileOverTime
                | RangeOp::FirstOverTime
                | RangeOp::LastOverTime
        );
        if grouping.is_some() && !groupable {
            return Err(ParseError::whole(format!("grouping not allowed for {} aggregation", op_name(op))));
        }
        stages.shrink_to_fit();
        unwrap.as_mut().map(|u| u.post_filters.shrink_to_fit());
        Ok(Expr::Range(RangeAgg { op, param, log: LogExpr { matchers, stages }, unwrap, range, offset, grouping }))
    }

    /// `[5m]`, read as Prometheus reads durations. Errors sit where Loki's
    /// lexer puts them: at the bracket's column, line 0 (see
    /// [`loki_forgets_line`]).
    fn range(&mut self) -> PResult<i64> {
        let col = self.toks.get(self.pos).map_or(self.end.1, |s| s.col);
        self.expect(Tok::LBracket, "[")?;
        let err = |msg: String| ParseError::at(0, col, msg);
        let w = match (self.peek_other(), self.peek_at(1)) {
            (Some(w), Some(Tok::RBracket)) => w.to_string(),
            _ => return Err(err("missing closing ']' in duration".into())),
        };
        let d = crate::units::parse_prometheus_duration(&w).map_err(|e| err(e.to_string()))?;
        self.pos += 2;
        Ok(d)
    }

    fn vector_agg(&mut self, op: VecOp) -> PResult<Expr> {
        let mut grouping = self.grouping()?;
        self.expect(Tok::LParen, "(")?;
        let name = op.name();
        let number_first = matches!(self.peek(), Some(Tok::Other(w)) if parse_number(w).is_some()) && self.peek_at(1) == Some(&Tok::Comma);
        let param = if number_first {
            let w = self.peek_other().unwrap_or_default().to_string();
            if !op.takes_param() {
                return Err(ParseError::whole(format!("unsupported parameter for operation {name}({w},")));
            }
            let p = self.number()?;
            if p.fract() != 0.0 || w.contains(['.', 'e', 'E']) {
                return Err(ParseError::whole(format!("invalid parameter {name}({w},")));
            }
            if p <= 0.0 {
                return Err(ParseError::whole(format!("invalid parameter (must be greater than 0) {name}({w}")));
            }
            self.expect(Tok::Comma, ",")?;
            Some(p)
        } else {
            None
        };
        let inner = self.expr(0)?;
        if matches!(inner, Expr::Log(_)) {
            // Loki's grammar wants a metric query here: it stops at the
            // range or the parenthesis after the log query.
            return Err(self.unexpected(""));
        }
        if op.takes_param() && param.is_none() {
            return Err(ParseError::whole(format!("parameter required for operation {name}")));
        }
        self.expect(Tok::RParen, ")")?;
        if grouping.is_none() {
            grouping = self.grouping()?;
        }
        if matches!(op, VecOp::Sort | VecOp::SortDesc) && grouping.is_some() {
            return Err(ParseError::whole("sort and sort_desc do not take a grouping"));
        }
        if op == VecOp::ApproxTopk && grouping.is_some() {
            return Err(ParseError::whole("grouping not allowed for approx_topk aggregation"));
        }
        Ok(Expr::Vector(VectorAgg { op, param, inner: Box::new(inner), grouping }))
    }
}

fn op_name(op: RangeOp) -> &'static str {
    match op {
        RangeOp::Rate => "rate",
        RangeOp::RateCounter => "rate_counter",
        RangeOp::CountOverTime => "count_over_time",
        RangeOp::BytesRate => "bytes_rate",
        RangeOp::BytesOverTime => "bytes_over_time",
        RangeOp::AbsentOverTime => "absent_over_time",
        RangeOp::SumOverTime => "sum_over_time",
        RangeOp::AvgOverTime => "avg_over_time",
        RangeOp::MinOverTime => "min_over_time",
        RangeOp::MaxOverTime => "max_over_time",
        RangeOp::StdvarOverTime => "stdvar_over_time",
        RangeOp::StddevOverTime => "stddev_over_time",
        RangeOp::QuantileOverTime => "quantile_over_time",
        RangeOp::FirstOverTime => "first_over_time",
        RangeOp::LastOverTime => "last_over_time",
    }
}

/// Whether Loki's lexer finishes this token with `Scanner.Next()`, which
/// resets the reported line to 0: ranges, durations, sizes, parser flags and
/// two-character operators. Its errors at such a token say "line 0".
fn loki_forgets_line(t: &Tok) -> bool {
    match t {
        Tok::LBracket | Tok::PipeExact | Tok::PipeMatch | Tok::Neq | Tok::Re | Tok::Nre => true,
        Tok::Other(w) => {
            matches!(w.as_str(), "==" | ">=" | "<=" | "|>" | "!>")
                || w.starts_with("--")
                || (w.starts_with(|c: char| c.is_ascii_digit()) && parse_number(w).is_none())
        }
        _ => false,
    }
}

/// The token Loki's lexer makes of a function name before `(`, for the
/// functions its syntax errors name by token (`label_replace` and `ip` are
/// named as written).
fn function_token(w: &str) -> Option<String> {
    let known = RangeOp::from_name(w).is_some()
        || VecOp::from_name(w).is_some()
        || matches!(w, "vector" | "bytes" | "duration" | "duration_seconds");
    known.then(|| match w {
        "bytes" | "duration" | "duration_seconds" => format!("{}_CONV", w.to_uppercase()),
        _ => w.to_uppercase(),
    })
}

/// A number literal of a metric expression, as Go's `strconv.ParseFloat`
/// reads what Go's scanner lexes: decimal, or a hexadecimal float
/// (`0x1.8p3`). `None`: not a number at all; an error: a number Go cannot
/// read as a float (`0x1A`, `0o17`, `0b1010`).
fn literal(w: &str) -> Option<Result<f64, String>> {
    if let Some(v) = parse_number(w) {
        return Some(Ok(v));
    }
    let lower = w.to_ascii_lowercase();
    if !(lower.starts_with("0x") || lower.starts_with("0o") || lower.starts_with("0b")) {
        return None;
    }
    let invalid = || Err(format!("unable to parse literal as a float: strconv.ParseFloat: parsing {w:?}: invalid syntax"));
    let Some(hex) = lower.strip_prefix("0x") else { return Some(invalid()) };
    let Some((mantissa, exp)) = hex.split_once('p') else { return Some(invalid()) };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let Ok(exp) = exp.parse::<i32>() else { return Some(invalid()) };
    if int.is_empty() && frac.is_empty() {
        return Some(invalid());
    }
    let mut v = 0f64;
    for c in int.chars().chain(frac.chars()) {
        let Some(d) = c.to_digit(16) else { return Some(invalid()) };
        v = v * 16.0 + f64::from(d);
    }
    Some(Ok(v * 2f64.powi(exp - 4 * frac.len() as i32)))
}

/// A plain number (decimal, `NaN`, `Inf` are not words the lexer makes).
fn parse_number(w: &str) -> Option<f64> {
    let b = w.as_bytes();
    let starts_like_a_number = b.first()?.is_ascii_digit() || (b[0] == b'.' && b.get(1).is_some_and(u8::is_ascii_digit));
    if starts_like_a_number && b.iter().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-')) {
        w.parse().ok()
    } else {
        None
    }
}

fn require_selective(matchers: &[Matcher]) -> PResult<()> {
    if matchers.iter().any(|m| !m.matches_empty()) {
        Ok(())
    } else {
        Err(ParseError::whole(EMPTY_COMPATIBLE))
    }
}

/// Parses any LogQL expression: a log query or a metric query.
pub fn parse_expr(src: &str) -> PResult<Expr> {
    let mut p = Parser::new(src)?;
    if p.peek().is_none() {
        return Err(p.unexpected(""));
    }
    let e = p.expr(0)?;
    if p.peek().is_some() {
        return Err(p.unexpected(""));
    }
    Ok(e)
}

/// Parses a bare stream selector, as in `/series?match[]=`.
pub fn parse_selector(src: &str) -> PResult<Vec<Matcher>> {
    let mut p = Parser::new(src)?;
    let m = p.selector()?;
    if p.peek().is_some() {
        return Err(p.unexpected(""));
    }
    require_selective(&m)?;
    Ok(m)
}

/// Parses a stream's label set as pushed by clients (`{a="b", c="d"}`):
/// only `=` matchers, in the order given.
pub fn parse_labels(src: &str) -> PResult<Vec<(String, String)>> {
    let mut p = Parser::new(src)?;
    let m = p.selector()?;
    if p.peek().is_some() {
        return Err(p.unexpected(""));
    }
    m.into_iter()
        .map(|m| match m.op {
            MatchOp::Eq => Ok((m.name, m.value)),
            _ => Err(ParseError::whole(format!("label {} must be set with '=' in a stream's labels", m.name))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(src: &str) -> LogExpr {
        match parse_expr(src).unwrap() {
            Expr::Log(l) => l,
            e => panic!("not a log query: {e:?}"),
        }
    }

    #[test]
    fn parses_selector_and_filter_chain() {
        let q = log(r#"{app="api", env=~"prod|stage"} |= "error" != `timeout` |~ "code=5\\d\\d""#);
        assert_eq!(q.matchers.len(), 2);
        assert_eq!(q.matchers[1].op, MatchOp::Re);
        assert!(q.matchers[1].matches(Some("stage")));
        assert!(!q.matchers[1].matches(Some("production")), "regex matchers are anchored");
        assert_eq!(q.stages.len(), 3);
    }

    #[test]
    fn literals_reduce_and_read_like_go_floats() {
        let lit = |q: &str| match parse_expr(q) {
            Ok(Expr::Literal(v)) => v,
            other => panic!("{q}: {other:?}"),
        };
        assert_eq!(lit("7 == 7"), 1.0);
        assert_eq!(lit("2 > 7"), 0.0);
        assert!(lit("10 / 0").is_nan());
        assert!(lit("-10 % 0").is_nan());
        assert_eq!(lit("0x1p3"), 8.0);
        assert_eq!(lit("0x1.8p3"), 12.0);
        for bad in ["0x1A", "0o17", "0b1010"] {
            let e = parse_expr(bad).unwrap_err().to_string();
            assert!(e.contains("unable to parse literal as a float"), "{bad}: {e}");
        }
    }

    #[test]
    fn loki_rejects_what_its_grammar_does() {
        let err = |q: &str| parse_expr(q).unwrap_err().to_string();
        assert!(err("1 and 2").contains("unexpected literal for left leg of logical/set binary operation (and): 1.000000"));
        assert!(err(r#"-count_over_time({app="foo"}[1m])"#).contains("expecting NUMBER"));
        assert!(err("-(1)").contains("expecting NUMBER"), "a sign binds to a number only");
        assert!(err(r#"sum(count_over_time({a="b"}[1m])) bool > 1"#).contains("syntax error: unexpected bool"));
        assert!(err(r#"approx_topk(2, count_over_time({a="b"}[1m])) by (a)"#).contains("grouping not allowed for approx_topk aggregation"));
        let full = |q: &str| parse_expr(q).unwrap_err().to_string();
        assert_eq!(full(r#"min({ foo = "bar" }[5m])"#), "parse error at line 0, col 20: syntax error: unexpected RANGE");
        assert_eq!(full(r#"stddev({ foo = "bar" })"#), "parse error at line 1, col 23: syntax error: unexpected )");
        assert_eq!(full(r#"sum(3 ,count_over_time({ foo = "bar" }[5h]))"#), "parse error : unsupported parameter for operation sum(3,");
        assert_eq!(full(r#"topk(count_over_time({ foo = "bar" }[5h]))"#), "parse error : parameter required for operation topk");
        assert_eq!(full(r#"bottomk(1.2,count_over_time({ foo = "bar" }[5h]))"#), "parse error : invalid parameter bottomk(1.2,");
        assert_eq!(
            full(r#"count without (rate({namespace="apps"}[15s]))"#),
            "parse error at line 1, col 16: syntax error: unexpected RATE, expecting IDENTIFIER or )"
        );
        assert_eq!(
            full(r#"{foo="bar"} + {foo="bar"}"#),
            "parse error : unexpected type for left leg of binary operation (+): *syntax.MatchersExpr"
        );
        assert_eq!(full(r#"rate({ foo = "bar" }[5minutes])"#), r#"parse error at line 0, col 21: unknown unit "minutes" in duration "5minutes""#);
        assert_eq!(full(r#"rate({ foo = "bar" }[5)"#), "parse error at line 0, col 21: missing closing ']' in duration");
        assert_eq!(
            full(r#"quantile_over_time({a="b"} | unwrap x [5m])"#),
            "parse error : parameter required for operation quantile_over_time"
        );
        assert_eq!(full(r#"{foo="bar}"#), "parse error at line 1, col 6: literal not terminated");
        // Loki's grammar accepts these.
        assert!(parse_expr(r#"quantile_over_time(.99, {a="b"} | unwrap x [5m])"#).is_ok());
        assert!(parse_expr(r#"max_over_time({a="b"} | unwrap x [5m] offset -5m)"#).is_ok());
        assert!(parse_expr(r#"sum(rate({a="b"}[5m])) > 1e-3"#).is_ok());
        assert!(parse_expr(r#"{a="b"} | logfmt | counter>-1 | took > -5s | n < +2"#).is_ok());
        let c = r#"count_over_time({a="b"}[1m])"#;
        assert!(err(&format!("1 + on (app) {c}")).contains("vector matching only allowed between instant vectors"));
        assert!(err("1 + ignoring (app) 1").contains("vector matching only allowed between instant vectors"));
        assert!(parse_expr(&format!("{c} + on () group_left (baz) 1")).is_ok(), "empty matching labels are allowed with a scalar");
        assert!(err(&format!("{c} or ignoring (x) group_left {c}")).contains(r#"no grouping allowed for "or" operation"#));
        assert!(err(&format!("{c} unless on (x) group_right {c}")).contains(r#"no grouping allowed for "unless" operation"#));
    }

    /// A client's deeply nested query is an error, not a stack overflow.
    #[test]
    fn nesting_is_bounded() {
        let deep = |open: &str, mid: &str, close: &str, n: usize| format!("{}{mid}{}", open.repeat(n), close.repeat(n));
        let err = |q: &str| parse_expr(q).unwrap_err().to_string();
        let msg = "parse error : query nests more than 128 levels deep";
        assert_eq!(err(&deep("(", "vector(1)", ")", 100_000)), msg);
        assert_eq!(err(&deep("sum(", "vector(1)", ")", 200)), msg);
        assert_eq!(err(&vec!["vector(1)"; 5_000].join(" + ")), msg);
        assert_eq!(err(&vec!["vector(1)"; 5_000].join(" ^ ")), msg);
        let filters = format!(r#"{{a="b"}} | {}"#, vec![r#"x="1""#; 5_000].join(" and "));
        assert_eq!(err(&filters), msg);
        let groups = format!(r#"{{a="b"}} | {}x="1"{}"#, "(".repeat(50_000), ")".repeat(50_000));
        assert_eq!(err(&groups), msg);
        // A long number lexes in linear time.
        assert!(parse_expr(&"1".repeat(1 << 20)).is_ok());
        // Up to the limit, queries parse.
        assert!(parse_expr(&deep("sum(", "vector(1)", ")", 100)).is_ok());
        assert!(parse_expr(&vec!["vector(1)"; 120].join(" + ")).is_ok());
        assert!(parse_expr(&format!(r#"{{a="b"}} | {}"#, vec![r#"x="1""#; 120].join(" or "))).is_ok());
    }

    #[test]
    fn errors_carry_line_and_column_like_loki() {
        let e = parse_expr(r#"{app="api""#).unwrap_err();
        assert_eq!(e.to_string(), "parse error at line 1, col 11: syntax error: unexpected $end, expecting } or ,");
        let e = parse_expr("{app=\"a\"}\n |= 5").unwrap_err();
        assert_eq!(e.to_string(), "parse error at line 2, col 5: syntax error: unexpected NUMBER, expecting STRING or ip");
        let e = parse_expr(r#"{app=~".*"}"#).unwrap_err();
        assert!(e.to_string().starts_with("parse error : queries require at least one regexp"), "{e}");
        let e = parse_expr(r#"{app="a"} |~ "(""#).unwrap_err();
        assert!(e.to_string().starts_with("parse error at line 1, col 14: error parsing regexp"), "{e}");
    }

    #[test]
    fn go_string_escapes() {
        let l = parse_labels(r#"{a="q\"x\\y\n\u00e9\101", b=`raw\n`}"#).unwrap();
        assert_eq!(l, vec![("a".into(), "q\"x\\y\né\u{41}".into()), ("b".into(), "raw\\n".into())]);
        assert!(parse_labels(r#"{a=~"x"}"#).is_err());
        assert!(parse_labels(r#"{a="x"} junk"#).is_err());
    }

    #[test]
    fn metric_queries() {
        let e = parse_expr(r#"sum by (level) (rate({app="a"} | logfmt | status >= 500 [1m] offset 5m))"#).unwrap();
        let Expr::Vector(v) = e else { panic!() };
        assert_eq!(v.op, VecOp::Sum);
        assert_eq!(v.grouping.unwrap().labels, vec!["level"]);
        let Expr::Range(r) = *v.inner else { panic!() };
        assert_eq!((r.op, r.range, r.offset), (RangeOp::Rate, 60_000_000_000, 300_000_000_000));
        let e = parse_expr(r#"quantile_over_time(0.5, {app="a"} | logfmt | unwrap duration(took) | lvl="x" [5m]) by (pod)"#).unwrap();
        let Expr::Range(r) = e else { panic!() };
        assert_eq!(r.param, Some(0.5));
        assert_eq!(r.unwrap.as_ref().map(|u| u.post_filters.len()), Some(1));
        let e = parse_expr(r#"1 + 2 * 3 ^ 2 ^ 1"#).unwrap();
        assert!(e.is_scalar());
        let e = parse_expr(r#"count_over_time({a="b"}[1m]) > bool on (a) group_left (c) count_over_time({a="b"}[1m])"#).unwrap();
        let Expr::Binary(b) = e else { panic!() };
        assert!(b.return_bool && b.matching.on && b.matching.group.is_some());
        assert!(parse_expr(r#"sum_over_time({a="b"}[1m])"#).is_err(), "needs unwrap");
        assert!(parse_expr(r#"count_over_time({a="b"} | drop [1m])"#).unwrap_err().to_string().contains("expecting IDENTIFIER"));
        let e = parse_expr(r#"count_over_time({a="b"} |= "x" or ip("10.0.0.0/8") | json | a="b", c > 1 or (d="e" and f!~"g") [1m])"#);
        assert!(e.is_ok(), "{e:?}");
    }
}
