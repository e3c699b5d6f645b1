//! What the distributor proposes to a partition, and what applying it
//! answers. Both travel as bytes through the Raft log.
//!
//! Record layout: one version byte ([`COMMAND_VERSION`]) then bincode.

use balsa_storage::index::ChunkRef;
use balsa_storage::Entry;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::labels::LabelSet;
use crate::time::format_go;

/// Version byte in front of every encoded command and outcome.
pub const COMMAND_VERSION: u8 = 1;

/// Most rejected entries listed per stream in an answer (Loki's
/// `max_returned_stream_errors`); the count covers all of them.
pub const MAX_LISTED_REJECTIONS: usize = 10;

/// Identifies one push across retries: a retried request with the same id is
/// applied once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId {
    /// Random per distributor process.
    pub client: u64,
    /// Increasing per request of that distributor.
    pub seq: u64,
}

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
    pub streams: Vec<StreamBatch>,
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
                crate::time::format_rfc3339(*ts),
                crate::time::format_rfc3339(*cutoff)
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
    #[error("undecodable record: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("unencodable record: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![COMMAND_VERSION];
    out.extend(bincode::serde::encode_to_vec(v, bincode::config::standard())?);
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        Some((&COMMAND_VERSION, body)) => Ok(bincode::serde::decode_from_slice(body, bincode::config::standard())?.0),
        Some((v, _)) => Err(CodecError::Version(*v)),
        None => Err(CodecError::Empty),
    }
}
