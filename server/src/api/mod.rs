//! Loki's HTTP API: push, log queries, labels, series, status and metrics.
//!
//! - [`push`]: `POST /loki/api/v1/push` (and the legacy `/api/prom/push`);
//! - [`query`]: `query_range`, `query`, `labels`, `label/<name>/values`,
//!   `series`, with Loki's response JSON;
//! - [`tail`]: `/loki/api/v1/tail`, a WebSocket of new lines;
//! - [`index`]: index stats, volumes, detected labels and fields, patterns;
//! - [`ring`]: `/ring`, the cluster's nodes and partitions (HTML or JSON);
//! - [`params`]: Loki's parameter parsing; [`error`]: its error answers.

mod delete;
mod error;
mod index;
mod legacy;
mod params;
mod push;
mod query;
mod ring;
mod tail;
pub mod tls;

pub use tail::Tails;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::distributor::Distributor;
use crate::error_code::ErrorCode;
use crate::ingester::flush::Flusher;
use crate::ingester::Ingester;
use crate::metrics::Metrics;
use crate::overrides::Overrides;
use crate::querier::Querier;
pub use error::ApiError;
pub use params::parse_timestamp;

/// What every handler can reach.
pub struct Api {
    pub auth_enabled: bool,
    /// Tokens granting tenants (`auth.file`): checked before any handler.
    pub auth: Option<Arc<crate::auth::Auth>>,
    pub max_recv_msg_size: usize,
    pub max_decompressed_size: usize,
    pub overrides: Arc<Overrides>,
    /// The configuration in force, rendered once for `GET /config`.
    pub config_yaml: String,
    /// The write path, when this process runs the distributor role.
    pub distributor: Option<Arc<Distributor>>,
    /// The read path, when it runs the querier or query-frontend role.
    pub read: Option<ReadPath>,
    /// This process's replicas, when it runs the ingester role.
    pub ingester: Option<Arc<Ingester>>,
    /// The router to every partition's leader; its ring feeds `/ring`.
    pub ingesters: Arc<crate::ingester::client::IngesterClient>,
    pub metrics: Arc<Metrics>,
    pub flusher: Option<Arc<Flusher>>,
    /// Set to start draining this ingester (`POST /ingester/drain`).
    pub drain: Option<tokio::sync::watch::Sender<bool>>,
    /// Live tails open now, and how long one may last.
    pub tails: tail::Tails,
}

/// What answers queries and delete requests.
pub struct ReadPath {
    pub querier: Arc<Querier>,
    pub frontend: Arc<crate::frontend::Frontend>,
    pub deletes: Arc<crate::deletes::Deletes>,
}

type AppState = Arc<Api>;

impl Api {
    /// The distributor ([`router`] serves the write routes only with one).
    fn distributor(&self) -> Result<&Distributor, ApiError> {
        self.distributor.as_deref().ok_or_else(|| ApiError::new(ErrorCode::NotFound, "this process runs no distributor"))
    }

    /// The read path ([`router`] serves the read routes only with one).
    fn read(&self) -> Result<&ReadPath, ApiError> {
        self.read.as_ref().ok_or_else(|| ApiError::new(ErrorCode::NotFound, "this process runs no querier"))
    }

    /// The tenant of a write, or Loki's 401/400.
    fn tenant(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let h = headers.get("x-scope-orgid").and_then(|v| v.to_str().ok());
        Ok(crate::tenant::resolve(self.auth_enabled, h)?)
    }

    /// The tenants of a read (`a|b` for several), or Loki's 401/400.
    fn tenants(&self, headers: &HeaderMap) -> Result<Vec<String>, ApiError> {
        let h = headers.get("x-scope-orgid").and_then(|v| v.to_str().ok());
        Ok(crate::tenant::resolve_many(self.auth_enabled, h)?)
    }

    /// The most restrictive of the tenants' query limits.
    fn query_limits(&self, tenants: &[String]) -> QueryLimits {
        let mut q = QueryLimits {
            max_entries: usize::MAX,
            max_series: usize::MAX,
            max_length: std::time::Duration::MAX,
            timeout: std::time::Duration::MAX,
            plan: crate::frontend::Plan { split: std::time::Duration::MAX, parallelism: usize::MAX, max_series: 0 },
        };
        for l in tenants.iter().map(|t| self.overrides.get(t)) {
            q.max_entries = q.max_entries.min(l.max_entries_limit_per_query);
            q.max_series = q.max_series.min(l.max_query_series);
            if !l.max_query_length.0.is_zero() {
                q.max_length = q.max_length.min(l.max_query_length.0);
            }
            if !l.query_timeout.0.is_zero() {
                q.timeout = q.timeout.min(l.query_timeout.0);
            }
            q.plan.split = q.plan.split.min(l.split_queries_by_interval.0);
            q.plan.parallelism = q.plan.parallelism.min(l.max_query_parallelism.max(1));
        }
        q.plan.max_series = q.max_series;
        q
    }
}

/// Query limits in force for a request.
struct QueryLimits {
    max_entries: usize,
    max_series: usize,
    max_length: std::time::Duration,
    timeout: std::time::Duration,
    plan: crate::frontend::Plan,
}

impl QueryLimits {
    /// Loki's 400 for a range longer than `max_query_length`.
    /// A log query's `limit` against `max_entries_limit_per_query`.
    fn check_entries(&self, limit: usize) -> Result<(), ApiError> {
        if limit > self.max_entries {
            return Err(ApiError::bad_request(format!(
                "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {})",
                self.max_entries
            )));
        }
        Ok(())
    }

    fn check_length(&self, start: i64, end: i64) -> Result<(), ApiError> {
        let len = std::time::Duration::from_nanos(end.saturating_sub(start).max(0) as u64);
        if len > self.max_length {
            return Err(ApiError::bad_request(format!(
                "the query time range exceeds the limit (query length: {}, limit: {})",
                balsa_logql::units::prometheus_duration(len),
                balsa_logql::units::prometheus_duration(self.max_length)
            )));
        }
        Ok(())
    }

    /// Runs `f` within `query_timeout` (Loki's 504 after).
    /// The reads check the deadline too ([`crate::querier::DEADLINE`]), so
    /// a query busy between awaits also stops.
    async fn within_timeout<T>(&self, f: impl std::future::Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
        let deadline = std::time::Instant::now().checked_add(self.timeout).unwrap_or_else(|| std::time::Instant::now() + std::time::Duration::from_secs(86_400 * 365));
        match tokio::time::timeout(self.timeout, crate::querier::DEADLINE.scope(deadline, f)).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::new(ErrorCode::Timeout, crate::querier::TIMEOUT_TEXT)),
        }
    }
}

/// The router of the HTTP server.
/// The HTTP routes of the roles this process runs: the write routes with
/// a distributor, the read routes (queries, tails, deletes) with a read
/// path, and the admin routes (`/ready`, `/ring`, `/metrics`, `/config`,
/// limits, the ingester's `/flush` and drain) always. A route of a role
/// not run here is Loki's 404.
pub fn router(api: Arc<Api>) -> Router {
    let mut router = Router::new()
        .route("/loki/api/v1/status/buildinfo", get(buildinfo))
        .route("/ready", get(ready))
        .route("/ring", get(ring::ring))
        .route("/flush", post(flush))
        .route("/ingester/drain", post(drain))
        .route("/runtime_config", get(runtime_config))
        .route("/config/tenant/v1/limits", get(tenant_limits))
        .route("/loki/api/v1/drilldown-limits", get(drilldown_limits))
        .route("/config", get(config))
        .route("/metrics", get(metrics));
    if api.distributor.is_some() {
        router = router
            .route("/loki/api/v1/push", post(push::push))
            .route("/api/prom/push", post(push::push))
            .route("/otlp/v1/logs", post(push::otlp_push));
    }
    if api.read.is_some() {
        router = router
            .route("/loki/api/v1/query_range", get(query::query_range).post(query::query_range))
            .route("/loki/api/v1/query", get(query::instant_query).post(query::instant_query))
            .route("/loki/api/v1/labels", get(query::labels).post(query::labels))
            .route("/loki/api/v1/label", get(query::labels).post(query::labels))
            .route("/loki/api/v1/label/{name}/values", get(query::label_values).post(query::label_values))
            .route("/loki/api/v1/series", get(query::series).post(query::series))
            .route("/loki/api/v1/tail", get(tail::tail))
            .route("/loki/api/v1/format_query", get(query::format_query).post(query::format_query))
            .route("/loki/api/v1/index/stats", get(index::stats).post(index::stats))
            .route("/loki/api/v1/index/volume", get(index::volume).post(index::volume))
            .route("/loki/api/v1/index/volume_range", get(index::volume_range).post(index::volume_range))
            .route("/loki/api/v1/detected_labels", get(index::detected_labels))
            .route("/loki/api/v1/patterns", get(index::patterns))
            .route("/loki/api/v1/detected_fields", get(index::detected_fields))
            .route("/loki/api/v1/detected_field/{name}/values", get(index::detected_field_values))
            .route("/api/prom/query", get(legacy::query).post(legacy::query))
            .route("/api/prom/label", get(legacy::labels).post(legacy::labels))
            .route("/api/prom/label/{name}/values", get(legacy::label_values).post(legacy::label_values))
            .route("/api/prom/series", get(query::series).post(query::series))
            .route("/api/prom/tail", get(legacy::tail))
            .route(
                "/loki/api/v1/delete",
                post(delete::create).put(delete::create).get(delete::list).delete(delete::cancel),
            );
    }
    router
        .layer(axum::middleware::from_fn_with_state(api.clone(), authenticate))
        .layer(axum::middleware::from_fn_with_state(api.clone(), observe))
        .with_state(api)
}

/// With an auth file, checks the request's credentials for what its path
/// does and replaces `X-Scope-OrgID` with the tenants they allow it (the
/// header as sent, if every tenant in it is allowed): handlers then resolve
/// tenants as they always do. 401/403 with the reason otherwise.
async fn authenticate(State(api): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(auth) = &api.auth else { return next.run(req).await };
    let headers = req.headers();
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let org_id = headers.get("x-scope-orgid").and_then(|v| v.to_str().ok());
    let peer = req.extensions().get::<axum::extract::ConnectInfo<tls::PeerInfo>>().map(|c| c.0.clone());
    let cert = peer.as_ref().and_then(|p| p.common_name.as_deref());
    let access = crate::auth::Access::of_path(req.uri().path());
    match auth.authorize(access, authorization, org_id, cert) {
        Ok(None) => next.run(req).await,
        Ok(Some(tenants)) => match HeaderValue::from_str(&tenants) {
            Ok(v) => {
                req.headers_mut().insert("x-scope-orgid", v);
                next.run(req).await
            }
            Err(_) => ApiError::bad_request("invalid X-Scope-OrgID").into_response(),
        },
        Err(e) => {
            auth.count_refusal(&e);
            let from = peer.as_ref().map(|p| p.addr);
            tracing::info!(reason = e.reason(), error = %e, peer = ?from, "request refused");
            discard_body(req).await;
            let mut r = ApiError::from(e).into_response();
            if r.status() == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"balsa\""));
            }
            r
        }
    }
}

/// Reads and drops a refused request's body, up to 1 MiB and 2 s, before
/// the answer: over HTTP/2 an answer to an unread upload resets the stream,
/// and some clients (curl before 8) report the reset instead of the answer.
async fn discard_body(req: Request) {
    use http_body_util::BodyExt;
    let mut body = req.into_body();
    let mut left: usize = 1 << 20;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            left = left.saturating_sub(n);
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

/// Times every request into `loki_request_duration_seconds` and opens its
/// tracing span.
async fn observe(State(api): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let method = req.method().to_string();
    let span = tracing::info_span!("http", %method, %route);
    let started = Instant::now();
    let resp = tracing::Instrument::instrument(next.run(req), span).await;
    api.metrics
        .request_duration
        .with_label_values(&[&route, &method, resp.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    resp
}

async fn ready(State(api): State<AppState>) -> Response {
    let problem = match &api.ingester {
        Some(ing) => ing.not_ready().map(|p| format!("Ingester not ready: {p}")),
        None => (api.ingesters.partitions() == 0).then(|| "Not ready: no ring received from the ingesters yet".to_string()),
    };
    match problem {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(p) => ApiError::new(ErrorCode::Unavailable, format!("{p}\n")).into_response(),
    }
}

/// `GET /config`: the configuration in force (secrets redacted).
async fn config(State(api): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], api.config_yaml.clone()).into_response()
}

/// `GET /runtime_config`: the per-tenant overrides in force.
async fn runtime_config(State(api): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], api.overrides.text()).into_response()
}

/// The limits Loki publishes to a tenant by default
/// (`tenant_limits_allow_publish`), those Balsa has.
const PUBLISHED_LIMITS: &[&str] = &[
    "discover_log_levels",
    "discover_service_name",
    "log_level_fields",
    "max_entries_limit_per_query",
    "max_line_size_truncate",
    "max_query_bytes_read",
    "max_query_length",
    "max_query_lookback",
    "max_query_range",
    "max_query_series",
    "metric_aggregation_enabled",
    "otlp_config",
    "pattern_persistence_enabled",
    "query_timeout",
    "retention_period",
    "retention_stream",
    "volume_enabled",
    "volume_max_series",
];

/// The caller's tenant limits as Loki publishes them.
fn published_limits(api: &Api, headers: &HeaderMap) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let tenant = api.tenant(headers)?;
    let all = serde_json::to_value(&*api.overrides.get(&tenant)).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let mut out = serde_json::Map::new();
    if let serde_json::Value::Object(fields) = all {
        out.extend(fields.into_iter().filter(|(k, _)| PUBLISHED_LIMITS.contains(&k.as_str())));
    }
    Ok(out)
}

/// `GET /config/tenant/v1/limits`: the tenant's published limits, as YAML.
async fn tenant_limits(State(api): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let limits = published_limits(&api, &headers)?;
    let yaml = serde_yaml_ng::to_string(&limits).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], yaml).into_response())
}

/// `GET /loki/api/v1/drilldown-limits`: what Grafana's Logs Drilldown asks
/// first — the tenant's published limits, whether patterns are served, and
/// the version.
async fn drilldown_limits(State(api): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let limits = published_limits(&api, &headers)?;
    Ok(axum::Json(serde_json::json!({"limits": limits, "pattern_ingester_enabled": true, "version": LOKI_VERSION})).into_response())
}

/// `POST /flush`: cuts every head and flushes it, and ships the index, now.
async fn flush(State(api): State<AppState>) -> Response {
    let Some(flusher) = &api.flusher else {
        return ApiError::bad_request("this process runs no ingester: nothing to flush".to_string()).into_response();
    };
    match flusher.flush(true).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ApiError::new(ErrorCode::Unavailable, format!("flush failed: {e}\n")).into_response(),
    }
}

/// `POST /ingester/drain`: moves every replica of this ingester to other
/// nodes, then the process exits. Answers 202 at once; `/ring` shows the
/// progress.
async fn drain(State(api): State<AppState>) -> Response {
    match &api.drain {
        Some(tx) => {
            tx.send_replace(true);
            (StatusCode::ACCEPTED, "draining: replicas move away, then this process exits\n").into_response()
        }
        None => ApiError::bad_request("this process runs no ingester: nothing to drain".to_string()).into_response(),
    }
}

async fn metrics(State(api): State<AppState>) -> Response {
    let body = api.metrics.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// The Loki API level Balsa implements, with Balsa's own version as semver
/// build metadata.
const LOKI_VERSION: &str = concat!("3.5.0+balsa.", env!("CARGO_PKG_VERSION"));

/// Loki's (Prometheus') build information. `version` is the Loki API level
/// Balsa implements, with Balsa's own version as semver build metadata, so
/// that clients that check Loki's version keep working.
async fn buildinfo() -> Response {
    let body = serde_json::json!({
        "version": LOKI_VERSION,
        "revision": option_env!("BALSA_REVISION").unwrap_or("unknown"),
        "branch": "main",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    });
    axum::Json(body).into_response()
}
