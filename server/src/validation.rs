//! Loki's validation of pushed streams and entries, with Loki's reasons
//! (the `reason` label of the discarded-samples metrics) and texts.
//!
//! PERFORMANCE-CRITICAL PATH: runs once per pushed entry; it allocates only
//! for entries it rejects.

use balsa_storage::Entry;

use balsa_logql::labels::{valid_label_name, LabelSet};
use crate::limits::Limits;
use balsa_logql::time::format_rfc3339;

/// Why entries were refused: Loki's `reason` label of
/// `loki_discarded_samples_total` / `loki_discarded_bytes_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    MissingLabels,
    MaxLabelNamesPerSeries,
    InvalidLabels,
    LabelNameTooLong,
    LabelValueTooLong,
    DuplicateLabelNames,
    GreaterThanMaxSampleAge,
    TooFarInFuture,
    LineTooLong,
    DisallowedStructuredMetadata,
    StructuredMetadataTooLarge,
    StructuredMetadataTooMany,
    RateLimited,
    PerStreamRateLimit,
    TooFarBehind,
    StreamLimit,
}

impl Reason {
    /// Every reason.
    #[cfg(test)]
    pub const ALL: [Reason; 16] = [Reason::MissingLabels, Reason::MaxLabelNamesPerSeries, Reason::InvalidLabels, Reason::LabelNameTooLong, Reason::LabelValueTooLong, Reason::DuplicateLabelNames, Reason::GreaterThanMaxSampleAge, Reason::TooFarInFuture, Reason::LineTooLong, Reason::DisallowedStructuredMetadata, Reason::StructuredMetadataTooLarge, Reason::StructuredMetadataTooMany, Reason::RateLimited, Reason::PerStreamRateLimit, Reason::TooFarBehind, Reason::StreamLimit];

    /// Loki's name of the reason: the metrics' label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingLabels => "missing_labels",
            Reason::MaxLabelNamesPerSeries => "max_label_names_per_series",
            Reason::InvalidLabels => "invalid_labels",
            Reason::LabelNameTooLong => "label_name_too_long",
            Reason::LabelValueTooLong => "label_value_too_long",
            Reason::DuplicateLabelNames => "duplicate_label_names",
            Reason::GreaterThanMaxSampleAge => "greater_than_max_sample_age",
            Reason::TooFarInFuture => "too_far_in_future",
            Reason::LineTooLong => "line_too_long",
            Reason::DisallowedStructuredMetadata => "disallowed_structured_metadata",
            Reason::StructuredMetadataTooLarge => "structured_metadata_too_large",
            Reason::StructuredMetadataTooMany => "structured_metadata_too_many",
            Reason::RateLimited => "rate_limited",
            Reason::PerStreamRateLimit => "per_stream_rate_limit",
            Reason::TooFarBehind => "too_far_behind",
            Reason::StreamLimit => "stream_limit",
        }
    }
}

/// Why one entry (or every entry of a stream) was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Stable reason, as in Loki's `loki_discarded_samples_total{reason}`.
    pub reason: Reason,
    /// Loki's message for the client.
    pub message: String,
}

impl Rejection {
    fn new(reason: Reason, message: String) -> Self {
        Self { reason, message }
    }
}

pub const MISSING_STREAMS: &str = "error at least one valid stream is required for ingestion";

/// Checks a stream's labels once per stream (Loki's `ValidateLabels`).
pub fn validate_labels(limits: &Limits, labels: &LabelSet) -> Result<(), Rejection> {
    if labels.is_empty() {
        return Err(Rejection::new(Reason::MissingLabels, "error at least one label pair is required per stream".into()));
    }
    let shown = labels.to_string();
    let counted = labels.len() - usize::from(labels.get("service_name").is_some());
    if counted > limits.max_label_names_per_series {
        return Err(Rejection::new(
            Reason::MaxLabelNamesPerSeries,
            format!(
                "entry for stream '{shown}' has {counted} label names; limit {}",
                limits.max_label_names_per_series
            ),
        ));
    }
    let mut prev: Option<&str> = None;
    for (name, value) in labels.iter() {
        if !valid_label_name(name) {
            return Err(Rejection::new(
                Reason::InvalidLabels,
                format!("error parsing labels '{shown}' with error: invalid label name '{name}'"),
            ));
        }
        if name.len() > limits.max_label_name_length {
            return Err(Rejection::new(Reason::LabelNameTooLong, format!("stream '{shown}' has label name too long: '{name}'")));
        }
        if value.len() > limits.max_label_value_length {
            return Err(Rejection::new(
                Reason::LabelValueTooLong,
                format!("stream '{shown}' has label value too long: '{value}'"),
            ));
        }
        if prev == Some(name.as_str()) {
            return Err(Rejection::new(
                Reason::DuplicateLabelNames,
                format!("stream '{shown}' has duplicate label name: '{name}'"),
            ));
        }
        prev = Some(name);
    }
    Ok(())
}

/// Checks one entry against the limits at time `now` (Loki's
/// `ValidateEntry`, same order of checks). With `max_line_size_truncate` a
/// long line is cut instead of refused.
pub fn validate_entry(limits: &Limits, now: i64, stream: &LabelSet, entry: &mut Entry) -> Result<(), Rejection> {
    if limits.reject_old_samples {
        let oldest = now.saturating_sub(limits.reject_old_samples_max_age.0.as_nanos() as i64);
        if entry.ts < oldest {
            return Err(Rejection::new(
                Reason::GreaterThanMaxSampleAge,
                format!(
                    "entry for stream '{stream}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                    format_rfc3339(entry.ts),
                    format_rfc3339(oldest)
                ),
            ));
        }
    }
    let newest = now.saturating_add(limits.creation_grace_period.0.as_nanos() as i64);
    if entry.ts > newest {
        return Err(Rejection::new(
            Reason::TooFarInFuture,
            format!("entry for stream '{stream}' has timestamp too new: {}", format_rfc3339(entry.ts)),
        ));
    }
    let max_line = usize::try_from(limits.max_line_size.0).unwrap_or(usize::MAX);
    if max_line > 0 && entry.line.len() > max_line {
        if limits.max_line_size_truncate {
            let mut cut = max_line;
            while !entry.line.is_char_boundary(cut) {
                cut -= 1;
            }
            entry.line.truncate(cut);
        } else {
            return Err(Rejection::new(
                Reason::LineTooLong,
                format!(
                    "max entry size '{max_line}' bytes exceeded for stream '{stream}' while adding an entry with length '{}' bytes",
                    entry.line.len()
                ),
            ));
        }
    }
    if !entry.metadata.is_empty() {
        if !limits.allow_structured_metadata {
            return Err(Rejection::new(
                Reason::DisallowedStructuredMetadata,
                format!(
                    "stream '{stream}' includes structured metadata, but this feature is disallowed. Please see \
                     `limits_config.allow_structured_metadata` or contact your Loki administrator to enable it"
                ),
            ));
        }
        let size: usize = entry.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        let max = limits.max_structured_metadata_size.0;
        if max > 0 && size as u64 > max {
            return Err(Rejection::new(
                Reason::StructuredMetadataTooLarge,
                format!(
                    "stream '{stream}' has structured metadata too large: '{size}' bytes, limit: '{max}' bytes. Please \
                     see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it"
                ),
            ));
        }
        let count = entry.metadata.len();
        let max = limits.max_structured_metadata_entries_count;
        if max > 0 && count > max {
            return Err(Rejection::new(
                Reason::StructuredMetadataTooMany,
                format!(
                    "stream '{stream}' has too many structured metadata labels: '{count}', limit: '{max}'. Please see \
                     `limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to \
                     increase it"
                ),
            ));
        }
    }
    Ok(())
}

/// Loki's `GroupedErrors`: identical messages counted, `; `-separated, in
/// order of first appearance.
pub fn grouped(messages: &[String]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for m in messages {
        match counts.iter_mut().find(|(s, _)| *s == m.as_str()) {
            Some((_, n)) => *n += 1,
            None => counts.push((m, 1)),
        }
    }
    let unique = counts.len();
    counts
        .iter()
        .map(|(m, n)| if unique > 1 || *n > 1 { format!("{n} errors like: {m}") } else { m.to_string() })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn ls(s: &str) -> LabelSet {
        LabelSet::parse(s).unwrap()
    }

    #[test]
    fn label_rules_in_lokis_order() {
        let l = Limits::default();
        assert_eq!(validate_labels(&l, &ls("{}")).unwrap_err().reason, Reason::MissingLabels);
        let many = (0..16).map(|i| format!("l{i}=\"v\"")).collect::<Vec<_>>().join(",");
        let e = validate_labels(&l, &ls(&format!("{{{many}}}"))).unwrap_err();
        assert_eq!(e.reason, Reason::MaxLabelNamesPerSeries);
        assert!(e.message.ends_with("has 16 label names; limit 15"), "{}", e.message);
        let long = "n".repeat(1025);
        assert_eq!(validate_labels(&l, &ls(&format!("{{{long}=\"v\"}}"))).unwrap_err().reason, Reason::LabelNameTooLong);
        let long = "v".repeat(2049);
        assert_eq!(validate_labels(&l, &ls(&format!("{{a=\"{long}\"}}"))).unwrap_err().reason, Reason::LabelValueTooLong);
        let e = validate_labels(&l, &ls(r#"{a="1", a="2"}"#)).unwrap_err();
        assert_eq!(e.message, r#"stream '{a="1", a="2"}' has duplicate label name: 'a'"#);
        assert!(validate_labels(&l, &ls(r#"{a="1"}"#)).is_ok());
    }

    #[test]
    fn entry_rules() {
        let l = Limits::default();
        let s = ls(r#"{a="1"}"#);
        let mut old = Entry::new(NOW - 8 * 86_400 * 1_000_000_000, "x");
        let e = validate_entry(&l, NOW, &s, &mut old).unwrap_err();
        assert_eq!(e.reason, Reason::GreaterThanMaxSampleAge);
        assert!(e.message.starts_with(r#"entry for stream '{a="1"}' has timestamp too old: 2023-11-06T22:13:20Z"#), "{}", e.message);
        let mut future = Entry::new(NOW + 11 * 60 * 1_000_000_000, "x");
        assert_eq!(validate_entry(&l, NOW, &s, &mut future).unwrap_err().reason, Reason::TooFarInFuture);
        let mut long = Entry::new(NOW, "x".repeat(256 * 1024 + 1));
        let e = validate_entry(&l, NOW, &s, &mut long).unwrap_err();
        assert_eq!(e.message, format!("max entry size '262144' bytes exceeded for stream '{s}' while adding an entry with length '262145' bytes"));
        let mut ok = Entry::new(NOW, "x".repeat(256 * 1024));
        assert!(validate_entry(&l, NOW, &s, &mut ok).is_ok());
        let t = Limits { max_line_size_truncate: true, ..Limits::default() };
        let mut long = Entry::new(NOW, "é".repeat(200_000));
        assert!(validate_entry(&t, NOW, &s, &mut long).is_ok());
        assert!(long.line.len() <= 256 * 1024 && long.line.len() > 256 * 1024 - 2);
    }

    #[test]
    fn grouping_matches_lokis_format() {
        let m = |s: &str| s.to_string();
        assert_eq!(grouped(&[m("a")]), "a");
        assert_eq!(grouped(&[m("a"), m("a")]), "2 errors like: a");
        assert_eq!(grouped(&[m("a"), m("b"), m("a")]), "2 errors like: a; 1 errors like: b");
    }

    #[test]
    fn reasons_are_lokis_distinct_labels() {
        let names: std::collections::HashSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len(), "two reasons share a label");
        assert!(names.iter().all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')), "{names:?}");
        assert_eq!(Reason::LineTooLong.as_str(), "line_too_long");
        assert_eq!(Reason::PerStreamRateLimit.as_str(), "per_stream_rate_limit");
    }
}
