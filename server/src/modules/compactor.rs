//! The compactor role: merges index segments, applies retention and
//! carries out delete requests, on its own loop (run one per cluster).

use std::sync::Arc;

use balsa_storage::object_store::ObjectStore;

use crate::compactor::{Compactor, CompactorConfig};
use crate::config::Config;
use crate::deletes::Deletes;
use crate::metrics::Metrics;
use crate::overrides::Overrides;

pub(super) fn build(
    cfg: &Config,
    store: &Arc<dyn ObjectStore>,
    overrides: &Arc<Overrides>,
    deletes: &Arc<Deletes>,
    metrics: &Metrics,
) -> Arc<Compactor> {
    Arc::new(Compactor::new(
        store.clone(),
        overrides.clone(),
        deletes.clone(),
        CompactorConfig { interval: cfg.compaction_interval, delete_delay: cfg.retention_delete_delay },
        metrics,
    ))
}
