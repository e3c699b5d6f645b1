//! What a parsed LogQL log query is.

use memchr::memmem;
use regex::Regex;

/// How a label matcher compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Neq,
    Re,
    Nre,
}

/// `name op "value"` in a stream selector.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// Anchored regex for `=~` / `!~`.
    re: Option<Regex>,
}

impl Matcher {
    /// Builds a matcher; regexes are anchored at both ends as in Prometheus.
    pub fn new(name: String, op: MatchOp, value: String) -> Result<Self, regex::Error> {
        let re = match op {
            MatchOp::Re | MatchOp::Nre => Some(Regex::new(&format!("^(?s:{value})$"))?),
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFilterOp {
    /// `|=`: contains.
    Contains,
    /// `!=`: does not contain.
    NotContains,
    /// `|~`: matches the regex somewhere.
    Match,
    /// `!~`: does not match the regex.
    NotMatch,
}

/// One `|= "text"`-style stage.
#[derive(Clone, Debug)]
pub struct LineFilter {
    pub op: LineFilterOp,
    pub pattern: String,
    finder: memmem::Finder<'static>,
    re: Option<Regex>,
}

impl LineFilter {
    /// Builds a filter; the regex of `|~`/`!~` is unanchored.
    pub fn new(op: LineFilterOp, pattern: String) -> Result<Self, regex::Error> {
        let re = match op {
            LineFilterOp::Match | LineFilterOp::NotMatch => Some(Regex::new(&pattern)?),
            _ => None,
        };
        let finder = memmem::Finder::new(pattern.as_bytes()).into_owned();
        Ok(Self { op, pattern, finder, re })
    }

    /// Whether `line` passes this filter.
    pub fn matches(&self, line: &str) -> bool {
        match (self.op, &self.re) {
            (LineFilterOp::Contains, _) => self.finder.find(line.as_bytes()).is_some(),
            (LineFilterOp::NotContains, _) => self.finder.find(line.as_bytes()).is_none(),
            (LineFilterOp::Match, Some(re)) => re.is_match(line),
            (LineFilterOp::NotMatch, Some(re)) => !re.is_match(line),
            (_, None) => false,
        }
    }
}

/// A log query: which streams, then which lines.
#[derive(Clone, Debug)]
pub struct LogQuery {
    pub matchers: Vec<Matcher>,
    pub filters: Vec<LineFilter>,
}

impl LogQuery {
    /// Whether a line passes every filter of the chain.
    pub fn line_matches(&self, line: &str) -> bool {
        self.filters.iter().all(|f| f.matches(line))
    }
}
