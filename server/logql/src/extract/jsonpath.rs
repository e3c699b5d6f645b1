//! `| json a="x.y", b="z[0]"`: labels from JSON paths, in Loki's
//! `jsonexpr` grammar.

use std::fmt;

use super::{Collector, Extracted, JSON_PARSER_ERR, ParserError, is_valid_label_name};
use super::json::{Flow, JType, JVal, array_each, get_value, object_each, raw_slice, unescape_json_string};
use crate::CompileError;

#[derive(Debug, Clone, PartialEq)]
enum PathElem {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq)]
enum PathTok {
    Lsb,
    Rsb,
    Dot,
    Field(String),
    Str(String),
    Index(usize),
}

impl fmt::Display for PathTok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathTok::Lsb => f.write_str("LSB"),
            PathTok::Rsb => f.write_str("RSB"),
            PathTok::Dot => f.write_str("DOT"),
            PathTok::Field(_) => f.write_str("FIELD"),
            PathTok::Str(_) => f.write_str("STRING"),
            PathTok::Index(_) => f.write_str("INDEX"),
        }
    }
}

fn lex_json_path(expr: &str) -> Result<Vec<PathTok>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0usize;
    while i < chars.len() {
        let c = chars[i];
        if c == '\0' {
            break;
        }
        if c == ' ' || c == '\t' || c == '\n' {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            loop {
                match chars.get(i) {
                    Some(d) if d.is_ascii_digit() => i += 1,
                    Some('.') => {
                        return Err("cannot use float as array index".to_string());
                    }
                    Some(' ') | Some('\t') | Some('\n') | Some(']') => break,
                    Some(other) => return Err(format!("non-integer value: {}", other)),
                    None => return Err("syntax error: unexpected $end, expecting RSB".to_string()),
                }
            }
            let digits: String = chars[start..i].iter().collect();
            let n = digits.parse::<usize>().map_err(|e| e.to_string())?;
            toks.push(PathTok::Index(n));
            continue;
        }
        match c {
            '[' => {
                toks.push(PathTok::Lsb);
                i += 1;
            }
            ']' => {
                toks.push(PathTok::Rsb);
                i += 1;
            }
            '.' => {
                toks.push(PathTok::Dot);
                i += 1;
            }
            '"' => {
                // Loki's scanner ends a string at `"`, `]` or the end of input.
                i += 1;
                let mut s = String::new();
                while i < chars.len() {
                    let r = chars[i];
                    i += 1;
                    if r == '"' || r == ']' || r == '\0' {
                        break;
                    }
                    s.push(r);
                }
                toks.push(PathTok::Str(s));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut s = String::new();
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    s.push(chars[i]);
                    i += 1;
                }
                toks.push(PathTok::Field(s));
            }
            other => return Err(format!("unexpected char {}", other)),
        }
    }
    Ok(toks)
}

/// Parses a `jsonexpr` path: `field`, `["key"]` or `[N]` first, then any of
/// `.field`, `["key"]`, `[N]`.
fn parse_json_path(expr: &str) -> Result<Vec<PathElem>, String> {
    let toks = lex_json_path(expr)?;
    let unexpected = |t: Option<&PathTok>| match t {
        Some(t) => format!("syntax error: unexpected {}", t),
        None => "syntax error: unexpected $end".to_string(),
    };
    let mut out = Vec::new();
    let mut i = 0usize;
    while i < toks.len() || out.is_empty() {
        match toks.get(i) {
            Some(PathTok::Field(f)) if out.is_empty() => {
                out.push(PathElem::Key(f.clone()));
                i += 1;
            }
            Some(PathTok::Dot) if !out.is_empty() => match toks.get(i + 1) {
                Some(PathTok::Field(f)) => {
                    out.push(PathElem::Key(f.clone()));
                    i += 2;
                }
                t => return Err(unexpected(t)),
            },
            Some(PathTok::Lsb) => {
                let elem = match toks.get(i + 1) {
                    Some(PathTok::Str(s)) => PathElem::Key(s.clone()),
                    Some(PathTok::Index(n)) => PathElem::Index(*n),
                    t => return Err(unexpected(t)),
                };
                match toks.get(i + 2) {
                    Some(PathTok::Rsb) => {}
                    t => return Err(unexpected(t)),
                }
                out.push(elem);
                i += 3;
            }
            t => return Err(unexpected(t)),
        }
    }
    Ok(out)
}

/// Finds the value at `path`, or `None` when it is absent (or the JSON is
/// too broken to reach it).
fn json_lookup(line: &str, path: &[PathElem]) -> Option<JVal> {
    let mut pos = 0usize;
    for elem in path {
        let mut found: Option<usize> = None;
        match elem {
            PathElem::Key(k) => {
                object_each(line, pos, |key, v| {
                    if key == k.as_str() {
                        found = Some(v.tok);
                        Ok(Flow::Stop)
                    } else {
                        Ok(Flow::Continue)
                    }
                })
                .ok()?;
            }
            PathElem::Index(n) => {
                array_each(line, pos, |i, v| {
                    if i == *n {
                        found = Some(v.tok);
                        Ok(Flow::Stop)
                    } else {
                        Ok(Flow::Continue)
                    }
                })
                .ok()?;
            }
        }
        pos = found?;
    }
    get_value(line.as_bytes(), pos).ok()
}

/// A compiled `| json name="path", ...` extraction (paths like `a.b`, `a[0]`, `["key with space"]`).
#[derive(Debug, Clone)]
pub struct JsonExpressions {
    exprs: Vec<(String, Vec<PathElem>)>,
    /// `(identifier, expression)` as written.
    source: Vec<(String, String)>,
}

impl JsonExpressions {
    /// `(identifier, expression)` pairs as written.
    pub fn source(&self) -> &[(String, String)] {
        &self.source
    }

    /// `exprs` holds `(label name, path)` pairs. The error names the bad path
    /// (`cannot parse expression [user[]: ...`) or the bad identifier
    /// (`invalid extracted label name '...'`).
    pub fn new(exprs: &[(String, String)]) -> Result<Self, CompileError> {
        let mut out = Vec::with_capacity(exprs.len());
        for (id, expr) in exprs {
            let path = parse_json_path(expr).map_err(|reason| CompileError::Expression { expr: expr.clone(), reason })?;
            if !is_valid_label_name(id) {
                return Err(CompileError::InvalidExtractedName(id.clone()));
            }
            out.push((id.clone(), path));
        }
        Ok(JsonExpressions { exprs: out, source: exprs.to_vec() })
    }

    /// Values of each expression in declaration order. A missing path gives an
    /// empty value; `null` gives `""`; objects keep their JSON text; strings,
    /// numbers, booleans and arrays are rendered through JSON unescaping (as
    /// Loki does, so an array keeps its text). An empty line extracts nothing.
    /// A line not starting with `{`, `[` or `"` fails with `JSONParserErr`
    /// and empty details. A repeated identifier keeps its first value.
    pub fn extract(&self, line: &str) -> Result<Extracted, ParserError> {
        match line.as_bytes().first() {
            None => return Ok(Vec::new()),
            Some(b'{') | Some(b'[') | Some(b'"') => {}
            Some(_) => return Err(ParserError::new(JSON_PARSER_ERR, "")),
        }
        let mut col = Collector::new();
        for (id, path) in &self.exprs {
            if col.has(id) {
                continue;
            }
            let value = match json_lookup(line, path) {
                None => String::new(),
                Some(v) => {
                    let raw = raw_slice(line, v.start, v.end);
                    match v.ty {
                        JType::Null => String::new(),
                        JType::Object => raw.to_string(),
                        _ => unescape_json_string(raw),
                    }
                }
            };
            col.push(id.clone(), value);
        }
        Ok(col.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{kv, exprs};

    #[test]
    fn json_expressions_conformance() {
        let line = r#"{"user":{"id":"u1","name":"alice"},"tags":["x","y"]}"#;
        let e = JsonExpressions::new(&exprs(&[("who", "user.id"), ("tag", "tags[0]")])).unwrap();
        assert_eq!(e.extract(line).unwrap(), kv(&[("who", "u1"), ("tag", "x")]));
        let e = JsonExpressions::new(&exprs(&[("age", "user.age")])).unwrap();
        assert_eq!(e.extract(line).unwrap(), kv(&[("age", "")]));
        let err = JsonExpressions::new(&exprs(&[("bad", "user[")])).unwrap_err().to_string();
        assert!(err.contains("cannot parse expression"), "{}", err);
    }

    #[test]
    fn json_expressions_rendering() {
        let line = r#"{"user":{"id":"u1"},"tags":["x","y"],"n":null,"k with space":{"v":3},"b":true,"num":1.50}"#;
        let e = JsonExpressions::new(&exprs(&[
            ("u", "user"),
            ("t", "tags"),
            ("t1", "tags[1]"),
            ("t9", "tags[9]"),
            ("n", "n"),
            ("s", r#"["k with space"].v"#),
            ("s2", r#"["k with space"]["v"]"#),
            ("b", "b"),
            ("num", "num"),
        ]))
        .unwrap();
        assert_eq!(
            e.extract(line).unwrap(),
            kv(&[
                ("u", r#"{"id":"u1"}"#),
                ("t", r#"["x","y"]"#),
                ("t1", "y"),
                ("t9", ""),
                ("n", ""),
                ("s", "3"),
                ("s2", "3"),
                ("b", "true"),
                ("num", "1.50"),
            ])
        );
    }

    #[test]
    fn json_expressions_root_array_and_errors() {
        let e = JsonExpressions::new(&exprs(&[("first", "[0].a")])).unwrap();
        assert_eq!(e.extract(r#"[{"a":"z"}]"#).unwrap(), kv(&[("first", "z")]));
        let err = e.extract("broken").unwrap_err();
        assert_eq!(err.kind, "JSONParserErr");
        assert_eq!(err.details, "");
        assert_eq!(e.extract("").unwrap(), kv(&[]));
        // broken JSON past the start: missing values, no error
        assert_eq!(e.extract("[{").unwrap(), kv(&[("first", "")]));
    }

    #[test]
    fn json_path_parsing() {
        assert_eq!(parse_json_path("a.b").unwrap(), vec![PathElem::Key("a".into()), PathElem::Key("b".into())]);
        assert_eq!(parse_json_path("a[0]").unwrap(), vec![PathElem::Key("a".into()), PathElem::Index(0)]);
        assert_eq!(parse_json_path(r#"["a b"]"#).unwrap(), vec![PathElem::Key("a b".into())]);
        assert_eq!(parse_json_path("[2]").unwrap(), vec![PathElem::Index(2)]);
        assert_eq!(parse_json_path("a[1][2].c").unwrap().len(), 4);
        for bad in ["", "user[", "a.", ".a", "a..b", "a.0", "a[1.5]", "a[x]", "a b", "a-b", "[", "a]", "a[\"x\"", "0"] {
            assert!(parse_json_path(bad).is_err(), "{:?} should fail", bad);
        }
        assert!(JsonExpressions::new(&exprs(&[("1bad", "a")])).is_err());
    }
}
