//! `| json`: every key of a JSON object as a label (nested keys joined
//! with `_`), over a lenient walker modelled on buger/jsonparser, which is
//! what Loki uses: it reads only as far as it must and reports Loki's
//! error texts.

use super::{Collector, Extracted, JSON_PARSER_ERR, MAX_JSON_DEPTH, ParserError, append_sanitized, replace_rune_error, sanitize_label_name};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavor {
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
pub(super) fn unescape(s: &str, flavor: Flavor) -> Option<String> {
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
pub(super) fn unescape_json_string(raw: &str) -> String {
    match unescape(raw, Flavor::Json) {
        Some(s) => replace_rune_error(&s),
        None => String::new(),
    }
}

const E_MALFORMED_JSON: &str = "Malformed JSON error";
const E_UNKNOWN_VALUE: &str = "Unknown value type";
const E_MALFORMED_STRING: &str = "Value is string, but can't find closing '\"' symbol";
const E_MALFORMED_ARRAY: &str = "Value is array, but can't find closing ']' symbol";
const E_MALFORMED_OBJECT: &str = "Value looks like object, but can't find closing '}' symbol";
pub(super) const E_BAD_ESCAPE: &str = "Encountered an invalid escape sequence in a string";
const E_TOO_DEEP: &str = "Value exceeds the maximum JSON nesting depth";
pub(super) const E_NOT_OBJECT: &str = "expecting json object(6), but it is not";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JType {
    String,
    Number,
    Object,
    Array,
    Boolean,
    Null,
}

/// A located JSON value. Offsets are byte offsets into the whole line.
#[derive(Clone, Copy, Debug)]
pub(super) struct JVal {
    pub(super) ty: JType,
    /// First byte of the value token (the opening quote of a string).
    pub(super) tok: usize,
    /// Data range: inside the quotes for strings, the whole token otherwise.
    pub(super) start: usize,
    pub(super) end: usize,
    /// Offset just after the value.
    pub(super) next: usize,
}

pub(super) enum Flow {
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
pub(super) fn get_value(d: &[u8], from: usize) -> Result<JVal, &'static str> {
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
pub(super) fn object_each<F>(line: &str, from: usize, mut cb: F) -> Result<(), &'static str>
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
pub(super) fn array_each<F>(line: &str, from: usize, mut cb: F) -> Result<(), &'static str>
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

pub(super) fn raw_slice(line: &str, start: usize, end: usize) -> &str {
    line.get(start..end).unwrap_or("")
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::kv;

    #[test]
    fn json_only_keeps_the_wanted_labels_and_still_fails_on_bad_json() {
        let wanted = ["level".to_string(), "req_status_extracted".to_string()];
        let got = json_only(r#"{"level":"info","trace":"x","req":{"status":500,"path":"/"}}"#, Some(&wanted)).unwrap();
        assert_eq!(got, vec![("level".into(), "info".into()), ("req_status".into(), "500".into())]);
        assert!(json_only(r#"{"level":"info","trace":"#, Some(&wanted)).is_err());
    }

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
}
