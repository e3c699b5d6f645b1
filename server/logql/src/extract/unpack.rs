//! `| unpack`: a line packed by promtail's `pack` stage — its string keys
//! become labels and `_entry` becomes the line.

use super::{Collector, Extracted, JSON_PARSER_ERR, PACKED_ENTRY_KEY, ParserError, sanitize_label_name};
use super::json::{E_BAD_ESCAPE, E_NOT_OBJECT, Flavor, Flow, JType, object_each, raw_slice, unescape, unescape_json_string};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{kv, logfmt};

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
}
