//! Recursive-descent parser for LogQL log queries.

use super::ast::{LineFilter, LineFilterOp, LogQuery, MatchOp, Matcher};
use super::lexer::{lex, Spanned, Tok};

/// A LogQL syntax or semantic error, displayed exactly as Loki displays it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl ParseError {
    pub(super) fn at(line: usize, col: usize, msg: String) -> Self {
        Self { line, col, msg }
    }

    fn whole(msg: impl Into<String>) -> Self {
        Self { line: 0, col: 0, msg: msg.into() }
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

struct Parser {
    toks: Vec<Spanned>,
    pos: usize,
    end: (usize, usize),
}

impl Parser {
    fn new(src: &str) -> Result<Self, ParseError> {
        let toks = lex(src)?;
        let last_line = src.lines().count().max(1);
        let last_col = src.lines().last().map(|l| l.chars().count()).unwrap_or(0) + 1;
        Ok(Self { toks, pos: 0, end: (last_line, last_col) })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|s| &s.tok)
    }

    fn next(&mut self) -> Option<Spanned> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn unexpected(&self, expecting: &str) -> ParseError {
        match self.toks.get(self.pos) {
            Some(s) => ParseError::at(
                s.line,
                s.col,
                format!("syntax error: unexpected {}{}", s.tok.describe(), expecting_suffix(expecting)),
            ),
            None => ParseError::at(
                self.end.0,
                self.end.1,
                format!("syntax error: unexpected $end{}", expecting_suffix(expecting)),
            ),
        }
    }

    fn expect(&mut self, want: Tok, name: &str) -> Result<(), ParseError> {
        if self.peek() == Some(&want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(name))
        }
    }

    /// `{ name op "value", ... }`
    fn selector(&mut self) -> Result<Vec<Matcher>, ParseError> {
        self.expect(Tok::LBrace, "{")?;
        let mut out = Vec::new();
        if self.peek() == Some(&Tok::RBrace) {
            self.pos += 1;
            return Ok(out);
        }
        loop {
            let name = match self.next() {
                Some(Spanned { tok: Tok::Ident(n), .. }) => n,
                _ => {
                    self.pos -= 1;
                    return Err(self.unexpected("IDENTIFIER"));
                }
            };
            let op = match self.peek() {
                Some(Tok::Eq) => MatchOp::Eq,
                Some(Tok::Neq) => MatchOp::Neq,
                Some(Tok::Re) => MatchOp::Re,
                Some(Tok::Nre) => MatchOp::Nre,
                _ => return Err(self.unexpected("=, !=, =~ or !~")),
            };
            self.pos += 1;
            let at = self.toks.get(self.pos).map(|s| (s.line, s.col));
            let value = match self.next() {
                Some(Spanned { tok: Tok::Str(v), .. }) => v,
                _ => {
                    self.pos -= 1;
                    return Err(self.unexpected("STRING"));
                }
            };
            let m = Matcher::new(name, op, value).map_err(|e| {
                let (l, c) = at.unwrap_or((0, 0));
                ParseError::at(l, c, format!("invalid regex in label matcher: {e}"))
            })?;
            out.push(m);
            match self.next().map(|s| s.tok) {
                Some(Tok::Comma) => continue,
                Some(Tok::RBrace) => return Ok(out),
                _ => {
                    self.pos -= 1;
                    return Err(self.unexpected(", or }"));
                }
            }
        }
    }

    /// Any number of `|= "x"`, `!= "x"`, `|~ "x"`, `!~ "x"`.
    fn line_filters(&mut self) -> Result<Vec<LineFilter>, ParseError> {
        let mut out = Vec::new();
        loop {
            let op = match self.peek() {
                Some(Tok::PipeExact) => LineFilterOp::Contains,
                Some(Tok::Neq) => LineFilterOp::NotContains,
                Some(Tok::PipeMatch) => LineFilterOp::Match,
                Some(Tok::Nre) => LineFilterOp::NotMatch,
                Some(Tok::Pipe) => {
                    let s = &self.toks[self.pos];
                    return Err(ParseError::at(
                        s.line,
                        s.col,
                        "parsers, label filters and formatting stages are not supported yet; only line filters \
                         (|=, !=, |~, !~) may follow the selector"
                            .into(),
                    ));
                }
                None => return Ok(out),
                Some(_) => return Err(self.unexpected("|=, !=, |~ or !~")),
            };
            self.pos += 1;
            let at = self.toks.get(self.pos).map(|s| (s.line, s.col));
            let pattern = match self.next() {
                Some(Spanned { tok: Tok::Str(v), .. }) => v,
                _ => {
                    self.pos -= 1;
                    return Err(self.unexpected("STRING"));
                }
            };
            let f = LineFilter::new(op, pattern).map_err(|e| {
                let (l, c) = at.unwrap_or((0, 0));
                ParseError::at(l, c, format!("invalid regex in line filter: {e}"))
            })?;
            out.push(f);
        }
    }
}

fn expecting_suffix(expecting: &str) -> String {
    if expecting.is_empty() {
        String::new()
    } else {
        format!(", expecting {expecting}")
    }
}

fn require_selective(matchers: &[Matcher]) -> Result<(), ParseError> {
    if matchers.iter().any(|m| !m.matches_empty()) {
        Ok(())
    } else {
        Err(ParseError::whole(EMPTY_COMPATIBLE))
    }
}

/// Parses a log query: a selector and a chain of line filters.
pub fn parse_query(src: &str) -> Result<LogQuery, ParseError> {
    let mut p = Parser::new(src)?;
    match p.peek() {
        Some(Tok::LBrace) => {}
        Some(Tok::Ident(_)) | Some(Tok::Other(_)) | Some(Tok::LParen) => {
            return Err(ParseError::whole(
                "metric queries (range and vector aggregations, binary operations, literals) are not supported yet",
            ))
        }
        _ => return Err(p.unexpected("{")),
    }
    let matchers = p.selector()?;
    require_selective(&matchers)?;
    let filters = p.line_filters()?;
    Ok(LogQuery { matchers, filters })
}

/// Parses a bare stream selector, as in `/series?match[]=`.
pub fn parse_selector(src: &str) -> Result<Vec<Matcher>, ParseError> {
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
pub fn parse_labels(src: &str) -> Result<Vec<(String, String)>, ParseError> {
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

    #[test]
    fn parses_selector_and_filter_chain() {
        let q = parse_query(r#"{app="api", env=~"prod|stage"} |= "error" != `timeout` |~ "code=5\\d\\d""#).unwrap();
        assert_eq!(q.matchers.len(), 2);
        assert_eq!(q.matchers[1].op, MatchOp::Re);
        assert!(q.matchers[1].matches(Some("stage")));
        assert!(!q.matchers[1].matches(Some("production")), "regex matchers are anchored");
        assert!(q.line_matches("error code=503"));
        assert!(!q.line_matches("error timeout code=503"));
        assert!(!q.line_matches("error code=404"));
    }

    #[test]
    fn errors_carry_line_and_column_like_loki() {
        let e = parse_query(r#"{app="api""#).unwrap_err();
        assert_eq!(e.to_string(), "parse error at line 1, col 11: syntax error: unexpected $end, expecting , or }");
        let e = parse_query("{app=\"a\"}\n |= 5").unwrap_err();
        assert_eq!(e.to_string(), "parse error at line 2, col 5: syntax error: unexpected 5, expecting STRING");
        let e = parse_query(r#"{app=~".*"}"#).unwrap_err();
        assert!(e.to_string().starts_with("parse error : queries require at least one regexp"), "{e}");
        let e = parse_query(r#"{app="a"} |~ "(""#).unwrap_err();
        assert!(e.to_string().starts_with("parse error at line 1, col 14: invalid regex"), "{e}");
    }

    #[test]
    fn go_string_escapes() {
        let l = parse_labels(r#"{a="q\"x\\y\n\u00e9\101", b=`raw\n`}"#).unwrap();
        assert_eq!(l, vec![("a".into(), "q\"x\\y\né\u{41}".into()), ("b".into(), "raw\\n".into())]);
        assert!(parse_labels(r#"{a=~"x"}"#).is_err());
        assert!(parse_labels(r#"{a="x"} junk"#).is_err());
    }
}
