//! Checkers: pure functions from a history to the anomalies it contains.
//!
//! - **set** (Jepsen's set-full): per element, *lost* (acknowledged, or
//!   seen by any read, and absent from a final read), *unexpected* (read but never attempted, or
//!   attempted and definitely failed), *duplicated* (more than once in one
//!   read), *stale* (acknowledged before a read began, missing from it,
//!   present in the final read), *recovered* (indeterminate and present:
//!   allowed).
//! - **order**: in every read, each stream's timestamps run in the read's
//!   direction, and every element carries the timestamp and stream it was
//!   written with.
//! - **tenants**: no read of one tenant returns an element written to
//!   another.
//!
//! The history is valid iff every count but `recovered` is zero and every
//! tenant had a final read.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::history::{Direction, Element, Event, Op, OpType, NEMESIS};

/// An anomaly found, with the element or stream it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    pub kind: &'static str,
    pub detail: String,
}

/// Everything the checkers found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Analysis {
    pub valid: bool,
    /// Elements attempted, acknowledged, definitely failed, indeterminate.
    pub attempted: usize,
    pub acknowledged: usize,
    pub failed: usize,
    pub indeterminate: usize,
    /// Per anomaly kind: how many (`recovered` is not an anomaly).
    pub counts: BTreeMap<&'static str, usize>,
    /// Up to 20 examples per kind.
    pub examples: Vec<Anomaly>,
}

/// The anomaly kinds, in report order; all but `recovered` make a history invalid.
pub const KINDS: [&str; 10] = [
    "lost",
    "unexpected",
    "duplicated",
    "stale",
    "order",
    "wrong-timestamp",
    "wrong-stream",
    "tenant-leak",
    "no-final-read",
    "unsafe-rejoin",
];

impl Analysis {
    fn add(&mut self, kind: &'static str, detail: String) {
        let n = self.counts.entry(kind).or_insert(0);
        *n += 1;
        if *n <= 20 {
            self.examples.push(Anomaly { kind, detail });
        }
    }
}

/// What the history says about one element.
#[derive(Clone, Debug)]
struct Written {
    tenant: String,
    stream: String,
    ts: i64,
    outcome: Option<OpType>,
    /// When the add completed (for acknowledged ones).
    done: f64,
}

/// A completed read with its invocation time.
struct Read<'a> {
    invoked: f64,
    tenant: &'a str,
    direction: Direction,
    final_read: bool,
    streams: &'a [(String, Vec<Element>)],
}

/// Runs every checker over `events`.
pub fn check(events: &[Event]) -> Analysis {
    let mut a = Analysis::default();
    let mut written: HashMap<u64, Written> = HashMap::new();
    let mut reads: Vec<Read> = Vec::new();
    let mut invoked_at: HashMap<i64, f64> = HashMap::new();
    let mut tenants: HashSet<&str> = HashSet::new();
    for e in events {
        if e.process == NEMESIS {
            // A nemesis that saw the cluster act unsafely says so.
            if let Some(why) = e.error.as_deref().and_then(|m| m.strip_prefix(crate::cluster::UNSAFE_MARK)) {
                a.add("unsafe-rejoin", why.to_string());
            }
            continue;
        }
        match (&e.op, e.kind) {
            (_, OpType::Invoke) => {
                invoked_at.insert(e.process, e.time);
                if let Op::Add { tenant, stream, elements } = &e.op {
                    tenants.insert(tenant);
                    for el in elements {
                        written.insert(
                            el.id,
                            Written { tenant: tenant.clone(), stream: stream.clone(), ts: el.ts, outcome: None, done: f64::INFINITY },
                        );
                    }
                }
                if let Op::Read { tenant, .. } = &e.op {
                    tenants.insert(tenant);
                }
            }
            (Op::Add { elements, .. }, outcome) => {
                for el in elements {
                    if let Some(w) = written.get_mut(&el.id) {
                        w.outcome = Some(outcome);
                        w.done = e.time;
                    }
                }
            }
            (Op::Read { tenant, direction, final_read, streams }, OpType::Ok) => {
                let invoked = invoked_at.get(&e.process).copied().unwrap_or(e.time);
                reads.push(Read { invoked, tenant, direction: *direction, final_read: *final_read, streams });
            }
            _ => {}
        }
    }
    a.attempted = written.len();
    for w in written.values() {
        match w.outcome {
            Some(OpType::Ok) => a.acknowledged += 1,
            Some(OpType::Fail) => a.failed += 1,
            _ => a.indeterminate += 1,
        }
    }

    // The final state per tenant: what every one of its final reads (both
    // directions) returned.
    let mut finals: HashMap<&str, HashSet<u64>> = HashMap::new();
    for r in reads.iter().filter(|r| r.final_read) {
        let ids: HashSet<u64> = r.streams.iter().flat_map(|(_, els)| els.iter().map(|e| e.id)).collect();
        match finals.get_mut(r.tenant) {
            Some(f) => f.retain(|id| ids.contains(id)),
            None => {
                finals.insert(r.tenant, ids);
            }
        }
    }
    // Elements some read returned: present from then on, whatever their
    // push's outcome.
    let observed: HashSet<u64> = reads.iter().flat_map(|r| r.streams.iter().flat_map(|(_, els)| els.iter().map(|e| e.id))).collect();
    let mut tenants: Vec<&str> = tenants.into_iter().collect();
    tenants.sort_unstable();
    for t in &tenants {
        if !finals.contains_key(t) {
            a.add("no-final-read", format!("tenant {t}: no final read succeeded"));
        }
    }

    for r in &reads {
        let mut seen: HashSet<u64> = HashSet::new();
        for (stream, els) in r.streams {
            let mut prev: Option<i64> = None;
            for el in els {
                if !seen.insert(el.id) {
                    a.add("duplicated", format!("element {} twice in one read of tenant {}", el.id, r.tenant));
                }
                if let Some(p) = prev {
                    let out_of_order = match r.direction {
                        Direction::Forward => el.ts < p,
                        Direction::Backward => el.ts > p,
                    };
                    if out_of_order {
                        a.add("order", format!("stream {stream} of tenant {}: {} after {p} in a {:?} read", r.tenant, el.ts, r.direction));
                    }
                }
                prev = Some(el.ts);
                match written.get(&el.id) {
                    None => a.add("unexpected", format!("element {} (tenant {}) was never written", el.id, r.tenant)),
                    Some(w) if w.tenant != r.tenant => {
                        a.add("tenant-leak", format!("element {} written to tenant {} read by tenant {}", el.id, w.tenant, r.tenant))
                    }
                    Some(w) if w.outcome == Some(OpType::Fail) => {
                        a.add("unexpected", format!("element {} was read although its push failed", el.id))
                    }
                    Some(w) if w.stream != *stream => {
                        a.add("wrong-stream", format!("element {} written to {} read from {stream}", el.id, w.stream))
                    }
                    Some(w) if w.ts != el.ts => {
                        a.add("wrong-timestamp", format!("element {} written at {} read at {}", el.id, w.ts, el.ts))
                    }
                    Some(_) => {}
                }
            }
        }
        if r.final_read {
            continue;
        }
        // Stale: acknowledged before this read began, present at the end,
        // missing here.
        let Some(fin) = finals.get(r.tenant) else { continue };
        let mut stale: Vec<u64> = written
            .iter()
            .filter(|(id, w)| {
                w.tenant == r.tenant && w.outcome == Some(OpType::Ok) && w.done < r.invoked && fin.contains(id) && !seen.contains(id)
            })
            .map(|(id, _)| *id)
            .collect();
        stale.sort_unstable();
        for id in stale {
            a.add("stale", format!("element {id} acknowledged before a read at {:.3} s and missing from it", r.invoked));
        }
    }

    let mut ids: Vec<(&u64, &Written)> = written.iter().collect();
    ids.sort_unstable_by_key(|(id, _)| **id);
    let mut recovered = 0;
    for (id, w) in ids {
        let Some(fin) = finals.get(w.tenant.as_str()) else { continue };
        let acked = w.outcome == Some(OpType::Ok);
        if (acked || observed.contains(id)) && !fin.contains(id) {
            let how = if acked { format!("acknowledged at {:.3} s", w.done) } else { "returned by a read".to_string() };
            a.add("lost", format!("element {id} (tenant {}, stream {}) {how}, missing from a final read", w.tenant, w.stream));
        } else if !acked && w.outcome != Some(OpType::Fail) && fin.contains(id) {
            recovered += 1;
        }
    }
    a.counts.insert("recovered", recovered);
    for k in KINDS {
        a.counts.entry(k).or_insert(0);
    }
    a.valid = KINDS.iter().all(|k| a.counts.get(k).copied().unwrap_or(0) == 0);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds histories by hand.
    struct H {
        events: Vec<Event>,
        t: f64,
    }

    fn el(id: u64, ts: i64) -> Element {
        Element { id, ts }
    }

    impl H {
        fn new() -> Self {
            Self { events: Vec::new(), t: 0.0 }
        }

        fn push(&mut self, process: i64, kind: OpType, op: Op) {
            self.t += 1.0;
            self.events.push(Event { time: self.t, process, kind, op, error: None });
        }

        fn add(&mut self, p: i64, tenant: &str, stream: &str, els: &[Element], outcome: OpType) -> &mut Self {
            let op = Op::Add { tenant: tenant.into(), stream: stream.into(), elements: els.to_vec() };
            self.push(p, OpType::Invoke, op.clone());
            self.push(p, outcome, op);
            self
        }

        fn read(&mut self, p: i64, tenant: &str, dir: Direction, fin: bool, streams: &[(&str, &[Element])]) -> &mut Self {
            let mk = |streams: Vec<(String, Vec<Element>)>| Op::Read {
                tenant: tenant.into(),
                direction: dir,
                final_read: fin,
                streams,
            };
            self.push(p, OpType::Invoke, mk(Vec::new()));
            self.push(p, OpType::Ok, mk(streams.iter().map(|(s, e)| (s.to_string(), e.to_vec())).collect()));
            self
        }

        fn check(&self) -> Analysis {
            check(&self.events)
        }
    }

    fn count(a: &Analysis, k: &str) -> usize {
        a.counts.get(k).copied().unwrap_or(0)
    }

    #[test]
    fn a_clean_history_is_valid() {
        let a = H::new()
            .add(0, "t", "s0", &[el(1, 10), el(2, 11)], OpType::Ok)
            .add(1, "t", "s1", &[el(3, 10)], OpType::Info)
            .read(2, "t", Direction::Forward, true, &[("s0", &[el(1, 10), el(2, 11)]), ("s1", &[el(3, 10)])])
            .read(2, "t", Direction::Backward, true, &[("s0", &[el(2, 11), el(1, 10)]), ("s1", &[el(3, 10)])])
            .check();
        assert!(a.valid, "{a:#?}");
        assert_eq!((a.attempted, a.acknowledged, a.indeterminate), (3, 2, 1));
        assert_eq!(count(&a, "recovered"), 1);
    }

    #[test]
    fn an_acknowledged_element_missing_at_the_end_is_lost() {
        let a = H::new()
            .add(0, "t", "s0", &[el(1, 10), el(2, 11)], OpType::Ok)
            .read(2, "t", Direction::Forward, true, &[("s0", &[el(1, 10)])])
            .check();
        assert!(!a.valid);
        assert_eq!(count(&a, "lost"), 1);
        assert!(a.examples[0].detail.contains("element 2"));
    }

    #[test]
    fn an_element_once_read_and_then_gone_is_lost_even_if_indeterminate() {
        let a = H::new()
            .add(0, "t", "s0", &[el(1, 10)], OpType::Info)
            .read(2, "t", Direction::Forward, false, &[("s0", &[el(1, 10)])])
            .read(2, "t", Direction::Forward, true, &[])
            .check();
        assert_eq!(count(&a, "lost"), 1, "{a:#?}");
    }

    #[test]
    fn every_final_read_must_hold_every_acknowledged_element() {
        let a = H::new()
            .add(0, "t", "s0", &[el(1, 10), el(2, 11)], OpType::Ok)
            .read(2, "t", Direction::Forward, true, &[("s0", &[el(1, 10), el(2, 11)])])
            .read(2, "t", Direction::Backward, true, &[("s0", &[el(2, 11)])])
            .check();
        assert_eq!(count(&a, "lost"), 1, "{a:#?}");
    }

    #[test]
    fn indeterminate_or_failed_elements_may_be_missing() {
        let a = H::new()
            .add(0, "t", "s0", &[el(1, 10)], OpType::Info)
            .add(0, "t", "s0", &[el(2, 11)], OpType::Fail)
            .read(2, "t", Direction::Forward, true, &[])
            .check();
        assert!(a.valid, "{a:#?}");
    }

    #[test]
    fn elements_never_written_or_failed_are_unexpected() {
        let a = H::new()
            .add(0, "t", "s0", &[el(2, 11)], OpType::Fail)
            .read(2, "t", Direction::Forward, true, &[("s0", &[el(2, 11), el(9, 12)])])
            .check();
        assert_eq!(count(&a, "unexpected"), 2);
        assert!(!a.valid);
    }

    #[test]
    fn a_wiped_node_that_ran_makes_the_history_invalid() {
        let r = crate::history::Recorder::default();
        let e = crate::cluster::ClusterError::Unsafe("node 2 rejoined under its old id with an empty data directory".into());
        r.record(NEMESIS, OpType::Info, Op::Nemesis { fault: "wipe".into(), targets: vec![], start: true }, Some(e.to_string()));
        let a = check(&r.events());
        assert_eq!(a.counts.get("unsafe-rejoin"), Some(&1));
        assert!(KINDS.contains(&"unsafe-rejoin"), "it makes a history invalid");
        let skipped = crate::cluster::ClusterError::Skipped("a run wipes at most one disk".into());
        let r = crate::history::Recorder::default();
        r.record(NEMESIS, OpType::Info, Op::Nemesis { fault: "wipe".into(), targets: vec![], start: true }, Some(skipped.to_string()));
        assert_eq!(check(&r.events()).counts.get("unsafe-rejoin"), Some(&0));
    }

    #[test]
    fn an_element_twice_in_one_read_is_duplicated() {
        let a = H::new()
            .add(0, "t", "s0", &[el(1, 10)], OpType::Ok)
            .read(2, "t", Direction::Forward, true, &[("s0", &[el(1, 10), el(1, 10)])])
            .check();
        assert_eq!(count(&a, "duplicated"), 1);
        assert!(!a.valid);
    }

    #[test]
    fn a_read_missing_an_element_acknowledged_before_it_began_is_stale() {
        let a = H::new()
            .add(0, "t", "s0", &[el(1, 10)], OpType::Ok)
            .read(2, "t", Direction::Forward, false, &[])
            .read(2, "t", Direction::Forward, true, &[("s0", &[el(1, 10)])])
            .check();
        assert_eq!(count(&a, "stale"), 1);
        assert!(!a.valid);
        // Concurrent with the read (acknowledged after it began): allowed.
        let mut h = H::new();
        let add = Op::Add { tenant: "t".into(), stream: "s0".into(), elements: vec![el(1, 10)] };
        h.push(0, OpType::Invoke, add.clone());
        h.read(2, "t", Direction::Forward, false, &[]);
        h.push(0, OpType::Ok, add);
        h.read(2, "t", Direction::Forward, true, &[("s0", &[el(1, 10)])]);
        assert!(h.check().valid, "{:#?}", h.check());
    }

    #[test]
    fn timestamps_against_the_direction_are_an_order_anomaly() {
        let a = H::new()
            .add(0, "t", "s0", &[el(1, 10), el(2, 11)], OpType::Ok)
            .read(2, "t", Direction::Forward, true, &[("s0", &[el(2, 11), el(1, 10)])])
            .read(2, "t", Direction::Backward, true, &[("s0", &[el(1, 10), el(2, 11)])])
            .check();
        assert_eq!(count(&a, "order"), 2);
    }

    #[test]
    fn a_changed_timestamp_or_stream_is_reported() {
        let a = H::new()
            .add(0, "t", "s0", &[el(1, 10), el(2, 11)], OpType::Ok)
            .read(2, "t", Direction::Forward, true, &[("s0", &[el(1, 10), el(2, 12)])])
            .check();
        assert_eq!(count(&a, "wrong-timestamp"), 1);
        let b = H::new()
            .add(0, "t", "s0", &[el(1, 10)], OpType::Ok)
            .read(2, "t", Direction::Forward, true, &[("s1", &[el(1, 10)])])
            .check();
        assert_eq!(count(&b, "wrong-stream"), 1);
    }

    #[test]
    fn an_element_of_another_tenant_is_a_leak() {
        let a = H::new()
            .add(0, "a", "s0", &[el(1, 10)], OpType::Ok)
            .add(1, "b", "s0", &[el(2, 10)], OpType::Ok)
            .read(2, "a", Direction::Forward, true, &[("s0", &[el(1, 10), el(2, 10)])])
            .read(2, "b", Direction::Forward, true, &[("s0", &[el(2, 10)])])
            .check();
        assert_eq!(count(&a, "tenant-leak"), 1);
        assert!(!a.valid);
    }

    #[test]
    fn a_tenant_without_a_final_read_is_invalid() {
        let a = H::new().add(0, "t", "s0", &[el(1, 10)], OpType::Ok).check();
        assert_eq!(count(&a, "no-final-read"), 1);
        assert!(!a.valid);
    }
}
