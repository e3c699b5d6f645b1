//! bincode into a buffer sized up front.
//!
//! `bincode::serde::encode_to_vec` grows its vector by doubling, so a
//! 200 KB log entry was copied about eighteen times on its way to one
//! allocation, and callers that put a version byte in front copied it once
//! more. Here one pass measures the encoding (it walks the value, copies
//! nothing) and a second writes it once into a vector of exactly that size.

use bincode::enc::write::SizeWriter;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("unencodable record: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("undecodable record: {0}")]
    Decode(#[from] bincode::error::DecodeError),
}

/// The value `bytes` holds in bincode (standard configuration).
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(bincode::serde::decode_from_slice(bytes, bincode::config::standard())?.0)
}

/// `prefix` followed by the bincode (standard configuration) of `v`.
pub fn to_vec<T: Serialize + ?Sized>(prefix: &[u8], v: &T) -> Result<Vec<u8>, CodecError> {
    let config = bincode::config::standard();
    let mut size = SizeWriter::default();
    bincode::serde::encode_into_writer(v, &mut size, config)?;
    let mut out = Vec::with_capacity(prefix.len() + size.bytes_written);
    out.extend_from_slice(prefix);
    bincode::serde::encode_into_std_write(v, &mut out, config)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bytes_are_bincodes_after_the_prefix_in_a_buffer_of_their_size() {
        let v = (7u32, "a line".to_string(), vec![1u8; 1000]);
        let out = super::to_vec(&[9], &v).unwrap();
        assert_eq!(out[0], 9);
        assert_eq!(out[1..], bincode::serde::encode_to_vec(&v, bincode::config::standard()).unwrap()[..]);
        assert_eq!(out.capacity(), out.len(), "sized up front");
    }
}
