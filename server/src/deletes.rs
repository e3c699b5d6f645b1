//! Delete requests (Loki's `/loki/api/v1/delete`): a log selector with
//! optional line filters and a time range whose lines a tenant wants gone.
//!
//! A request is stored as an object (`deletes/<tenant>/<id>`, JSON) before
//! the API answers, so it survives restarts. From then on queries no longer
//! return the lines it covers (in memory or flushed). After
//! `delete_request_cancel_period` it can no longer be cancelled and the
//! compactor rewrites the flushed chunks it covers without those lines;
//! it keeps doing so for chunks flushed later (lines that were still in
//! memory), and queries keep filtering, so deleted lines never come back.

use std::collections::HashMap;
use std::sync::Arc;

use balsa_storage::object_store::{ObjectError, ObjectStore};
use balsa_storage::Entry;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::labels::LabelSet;
use crate::logql::{parse_expr, pipeline, Expr, LogExpr};

/// One delete request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DeleteRequest {
    pub request_id: String,
    pub tenant: String,
    pub query: String,
    /// Unix ns, inclusive.
    pub start: i64,
    /// Unix ns, inclusive.
    pub end: i64,
    pub created_at: i64,
    pub cancelled: bool,
}

/// Why a delete request was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("invalid query expression: {0}")]
    Query(String),
    #[error("invalid time range: start must be before end")]
    Range,
    #[error("no delete request with id {0}")]
    NotFound(String),
    #[error("deletion of request which is in process or already processed is not allowed")]
    TooLate,
    #[error(transparent)]
    Store(#[from] ObjectError),
}

/// A request with its parsed query, ready to test entries.
#[derive(Clone)]
pub struct ActiveDelete {
    pub req: DeleteRequest,
    log: LogExpr,
}

impl ActiveDelete {
    fn new(req: DeleteRequest) -> Result<Self, DeleteError> {
        match parse_expr(&req.query) {
            Ok(Expr::Log(log)) => Ok(Self { req, log }),
            Ok(_) => Err(DeleteError::Query("a delete takes a log selector with optional line filters".into())),
            Err(e) => Err(DeleteError::Query(e.to_string())),
        }
    }

    /// Whether the stream's labels match the request's selector.
    pub fn matches_stream(&self, labels: &LabelSet) -> bool {
        self.log.matchers.iter().all(|m| m.matches(labels.get(&m.name)))
    }

    /// Whether an entry of a matching stream is deleted by this request.
    pub fn deletes(&self, labels: &LabelSet, e: &Entry) -> bool {
        e.ts >= self.req.start
            && e.ts <= self.req.end
            && (self.log.stages.is_empty() || pipeline::process(&self.log.stages, labels, e.clone()).is_some())
    }
}

/// The tenants' delete requests.
pub struct Deletes {
    store: Arc<dyn ObjectStore>,
    cancel_period: i64,
    by_tenant: RwLock<HashMap<String, Vec<ActiveDelete>>>,
    /// Serializes refresh, add and cancel, so none undoes another.
    ops: tokio::sync::Mutex<()>,
}

fn key(tenant: &str, id: &str) -> String {
    format!("deletes/{tenant}/{id}")
}

impl Deletes {
    /// Loads every stored request.
    pub async fn load(store: Arc<dyn ObjectStore>, cancel_period: std::time::Duration) -> Result<Self, DeleteError> {
        let d = Self {
            store,
            cancel_period: cancel_period.as_nanos() as i64,
            by_tenant: RwLock::new(HashMap::new()),
            ops: tokio::sync::Mutex::new(()),
        };
        d.refresh().await?;
        Ok(d)
    }

    /// Re-reads the stored requests (other processes may have added some).
    pub async fn refresh(&self) -> Result<(), DeleteError> {
        let _one_at_a_time = self.ops.lock().await;
        let mut all: HashMap<String, Vec<ActiveDelete>> = HashMap::new();
        for k in self.store.list("deletes/").await? {
            let bytes = match self.store.get(&k).await {
                Ok(b) => b,
                Err(ObjectError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            match serde_json::from_slice::<DeleteRequest>(&bytes).map_err(|e| DeleteError::Query(e.to_string())).and_then(ActiveDelete::new) {
                Ok(a) if !a.req.cancelled => all.entry(a.req.tenant.clone()).or_default().push(a),
                Ok(_) => {}
                Err(e) => tracing::error!(object = %k, error = %e, "unreadable delete request skipped"),
            }
        }
        *self.by_tenant.write() = all;
        Ok(())
    }

    /// Stores a new request; durable when it returns.
    pub async fn add(&self, tenant: &str, query: &str, start: i64, end: i64, now: i64) -> Result<DeleteRequest, DeleteError> {
        if end < start {
            return Err(DeleteError::Range);
        }
        let _one_at_a_time = self.ops.lock().await;
        let id = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(format!("{tenant}\0{query}\0{start}\0{end}\0{now}").as_bytes()));
        let req = DeleteRequest {
            request_id: id.clone(),
            tenant: tenant.to_string(),
            query: query.to_string(),
            start,
            end,
            created_at: now,
            cancelled: false,
        };
        let active = ActiveDelete::new(req.clone())?;
        let bytes = serde_json::to_vec(&req).map_err(|e| DeleteError::Query(e.to_string()))?;
        self.store.put(&key(tenant, &id), bytes).await?;
        self.by_tenant.write().entry(tenant.to_string()).or_default().push(active);
        Ok(req)
    }

    /// Cancels a request still within its cancel period.
    pub async fn cancel(&self, tenant: &str, id: &str, now: i64) -> Result<(), DeleteError> {
        let _one_at_a_time = self.ops.lock().await;
        let req = self
            .list(tenant)
            .into_iter()
            .find(|r| r.request_id == id)
            .ok_or_else(|| DeleteError::NotFound(id.to_string()))?;
        if now >= req.created_at.saturating_add(self.cancel_period) {
            return Err(DeleteError::TooLate);
        }
        let cancelled = DeleteRequest { cancelled: true, ..req };
        let bytes = serde_json::to_vec(&cancelled).map_err(|e| DeleteError::Query(e.to_string()))?;
        self.store.put(&key(tenant, id), bytes).await?;
        if let Some(v) = self.by_tenant.write().get_mut(tenant) {
            v.retain(|a| a.req.request_id != id);
        }
        Ok(())
    }

    /// The tenant's requests in force.
    pub fn list(&self, tenant: &str) -> Vec<DeleteRequest> {
        self.by_tenant.read().get(tenant).map(|v| v.iter().map(|a| a.req.clone()).collect()).unwrap_or_default()
    }

    /// The tenant's requests in force, for filtering.
    pub fn active(&self, tenant: &str) -> Vec<ActiveDelete> {
        self.by_tenant.read().get(tenant).cloned().unwrap_or_default()
    }

    /// Requests past their cancel period, which the compactor executes.
    pub fn executable(&self, now: i64) -> Vec<ActiveDelete> {
        self.by_tenant
            .read()
            .values()
            .flatten()
            .filter(|a| now >= a.req.created_at.saturating_add(self.cancel_period))
            .cloned()
            .collect()
    }

    /// Status as Loki reports it.
    pub fn status(&self, r: &DeleteRequest, now: i64) -> &'static str {
        if now >= r.created_at.saturating_add(self.cancel_period) {
            "processed"
        } else {
            "received"
        }
    }
}

/// Drops the entries any of `deletes` covers.
pub fn filter_entries(deletes: &[ActiveDelete], labels: &LabelSet, entries: &mut Vec<Entry>) {
    let relevant: Vec<&ActiveDelete> = deletes.iter().filter(|d| d.matches_stream(labels)).collect();
    if relevant.is_empty() {
        return;
    }
    entries.retain(|e| !relevant.iter().any(|d| d.deletes(labels, e)));
}
