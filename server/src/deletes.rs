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
//!
//! The store is the one place every process agrees on: each process
//! re-reads it every `refresh_period` ([`Deletes::run`]), so a request made
//! through one querier hides its lines in every other within that period.
//! Listing and cancelling read the tenant's requests from the store first,
//! so they see requests made elsewhere at once. A process that could not
//! re-read the store for three periods fails queries (503) rather than
//! return lines that may have been deleted elsewhere.

use std::collections::HashMap;
use std::sync::Arc;

use balsa_storage::keys;
use balsa_storage::object_store::{ObjectError, ObjectStore};
use balsa_storage::Entry;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::error_code::{Coded, ErrorCode};
use balsa_logql::labels::LabelSet;
use balsa_logql::{parse_expr, pipeline, Expr, LogExpr};

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
    #[error("delete requests could not be re-read for {0:?}: lines deleted through another process might be returned")]
    Stale(std::time::Duration),
    #[error(transparent)]
    Store(#[from] ObjectError),
}

impl Coded for DeleteError {
    fn code(&self) -> ErrorCode {
        match self {
            DeleteError::Query(_) | DeleteError::Range | DeleteError::TooLate => ErrorCode::BadRequest,
            DeleteError::NotFound(_) => ErrorCode::NotFound,
            DeleteError::Stale(_) => ErrorCode::Unavailable,
            DeleteError::Store(_) => ErrorCode::Internal,
        }
    }

    /// Loki writes the delete API's errors without a final newline.
    fn http_body(&self) -> String {
        self.to_string()
    }
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
            && (self.log.stages.is_empty() || pipeline::process(&self.log.stages, labels, e.clone().into_parts()).is_some())
    }
}

/// The tenants' delete requests.
pub struct Deletes {
    store: Arc<dyn ObjectStore>,
    cancel_period: i64,
    refresh_period: std::time::Duration,
    by_tenant: RwLock<HashMap<String, Vec<ActiveDelete>>>,
    /// When the store was last read whole.
    refreshed_at: parking_lot::Mutex<std::time::Instant>,
    /// Bumped by every refresh that changed the requests in force.
    generation: std::sync::atomic::AtomicU64,
    /// Serializes refresh, add and cancel, so none undoes another.
    ops: tokio::sync::Mutex<()>,
}

impl Deletes {
    /// Loads every stored request; `refresh_period`: how often [`Deletes::run`]
    /// reads them again.
    pub async fn load(
        store: Arc<dyn ObjectStore>,
        cancel_period: std::time::Duration,
        refresh_period: std::time::Duration,
    ) -> Result<Self, DeleteError> {
        let d = Self {
            store,
            cancel_period: cancel_period.as_nanos() as i64,
            refresh_period,
            by_tenant: RwLock::new(HashMap::new()),
            refreshed_at: parking_lot::Mutex::new(std::time::Instant::now()),
            generation: Default::default(),
            ops: tokio::sync::Mutex::new(()),
        };
        d.refresh().await?;
        Ok(d)
    }

    /// The requests in force stored under `prefix`, by tenant.
    async fn read(&self, prefix: &str) -> Result<HashMap<String, Vec<ActiveDelete>>, DeleteError> {
        let mut all: HashMap<String, Vec<ActiveDelete>> = HashMap::new();
        for k in self.store.list(prefix).await? {
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
        for v in all.values_mut() {
            v.sort_by(|a, b| (a.req.created_at, &a.req.request_id).cmp(&(b.req.created_at, &b.req.request_id)));
        }
        Ok(all)
    }

    /// Re-reads every stored request (other processes may have added or
    /// cancelled some); whether the set in force changed.
    pub async fn refresh(&self) -> Result<bool, DeleteError> {
        let _one_at_a_time = self.ops.lock().await;
        let all = self.read(keys::DELETES_ROOT).await?;
        let ids = |m: &HashMap<String, Vec<ActiveDelete>>| {
            let mut v: Vec<String> = m.values().flatten().map(|a| a.req.request_id.clone()).collect();
            v.sort();
            v
        };
        let changed = ids(&all) != ids(&self.by_tenant.read());
        *self.by_tenant.write() = all;
        *self.refreshed_at.lock() = std::time::Instant::now();
        if changed {
            self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(changed)
    }

    /// Re-reads one tenant's requests (before listing or cancelling).
    async fn refresh_tenant(&self, tenant: &str) -> Result<(), DeleteError> {
        let mut mine = self.read(&keys::deletes_prefix(tenant)).await?;
        let mut by_tenant = self.by_tenant.write();
        match mine.remove(tenant) {
            Some(v) => by_tenant.insert(tenant.to_string(), v),
            None => by_tenant.remove(tenant),
        };
        Ok(())
    }

    /// Re-reads the store every `refresh_period` until `stop`; calls
    /// `changed` when the requests in force changed since the last call,
    /// by this refresh or another (the compactor's): caches of answers
    /// must then be dropped.
    pub async fn run(self: Arc<Self>, changed: impl Fn() + Send + 'static, mut stop: tokio::sync::watch::Receiver<bool>) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut every = tokio::time::interval(self.refresh_period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = self.generation.load(Relaxed);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    if let Err(e) = self.refresh().await {
                        tracing::warn!(error = %e, "cannot re-read delete requests; retrying");
                    }
                    let now = self.generation.load(Relaxed);
                    if now != seen {
                        seen = now;
                        changed();
                    }
                }
                r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            }
        }
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
        self.store.put(&keys::delete_request(tenant, &id), bytes).await?;
        self.by_tenant.write().entry(tenant.to_string()).or_default().push(active);
        Ok(req)
    }

    /// Cancels a request still within its cancel period.
    pub async fn cancel(&self, tenant: &str, id: &str, now: i64) -> Result<(), DeleteError> {
        let _one_at_a_time = self.ops.lock().await;
        // Made through another process, perhaps: read the store first.
        self.refresh_tenant(tenant).await?;
        let req = self
            .known(tenant)
            .into_iter()
            .find(|r| r.request_id == id)
            .ok_or_else(|| DeleteError::NotFound(id.to_string()))?;
        if now >= req.created_at.saturating_add(self.cancel_period) {
            return Err(DeleteError::TooLate);
        }
        let cancelled = DeleteRequest { cancelled: true, ..req };
        let bytes = serde_json::to_vec(&cancelled).map_err(|e| DeleteError::Query(e.to_string()))?;
        self.store.put(&keys::delete_request(tenant, id), bytes).await?;
        if let Some(v) = self.by_tenant.write().get_mut(tenant) {
            v.retain(|a| a.req.request_id != id);
        }
        Ok(())
    }

    /// The tenant's requests in force, read from the store (requests made
    /// through other processes included).
    pub async fn list(&self, tenant: &str) -> Result<Vec<DeleteRequest>, DeleteError> {
        let _one_at_a_time = self.ops.lock().await;
        self.refresh_tenant(tenant).await?;
        Ok(self.known(tenant))
    }

    fn known(&self, tenant: &str) -> Vec<DeleteRequest> {
        self.by_tenant.read().get(tenant).map(|v| v.iter().map(|a| a.req.clone()).collect()).unwrap_or_default()
    }

    /// The tenant's requests in force, for filtering; an error if the
    /// store could not be re-read for three refresh periods.
    pub fn active(&self, tenant: &str) -> Result<Vec<ActiveDelete>, DeleteError> {
        let age = self.refreshed_at.lock().elapsed();
        if age > self.refresh_period.saturating_mul(3) {
            return Err(DeleteError::Stale(age));
        }
        Ok(self.by_tenant.read().get(tenant).cloned().unwrap_or_default())
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

#[cfg(test)]
mod tests {
    use super::*;
    use balsa_storage::object_store::FilesystemStore;
    use std::time::Duration;

    /// A process that cannot re-read the requests refuses to filter with
    /// an old set (it could return lines deleted elsewhere); a successful
    /// refresh picks up requests another process stored.
    #[tokio::test]
    async fn an_old_set_of_requests_is_refused_and_a_refresh_sees_other_processes() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(FilesystemStore::new(dir.path()));
        let here = Deletes::load(store.clone(), Duration::from_secs(3600), Duration::from_millis(20)).await.unwrap();
        let there = Deletes::load(store.clone(), Duration::from_secs(3600), Duration::from_secs(60)).await.unwrap();
        there.add("t", r#"{a="1"}"#, 0, 10, 5).await.unwrap();
        assert!(here.active("t").unwrap().is_empty(), "not re-read yet");
        assert!(here.refresh().await.unwrap(), "the set changed");
        assert_eq!(here.active("t").unwrap().len(), 1);
        assert_eq!(here.list("t").await.unwrap().len(), 1);
        let last_refresh = std::time::Instant::now();
        while last_refresh.elapsed() <= Duration::from_millis(60) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(matches!(here.active("t"), Err(DeleteError::Stale(_))), "three periods without a refresh");
        here.refresh().await.unwrap();
        assert!(here.active("t").is_ok());
    }
}
