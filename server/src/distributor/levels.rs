//! `detected_level`: the log level Loki 3 attaches to every entry's
//! structured metadata at ingest when `limits_config.discover_log_levels` is
//! on, so that Grafana can show and aggregate levels without parsing lines.
//!
//! The level comes from, in order: a `detected_level` the entry already
//! carries (normalized); a stream label or a structured-metadata entry named
//! in `log_level_fields`; an OTLP `severity_number`; the line itself — a
//! JSON key (searched `log_level_from_json_max_depth` objects deep) or a
//! logfmt key named in `log_level_fields`, else the first level word in
//! the line; `unknown` when nothing says. Known spellings are normalized to
//! `trace`, `debug`, `info`, `warn`, `error`, `critical`, `fatal`.

use balsa_storage::Entry;

use balsa_logql::labels::LabelSet;

/// The structured-metadata name of the detected level.
pub const LEVEL_LABEL: &str = "detected_level";

/// Adds (or normalizes) the entry's `detected_level`.
pub fn detect(labels: &LabelSet, fields: &[String], json_depth: usize, e: &mut Entry) {
    if let Some((_, v)) = e.metadata.iter_mut().find(|(k, _)| k == LEVEL_LABEL) {
        if let Some(n) = normalize(v) {
            *v = n.to_string();
        }
        return;
    }
    let named = |get: &dyn Fn(&str) -> Option<String>| fields.iter().find_map(|f| get(f));
    let level = if let Some(v) = named(&|f| labels.get(f).map(str::to_string)) {
        normalize(&v).map_or(v, str::to_string)
    } else if let Some(v) = named(&|f| e.metadata.iter().find(|(k, _)| k == f).map(|(_, v)| v.clone())) {
        normalize(&v).map_or(v, str::to_string)
    } else if let Some((_, n)) = e.metadata.iter().find(|(k, _)| k == "severity_number") {
        otlp_severity(n).to_string()
    } else {
        from_line(&e.line, fields, json_depth).to_string()
    };
    e.metadata.push((LEVEL_LABEL.to_string(), level));
}

/// The standard name of a known level spelling (case-insensitive).
fn normalize(v: &str) -> Option<&'static str> {
    let is = |names: &[&str]| names.iter().any(|n| v.eq_ignore_ascii_case(n));
    Some(if is(&["trace", "trc"]) {
        "trace"
    } else if is(&["debug", "dbg"]) {
        "debug"
    } else if is(&["info", "inf", "information"]) {
        "info"
    } else if is(&["warn", "wrn", "warning"]) {
        "warn"
    } else if is(&["error", "err"]) {
        "error"
    } else if is(&["critical"]) {
        "critical"
    } else if is(&["fatal"]) {
        "fatal"
    } else {
        return None;
    })
}

/// OpenTelemetry's severity numbers: 1–4 trace, 5–8 debug, 9–12 info,
/// 13–16 warn, 17–20 error, 21–24 fatal; 0 unknown.
fn otlp_severity(n: &str) -> &'static str {
    match n.trim().parse::<i64>() {
        Err(_) => "info",
        Ok(0) => "unknown",
        Ok(n) if n <= 4 => "trace",
        Ok(n) if n <= 8 => "debug",
        Ok(n) if n <= 12 => "info",
        Ok(n) if n <= 16 => "warn",
        Ok(n) if n <= 20 => "error",
        Ok(n) if n <= 24 => "fatal",
        Ok(_) => "unknown",
    }
}

fn from_line(line: &str, fields: &[String], json_depth: usize) -> &'static str {
    let t = line.trim();
    let value = if t.starts_with('{') && t.ends_with('}') {
        serde_json::from_str::<serde_json::Value>(t).ok().and_then(|v| json_level(&v, fields, json_depth, 0))
    } else if t.contains('=') {
        logfmt_level(t, fields)
    } else {
        None
    };
    value.as_deref().and_then(normalize).unwrap_or_else(|| keyword(line))
}

/// The first string value under a level key, in document order, nested
/// objects searched as they come, `max_depth` objects deep (0: no limit).
fn json_level(v: &serde_json::Value, fields: &[String], max_depth: usize, depth: usize) -> Option<String> {
    if max_depth > 0 && depth >= max_depth {
        return None;
    }
    let serde_json::Value::Object(map) = v else { return None };
    for (k, val) in map {
        match val {
            serde_json::Value::String(s) if fields.iter().any(|f| f == k) => return Some(s.clone()),
            serde_json::Value::Object(_) => {
                if let Some(found) = json_level(val, fields, max_depth, depth + 1) {
                    return Some(found);
                }
            }
            _ => {}
        }
    }
    None
}

/// The value of the logfmt key that comes first in `fields` (keys compared
/// case-insensitively).
fn logfmt_level(line: &str, fields: &[String]) -> Option<String> {
    let pairs = balsa_logql::extract::logfmt_pairs(line);
    fields.iter().find_map(|f| pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(f)).map(|(_, v)| v.clone()))
}

/// The level word that comes first in the line (as a word: bounded by
/// spaces, brackets, quotes, `=`, `|`, and on the right also `:` `,` `!`).
fn keyword(line: &str) -> &'static str {
    const WORDS: [(&str, &str); 9] = [
        ("trace", "trace"),
        ("debug", "debug"),
        ("fatal", "fatal"),
        ("critical", "critical"),
        ("error", "error"),
        ("err", "error"),
        ("warning", "warn"),
        ("warn", "warn"),
        ("info", "info"),
    ];
    let lower = line.to_ascii_lowercase();
    let mut best = (usize::MAX, "unknown");
    for (word, level) in WORDS {
        if let Some(pos) = bounded(&lower, word) {
            if pos < best.0 {
                best = (pos, level);
            }
        }
    }
    best.1
}

fn bounded(s: &str, word: &str) -> Option<usize> {
    let b = s.as_bytes();
    let left = |i: usize| i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\n' | b'[' | b'(' | b'{' | b'"' | b'\'' | b'=' | b'|');
    let right = |i: usize| {
        i >= b.len()
            || matches!(b[i], b' ' | b'\t' | b'\n' | b'[' | b']' | b'(' | b')' | b'{' | b'}' | b':' | b',' | b'!' | b'"' | b'\'' | b'=' | b'|')
    };
    let mut from = 0;
    while let Some(p) = s[from..].find(word) {
        let at = from + p;
        if left(at) && right(at + word.len()) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(labels: &str, line: &str, metadata: &[(&str, &str)]) -> String {
        let fields: Vec<String> = crate::limits::DEFAULT_LEVEL_FIELDS.iter().map(|s| s.to_string()).collect();
        let mut e = Entry::new(1, line);
        e.metadata = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        detect(&LabelSet::parse(labels).unwrap(), &fields, 2, &mut e);
        e.metadata.iter().find(|(k, _)| k == LEVEL_LABEL).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    #[test]
    fn levels_come_from_labels_metadata_and_lines_in_lokis_order() {
        assert_eq!(level(r#"{app="a", level="WARNING"}"#, "error everywhere", &[]), "warn");
        assert_eq!(level(r#"{app="a"}"#, "x", &[("severity", "Err")]), "error");
        assert_eq!(level(r#"{app="a"}"#, "x", &[("severity_number", "10")]), "info");
        assert_eq!(level(r#"{app="a"}"#, r#"{"msg":"x","log":{"level":"DBG"}}"#, &[]), "debug");
        assert_eq!(level(r#"{app="a"}"#, "ts=1 lvl=crit msg=fatal", &[]), "fatal", "unknown value: the first level word");
        assert_eq!(level(r#"{app="a"}"#, "ts=1 LEVEL=inf msg=x", &[]), "info");
        assert_eq!(level(r#"{app="a"}"#, "[WARN] disk almost full, error soon", &[]), "warn");
        assert_eq!(level(r#"{app="a"}"#, "misc:error is not a level; terror neither", &[]), "unknown");
        assert_eq!(level(r#"{app="a"}"#, "x", &[("detected_level", "WRN")]), "warn", "an existing one is normalized");
        assert_eq!(level(r#"{app="a", level="notice"}"#, "x", &[]), "notice", "unknown spellings are kept");
    }
}
