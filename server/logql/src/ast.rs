//! What a parsed LogQL query is: log queries (selector + pipeline) and
//! metric queries (range and vector aggregations, binary operations,
//! literals).

use std::fmt;

use memchr::memmem;
use regex::Regex;

use super::extract::{JsonExpressions, LogfmtExpressions, PatternParser, RegexpParser};

/// The pattern of a `|>` / `!>` line filter: literals in order with `<_>`
/// (or any `<name>`) wildcards between them. A leading literal must start
/// the line and a trailing one must end it.
#[derive(Clone, Debug)]
pub struct LinePattern {
    literals: Vec<String>,
    anchored_start: bool,
    anchored_end: bool,
}

impl LinePattern {
    pub fn new(pattern: &str) -> Result<Self, CompileError> {
        let re = Regex::new(r"<[A-Za-z_][A-Za-z0-9_]*>").map_err(|e| CompileError::Regex(e.to_string()))?;
        let mut literals = Vec::new();
        let mut last = 0;
        for m in re.find_iter(pattern) {
            if m.as_str() != "<_>" {
                return Err(CompileError::NamedCaptureInFilter(m.as_str().into()));
            }
            literals.push(pattern[last..m.start()].to_string());
            last = m.end();
        }
        literals.push(pattern[last..].to_string());
        if literals.len() == 1 {
            // No wildcard: the pattern is the whole line.
            return Ok(Self { literals, anchored_start: true, anchored_end: true });
        }
        let anchored_start = !literals[0].is_empty();
        let anchored_end = !literals[literals.len() - 1].is_empty();
        literals.retain(|l| !l.is_empty());
        Ok(Self { literals, anchored_start, anchored_end })
    }

    pub fn matches(&self, line: &str) -> bool {
        if self.literals.len() == 1 && self.anchored_start && self.anchored_end {
            return line == self.literals[0];
        }
        let mut rest = line;
        let n = self.literals.len();
        for (i, lit) in self.literals.iter().enumerate() {
            if i == 0 && self.anchored_start {
                match rest.strip_prefix(lit.as_str()) {
                    Some(r) => rest = r,
                    None => return false,
                }
                continue;
            }
            if i == n - 1 && self.anchored_end {
                return rest.ends_with(lit.as_str());
            }
            match rest.find(lit.as_str()) {
                Some(p) => rest = &rest[p + lit.len()..],
                None => return false,
            }
        }
        true
    }
}
use super::template::Template;
use crate::CompileError;

/// How a label matcher compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Neq,
    Re,
    Nre,
}

/// `name op "value"` in a stream selector or a string label filter.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// Anchored regex for `=~` / `!~`.
    re: Option<Regex>,
}

impl Matcher {
    /// Builds a matcher; regexes are anchored at both ends as in Prometheus
    /// (and a bad one is named the way Go names it, anchors included).
    pub fn new(name: String, op: MatchOp, value: String) -> Result<Self, CompileError> {
        let re = match op {
            MatchOp::Re | MatchOp::Nre => {
                let anchored = format!("^(?s:{value})$");
                Some(Regex::new(&anchored).map_err(|e| CompileError::Regex(super::extract::go_regex_error(&anchored, &e)))?)
            }
            _ => None,
        };
        Ok(Self { name, op, value, re })
    }

    /// Whether a label value (absent = empty string) satisfies the matcher.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let v = value.unwrap_or("");
        match (&self.op, &self.re) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::Neq, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::Nre, Some(re)) => !re.is_match(v),
            (_, None) => false,
        }
    }

    /// Whether the empty value matches: such a matcher cannot select streams
    /// on its own.
    pub fn matches_empty(&self) -> bool {
        self.matches(None)
    }
}

/// How a line filter tests a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LineFilterOp {
    /// `|=`: contains.
    Contains,
    /// `!=`: does not contain.
    NotContains,
    /// `|~`: matches the regex somewhere.
    Match,
    /// `!~`: does not match the regex.
    NotMatch,
    /// `|>`: matches the pattern.
    Pattern,
    /// `!>`: does not match the pattern.
    NotPattern,
}

impl LineFilterOp {
    pub fn negated(self) -> bool {
        matches!(self, Self::NotContains | Self::NotMatch | Self::NotPattern)
    }
}

/// One alternative of a line filter as written: what travels to the
/// ingesters that scan their unflushed entries (see [`LineFilterSpec`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LineTestSpec {
    /// A substring.
    Text(String),
    /// A regular expression.
    Regex(String),
    /// A `|>` pattern.
    Pattern(String),
    /// `ip("…")`: an address, range or CIDR.
    Ip(String),
}

impl LineTestSpec {
    /// The matcher; errors name the problem in Loki's words.
    pub fn compile(&self) -> Result<LineTest, CompileError> {
        Ok(match self {
            LineTestSpec::Text(s) => LineTest::Text(memmem::Finder::new(s.as_bytes()).into_owned()),
            LineTestSpec::Regex(s) => {
                let re = Regex::new(s).map_err(|e| CompileError::Regex(super::extract::go_regex_error(s, &e)))?;
                // Without anchors and word boundaries, a match inside a line
                // is a match inside any text holding the line.
                let look_free = regex_syntax::parse(s).is_ok_and(|h| h.properties().look_set().is_empty());
                let within = look_free.then(|| regex::bytes::Regex::new(s).ok()).flatten();
                LineTest::Regex(re, within)
            }
            LineTestSpec::Pattern(s) => LineTest::Pattern(LinePattern::new(s)?),
            LineTestSpec::Ip(s) => LineTest::Ip(super::ip::IpMatcher::new(s)?),
        })
    }
}

/// One alternative of a line filter.
#[derive(Clone, Debug)]
pub enum LineTest {
    Text(memmem::Finder<'static>),
    /// The regex, and the same over bytes when it looks at no boundaries
    /// (see [`LineFilter::may_pass_within`]).
    Regex(Regex, Option<regex::bytes::Regex>),
    Pattern(LinePattern),
    Ip(super::ip::IpMatcher),
}

impl LineTest {
    fn test(&self, line: &str) -> bool {
        match self {
            LineTest::Text(f) => f.find(line.as_bytes()).is_some(),
            LineTest::Regex(re, _) => re.is_match(line),
            LineTest::Pattern(p) => p.matches(line),
            LineTest::Ip(m) => m.line_contains(line),
        }
    }
}

/// A line filter as written (operator and alternatives): serializable, so
/// a querier can hand its leading line filters to the ingesters.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineFilterSpec {
    pub op: LineFilterOp,
    pub alternatives: Vec<LineTestSpec>,
}

impl LineFilterSpec {
    pub fn compile(&self) -> Result<LineFilter, CompileError> {
        let tests = self.alternatives.iter().map(LineTestSpec::compile).collect::<Result<_, _>>()?;
        Ok(LineFilter::new(self.clone(), tests))
    }
}

/// `|= "a" or "b"`: passes a line when any alternative matches (for the
/// negated operators: when none does).
#[derive(Clone, Debug)]
pub struct LineFilter {
    pub spec: LineFilterSpec,
    tests: Vec<LineTest>,
}

impl LineFilter {
    /// `tests`: `spec`'s alternatives, compiled, in order.
    pub(super) fn new(spec: LineFilterSpec, tests: Vec<LineTest>) -> Self {
        Self { spec, tests }
    }

    /// Whether `line` passes this filter.
    pub fn matches(&self, line: &str) -> bool {
        let any = self.tests.iter().any(|t| t.test(line));
        any != self.spec.op.negated()
    }

    /// False when no line lying whole inside `text` (bytes that hold lines
    /// among others, like a decompressed block) can pass: a `|=` whose
    /// strings, or a `|~` whose regexes, find nothing in `text`. True when
    /// unsure (negations, patterns, regexes with anchors or `\b`).
    pub fn may_pass_within(&self, text: &[u8]) -> bool {
        if self.spec.op.negated() || self.spec.op == LineFilterOp::Pattern {
            return true;
        }
        self.tests.iter().any(|t| match t {
            LineTest::Text(f) => f.find(text).is_some(),
            LineTest::Regex(_, Some(within)) => within.is_match(text),
            _ => true,
        })
    }

    /// Strings one of which every passing line contains (a `|=` of plain
    /// strings); `None` when the filter promises none (other operators, and
    /// regexes, patterns and addresses).
    pub fn required_strings(&self) -> Option<impl Iterator<Item = &[u8]>> {
        let plain = self.spec.op == LineFilterOp::Contains && self.tests.iter().all(|t| matches!(t, LineTest::Text(_)));
        plain.then(|| {
            self.tests.iter().filter_map(|t| match t {
                LineTest::Text(f) => Some(f.needle()),
                _ => None,
            })
        })
    }
}

/// Comparison of a numeric label filter or a binary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    pub fn apply(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
        }
    }
}

/// How the label value of a numeric filter is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumKind {
    Number,
    Duration,
    Bytes,
}

/// `| a="x" and b > 5 or ...`
#[derive(Clone, Debug)]
pub enum LabelFilter {
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
    Str(Matcher),
    Num { name: String, op: CmpOp, value: f64, kind: NumKind },
    Ip { name: String, negate: bool, pattern: String, matcher: super::ip::IpMatcher },
}

impl LabelFilter {
    /// Levels of the tree (a single filter is 1), at most
    /// [`MAX_DEPTH`](super::parser::MAX_DEPTH).
    pub fn height(&self) -> usize {
        match self {
            LabelFilter::And(a, b) | LabelFilter::Or(a, b) => 1 + a.height().max(b.height()),
            _ => 1,
        }
    }

    /// Adds the labels this filter reads to `out`.
    pub fn names(&self, out: &mut Vec<String>) {
        match self {
            LabelFilter::And(a, b) | LabelFilter::Or(a, b) => {
                a.names(out);
                b.names(out);
            }
            LabelFilter::Str(m) => out.push(m.name.clone()),
            LabelFilter::Num { name, .. } | LabelFilter::Ip { name, .. } => out.push(name.clone()),
        }
    }
}

/// `| label_format dst="template"` or `dst=src`.
#[derive(Clone, Debug)]
pub enum LabelFmt {
    Template(String, Template),
    Rename(String, String),
}

/// A label named in `drop`/`keep`, optionally only when it matches.
#[derive(Clone, Debug)]
pub enum LabelSelect {
    Name(String),
    Matching(Matcher),
}

/// How `unwrap` turns a label value into a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnwrapConv {
    Float,
    Bytes,
    Duration,
    /// `duration_seconds(...)`: the same conversion as `duration(...)`.
    DurationSeconds,
}

/// `| unwrap [bytes|duration|duration_seconds](label)` and the label
/// filters that follow it.
#[derive(Clone, Debug)]
pub struct Unwrap {
    pub label: String,
    pub conv: UnwrapConv,
    pub post_filters: Vec<LabelFilter>,
}

/// One stage of a log pipeline.
#[derive(Clone, Debug)]
pub enum Stage {
    LineFilter(LineFilter),
    Json(Option<JsonExpressions>),
    Logfmt { strict: bool, keep_empty: bool, exprs: Option<LogfmtExpressions> },
    Regexp(RegexpParser),
    Pattern(PatternParser),
    Unpack,
    LabelFilter(LabelFilter),
    LineFormat(Template),
    LabelFormat(Vec<LabelFmt>),
    Decolorize,
    Drop(Vec<LabelSelect>),
    Keep(Vec<LabelSelect>),
}

/// A stream selector and its pipeline.
#[derive(Clone, Debug)]
pub struct LogExpr {
    pub matchers: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

impl LogExpr {
    /// The line filters before the first other stage: they test the raw
    /// line, so they can run while chunks are scanned.
    pub fn leading_line_filters(&self) -> Vec<LineFilter> {
        self.stages
            .iter()
            .map_while(|s| match s {
                Stage::LineFilter(f) => Some(f.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether every stage is a line filter (no labels change).
    pub fn only_line_filters(&self) -> bool {
        self.stages.iter().all(|s| matches!(s, Stage::LineFilter(_)))
    }
}

/// Range aggregation functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeOp {
    Rate,
    RateCounter,
    CountOverTime,
    BytesRate,
    BytesOverTime,
    AbsentOverTime,
    SumOverTime,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    StdvarOverTime,
    StddevOverTime,
    QuantileOverTime,
    FirstOverTime,
    LastOverTime,
}

/// Each range function's LogQL name.
const RANGE_OPS: [(&str, RangeOp); 15] = [
    ("rate", RangeOp::Rate),
    ("rate_counter", RangeOp::RateCounter),
    ("count_over_time", RangeOp::CountOverTime),
    ("bytes_rate", RangeOp::BytesRate),
    ("bytes_over_time", RangeOp::BytesOverTime),
    ("absent_over_time", RangeOp::AbsentOverTime),
    ("sum_over_time", RangeOp::SumOverTime),
    ("avg_over_time", RangeOp::AvgOverTime),
    ("min_over_time", RangeOp::MinOverTime),
    ("max_over_time", RangeOp::MaxOverTime),
    ("stdvar_over_time", RangeOp::StdvarOverTime),
    ("stddev_over_time", RangeOp::StddevOverTime),
    ("quantile_over_time", RangeOp::QuantileOverTime),
    ("first_over_time", RangeOp::FirstOverTime),
    ("last_over_time", RangeOp::LastOverTime),
];

impl RangeOp {
    pub fn from_name(s: &str) -> Option<Self> {
        RANGE_OPS.iter().find(|(n, _)| *n == s).map(|(_, op)| *op)
    }

    /// The function's name in LogQL.
    pub fn name(self) -> &'static str {
        RANGE_OPS.iter().find(|(_, op)| *op == self).map_or("", |(n, _)| n)
    }

    /// Functions that need `unwrap`.
    pub fn needs_unwrap(self) -> bool {
        !matches!(self, Self::Rate | Self::CountOverTime | Self::BytesRate | Self::BytesOverTime | Self::AbsentOverTime)
    }
}

/// `by (a, b)` or `without (a, b)`.
#[derive(Clone, Debug, Default)]
pub struct Grouping {
    pub without: bool,
    pub labels: Vec<String>,
}

/// `op(log_expr [range] offset d)` with optional parameter and grouping.
#[derive(Clone, Debug)]
pub struct RangeAgg {
    pub op: RangeOp,
    pub param: Option<f64>,
    pub log: LogExpr,
    pub unwrap: Option<Unwrap>,
    pub range: i64,
    pub offset: i64,
    pub grouping: Option<Grouping>,
}

/// Vector aggregation operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VecOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Sort,
    SortDesc,
    ApproxTopk,
}

/// Each vector aggregation's LogQL name.
const VEC_OPS: [(&str, VecOp); 12] = [
    ("sum", VecOp::Sum),
    ("avg", VecOp::Avg),
    ("min", VecOp::Min),
    ("max", VecOp::Max),
    ("count", VecOp::Count),
    ("stddev", VecOp::Stddev),
    ("stdvar", VecOp::Stdvar),
    ("topk", VecOp::Topk),
    ("bottomk", VecOp::Bottomk),
    ("sort", VecOp::Sort),
    ("sort_desc", VecOp::SortDesc),
    ("approx_topk", VecOp::ApproxTopk),
];

impl VecOp {
    pub fn from_name(s: &str) -> Option<Self> {
        VEC_OPS.iter().find(|(n, _)| *n == s).map(|(_, op)| *op)
    }

    /// The aggregation's name in LogQL.
    pub fn name(self) -> &'static str {
        VEC_OPS.iter().find(|(_, op)| *op == self).map_or("", |(n, _)| n)
    }

    pub fn takes_param(self) -> bool {
        matches!(self, Self::Topk | Self::Bottomk | Self::ApproxTopk)
    }
}

/// `op [by|without (...)] ([param,] expr)`.
#[derive(Clone, Debug)]
pub struct VectorAgg {
    pub op: VecOp,
    pub param: Option<f64>,
    pub inner: Box<Expr>,
    pub grouping: Option<Grouping>,
}

/// Binary operators, lowest precedence first in [`BinOp::precedence`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Unless,
    Cmp(CmpOp),
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

impl BinOp {
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And | BinOp::Unless => 2,
            BinOp::Cmp(_) => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 5,
            BinOp::Pow => 6,
        }
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinOp::Or | BinOp::And | BinOp::Unless)
    }
}

/// Which side of a many-to-one match has the many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupSide {
    Left,
    Right,
}

/// `on(...)`/`ignoring(...)` and `group_left/right(...)`.
#[derive(Clone, Debug, Default)]
pub struct VectorMatching {
    pub on: bool,
    pub labels: Vec<String>,
    pub group: Option<(GroupSide, Vec<String>)>,
}

#[derive(Clone, Debug)]
pub struct BinaryExpr {
    pub op: BinOp,
    pub lhs: Expr,
    pub rhs: Expr,
    pub return_bool: bool,
    pub matching: VectorMatching,
}

/// `label_replace(v, "dst", "replacement", "src", "regex")`.
#[derive(Clone, Debug)]
pub struct LabelReplace {
    pub inner: Expr,
    pub dst: String,
    pub replacement: String,
    pub src: String,
    /// The regular expression as written.
    pub regex: String,
    pub re: Regex,
}

/// A LogQL expression.
#[derive(Clone, Debug)]
pub enum Expr {
    Log(LogExpr),
    Range(RangeAgg),
    Vector(VectorAgg),
    Binary(Box<BinaryExpr>),
    Literal(f64),
    VectorLit(f64),
    LabelReplace(Box<LabelReplace>),
}

impl Expr {
    /// Levels of the tree (a leaf is 1). The parser keeps it at most
    /// [`MAX_DEPTH`](super::parser::MAX_DEPTH), so walking it recursively is safe.
    pub fn height(&self) -> usize {
        1 + match self {
            Expr::Log(_) | Expr::Range(_) | Expr::Literal(_) | Expr::VectorLit(_) => 0,
            Expr::Vector(v) => v.inner.height(),
            Expr::Binary(b) => b.lhs.height().max(b.rhs.height()),
            Expr::LabelReplace(l) => l.inner.height(),
        }
    }

    /// Whether the expression yields a scalar (literals and their arithmetic).
    pub fn is_scalar(&self) -> bool {
        match self {
            Expr::Literal(_) => true,
            Expr::Binary(b) => b.lhs.is_scalar() && b.rhs.is_scalar(),
            _ => false,
        }
    }
}

impl fmt::Display for RangeOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(op: LineFilterOp, alternatives: Vec<LineTestSpec>) -> LineFilter {
        LineFilterSpec { op, alternatives }.compile().unwrap()
    }

    /// Only a `|=` of plain strings promises that a passing line holds one
    /// of them.
    #[test]
    fn only_contains_of_plain_strings_requires_strings() {
        let text_of = |s: &str| LineTestSpec::Text(s.into());
        let required = |f: LineFilter| f.required_strings().map(|r| r.map(|s| String::from_utf8_lossy(s).into_owned()).collect::<Vec<_>>());
        assert_eq!(required(filter(LineFilterOp::Contains, vec![text_of("error")])), Some(vec!["error".to_string()]));
        assert_eq!(required(filter(LineFilterOp::Contains, vec![text_of("a"), text_of("b")])), Some(vec!["a".into(), "b".into()]));
        assert_eq!(required(filter(LineFilterOp::Contains, vec![text_of("a"), LineTestSpec::Regex("b".into())])), None);
        assert_eq!(required(filter(LineFilterOp::Match, vec![LineTestSpec::Regex("error".into())])), None);
        assert_eq!(required(filter(LineFilterOp::NotContains, vec![text_of("level")])), None);
        assert_eq!(required(filter(LineFilterOp::Pattern, vec![LineTestSpec::Pattern("<_> error".into())])), None);
    }

    /// Text holding lines (here separated by length bytes, as in a chunk
    /// block) rules a filter out only when no line in it could pass.
    #[test]
    fn text_without_a_match_rules_out_only_positive_filters() {
        let text = b"\x11level=info msg=ok\x13level=warn msg=slow";
        let text_of = |s: &str| LineTestSpec::Text(s.into());
        let re = |s: &str| LineTestSpec::Regex(s.into());
        let within = |op, alternatives| filter(op, alternatives).may_pass_within(text);
        assert!(!within(LineFilterOp::Contains, vec![text_of("error")]));
        assert!(!within(LineFilterOp::Contains, vec![text_of("error"), text_of("panic")]));
        assert!(within(LineFilterOp::Contains, vec![text_of("error"), text_of("slow")]));
        assert!(!within(LineFilterOp::Match, vec![re("(?i)ERROR|panic")]));
        assert!(within(LineFilterOp::Match, vec![re("(?i)WARN")]));
        // Anchors and word boundaries see lines, not the text: unsure.
        assert!(within(LineFilterOp::Match, vec![re("^error")]));
        assert!(within(LineFilterOp::Match, vec![re(r"\berror")]));
        assert!(within(LineFilterOp::NotContains, vec![text_of("level")]));
        assert!(within(LineFilterOp::NotMatch, vec![re("level")]));
        assert!(within(LineFilterOp::Pattern, vec![LineTestSpec::Pattern("<_> error".into())]));
    }
}
