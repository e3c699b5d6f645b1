//! Per-tenant limits (`limits_config`), with Loki's names and defaults.
//!
//! These are the defaults; [`crate::overrides`] overlays each tenant's own.

use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::{ByteSize, Dur};
use balsa_logql::labels::LabelSet;
use balsa_logql::{parse_selector, Matcher};

/// A retention rule for the streams a selector matches.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionStream {
    pub selector: String,
    /// The highest priority among matching rules wins. Default 0.
    #[serde(default)]
    pub priority: u32,
    pub period: Dur,
}

/// What happens to an OTLP attribute (`otlp_config`'s `action`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OtlpAction {
    /// A stream label (its name normalized: `service.name` → `service_name`).
    IndexLabel,
    /// An entry's structured metadata (the default for anything unlisted).
    #[default]
    StructuredMetadata,
    Drop,
}

/// One rule of `otlp_config`: an action for the attributes named in
/// `attributes`, or matching the (anchored) `regex`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpAttributes {
    pub action: OtlpAction,
    pub attributes: Vec<String>,
    pub regex: Option<String>,
    #[serde(skip)]
    compiled: OnceLock<Option<regex::Regex>>,
}

impl OtlpAttributes {
    /// A rule for the attributes named in `attributes`.
    pub fn named(action: OtlpAction, attributes: Vec<String>) -> Self {
        Self { action, attributes, regex: None, compiled: OnceLock::new() }
    }

    /// Whether the rule covers the attribute `name` (as sent, before
    /// normalization). A regex that does not compile (refused when the
    /// configuration is loaded) matches nothing.
    pub fn matches(&self, name: &str) -> bool {
        match &self.regex {
            Some(re) => self
                .compiled
                .get_or_init(|| regex::Regex::new(&format!("^(?:{re})$")).ok())
                .as_ref()
                .is_some_and(|r| r.is_match(name)),
            None => self.attributes.iter().any(|a| a == name),
        }
    }
}

/// `otlp_config.resource_attributes`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpResourceAttributes {
    /// Do not promote Loki's default list to index labels.
    pub ignore_defaults: bool,
    pub attributes_config: Vec<OtlpAttributes>,
}

/// `limits_config.otlp_config`: how OTLP attributes become labels and
/// structured metadata (Loki 3's schema; `distributor/otlp.rs` applies it).
/// The first rule matching an attribute's name wins.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    pub resource_attributes: OtlpResourceAttributes,
    /// `index_label` is not allowed here.
    pub scope_attributes: Vec<OtlpAttributes>,
    pub log_attributes: Vec<OtlpAttributes>,
    /// Also make each record's `severity_text` a stream label.
    pub severity_text_as_label: bool,
}

impl OtlpConfig {
    /// Checks the rules: exactly one of `attributes` and `regex`, a regex
    /// that compiles, no index labels from scope attributes.
    pub fn validate(&self) -> Result<(), OtlpRuleError> {
        let sections = [
            ("resource_attributes.attributes_config", &self.resource_attributes.attributes_config),
            ("scope_attributes", &self.scope_attributes),
            ("log_attributes", &self.log_attributes),
        ];
        for (section, rules) in sections {
            for r in rules.iter() {
                if r.attributes.is_empty() == r.regex.is_none() {
                    return Err(OtlpRuleError::NeedsOneOf { section });
                }
                if let Some(re) = &r.regex {
                    regex::Regex::new(&format!("^(?:{re})$")).map_err(|source| OtlpRuleError::Regex { section, regex: re.clone(), source })?;
                }
                if section == "scope_attributes" && r.action == OtlpAction::IndexLabel {
                    return Err(OtlpRuleError::ScopeIndexLabel);
                }
            }
        }
        Ok(())
    }
}

/// A limit out of its range: which key, and why.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct LimitError {
    pub key: &'static str,
    pub problem: String,
}

/// An OTLP attribute rule that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OtlpRuleError {
    #[error("{section}: each rule needs exactly one of `attributes` and `regex`")]
    NeedsOneOf { section: &'static str },
    #[error("{section}: regex {regex:?}: {source}")]
    Regex { section: &'static str, regex: String, source: regex::Error },
    #[error("scope_attributes: index_label is not allowed for scope attributes")]
    ScopeIndexLabel,
}

/// `limits_config`. Every default is Loki's (pkg/validation/limits.go).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Labels a stream may have, `service_name` not counted. Default 15.
    pub max_label_names_per_series: usize,
    /// Bytes of a label name. Default 1024.
    pub max_label_name_length: usize,
    /// Bytes of a label value. Default 2048.
    pub max_label_value_length: usize,
    /// Bytes of a line; 0 = unlimited. Default 256KB.
    pub max_line_size: ByteSize,
    /// Cut over-long lines to `max_line_size` instead of rejecting them.
    pub max_line_size_truncate: bool,
    /// Reject entries older than `reject_old_samples_max_age`. Default true.
    pub reject_old_samples: bool,
    /// Default 168h (7 days).
    pub reject_old_samples_max_age: Dur,
    /// How far in the future an entry may be. Default 10m.
    pub creation_grace_period: Dur,
    /// Whether entries may carry structured metadata. Default true.
    pub allow_structured_metadata: bool,
    /// Bytes of one entry's structured metadata. Default 64KB.
    pub max_structured_metadata_size: ByteSize,
    /// Structured-metadata labels per entry. Default 128.
    pub max_structured_metadata_entries_count: usize,
    /// Largest `limit` a log query may ask for. Default 5000.
    pub max_entries_limit_per_query: usize,
    /// Most series a `/series` answer or a query may return. Default 500.
    pub max_query_series: usize,
    /// Live tails a tenant may have open at once. Default 10.
    pub max_concurrent_tail_requests: usize,
    /// Labels to take `service_name` from, in order; empty turns it off.
    pub discover_service_name: Vec<String>,
    /// Add `detected_level` to every entry's structured metadata at ingest
    /// (distributor/levels.rs). Default false (Loki's default is true).
    pub discover_log_levels: bool,
    /// Labels, metadata and line keys a level is read from, in order.
    pub log_level_fields: Vec<String>,
    /// How many JSON objects deep a level key is looked for; 0: no limit.
    /// Default 2.
    pub log_level_from_json_max_depth: usize,
    /// Entries older than this are removed (compactor) and hidden from
    /// queries; 0 keeps everything. Default 0.
    pub retention_period: Dur,
    /// `global`: `ingestion_rate_mb` is the tenant's rate across the
    /// cluster, divided among the healthy distributors; `local`: per
    /// distributor. Default global.
    pub ingestion_rate_strategy: String,
    /// Per-tenant ingestion rate in MB/s (lines + metadata). Default 4.
    pub ingestion_rate_mb: f64,
    /// Per-tenant burst in MB. Default 6.
    pub ingestion_burst_size_mb: f64,
    /// Per-stream rate, bytes/s; 0 = unlimited. Default 3MB.
    pub per_stream_rate_limit: ByteSize,
    /// Per-stream burst. Default 15MB.
    pub per_stream_rate_limit_burst: ByteSize,
    /// Streams a tenant may have in memory across the cluster; 0 =
    /// unlimited. Default 5000. Enforced per partition as its share.
    pub max_global_streams_per_user: usize,
    /// Retention by selector, overriding `retention_period`. Default none.
    pub retention_stream: Vec<RetentionStream>,
    /// Longest time range a query may cover; 0 = unlimited. Default 721h.
    pub max_query_length: Dur,
    /// Longest a query may run (504 after). Default 1m.
    pub query_timeout: Dur,
    /// Range queries are split at multiples of this; 0 = no split. Default 1h.
    pub split_queries_by_interval: Dur,
    /// Pieces of one query run at once. Default 32.
    pub max_query_parallelism: usize,
    /// How OTLP pushes map to labels and structured metadata.
    pub otlp_config: OtlpConfig,
    #[serde(skip)]
    pub(crate) retention_rules: OnceLock<Vec<(u32, Duration, Vec<Matcher>)>>,
}

/// Loki's default `log_level_fields`.
pub const DEFAULT_LEVEL_FIELDS: [&str; 14] = [
    "level",
    "LEVEL",
    "Level",
    "log.level",
    "severity",
    "SEVERITY",
    "Severity",
    "SeverityText",
    "lvl",
    "LVL",
    "Lvl",
    "severity_text",
    "Severity_Text",
    "SEVERITY_TEXT",
];

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_label_names_per_series: 15,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_line_size: ByteSize(256 << 10),
            max_line_size_truncate: false,
            reject_old_samples: true,
            reject_old_samples_max_age: Dur(Duration::from_secs(7 * 24 * 3600)),
            creation_grace_period: Dur(Duration::from_secs(600)),
            allow_structured_metadata: true,
            max_structured_metadata_size: ByteSize(64 << 10),
            max_structured_metadata_entries_count: 128,
            max_entries_limit_per_query: 5000,
            max_query_series: 500,
            max_concurrent_tail_requests: 10,
            discover_service_name: [
                "service",
                "app",
                "application",
                "app_name",
                "name",
                "app_kubernetes_io_name",
                "container",
                "container_name",
                "k8s_container_name",
                "component",
                "workload",
                "job",
                "k8s_job_name",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            discover_log_levels: false,
            log_level_fields: DEFAULT_LEVEL_FIELDS.iter().map(|s| s.to_string()).collect(),
            log_level_from_json_max_depth: 2,
            retention_period: Dur(Duration::ZERO),
            ingestion_rate_strategy: "global".into(),
            ingestion_rate_mb: 4.0,
            ingestion_burst_size_mb: 6.0,
            per_stream_rate_limit: ByteSize(3 << 20),
            per_stream_rate_limit_burst: ByteSize(15 << 20),
            max_global_streams_per_user: 5000,
            retention_stream: Vec::new(),
            max_query_length: Dur(Duration::from_secs(721 * 3600)),
            query_timeout: Dur(Duration::from_secs(60)),
            split_queries_by_interval: Dur(Duration::from_secs(3600)),
            max_query_parallelism: 32,
            otlp_config: OtlpConfig::default(),
            retention_rules: OnceLock::new(),
        }
    }
}

impl Limits {
    /// How long a stream's entries are kept (zero: forever): the period of
    /// the highest-priority `retention_stream` rule matching it, else
    /// `retention_period`.
    pub fn retention_for(&self, labels: &LabelSet) -> Duration {
        let rules = self.retention_rules.get_or_init(|| {
            self.retention_stream
                .iter()
                .filter_map(|r| parse_selector(&r.selector).ok().map(|m| (r.priority, r.period.0, m)))
                .collect()
        });
        rules
            .iter()
            .filter(|(_, _, ms)| ms.iter().all(|m| m.matches(labels.get(&m.name))))
            .max_by_key(|(p, _, _)| *p)
            .map_or(self.retention_period.0, |(_, d, _)| *d)
    }

    /// Whether any stream of the tenant can expire.
    pub fn has_retention(&self) -> bool {
        !self.retention_period.0.is_zero() || self.retention_stream.iter().any(|r| !r.period.0.is_zero())
    }

    /// The oldest timestamp a stream keeps at `now` (`None`: forever).
    pub fn retention_cutoff(&self, labels: &LabelSet, now: i64) -> Option<i64> {
        let p = self.retention_for(labels);
        (!p.is_zero()).then(|| now.saturating_sub(p.as_nanos() as i64))
    }

    /// Checks values that would make every request fail.
    pub fn validate(&self) -> Result<(), LimitError> {
        for r in &self.retention_stream {
            if let Err(e) = parse_selector(&r.selector) {
                return Err(LimitError { key: "limits_config.retention_stream", problem: format!("selector {:?}: {e}", r.selector) });
            }
        }
        if self.max_label_names_per_series == 0 {
            return Err(LimitError { key: "limits_config.max_label_names_per_series", problem: "must be at least 1".into() });
        }
        if self.max_entries_limit_per_query == 0 {
            return Err(LimitError { key: "limits_config.max_entries_limit_per_query", problem: "must be at least 1".into() });
        }
        if !matches!(self.ingestion_rate_strategy.as_str(), "global" | "local") {
            return Err(LimitError { key: "limits_config.ingestion_rate_strategy", problem: format!("'{}' is not global or local", self.ingestion_rate_strategy) });
        }
        if !(self.ingestion_rate_mb > 0.0) || !(self.ingestion_burst_size_mb > 0.0) {
            return Err(LimitError { key: "limits_config.ingestion_rate_mb", problem: "ingestion_rate_mb and ingestion_burst_size_mb must be positive".into() });
        }
        if let Err(e) = self.otlp_config.validate() {
            return Err(LimitError { key: "limits_config.otlp_config", problem: e.to_string() });
        }
        if self.max_line_size_truncate && self.max_line_size.0 == 0 {
            return Err(LimitError { key: "limits_config.max_line_size_truncate", problem: "needs a max_line_size above 0".into() });
        }
        Ok(())
    }
}
