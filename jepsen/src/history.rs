//! The history of a test: every operation's invocation and completion, as
//! Jepsen records it, plus the nemesis's faults. Written as `history.jsonl`
//! (one operation per line) and read back by the checkers.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// The process number of the nemesis in the history.
pub const NEMESIS: i64 = -1;

/// What happened to an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// Started.
    Invoke,
    /// Completed, and took effect.
    Ok,
    /// Completed, and certainly took no effect.
    Fail,
    /// Unknown: may or may not have taken effect (a timeout, a 5xx).
    Info,
}

/// One element written by an add: a uniquely numbered line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Element {
    pub id: u64,
    pub ts: i64,
}

/// What an operation did or saw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Op {
    /// A push of `elements` to one stream of one tenant.
    Add { tenant: String, stream: String, elements: Vec<Element> },
    /// A read of every stream of a tenant: per stream, the elements in the
    /// order returned (empty on invocation).
    Read { tenant: String, direction: Direction, final_read: bool, streams: Vec<(String, Vec<Element>)> },
    /// A fault starts (`start`) or is healed (`stop`).
    Nemesis { fault: String, targets: Vec<u64>, start: bool },
}

/// Direction of a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Forward,
    Backward,
}

/// One line of the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the test began.
    pub time: f64,
    pub process: i64,
    #[serde(rename = "type")]
    pub kind: OpType,
    #[serde(flatten)]
    pub op: Op,
    /// Why an operation failed or is indeterminate.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// A history being recorded by many threads.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self { start: Instant::now(), events: Arc::default() }
    }

    /// Seconds since the recorder started.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub fn record(&self, process: i64, kind: OpType, op: Op, error: Option<String>) {
        let e = Event { time: self.now(), process, kind, op, error };
        self.events.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    }

    /// Everything recorded so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Writes `events` as JSON lines.
pub fn write_jsonl(path: &Path, events: &[Event]) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for e in events {
        serde_json::to_writer(&mut w, e)?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

/// Reads a history written by [`write_jsonl`].
pub fn read_jsonl(path: &Path) -> std::io::Result<Vec<Event>> {
    let r = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut out = Vec::new();
    for (n, line) in r.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let e = serde_json::from_str(&line)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("line {}: {e}", n + 1)))?;
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_survives_the_round_trip_through_jsonl() {
        let r = Recorder::new();
        let add = Op::Add { tenant: "a".into(), stream: "s1".into(), elements: vec![Element { id: 7, ts: 100 }] };
        r.record(3, OpType::Invoke, add.clone(), None);
        r.record(3, OpType::Info, add, Some("timeout".into()));
        r.record(NEMESIS, OpType::Info, Op::Nemesis { fault: "kill".into(), targets: vec![2], start: true }, None);
        let dir = std::env::temp_dir().join(format!("jepsen-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        write_jsonl(&path, &r.events()).unwrap();
        assert_eq!(read_jsonl(&path).unwrap(), r.events());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
