//! The partition snapshot's image format, kept apart from the live structs
//! it is written from and read into: changing [`PartitionState`], [`Stream`]
//! or the session table changes nothing a snapshot on disk or on its way to
//! a lagging replica means. A new layout gets a new [`VERSION`] here, and
//! the decoder keeps reading the old ones.
//!
//! Version 1, in bincode's standard configuration (integers varint, signed
//! ones zigzag; a sequence or map is its length then its items; an option
//! a 0/1 byte then the value; a string its length then UTF-8):
//!
//! | field | layout |
//! |---|---|
//! | streams | map stream id → stream |
//! | stream | tenant, labels (pairs sorted by name), head, cut chunks, head started at (ns), last append at (ns), newest timestamp (option) |
//! | head | map timestamp → entries in arrival order; entry count; bytes |
//! | cut chunk | chunk id, entries oldest first |
//! | — | next stream id, next chunk id |
//! | sessions | map request id → push outcome; (applied at, number, request id) oldest first; sessions recorded; clock; TTL |
//! | pending | map sequence → chunk ref; next ref sequence |
//!
//! Entries, chunk refs, request ids and push outcomes are records of the
//! Raft command log's and the index segments' formats, shared here.
//!
//! Writing borrows from the image (no line is copied); reading builds the
//! live structs, their counts and indexes recomputed.

use serde::{Deserialize, Serialize, Serializer};

use super::*;
use balsa_raft::state_machine::{bincode_decode, bincode_encode};
use balsa_raft::ImageError;

/// The image format version written.
pub(super) const VERSION: u16 = 1;

pub(super) fn encode(image: &PartitionImage) -> Result<Vec<u8>, ImageError> {
    bincode_encode(&ImageOut {
        streams: StreamsOut(&image.streams),
        next_stream_id: image.next_stream_id,
        next_chunk_id: image.next_chunk_id,
        sessions: SessionsOut {
            done: &image.sessions.done,
            order: &image.sessions.order,
            recorded: image.sessions.recorded,
            clock: image.sessions.clock,
            ttl: image.sessions.ttl,
        },
        pending: &image.pending,
        next_ref_seq: image.next_ref_seq,
    })
}

pub(super) fn decode(version: u16, bytes: &[u8]) -> Result<PartitionImage, ImageError> {
    if version != VERSION {
        return Err(ImageError::UnknownVersion { found: version, newest: VERSION });
    }
    let i: ImageIn = bincode_decode(bytes)?;
    let streams = i
        .streams
        .into_iter()
        .map(|(id, s)| {
            let stream = Stream {
                tenant: s.tenant,
                labels: LabelSet::from_pairs_keep_empty(s.labels),
                head: HeadBlock::from_by_ts(s.head.by_ts),
                closed: s.closed.into_iter().map(|c| ClosedChunk { id: c.id, entries: Arc::new(c.entries) }).collect(),
                head_started_at: s.head_started_at,
                last_append_at: s.last_append_at,
                newest_ts: s.newest_ts,
            };
            (id, Arc::new(stream))
        })
        .collect();
    let sessions = Sessions {
        done: i.sessions.done,
        order: i.sessions.order,
        recorded: i.sessions.recorded,
        clock: i.sessions.clock,
        ttl: i.sessions.ttl,
    };
    Ok(PartitionImage {
        streams,
        next_stream_id: i.next_stream_id,
        next_chunk_id: i.next_chunk_id,
        sessions,
        pending: i.pending,
        next_ref_seq: i.next_ref_seq,
    })
}

#[derive(Serialize)]
struct ImageOut<'a> {
    streams: StreamsOut<'a>,
    next_stream_id: u64,
    next_chunk_id: u64,
    sessions: SessionsOut<'a>,
    pending: &'a BTreeMap<u64, ChunkRef>,
    next_ref_seq: u64,
}

struct StreamsOut<'a>(&'a BTreeMap<u64, Arc<Stream>>);

impl Serialize for StreamsOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(id, s)| {
            let stream = StreamOut {
                tenant: &s.tenant,
                labels: LabelsOut(&s.labels),
                head: HeadOut { by_ts: s.head.by_ts(), len: s.head.len() as u64, bytes: s.head.bytes() as u64 },
                closed: s.closed.iter().map(|c| ClosedOut { id: c.id, entries: &c.entries }).collect(),
                head_started_at: s.head_started_at,
                last_append_at: s.last_append_at,
                newest_ts: s.newest_ts,
            };
            (id, stream)
        }))
    }
}

#[derive(Serialize)]
struct StreamOut<'a> {
    tenant: &'a str,
    labels: LabelsOut<'a>,
    head: HeadOut<'a>,
    closed: Vec<ClosedOut<'a>>,
    head_started_at: i64,
    last_append_at: i64,
    newest_ts: Option<i64>,
}

/// Labels as the sequence of their pairs.
struct LabelsOut<'a>(&'a LabelSet);

impl Serialize for LabelsOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

#[derive(Serialize)]
struct HeadOut<'a> {
    by_ts: &'a BTreeMap<i64, Vec<Entry>>,
    len: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct ClosedOut<'a> {
    id: u64,
    entries: &'a [Entry],
}

#[derive(Serialize)]
struct SessionsOut<'a> {
    done: &'a HashMap<RequestId, PushOutcome>,
    order: &'a VecDeque<(i64, u64, RequestId)>,
    recorded: u64,
    clock: i64,
    ttl: i64,
}

#[derive(Deserialize)]
struct ImageIn {
    streams: BTreeMap<u64, StreamIn>,
    next_stream_id: u64,
    next_chunk_id: u64,
    sessions: SessionsIn,
    pending: BTreeMap<u64, ChunkRef>,
    next_ref_seq: u64,
}

#[derive(Deserialize)]
struct StreamIn {
    tenant: String,
    labels: Vec<(String, String)>,
    head: HeadIn,
    closed: Vec<ClosedIn>,
    head_started_at: i64,
    last_append_at: i64,
    newest_ts: Option<i64>,
}

/// The counts are recomputed from the entries.
#[derive(Deserialize)]
struct HeadIn {
    by_ts: BTreeMap<i64, Vec<Entry>>,
    #[allow(dead_code)]
    len: u64,
    #[allow(dead_code)]
    bytes: u64,
}

#[derive(Deserialize)]
struct ClosedIn {
    id: u64,
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct SessionsIn {
    done: HashMap<RequestId, PushOutcome>,
    order: VecDeque<(i64, u64, RequestId)>,
    recorded: u64,
    clock: i64,
    ttl: i64,
}
