//! The state of one partition: its streams and what a push does to them.
//! Pure and deterministic — every replica applying the same commands in the
//! same order reaches the same state (no clock, no randomness).
//!
//! PERFORMANCE-CRITICAL PATH: [`PartitionState::apply_push`] runs for every
//! accepted push, under the partition's write lock.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use balsa_storage::HeadBlock;
use serde::{Deserialize, Serialize};

use super::command::{PushBatch, PushOutcome, RequestId, StreamRejections, MAX_LISTED_REJECTIONS};
use crate::labels::LabelSet;
use crate::logql::{MatchOp, Matcher};

/// How long a request id is remembered for retries (15 minutes).
const SESSION_TTL_NS: i64 = 15 * 60 * 1_000_000_000;

/// One stream held by the partition.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stream {
    pub tenant: String,
    pub labels: LabelSet,
    pub head: HeadBlock,
}

/// Streams of one partition, indexed by tenant and label.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PartitionState {
    streams: BTreeMap<u64, Stream>,
    next_stream_id: u64,
    sessions: Sessions,
    /// (tenant, labels) → stream id; rebuilt after a snapshot is loaded.
    #[serde(skip)]
    by_key: HashMap<(String, LabelSet), u64>,
    /// Inverted index per tenant; rebuilt after a snapshot is loaded.
    #[serde(skip)]
    tenants: HashMap<String, TenantIndex>,
}

#[derive(Debug, Default)]
struct TenantIndex {
    streams: BTreeSet<u64>,
    /// label name → value → stream ids
    postings: HashMap<String, HashMap<String, BTreeSet<u64>>>,
}

/// Request ids applied recently, with what applying them answered.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Sessions {
    done: HashMap<RequestId, PushOutcome>,
    /// (applied at, id), oldest first, for expiry.
    order: VecDeque<(i64, RequestId)>,
}

impl Sessions {
    fn expire(&mut self, now: i64) {
        while let Some(&(at, id)) = self.order.front() {
            if at >= now.saturating_sub(SESSION_TTL_NS) {
                break;
            }
            self.order.pop_front();
            self.done.remove(&id);
        }
    }
}

impl PartitionState {
    /// Applies a push: the same request id twice answers the first outcome
    /// and changes nothing; entries equal to one already in their stream are
    /// dropped; entries older than the stream's newest minus the window are
    /// refused.
    pub fn apply_push(&mut self, batch: &PushBatch) -> PushOutcome {
        self.sessions.expire(batch.now);
        if let Some(done) = self.sessions.done.get(&batch.request_id) {
            return done.clone();
        }
        let mut out = PushOutcome::default();
        for sb in &batch.streams {
            let id = self.stream_id(&sb.tenant, &sb.labels);
            let Some(stream) = self.streams.get_mut(&id) else { continue };
            let mut rej = StreamRejections::default();
            for e in &sb.entries {
                if let Some(newest) = stream.head.newest_ts() {
                    let cutoff = newest.saturating_sub(batch.too_far_behind_window);
                    if e.ts < cutoff {
                        rej.ignored += 1;
                        rej.ignored_bytes += e.size() as u64;
                        if rej.listed.len() < MAX_LISTED_REJECTIONS {
                            rej.listed.push((e.ts, cutoff));
                        }
                        continue;
                    }
                }
                let size = e.size() as u64;
                if stream.head.push(e.clone()) {
                    out.accepted += 1;
                    out.accepted_bytes += size;
                } else {
                    out.duplicates += 1;
                }
            }
            if rej.ignored > 0 {
                rej.tenant = sb.tenant.clone();
                rej.labels = sb.labels.to_string();
                rej.total = sb.entries.len();
                out.rejected.push(rej);
            }
        }
        self.sessions.done.insert(batch.request_id, out.clone());
        self.sessions.order.push_back((batch.now, batch.request_id));
        out
    }

    /// Id of the stream, created (and indexed) if new.
    fn stream_id(&mut self, tenant: &str, labels: &LabelSet) -> u64 {
        if let Some(&id) = self.by_key.get(&(tenant.to_string(), labels.clone())) {
            return id;
        }
        let id = self.next_stream_id;
        self.next_stream_id += 1;
        self.streams.insert(id, Stream { tenant: tenant.to_string(), labels: labels.clone(), head: HeadBlock::default() });
        self.index(id);
        id
    }

    fn index(&mut self, id: u64) {
        let Some(s) = self.streams.get(&id) else { return };
        self.by_key.insert((s.tenant.clone(), s.labels.clone()), id);
        let t = self.tenants.entry(s.tenant.clone()).or_default();
        t.streams.insert(id);
        for (n, v) in s.labels.iter() {
            t.postings.entry(n.clone()).or_default().entry(v.clone()).or_default().insert(id);
        }
    }

    /// Rebuilds the indexes, which snapshots do not carry.
    pub fn rebuild_indexes(&mut self) {
        self.by_key.clear();
        self.tenants.clear();
        let ids: Vec<u64> = self.streams.keys().copied().collect();
        for id in ids {
            self.index(id);
        }
    }

    /// Streams of `tenant` matching every matcher. Equality matchers narrow
    /// the candidates through the inverted index first.
    pub fn select<'a>(&'a self, tenant: &str, matchers: &'a [Matcher]) -> impl Iterator<Item = &'a Stream> + 'a {
        let t = self.tenants.get(tenant);
        let mut candidates: Option<BTreeSet<u64>> = None;
        if let Some(t) = t {
            for m in matchers.iter().filter(|m| m.op == MatchOp::Eq && !m.value.is_empty()) {
                let ids = t.postings.get(&m.name).and_then(|vals| vals.get(&m.value)).cloned().unwrap_or_default();
                candidates = Some(match candidates {
                    Some(c) => c.intersection(&ids).copied().collect(),
                    None => ids,
                });
            }
        }
        let ids: Vec<u64> = match (t, candidates) {
            (None, _) => Vec::new(),
            (Some(_), Some(c)) => c.into_iter().collect(),
            (Some(t), None) => t.streams.iter().copied().collect(),
        };
        ids.into_iter()
            .filter_map(|id| self.streams.get(&id))
            .filter(move |s| matchers.iter().all(|m| m.matches(s.labels.get(&m.name))))
    }

    /// Number of streams and entries held, for metrics.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let entries = self.streams.values().map(|s| s.head.len()).sum();
        let bytes = self.streams.values().map(|s| s.head.bytes()).sum();
        (self.streams.len(), entries, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingester::command::StreamBatch;
    use crate::logql::parse_selector;
    use balsa_storage::{Direction, Entry};

    const H: i64 = 3600 * 1_000_000_000;

    fn batch(seq: u64, now: i64, streams: Vec<(&str, &str, Vec<i64>)>) -> PushBatch {
        PushBatch {
            request_id: RequestId { client: 1, seq },
            now,
            too_far_behind_window: H,
            streams: streams
                .into_iter()
                .map(|(t, l, ts)| StreamBatch {
                    tenant: t.into(),
                    labels: LabelSet::parse(l).unwrap(),
                    entries: ts.into_iter().map(|ts| Entry::new(ts, format!("line {ts}"))).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_retried_request_is_applied_once() {
        let mut p = PartitionState::default();
        let b = batch(1, 10 * H, vec![("t", r#"{a="1"}"#, vec![10 * H])]);
        let first = p.apply_push(&b);
        assert_eq!(first.accepted, 1);
        // Same id again, even with different content: same answer, no change.
        let again = p.apply_push(&batch(1, 10 * H, vec![("t", r#"{a="1"}"#, vec![10 * H + 1])]));
        assert_eq!(again, first);
        assert_eq!(p.sizes().1, 1);
        // A new id with an identical entry: Loki's duplicate rule drops it.
        let dup = p.apply_push(&batch(2, 10 * H, vec![("t", r#"{a="1"}"#, vec![10 * H])]));
        assert_eq!((dup.accepted, dup.duplicates), (0, 1));
    }

    #[test]
    fn sessions_expire_by_proposal_time_not_by_clock() {
        let mut p = PartitionState::default();
        p.apply_push(&batch(1, 10 * H, vec![("t", r#"{a="1"}"#, vec![10 * H])]));
        p.apply_push(&batch(2, 11 * H, vec![]));
        assert!(!p.sessions.done.contains_key(&RequestId { client: 1, seq: 1 }));
        assert!(p.sessions.done.contains_key(&RequestId { client: 1, seq: 2 }));
    }

    #[test]
    fn too_far_behind_is_relative_to_the_streams_newest_entry() {
        let mut p = PartitionState::default();
        let o = p.apply_push(&batch(1, 0, vec![("t", r#"{a="1"}"#, vec![10 * H, 9 * H, 9 * H - 1, 8 * H])]));
        assert_eq!(o.accepted, 2);
        assert_eq!(o.rejected.len(), 1);
        let r = &o.rejected[0];
        assert_eq!((r.ignored, r.total), (2, 4));
        assert!(r.message().ends_with(r#"user 't', total ignored: 2 out of 4 for stream: {a="1"}"#), "{}", r.message());
        assert!(r.message().starts_with("entry with timestamp 1970-01-01 08:59:59.999999999 +0000 UTC ignored, reason: 'entry too far behind"), "{}", r.message());
        // Another stream is not affected.
        let o = p.apply_push(&batch(2, 0, vec![("t", r#"{a="2"}"#, vec![H])]));
        assert_eq!(o.accepted, 1);
    }

    #[test]
    fn select_isolates_tenants_and_uses_all_matchers() {
        let mut p = PartitionState::default();
        p.apply_push(&batch(
            1,
            0,
            vec![
                ("a", r#"{app="x", env="prod"}"#, vec![1]),
                ("a", r#"{app="y", env="dev"}"#, vec![1]),
                ("b", r#"{app="x", env="prod"}"#, vec![1]),
            ],
        ));
        let m = parse_selector(r#"{app="x"}"#).unwrap();
        let got: Vec<_> = p.select("a", &m).map(|s| s.labels.to_string()).collect();
        assert_eq!(got, vec![r#"{app="x", env="prod"}"#]);
        let m = parse_selector(r#"{env=~"prod|dev", app!="x"}"#).unwrap();
        let got: Vec<_> = p.select("a", &m).map(|s| s.labels.to_string()).collect();
        assert_eq!(got, vec![r#"{app="y", env="dev"}"#]);
        assert_eq!(p.select("c", &m).count(), 0);
        let m = parse_selector(r#"{app="x"}"#).unwrap();
        let s = p.select("b", &m).next().unwrap();
        assert_eq!(s.head.range(0, 10, Direction::Forward).count(), 1);
    }

    #[test]
    fn indexes_survive_a_snapshot_round_trip() {
        let mut p = PartitionState::default();
        p.apply_push(&batch(1, 0, vec![("a", r#"{app="x"}"#, vec![1, 2])]));
        let bytes = bincode::serde::encode_to_vec(&p, bincode::config::standard()).unwrap();
        let (mut q, _): (PartitionState, _) = bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        q.rebuild_indexes();
        assert_eq!(q.select("a", &parse_selector(r#"{app="x"}"#).unwrap()).count(), 1);
        let o = q.apply_push(&batch(1, 0, vec![("a", r#"{app="x"}"#, vec![3])]));
        assert_eq!(o.accepted, 2, "the session table travels in snapshots");
    }
}
