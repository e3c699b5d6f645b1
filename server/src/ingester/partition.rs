//! The state of one partition: its streams and what a push does to them.
//! Pure and deterministic — every replica applying the same commands in the
//! same order reaches the same state (no clock, no randomness).
//!
//! PERFORMANCE-CRITICAL PATH: [`PartitionState::apply_push`] runs for every
//! accepted push, under the partition's write lock.
//!
//! Snapshots: streams are held behind `Arc`s and the entries of cut chunks
//! are immutable `Arc`s too, so a snapshot's [`PartitionImage`] is taken under the lock
//! by copying pointers, not lines. A stream changed while an image still
//! holds it is copied on write (its head only: [`Arc::make_mut`]). The
//! image's format on disk and on the wire is [`snapshot`]'s, versioned.

mod snapshot;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use balsa_storage::index::ChunkRef;
use balsa_storage::{Direction, Entry, HeadBlock};

use super::command::{
    self, Command, FlushedChunk, PushBatch, PushOutcome, RequestId, StreamBatch, StreamLimited, StreamRejections, Tick,
    MAX_LISTED_REJECTIONS,
};
use super::read::HeadLimit;
use balsa_logql::labels::LabelSet;
use balsa_logql::{MatchOp, Matcher};

/// Sessions newer than the newest this many are never expired, whatever
/// the clocks say: a leader whose clock runs far ahead cannot empty the
/// table at once (its first proposal would make every session look
/// old), because expiry also needs this much progress of the log.
const SESSIONS_KEPT: u64 = 50_000;

/// One stream held by the partition: its open head block and the chunks
/// cut from it that are not flushed yet.
#[derive(Clone, Debug)]
pub struct Stream {
    pub tenant: String,
    pub labels: LabelSet,
    pub head: HeadBlock,
    /// Cut chunks, oldest first; never changed once cut.
    pub closed: Vec<ClosedChunk>,
    /// Proposal time of the first entry in the current head.
    head_started_at: i64,
    /// Proposal time of the last append.
    last_append_at: i64,
    /// Newest entry time seen, kept across cuts (the out-of-order window
    /// is measured from it, as in Loki).
    newest_ts: Option<i64>,
}

/// Entries cut from a head, waiting for their flush.
#[derive(Clone, Debug)]
pub struct ClosedChunk {
    pub id: u64,
    /// Oldest first; never changed once cut.
    pub entries: Arc<Vec<Entry>>,
}

impl Stream {
    /// Unflushed entries with `from <= ts < through` whose line passes
    /// `keep`, oldest first; only the kept ones are copied. With `limit`,
    /// only its `n` newest (or oldest) and those tied with the last of them.
    pub fn entries(&self, from: i64, through: i64, keep: impl Fn(&str) -> bool, limit: Option<HeadLimit>) -> Vec<Entry> {
        let mut kept: Vec<&Entry> = self
            .closed
            .iter()
            .flat_map(|c| {
                let lo = c.entries.partition_point(|e| e.ts < from);
                let hi = c.entries.partition_point(|e| e.ts < through);
                c.entries[lo..hi.max(lo)].iter()
            })
            .chain(self.head.range(from, through, Direction::Forward))
            .filter(|e| keep(&e.line))
            .collect();
        if let Some(HeadLimit { n, newest }) = limit {
            let n = (n as usize).max(1);
            if kept.len() > n {
                // The n-th entry in the limit's direction bounds what is sent.
                let bound = if newest {
                    kept.select_nth_unstable_by(n - 1, |a, b| b.ts.cmp(&a.ts)).1.ts
                } else {
                    kept.select_nth_unstable_by_key(n - 1, |e| e.ts).1.ts
                };
                kept.retain(|e| if newest { e.ts >= bound } else { e.ts <= bound });
            }
        }
        let mut out: Vec<Entry> = kept.into_iter().cloned().collect();
        out.sort_by_key(|e| e.ts);
        out
    }

    /// Whether any unflushed entry lies in `[from, through)`.
    pub fn has_entries_in(&self, from: i64, through: i64) -> bool {
        self.head.range(from, through, Direction::Forward).next().is_some()
            || self.closed.iter().any(|c| c.entries.iter().any(|e| e.ts >= from && e.ts < through))
    }

    fn cut(&mut self, id: u64) {
        if !self.head.is_empty() {
            self.closed.push(ClosedChunk { id, entries: Arc::new(self.head.take_all()) });
        }
    }
}

/// A closed chunk as the flusher sees it.
#[derive(Clone, Debug)]
pub struct ChunkToFlush {
    pub stream: u64,
    pub chunk: u64,
    pub tenant: String,
    pub labels: LabelSet,
    /// Shared with the partition's state (taking them copies no line).
    pub entries: Arc<Vec<Entry>>,
}

/// Streams of one partition, indexed by tenant and label.
#[derive(Debug, Default)]
pub struct PartitionState {
    streams: BTreeMap<u64, Arc<Stream>>,
    next_stream_id: u64,
    next_chunk_id: u64,
    sessions: Sessions,
    /// Refs of flushed chunks not yet listed by an index segment, by
    /// sequence number.
    pending: BTreeMap<u64, ChunkRef>,
    next_ref_seq: u64,
    /// Closed chunks waiting for a flush (the flush queue's length, kept
    /// so a push can tell the flusher in O(1)); recounted after a snapshot
    /// is loaded.
    queued: usize,
    /// (tenant, labels) → stream id; rebuilt after a snapshot is loaded.
    by_key: HashMap<(String, LabelSet), u64>,
    /// Inverted index per tenant; rebuilt after a snapshot is loaded.
    tenants: HashMap<String, TenantIndex>,
}

/// A snapshot of a partition: [`PartitionState`] without its indexes,
/// sharing its streams. Encoded by [`snapshot`] (`docs/formats.md`).
#[derive(Debug)]
pub struct PartitionImage {
    streams: BTreeMap<u64, Arc<Stream>>,
    next_stream_id: u64,
    next_chunk_id: u64,
    sessions: Sessions,
    pending: BTreeMap<u64, ChunkRef>,
    next_ref_seq: u64,
}

#[derive(Debug, Default)]
struct TenantIndex {
    streams: BTreeSet<u64>,
    /// label name → value → stream ids
    postings: HashMap<String, HashMap<String, BTreeSet<u64>>>,
}

/// Request ids applied recently, with what applying them answered.
///
/// Expiry is bounded by the log, not by one clock: a session goes once it
/// is older than the TTL by the partition's clock (the newest proposal
/// time applied, never going back) *and* at least [`SESSIONS_KEPT`] newer
/// sessions were recorded after it. The TTL comes with the commands, so
/// replicas of different versions expire alike.
#[derive(Clone, Debug, Default)]
struct Sessions {
    done: HashMap<RequestId, PushOutcome>,
    /// (applied at, number, id), oldest first, for expiry.
    order: VecDeque<(i64, u64, RequestId)>,
    /// Sessions recorded so far (numbers them).
    recorded: u64,
    /// Newest proposal time applied.
    clock: i64,
    /// The TTL of the newest push (0 before any).
    ttl: i64,
}

impl Sessions {
    /// Moves the clock to `now` (never back) and expires what is both
    /// older than `ttl` (if given; else the last one seen) and far enough
    /// behind in the log.
    fn expire(&mut self, now: i64, ttl: Option<i64>) {
        self.clock = self.clock.max(now);
        if let Some(ttl) = ttl.filter(|t| *t > 0) {
            self.ttl = ttl;
        }
        if self.ttl == 0 {
            return;
        }
        while let Some(&(at, n, id)) = self.order.front() {
            let old = at < self.clock.saturating_sub(self.ttl);
            let far = self.recorded.saturating_sub(n) > SESSIONS_KEPT;
            if !(old && far) {
                break;
            }
            self.order.pop_front();
            self.done.remove(&id);
        }
    }

    fn record(&mut self, at: i64, id: RequestId, outcome: PushOutcome) {
        self.recorded += 1;
        self.order.push_back((at, self.recorded, id));
        self.done.insert(id, outcome);
    }
}

impl PartitionState {
    /// The state an image holds, its indexes rebuilt.
    fn from_image(i: PartitionImage) -> Self {
        let mut state = PartitionState {
            streams: i.streams,
            next_stream_id: i.next_stream_id,
            next_chunk_id: i.next_chunk_id,
            sessions: i.sessions,
            pending: i.pending,
            next_ref_seq: i.next_ref_seq,
            queued: 0,
            by_key: HashMap::new(),
            tenants: HashMap::new(),
        };
        state.rebuild_indexes();
        state
    }

}

impl balsa_raft::Replicated for PartitionState {
    const SNAPSHOT_KIND: [u8; 4] = *b"BSNP";
    const IMAGE_VERSION: u16 = snapshot::VERSION;
    type Image = PartitionImage;
    type ApplyError = command::CodecError;

    /// Copies pointers to the streams, and the session table and pending
    /// refs (both bounded, small next to the lines).
    fn image(&self) -> PartitionImage {
        PartitionImage {
            streams: self.streams.clone(),
            next_stream_id: self.next_stream_id,
            next_chunk_id: self.next_chunk_id,
            sessions: self.sessions.clone(),
            pending: self.pending.clone(),
            next_ref_seq: self.next_ref_seq,
        }
    }

    fn encode_image(image: &PartitionImage) -> Result<Vec<u8>, balsa_raft::ImageError> {
        snapshot::encode(image)
    }

    fn decode_image(version: u16, bytes: &[u8]) -> Result<Self, balsa_raft::ImageError> {
        snapshot::decode(version, bytes).map(PartitionState::from_image)
    }

    fn apply(&mut self, bytes: &[u8]) -> Result<Vec<u8>, command::CodecError> {
        let cmd: Command = command::decode(bytes)?;
        match cmd {
            Command::Push(batch) => command::encode(&self.apply_push(batch)),
            Command::Tick(t) => {
                self.apply_tick(&t);
                Ok(Vec::new())
            }
            Command::ChunksFlushed(chunks) => {
                self.apply_flushed(&chunks);
                Ok(Vec::new())
            }
            Command::IndexShipped { through_seq } => {
                self.apply_index_shipped(through_seq);
                Ok(Vec::new())
            }
        }
    }
}

impl PartitionState {
    /// Applies a push: the same request id twice answers the first outcome
    /// and changes nothing; entries equal to one already in their stream are
    /// dropped; entries older than the stream's newest minus the window are
    /// refused. Takes the batch so its entries move into the heads (no
    /// line is copied).
    pub fn apply_push(&mut self, mut batch: PushBatch) -> PushOutcome {
        self.sessions.expire(batch.now, Some(batch.session_ttl));
        let streams = std::mem::take(&mut batch.streams);
        if let Some(done) = self.sessions.done.get(&batch.request_id) {
            if done.stream_limited.is_empty() {
                return done.clone();
            }
            // Streams the stream limit refused stored nothing: a retry
            // may store them now (the tenant may have room again).
            let mut done = done.clone();
            let refused: std::collections::HashSet<String> = done.stream_limited.drain(..).map(|s| s.labels).collect();
            let again = self.apply_streams(&batch, streams.into_iter().filter(|s| refused.contains(&s.labels.to_string())));
            done.accepted += again.accepted;
            done.accepted_bytes += again.accepted_bytes;
            done.duplicates += again.duplicates;
            done.rejected.extend(again.rejected);
            done.stream_limited = again.stream_limited;
            self.sessions.done.insert(batch.request_id, done.clone());
            return done;
        }
        let out = self.apply_streams(&batch, streams.into_iter());
        self.sessions.record(batch.now, batch.request_id, out.clone());
        out
    }

    /// Applies `streams` under the rules of `batch` (no session
    /// bookkeeping).
    fn apply_streams(&mut self, batch: &PushBatch, streams: impl Iterator<Item = StreamBatch>) -> PushOutcome {
        let mut out = PushOutcome::default();
        for sb in streams {
            let is_new = !self.by_key.contains_key(&(sb.tenant.clone(), sb.labels.clone()));
            let at_limit = batch.max_streams_per_tenant > 0
                && self.tenants.get(&sb.tenant).map_or(0, |t| t.streams.len()) as u64 >= batch.max_streams_per_tenant;
            if is_new && at_limit {
                out.stream_limited.push(StreamLimited {
                    labels: sb.labels.to_string(),
                    entries: sb.entries.len() as u64,
                    bytes: sb.entries.iter().map(|e| e.size() as u64).sum(),
                });
                continue;
            }
            let id = self.stream_id(&sb.tenant, &sb.labels);
            let Some(stream) = self.streams.get_mut(&id).map(Arc::make_mut) else { continue };
            let mut rej = StreamRejections::default();
            let total = sb.entries.len();
            for e in sb.entries {
                if let Some(newest) = stream.newest_ts {
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
                let (size, ts) = (e.size() as u64, e.ts);
                let was_empty = stream.head.is_empty();
                if stream.head.push(e) {
                    stream.newest_ts = Some(stream.newest_ts.map_or(ts, |n| n.max(ts)));
                    out.accepted += 1;
                    out.accepted_bytes += size;
                    if was_empty {
                        stream.head_started_at = batch.now;
                    }
                    stream.last_append_at = batch.now;
                    if batch.chunk_target_raw_size > 0 && stream.head.bytes() as u64 >= batch.chunk_target_raw_size {
                        stream.cut(self.next_chunk_id);
                        self.next_chunk_id += 1;
                        self.queued += 1;
                    }
                } else {
                    out.duplicates += 1;
                }
            }
            if rej.ignored > 0 {
                rej.tenant = sb.tenant;
                rej.labels = sb.labels.to_string();
                rej.total = total;
                out.rejected.push(rej);
            }
        }
        out
    }

    /// Id of the stream, created (and indexed) if new.
    fn stream_id(&mut self, tenant: &str, labels: &LabelSet) -> u64 {
        if let Some(&id) = self.by_key.get(&(tenant.to_string(), labels.clone())) {
            return id;
        }
        let id = self.next_stream_id;
        self.next_stream_id += 1;
        self.streams.insert(
            id,
            Arc::new(Stream {
                tenant: tenant.to_string(),
                labels: labels.clone(),
                head: HeadBlock::default(),
                closed: Vec::new(),
                head_started_at: 0,
                last_append_at: 0,
                newest_ts: None,
            }),
        );
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

    /// Whether a [`Tick`] at `now` would cut any head.
    pub fn needs_tick(&self, now: i64, max_chunk_age: i64, chunk_idle_period: i64) -> bool {
        self.streams.values().any(|s| {
            !s.head.is_empty()
                && (now.saturating_sub(s.head_started_at) >= max_chunk_age
                    || now.saturating_sub(s.last_append_at) >= chunk_idle_period)
        })
    }

    /// Cuts the heads that are old or idle at the tick's time (all with
    /// `force`).
    pub fn apply_tick(&mut self, t: &Tick) {
        self.sessions.expire(t.now, None);
        for s in self.streams.values_mut() {
            if s.head.is_empty() {
                continue;
            }
            let old = t.now.saturating_sub(s.head_started_at) >= t.max_chunk_age;
            let idle = t.now.saturating_sub(s.last_append_at) >= t.chunk_idle_period;
            if t.force || old || idle {
                Arc::make_mut(s).cut(self.next_chunk_id);
                self.next_chunk_id += 1;
                self.queued += 1;
            }
        }
    }

    /// Closed chunks waiting for a flush.
    pub fn chunks_to_flush(&self) -> Vec<ChunkToFlush> {
        self.streams
            .iter()
            .flat_map(|(id, s)| {
                s.closed.iter().map(move |c| ChunkToFlush {
                    stream: *id,
                    chunk: c.id,
                    tenant: s.tenant.clone(),
                    labels: s.labels.clone(),
                    entries: c.entries.clone(),
                })
            })
            .collect()
    }

    /// Drops flushed chunks from memory and records their refs. Applying the
    /// same flush twice (a new leader repeating it) changes nothing.
    pub fn apply_flushed(&mut self, chunks: &[FlushedChunk]) {
        for f in chunks {
            let Some(s) = self.streams.get_mut(&f.stream) else { continue };
            if !s.closed.iter().any(|c| c.id == f.chunk) {
                continue;
            }
            let s = Arc::make_mut(s);
            s.closed.retain(|c| c.id != f.chunk);
            self.queued -= 1;
            self.pending.insert(self.next_ref_seq, f.chunk_ref.clone());
            self.next_ref_seq += 1;
            if s.head.is_empty() && s.closed.is_empty() {
                self.remove_stream(f.stream);
            }
        }
    }

    /// Forgets pending refs that index segments now list.
    pub fn apply_index_shipped(&mut self, through_seq: u64) {
        self.pending = self.pending.split_off(&(through_seq.saturating_add(1)));
    }

    /// Pending refs and the highest sequence number among them.
    pub fn pending_refs(&self) -> Option<(u64, Vec<ChunkRef>)> {
        let last = *self.pending.keys().next_back()?;
        Some((last, self.pending.values().cloned().collect()))
    }

    /// Pending refs of one tenant.
    pub fn pending_for(&self, tenant: &str) -> Vec<ChunkRef> {
        self.pending.values().filter(|r| r.tenant == tenant).cloned().collect()
    }

    fn remove_stream(&mut self, id: u64) {
        let Some(s) = self.streams.remove(&id) else { return };
        self.by_key.remove(&(s.tenant.clone(), s.labels.clone()));
        if let Some(t) = self.tenants.get_mut(&s.tenant) {
            t.streams.remove(&id);
            for (n, v) in s.labels.iter() {
                if let Some(vals) = t.postings.get_mut(n) {
                    if let Some(ids) = vals.get_mut(v) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            vals.remove(v);
                        }
                    }
                    if vals.is_empty() {
                        t.postings.remove(n);
                    }
                }
            }
            if t.streams.is_empty() {
                self.tenants.remove(&s.tenant);
            }
        }
    }

    /// Rebuilds the indexes and the flush queue's length, which snapshots
    /// do not carry.
    pub fn rebuild_indexes(&mut self) {
        self.queued = self.streams.values().map(|s| s.closed.len()).sum();
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
            .filter_map(|id| self.streams.get(&id).map(|s| &**s))
            .filter(move |s| matchers.iter().all(|m| m.matches(s.labels.get(&m.name))))
    }

    /// Number of streams and entries held, for metrics.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let closed = |s: &Stream| s.closed.iter().map(|c| c.entries.len()).sum::<usize>();
        let closed_bytes = |s: &Stream| s.closed.iter().flat_map(|c| c.entries.iter()).map(Entry::size).sum::<usize>();
        let entries = self.streams.values().map(|s| s.head.len() + closed(s)).sum();
        let bytes = self.streams.values().map(|s| s.head.bytes() + closed_bytes(s)).sum();
        (self.streams.len(), entries, bytes)
    }

    /// Closed chunks waiting for a flush (the flush queue).
    pub fn flush_queue_len(&self) -> usize {
        self.queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingester::command::StreamBatch;
    use balsa_logql::parse_selector;
    use balsa_raft::Replicated;

    const H: i64 = 3600 * 1_000_000_000;

    fn batch(seq: u64, now: i64, streams: Vec<(&str, &str, Vec<i64>)>) -> PushBatch {
        PushBatch {
            request_id: RequestId { key: u128::from(seq), part: 0 },
            now,
            too_far_behind_window: H,
            chunk_target_raw_size: 0,
            max_streams_per_tenant: 0,
            session_ttl: crate::ingester::command::SESSION_TTL_NS,
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
        let first = p.apply_push(b.clone());
        assert_eq!(first.accepted, 1);
        // Same id again, even with different content: same answer, no change.
        let again = p.apply_push(batch(1, 10 * H, vec![("t", r#"{a="1"}"#, vec![10 * H + 1])]));
        assert_eq!(again, first);
        assert_eq!(p.sizes().1, 1);
        // A new id with an identical entry: Loki's duplicate rule drops it.
        let dup = p.apply_push(batch(2, 10 * H, vec![("t", r#"{a="1"}"#, vec![10 * H])]));
        assert_eq!((dup.accepted, dup.duplicates), (0, 1));
    }

    #[test]
    fn sessions_expire_by_proposal_time_and_log_progress() {
        let mut p = PartitionState::default();
        p.apply_push(batch(1, 10 * H, vec![("t", r#"{a="1"}"#, vec![10 * H])]));
        p.apply_push(batch(2, 11 * H, vec![]));
        assert!(p.sessions.done.contains_key(&RequestId { key: 1, part: 0 }), "old by the clock, but the log has hardly moved");
        for seq in 3..(SESSIONS_KEPT + 4) {
            p.apply_push(batch(seq, 11 * H, vec![]));
        }
        assert!(!p.sessions.done.contains_key(&RequestId { key: 1, part: 0 }), "old by the clock and by the log");
        assert!(p.sessions.done.contains_key(&RequestId { key: 2, part: 0 }), "young by the clock");
    }

    /// Regression (issue 16): a leader 15 minutes fast expired every
    /// session at its first proposal, so a retry of a push applied a moment
    /// before (by real time) was applied again.
    #[test]
    fn a_leader_with_a_fast_clock_does_not_expire_recent_sessions() {
        let mut p = PartitionState::default();
        let first = p.apply_push(batch(1, 10 * H, vec![("t", r#"{a="1"}"#, vec![10 * H])]));
        p.apply_tick(&Tick { now: 10 * H, max_chunk_age: 2 * H, chunk_idle_period: H, force: true });
        p.apply_push(batch(2, 10 * H + H / 4 + 1, vec![]));
        let retry = p.apply_push(batch(1, 10 * H + H / 4 + 2, vec![("t", r#"{a="1"}"#, vec![10 * H])]));
        assert_eq!(retry, first, "answered as the first attempt, nothing stored again");
        assert_eq!(p.sizes().1, 1, "the line is held once (cut, not in the head any more)");
    }

    /// A retry of a push whose streams the stream limit refused stores them
    /// once the tenant has room; what was stored is not stored again.
    #[test]
    fn a_retry_stores_what_the_stream_limit_refused_before() {
        let mut p = PartitionState::default();
        let mut b = batch(1, 0, vec![("t", r#"{a="1"}"#, vec![1]), ("t", r#"{a="2"}"#, vec![1])]);
        b.max_streams_per_tenant = 1;
        let o = p.apply_push(b.clone());
        assert_eq!((o.accepted, o.stream_limited.len()), (1, 1));
        b.max_streams_per_tenant = 2;
        let o = p.apply_push(b.clone());
        assert_eq!((o.accepted, o.stream_limited.len()), (2, 0));
        assert_eq!(p.sizes().1, 2, "each line once");
        assert_eq!(p.apply_push(b.clone()), o, "a third attempt changes nothing");
    }

    #[test]
    fn too_far_behind_is_relative_to_the_streams_newest_entry() {
        let mut p = PartitionState::default();
        let o = p.apply_push(batch(1, 0, vec![("t", r#"{a="1"}"#, vec![10 * H, 9 * H, 9 * H - 1, 8 * H])]));
        assert_eq!(o.accepted, 2);
        assert_eq!(o.rejected.len(), 1);
        let r = &o.rejected[0];
        assert_eq!((r.ignored, r.total), (2, 4));
        assert!(r.message().ends_with(r#"user 't', total ignored: 2 out of 4 for stream: {a="1"}"#), "{}", r.message());
        assert!(r.message().starts_with("entry with timestamp 1970-01-01 08:59:59.999999999 +0000 UTC ignored, reason: 'entry too far behind"), "{}", r.message());
        // Another stream is not affected.
        let o = p.apply_push(batch(2, 0, vec![("t", r#"{a="2"}"#, vec![H])]));
        assert_eq!(o.accepted, 1);
    }

    #[test]
    fn select_isolates_tenants_and_uses_all_matchers() {
        let mut p = PartitionState::default();
        p.apply_push(batch(
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
        assert_eq!(s.entries(0, 10, |_| true, None).len(), 1);
    }

    #[test]
    fn a_head_limit_sends_the_first_entries_in_its_direction_with_their_ties() {
        let mut p = PartitionState::default();
        // Out of order within the window, and two lines at 5.
        p.apply_push(batch(1, 0, vec![("a", r#"{app="x"}"#, vec![3, 9, 5, 1])]));
        let mut second = batch(2, 0, vec![("a", r#"{app="x"}"#, vec![7, 5, 2])]);
        second.streams[0].entries[1].line = "another line 5".into();
        p.apply_push(second);
        let m = parse_selector(r#"{app="x"}"#).unwrap();
        let s = p.select("a", &m).next().unwrap();
        let ts = |l| s.entries(0, 100, |_| true, l).iter().map(|e| e.ts).collect::<Vec<_>>();
        assert_eq!(ts(None), [1, 2, 3, 5, 5, 7, 9]);
        assert_eq!(ts(Some(HeadLimit { n: 3, newest: true })), [5, 5, 7, 9], "the third newest is tied");
        assert_eq!(ts(Some(HeadLimit { n: 2, newest: true })), [7, 9]);
        assert_eq!(ts(Some(HeadLimit { n: 2, newest: false })), [1, 2]);
        assert_eq!(ts(Some(HeadLimit { n: 4, newest: false })), [1, 2, 3, 5, 5]);
        assert_eq!(ts(Some(HeadLimit { n: 50, newest: true })).len(), 7);
        let odd = s.entries(0, 100, |l: &str| l.ends_with(['1', '3', '7', '9']), Some(HeadLimit { n: 2, newest: true }));
        assert_eq!(odd.iter().map(|e| e.ts).collect::<Vec<_>>(), [7, 9], "the limit counts lines the filters keep");
    }

    #[test]
    fn indexes_survive_a_snapshot_round_trip() {
        let mut p = PartitionState::default();
        p.apply_push(batch(1, 0, vec![("a", r#"{app="x"}"#, vec![1, 2])]));
        let bytes = PartitionState::encode_image(&p.image()).unwrap();
        let mut q = PartitionState::decode_image(snapshot::VERSION, &bytes).unwrap();
        assert_eq!(q.select("a", &parse_selector(r#"{app="x"}"#).unwrap()).count(), 1);
        let o = q.apply_push(batch(1, 0, vec![("a", r#"{app="x"}"#, vec![3])]));
        assert_eq!(o.accepted, 2, "the session table travels in snapshots");
    }

    #[test]
    fn an_image_is_the_state_when_it_was_taken_whatever_is_applied_after() {
        let encode = |i: &PartitionImage| PartitionState::encode_image(i).unwrap();
        let mut p = PartitionState::default();
        let mut b = batch(1, 0, vec![("t", r#"{a="1"}"#, vec![1, 2]), ("t", r#"{a="2"}"#, vec![1])]);
        b.chunk_target_raw_size = 12;
        p.apply_push(b.clone());
        let image = p.image();
        let then = encode(&image);
        // Appends to a shared stream, a cut, a flush that drops a stream,
        // a new stream: none may show through the image.
        p.apply_push(batch(2, H, vec![("t", r#"{a="1"}"#, vec![3]), ("t", r#"{a="3"}"#, vec![1])]));
        p.apply_tick(&Tick { now: 2 * H, max_chunk_age: H, chunk_idle_period: H, force: true });
        let flushed: Vec<FlushedChunk> = p
            .chunks_to_flush()
            .into_iter()
            .map(|c| FlushedChunk {
                stream: c.stream,
                chunk: c.chunk,
                chunk_ref: ChunkRef {
                    tenant: c.tenant,
                    labels: c.labels.to_string(),
                    from: 0,
                    through: 0,
                    key: format!("k{}", c.chunk),
                    entries: c.entries.len() as u64,
                    bytes: 1,
                },
            })
            .collect();
        p.apply_flushed(&flushed);
        assert_eq!(p.sizes().0, 0, "everything flushed");
        assert_eq!(encode(&image), then);
        let q = PartitionState::from_image(image);
        assert_eq!(q.sizes(), (2, 3, 18));
        assert_eq!(q.select("t", &parse_selector(r#"{a="1"}"#).unwrap()).next().map(|s| s.entries(0, 10, |_| true, None).len()), Some(2));
    }

    #[test]
    fn cuts_flushes_and_ships_keep_every_entry_queryable() {
        let mut p = PartitionState::default();
        let mut b = batch(1, 0, vec![("t", r#"{a="1"}"#, vec![1, 2, 3])]);
        b.chunk_target_raw_size = 14; // "line 1" + "line 2" + "line 3" = 18 bytes
        p.apply_push(b.clone());
        let s = p.streams.values().next().unwrap();
        assert_eq!(s.closed.len(), 1, "cut by size after the third entry");
        assert_eq!(p.flush_queue_len(), 1);
        p.apply_push(batch(2, 5 * H, vec![("t", r#"{a="1"}"#, vec![4])]));
        assert!(!p.needs_tick(5 * H, 2 * H, H), "fresh head");
        assert!(p.needs_tick(6 * H + 1, 2 * H, H), "idle for an hour");
        p.apply_tick(&Tick { now: 6 * H + 1, max_chunk_age: 2 * H, chunk_idle_period: H, force: false });
        let queue = p.chunks_to_flush();
        assert_eq!(queue.len(), 2);
        assert_eq!(p.flush_queue_len(), 2);
        let image = p.image();
        assert_eq!(PartitionState::from_image(image).flush_queue_len(), 2, "recounted from a snapshot");
        assert_eq!(p.select("t", &[]).next().unwrap().entries(0, 10, |_| true, None).len(), 4);
        let flushed: Vec<FlushedChunk> = queue
            .iter()
            .map(|c| FlushedChunk {
                stream: c.stream,
                chunk: c.chunk,
                chunk_ref: ChunkRef {
                    tenant: c.tenant.clone(),
                    labels: c.labels.to_string(),
                    from: c.entries[0].ts,
                    through: c.entries[c.entries.len() - 1].ts,
                    key: format!("k{}", c.chunk),
                    entries: c.entries.len() as u64,
                    bytes: 1,
                },
            })
            .collect();
        p.apply_flushed(&flushed);
        p.apply_flushed(&flushed);
        assert_eq!(p.pending_for("t").len(), 2, "a repeated flush adds no ref");
        assert_eq!(p.flush_queue_len(), 0, "a repeated flush leaves the queue empty, not negative");
        assert_eq!(p.select("t", &[]).count(), 0, "an empty stream leaves memory");
        let (seq, refs) = p.pending_refs().unwrap();
        assert_eq!(refs.len(), 2);
        p.apply_index_shipped(seq);
        assert!(p.pending_refs().is_none());
        // A new push recreates the stream.
        p.apply_push(batch(3, 7 * H, vec![("t", r#"{a="1"}"#, vec![7 * H])]));
        assert_eq!(p.select("t", &[]).count(), 1);
    }

    #[test]
    fn the_stream_limit_refuses_new_streams_only() {
        let mut p = PartitionState::default();
        let mut b = batch(1, 0, vec![("t", r#"{a="1"}"#, vec![1]), ("t", r#"{a="2"}"#, vec![1]), ("u", r#"{a="3"}"#, vec![1])]);
        b.max_streams_per_tenant = 1;
        let o = p.apply_push(b.clone());
        assert_eq!(o.accepted, 2);
        assert_eq!(o.stream_limited.len(), 1);
        assert_eq!(o.stream_limited[0].labels, r#"{a="2"}"#);
        let mut again = batch(2, 0, vec![("t", r#"{a="1"}"#, vec![2])]);
        again.max_streams_per_tenant = 1;
        assert_eq!(p.apply_push(again.clone()).accepted, 1, "an existing stream still takes entries");
    }

    /// Regression (review): after a head was cut, an entry far older than
    /// the stream's newest was accepted, so one chunk could span days and
    /// be missed by queries of its later days.
    #[test]
    fn too_far_behind_still_applies_after_a_cut() {
        let mut p = PartitionState::default();
        p.apply_push(batch(1, 10 * H, vec![("t", r#"{a="1"}"#, vec![10 * H])]));
        p.apply_tick(&Tick { now: 10 * H, max_chunk_age: 2 * H, chunk_idle_period: H, force: true });
        let o = p.apply_push(batch(2, 10 * H, vec![("t", r#"{a="1"}"#, vec![7 * H])]));
        assert_eq!((o.accepted, o.rejected.len()), (0, 1));
    }

    /// A small partition with every part an image holds: cut chunks, heads
    /// (one entry with structured metadata), a session, a pending ref.
    fn every_part() -> PartitionState {
        let mut p = PartitionState::default();
        let streams = vec![("t", r#"{a="1"}"#, vec![1, 2, 3]), ("t", r#"{a="2"}"#, vec![1, 2, 3]), ("u", r#"{a="3"}"#, vec![5])];
        let mut b = batch(1, 0, streams);
        b.chunk_target_raw_size = 14;
        b.streams[2].entries[0].metadata = vec![("trace_id".into(), "abc".into())];
        p.apply_push(b);
        let first = p.chunks_to_flush().into_iter().next().unwrap();
        let chunk_ref = ChunkRef {
            tenant: first.tenant,
            labels: first.labels.to_string(),
            from: 1,
            through: 3,
            key: "k".into(),
            entries: 3,
            bytes: 18,
        };
        p.apply_flushed(&[FlushedChunk { stream: first.stream, chunk: first.chunk, chunk_ref }]);
        p
    }

    /// Version 1 as written by the derived encoding of the live structs
    /// before the format had its own types (hex below, printed then):
    /// the format module must read it and write it byte for byte.
    #[test]
    fn image_version_1_reads_and_writes_as_before() {
        const V1: &str = "02010174010161013200000001010302066c696e6520310004066c696e6520320006066c696e652033000000010602017501016101330000000102010a066c696e652035010874726163655f6964036162630000010a0303010100073500000001000101000100fd00505c18a301000001000174077b613d2231227d0206016b031201";
        let v1: Vec<u8> = (0..V1.len()).step_by(2).map(|i| u8::from_str_radix(&V1[i..i + 2], 16).unwrap()).collect();
        let p = every_part();
        assert_eq!(PartitionState::encode_image(&p.image()).unwrap(), v1);
        let q = PartitionState::decode_image(1, &v1).unwrap();
        assert_eq!(q.sizes(), p.sizes());
        for (tenant, labels) in [("t", r#"{a="2"}"#), ("u", r#"{a="3"}"#)] {
            let m = parse_selector(labels).unwrap();
            let entries = |s: &PartitionState| s.select(tenant, &m).next().map(|s| s.entries(0, 10, |_| true, None));
            assert_eq!(entries(&q), entries(&p), "{labels}");
        }
        assert_eq!(q.pending_refs(), p.pending_refs());
        assert_eq!(q.flush_queue_len(), p.flush_queue_len());
        assert!(matches!(
            PartitionState::decode_image(2, &v1),
            Err(balsa_raft::ImageError::UnknownVersion { found: 2, newest: 1 })
        ));
        assert!(PartitionState::decode_image(1, &v1[..v1.len() - 1]).is_err(), "truncated");
    }
}
