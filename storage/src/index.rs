//! Index segments: which chunks exist, for whom, for which time range.
//!
//! An index segment is a frame ([`crate::envelope`], kind `BIDX`) around
//! bincode of its [`ChunkRef`]s sorted by (tenant, labels, from, key). Object
//! storage plus its index segments describe all flushed data on their own.

use serde::{Deserialize, Serialize};

use crate::envelope::{self, CorruptionError};

const KIND: [u8; 4] = *b"BIDX";
/// The segment format version (the envelope's payload version): bincode of
/// the sorted refs.
const SEGMENT_VERSION: u16 = 1;

/// A flushed chunk.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkRef {
    pub tenant: String,
    /// The stream's labels in normal form (`{a="b", c="d"}`).
    pub labels: String,
    pub from: i64,
    pub through: i64,
    /// Object key of the chunk.
    pub key: String,
    pub entries: u64,
    /// Uncompressed bytes of lines and metadata.
    pub bytes: u64,
}

/// Why a segment could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("corrupt index segment: {0}")]
    Frame(#[from] CorruptionError),
    #[error("corrupt index segment: {0}")]
    Decode(String),
    #[error("cannot encode index segment: {0}")]
    Encode(String),
}

/// Encodes refs as a segment (sorted, so equal sets give equal bytes). A
/// failure is an error, never an empty segment: the refs it should list
/// would be forgotten once the segment is recorded as shipped.
pub fn encode_segment(refs: &[ChunkRef]) -> Result<Vec<u8>, SegmentError> {
    let mut sorted = refs.to_vec();
    sorted.sort();
    sorted.dedup();
    let payload = bincode::serde::encode_to_vec(&sorted, bincode::config::standard())
        .map_err(|e| SegmentError::Encode(e.to_string()))?;
    Ok(envelope::seal(KIND, SEGMENT_VERSION, &payload))
}

/// Decodes and checks a segment.
pub fn decode_segment(bytes: &[u8]) -> Result<Vec<ChunkRef>, SegmentError> {
    let opened = envelope::open(KIND, bytes)?;
    if opened.version != SEGMENT_VERSION {
        return Err(SegmentError::Decode(format!("unknown segment format version {}", opened.version)));
    }
    bincode::serde::decode_from_slice(opened.payload, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| SegmentError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_and_detect_corruption() {
        let r = |t: &str, from| ChunkRef {
            tenant: t.into(),
            labels: "{a=\"1\"}".into(),
            from,
            through: from + 10,
            key: format!("chunks/{t}/{from}"),
            entries: 3,
            bytes: 30,
        };
        let refs = vec![r("b", 5), r("a", 7), r("a", 1)];
        let bytes = encode_segment(&refs).unwrap();
        let back = decode_segment(&bytes).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[0].key, "chunks/a/1");
        let mut bad = bytes.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 4;
        assert!(decode_segment(&bad).is_err());
    }
}
