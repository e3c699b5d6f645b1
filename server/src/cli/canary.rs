//! `balsa canary`, like Loki's loki-canary: writes timestamped lines at a
//! steady rate through the push API, reads them back through a live tail,
//! and counts what an operator alerts on — entries lost, duplicated, out of
//! order or late — with Prometheus metrics (loki-canary's names) and the
//! write→read latency.
//!
//! An entry counts once the push that carried it was acknowledged: a
//! refused push is retried with the next one and counted in
//! `loki_canary_write_errors_total`, never as lost. An acknowledged entry
//! the tail has not shown within `--wait` is looked up with `query_range`:
//! found, it is late (`loki_canary_websocket_missing_entries_total`); not
//! found, it is lost (`loki_canary_missing_entries_total`). With
//! `--duration` the canary stops writing after that long, settles every
//! outstanding entry, reads the whole run back with `query_range`, prints a
//! JSON summary and exits 1 if anything acknowledged is missing or stored
//! twice.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use parking_lot::Mutex;
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, Registry, TextEncoder};
use serde_json::{json, Value};

use super::{http_err, request, CliError, Server};
use balsa_logql::time::now_ns;

#[derive(Debug, Args)]
pub struct CanaryArgs {
    #[command(flatten)]
    pub server: Server,
    /// Labels of the canary's stream.
    #[arg(long, default_value = r#"{name="balsa-canary", stream="stdout"}"#)]
    pub labels: String,
    /// Time between entries.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Bytes of each line (its timestamp, then padding).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// How long an entry may take to show in the tail before it is looked
    /// up with a query.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Where to serve `/metrics`.
    #[arg(long = "metrics-addr", default_value = "127.0.0.1:3500")]
    pub metrics_addr: SocketAddr,
    /// Stop writing after this long, check the whole run and exit (1 if an
    /// acknowledged entry is missing or stored twice). 0: run until killed.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
}

/// What became of an acknowledged entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Acknowledged, not yet seen.
    Pending,
    Seen,
    /// Not in the tail within `wait`, but stored.
    Late,
    /// In neither the tail nor a query.
    Lost,
}

struct Metrics {
    registry: Registry,
    entries: IntCounter,
    write_errors: IntCounter,
    missing: IntCounter,
    late: IntCounter,
    duplicates: IntCounter,
    out_of_order: IntCounter,
    unexpected: IntCounter,
    latency: Histogram,
}

impl Metrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let latency = Histogram::with_opts(
            HistogramOpts::new("loki_canary_response_latency_seconds", "Time from writing an entry to reading it in the tail.")
                .buckets(prometheus::exponential_buckets(0.005, 2.0, 14)?),
        )?;
        registry.register(Box::new(latency.clone()))?;
        Ok(Self {
            entries: counter("loki_canary_entries_total", "Entries written and acknowledged.")?,
            write_errors: counter("loki_canary_write_errors_total", "Pushes refused or failed (their entries are retried).")?,
            missing: counter("loki_canary_missing_entries_total", "Acknowledged entries found neither in the tail nor by a query: lost.")?,
            late: counter(
                "loki_canary_websocket_missing_entries_total",
                "Entries not in the tail within --wait but found by a query: late.",
            )?,
            duplicates: counter("loki_canary_duplicate_entries_total", "Entries the tail showed more than once.")?,
            out_of_order: counter("loki_canary_out_of_order_entries_total", "Entries the tail showed before an older one.")?,
            unexpected: counter("loki_canary_unexpected_entries_total", "Lines of the canary's stream it did not write in this run.")?,
            latency,
            registry,
        })
    }

    fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

struct Shared {
    args: CanaryArgs,
    /// Acknowledged entries by timestamp: their fate and when acknowledged.
    sent: Mutex<BTreeMap<i64, (Fate, Instant)>>,
    /// The newest timestamp the tail has shown.
    last_seen: Mutex<i64>,
    metrics: Metrics,
    stop: AtomicBool,
    start_ns: i64,
}

/// Runs the canary until killed, or for `--duration` and then checks.
pub fn run(args: CanaryArgs) -> Result<(), CliError> {
    let arg = |what: &'static str, problem: String| CliError::Arg { what, problem };
    let labels = balsa_logql::labels::LabelSet::parse(&args.labels).map_err(|e| arg("--labels", e.to_string()))?;
    if labels.is_empty() {
        return Err(arg("--labels", "at least one label is needed".into()));
    }
    if args.interval.is_zero() {
        return Err(arg("--interval", "must be above 0".into()));
    }
    let metrics = Metrics::new().map_err(|e| arg("metrics", e.to_string()))?;
    let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).try_init();
    let shared = Arc::new(Shared {
        args,
        sent: Mutex::new(BTreeMap::new()),
        last_seen: Mutex::new(0),
        metrics,
        stop: AtomicBool::new(false),
        start_ns: now_ns(),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| arg("runtime", e.to_string()))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(shared.args.metrics_addr))
        .map_err(|e| arg("--metrics-addr", format!("cannot listen on {}: {e}", shared.args.metrics_addr)))?;
    let serving = listener.local_addr().map_or_else(|_| shared.args.metrics_addr.to_string(), |a| a.to_string());
    let for_metrics = shared.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let s = for_metrics.clone();
            async move { s.metrics.render() }
        }),
    );
    let server = std::thread::spawn(move || {
        runtime.block_on(async move {
            let _ = axum::serve(listener, app).await;
        })
    });
    drop(server); // Serves until the process exits.
    eprintln!("canary: writing {labels} every {:?}; metrics on http://{serving}/metrics", shared.args.interval);

    let labels_json = labels.to_json();
    let tail = {
        let s = shared.clone();
        std::thread::spawn(move || read_tail(&s))
    };
    let checker = {
        let s = shared.clone();
        std::thread::spawn(move || check_overdue(&s))
    };
    write(&shared, &labels_json);
    if shared.args.duration.is_zero() {
        // `write` only returns once told to stop, which nothing does.
        return Ok(());
    }
    // Let every acknowledged entry settle: seen, late or lost.
    let settle = Instant::now() + shared.args.wait + Duration::from_secs(30);
    while Instant::now() < settle && shared.sent.lock().values().any(|(f, _)| *f == Fate::Pending) {
        std::thread::sleep(Duration::from_millis(100));
    }
    shared.stop.store(true, Ordering::Relaxed);
    let _ = checker.join();
    drop(tail); // Blocked on the socket; ends with the process.
    let summary = final_check(&shared)?;
    println!("{summary}");
    if summary["lost"].as_u64() != Some(0) || summary["stored_twice"].as_u64() != Some(0) {
        return Err(CliError::Check(format!("canary: acknowledged entries were lost or stored twice: {summary}")));
    }
    Ok(())
}

/// Refused entries kept for the next push, at most.
const MAX_UNACKED: usize = 1000;

/// Writes one entry every interval; a failed push is retried with the next.
fn write(s: &Shared, labels: &Value) {
    let started = Instant::now();
    let mut unacked: Vec<i64> = Vec::new();
    let mut last = 0i64;
    let mut next = Instant::now();
    loop {
        if !s.args.duration.is_zero() && started.elapsed() >= s.args.duration {
            // One last try for what was refused.
            if !unacked.is_empty() && push(s, labels, &unacked).is_ok() {
                acknowledge(s, &unacked);
            }
            return;
        }
        let ts = now_ns().max(last + 1);
        last = ts;
        unacked.push(ts);
        // A server down for long: retry a bounded tail of what it refused
        // (never acknowledged, so never a loss).
        if unacked.len() > MAX_UNACKED {
            unacked.drain(..unacked.len() - MAX_UNACKED);
        }
        match push(s, labels, &unacked) {
            Ok(()) => {
                acknowledge(s, &unacked);
                unacked.clear();
            }
            Err(e) => {
                s.metrics.write_errors.inc();
                tracing::warn!(error = %e, waiting = unacked.len(), "canary push failed; retrying with the next");
            }
        }
        next += s.args.interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

fn line(ts: i64, size: usize) -> String {
    let mut l = ts.to_string();
    l.push(' ');
    while l.len() < size {
        l.push('p');
    }
    l
}

fn push(s: &Shared, labels: &Value, ts: &[i64]) -> Result<(), CliError> {
    let values: Vec<Value> = ts.iter().map(|t| json!([t.to_string(), line(*t, s.args.size)])).collect();
    let body = json!({"streams": [{"stream": labels, "values": values}]});
    request(&s.args.server, "POST", "/loki/api/v1/push")
        .timeout(Duration::from_secs(10))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .map(|_| ())
        .map_err(|e| http_err(&s.args.server, e))
}

fn acknowledge(s: &Shared, ts: &[i64]) {
    let now = Instant::now();
    let mut sent = s.sent.lock();
    for t in ts {
        sent.entry(*t).or_insert((Fate::Pending, now));
    }
    s.metrics.entries.inc_by(ts.len() as u64);
}

/// The timestamp a canary line starts with.
fn line_ts(line: &str) -> Option<i64> {
    line.split(' ').next()?.parse().ok()
}

/// Follows the stream with a WebSocket tail, reconnecting from the newest
/// entry seen; entries a reconnection skips are caught by the look-ups.
fn read_tail(s: &Shared) {
    let base = s.args.server.addr.trim_end_matches('/').replacen("http", "ws", 1);
    let query: String = form_urlencoded::byte_serialize(s.args.labels.as_bytes()).collect();
    while !s.stop.load(Ordering::Relaxed) {
        let from = (*s.last_seen.lock() + 1).max(s.start_ns);
        let url = format!("{base}/loki/api/v1/tail?query={query}&start={from}&limit=5000");
        let mut ws = match connect(s, &url) {
            Ok(ws) => ws,
            Err(e) => {
                tracing::warn!(error = %e, "canary tail: cannot connect; retrying");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        loop {
            match ws.read() {
                Ok(tungstenite::Message::Text(t)) => observe(s, t.as_str()),
                Ok(tungstenite::Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
            if s.stop.load(Ordering::Relaxed) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// Why the tail's websocket could not be opened.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error(transparent)]
    WebSocket(#[from] tungstenite::Error),
    #[error("{0} is not a valid header value")]
    Header(&'static str),
}

fn connect(s: &Shared, url: &str) -> Result<Socket, ConnectError> {
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(url)?;
    if let Some(org) = &s.args.server.org_id {
        req.headers_mut().insert("X-Scope-OrgID", org.parse().map_err(|_| ConnectError::Header("--org-id"))?);
    }
    if let Some(token) = &s.args.server.bearer_token {
        req.headers_mut().insert("Authorization", format!("Bearer {token}").parse().map_err(|_| ConnectError::Header("--bearer-token"))?);
    }
    Ok(tungstenite::connect(req).map(|(ws, _)| ws)?)
}

/// Accounts for one tail message.
fn observe(s: &Shared, text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else { return };
    let now = now_ns();
    for stream in v["streams"].as_array().into_iter().flatten() {
        for e in stream["values"].as_array().into_iter().flatten() {
            let Some(ts) = e[1].as_str().and_then(line_ts) else {
                s.metrics.unexpected.inc();
                continue;
            };
            let mut last = s.last_seen.lock();
            if ts < *last {
                s.metrics.out_of_order.inc();
            }
            *last = (*last).max(ts);
            drop(last);
            let mut sent = s.sent.lock();
            match sent.get_mut(&ts) {
                Some((fate @ Fate::Pending, _)) => {
                    *fate = Fate::Seen;
                    s.metrics.latency.observe((now - ts).max(0) as f64 / 1e9);
                }
                Some((Fate::Seen, _)) => s.metrics.duplicates.inc(),
                // Already settled by a look-up; the tail was just slow.
                Some((Fate::Late | Fate::Lost, _)) => {}
                // Pushed but not yet acknowledged, or not ours.
                None if ts >= s.start_ns => {}
                None => s.metrics.unexpected.inc(),
            }
        }
    }
}

/// Looks up, once a second, the entries the tail has not shown in `wait`.
fn check_overdue(s: &Shared) {
    while !s.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
        let overdue: Vec<i64> = s
            .sent
            .lock()
            .iter()
            .filter(|(_, (f, at))| *f == Fate::Pending && at.elapsed() >= s.args.wait)
            .map(|(t, _)| *t)
            .collect();
        if s.args.duration.is_zero() {
            // Running for good: forget settled entries once the tail can no
            // longer show them (the final check of --duration needs them all).
            let horizon = s.args.wait * 2;
            s.sent.lock().retain(|_, (f, at)| *f == Fate::Pending || at.elapsed() < horizon);
        }
        let (Some(&first), Some(&last)) = (overdue.first(), overdue.last()) else { continue };
        let stored = match stored(s, first, last + 1) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "canary look-up failed; retrying");
                continue;
            }
        };
        let mut sent = s.sent.lock();
        for t in overdue {
            if let Some((fate @ Fate::Pending, _)) = sent.get_mut(&t) {
                if stored.contains_key(&t) {
                    *fate = Fate::Late;
                    s.metrics.late.inc();
                } else {
                    *fate = Fate::Lost;
                    s.metrics.missing.inc();
                    tracing::error!(ts = t, "canary entry lost: acknowledged, and found neither in the tail nor by a query");
                }
            }
        }
    }
}

/// How many times each canary timestamp in `[from, to)` is stored, read
/// with `query_range` page by page.
fn stored(s: &Shared, from: i64, to: i64) -> Result<BTreeMap<i64, u32>, CliError> {
    const PAGE: usize = 1000;
    let mut counts = BTreeMap::new();
    let mut start = from;
    loop {
        let resp = request(&s.args.server, "GET", "/loki/api/v1/query_range")
            .query("query", &s.args.labels)
            .query("start", &start.to_string())
            .query("end", &to.to_string())
            .query("limit", &PAGE.to_string())
            .query("direction", "forward")
            .call()
            .map_err(|e| http_err(&s.args.server, e))?;
        let v: Value = resp.into_json().map_err(|e| CliError::Arg { what: "query_range", problem: e.to_string() })?;
        let mut page: Vec<i64> = Vec::new();
        for stream in v["data"]["result"].as_array().into_iter().flatten() {
            for e in stream["values"].as_array().into_iter().flatten() {
                if let Some(ts) = e[1].as_str().and_then(line_ts) {
                    page.push(ts);
                }
            }
        }
        page.sort_unstable();
        let (full, newest) = (page.len() >= PAGE, page.last().copied());
        // A full page may cut the newest timestamp's entries in two: they
        // are counted with the next page, which starts at it — unless the
        // page holds nothing else, then the next starts after it.
        let stalled = newest == Some(start);
        for ts in page {
            if !full || stalled || Some(ts) != newest {
                *counts.entry(ts).or_insert(0) += 1;
            }
        }
        match newest {
            Some(n) if full && stalled => start = n + 1,
            Some(n) if full => start = n,
            _ => return Ok(counts),
        }
    }
}

/// Reads the whole run back: every acknowledged entry stored exactly once.
fn final_check(s: &Shared) -> Result<Value, CliError> {
    let sent = s.sent.lock().clone();
    let count = |f: Fate| sent.values().filter(|(x, _)| *x == f).count();
    let (Some(&first), Some(&last)) = (sent.keys().next(), sent.keys().last()) else {
        return Ok(json!({"acknowledged": 0, "write_errors": s.metrics.write_errors.get(), "lost": 0, "stored_twice": 0}));
    };
    let stored = stored(s, first, last + 1)?;
    let missing = sent.keys().filter(|t| !stored.contains_key(t)).count();
    let twice = stored.values().filter(|n| **n > 1).count();
    // The least bucket bound covering the quantile `q` of the latencies.
    let quantile = |q: f64| -> Option<f64> {
        let families = s.metrics.registry.gather();
        let h = families
            .iter()
            .find(|f| f.name() == "loki_canary_response_latency_seconds")?
            .get_metric()
            .first()?
            .get_histogram();
        let want = (h.get_sample_count() as f64 * q).ceil() as u64;
        if want == 0 {
            return None;
        }
        h.get_bucket().iter().find(|b| b.cumulative_count() >= want).map(|b| b.upper_bound())
    };
    Ok(json!({
        "acknowledged": sent.len(),
        "write_errors": s.metrics.write_errors.get(),
        "seen_in_tail": count(Fate::Seen),
        "late": count(Fate::Late),
        "lost": missing,
        "lookups_that_missed": count(Fate::Lost),
        "stored_twice": twice,
        "duplicates_in_tail": s.metrics.duplicates.get(),
        "out_of_order": s.metrics.out_of_order.get(),
        "latency_p50_le_seconds": quantile(0.5),
        "latency_p99_le_seconds": quantile(0.99),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_their_timestamp_and_size() {
        let l = line(1_700_000_000_123_456_789, 40);
        assert_eq!(l.len(), 40);
        assert_eq!(line_ts(&l), Some(1_700_000_000_123_456_789));
        assert_eq!(line_ts("not a canary line"), None);
        assert_eq!(line(5, 0), "5 ", "a short size still carries the timestamp");
    }
}
