//! `| pattern "<a> - <_> [<b>]"`: Loki's pattern matcher (literals and
//! named captures; `<_>` captures nothing).

use std::collections::HashSet;

use super::{Extracted, is_valid_label_name};
use crate::CompileError;

#[derive(Debug, Clone, PartialEq)]
enum PNode {
    Lit(String),
    Cap(String),
}

const UNNAMED_CAPTURE: &str = "_";

fn lex_pattern(p: &str) -> Vec<PNode> {
    let chars: Vec<char> = p.chars().collect();
    let mut nodes: Vec<PNode> = Vec::new();
    let mut i = 0usize;
    while i < chars.len() {
        let c = chars[i];
        if c == '<' {
            // '<' (alpha | '_') (alnum | '_')* '>'
            let mut j = i + 1;
            if j < chars.len() && (chars[j].is_ascii_alphabetic() || chars[j] == '_') {
                j += 1;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                if j < chars.len() && chars[j] == '>' {
                    let name: String = chars[i + 1..j].iter().collect();
                    nodes.push(PNode::Cap(name));
                    i = j + 1;
                    continue;
                }
            }
        }
        match nodes.last_mut() {
            Some(PNode::Lit(l)) => l.push(c),
            _ => nodes.push(PNode::Lit(c.to_string())),
        }
        i += 1;
    }
    nodes
}

/// `| pattern "<ip> - <_> [<ts>] ..."`: `<name>` captures, `<_>` skips, literals between.
#[derive(Debug, Clone)]
pub struct PatternParser {
    nodes: Vec<PNode>,
    /// The pattern as written.
    source: String,
    names: Vec<String>,
}

impl PatternParser {
    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Errors as Loki's: `at least one capture is required`, `found consecutive
    /// capture: invalid expression`, `duplicate capture name (x): invalid expression`.
    pub fn new(pattern: &str) -> Result<Self, CompileError> {
        let nodes = lex_pattern(pattern);
        let names: Vec<String> = nodes
            .iter()
            .filter_map(|n| match n {
                PNode::Cap(c) if c != UNNAMED_CAPTURE => Some(c.clone()),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return Err(CompileError::NoCapture);
        }
        for w in nodes.windows(2) {
            if let (PNode::Cap(_), PNode::Cap(_)) = (&w[0], &w[1]) {
                return Err(CompileError::ConsecutiveCaptures);
            }
        }
        let mut uniq: HashSet<&str> = HashSet::new();
        for n in &names {
            if !uniq.insert(n.as_str()) {
                return Err(CompileError::DuplicateCapture(n.clone()));
            }
        }
        for n in &names {
            if !is_valid_label_name(n) {
                return Err(CompileError::InvalidCaptureName(n.clone()));
            }
        }
        Ok(PatternParser { nodes, source: pattern.to_string(), names })
    }

    /// Loki's matcher: a leading literal must prefix the line (else nothing);
    /// each capture runs up to the first occurrence of the following literal;
    /// when a literal is missing, the current capture takes the rest of the
    /// line and matching stops (so a short line fills only the leading captures).
    pub fn extract(&self, line: &str) -> Extracted {
        if line.is_empty() || self.nodes.is_empty() {
            return Vec::new();
        }
        let mut caps: Vec<&str> = Vec::new();
        let mut rest = line;
        let mut i = 0usize;
        if let Some(PNode::Lit(l)) = self.nodes.first() {
            if !rest.starts_with(l.as_str()) {
                return Vec::new();
            }
            rest = rest.get(l.len()..).unwrap_or("");
            i = 1;
        }
        if i >= self.nodes.len() {
            return Vec::new();
        }
        while i < self.nodes.len() {
            let cap = match &self.nodes[i] {
                PNode::Cap(c) => c.as_str(),
                PNode::Lit(_) => break,
            };
            let named = cap != UNNAMED_CAPTURE;
            if i + 1 == self.nodes.len() {
                if named {
                    caps.push(rest);
                }
                break;
            }
            let lit = match &self.nodes[i + 1] {
                PNode::Lit(l) => l.as_str(),
                PNode::Cap(_) => break,
            };
            i += 2;
            match rest.find(lit) {
                None => {
                    if named {
                        caps.push(rest);
                    }
                    break;
                }
                Some(p) => {
                    if named {
                        caps.push(rest.get(..p).unwrap_or(""));
                    }
                    rest = rest.get(p + lit.len()..).unwrap_or("");
                }
            }
        }
        self.names.iter().zip(caps).map(|(n, v)| (n.clone(), v.to_string())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::kv;

    #[test]
    fn pattern_conformance() {
        let p = PatternParser::new("<method> <path> <status>").unwrap();
        assert_eq!(p.extract("GET /home 200"), kv(&[("method", "GET"), ("path", "/home"), ("status", "200")]));
        let p = PatternParser::new("<method> <_> <status>").unwrap();
        assert_eq!(p.extract("GET /home 200"), kv(&[("method", "GET"), ("status", "200")]));
        let p = PatternParser::new("<method> <path>").unwrap();
        assert_eq!(p.extract("POST"), kv(&[("method", "POST")]));
        let err = PatternParser::new("no captures here").unwrap_err().to_string();
        assert_eq!(err, "at least one capture is required");
    }

    #[test]
    fn pattern_details() {
        assert_eq!(PatternParser::new("<_> only").unwrap_err().to_string(), "at least one capture is required");
        assert!(PatternParser::new("<a><b>").unwrap_err().to_string().contains("consecutive capture"));
        assert!(PatternParser::new("x <a><_>").unwrap_err().to_string().contains("consecutive capture"));
        assert!(PatternParser::new("<a> <a>").unwrap_err().to_string().contains("duplicate capture name (a)"));
        assert!(PatternParser::new("<_> <_> <a>").is_ok());
        assert!(PatternParser::new("").is_err());

        let p = PatternParser::new(r#"<ip> - <_> [<ts>] "<method> <path> <_>" <status> <size>"#).unwrap();
        let line = r#"10.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326"#;
        assert_eq!(
            p.extract(line),
            kv(&[
                ("ip", "10.0.0.1"),
                ("ts", "10/Oct/2000:13:55:36 -0700"),
                ("method", "GET"),
                ("path", "/a.gif"),
                ("status", "200"),
                ("size", "2326"),
            ])
        );

        // A leading literal must prefix the line.
        let p = PatternParser::new("level=<level> msg=<msg>").unwrap();
        assert_eq!(p.extract("level=info msg=hello world"), kv(&[("level", "info"), ("msg", "hello world")]));
        assert_eq!(p.extract("xlevel=info msg=hi"), kv(&[]));
        assert_eq!(p.extract(""), kv(&[]));
        // Trailing literal; the rest after it is ignored.
        let p = PatternParser::new("<a>;").unwrap();
        assert_eq!(p.extract("x;y;z"), kv(&[("a", "x")]));
        // Unicode literals and values; `<` that is not a capture is literal.
        let p = PatternParser::new("<a> → <b> <3 <c>").unwrap();
        assert_eq!(p.extract("α → β <3 γ"), kv(&[("a", "α"), ("b", "β"), ("c", "γ")]));
        // Empty captures are returned.
        let p = PatternParser::new("<a>,<b>").unwrap();
        assert_eq!(p.extract(",x"), kv(&[("a", ""), ("b", "x")]));
    }

    #[test]
    fn pattern_lexer() {
        assert_eq!(
            lex_pattern("<a>-<_b1> <1x> <"),
            vec![
                PNode::Cap("a".into()),
                PNode::Lit("-".into()),
                PNode::Cap("_b1".into()),
                PNode::Lit(" <1x> <".into()),
            ]
        );
    }
}
