//! The frame around every blob Balsa writes to disk.
//!
//! Byte layout, frame version 2 (all integers little-endian):
//!
//! | offset | size | field                                          |
//! |--------|------|------------------------------------------------|
//! | 0      | 4    | kind, four ASCII bytes (e.g. `BSNP`)           |
//! | 4      | 1    | frame version, `2`                             |
//! | 5      | 2    | payload version (the format of what is framed) |
//! | 7      | 8    | payload length                                 |
//! | 15     | 4    | CRC32C of payload version ‖ payload            |
//! | 19     | n    | payload                                        |
//!
//! Frame version 1 (written before payloads had versions) lacks the
//! payload version and its CRC covers the payload alone; it is still read,
//! as payload version 1.
//!
//! [`open`] refuses a frame whose kind, version, length or checksum is wrong,
//! naming the problem, so a flipped bit is reported and never served.
//! What a payload version means is its reader's business.

/// Version of the frame layout written by [`seal`].
pub const FRAME_VERSION: u8 = 2;
const HEADER_V1: usize = 17;
const HEADER: usize = 19;

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

/// A frame's payload and the version of its format.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    pub version: u16,
    pub payload: &'a [u8],
}

/// Frames `payload`, in format `version`, as a blob of `kind`.
pub fn seal(kind: [u8; 4], version: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&kind);
    out.push(FRAME_VERSION);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&version.to_le_bytes()), payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks a frame of `kind` and returns its payload with its version.
pub fn open(kind: [u8; 4], bytes: &[u8]) -> Result<Opened<'_>, CorruptionError> {
    let word = |at: usize, n: usize| -> u64 { bytes[at..at + n].iter().rev().fold(0, |v, b| v << 8 | u64::from(*b)) };
    if bytes.len() < HEADER_V1 {
        return Err(CorruptionError::Truncated { got: bytes.len(), need: HEADER_V1 });
    }
    let found: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if found != kind {
        return Err(CorruptionError::WrongKind { found, expected: kind });
    }
    // (payload version, where the length is, header size)
    let (version, len_at, header) = match bytes[4] {
        1 => (1, 5, HEADER_V1),
        2 if bytes.len() >= HEADER => (word(5, 2) as u16, 7, HEADER),
        2 => return Err(CorruptionError::Truncated { got: bytes.len(), need: HEADER }),
        v => return Err(CorruptionError::Version(v)),
    };
    let len = usize::try_from(word(len_at, 8)).unwrap_or(usize::MAX);
    let need = header.saturating_add(len);
    if bytes.len() != need {
        return Err(CorruptionError::Truncated { got: bytes.len(), need });
    }
    let stored = word(len_at + 8, 4) as u32;
    let payload = &bytes[header..];
    let computed = match bytes[4] {
        1 => crc32c::crc32c(payload),
        _ => crc32c::crc32c_append(crc32c::crc32c(&version.to_le_bytes()), payload),
    };
    if stored != computed {
        return Err(CorruptionError::Checksum { stored, computed });
    }
    Ok(Opened { version, payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(payload in proptest::collection::vec(any::<u8>(), 0..512), version in any::<u16>()) {
            let framed = seal(*b"TEST", version, &payload);
            prop_assert_eq!(open(*b"TEST", &framed).unwrap(), Opened { version, payload: &payload[..] });
        }

        /// Any single flipped bit and any truncation is an error, never a payload.
        #[test]
        fn detects_flips_and_truncation(payload in proptest::collection::vec(any::<u8>(), 1..256),
                                        pos in any::<prop::sample::Index>(), bit in 0u8..8,
                                        cut in any::<prop::sample::Index>()) {
            let framed = seal(*b"TEST", 3, &payload);
            let mut flipped = framed.clone();
            let i = pos.index(flipped.len());
            flipped[i] ^= 1 << bit;
            prop_assert!(open(*b"TEST", &flipped).is_err());
            let c = cut.index(framed.len());
            prop_assert!(open(*b"TEST", &framed[..c]).is_err());
        }
    }

    /// A frame of version 1 (no payload version), as written before
    /// payloads had versions, opens as payload version 1.
    #[test]
    fn opens_frames_of_version_1() {
        let payload = b"an older blob";
        let mut v1 = b"TEST".to_vec();
        v1.push(1);
        v1.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        v1.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        v1.extend_from_slice(payload);
        assert_eq!(open(*b"TEST", &v1), Ok(Opened { version: 1, payload: &payload[..] }));
        v1[20] ^= 1;
        assert!(matches!(open(*b"TEST", &v1), Err(CorruptionError::Checksum { .. })));
    }
}
