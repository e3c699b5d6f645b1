//! `| logfmt` (`--strict`, `--keep-empty`) and `| logfmt a, b="c"`: the
//! go-logfmt decoder's rules, as Loki reads lines.

use super::{Collector, Extracted, LOGFMT_PARSER_ERR, ParserError, has_rune_error, is_valid_label_name, replace_rune_error, sanitize_label_name};
use super::json::{Flavor, unescape};
use crate::CompileError;

enum Kv<'a> {
    Pair(&'a str, std::borrow::Cow<'a, str>),
    Error(String),
    End,
}

/// A logfmt decoder following go-logfmt / Loki's decoder, with recovery: after
/// a malformed pair it skips to the next whitespace and carries on.
struct LogfmtDecoder<'a> {
    line: &'a str,
    pos: usize,
}

fn go_quote_byte(c: u8) -> String {
    match c {
        b'\'' => "'\\''".to_string(),
        b'\\' => "'\\\\'".to_string(),
        c if (0x20..0x7f).contains(&c) => format!("'{}'", c as char),
        c => format!("'\\x{:02x}'", c),
    }
}

impl<'a> LogfmtDecoder<'a> {
    fn new(line: &'a str) -> Self {
        LogfmtDecoder { line, pos: 0 }
    }

    fn slice(&self, a: usize, b: usize) -> &'a str {
        let line: &'a str = self.line;
        line.get(a..b).unwrap_or("")
    }

    fn syntax_error(&self, msg: &str) -> Kv<'a> {
        Kv::Error(format!("logfmt syntax error at pos {} : {}", self.pos + 1, msg))
    }

    fn unexpected(&self, c: u8) -> Kv<'a> {
        self.syntax_error(&format!("unexpected {}", go_quote_byte(c)))
    }

    fn skip_value(&mut self) {
        let line: &'a str = self.line;
        let b = line.as_bytes();
        while self.pos < b.len() && b[self.pos] > b' ' {
            self.pos += 1;
        }
    }

    fn next_kv(&mut self) -> Kv<'a> {
        let line: &'a str = self.line;
        let b = line.as_bytes();
        while self.pos < b.len() && b[self.pos] <= b' ' {
            self.pos += 1;
        }
        if self.pos >= b.len() {
            return Kv::End;
        }
        let start = self.pos;
        loop {
            let Some(&c) = b.get(self.pos) else {
                return self.standalone_key(start);
            };
            if c == b'=' {
                if self.pos == start {
                    let e = self.unexpected(c);
                    self.skip_value();
                    return e;
                }
                let key = self.slice(start, self.pos);
                if has_rune_error(key) {
                    let e = self.syntax_error("invalid key");
                    self.skip_value();
                    return e;
                }
                self.pos += 1;
                return self.value(key);
            }
            if c == b'"' {
                let e = self.unexpected(c);
                self.skip_value();
                return e;
            }
            if c <= b' ' {
                return self.standalone_key(start);
            }
            self.pos += 1;
        }
    }

    fn standalone_key(&mut self, start: usize) -> Kv<'a> {
        let key = self.slice(start, self.pos);
        if has_rune_error(key) {
            return self.syntax_error("invalid key");
        }
        Kv::Pair(key, std::borrow::Cow::Borrowed(""))
    }

    fn value(&mut self, key: &'a str) -> Kv<'a> {
        let line: &'a str = self.line;
        let b = line.as_bytes();
        let Some(&c) = b.get(self.pos) else {
            return Kv::Pair(key, std::borrow::Cow::Borrowed(""));
        };
        if c <= b' ' {
            return Kv::Pair(key, std::borrow::Cow::Borrowed(""));
        }
        if c == b'"' {
            return self.quoted(key);
        }
        let start = self.pos;
        while self.pos < b.len() {
            let c = b[self.pos];
            if c == b'=' || c == b'"' {
                let e = self.unexpected(c);
                self.skip_value();
                return e;
            }
            if c <= b' ' {
                break;
            }
            self.pos += 1;
        }
        Kv::Pair(key, std::borrow::Cow::Borrowed(self.slice(start, self.pos)))
    }

    fn quoted(&mut self, key: &'a str) -> Kv<'a> {
        let line: &'a str = self.line;
        let b = line.as_bytes();
        let open = self.pos;
        let mut i = open + 1;
        let mut esc = false;
        let mut has_esc = false;
        while i < b.len() {
            let c = b[i];
            if esc {
                esc = false;
            } else if c == b'\\' {
                has_esc = true;
                esc = true;
            } else if c == b'"' {
                self.pos = i + 1;
                let inner = self.slice(open + 1, i);
                if has_esc {
                    return match unescape(inner, Flavor::Logfmt) {
                        Some(v) => Kv::Pair(key, std::borrow::Cow::Owned(v)),
                        None => self.syntax_error("invalid quoted value"),
                    };
                }
                return Kv::Pair(key, std::borrow::Cow::Borrowed(inner));
            }
            i += 1;
        }
        self.pos = b.len();
        self.syntax_error("unterminated quoted value")
    }
}

/// `| logfmt`: key=value pairs. Keys are sanitised (`a-b` → `a_b`, `9x` →
/// `_9x`); quoted values may hold spaces and JSON-style escapes; a duplicate
/// key keeps its first value.
///
/// * `strict`: stop at the first malformed pair with a `LogfmtParserErr`
///   (details like `logfmt syntax error at pos 27 : unterminated quoted value`);
///   otherwise malformed pairs are skipped and parsing continues.
/// * `keep_empty`: keep keys with empty values (`k=` and standalone `k`);
///   otherwise they are dropped.
pub fn logfmt(line: &str, strict: bool, keep_empty: bool) -> Result<Extracted, ParserError> {
    logfmt_only(line, strict, keep_empty, None)
}

/// [`logfmt`], keeping only the labels named in `wanted` (a key `k` is
/// wanted when `wanted` holds `k` or `k_extracted`), as Loki's parser hints
/// do. Without `strict` it stops once each wanted label was found: later
/// pairs cannot change the first value of a key.
pub fn logfmt_only(line: &str, strict: bool, keep_empty: bool, wanted: Option<&[String]>) -> Result<Extracted, ParserError> {
    let is_wanted = |k: &str| match wanted {
        None => true,
        Some(w) => w.iter().any(|n| n == k || n.strip_suffix("_extracted") == Some(k)),
    };
    let mut dec = LogfmtDecoder::new(line);
    let mut col = Collector::new();
    loop {
        match dec.next_kv() {
            Kv::End => break,
            Kv::Error(msg) => {
                if strict {
                    return Err(ParserError::new(LOGFMT_PARSER_ERR, msg));
                }
            }
            Kv::Pair(k, v) => {
                // A valid name sanitizes to itself: test it before copying.
                if is_valid_label_name(k) && !is_wanted(k) {
                    continue;
                }
                let name = sanitize_label_name(k);
                if name.is_empty() || col.has(&name) || !is_wanted(&name) {
                    continue;
                }
                if !keep_empty && v.is_empty() {
                    continue;
                }
                col.push(name, replace_rune_error(&v));
                if let Some(w) = wanted {
                    let found = |n: &String| col.has(n) || n.strip_suffix("_extracted").is_some_and(|b| col.has(b));
                    if !strict && w.iter().all(found) {
                        break;
                    }
                }
            }
        }
    }
    Ok(col.out)
}

/// `| logfmt a, b="c"`: extracts only the listed keys, each under its identifier.
#[derive(Debug, Clone)]
pub struct LogfmtExpressions {
    /// (identifier, sanitised logfmt key)
    exprs: Vec<(String, String)>,
    /// `(identifier, expression)` as written.
    source: Vec<(String, String)>,
}

/// The key–value pairs of a logfmt line as written (keys not sanitized;
/// malformed pairs skipped).
pub fn logfmt_pairs(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dec = LogfmtDecoder::new(line);
    loop {
        match dec.next_kv() {
            Kv::End => return out,
            Kv::Error(_) => {}
            Kv::Pair(k, v) => out.push((k.to_string(), v.into_owned())),
        }
    }
}

impl LogfmtExpressions {
    /// `(identifier, expression)` pairs as written.
    pub fn source(&self) -> &[(String, String)] {
        &self.source
    }

    /// `exprs` holds `(identifier, key)` pairs; for a bare `a` pass `("a", "a")`.
    pub fn new(exprs: &[(String, String)]) -> Result<Self, CompileError> {
        if exprs.is_empty() {
            return Err(CompileError::NoLogfmtExpression);
        }
        let mut out = Vec::with_capacity(exprs.len());
        for (id, expr) in exprs {
            let key = expr.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\n');
            let mut chars = key.chars();
            match chars.next() {
                None => {
                    return Err(CompileError::Expression { expr: expr.clone(), reason: "syntax error: unexpected $end".into() });
                }
                Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
                Some(c) => return Err(CompileError::Expression { expr: expr.clone(), reason: format!("unexpected char {c}") }),
            }
            if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
                return Err(CompileError::Expression { expr: expr.clone(), reason: format!("unexpected char {c}") });
            }
            if !is_valid_label_name(id) {
                return Err(CompileError::InvalidExtractedName(id.clone()));
            }
            out.push((id.clone(), key.to_string()));
        }
        Ok(LogfmtExpressions { exprs: out, source: exprs.to_vec() })
    }

    /// One pair per identifier in declaration order; an identifier whose key is
    /// absent gets `""` (empty values are kept, as in Loki). The first
    /// occurrence of a key wins. `strict` behaves as in [`logfmt`].
    pub fn extract(&self, line: &str, strict: bool) -> Result<Extracted, ParserError> {
        let mut values: Vec<Option<String>> = vec![None; self.exprs.len()];
        let mut dec = LogfmtDecoder::new(line);
        loop {
            match dec.next_kv() {
                Kv::End => break,
                Kv::Error(msg) => {
                    if strict {
                        return Err(ParserError::new(LOGFMT_PARSER_ERR, msg));
                    }
                }
                Kv::Pair(k, v) => {
                    // Wanted keys are valid names, which sanitize to
                    // themselves: compare the key as it is first, and
                    // sanitize only a key that is not a valid name.
                    let sanitized;
                    let name = if is_valid_label_name(k) {
                        k
                    } else {
                        sanitized = sanitize_label_name(k);
                        sanitized.as_str()
                    };
                    if name.is_empty() {
                        continue;
                    }
                    let mut found = false;
                    for (j, (_, key)) in self.exprs.iter().enumerate() {
                        if key == name && values[j].is_none() {
                            // Loki drops (empties) values holding U+FFFD here.
                            let v = if has_rune_error(&v) { String::new() } else { v.to_string() };
                            values[j] = Some(v);
                            found = true;
                        }
                    }
                    if found && !strict && values.iter().all(Option::is_some) {
                        // Later pairs cannot change the result (the first wins).
                        break;
                    }
                }
            }
        }
        // One pair per identifier, the first of a repeated one winning.
        // (Through a set when the list is long: a query may repeat one many times.)
        let mut out: Extracted = Vec::with_capacity(self.exprs.len());
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for ((id, _), v) in self.exprs.iter().zip(values) {
            let new = if self.exprs.len() <= 8 { !out.iter().any(|(o, _)| o == id) } else { seen.insert(id.as_str()) };
            if new {
                out.push((id.clone(), v.unwrap_or_default()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{kv, exprs};

    #[test]
    fn logfmt_only_keeps_the_wanted_labels_first_values() {
        let line = "level=info a=1 9x=2 level=warn b= lvl_extracted=z";
        let wanted = ["level".to_string(), "_9x".to_string(), "b_extracted".to_string()];
        let got = logfmt_only(line, false, true, Some(&wanted)).unwrap();
        assert_eq!(got, vec![("level".into(), "info".into()), ("_9x".into(), "2".into()), ("b".into(), "".into())]);
        assert_eq!(logfmt_only(line, false, false, Some(&wanted)).unwrap().len(), 2, "empty values dropped");
        assert_eq!(logfmt_only(line, false, false, None).unwrap(), logfmt(line, false, false).unwrap());
        assert!(logfmt_only("level=info bad=\"x", true, false, Some(&wanted)).is_err(), "--strict still reads the whole line");
    }

    #[test]
    fn logfmt_basic() {
        assert_eq!(logfmt("level=info status=200", false, false).unwrap(), kv(&[("level", "info"), ("status", "200")]));
    }

    #[test]
    fn logfmt_conformance_edge_cases() {
        let line = r#"a-b=1 9x=2 dup=first dup=second msg="hi there" empty="#;
        assert_eq!(
            logfmt(line, false, false).unwrap(),
            kv(&[("a_b", "1"), ("_9x", "2"), ("dup", "first"), ("msg", "hi there")])
        );
        assert_eq!(
            logfmt(line, false, true).unwrap(),
            kv(&[("a_b", "1"), ("_9x", "2"), ("dup", "first"), ("msg", "hi there"), ("empty", "")])
        );
    }

    #[test]
    fn logfmt_clash_input_is_plain() {
        // The caller renames clashes; the parser just returns the pairs.
        assert_eq!(logfmt("sl=p md=p tri=p", false, false).unwrap(), kv(&[("sl", "p"), ("md", "p"), ("tri", "p")]));
    }

    #[test]
    fn logfmt_malformed() {
        let line = r#"good=1 bad="unterminated"#;
        assert_eq!(logfmt(line, false, false).unwrap(), kv(&[("good", "1")]));
        let err = logfmt(line, true, false).unwrap_err();
        assert_eq!(err.kind, "LogfmtParserErr");
        assert_eq!(err.details, format!("logfmt syntax error at pos {} : unterminated quoted value", line.len() + 1));
    }

    #[test]
    fn logfmt_escaped_quotes_and_unicode() {
        let line = r#"msg="he said \"hi\"" city=Zürich jp="日本語" tab="a\tb" u="caf\u00e9""#;
        assert_eq!(
            logfmt(line, false, false).unwrap(),
            kv(&[("msg", "he said \"hi\""), ("city", "Zürich"), ("jp", "日本語"), ("tab", "a\tb"), ("u", "café")])
        );
    }

    #[test]
    fn logfmt_standalone_keys_and_empty() {
        assert_eq!(logfmt("foo bar=1 baz", false, false).unwrap(), kv(&[("bar", "1")]));
        assert_eq!(logfmt("foo bar=1 baz", false, true).unwrap(), kv(&[("foo", ""), ("bar", "1"), ("baz", "")]));
        assert_eq!(logfmt(r#"q="""#, false, true).unwrap(), kv(&[("q", "")]));
        // An empty first occurrence does not block a later non-empty one.
        assert_eq!(logfmt("a= a=1", false, false).unwrap(), kv(&[("a", "1")]));
    }

    #[test]
    fn logfmt_unexpected_bytes() {
        assert_eq!(logfmt("a=b=c d=1", false, false).unwrap(), kv(&[("d", "1")]));
        let err = logfmt("a=b=c d=1", true, false).unwrap_err();
        assert_eq!(err.details, "logfmt syntax error at pos 4 : unexpected '='");
        assert_eq!(logfmt("=x y=2", false, false).unwrap(), kv(&[("y", "2")]));
        assert_eq!(logfmt(r#"ke"y=1 z=3"#, false, false).unwrap(), kv(&[("z", "3")]));
        let err = logfmt(r#"ke"y=1"#, true, false).unwrap_err();
        assert_eq!(err.details, "logfmt syntax error at pos 3 : unexpected '\"'");
    }

    #[test]
    fn logfmt_invalid_quoted_value() {
        let line = r#"a="bad\q" b=2"#;
        assert_eq!(logfmt(line, false, false).unwrap(), kv(&[("b", "2")]));
        let err = logfmt(line, true, false).unwrap_err();
        assert!(err.details.contains("invalid quoted value"), "{}", err.details);
    }

    #[test]
    fn logfmt_whitespace_and_empty_line() {
        assert_eq!(logfmt("", false, false).unwrap(), kv(&[]));
        assert_eq!(logfmt("   \t ", true, true).unwrap(), kv(&[]));
        assert_eq!(logfmt("  a=1\t\tb=2  ", false, false).unwrap(), kv(&[("a", "1"), ("b", "2")]));
    }

    #[test]
    fn logfmt_rune_error_becomes_space() {
        assert_eq!(logfmt("a=x\u{FFFD}y", false, false).unwrap(), kv(&[("a", "x y")]));
    }

    #[test]
    fn logfmt_expressions_conformance() {
        let e = LogfmtExpressions::new(&exprs(&[("level", "level"), ("code", "status")])).unwrap();
        assert_eq!(
            e.extract("level=info status=200 msg=hi", false).unwrap(),
            kv(&[("level", "info"), ("code", "200")])
        );
        assert_eq!(e.extract("msg=hi", false).unwrap(), kv(&[("level", ""), ("code", "")]));
        assert!(LogfmtExpressions::new(&[]).is_err());
        assert!(LogfmtExpressions::new(&exprs(&[("a", "1x")])).is_err());
        assert!(LogfmtExpressions::new(&exprs(&[("1a", "x")])).is_err());
        let e = LogfmtExpressions::new(&exprs(&[("a", "a")])).unwrap();
        assert!(e.extract(r#"a=1 b="x"#, true).is_err());
        assert_eq!(e.extract(r#"a=1 b="x"#, false).unwrap(), kv(&[("a", "1")]));
        // sanitised keys match
        let e = LogfmtExpressions::new(&exprs(&[("x", "a_b")])).unwrap();
        assert_eq!(e.extract("a-b=5", false).unwrap(), kv(&[("x", "5")]));
    }
}
