//! The query-frontend: bounds each tenant's outstanding queries (Loki's
//! 429 `too many outstanding requests`; admitted queries then take turns
//! with other tenants' at the querier's decoding slots, `querier::fair`),
//! splits range queries at
//! `split_queries_by_interval` boundaries, runs metric pieces in parallel
//! (`max_query_parallelism`), and caches finished metric pieces that lie
//! wholly in the past.
//!
//! Splitting never changes an answer: a metric query is evaluated step by
//! step, so a piece is a subset of the steps; a log query's pieces are read
//! newest-first (or oldest-first) until `limit` lines are found, then the
//! limit is applied across them as for one query.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use parking_lot::Mutex;

use balsa_logql::eval::{EvalError, Series, Steps, Value};
use balsa_logql::Expr;
use crate::error_code::{Coded, ErrorCode};
use crate::places::{Place, Places};
use crate::querier::merge::{keep_first, keep_spaced, merge_same_labels};
use crate::querier::{LogRequest, Querier, QueryError, ScanStats, StreamResult};
use balsa_storage::Direction;

/// Why the frontend did not answer.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// 429.
    #[error("too many outstanding requests")]
    TooManyOutstanding,
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl Coded for FrontendError {
    fn code(&self) -> ErrorCode {
        match self {
            FrontendError::TooManyOutstanding => ErrorCode::RateLimited,
            FrontendError::Query(q) => q.code(),
        }
    }

    fn http_body(&self) -> String {
        match self {
            FrontendError::TooManyOutstanding => self.to_string(),
            FrontendError::Query(q) => q.http_body(),
        }
    }
}

/// How queries are split and bounded (per request: the tenants' limits).
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Zero: no splitting.
    pub split: Duration,
    pub parallelism: usize,
    pub max_series: usize,
}

/// Pieces ending this long ago are final and may be cached: older than the
/// out-of-order window (1h by default) with room to spare.
const CACHE_FRESHNESS_NS: i64 = 2 * 3_600_000_000_000;

/// Bounded cache of metric pieces, oldest out: at most `max` pieces and
/// [`CACHE_MAX_BYTES`] of them.
struct Cache {
    max: usize,
    map: HashMap<String, Value>,
    order: VecDeque<String>,
    bytes: usize,
}

/// What the results cache may hold in all (pieces can be large: many series
/// of many points).
const CACHE_MAX_BYTES: usize = 256 << 20;

/// Queries longer than this are not cached (their text is part of the key).
const CACHE_MAX_QUERY: usize = 16 << 10;

/// Roughly the memory a cached piece takes.
fn cached_size(key: &str, v: &Value) -> usize {
    key.len()
        + match v {
            Value::Scalar(points) => points.len() * 8,
            Value::Vector(series) => {
                series.iter().map(|s| s.points.len() * 16 + s.labels.iter().map(|(k, v)| k.len() + v.len() + 48).sum::<usize>()).sum()
            }
        }
}

/// Queues, splits and caches queries in front of the querier.
pub struct Frontend {
    querier: Arc<Querier>,
    admission: Admission,
    cache: Mutex<Cache>,
}

/// Bounds the queries each tenant has outstanding.
pub struct Admission {
    max_per_tenant: usize,
    outstanding: Places,
}

impl Admission {
    pub fn new(max_per_tenant: usize) -> Self {
        Self { max_per_tenant, outstanding: Places::default() }
    }

    /// Takes one of the tenants' outstanding-query places, or 429.
    pub fn admit(&self, tenants: &[String]) -> Result<Place, FrontendError> {
        self.outstanding.take(&tenants.join("|"), self.max_per_tenant).map_err(|_| FrontendError::TooManyOutstanding)
    }
}

impl Frontend {
    pub fn new(querier: Arc<Querier>, max_outstanding_per_tenant: usize, cache_entries: usize) -> Self {
        Self {
            querier,
            admission: Admission::new(max_outstanding_per_tenant),
            cache: Mutex::new(Cache { max: cache_entries, map: HashMap::new(), order: VecDeque::new(), bytes: 0 }),
        }
    }

    /// Forgets cached results (a delete request changed what they hold).
    pub fn invalidate(&self) {
        let mut c = self.cache.lock();
        c.map.clear();
        c.order.clear();
    }

    /// Takes one of the tenants' outstanding-query places, or 429.
    pub fn admit(&self, tenants: &[String]) -> Result<Place, FrontendError> {
        self.admission.admit(tenants)
    }

    /// The step grids of the pieces of `steps`, one per split interval.
    fn pieces(steps: Steps, split: Duration) -> Vec<Steps> {
        let interval = split.as_nanos() as i64;
        if interval <= 0 || steps.is_empty() {
            return vec![steps];
        }
        let mut out: Vec<Steps> = Vec::new();
        for i in 0..steps.len() {
            let t = steps.at(i);
            match out.last_mut() {
                Some(last) if last.end.div_euclid(interval) == t.div_euclid(interval) => last.end = t,
                _ => out.push(Steps { start: t, end: t, step: steps.step }),
            }
        }
        out
    }

    /// A metric range query, split and run in parallel, pieces cached; with
    /// what it read, the pieces, and the cache's hits and stores.
    pub async fn metric_range(
        &self,
        tenants: &[String],
        query_text: &str,
        expr: &Expr,
        steps: Steps,
        plan: Plan,
    ) -> Result<(Value, ScanStats), FrontendError> {
        let started = std::time::Instant::now();
        let pieces = Self::pieces(steps, plan.split);
        let mut stats = ScanStats { splits: pieces.len() as u64, cache_requested: pieces.len() as u64, ..ScanStats::default() };
        let now = balsa_logql::time::now_ns();
        // Each piece: its grid, value, what it read, and whether it was a hit / was stored.
        let results: Vec<(Steps, Value, ScanStats, bool, bool)> = stream::iter(pieces)
            .map(|piece| async move {
                let key = format!("{}\u{0}{query_text}\u{0}{}\u{0}{}\u{0}{}", tenants.join("|"), piece.start, piece.end, piece.step);
                if let Some(v) = self.cache.lock().map.get(&key).cloned() {
                    return Ok::<_, FrontendError>((piece, v, ScanStats::default(), true, false));
                }
                let (v, read) = self.querier.eval_metric(tenants, expr, piece, plan.max_series).await?;
                let mut stored = false;
                let cacheable = piece.end < now - CACHE_FRESHNESS_NS && query_text.len() <= CACHE_MAX_QUERY;
                let size = if cacheable { cached_size(&key, &v) } else { 0 };
                if cacheable && size <= CACHE_MAX_BYTES / 4 {
                    let mut c = self.cache.lock();
                    if c.max > 0 && !c.map.contains_key(&key) {
                        c.order.push_back(key.clone());
                        c.map.insert(key, v.clone());
                        c.bytes += size;
                        stored = true;
                        while c.map.len() > c.max || c.bytes > CACHE_MAX_BYTES {
                            let Some(old) = c.order.pop_front() else { break };
                            if let Some(gone) = c.map.remove(&old) {
                                c.bytes = c.bytes.saturating_sub(cached_size(&old, &gone));
                            }
                        }
                    }
                }
                Ok((piece, v, read, false, stored))
            })
            .buffered(plan.parallelism.max(1))
            .try_collect()
            .await?;
        let mut pieces = Vec::with_capacity(results.len());
        for (piece, v, read, hit, stored) in results {
            stats.add_scan(&read);
            stats.cache_found += u64::from(hit);
            stats.cache_stored += u64::from(stored);
            pieces.push((piece, v));
        }
        let value = join(steps, pieces, plan.max_series).map_err(QueryError::from)?;
        if let Value::Vector(series) = &value {
            stats.returned = series.len() as u64;
        }
        stats.exec_seconds = started.elapsed().as_secs_f64();
        Ok((value, stats))
    }

    /// A log range query, read piece by piece in `direction` until `limit`
    /// lines are found (with `interval`, lines spaced that far apart).
    pub async fn log_range(&self, tenants: &[String], req: &LogRequest, split: Duration) -> Result<(Vec<StreamResult>, ScanStats), FrontendError> {
        let split = split.as_nanos() as i64;
        let mut ranges = Vec::new();
        if split <= 0 || req.end - req.start <= split {
            ranges.push((req.start, req.end));
        } else {
            let mut t = req.start;
            while t < req.end {
                // Checked: near i64::MAX the next boundary would wrap.
                let next = t.div_euclid(split).checked_add(1).and_then(|q| q.checked_mul(split)).map_or(req.end, |n| n.min(req.end));
                ranges.push((t, next));
                t = next;
            }
        }
        if req.direction == Direction::Backward {
            ranges.reverse();
        }
        let mut found: Vec<StreamResult> = Vec::new();
        let mut stats = ScanStats::default();
        let mut lines = 0usize;
        let mut last_kept = None;
        for (start, end) in ranges {
            let piece = LogRequest { start, end, ..req.clone() };
            let (mut streams, s) = self.querier.select_logs(tenants, &piece).await?;
            if req.interval > 0 {
                streams = keep_spaced(streams, req.direction, req.interval, &mut last_kept);
            }
            lines += streams.iter().map(|s| s.entries.len()).sum::<usize>();
            stats.add_scan(&s);
            stats.splits += 1;
            stats.exec_seconds += s.exec_seconds;
            found.extend(streams);
            if lines >= req.limit {
                break;
            }
        }
        let mut result = keep_first(merge_same_labels(found, req.direction), req.limit, req.direction);
        result.sort_by(|a, b| a.labels.cmp(&b.labels));
        stats.returned = result.iter().map(|s| s.entries.len() as u64).sum();
        Ok((result, stats))
    }
}

/// Joins pieces' results back onto the whole step grid; more than
/// `max_series` series in all (each piece has its own) is Loki's error.
fn join(steps: Steps, pieces: Vec<(Steps, Value)>, max_series: usize) -> Result<Value, EvalError> {
    let n = steps.len();
    let offset = |p: &Steps| ((p.start - steps.start) / steps.step.max(1)) as usize;
    if pieces.iter().all(|(_, v)| matches!(v, Value::Scalar(_))) {
        let mut out = vec![f64::NAN; n];
        for (p, v) in &pieces {
            if let Value::Scalar(vals) = v {
                for (i, x) in vals.iter().enumerate() {
                    if let Some(slot) = out.get_mut(offset(p) + i) {
                        *slot = *x;
                    }
                }
            }
        }
        return Ok(Value::Scalar(out));
    }
    let mut order: Vec<balsa_logql::labels::LabelSet> = Vec::new();
    let mut by: HashMap<balsa_logql::labels::LabelSet, Vec<Option<f64>>> = HashMap::new();
    for (p, v) in pieces {
        let Value::Vector(series) = v else { continue };
        for s in series {
            if !by.contains_key(&s.labels) && by.len() >= max_series {
                return Err(EvalError(format!("maximum of series ({max_series}) reached for a single query")));
            }
            let slot = by.entry(s.labels.clone()).or_insert_with(|| {
                order.push(s.labels.clone());
                vec![None; n]
            });
            for (i, x) in s.points.into_iter().enumerate() {
                if let Some(dst) = slot.get_mut(offset(&p) + i) {
                    *dst = x;
                }
            }
        }
    }
    Ok(Value::Vector(order.into_iter().filter_map(|l| by.remove(&l).map(|points| Series { labels: l, points })).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000_000;

    #[test]
    fn pieces_follow_interval_boundaries_and_cover_every_step() {
        let steps = Steps { start: H / 2, end: 3 * H, step: H / 4 };
        let pieces = Frontend::pieces(steps, Duration::from_secs(3600));
        let covered: Vec<i64> = pieces.iter().flat_map(|p| (0..p.len()).map(move |i| p.at(i))).collect();
        let all: Vec<i64> = (0..steps.len()).map(|i| steps.at(i)).collect();
        assert_eq!(covered, all);
        assert_eq!(pieces.len(), 4);
        assert!(pieces.iter().all(|p| p.start.div_euclid(H) == p.end.div_euclid(H)));
    }

    #[test]
    fn joined_pieces_sit_at_their_steps() {
        let steps = Steps { start: 0, end: 3, step: 1 };
        let l = balsa_logql::labels::LabelSet::parse(r#"{a="1"}"#).unwrap();
        let p1 = (Steps { start: 0, end: 1, step: 1 }, Value::Vector(vec![Series { labels: l.clone(), points: vec![Some(1.0), None] }]));
        let p2 = (Steps { start: 2, end: 3, step: 1 }, Value::Vector(vec![Series { labels: l.clone(), points: vec![Some(3.0), Some(4.0)] }]));
        let Value::Vector(v) = join(steps, vec![p1.clone(), p2.clone()], 500).unwrap() else { panic!() };
        assert_eq!(v[0].points, vec![Some(1.0), None, Some(3.0), Some(4.0)]);
        // Each piece within `max_series`, all of them past it: Loki's error.
        let m = balsa_logql::labels::LabelSet::parse(r#"{a="2"}"#).unwrap();
        let p3 = (Steps { start: 2, end: 3, step: 1 }, Value::Vector(vec![Series { labels: m, points: vec![None, Some(1.0)] }]));
        let err = join(steps, vec![p1, p3], 1).unwrap_err();
        assert_eq!(err.0, "maximum of series (1) reached for a single query");
    }

    #[test]
    fn admission_is_bounded_per_tenant_and_released_on_drop() {
        let adm = Admission::new(1);
        let a = vec!["a".to_string()];
        let slot = adm.admit(&a).unwrap();
        assert!(matches!(adm.admit(&a), Err(FrontendError::TooManyOutstanding)));
        assert!(adm.admit(&["b".to_string()]).is_ok(), "other tenants are not affected");
        drop(slot);
        assert!(adm.admit(&a).is_ok());
    }
}
