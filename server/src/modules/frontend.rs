//! The query-frontend role: splits, queues and caches queries and runs them
//! on the querier of its own process (Balsa has no separate querier pool to
//! forward to).

use std::sync::Arc;

use crate::config::Config;
use crate::frontend::Frontend;
use crate::querier::Querier;

pub(super) fn build(cfg: &Config, querier: &Arc<Querier>) -> Arc<Frontend> {
    Arc::new(Frontend::new(querier.clone(), cfg.max_outstanding_per_tenant, cfg.results_cache_entries))
}
