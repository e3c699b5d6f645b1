//! The clients: writers that push uniquely numbered lines, readers that
//! read every stream of a tenant, and the final reads.
//!
//! Writer process `p` owns its streams (`{jepsen="set", stream="s<p/T>-<k>"}`
//! under tenant `p mod T`), so each stream's timestamps strictly increase
//! and tenants share label sets. A push answered 204 is acknowledged (`ok`);
//! a 4xx is a definite `fail`; a 5xx or no answer is indeterminate (`info`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::history::{Direction, Element, Op, OpType, Recorder};

/// What the clients do.
#[derive(Clone, Debug)]
pub struct Load {
    /// Base URL of the front (distributor + querier).
    pub url: String,
    pub tenants: Vec<String>,
    pub writers: usize,
    /// Pushes per second over all writers.
    pub rate: f64,
    /// Lines per push.
    pub batch: usize,
    pub streams_per_writer: usize,
    /// Seconds between two reads of each tenant during the test.
    pub read_every: f64,
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// Starts the writers and readers; they stop when `stop` is set.
pub fn start(load: &Load, rec: &Recorder, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    let next_id = Arc::new(AtomicU64::new(1));
    let mut threads = Vec::new();
    for p in 0..load.writers {
        let (load, rec, stop, next_id) = (load.clone(), rec.clone(), stop.clone(), next_id.clone());
        threads.push(std::thread::spawn(move || writer(p, &load, &rec, &stop, &next_id)));
    }
    for (t, tenant) in load.tenants.iter().enumerate() {
        let (load, rec, stop, tenant) = (load.clone(), rec.clone(), stop.clone(), tenant.clone());
        let process = (load.writers + t) as i64;
        threads.push(std::thread::spawn(move || {
            let every = Duration::from_secs_f64(load.read_every);
            let mut next = Instant::now() + every;
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    read(&load.url, &tenant, Direction::Forward, false, process, &rec);
                    next = Instant::now() + every;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    threads
}

fn writer(p: usize, load: &Load, rec: &Recorder, stop: &AtomicBool, next_id: &AtomicU64) {
    let tenants = load.tenants.len().max(1);
    let tenant = &load.tenants[p % tenants];
    let per_writer = (load.rate / load.writers as f64).max(0.01);
    let gap = Duration::from_secs_f64(1.0 / per_writer);
    let mut last_ts: HashMap<usize, i64> = HashMap::new();
    let mut next = Instant::now();
    let mut k = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(100)));
            continue;
        }
        next += gap;
        if next < now {
            next = now; // fell behind (a slow push): do not burst
        }
        k = (k + 1) % load.streams_per_writer.max(1);
        let stream = format!("s{}-{k}", p / tenants);
        let last = last_ts.entry(k).or_insert(0);
        let mut elements = Vec::with_capacity(load.batch);
        for _ in 0..load.batch {
            let ts = now_ns().max(*last + 1);
            *last = ts;
            elements.push(Element { id: next_id.fetch_add(1, Ordering::Relaxed), ts });
        }
        let op = Op::Add { tenant: tenant.clone(), stream: stream.clone(), elements };
        rec.record(p as i64, OpType::Invoke, op.clone(), None);
        let (kind, error) = push(&load.url, tenant, &stream, &op);
        rec.record(p as i64, kind, op, error);
    }
}

fn push(url: &str, tenant: &str, stream: &str, op: &Op) -> (OpType, Option<String>) {
    let Op::Add { elements, .. } = op else { return (OpType::Fail, Some("not an add".into())) };
    let values: Vec<Value> = elements.iter().map(|e| json!([e.ts.to_string(), format!("e{}", e.id)])).collect();
    let body = json!({"streams": [{"stream": {"jepsen": "set", "stream": stream}, "values": values}]});
    let r = ureq::post(&format!("{url}/loki/api/v1/push"))
        .timeout(Duration::from_secs(10))
        .set("Content-Type", "application/json")
        .set("X-Scope-OrgID", tenant)
        .send_string(&body.to_string());
    match r {
        Ok(resp) if resp.status() == 204 => (OpType::Ok, None),
        Ok(resp) => (OpType::Info, Some(format!("status {}", resp.status()))),
        Err(ureq::Error::Status(code, resp)) => {
            let msg = format!("{code}: {}", resp.into_string().unwrap_or_default().trim());
            // 4xx: refused before anything was written (408 is a timeout).
            let kind = if (400..500).contains(&code) && code != 408 { OpType::Fail } else { OpType::Info };
            (kind, Some(msg))
        }
        Err(e) => (OpType::Info, Some(e.to_string())),
    }
}

/// Reads every `jepsen="set"` stream of `tenant` over the last day and
/// records the read; true if it succeeded.
pub fn read(url: &str, tenant: &str, direction: Direction, final_read: bool, process: i64, rec: &Recorder) -> bool {
    let mk = |streams| Op::Read { tenant: tenant.to_string(), direction, final_read, streams };
    rec.record(process, OpType::Invoke, mk(Vec::new()), None);
    match query(url, tenant, direction) {
        Ok(streams) => {
            rec.record(process, OpType::Ok, mk(streams), None);
            true
        }
        Err(e) => {
            rec.record(process, OpType::Fail, mk(Vec::new()), Some(e));
            false
        }
    }
}

fn query(url: &str, tenant: &str, direction: Direction) -> Result<Vec<(String, Vec<Element>)>, String> {
    let now = now_ns();
    let (start, end) = ((now - 86_400_000_000_000).to_string(), (now + 60_000_000_000).to_string());
    let dir = match direction {
        Direction::Forward => "forward",
        Direction::Backward => "backward",
    };
    let resp = ureq::get(&format!("{url}/loki/api/v1/query_range"))
        .timeout(Duration::from_secs(30))
        .set("X-Scope-OrgID", tenant)
        .query("query", r#"{jepsen="set"}"#)
        .query("start", &start)
        .query("end", &end)
        .query("limit", "10000000")
        .query("direction", dir)
        .call()
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    std::io::Read::read_to_string(&mut resp.into_reader(), &mut body).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("not JSON: {e}"))?;
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().ok_or("no data.result in the answer")? {
        let name = s["stream"]["stream"].as_str().unwrap_or("?").to_string();
        let mut els = Vec::new();
        for pair in s["values"].as_array().into_iter().flatten() {
            let ts = pair[0].as_str().and_then(|t| t.parse::<i64>().ok()).ok_or("bad timestamp")?;
            let line = pair[1].as_str().unwrap_or("");
            // A line that is not ours counts as element 0: never written.
            let id = line.strip_prefix('e').and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
            els.push(Element { id, ts });
        }
        out.push((name, els));
    }
    Ok(out)
}
