//! The querier role: reads partition leaders and chunks in object storage,
//! hiding what delete requests cover. With the query frontend it forms the
//! read path the query and delete routes answer from.

use std::sync::Arc;

use balsa_storage::object_store::ObjectStore;

use crate::api::ReadPath;
use crate::config::Config;
use crate::deletes::Deletes;
use crate::ingester::client::IngesterClient;
use crate::metrics::Metrics;
use crate::overrides::Overrides;
use crate::querier::store::StoreReader;
use crate::querier::Querier;

/// The querier with its frontend (`super::frontend`).
pub(super) fn build(
    cfg: &Config,
    ingesters: &Arc<IngesterClient>,
    store: &Arc<dyn ObjectStore>,
    overrides: &Arc<Overrides>,
    deletes: &Arc<Deletes>,
    metrics: &Metrics,
) -> ReadPath {
    crate::querier::report(metrics);
    let querier = Arc::new(Querier::new(
        ingesters.clone(),
        cfg.read_consistency,
        StoreReader::new(store.clone(), cfg.chunk_cache_bytes, metrics),
        overrides.clone(),
        deletes.clone(),
    ));
    ReadPath { frontend: super::frontend::build(cfg, &querier), querier, deletes: deletes.clone() }
}
