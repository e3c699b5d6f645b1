//! `| regexp "..."`: named captures as labels, with Go's RE2 syntax
//! mapped onto the `regex` crate (ASCII-only `\d \w \s`, Go's error texts).

use std::collections::HashSet;

use regex::Regex;

use super::{Extracted, is_valid_label_name, sanitize_label_name};
use crate::CompileError;

/// Rewrites Perl classes to Go's ASCII-only meaning (`\d` is `[0-9]` in Go
/// but Unicode-aware in the `regex` crate).
fn go_compat_regex(re: &str) -> String {
    let mut out = String::with_capacity(re.len() + 16);
    let mut chars = re.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str("[0-9]"),
            Some('D') => out.push_str("[^0-9]"),
            Some('w') => out.push_str("[0-9A-Za-z_]"),
            Some('W') => out.push_str("[^0-9A-Za-z_]"),
            Some('s') => out.push_str("[\\t\\n\\f\\r\\x20]"),
            Some('S') => out.push_str("[^\\t\\n\\f\\r\\x20]"),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Finds a repeated capture-group name in `re` (the `regex` crate refuses
/// those outright, while Loki reports `duplicate extracted label name`).
fn find_duplicate_group_name(re: &str) -> Option<String> {
    let b = re.as_bytes();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut i = 0usize;
    let mut in_class = false;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                i += 2;
                continue;
            }
            b'[' if in_class => {
                if b.get(i + 1) == Some(&b':') {
                    if let Some(rel) = re.get(i + 2..).and_then(|r| r.find(":]")) {
                        i = i + 2 + rel + 2;
                        continue;
                    }
                }
            }
            b'[' => {
                in_class = true;
                i += 1;
                if b.get(i) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i) == Some(&b']') {
                    i += 1;
                }
                continue;
            }
            b']' if in_class => in_class = false,
            b'(' if !in_class => {
                let rest = re.get(i..).unwrap_or("");
                let name_start = if rest.starts_with("(?P<") {
                    Some(i + 4)
                } else if rest.starts_with("(?<") {
                    Some(i + 3)
                } else {
                    None
                };
                if let Some(s) = name_start {
                    if let Some(tail) = re.get(s..) {
                        if let Some(end) = tail.find('>') {
                            let name = &tail[..end];
                            if !seen.insert(name) {
                                return Some(name.to_string());
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Why `re` is not a regular expression, in the words of Go's
/// `regexp/syntax` (what Loki answers): `error parsing regexp: invalid escape
/// sequence: `\q``. `e` is the error of the regex crate, used as it is for
/// the few problems Go names differently.
pub fn go_regex_error(re: &str, e: &regex::Error) -> String {
    use regex_syntax::ast::ErrorKind as K;
    let (what, text) = match regex_syntax::ast::parse::Parser::new().parse(re) {
        Err(err) => {
            let (start, end) = (err.span().start.offset, err.span().end.offset);
            let span = re.get(start..end).unwrap_or(re).to_string();
            match err.kind() {
                K::EscapeUnrecognized | K::EscapeHexEmpty | K::EscapeHexInvalid | K::EscapeHexInvalidDigit | K::ClassEscapeInvalid => {
                    ("invalid escape sequence", span)
                }
                K::EscapeUnexpectedEof => ("trailing backslash at end of expression", String::new()),
                K::GroupUnclosed => ("missing closing )", re.to_string()),
                K::GroupUnopened => ("unexpected )", re.to_string()),
                K::ClassUnclosed => ("missing closing ]", re.get(start..).unwrap_or(re).to_string()),
                K::ClassRangeInvalid | K::ClassRangeLiteral => ("invalid character class range", span),
                K::RepetitionMissing => ("missing argument to repetition operator", span),
                K::RepetitionCountInvalid | K::RepetitionCountDecimalEmpty | K::DecimalInvalid | K::DecimalEmpty => {
                    ("invalid repeat count", span)
                }
                K::UnicodeClassInvalid => ("invalid character class range", span),
                K::NestLimitExceeded(_) => ("expression nests too deeply", re.to_string()),
                K::GroupNameDuplicate { .. } => ("duplicate capture group name", span),
                _ => ("invalid or unsupported Perl syntax", span),
            }
        }
        Ok(_) => {
            let s = e.to_string();
            let msg = s.rsplit_once("error: ").map_or(s.as_str(), |(_, m)| m).trim().to_string();
            return format!("error parsing regexp: {msg}: `{re}`");
        }
    };
    format!("error parsing regexp: {what}: `{text}`")
}

/// `| regexp "..."`: named capture groups become labels.
#[derive(Debug, Clone)]
pub struct RegexpParser {
    re: Regex,
    /// The expression as written.
    source: String,
    /// (capture group index, label name)
    names: Vec<(usize, String)>,
}

impl RegexpParser {
    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Errors as Loki's: `error parsing regexp: ...`, `at least one named
    /// capture must be supplied`, `duplicate extracted label name 'x'`,
    /// `invalid extracted label name 'x'`.
    pub fn new(re: &str) -> Result<Self, CompileError> {
        let compiled = match Regex::new(&go_compat_regex(re)) {
            Ok(r) => r,
            Err(e) => {
                if let Some(dup) = find_duplicate_group_name(re) {
                    return Err(CompileError::DuplicateExtractedName(dup));
                }
                return Err(CompileError::Regex(go_regex_error(re, &e)));
            }
        };
        let mut names = Vec::new();
        let mut uniq: HashSet<String> = HashSet::new();
        for (i, n) in compiled.capture_names().enumerate() {
            let Some(n) = n else { continue };
            if n.is_empty() {
                continue;
            }
            if !is_valid_label_name(n) {
                return Err(CompileError::InvalidExtractedName(n.into()));
            }
            if !uniq.insert(n.to_string()) {
                return Err(CompileError::DuplicateExtractedName(n.into()));
            }
            names.push((i, sanitize_label_name(n)));
        }
        if names.is_empty() {
            return Err(CompileError::NoNamedCapture);
        }
        Ok(RegexpParser { re: compiled, source: re.to_string(), names })
    }

    /// The named groups of the leftmost match (a group that did not take part
    /// gives `""`); no match → nothing extracted (the line is kept).
    pub fn extract(&self, line: &str) -> Extracted {
        let Some(caps) = self.re.captures(line) else {
            return Vec::new();
        };
        self.names
            .iter()
            .map(|(i, n)| (n.clone(), caps.get(*i).map(|m| m.as_str().to_string()).unwrap_or_default()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::kv;

    #[test]
    fn regexp_conformance() {
        let p = RegexpParser::new(r"(?P<method>\w+) (?P<path>\S+) (?P<status>\d+)").unwrap();
        assert_eq!(p.extract("GET /home 200"), kv(&[("method", "GET"), ("path", "/home"), ("status", "200")]));
        let p = RegexpParser::new(r"(?P<num>\d+)").unwrap();
        assert_eq!(p.extract("PUT /x"), kv(&[]));
        let p = RegexpParser::new(r"(?P<method>\w+) (?P<path>\S+)").unwrap();
        assert_eq!(p.extract("PUT /x"), kv(&[("method", "PUT"), ("path", "/x")]));
        let err = RegexpParser::new("nocapture").unwrap_err().to_string();
        assert!(err.contains("at least one named capture must be supplied"), "{}", err);
        let err = RegexpParser::new("(unnamed)").unwrap_err().to_string();
        assert!(err.contains("at least one named capture must be supplied"), "{}", err);
        let err = RegexpParser::new("(?P<x>.)(?P<x>.)").unwrap_err().to_string();
        assert!(err.contains("duplicate extracted label name"), "{}", err);
        let err = RegexpParser::new("(").unwrap_err().to_string();
        assert!(err.starts_with("error parsing regexp"), "{}", err);
        assert!(!err.contains('\n'), "{}", err);
    }

    #[test]
    fn regexp_details() {
        // Unmatched optional group → empty value; unnamed groups ignored.
        let p = RegexpParser::new(r"(a)(?P<x>b)?(?<y>c)").unwrap();
        assert_eq!(p.extract("ac"), kv(&[("x", ""), ("y", "c")]));
        // Go's \d and \w are ASCII-only.
        let p = RegexpParser::new(r"(?P<d>\d+)").unwrap();
        assert_eq!(p.extract("٣٣ 42"), kv(&[("d", "42")]));
        let p = RegexpParser::new(r"(?P<w>[\w.]+)").unwrap();
        assert_eq!(p.extract("é a.b"), kv(&[("w", "a.b")]));
        let p = RegexpParser::new(r"(?P<s>\S+)\s(?P<rest>.*)").unwrap();
        assert_eq!(p.extract("héllo wörld"), kv(&[("s", "héllo"), ("rest", "wörld")]));
        assert!(RegexpParser::new(r"\\d(?P<a>x)").unwrap().extract(r"\dx") == kv(&[("a", "x")]));
        assert!(RegexpParser::new(r"(?P<a.b>x)").is_err());
        assert_eq!(find_duplicate_group_name(r"[(?P<x>](?P<x>a)"), None);
        assert_eq!(find_duplicate_group_name(r"(?P<x>a)\((?<x>b)"), Some("x".to_string()));
    }
}
