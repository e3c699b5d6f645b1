//! Turns a push request body — JSON, or protobuf with raw snappy, either
//! optionally gzip/deflate-encoded — into streams of entries, as Loki's
//! `pkg/loghttp/push` does, and a little more liberally: a missing
//! Content-Type means protobuf, and protobuf that is not snappy-compressed
//! is accepted as is.
//!
//! PERFORMANCE-CRITICAL PATH: every pushed byte passes through here.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use balsa_proto::logproto::PushRequest;
use balsa_storage::Entry;
use prost::Message;
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

use balsa_logql::labels::LabelSet;

use crate::error_code::{Coded, ErrorCode};

/// One stream of a request, labels in normal form.
#[derive(Debug, Clone)]
pub struct DecodedStream {
    pub labels: LabelSet,
    pub entries: Vec<Entry>,
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// 400.
    #[error("{0}")]
    Bad(String),
}

impl Coded for DecodeError {
    fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Bad(_) => ErrorCode::BadRequest,
        }
    }
}

/// Size limits for a body.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub max_decompressed: usize,
}

/// Decodes a body given its Content-Type and Content-Encoding headers.
pub fn decode_body(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    limits: BodyLimits,
) -> Result<Vec<DecodedStream>, DecodeError> {
    let decoded;
    let body: &[u8] = match content_encoding.map(str::trim).unwrap_or("") {
        "" | "snappy" | "identity" => body,
        "gzip" | "x-gzip" => {
            decoded = inflate(flate2::read::GzDecoder::new(body), limits)?;
            &decoded
        }
        "deflate" => {
            decoded = inflate(flate2::read::DeflateDecoder::new(body), limits)?;
            &decoded
        }
        other => return Err(DecodeError::Bad(format!("Content-Encoding \"{other}\" not supported"))),
    };
    let media = content_type.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media == "application/json" {
        decode_json(body)
    } else {
        decode_protobuf(body, limits)
    }
}

pub(super) fn inflate(mut r: impl Read, limits: BodyLimits) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let max = limits.max_decompressed as u64;
    (&mut r)
        .take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Bad(format!("cannot decompress the body: {e}")))?;
    if out.len() as u64 > max {
        return Err(DecodeError::Bad(format!(
            "decompressed message size too large than max ({} vs {max})",
            out.len()
        )));
    }
    Ok(out)
}

fn decode_protobuf(body: &[u8], limits: BodyLimits) -> Result<Vec<DecodedStream>, DecodeError> {
    let req = match snap::raw::decompress_len(body) {
        Ok(n) if n > limits.max_decompressed => {
            return Err(DecodeError::Bad(format!(
                "decompressed message size too large than max ({n} vs {})",
                limits.max_decompressed
            )))
        }
        Ok(_) => match snap::raw::Decoder::new().decompress_vec(body) {
            Ok(raw) => PushRequest::decode(raw.as_slice())
                .or_else(|e| PushRequest::decode(body).map_err(|_| e))
                .map_err(|e| DecodeError::Bad(format!("cannot decode the protobuf push request: {e}")))?,
            Err(snappy_err) => PushRequest::decode(body)
                .map_err(|_| DecodeError::Bad(format!("snappy: corrupt input ({snappy_err})")))?,
        },
        Err(snappy_err) => {
            PushRequest::decode(body).map_err(|_| DecodeError::Bad(format!("snappy: corrupt input ({snappy_err})")))?
        }
    };
    from_proto(req)
}

/// Converts a decoded protobuf request.
pub fn from_proto(req: PushRequest) -> Result<Vec<DecodedStream>, DecodeError> {
    req.streams
        .into_iter()
        .map(|s| {
            let labels = LabelSet::parse(&s.labels)
                .map_err(|e| DecodeError::Bad(format!("couldn't parse labels: {e}")))?;
            let entries = s
                .entries
                .into_iter()
                .map(|e| {
                    let ts = e.timestamp.map_or(0, |t| {
                        t.seconds.saturating_mul(1_000_000_000).saturating_add(i64::from(t.nanos))
                    });
                    let line = match String::from_utf8(e.line) {
                        Ok(s) => s,
                        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    };
                    let metadata = e.structured_metadata.into_iter().map(|p| (p.name, p.value)).collect();
                    Entry { ts, line, metadata }
                })
                .collect();
            Ok(DecodedStream { labels, entries })
        })
        .collect()
}

#[derive(Deserialize)]
struct JsonPush {
    #[serde(default)]
    streams: Option<Vec<Option<JsonStream>>>,
}

#[derive(Deserialize)]
struct JsonStream {
    #[serde(default)]
    stream: Option<BTreeMap<String, String>>,
    #[serde(default)]
    values: Option<Vec<Option<JsonEntry>>>,
}

struct JsonEntry(Entry);

/// A timestamp: Loki takes a string of integer nanoseconds; a bare JSON
/// integer is accepted too.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonTs {
    Str(String),
    Int(i64),
}

impl<'de> Deserialize<'de> for JsonEntry {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"an entry ["<unix epoch in nanoseconds>", "<log line>", {optional structured metadata}]"#)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonEntry, A::Error> {
                let ts = match seq.next_element::<JsonTs>()? {
                    Some(JsonTs::Str(s)) => s.parse::<i64>().map_err(|_| {
                        de::Error::custom(format!("timestamp '{s}' is not an integer number of nanoseconds"))
                    })?,
                    Some(JsonTs::Int(n)) => n,
                    None => return Err(de::Error::custom("entry has no timestamp")),
                };
                let line: String = seq.next_element()?.ok_or_else(|| de::Error::custom("entry has no log line"))?;
                let metadata: Option<BTreeMap<String, String>> = seq.next_element()?.flatten();
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(JsonEntry(Entry { ts, line, metadata: metadata.map(|m| m.into_iter().collect()).unwrap_or_default() }))
            }
        }
        d.deserialize_seq(V)
    }
}

fn decode_json(body: &[u8]) -> Result<Vec<DecodedStream>, DecodeError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(DecodeError::Bad("invalid JSON push request: expected an object {\"streams\": [...]}".into()));
    }
    let req: JsonPush = serde_json::from_slice(body).map_err(|e| DecodeError::Bad(format!("invalid JSON push request: {e}")))?;
    Ok(req
        .streams
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .map(|s| DecodedStream {
            labels: LabelSet::from_pairs(s.stream.unwrap_or_default().into_iter().collect()),
            entries: s.values.unwrap_or_default().into_iter().flatten().map(|e| e.0).collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: BodyLimits = BodyLimits { max_decompressed: 1 << 20 };

    #[test]
    fn json_with_metadata_unknown_keys_and_nulls() {
        let body = br#"{"streams":[{"stream":{"job":"a","empty":""},"values":[["5","x",{"trace":"t"}],null,[6,"y",null,"extra"]],"other":1}, null],"x":true}"#;
        let s = decode_body(Some("application/json; charset=utf-8"), None, body, L).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].labels.to_string(), r#"{job="a"}"#);
        assert_eq!(s[0].entries.len(), 2);
        assert_eq!(s[0].entries[0].metadata, vec![("trace".to_string(), "t".to_string())]);
        assert_eq!(s[0].entries[1].ts, 6);
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        for body in [&b""[..], b"{", b"[]", br#"{"streams":[{"values":[["x","y"]]}]}"#, br#"{"streams":[{"values":[[]]}]}"#, br#"{"streams":[{"values":[["1",{"a":"b"}]]}]}"#] {
            assert!(decode_body(Some("application/json"), None, body, L).is_err(), "{}", String::from_utf8_lossy(body));
        }
        assert!(decode_body(Some("application/x-protobuf"), None, b"\xff\xff\xff\xff\x0f garbage", L).is_err());
        assert!(decode_body(Some("application/json"), Some("gzip"), b"not gzip", L).is_err());
        assert!(matches!(decode_body(None, Some("br"), b"", L), Err(DecodeError::Bad(m)) if m == "Content-Encoding \"br\" not supported"));
    }

    #[test]
    fn decompression_bombs_are_refused() {
        let big = vec![b' '; 2 << 20];
        let compressed = snap::raw::Encoder::new().compress_vec(&big).unwrap();
        let e = decode_body(Some("application/x-protobuf"), None, &compressed, L).unwrap_err();
        assert!(e.to_string().contains("decompressed message size too large"), "{e}");
    }
}
