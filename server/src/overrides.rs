//! Per-tenant limits: the `limits_config` defaults, overlaid field by field
//! with the tenant's entry of the runtime configuration file
//! (`runtime_config.file`, Loki's format), which is re-read every
//! `runtime_config.period` and on SIGHUP. A file that does not parse or
//! validate is refused with a log line naming the problem, and the limits in
//! force stay.
//!
//! ```yaml
//! overrides:
//!   team-a:
//!     retention_period: 720h
//!     max_line_size: 64KB
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use crate::limits::Limits;
use crate::metrics::Metrics;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeFile {
    #[serde(default)]
    overrides: Option<BTreeMap<String, Mapping>>,
}

#[derive(Default)]
struct InForce {
    per_tenant: HashMap<String, Arc<Limits>>,
    text: String,
}

/// Limits per tenant.
pub struct Overrides {
    defaults: Arc<Limits>,
    defaults_yaml: Mapping,
    file: Option<PathBuf>,
    in_force: RwLock<InForce>,
    /// Whether the last reload succeeded, for `/metrics`.
    last_ok: std::sync::atomic::AtomicBool,
}

/// Why an overrides file was refused.
#[derive(Debug, thiserror::Error)]
#[error("runtime config {path}: {problem}")]
pub struct OverridesError {
    pub path: String,
    pub problem: OverridesProblem,
}

/// What is wrong with an overrides file.
#[derive(Debug, thiserror::Error)]
pub enum OverridesProblem {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error("{at}: {problem}")]
    Yaml { at: String, problem: String },
    #[error("overrides.{tenant}: {source}")]
    Tenant { tenant: String, source: crate::tenant::TenantError },
    #[error("overrides.{tenant}: {source}")]
    Limit { tenant: String, source: crate::limits::LimitError },
}

impl Overrides {
    /// Loads `file` (if any) over `defaults`.
    pub fn new(defaults: Limits, file: Option<PathBuf>) -> Result<Self, OverridesError> {
        let defaults_yaml = match serde_yaml_ng::to_value(&defaults) {
            Ok(Value::Mapping(m)) => m,
            _ => Mapping::new(),
        };
        let o = Self {
            defaults: Arc::new(defaults),
            defaults_yaml,
            file,
            in_force: RwLock::new(InForce::default()),
            last_ok: std::sync::atomic::AtomicBool::new(true),
        };
        o.reload()?;
        Ok(o)
    }

    /// The limits of `tenant`.
    pub fn get(&self, tenant: &str) -> Arc<Limits> {
        self.in_force.read().per_tenant.get(tenant).cloned().unwrap_or_else(|| self.defaults.clone())
    }

    /// The text of the overrides in force (`GET /runtime_config`).
    pub fn text(&self) -> String {
        self.in_force.read().text.clone()
    }

    pub fn last_reload_ok(&self) -> bool {
        self.last_ok.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Registers the gauge of whether the last reload succeeded, set at
    /// each scrape.
    pub fn report(self: &Arc<Self>, metrics: &Metrics) {
        let ok = metrics.gauge("balsa_runtime_config_last_reload_successful", "Whether the last reload of the runtime overrides file succeeded.");
        let me = Arc::downgrade(self);
        metrics.on_scrape(move || {
            if let Some(o) = me.upgrade() {
                ok.set(i64::from(o.last_reload_ok()));
            }
        });
    }

    /// Re-reads the file; on any problem keeps what is in force.
    pub fn reload(&self) -> Result<(), OverridesError> {
        let Some(path) = &self.file else { return Ok(()) };
        let err = |problem: OverridesProblem| OverridesError { path: path.display().to_string(), problem };
        let result = std::fs::read_to_string(path)
            .map_err(|e| err(e.into()))
            .and_then(|text| self.parse(&text).map(|m| (m, text)).map_err(err));
        match result {
            Ok((per_tenant, text)) => {
                let mut f = self.in_force.write();
                if f.text != text {
                    tracing::info!(file = %path.display(), tenants = per_tenant.len(), "runtime overrides loaded");
                }
                *f = InForce { per_tenant, text };
                self.last_ok.store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.last_ok.store(false, std::sync::atomic::Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn parse(&self, text: &str) -> Result<HashMap<String, Arc<Limits>>, OverridesProblem> {
        if text.trim().is_empty() {
            return Ok(HashMap::new());
        }
        let file: RuntimeFile = serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text))
            .map_err(|e| OverridesProblem::Yaml { at: e.path().to_string(), problem: e.into_inner().to_string() })?;
        let mut out = HashMap::new();
        for (tenant, fields) in file.overrides.unwrap_or_default() {
            if let Err(source) = crate::tenant::validate(&tenant) {
                return Err(OverridesProblem::Tenant { tenant, source });
            }
            let mut merged = self.defaults_yaml.clone();
            for (k, v) in fields {
                merged.insert(k, v);
            }
            let limits: Limits = serde_path_to_error::deserialize(Value::Mapping(merged))
                .map_err(|e| OverridesProblem::Yaml { at: format!("overrides.{tenant}.{}", e.path()), problem: e.into_inner().to_string() })?;
            if let Err(source) = limits.validate() {
                return Err(OverridesProblem::Limit { tenant, source });
            }
            out.insert(tenant, Arc::new(limits));
        }
        Ok(out)
    }

    /// Reloads every `period` and on SIGHUP until `stop` turns true.
    pub async fn run(self: Arc<Self>, period: Duration, stop: tokio::sync::watch::Receiver<bool>) {
        if self.file.is_some() {
            crate::reload::periodically("runtime overrides", period, stop, || self.reload()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_fields_overlay_the_defaults_and_bad_files_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("o.yaml");
        std::fs::write(&file, "overrides:\n  a:\n    max_line_size: 10\n    retention_period: 2h\n").unwrap();
        let defaults = Limits { max_label_names_per_series: 7, ..Limits::default() };
        let o = Overrides::new(defaults, Some(file.clone())).unwrap();
        assert_eq!(o.get("a").max_line_size.0, 10);
        assert_eq!(o.get("a").max_label_names_per_series, 7, "unset fields keep the configured defaults");
        assert_eq!(o.get("a").retention_period.0, Duration::from_secs(7200));
        assert_eq!(o.get("b").max_line_size.0, 256 << 10);
        std::fs::write(&file, "overrides:\n  a:\n    max_line_sise: 10\n").unwrap();
        let e = o.reload().unwrap_err().to_string();
        assert!(e.contains("max_line_sise"), "{e}");
        assert_eq!(o.get("a").max_line_size.0, 10, "the old limits stay");
        assert!(!o.last_reload_ok());
        std::fs::write(&file, "").unwrap();
        o.reload().unwrap();
        assert_eq!(o.get("a").max_line_size.0, 256 << 10);
    }
}
