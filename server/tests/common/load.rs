//! Concurrent writers of uniquely identified lines, and the exactly-once
//! check of what a server returns afterwards.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::{now_ns, Balsa};

pub const WRITERS: usize = 8;
pub const LINES_PER_PUSH: usize = 50;

/// What the writers saw: lines acknowledged (204) and lines whose push had
/// no answer (the process died): those may or may not be stored.
#[derive(Default)]
pub struct History {
    pub acked: Vec<String>,
    pub indeterminate: Vec<String>,
    /// Pushes answered with an error status: (status, body).
    pub failures: Vec<(u16, String)>,
}

/// Runs WRITERS threads pushing unique lines (stream `{writer="wN"}`) until
/// `stop`; each stops at its first transport error (the process was killed).
/// A push answered with an error leaves its lines indeterminate (some of its
/// partitions may have committed) and is recorded as a failure.
pub fn load(
    b: &Balsa,
    round: usize,
    stop: Arc<AtomicBool>,
    pushes: Arc<AtomicUsize>,
    hist: Arc<Mutex<History>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..WRITERS)
        .map(|w| {
            let url = b.url("/loki/api/v1/push");
            let (stop, pushes, hist) = (stop.clone(), pushes.clone(), hist.clone());
            std::thread::spawn(move || {
                let base = now_ns() - 60_000_000_000;
                for seq in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let lines: Vec<String> = (0..LINES_PER_PUSH).map(|i| format!("r{round}-w{w}-s{seq}-i{i}")).collect();
                    let values: Vec<_> = lines
                        .iter()
                        .enumerate()
                        .map(|(i, l)| json!([(base + (seq * LINES_PER_PUSH + i) as i64).to_string(), l]))
                        .collect();
                    let body = json!({"streams": [{"stream": {"writer": format!("w{w}"), "round": round.to_string()}, "values": values}]});
                    let r = ureq::post(&url)
                        .timeout(Duration::from_secs(40))
                        .set("Content-Type", "application/json")
                        .send_string(&body.to_string());
                    let mut h = hist.lock().unwrap();
                    match r {
                        Ok(resp) if resp.status() == 204 => {
                            h.acked.extend(lines);
                            pushes.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(resp) => {
                            h.failures.push((resp.status(), String::new()));
                            h.indeterminate.extend(lines);
                        }
                        Err(ureq::Error::Status(code, resp)) => {
                            h.failures.push((code, resp.into_string().unwrap_or_default()));
                            h.indeterminate.extend(lines);
                        }
                        Err(_) => {
                            h.indeterminate.extend(lines);
                            return;
                        }
                    }
                }
            })
        })
        .collect()
}

/// Every stored line of the writers' streams with its count.
pub fn stored(b: &Balsa) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for w in 0..WRITERS {
        for (_, line) in b.query_lines(None, &format!("{{writer=\"w{w}\"}}"), 1, 1_000_000) {
            *counts.entry(line).or_insert(0) += 1;
        }
    }
    counts
}

/// No push refused, no acknowledged line lost, none twice, none that was
/// never written.
pub fn check_exactly_once(counts: &HashMap<String, usize>, h: &History, what: &str) {
    assert!(h.failures.is_empty(), "{what}: {} pushes failed, e.g. {:?}", h.failures.len(), &h.failures[..h.failures.len().min(3)]);
    let acked: HashSet<&String> = h.acked.iter().collect();
    let indeterminate: HashSet<&String> = h.indeterminate.iter().collect();
    let lost: Vec<&&String> = acked.iter().filter(|l| !counts.contains_key(**l)).collect();
    let dups: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let unexpected: Vec<&String> = counts.keys().filter(|l| !acked.contains(l) && !indeterminate.contains(l)).collect();
    assert!(lost.is_empty(), "{what}: {} acknowledged lines lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    assert!(dups.is_empty(), "{what}: duplicated lines, e.g. {:?}", &dups[..dups.len().min(5)]);
    assert!(unexpected.is_empty(), "{what}: lines never written: {:?}", &unexpected[..unexpected.len().min(5)]);
}
