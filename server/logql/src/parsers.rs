//! LogQL label-extracting parser stages: `| json`, `| json a="x.y", ...`,
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
//! * Loki's parser hints (extract only the labels a query needs) are an
//!   optimisation only and are not modelled.
//! * Deviation: `| json` refuses objects nested deeper than 256 levels
//!   (`JSONParserErr`) to protect the stack; Loki has no such limit.
//! * `| regexp` uses the `regex` crate after rewriting `\d \w \s` (and their
//!   negations) to Go's ASCII-only classes; other RE2 syntax is shared.

use std::collections::HashSet;
use std::fmt;

use regex::Regex;

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

// ---------------------------------------------------------------------------
// Label names
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// String unescaping
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// `jsonparser.Unescape`: lone surrogates are errors, raw control chars allowed.
    Json,
    /// go-logfmt `unquoteBytes` (encoding/json rules): lone surrogates become
    /// U+FFFD, `\'` is accepted, raw control characters and `"` are errors.
    Logfmt,
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let digits = b.get(at..at.checked_add(4)?)?;
    let mut v: u32 = 0;
    for &d in digits {
        let n = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        v = v * 16 + u32::from(n);
    }
    Some(v)
}

/// Unescapes the inside of a quoted string. `None` on an invalid sequence.
fn unescape(s: &str, flavor: Flavor) -> Option<String> {
    let b = s.as_bytes();
    if flavor == Flavor::Json && !b.contains(&b'\\') {
        return Some(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut i = 0usize;
    let mut lit_start = 0usize;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            out.push_str(s.get(lit_start..i).unwrap_or(""));
            let e = *b.get(i + 1)?;
            let simple = match e {
                b'"' => Some('"'),
                b'\\' => Some('\\'),
                b'/' => Some('/'),
                b'\'' if flavor == Flavor::Logfmt => Some('\''),
                b'b' => Some('\u{8}'),
                b'f' => Some('\u{c}'),
                b'n' => Some('\n'),
                b'r' => Some('\r'),
                b't' => Some('\t'),
                b'u' => None,
                _ => return None,
            };
            match simple {
                Some(ch) => {
                    out.push(ch);
                    i += 2;
                }
                None => {
                    let r = hex4(b, i + 2)?;
                    i += 6;
                    if (0xD800..=0xDFFF).contains(&r) {
                        let low = if r < 0xDC00 && b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'u') {
                            hex4(b, i + 2).filter(|r2| (0xDC00..=0xDFFF).contains(r2))
                        } else {
                            None
                        };
                        match low {
                            Some(r2) => {
                                let cp = 0x10000 + ((r - 0xD800) << 10) + (r2 - 0xDC00);
                                out.push(char::from_u32(cp)?);
                                i += 6;
                            }
                            None => match flavor {
                                Flavor::Json => return None,
                                Flavor::Logfmt => out.push('\u{FFFD}'),
                            },
                        }
                    } else {
                        out.push(char::from_u32(r)?);
                    }
                }
            }
            lit_start = i;
            continue;
        }
        if flavor == Flavor::Logfmt && (c == b'"' || c < b' ') {
            return None;
        }
        i += 1;
    }
    out.push_str(s.get(lit_start..).unwrap_or(""));
    Some(out)
}

/// Loki's `unescapeJSONString`: invalid escapes give `""`, U+FFFD becomes a space.
fn unescape_json_string(raw: &str) -> String {
    match unescape(raw, Flavor::Json) {
        Some(s) => replace_rune_error(&s),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------
// A lenient JSON walker modelled on github.com/buger/jsonparser
// ---------------------------------------------------------------------------

const E_MALFORMED_JSON: &str = "Malformed JSON error";
const E_UNKNOWN_VALUE: &str = "Unknown value type";
const E_MALFORMED_STRING: &str = "Value is string, but can't find closing '\"' symbol";
const E_MALFORMED_ARRAY: &str = "Value is array, but can't find closing ']' symbol";
const E_MALFORMED_OBJECT: &str = "Value looks like object, but can't find closing '}' symbol";
const E_BAD_ESCAPE: &str = "Encountered an invalid escape sequence in a string";
const E_TOO_DEEP: &str = "Value exceeds the maximum JSON nesting depth";
const E_NOT_OBJECT: &str = "expecting json object(6), but it is not";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JType {
    String,
    Number,
    Object,
    Array,
    Boolean,
    Null,
}

/// A located JSON value. Offsets are byte offsets into the whole line.
#[derive(Clone, Copy, Debug)]
struct JVal {
    ty: JType,
    /// First byte of the value token (the opening quote of a string).
    tok: usize,
    /// Data range: inside the quotes for strings, the whole token otherwise.
    start: usize,
    end: usize,
    /// Offset just after the value.
    next: usize,
}

enum Flow {
    Continue,
    Stop,
}

fn is_json_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// Index of the first non-whitespace byte at or after `from`.
fn next_token(d: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < d.len() {
        if !is_json_ws(d[i]) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Index of the closing quote of a string whose content starts at `from`,
/// and whether the string holds escapes.
fn string_end(d: &[u8], from: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    let mut i = from;
    while i < d.len() {
        match d[i] {
            b'\\' => {
                escaped = true;
                i += 2;
            }
            b'"' => return Some((i, escaped)),
            _ => i += 1,
        }
    }
    None
}

/// Offset after the bracket matching the `open` at `from` (strings skipped,
/// contents not validated, as jsonparser's `blockEnd`).
fn block_end(d: &[u8], from: usize, open: u8, close: u8) -> Option<usize> {
    let mut level = 0usize;
    let mut i = from;
    while i < d.len() {
        let c = d[i];
        if c == b'"' {
            let (q, _) = string_end(d, i + 1)?;
            i = q + 1;
            continue;
        }
        if c == open {
            level += 1;
        } else if c == close {
            level = level.saturating_sub(1);
            if level == 0 {
                return Some(i + 1);
            }
        }
        i += 1;
    }
    None
}

fn token_end(d: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < d.len() {
        if matches!(d[i], b' ' | b'\n' | b'\r' | b'\t' | b',' | b'}' | b']') {
            return i;
        }
        i += 1;
    }
    d.len()
}

/// Locates the value starting at (or after whitespace from) `from`.
fn get_value(d: &[u8], from: usize) -> Result<JVal, &'static str> {
    let o = next_token(d, from).ok_or(E_MALFORMED_JSON)?;
    match d[o] {
        b'"' => {
            let (q, _) = string_end(d, o + 1).ok_or(E_MALFORMED_STRING)?;
            Ok(JVal { ty: JType::String, tok: o, start: o + 1, end: q, next: q + 1 })
        }
        b'[' => {
            let e = block_end(d, o, b'[', b']').ok_or(E_MALFORMED_ARRAY)?;
            Ok(JVal { ty: JType::Array, tok: o, start: o, end: e, next: e })
        }
        b'{' => {
            let e = block_end(d, o, b'{', b'}').ok_or(E_MALFORMED_OBJECT)?;
            Ok(JVal { ty: JType::Object, tok: o, start: o, end: e, next: e })
        }
        c => {
            let e = token_end(d, o);
            let tok = d.get(o..e).unwrap_or(&[]);
            let ty = match c {
                b't' | b'f' if tok == b"true" || tok == b"false" => JType::Boolean,
                b'n' if tok == b"null" => JType::Null,
                b'0'..=b'9' | b'-' => JType::Number,
                _ => return Err(E_UNKNOWN_VALUE),
            };
            Ok(JVal { ty, tok: o, start: o, end: e, next: e })
        }
    }
}

/// Calls `cb(key, value)` for each member of the object at `from`, in order.
/// Keys are unescaped. Trailing data after the closing brace is ignored.
fn object_each<F>(line: &str, from: usize, mut cb: F) -> Result<(), &'static str>
where
    F: FnMut(&str, JVal) -> Result<Flow, &'static str>,
{
    let d = line.as_bytes();
    let mut o = next_token(d, from).ok_or(E_MALFORMED_OBJECT)?;
    if d[o] != b'{' {
        return Err(E_MALFORMED_OBJECT);
    }
    o = next_token(d, o + 1).ok_or(E_MALFORMED_JSON)?;
    if d[o] == b'}' {
        return Ok(());
    }
    while o < d.len() {
        match d[o] {
            b'"' => o += 1,
            b'}' => return Ok(()),
            _ => return Err(E_MALFORMED_OBJECT),
        }
        let (q, esc) = string_end(d, o).ok_or(E_MALFORMED_JSON)?;
        let raw = line.get(o..q).unwrap_or("");
        let unescaped;
        let key: &str = if esc {
            unescaped = unescape(raw, Flavor::Json).ok_or(E_BAD_ESCAPE)?;
            &unescaped
        } else {
            raw
        };
        o = next_token(d, q + 1).ok_or(E_MALFORMED_JSON)?;
        if d[o] != b':' {
            return Err(E_MALFORMED_JSON);
        }
        let v = get_value(d, o + 1)?;
        if let Flow::Stop = cb(key, v)? {
            return Ok(());
        }
        o = next_token(d, v.next).ok_or(E_MALFORMED_ARRAY)?;
        match d[o] {
            b'}' => return Ok(()),
            b',' => o += 1,
            _ => return Err(E_MALFORMED_OBJECT),
        }
        o = next_token(d, o).ok_or(E_MALFORMED_ARRAY)?;
    }
    Err(E_MALFORMED_OBJECT)
}

/// Calls `cb(index, value)` for each element of the array at `from`.
fn array_each<F>(line: &str, from: usize, mut cb: F) -> Result<(), &'static str>
where
    F: FnMut(usize, JVal) -> Result<Flow, &'static str>,
{
    let d = line.as_bytes();
    let mut o = next_token(d, from).ok_or(E_MALFORMED_ARRAY)?;
    if d[o] != b'[' {
        return Err(E_MALFORMED_ARRAY);
    }
    o = next_token(d, o + 1).ok_or(E_MALFORMED_ARRAY)?;
    if d[o] == b']' {
        return Ok(());
    }
    let mut idx = 0usize;
    loop {
        let v = get_value(d, o)?;
        if let Flow::Stop = cb(idx, v)? {
            return Ok(());
        }
        idx += 1;
        o = next_token(d, v.next).ok_or(E_MALFORMED_ARRAY)?;
        match d[o] {
            b']' => return Ok(()),
            b',' => o += 1,
            _ => return Err(E_MALFORMED_ARRAY),
        }
    }
}

fn raw_slice(line: &str, start: usize, end: usize) -> &str {
    line.get(start..end).unwrap_or("")
}

// ---------------------------------------------------------------------------
// | json
// ---------------------------------------------------------------------------

/// `| json`: every scalar leaf of a JSON object; nested keys joined with `_`
/// (`{"a":{"b":1}}` → `a_b="1"`). Arrays and `null` are skipped; numbers keep
/// their JSON text (`1.5`, `1e3`); booleans become `"true"`/`"false"`;
/// strings are unescaped (an invalid escape gives `""`). A duplicate key keeps
/// its first value. A line that is not a JSON object fails with `JSONParserErr`.
pub fn json(line: &str) -> Result<Extracted, ParserError> {
    json_only(line, None)
}

/// [`json`], keeping only the labels named in `wanted` (a label `k` is
/// wanted when `wanted` holds `k` or `k_extracted`), as Loki's parser hints
/// do; the whole line is still read, so malformed JSON still fails.
pub fn json_only(line: &str, wanted: Option<&[String]>) -> Result<Extracted, ParserError> {
    let mut col = Collector::new();
    let mut prefix = String::new();
    json_flatten(line, 0, &mut prefix, &mut col, wanted, 0).map_err(|e| ParserError::new(JSON_PARSER_ERR, e))?;
    Ok(col.out)
}

fn json_flatten(
    line: &str,
    from: usize,
    prefix: &mut String,
    col: &mut Collector,
    wanted: Option<&[String]>,
    depth: usize,
) -> Result<(), &'static str> {
    if depth > MAX_JSON_DEPTH {
        return Err(E_TOO_DEEP);
    }
    object_each(line, from, |key, v| {
        match v.ty {
            JType::String | JType::Number | JType::Boolean => {
                let name = if prefix.is_empty() {
                    sanitize_label_name(key)
                } else {
                    let mut n = String::with_capacity(prefix.len() + key.len() + 1);
                    n.push_str(prefix.as_str());
                    n.push('_');
                    append_sanitized(&mut n, key);
                    n
                };
                let is_wanted = |n: &str| wanted.is_none_or(|w| w.iter().any(|x| x == n || x.strip_suffix("_extracted") == Some(n)));
                if !name.is_empty() && is_wanted(&name) && !col.has(&name) {
                    let value = json_leaf_value(line, &v);
                    col.push(name, value);
                }
            }
            JType::Object => {
                let plen = prefix.len();
                if !prefix.is_empty() {
                    prefix.push('_');
                }
                append_sanitized(&mut *prefix, key);
                let r = json_flatten(line, v.tok, &mut *prefix, &mut *col, wanted, depth + 1);
                prefix.truncate(plen);
                r?;
            }
            JType::Array | JType::Null => {}
        }
        Ok(Flow::Continue)
    })
}

fn json_leaf_value(line: &str, v: &JVal) -> String {
    let raw = raw_slice(line, v.start, v.end);
    match v.ty {
        JType::String => unescape_json_string(raw),
        JType::Number => raw.to_string(),
        JType::Boolean => {
            if raw == "true" {
                "true".to_string()
            } else {
                "false".to_string()
            }
        }
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------
// | json a="x.y", b="z[0]"
// ---------------------------------------------------------------------------

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
    pub fn new(exprs: &[(String, String)]) -> Result<Self, String> {
        let mut out = Vec::with_capacity(exprs.len());
        for (id, expr) in exprs {
            let path = parse_json_path(expr).map_err(|e| format!("cannot parse expression [{}]: {}", expr, e))?;
            if !is_valid_label_name(id) {
                return Err(format!("invalid extracted label name '{}'", id));
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

// ---------------------------------------------------------------------------
// | logfmt
// ---------------------------------------------------------------------------

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
    pub fn new(exprs: &[(String, String)]) -> Result<Self, String> {
        if exprs.is_empty() {
            return Err("no logfmt expression provided".to_string());
        }
        let mut out = Vec::with_capacity(exprs.len());
        for (id, expr) in exprs {
            let key = expr.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\n');
            let mut chars = key.chars();
            match chars.next() {
                None => {
                    return Err(format!("cannot parse expression [{}]: syntax error: unexpected $end", expr));
                }
                Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
                Some(c) => return Err(format!("cannot parse expression [{}]: unexpected char {}", expr, c)),
            }
            if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
                return Err(format!("cannot parse expression [{}]: unexpected char {}", expr, c));
            }
            if !is_valid_label_name(id) {
                return Err(format!("invalid extracted label name '{}'", id));
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

// ---------------------------------------------------------------------------
// | regexp
// ---------------------------------------------------------------------------

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
    pub fn new(re: &str) -> Result<Self, String> {
        let compiled = match Regex::new(&go_compat_regex(re)) {
            Ok(r) => r,
            Err(e) => {
                if let Some(dup) = find_duplicate_group_name(re) {
                    return Err(format!("duplicate extracted label name '{}'", dup));
                }
                return Err(go_regex_error(re, &e));
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
                return Err(format!("invalid extracted label name '{}'", n));
            }
            if !uniq.insert(n.to_string()) {
                return Err(format!("duplicate extracted label name '{}'", n));
            }
            names.push((i, sanitize_label_name(n)));
        }
        if names.is_empty() {
            return Err("at least one named capture must be supplied".to_string());
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

// ---------------------------------------------------------------------------
// | pattern
// ---------------------------------------------------------------------------

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
    pub fn new(pattern: &str) -> Result<Self, String> {
        let nodes = lex_pattern(pattern);
        let names: Vec<String> = nodes
            .iter()
            .filter_map(|n| match n {
                PNode::Cap(c) if c != UNNAMED_CAPTURE => Some(c.clone()),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return Err("at least one capture is required".to_string());
        }
        for w in nodes.windows(2) {
            if let (PNode::Cap(_), PNode::Cap(_)) = (&w[0], &w[1]) {
                return Err("found consecutive capture: invalid expression".to_string());
            }
        }
        let mut uniq: HashSet<&str> = HashSet::new();
        for n in &names {
            if !uniq.insert(n.as_str()) {
                return Err(format!("duplicate capture name ({}): invalid expression", n));
            }
        }
        for n in &names {
            if !is_valid_label_name(n) {
                return Err(format!("invalid capture label name '{}'", n));
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

// ---------------------------------------------------------------------------
// | unpack
// ---------------------------------------------------------------------------

/// `| unpack`: a JSON object of string values (promtail's `pack` stage). The
/// special key `_entry` replaces the line. Returns (extracted labels,
/// `Some(new line)` if `_entry` is present). As in Loki, labels are only
/// produced when `_entry` is present; non-string values are skipped; keys are
/// sanitised; a duplicate key keeps its first value. A line not starting with
/// `{` (or malformed JSON) fails with `JSONParserErr`; an empty line yields nothing.
pub fn unpack(line: &str) -> Result<(Extracted, Option<String>), ParserError> {
    match line.as_bytes().first() {
        None => return Ok((Vec::new(), None)),
        Some(b'{') => {}
        Some(_) => return Err(ParserError::new(JSON_PARSER_ERR, E_NOT_OBJECT)),
    }
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut entry: Option<String> = None;
    object_each(line, 0, |key, v| {
        if v.ty != JType::String {
            return Ok(Flow::Continue);
        }
        let raw = raw_slice(line, v.start, v.end);
        if key == PACKED_ENTRY_KEY {
            entry = Some(unescape(raw, Flavor::Json).ok_or(E_BAD_ESCAPE)?);
            return Ok(Flow::Continue);
        }
        labels.push((sanitize_label_name(key), unescape_json_string(raw)));
        Ok(Flow::Continue)
    })
    .map_err(|e| ParserError::new(JSON_PARSER_ERR, e))?;
    match entry {
        None => Ok((Vec::new(), None)),
        Some(e) => {
            let mut col = Collector::new();
            for (n, v) in labels {
                col.push(n, v);
            }
            Ok((col.out, Some(e)))
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Extracted {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn exprs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    // ---- sanitize ----

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

    // ---- logfmt ----

    #[test]
    fn json_only_keeps_the_wanted_labels_and_still_fails_on_bad_json() {
        let wanted = ["level".to_string(), "req_status_extracted".to_string()];
        let got = json_only(r#"{"level":"info","trace":"x","req":{"status":500,"path":"/"}}"#, Some(&wanted)).unwrap();
        assert_eq!(got, vec![("level".into(), "info".into()), ("req_status".into(), "500".into())]);
        assert!(json_only(r#"{"level":"info","trace":"#, Some(&wanted)).is_err());
    }

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

    // ---- json ----

    #[test]
    fn json_basic() {
        assert_eq!(json(r#"{"level":"info","status":200}"#).unwrap(), kv(&[("level", "info"), ("status", "200")]));
    }

    #[test]
    fn json_conformance_nested_null_array() {
        let line = r#"{"lvl":"warn","obj":{"x":1,"y":{"z":2}},"ok":true,"no":false,"nil":null,"arr":[1,2],"f":1.5}"#;
        assert_eq!(
            json(line).unwrap(),
            kv(&[("lvl", "warn"), ("obj_x", "1"), ("obj_y_z", "2"), ("ok", "true"), ("no", "false"), ("f", "1.5")])
        );
    }

    #[test]
    fn json_conformance_dotted_and_duplicates() {
        let line = r#"{"level":"parsed","a.b":1,"dup":"first","dup":"second"}"#;
        assert_eq!(json(line).unwrap(), kv(&[("level", "parsed"), ("a_b", "1"), ("dup", "first")]));
    }

    #[test]
    fn json_malformed() {
        let err = json("broken").unwrap_err();
        assert_eq!(err.kind, "JSONParserErr");
        assert_eq!(err.details, "Value looks like object, but can't find closing '}' symbol");
        assert_eq!(json(r#"{"ok":1}"#).unwrap(), kv(&[("ok", "1")]));
        assert!(json("").is_err());
        assert!(json(r#"{"a":1"#).is_err());
        assert!(json(r#"{"a":}"#).is_err());
        assert!(json(r#"{"a" 1}"#).is_err());
        assert!(json(r#"{"a":tru}"#).is_err());
        assert!(json(r#"{"a":{"b":}}"#).is_err());
        assert!(json(r#"[1,2]"#).is_err());
        assert!(json(r#"{"a":"unterminated}"#).is_err());
    }

    #[test]
    fn json_values_and_escapes() {
        let line = r#"{"s":"caf\u00e9 \ud83d\ude00","n":-1e3,"q":"say \"hi\"\n","e":"","bad":"\x","k\"ey":1}"#;
        assert_eq!(
            json(line).unwrap(),
            kv(&[("s", "café 😀"), ("n", "-1e3"), ("q", "say \"hi\"\n"), ("e", ""), ("bad", ""), ("k_ey", "1")])
        );
        // Lone surrogate → invalid escape → empty value.
        assert_eq!(json(r#"{"a":"\ud83d"}"#).unwrap(), kv(&[("a", "")]));
        // Raw unicode passes through; U+FFFD becomes a space.
        assert_eq!(json("{\"a\":\"日本\u{FFFD}\"}").unwrap(), kv(&[("a", "日本 ")]));
    }

    #[test]
    fn json_nested_names() {
        assert_eq!(json(r#"{"1a":{"2b":1}}"#).unwrap(), kv(&[("_1a_2b", "1")]));
        assert_eq!(json(r#"{"a b":{"c-d":"x"}}"#).unwrap(), kv(&[("a_b_c_d", "x")]));
        assert_eq!(json(r#"{"a":{}, "b": { } , "c" : [ {"x":1} ] }"#).unwrap(), kv(&[]));
        // flattened name collides with a dotted key: first wins
        assert_eq!(json(r#"{"a":{"b":1},"a.b":2}"#).unwrap(), kv(&[("a_b", "1")]));
        assert_eq!(json(r#"  {"a":1}  trailing"#).unwrap(), kv(&[("a", "1")]));
    }

    #[test]
    fn json_deep_nesting_does_not_overflow() {
        let depth = 5000;
        let mut s = String::new();
        for _ in 0..depth {
            s.push_str("{\"a\":");
        }
        s.push('1');
        for _ in 0..depth {
            s.push('}');
        }
        assert!(json(&s).is_err());
        let mut s = String::new();
        for _ in 0..10 {
            s.push_str("{\"a\":");
        }
        s.push('1');
        for _ in 0..10 {
            s.push('}');
        }
        assert_eq!(json(&s).unwrap(), kv(&[("a_a_a_a_a_a_a_a_a_a", "1")]));
    }

    // ---- json expressions ----

    #[test]
    fn json_expressions_conformance() {
        let line = r#"{"user":{"id":"u1","name":"alice"},"tags":["x","y"]}"#;
        let e = JsonExpressions::new(&exprs(&[("who", "user.id"), ("tag", "tags[0]")])).unwrap();
        assert_eq!(e.extract(line).unwrap(), kv(&[("who", "u1"), ("tag", "x")]));
        let e = JsonExpressions::new(&exprs(&[("age", "user.age")])).unwrap();
        assert_eq!(e.extract(line).unwrap(), kv(&[("age", "")]));
        let err = JsonExpressions::new(&exprs(&[("bad", "user[")])).unwrap_err();
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

    // ---- regexp ----

    #[test]
    fn regexp_conformance() {
        let p = RegexpParser::new(r"(?P<method>\w+) (?P<path>\S+) (?P<status>\d+)").unwrap();
        assert_eq!(p.extract("GET /home 200"), kv(&[("method", "GET"), ("path", "/home"), ("status", "200")]));
        let p = RegexpParser::new(r"(?P<num>\d+)").unwrap();
        assert_eq!(p.extract("PUT /x"), kv(&[]));
        let p = RegexpParser::new(r"(?P<method>\w+) (?P<path>\S+)").unwrap();
        assert_eq!(p.extract("PUT /x"), kv(&[("method", "PUT"), ("path", "/x")]));
        let err = RegexpParser::new("nocapture").unwrap_err();
        assert!(err.contains("at least one named capture must be supplied"), "{}", err);
        let err = RegexpParser::new("(unnamed)").unwrap_err();
        assert!(err.contains("at least one named capture must be supplied"), "{}", err);
        let err = RegexpParser::new("(?P<x>.)(?P<x>.)").unwrap_err();
        assert!(err.contains("duplicate extracted label name"), "{}", err);
        let err = RegexpParser::new("(").unwrap_err();
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

    // ---- pattern ----

    #[test]
    fn pattern_conformance() {
        let p = PatternParser::new("<method> <path> <status>").unwrap();
        assert_eq!(p.extract("GET /home 200"), kv(&[("method", "GET"), ("path", "/home"), ("status", "200")]));
        let p = PatternParser::new("<method> <_> <status>").unwrap();
        assert_eq!(p.extract("GET /home 200"), kv(&[("method", "GET"), ("status", "200")]));
        let p = PatternParser::new("<method> <path>").unwrap();
        assert_eq!(p.extract("POST"), kv(&[("method", "POST")]));
        let err = PatternParser::new("no captures here").unwrap_err();
        assert_eq!(err, "at least one capture is required");
    }

    #[test]
    fn pattern_details() {
        assert_eq!(PatternParser::new("<_> only").unwrap_err(), "at least one capture is required");
        assert!(PatternParser::new("<a><b>").unwrap_err().contains("consecutive capture"));
        assert!(PatternParser::new("x <a><_>").unwrap_err().contains("consecutive capture"));
        assert!(PatternParser::new("<a> <a>").unwrap_err().contains("duplicate capture name (a)"));
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

    // ---- unpack ----

    #[test]
    fn unpack_conformance() {
        let (labels, line) = unpack(r#"{"lvl":"info","cluster":"eu","num":5,"_entry":"real message"}"#).unwrap();
        assert_eq!(labels, kv(&[("lvl", "info"), ("cluster", "eu")]));
        assert_eq!(line.as_deref(), Some("real message"));

        let (labels, line) = unpack(r#"{"lvl":"packed","_entry":"code=42"}"#).unwrap();
        assert_eq!(labels, kv(&[("lvl", "packed")]));
        let line = line.unwrap();
        assert_eq!(logfmt(&line, false, false).unwrap(), kv(&[("code", "42")]));

        let err = unpack("not json").unwrap_err();
        assert_eq!(err.kind, "JSONParserErr");
        assert_eq!(err.details, "expecting json object(6), but it is not");
    }

    #[test]
    fn unpack_details() {
        // No _entry: nothing extracted, line unchanged.
        assert_eq!(unpack(r#"{"a":"b"}"#).unwrap(), (kv(&[]), None));
        assert_eq!(unpack("").unwrap(), (kv(&[]), None));
        // Escapes, sanitised keys, first duplicate wins, objects skipped.
        let (labels, line) = unpack(r#"{"a-b":"x\"y","a-b":"z","o":{"k":"v"},"_entry":"line\twith \u00e9"}"#).unwrap();
        assert_eq!(labels, kv(&[("a_b", "x\"y")]));
        assert_eq!(line.as_deref(), Some("line\twith é"));
        assert!(unpack(r#"{"a":"b""#).is_err());
        assert!(unpack(r#"{"_entry":"\q"}"#).is_err());
    }

    // ---- robustness ----

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
            let _ = parse_json_path(s);
        }
    }
}
