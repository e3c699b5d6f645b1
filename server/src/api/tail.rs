//! `/loki/api/v1/tail`: a WebSocket that streams new lines of a log query.
//!
//! First the last `limit` lines since `start` (default one hour ago), then,
//! every second, the lines that arrived since, held back `delay_for`
//! seconds (0–5) so late entries are not missed. Each message is Loki's
//! `{"streams": [...], "dropped_entries": null}` (for `/api/prom/tail` with
//! streams in the legacy shape); nothing is dropped. As in Loki, a tenant
//! may have `max_concurrent_tail_requests` tails open (10), and a tail is
//! closed after `querier.tail_max_duration` (1h).

use std::collections::HashSet;
use std::time::Duration;


use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use balsa_storage::Direction;
use serde_json::json;

use super::query::{streams_json, wants_categorized_labels, ReadRequest};
use super::{ApiError, AppState};
use balsa_logql::{parse_expr, Expr, LogExpr};
use crate::places::{Place, Places};
use crate::querier::{LogRequest, Querier, StreamResult};
use balsa_logql::time::now_ns;

const MAX_DELAY_FOR_SECS: i64 = 5;
const POLL: Duration = Duration::from_secs(1);
/// After the first answer, each poll reads back at most this far before
/// the previous poll's end, for lines that arrive late; older ones are not
/// read again (a tail from `start=0` that matches nothing would otherwise
/// scan all history every second).
const LATE_NS: i64 = 60_000_000_000;

pub async fn tail(state: State<AppState>, ws: WebSocketUpgrade, req: ReadRequest) -> Result<Response, ApiError> {
    open(state, ws, req, false).await
}

/// The live tails open now, per tenant, and how long one may last.
pub struct Tails {
    open: Places,
    max_duration: Duration,
}

impl Tails {
    pub fn new(max_duration: Duration) -> Self {
        Self { open: Places::default(), max_duration }
    }

    /// A place for a new tail under each of `tenants`, or Loki's 400 when
    /// one of them already has `limit(tenant)` open.
    fn admit(&self, tenants: &[String], limit: impl Fn(&str) -> usize) -> Result<Vec<Place>, ApiError> {
        tenants
            .iter()
            .map(|t| {
                self.open.take(t, limit(t)).map_err(|count| {
                    ApiError::bad_request(format!(
                        "max concurrent tail requests limit exceeded, count > limit ({} > {})",
                        count + 1,
                        limit(t)
                    ))
                })
            })
            .collect()
    }
}

/// Checks the request and upgrades; `legacy` for `/api/prom/tail`'s shape.
pub async fn open(State(api): State<AppState>, ws: WebSocketUpgrade, req: ReadRequest, legacy: bool) -> Result<Response, ApiError> {
    let p = &req.params;
    let query = match parse_expr(p.get("query").unwrap_or("")).map_err(|e| ApiError::bad_request(e.to_string()))? {
        Expr::Log(l) => l,
        _ => return Err(ApiError::bad_request("tail needs a log query, not a metric query")),
    };
    let delay = p.get("delay_for").filter(|s| !s.is_empty()).map(str::parse::<i64>).transpose();
    let delay = match delay {
        Ok(d) if d.unwrap_or(0) <= MAX_DELAY_FOR_SECS && d.unwrap_or(0) >= 0 => d.unwrap_or(0) * 1_000_000_000,
        _ => return Err(ApiError::bad_request(format!("delay_for can't be greater than {MAX_DELAY_FOR_SECS}"))),
    };
    let limit = p.limit()?;
    api.query_limits(&req.tenants).check_entries(limit)?;
    let start = match p.get("start").filter(|s| !s.is_empty()) {
        Some(s) => super::parse_timestamp(s).map_err(|e| ApiError::bad_request(format!("could not parse 'start' parameter: {e}")))?,
        None => now_ns() - 3_600_000_000_000,
    };
    let categorize = wants_categorized_labels(&req.headers);
    let tenants = req.tenants;
    let shape = if legacy { Shape::Legacy } else { Shape::V1 { categorize } };
    let slot = api.tails.admit(&tenants, |t| api.overrides.get(t).max_concurrent_tail_requests)?;
    let until = tokio::time::Instant::now() + api.tails.max_duration;
    let querier = api.read()?.querier.clone();
    Ok(ws
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            follow(&querier, tenants, query, start, delay, limit, shape, until, socket).await;
        })
        .into_response())
}

/// How messages show streams.
#[derive(Clone, Copy)]
enum Shape {
    V1 { categorize: bool },
    Legacy,
}

#[allow(clippy::too_many_arguments)]
async fn follow(
    querier: &Querier,
    tenants: Vec<String>,
    query: LogExpr,
    start: i64,
    delay: i64,
    limit: usize,
    shape: Shape,
    until: tokio::time::Instant,
    mut socket: WebSocket,
) {
    let categorize = matches!(shape, Shape::V1 { categorize: true });
    // Lines already sent at the newest timestamp sent, to skip them when
    // the next poll starts from that timestamp again.
    let mut from = start;
    let mut sent_at_from: HashSet<(String, String)> = HashSet::new();
    let mut first = true;
    let mut polled_until = i64::MIN;
    loop {
        let end = now_ns() - delay;
        if end > from {
            // The first batch is the newest `limit` lines; later ones all new lines.
            let (direction, lim) = if first { (Direction::Backward, limit) } else { (Direction::Forward, 10_000) };
            let scan_from = from.max(polled_until.saturating_sub(LATE_NS));
            polled_until = end;
            let req = LogRequest { query: query.clone(), start: scan_from, end, limit: lim, direction, categorize, interval: 0 };
            let streams = match querier.select_logs(&tenants, &req).await {
                Ok((s, _)) => s,
                Err(e) => {
                    let _ = socket.send(Message::Close(None)).await;
                    tracing::warn!(error = %e, "tail query failed; closing");
                    return;
                }
            };
            let (fresh, newest) = only_new(streams, &mut sent_at_from, from);
            if let Some(ts) = newest {
                from = ts;
            }
            if !fresh.is_empty() {
                let streams = match shape {
                    Shape::V1 { categorize } => streams_json(fresh, categorize),
                    Shape::Legacy => super::legacy::streams_json(fresh),
                };
                let msg = json!({"streams": streams, "dropped_entries": null});
                if socket.send(Message::Text(msg.to_string().into())).await.is_err() {
                    return;
                }
            }
            first = false;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {
                // `tail_max_duration` is up.
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            _ = tokio::time::sleep(POLL) => {}
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Drops lines already sent at `from`; returns the rest (ascending) and
/// the newest timestamp, remembering the lines sent at it.
fn only_new(streams: Vec<StreamResult>, sent_at_from: &mut HashSet<(String, String)>, from: i64) -> (Vec<StreamResult>, Option<i64>) {
    let mut out = Vec::new();
    let mut newest: Option<i64> = None;
    for mut s in streams {
        let key = s.labels.to_string();
        s.entries.retain(|e| !(e.ts == from && sent_at_from.contains(&(key.clone(), e.line.clone()))));
        s.entries.sort_by_key(|e| e.ts);
        if let Some(last) = s.entries.last() {
            newest = Some(newest.map_or(last.ts, |n: i64| n.max(last.ts)));
        }
        if !s.entries.is_empty() {
            out.push(s);
        }
    }
    if let Some(ts) = newest {
        if ts != from {
            sent_at_from.clear();
        }
        for s in &out {
            for e in s.entries.iter().filter(|e| e.ts == ts) {
                sent_at_from.insert((s.labels.to_string(), e.line.clone()));
            }
        }
    }
    (out, newest)
}
