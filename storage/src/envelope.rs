//! The frame around every blob Balsa writes to disk.
//!
//! Byte layout, version 1 (all integers little-endian):
//!
//! | offset | size | field                                   |
//! |--------|------|-----------------------------------------|
//! | 0      | 4    | kind, four ASCII bytes (e.g. `BSNP`)    |
//! | 4      | 1    | frame version, `1`                      |
//! | 5      | 8    | payload length                          |
//! | 13     | 4    | CRC32C of the payload                   |
//! | 17     | n    | payload                                 |
//!
//! [`open`] refuses a frame whose kind, version, length or checksum is wrong,
//! naming the problem, so a flipped bit is reported and never served.

/// Version of the frame layout written by [`seal`].
pub const FRAME_VERSION: u8 = 1;
const HEADER: usize = 17;

/// Why a frame could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CorruptionError {
    #[error("truncated: {got} bytes, a frame needs at least {need}")]
    Truncated { got: usize, need: usize },
    #[error("wrong kind {found:?}, expected {expected:?}")]
    WrongKind { found: [u8; 4], expected: [u8; 4] },
    #[error("unsupported frame version {0}")]
    Version(u8),
    #[error("checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    Checksum { stored: u32, computed: u32 },
}

/// Frames `payload` as a blob of `kind`.
pub fn seal(kind: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&kind);
    out.push(FRAME_VERSION);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks a frame of `kind` and returns its payload.
pub fn open(kind: [u8; 4], bytes: &[u8]) -> Result<&[u8], CorruptionError> {
    if bytes.len() < HEADER {
        return Err(CorruptionError::Truncated { got: bytes.len(), need: HEADER });
    }
    let found: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if found != kind {
        return Err(CorruptionError::WrongKind { found, expected: kind });
    }
    if bytes[4] != FRAME_VERSION {
        return Err(CorruptionError::Version(bytes[4]));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[5..13]);
    let len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
    let need = HEADER.saturating_add(len);
    if bytes.len() != need {
        return Err(CorruptionError::Truncated { got: bytes.len(), need });
    }
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&bytes[13..17]);
    let stored = u32::from_le_bytes(stored);
    let payload = &bytes[HEADER..];
    let computed = crc32c::crc32c(payload);
    if stored != computed {
        return Err(CorruptionError::Checksum { stored, computed });
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let framed = seal(*b"TEST", &payload);
            prop_assert_eq!(open(*b"TEST", &framed).unwrap(), &payload[..]);
        }

        /// Any single flipped bit and any truncation is an error, never a payload.
        #[test]
        fn detects_flips_and_truncation(payload in proptest::collection::vec(any::<u8>(), 1..256),
                                        pos in any::<prop::sample::Index>(), bit in 0u8..8,
                                        cut in any::<prop::sample::Index>()) {
            let framed = seal(*b"TEST", &payload);
            let mut flipped = framed.clone();
            let i = pos.index(flipped.len());
            flipped[i] ^= 1 << bit;
            prop_assert!(open(*b"TEST", &flipped).is_err());
            let c = cut.index(framed.len());
            prop_assert!(open(*b"TEST", &framed[..c]).is_err());
        }
    }
}
