//! LogQL's label-extracting parser stages, one file each: `| json`, `| json a="x.y", ...`,
//! `| logfmt` (`--strict`, `--keep-empty`, and `| logfmt a, b="c"`),
//! `| regexp "..."`, `| pattern "..."` and `| unpack`.
//!
//! The semantics follow Loki's `pkg/logql/log/parser.go` together with the
//! `jsonparser`-style object walk, the `logfmt` decoder, the `pattern`
//! matcher and the `jsonexpr` path grammar (re-implemented here, not copied).
//!
//! Every function returns the extracted `(name, value)` pairs in the order
//! they were found, with names already sanitised, and each name at most once
//! (**first occurrence wins** for duplicate keys within one line, after
//! sanitisation; e.g. `dup=first dup=second` gives `dup="first"`).
//!
//! # What the caller must do to match Loki
//!
//! * **Name clashes.** If an extracted name already exists as a *base* label
//!   (stream label or structured metadata) the value must be stored under
//!   `<name>_extracted` instead (same rule for every parser, including the
//!   identifiers of `| json a="..."` / `| logfmt a="..."`).
//! * **Errors.** On `Err(ParserError { kind, details })` Loki keeps the line,
//!   sets `__error__ = kind` and, *only when `details` is non-empty*,
//!   `__error_details__ = details` (the `| json a="x"` stage on a line that does
//!   not start with `{`, `[` or `"` reports no details). Loki also keeps any
//!   labels it set before hitting the error; these functions return nothing
//!   in that case (the line normally gets dropped by `__error__=""` anyway).
//! * **`| json a="path"`:** a path that is absent yields `(a, "")`. Loki only
//!   adds that empty label when no label `a` exists yet (base or parsed), so
//!   for a clash with an empty value the caller should simply skip it. An
//!   empty line extracts nothing (and is not an error).
//! * **`| logfmt a, b="c"`:** use [`LogfmtExpressions`]; a bare `a` is the pair
//!   `("a", "a")`. Identifiers that are not found get an empty value (Loki adds
//!   them only when the identifier is not already a base label).
//! * **`| unpack`:** when the second element is `Some(line)` (the `_entry`
//!   key was present) that text replaces the log line for the following
//!   stages. Without `_entry`, Loki adds no labels at all.
//! * **Empty values** are returned as they are (`json` string `""`, empty
//!   `regexp`/`pattern` captures, `logfmt --keep-empty`); `logfmt` without
//!   `--keep-empty` drops them itself. JSON `null` and arrays are skipped by
//!   `| json`.
//! * Loki's parser hints (extract only the labels a query needs):
//!   [`json_only`] and [`logfmt_only`].
//! * Deviation: `| json` refuses objects nested deeper than 256 levels
//!   (`JSONParserErr`) to protect the stack; Loki has no such limit.
//! * `| regexp` uses the `regex` crate after rewriting `\d \w \s` (and their
//!   negations) to Go's ASCII-only classes; other RE2 syntax is shared.


use std::collections::HashSet;
use std::fmt;

mod json;
mod jsonpath;
mod logfmt;
mod pattern;
mod regexp;
mod unpack;

pub use json::{json, json_only};
pub use jsonpath::JsonExpressions;
pub use logfmt::{logfmt, logfmt_only, logfmt_pairs, LogfmtExpressions};
pub use pattern::PatternParser;
pub use regexp::{go_regex_error, RegexpParser};
pub use unpack::unpack;

/// Extracted (label name, value) pairs in the order found. Names are already sanitised.
pub type Extracted = Vec<(String, String)>;

/// `__error__` value for `json`, `| json a="..."` and `unpack` failures.
pub const JSON_PARSER_ERR: &str = "JSONParserErr";
/// `__error__` value for `logfmt --strict` failures.
pub const LOGFMT_PARSER_ERR: &str = "LogfmtParserErr";
/// The key of a packed (promtail `pack` stage) JSON line holding the original line.
pub const PACKED_ENTRY_KEY: &str = "_entry";

/// Maximum object nesting followed by `| json` (guards the stack; Loki has no limit).
const MAX_JSON_DEPTH: usize = 256;

/// A parser failure: Loki then sets `__error__` to `kind` and `__error_details__` to `details`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParserError {
    pub kind: &'static str,
    pub details: String,
}

impl ParserError {
    fn new(kind: &'static str, details: impl Into<String>) -> Self {
        ParserError { kind, details: details.into() }
    }
}

impl fmt::Display for ParserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            f.write_str(self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.details)
        }
    }
}

impl std::error::Error for ParserError {}

/// Collects pairs, keeping the first value of a duplicate name and ignoring empty names.
struct Collector {
    out: Extracted,
    seen: HashSet<String>,
}

impl Collector {
    fn new() -> Self {
        Collector { out: Vec::new(), seen: HashSet::new() }
    }

    fn has(&self, name: &str) -> bool {
        self.seen.contains(name)
    }

    fn push(&mut self, name: String, value: String) {
        if name.is_empty() || self.seen.contains(&name) {
            return;
        }
        self.seen.insert(name.clone());
        self.out.push((name, value));
    }
}

/// Loki's label-name sanitisation for extracted keys: surrounding whitespace
/// is trimmed, a leading ASCII digit gets a `_` prefix (`9x` → `_9x`), and
/// every character other than `[A-Za-z0-9_]` becomes `_` (one `_` per
/// character, so `é` → `_`). An empty or all-blank key gives `""`.
pub fn sanitize_label_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    append_sanitized(&mut out, name);
    out
}

/// The label `| json` gives a value at `path` (its keys from the outside in):
/// `["user", "id"]` is `user_id`.
pub fn json_label_name(path: &[&str]) -> String {
    let mut name = String::new();
    for key in path {
        if !name.is_empty() {
            name.push('_');
        }
        append_sanitized(&mut name, key);
    }
    name
}

/// Appends the sanitised `key` to `buf`; the leading-digit `_` is only added
/// when `buf` is empty (this is how nested JSON keys are joined).
fn append_sanitized(buf: &mut String, key: &str) {
    let key = key.trim();
    if key.is_empty() {
        return;
    }
    if buf.is_empty() && key.starts_with(|c: char| c.is_ascii_digit()) {
        buf.push('_');
    }
    for c in key.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            buf.push(c);
        } else {
            buf.push('_');
        }
    }
}

/// Prometheus' (legacy) label name rule: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_valid_label_name(n: &str) -> bool {
    let mut it = n.chars();
    match it.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    it.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `s` holds U+FFFD (the replacement character, EF BF BD in
/// UTF-8); most text has no 0xEF byte at all, which memchr rules out fast.
fn has_rune_error(s: &str) -> bool {
    memchr::memchr(0xEF, s.as_bytes()).is_some() && s.contains('\u{FFFD}')
}

/// Prometheus rejects U+FFFD in label values; Loki replaces it with a space.
fn replace_rune_error(s: &str) -> String {
    if has_rune_error(s) {
        s.replace('\u{FFFD}', " ")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
fn kv(pairs: &[(&str, &str)]) -> Extracted {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[cfg(test)]
fn exprs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_names() {
        assert_eq!(sanitize_label_name("a-b"), "a_b");
        assert_eq!(sanitize_label_name("9x"), "_9x");
        assert_eq!(sanitize_label_name("a.b"), "a_b");
        assert_eq!(sanitize_label_name("  spaced  "), "spaced");
        assert_eq!(sanitize_label_name("é"), "_");
        assert_eq!(sanitize_label_name("日本"), "__");
        assert_eq!(sanitize_label_name(""), "");
        assert_eq!(sanitize_label_name("   "), "");
        assert_eq!(sanitize_label_name("ok_Name1"), "ok_Name1");
    }


    #[test]
    fn no_panics_on_odd_input() {
        let inputs = [
            "",
            " ",
            "{",
            "}",
            "[",
            "]",
            "\"",
            "\\",
            "{\"",
            "{\"a",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":\"",
            "{\"a\":\"\\",
            "{\"a\":\"\\u12",
            "{\"a\":[",
            "{\"a\":{",
            "{\"\\u",
            "{\"a\":1,",
            "{\"a\":1,}",
            "{,}",
            "=",
            "==",
            "a=\"",
            "a=\"\\",
            "a=\"\\u00",
            "\"=\"",
            "é=ü",
            "<",
            "<a",
            "<a>",
            "日本語",
            "\u{FFFD}=1",
            "k\u{FFFD}=1",
            "{\"é\":\"ü\"}",
            "[[[[",
            "{\"a\":[\"]\"]}",
            "\0",
            "a=\0",
            "{\"a\":-}",
            "{\"a\":nul}",
        ];
        let je = JsonExpressions::new(&exprs(&[("a", "a"), ("b", "a[0].b"), ("c", r#"["é"]"#)])).unwrap();
        let le = LogfmtExpressions::new(&exprs(&[("a", "a")])).unwrap();
        let re = RegexpParser::new(r"(?P<x>.*)").unwrap();
        let pp = PatternParser::new("<a>=<b>\"<c>").unwrap();
        for s in inputs {
            let _ = json(s);
            let _ = je.extract(s);
            let _ = logfmt(s, false, false);
            let _ = logfmt(s, true, true);
            let _ = le.extract(s, true);
            let _ = le.extract(s, false);
            let _ = re.extract(s);
            let _ = pp.extract(s);
            let _ = unpack(s);
            let _ = sanitize_label_name(s);
            let _ = PatternParser::new(s);
            let _ = RegexpParser::new(s);
            let _ = JsonExpressions::new(&exprs(&[("a", s)]));
        }
    }
}
