//! What the distributor proposes to a partition, and what applying it
//! answers. Both travel as bytes through the Raft log.
//!
//! Record layout: one version byte ([`COMMAND_VERSION`]) then bincode.

use balsa_storage::index::ChunkRef;
use balsa_storage::Entry;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use balsa_logql::labels::LabelSet;
use balsa_logql::time::format_go;

/// Version byte in front of every encoded command and outcome.
pub const COMMAND_VERSION: u8 = 1;

/// Most rejected entries listed per stream in an answer (Loki's
/// `max_returned_stream_errors`); the count covers all of them.
pub const MAX_LISTED_REJECTIONS: usize = 10;

/// Identifies one push across retries: a retried request with the same id is
/// applied once. The id is a hash of what the request stores in the
/// partition ([`RequestId::of`]), so it is the same for a distributor's own
/// retry and for a client's retry of the same body through any distributor:
/// within the session TTL such a retry is answered as the first attempt,
/// even once the lines it stored were cut and flushed (Loki's duplicate
/// rule alone only sees the head block).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId {
    /// xxh3-128 of the tenant and streams of the share.
    pub key: u128,
    /// Which proposal of the request's share of one partition (a large
    /// share is split, see [`PushBatch::split`]); 0 for the first.
    pub part: u32,
}

impl RequestId {
    /// The id of a partition's share of a push: a hash of every stream's
    /// tenant, labels and entries (time, line, structured metadata), in order.
    pub fn of(streams: &[StreamBatch]) -> RequestId {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let mut field = |bytes: &[u8]| {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        for s in streams {
            field(s.tenant.as_bytes());
            field(&(s.labels.len() as u64).to_le_bytes());
            for (n, v) in s.labels.iter() {
                field(n.as_bytes());
                field(v.as_bytes());
            }
            field(&(s.entries.len() as u64).to_le_bytes());
            for e in &s.entries {
                field(&e.ts.to_le_bytes());
                field(e.line.as_bytes());
                field(&(e.metadata.len() as u64).to_le_bytes());
                for (k, v) in &e.metadata {
                    field(k.as_bytes());
                    field(v.as_bytes());
                }
            }
        }
        RequestId { key: h.digest128(), part: 0 }
    }
}

/// How long a request id is remembered for retries (15 minutes: a Loki
/// client's retries with backoff fit in it). Carried in every push, so the
/// replicas agree on it whatever version each runs.
pub const SESSION_TTL_NS: i64 = 15 * 60 * 1_000_000_000;

/// Most bytes of entries in one proposal. A larger share of a push is
/// split into several: one Raft log entry must travel whole in an
/// AppendEntries message (capped at `balsa_raft::network::MAX_MESSAGE_BYTES`)
/// and is written, replicated and applied as one piece.
pub const MAX_PROPOSAL_BYTES: usize = 4 << 20;

/// A state-machine command.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    Push(PushBatch),
    /// The leader's clock, for cuts by age and idleness.
    Tick(Tick),
    /// Closed chunks are durable in object storage: drop them from memory
    /// and remember their refs until an index segment lists them.
    ChunksFlushed(Vec<FlushedChunk>),
    /// Index segments now list every pending ref up to this sequence number.
    IndexShipped { through_seq: u64 },
}

/// Cut heads that are too old or idle (or all, with `force`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Tick {
    pub now: i64,
    pub max_chunk_age: i64,
    pub chunk_idle_period: i64,
    pub force: bool,
}

/// A closed chunk of a stream, now stored under `chunk_ref.key`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlushedChunk {
    pub stream: u64,
    pub chunk: u64,
    pub chunk_ref: ChunkRef,
}

/// The entries of one push request that belong to one partition.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PushBatch {
    pub request_id: RequestId,
    /// Leader's clock when proposed (Unix ns); apply uses no other clock.
    pub now: i64,
    /// Entries older than a stream's newest minus this are refused.
    pub too_far_behind_window: i64,
    /// A head holding this many bytes is cut into a closed chunk.
    pub chunk_target_raw_size: u64,
    /// Streams a tenant may have in this partition (0: unlimited).
    pub max_streams_per_tenant: u64,
    /// How long request ids are remembered ([`SESSION_TTL_NS`]).
    pub session_ttl: i64,
    pub streams: Vec<StreamBatch>,
}

impl PushBatch {
    /// Splits the batch into proposals of at most `max_bytes` of entries
    /// each (an entry larger than that goes alone), keeping every stream's
    /// entries in order; part `i` carries request id part `i`, so a retry
    /// of the same push splits the same way and each part is applied once.
    /// Pure.
    pub fn split(self, max_bytes: usize) -> Vec<PushBatch> {
        // The common case, a share under the cap, stays one proposal with
        // no copy (this runs for every push).
        let total: usize = self.streams.iter().flat_map(|s| &s.entries).map(|e| e.size() + 16).sum();
        if total <= max_bytes / 2 {
            return vec![self];
        }
        let PushBatch { request_id, now, too_far_behind_window, chunk_target_raw_size, max_streams_per_tenant, session_ttl, streams } =
            self;
        let part = |i: usize, streams: Vec<StreamBatch>| PushBatch {
            request_id: RequestId { part: u32::try_from(i).unwrap_or(u32::MAX), ..request_id },
            now,
            too_far_behind_window,
            chunk_target_raw_size,
            max_streams_per_tenant,
            session_ttl,
            streams,
        };
        let mut parts: Vec<PushBatch> = Vec::new();
        let mut current: Vec<StreamBatch> = Vec::new();
        let mut bytes = 0usize;
        for s in streams {
            let overhead = s.tenant.len() + s.labels.to_string().len();
            let mut piece = StreamBatch { tenant: s.tenant.clone(), labels: s.labels.clone(), entries: Vec::new() };
            for e in s.entries {
                let size = e.size() + 16;
                if bytes + overhead + size > max_bytes && (bytes > 0 || !piece.entries.is_empty()) {
                    if !piece.entries.is_empty() {
                        let next = StreamBatch { tenant: piece.tenant.clone(), labels: piece.labels.clone(), entries: Vec::new() };
                        current.push(std::mem::replace(&mut piece, next));
                    }
                    parts.push(part(parts.len(), std::mem::take(&mut current)));
                    bytes = 0;
                }
                bytes += size;
                piece.entries.push(e);
            }
            bytes += overhead;
            current.push(piece);
        }
        if !current.is_empty() || parts.is_empty() {
            parts.push(part(parts.len(), current));
        }
        parts
    }
}

/// Entries for one stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StreamBatch {
    pub tenant: String,
    pub labels: LabelSet,
    pub entries: Vec<Entry>,
}

/// What applying a [`PushBatch`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushOutcome {
    pub accepted: u64,
    pub accepted_bytes: u64,
    /// Dropped silently: equal to an entry already in the stream.
    pub duplicates: u64,
    pub rejected: Vec<StreamRejections>,
    /// Streams not created: the tenant is at its stream limit.
    pub stream_limited: Vec<StreamLimited>,
}

/// A new stream refused by the stream limit, with what it carried.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamLimited {
    pub labels: String,
    pub entries: u64,
    pub bytes: u64,
}

/// Entries of one stream refused as too far behind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRejections {
    pub tenant: String,
    pub labels: String,
    /// Entries of the stream in the request.
    pub total: usize,
    /// Entries refused.
    pub ignored: usize,
    pub ignored_bytes: u64,
    /// The first [`MAX_LISTED_REJECTIONS`]: (entry ts, oldest acceptable ts).
    pub listed: Vec<(i64, i64)>,
}

impl StreamRejections {
    /// Loki's ingester message for the stream.
    pub fn message(&self) -> String {
        let mut out = String::new();
        for (ts, cutoff) in &self.listed {
            out.push_str(&format!(
                "entry with timestamp {} ignored, reason: 'entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}',\n",
                format_go(*ts),
                balsa_logql::time::format_rfc3339(*ts),
                balsa_logql::time::format_rfc3339(*cutoff)
            ));
        }
        out.push_str(&format!(
            "user '{}', total ignored: {} out of {} for stream: {}",
            self.tenant, self.ignored, self.total, self.labels
        ));
        out
    }
}

/// Why a log record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("unknown record version {0}")]
    Version(u8),
    #[error("empty record")]
    Empty,
    #[error(transparent)]
    Codec(#[from] balsa_raft::codec::CodecError),
}

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, CodecError> {
    Ok(balsa_raft::codec::to_vec(&[COMMAND_VERSION], v)?)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        Some((&COMMAND_VERSION, body)) => Ok(balsa_raft::codec::from_slice(body)?),
        Some((v, _)) => Err(CodecError::Version(*v)),
        None => Err(CodecError::Empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(streams: &[(&str, usize, usize)]) -> PushBatch {
        PushBatch {
            request_id: RequestId { key: 79, part: 0 },
            now: 0,
            too_far_behind_window: 0,
            chunk_target_raw_size: 0,
            max_streams_per_tenant: 0,
            session_ttl: SESSION_TTL_NS,
            streams: streams
                .iter()
                .map(|(app, n, size)| StreamBatch {
                    tenant: "t".into(),
                    labels: LabelSet::parse(&format!("{{app=\"{app}\"}}")).unwrap(),
                    entries: (0..*n).map(|i| Entry::new(i as i64, "x".repeat(*size))).collect(),
                })
                .collect(),
        }
    }

    /// A 70 MB share of one partition becomes proposals under the cap
    /// (one Raft entry must fit one AppendEntries message), every entry in
    /// one part, each stream's entries in order, parts numbered from 0.
    #[test]
    fn a_large_share_splits_into_bounded_ordered_parts() {
        let b = batch(&[("a", 700, 100_000), ("b", 3, 10)]);
        let parts = b.clone().split(MAX_PROPOSAL_BYTES);
        assert!(parts.len() >= 17, "{}", parts.len());
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(p.request_id, RequestId { key: 79, part: i as u32 });
            let bytes: usize = p.streams.iter().flat_map(|s| &s.entries).map(|e| e.size()).sum();
            assert!(bytes <= MAX_PROPOSAL_BYTES, "part {i}: {bytes}");
        }
        let a: Vec<i64> = parts.iter().flat_map(|p| &p.streams).filter(|s| s.labels.to_string() == r#"{app="a"}"#).flat_map(|s| s.entries.iter().map(|e| e.ts)).collect();
        assert_eq!(a, (0..700).collect::<Vec<_>>(), "every entry once, in order");
        assert_eq!(parts.iter().flat_map(|p| &p.streams).map(|s| s.entries.len()).sum::<usize>(), 703);
        // Deterministic: a retry splits the same way.
        let again = b.split(MAX_PROPOSAL_BYTES);
        assert_eq!(format!("{again:?}"), format!("{parts:?}"));
    }

    #[test]
    fn a_small_batch_stays_whole_and_an_oversized_entry_goes_alone() {
        let parts = batch(&[("a", 10, 10), ("b", 10, 10)]).split(MAX_PROPOSAL_BYTES);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].streams.len(), 2);
        let parts = batch(&[("a", 3, MAX_PROPOSAL_BYTES + 1)]).split(MAX_PROPOSAL_BYTES);
        assert_eq!(parts.iter().map(|p| p.streams.iter().map(|s| s.entries.len()).sum::<usize>()).collect::<Vec<_>>(), vec![1, 1, 1]);
        let parts = batch(&[]).split(MAX_PROPOSAL_BYTES);
        assert_eq!(parts.len(), 1, "an empty batch is one (empty) proposal");
    }

    /// The same content gives the same id (a client's retry); any
    /// difference in tenant, labels, time, line or metadata another.
    #[test]
    fn request_ids_follow_content() {
        let a = batch(&[("a", 3, 10)]).streams;
        assert_eq!(RequestId::of(&a), RequestId::of(&a.clone()));
        let mut other = a.clone();
        other[0].entries[2].line.push('!');
        assert_ne!(RequestId::of(&a), RequestId::of(&other));
        let mut other = a.clone();
        other[0].tenant = "u".into();
        assert_ne!(RequestId::of(&a), RequestId::of(&other));
        let mut other = a.clone();
        other[0].entries[0].metadata.push(("k".into(), "v".into()));
        assert_ne!(RequestId::of(&a), RequestId::of(&other));
        // Field boundaries count: ("ab", "c") is not ("a", "bc").
        let mut x = a.clone();
        x[0].entries[0].line = "ab".into();
        x[0].entries[1].line = "c".into();
        let mut y = a.clone();
        y[0].entries[0].line = "a".into();
        y[0].entries[1].line = "bc".into();
        assert_ne!(RequestId::of(&x), RequestId::of(&y));
    }
}
