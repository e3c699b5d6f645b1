//! `format_query`: a LogQL query in one canonical line — single spaces
//! between tokens, none inside brackets, `name="value"` matchers, strings
//! in Go's double-quoted form — after checking that it parses.

use super::lexer::{lex, Tok};
use super::parser::{parse_expr, ParseError};

const SPACED_BEFORE_PAREN: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"];

/// The canonical form of `src`, or its parse error.
pub fn format_query(src: &str) -> Result<String, ParseError> {
    parse_expr(src)?;
    let toks = lex(src)?;
    let mut out = String::new();
    let mut depth_brace = 0usize;
    let mut prev: Option<&Tok> = None;
    for t in toks.iter().map(|s| &s.tok) {
        let text = match t {
            Tok::Str(s) => crate::labels::go_quote(s),
            other => other.describe_source(),
        };
        let space = match (prev, t) {
            (None, _) => false,
            (Some(Tok::LParen | Tok::LBracket | Tok::LBrace), _) => false,
            (_, Tok::RParen | Tok::RBracket | Tok::RBrace | Tok::Comma) => false,
            (_, Tok::LBracket) => false,
            (Some(Tok::Ident(name)), Tok::LParen) => SPACED_BEFORE_PAREN.contains(&name.as_str()),
            (Some(Tok::Ident(_)), Tok::Eq | Tok::Neq | Tok::Re | Tok::Nre) if depth_brace > 0 => false,
            (Some(Tok::Eq | Tok::Neq | Tok::Re | Tok::Nre), _) if depth_brace > 0 => false,
            _ => true,
        };
        if space {
            out.push(' ');
        }
        out.push_str(&text);
        match t {
            Tok::LBrace => depth_brace += 1,
            Tok::RBrace => depth_brace = depth_brace.saturating_sub(1),
            _ => {}
        }
        prev = Some(t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_spacing_and_quotes() {
        let q = r#"sum   by(level)(rate({app = "a",env=~`p.*`}|="x"  | logfmt|status>=500 [5m]  offset 1m))"#;
        assert_eq!(
            format_query(q).unwrap(),
            r#"sum by (level) (rate({app="a", env=~"p.*"} |= "x" | logfmt | status >= 500[5m] offset 1m))"#
        );
        assert!(format_query(r#"{app="a""#).is_err());
        let f = format_query(r#"{a="1"} |~ "x\\d""#).unwrap();
        assert_eq!(format_query(&f).unwrap(), f, "formatting is idempotent");
    }
}
