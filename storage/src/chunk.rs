//! The chunk format: a stream's entries for a time range, compressed in
//! blocks, each block checksummed, with a footer index for skipping blocks
//! outside a query's time range. Encoding is deterministic: the same entries
//! and codec always give the same bytes, so every replica (and a new leader
//! repeating an upload) produces the same object.
//!
//! PERFORMANCE-CRITICAL PATH: queries of flushed data decode blocks here.
//!
//! # Byte layout, version 2
//! ```text
//! header   "BCHK" | version u8 = 2 | codec u8
//! blocks   block 0 | block 1 | ...          (each compressed with the codec)
//! footer   varint block count, then per block:
//!            varint offset | varint compressed len | varint raw len
//!            varint entries | zigzag-varint min ts | zigzag-varint max ts
//!            u32 LE CRC32C of the compressed bytes
//!            varint filter len | the block's trigram filter   (version 2)
//! trailer  u64 LE footer offset | u32 LE CRC32C of the footer | "BCHK"
//! ```
//! Version 1 is version 2 without the filters; both are read. The filter
//! (see [`crate::trigrams`]) lets a search for a string skip a block
//! without decompressing it.
//! A block's raw bytes are its entries in timestamp order:
//! `zigzag-varint (ts - previous ts)`, `varint len` + line,
//! `varint pairs` + (`varint len` + name, `varint len` + value) per pair.
//! The first entry of a block is a delta from 0.

use crate::trigrams::{self, TrigramBuilder};
use crate::Entry;

const MAGIC: &[u8; 4] = b"BCHK";
/// Version of the layout written by [`encode`].
pub const CHUNK_VERSION: u8 = 2;
/// The version before trigram filters, still read.
const CHUNK_VERSION_NO_FILTERS: u8 = 1;
/// Uncompressed bytes at which a block is closed.
pub const BLOCK_TARGET: usize = 256 << 10;
/// Largest raw block accepted on read: the target plus one maximal entry,
/// with room to spare. A larger claim is corruption, not an allocation.
const MAX_RAW_BLOCK: usize = 16 << 20;
const HEADER: usize = 6;
const TRAILER: usize = 16;

/// Compression of a chunk's blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Codec {
    None,
    #[default]
    Zstd,
    Lz4,
    Snappy,
}

impl Codec {
    fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Zstd => 1,
            Codec::Lz4 => 2,
            Codec::Snappy => 3,
        }
    }

    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Codec::None,
            1 => Codec::Zstd,
            2 => Codec::Lz4,
            3 => Codec::Snappy,
            _ => return None,
        })
    }

    /// Parses a configuration value: `none`, `zstd`, `lz4`, `snappy`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Codec::None,
            "zstd" => Codec::Zstd,
            "lz4" => Codec::Lz4,
            "snappy" => Codec::Snappy,
            _ => return None,
        })
    }

    /// Compresses a block. A failure is an error: storing the raw bytes
    /// under this codec's id would make a chunk no reader can decode.
    fn compress(self, raw: &[u8]) -> Result<Vec<u8>, ChunkError> {
        let failed = |e: String| ChunkError::Encode(format!("{self:?} compression failed: {e}"));
        Ok(match self {
            Codec::None => raw.to_vec(),
            // Level 3, single-threaded: deterministic output.
            Codec::Zstd => zstd::bulk::compress(raw, 3).map_err(|e| failed(e.to_string()))?,
            Codec::Lz4 => lz4_flex::compress(raw),
            Codec::Snappy => snap::raw::Encoder::new().compress_vec(raw).map_err(|e| failed(e.to_string()))?,
        })
    }

    /// Decompresses a block of `raw_len` bytes into `s.block` (replacing
    /// what was there).
    fn decompress(self, data: &[u8], raw_len: usize, s: &mut Scratch) -> Result<(), ChunkError> {
        let bad = |e: String| ChunkError::Corrupt(format!("cannot decompress block: {e}"));
        let out = &mut s.block;
        out.clear();
        match self {
            Codec::None => out.extend_from_slice(data),
            Codec::Zstd => {
                let z = match &mut s.zstd {
                    Some(z) => z,
                    empty => empty.insert(zstd::bulk::Decompressor::new().map_err(|e| bad(e.to_string()))?),
                };
                out.reserve(raw_len);
                z.decompress_to_buffer(data, out).map_err(|e| bad(e.to_string()))?;
            }
            Codec::Lz4 => {
                out.resize(raw_len, 0);
                let n = lz4_flex::decompress_into(data, out).map_err(|e| bad(e.to_string()))?;
                out.truncate(n);
            }
            Codec::Snappy => {
                let n = snap::raw::decompress_len(data).map_err(|e| bad(e.to_string()))?;
                if n != raw_len {
                    return Err(bad(format!("snappy length {n}, expected {raw_len}")));
                }
                out.resize(n, 0);
                snap::raw::Decoder::new().decompress(data, out).map_err(|e| bad(e.to_string()))?;
            }
        }
        Ok(())
    }
}

/// What reading blocks reuses on one thread: the decompressed block and a
/// zstd context. A fresh 256 KiB buffer and context per block cost page
/// faults and context setup on every block read.
#[derive(Default)]
struct Scratch {
    block: Vec<u8>,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Why chunk bytes could not be read or written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("cannot encode chunk: {0}")]
    Encode(String),
    #[error("corrupt chunk: {0}")]
    Corrupt(String),
    #[error("unsupported chunk version {0}")]
    Version(u8),
}

fn corrupt(what: &str) -> ChunkError {
    ChunkError::Corrupt(what.to_string())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ChunkError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos).ok_or_else(|| corrupt("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
        }
        Err(corrupt("varint too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ChunkError> {
        let n = usize::try_from(self.varint()?).map_err(|_| corrupt("length overflow"))?;
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| corrupt("truncated field"))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32_le(&mut self) -> Result<u32, ChunkError> {
        let s = self.b.get(self.pos..self.pos + 4).ok_or_else(|| corrupt("truncated u32"))?;
        self.pos += 4;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

/// Where a block is and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockMeta {
    pub offset: usize,
    pub len: usize,
    pub raw_len: usize,
    pub entries: usize,
    pub min_ts: i64,
    pub max_ts: i64,
    crc: u32,
    /// Where the block's trigram filter lies in the chunk (empty: none).
    filter: std::ops::Range<usize>,
}

/// Encodes entries (sorted by timestamp) as a chunk.
pub fn encode(entries: &[Entry], codec: Codec) -> Result<Vec<u8>, ChunkError> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.push(CHUNK_VERSION);
    out.push(codec.id());
    let mut metas = Vec::new();
    let mut filters = Vec::new();
    let mut trigrams = TrigramBuilder::default();
    let mut raw = Vec::new();
    let (mut prev, mut count, mut min_ts, mut max_ts) = (0i64, 0usize, i64::MAX, i64::MIN);
    let mut flush = |raw: &mut Vec<u8>, trigrams: &mut TrigramBuilder, count: &mut usize, min_ts: &mut i64, max_ts: &mut i64, out: &mut Vec<u8>| {
        if *count == 0 {
            return Ok(());
        }
        let data = codec.compress(raw)?;
        metas.push(BlockMeta {
            offset: out.len(),
            len: data.len(),
            raw_len: raw.len(),
            entries: *count,
            min_ts: *min_ts,
            max_ts: *max_ts,
            crc: crc32c::crc32c(&data),
            filter: 0..0,
        });
        filters.push(trigrams.finish());
        out.extend_from_slice(&data);
        raw.clear();
        *count = 0;
        *min_ts = i64::MAX;
        *max_ts = i64::MIN;
        Ok(())
    };
    for e in entries {
        if count == 0 {
            prev = 0;
        }
        put_varint(&mut raw, zigzag(e.ts.wrapping_sub(prev)));
        prev = e.ts;
        put_varint(&mut raw, e.line.len() as u64);
        raw.extend_from_slice(e.line.as_bytes());
        trigrams.add(e.line.as_bytes());
        put_varint(&mut raw, e.metadata.len() as u64);
        for (k, v) in &e.metadata {
            put_varint(&mut raw, k.len() as u64);
            raw.extend_from_slice(k.as_bytes());
            put_varint(&mut raw, v.len() as u64);
            raw.extend_from_slice(v.as_bytes());
        }
        count += 1;
        min_ts = min_ts.min(e.ts);
        max_ts = max_ts.max(e.ts);
        if raw.len() >= BLOCK_TARGET {
            flush(&mut raw, &mut trigrams, &mut count, &mut min_ts, &mut max_ts, &mut out)?;
        }
    }
    flush(&mut raw, &mut trigrams, &mut count, &mut min_ts, &mut max_ts, &mut out)?;
    write_footer(&mut out, &metas, Some(&filters));
    Ok(out)
}

/// Appends the footer and trailer of blocks `metas` to `out` (holding the
/// header and blocks), with each block's trigram filter (version 2) or
/// without (version 1).
fn write_footer(out: &mut Vec<u8>, metas: &[BlockMeta], filters: Option<&[Vec<u8>]>) {
    let footer_at = out.len();
    let mut footer = Vec::new();
    put_varint(&mut footer, metas.len() as u64);
    for (i, m) in metas.iter().enumerate() {
        put_varint(&mut footer, m.offset as u64);
        put_varint(&mut footer, m.len as u64);
        put_varint(&mut footer, m.raw_len as u64);
        put_varint(&mut footer, m.entries as u64);
        put_varint(&mut footer, zigzag(m.min_ts));
        put_varint(&mut footer, zigzag(m.max_ts));
        footer.extend_from_slice(&m.crc.to_le_bytes());
        if let Some(filter) = filters.and_then(|f| f.get(i)) {
            put_varint(&mut footer, filter.len() as u64);
            footer.extend_from_slice(filter);
        }
    }
    out.extend_from_slice(&footer);
    out.extend_from_slice(&(footer_at as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&footer).to_le_bytes());
    out.extend_from_slice(MAGIC);
}

/// A chunk whose header and footer have been checked; blocks are decoded
/// (and their checksums verified) on demand.
#[derive(Debug)]
pub struct Chunk<'a> {
    bytes: &'a [u8],
    codec: Codec,
    pub blocks: Vec<BlockMeta>,
}

impl<'a> Chunk<'a> {
    /// Checks magic, version, trailer and footer checksum.
    pub fn open(bytes: &'a [u8]) -> Result<Self, ChunkError> {
        if bytes.len() < HEADER + TRAILER {
            return Err(corrupt("too short"));
        }
        if &bytes[..4] != MAGIC || &bytes[bytes.len() - 4..] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let version = bytes[4];
        if version != CHUNK_VERSION && version != CHUNK_VERSION_NO_FILTERS {
            return Err(ChunkError::Version(version));
        }
        let codec = Codec::from_id(bytes[5]).ok_or_else(|| corrupt("unknown codec"))?;
        let t = bytes.len() - TRAILER;
        let mut off = [0u8; 8];
        off.copy_from_slice(&bytes[t..t + 8]);
        let footer_at = usize::try_from(u64::from_le_bytes(off)).map_err(|_| corrupt("footer offset"))?;
        if footer_at < HEADER || footer_at > t {
            return Err(corrupt("footer offset out of range"));
        }
        let footer = &bytes[footer_at..t];
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&bytes[t + 8..t + 12]);
        if crc32c::crc32c(footer) != u32::from_le_bytes(crc) {
            return Err(corrupt("footer checksum mismatch"));
        }
        let mut r = Reader { b: footer, pos: 0 };
        let n = r.varint()?;
        let mut blocks = Vec::new();
        for _ in 0..n {
            let to_usize = |v: u64| usize::try_from(v).map_err(|_| corrupt("block field overflow"));
            let mut m = BlockMeta {
                offset: to_usize(r.varint()?)?,
                len: to_usize(r.varint()?)?,
                raw_len: to_usize(r.varint()?)?,
                entries: to_usize(r.varint()?)?,
                min_ts: unzigzag(r.varint()?),
                max_ts: unzigzag(r.varint()?),
                crc: r.u32_le()?,
                filter: 0..0,
            };
            if version >= 2 {
                let f = r.bytes()?;
                if !trigrams::valid_len(f.len()) {
                    return Err(corrupt("trigram filter of a length no writer makes"));
                }
                let at = footer_at + (r.pos - f.len());
                m.filter = at..at + f.len();
            }
            if m.offset < HEADER || m.offset.checked_add(m.len).is_none_or(|e| e > footer_at) {
                return Err(corrupt("block out of range"));
            }
            if m.raw_len > MAX_RAW_BLOCK {
                return Err(corrupt("block larger than any writer makes"));
            }
            blocks.push(m);
        }
        Ok(Self { bytes, codec, blocks })
    }

    /// Entries with `from <= ts < through`, ascending; only blocks that
    /// overlap the range are decompressed, each checked against its CRC.
    pub fn entries(&self, from: i64, through: i64) -> Result<Vec<Entry>, ChunkError> {
        self.entries_where(from, through, &|_: &str| true, &mut Decoded::default())
    }

    /// Like [`Chunk::entries`], keeping only entries whose line passes
    /// `sieve`, tested before anything is copied out of the block. Adds to
    /// `decoded` the entries in the range of the blocks it decompressed and
    /// their line bytes, kept or not (blocks the sieve rules out by their
    /// trigram filter are neither decompressed nor counted).
    pub fn entries_where(&self, from: i64, through: i64, sieve: &impl LineSieve, decoded: &mut Decoded) -> Result<Vec<Entry>, ChunkError> {
        // Taken out of the thread's slot while in use: `sieve` runs in between.
        let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        let out = self.read_blocks(from, through, sieve, decoded, &mut scratch);
        if scratch.block.capacity() > 4 << 20 {
            scratch.block = Vec::new(); // an outsized block is not kept for the thread's life
        }
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
        out
    }

    fn read_blocks(
        &self,
        from: i64,
        through: i64,
        sieve: &impl LineSieve,
        decoded: &mut Decoded,
        scratch: &mut Scratch,
    ) -> Result<Vec<Entry>, ChunkError> {
        let mut out = Vec::new();
        for m in self.blocks.iter().filter(|m| m.max_ts >= from && m.min_ts < through) {
            // The trigram filter rules out most blocks of a search for a
            // rare string before they are decompressed.
            let filter = &self.bytes[m.filter.clone()];
            if !sieve.may_hold(&|s: &[u8]| trigrams::may_contain(filter, s)) {
                continue;
            }
            let data = &self.bytes[m.offset..m.offset + m.len];
            if crc32c::crc32c(data) != m.crc {
                return Err(corrupt("block checksum mismatch"));
            }
            self.codec.decompress(data, m.raw_len, scratch)?;
            let raw = &scratch.block;
            if raw.len() != m.raw_len {
                return Err(corrupt("block length mismatch"));
            }
            // One pass over the whole block rules out the rest (and every
            // block of a version 1 chunk); their entries are only counted.
            let may_hold = sieve.may_hold_within(raw);
            let mut r = Reader { b: raw, pos: 0 };
            let mut prev = 0i64;
            for _ in 0..m.entries {
                let ts = prev.wrapping_add(unzigzag(r.varint()?));
                prev = ts;
                let line = r.bytes()?;
                let in_range = ts >= from && ts < through;
                if in_range {
                    decoded.lines += 1;
                    decoded.bytes += line.len() as u64;
                }
                let text = if in_range && may_hold { Some(std::str::from_utf8(line).map_err(|_| corrupt("invalid UTF-8"))?) } else { None };
                let wanted = text.filter(|l| sieve.keep(l));
                let pairs = r.varint()?;
                let mut metadata = Vec::new();
                for _ in 0..pairs {
                    let (k, v) = (r.bytes()?, r.bytes()?);
                    if wanted.is_some() {
                        let s = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| corrupt("invalid UTF-8"));
                        metadata.push((s(k)?, s(v)?));
                    }
                }
                if let Some(line) = wanted {
                    out.push(Entry { ts, line: line.to_string(), metadata });
                }
            }
        }
        Ok(out)
    }
}

/// Which lines a chunk read keeps.
pub trait LineSieve {
    /// False when no kept line can be in a block of which `occurs(s)` tells
    /// whether string `s` may occur in one of its lines (false: it does
    /// not), asked with the block's trigram filter: a block ruled out is
    /// not decompressed. True when unsure.
    fn may_hold(&self, occurs: &dyn Fn(&[u8]) -> bool) -> bool {
        let _ = occurs;
        true
    }

    /// False when no kept line can be among `raw`, a block's decompressed
    /// bytes (every line lies whole in them): the block's lines are then
    /// not looked at. By default: [`LineSieve::may_hold`] with a search of
    /// `raw` for each string.
    fn may_hold_within(&self, raw: &[u8]) -> bool {
        self.may_hold(&|s: &[u8]| memchr::memmem::find(raw, s).is_some())
    }

    /// Whether `line` is kept.
    fn keep(&self, line: &str) -> bool;
}

impl<F: Fn(&str) -> bool> LineSieve for F {
    fn keep(&self, line: &str) -> bool {
        self(line)
    }
}

/// What reading chunks decoded: entries in the asked range of the blocks
/// decompressed and the bytes of their lines, whether kept or not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    pub lines: u64,
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entries() -> impl Strategy<Value = Vec<Entry>> {
        proptest::collection::vec(
            (any::<i32>(), ".{0,300}", proptest::collection::vec(("[a-z]{1,5}", ".{0,10}"), 0..3)),
            0..300,
        )
        .prop_map(|v| {
            let mut e: Vec<Entry> = v.into_iter().map(|(t, line, metadata)| Entry { ts: i64::from(t) * 1000, line, metadata }).collect();
            e.sort_by_key(|e| e.ts);
            e
        })
    }

    proptest! {
        #[test]
        fn round_trips_with_every_codec(e in entries(), codec in prop_oneof![Just(Codec::None), Just(Codec::Zstd), Just(Codec::Lz4), Just(Codec::Snappy)]) {
            let bytes = encode(&e, codec).unwrap();
            prop_assert_eq!(&bytes, &encode(&e, codec).unwrap(), "deterministic");
            let c = Chunk::open(&bytes).unwrap();
            prop_assert_eq!(c.entries(i64::MIN, i64::MAX).unwrap(), e.clone());
            if let (Some(first), Some(last)) = (e.first(), e.last()) {
                let mid = first.ts + (last.ts - first.ts) / 2;
                let want: Vec<Entry> = e.iter().filter(|x| x.ts >= mid && x.ts < last.ts).cloned().collect();
                prop_assert_eq!(c.entries(mid, last.ts).unwrap(), want);
            }
        }

        /// Any flipped bit or truncation is an error, never wrong entries or a panic.
        #[test]
        fn corruption_is_detected(e in entries().prop_filter("non-empty", |e| !e.is_empty()), pos in any::<prop::sample::Index>(), bit in 0u8..8, cut in any::<prop::sample::Index>()) {
            let bytes = encode(&e, Codec::Zstd).unwrap();
            let mut flipped = bytes.clone();
            let i = pos.index(flipped.len());
            flipped[i] ^= 1 << bit;
            let r = Chunk::open(&flipped).and_then(|c| c.entries(i64::MIN, i64::MAX));
            prop_assert!(r.is_err() || r.as_ref().ok() == Some(&e), "a flip changed the data silently");
            let c = cut.index(bytes.len());
            prop_assert!(Chunk::open(&bytes[..c]).and_then(|c| c.entries(i64::MIN, i64::MAX)).is_err());
        }
    }

    /// Keeps lines containing a string, ruling out blocks without it.
    struct Contains<'a>(&'a str);

    impl LineSieve for Contains<'_> {
        fn may_hold(&self, occurs: &dyn Fn(&[u8]) -> bool) -> bool {
            occurs(self.0.as_bytes())
        }

        fn keep(&self, line: &str) -> bool {
            line.contains(self.0)
        }
    }

    /// `bytes` as version 1 wrote them: no trigram filters.
    fn as_version_1(bytes: &[u8]) -> Vec<u8> {
        let c = Chunk::open(bytes).unwrap();
        let mut out = bytes[..c.blocks.last().map_or(HEADER, |m| m.offset + m.len)].to_vec();
        out[4] = CHUNK_VERSION_NO_FILTERS;
        write_footer(&mut out, &c.blocks, None);
        out
    }

    /// Blocks ruled out whole (by their trigram filter, or in version 1
    /// chunks by a search of their bytes) give the same entries as testing
    /// every line; only blocks decompressed count as decoded.
    #[test]
    fn blocks_ruled_out_whole_read_like_every_line_tested() {
        let e: Vec<Entry> = (0..20_000)
            .map(|i| {
                let line = if i % 7_000 == 3 { format!("line {i} rare-needle") } else { format!("line {i} {}", "x".repeat(40)) };
                Entry { ts: i, line, metadata: vec![("k".into(), "needle-in-metadata".into())] }
            })
            .collect();
        let bytes = encode(&e, Codec::Zstd).unwrap();
        let v1 = as_version_1(&bytes);
        for (version, bytes) in [(2, &bytes), (1, &v1)] {
            let c = Chunk::open(bytes).unwrap();
            assert!(c.blocks.len() > 3);
            for (from, through) in [(0, 20_000), (3, 14_004), (5_000, 5_001)] {
                let (mut by_line, mut by_block) = (Decoded::default(), Decoded::default());
                let every_line = c.entries_where(from, through, &|l: &str| l.contains("rare-needle"), &mut by_line).unwrap();
                let sieved = c.entries_where(from, through, &Contains("rare-needle"), &mut by_block).unwrap();
                assert_eq!(sieved, every_line);
                let in_range: Vec<&Entry> = e.iter().filter(|x| x.ts >= from && x.ts < through).collect();
                assert_eq!(by_line.lines, in_range.len() as u64);
                assert_eq!(by_line.bytes, in_range.iter().map(|x| x.line.len() as u64).sum::<u64>());
                if version == 1 {
                    assert_eq!(by_block, by_line, "every block decompressed");
                }
            }
            let mut decoded = Decoded::default();
            let found = c.entries_where(0, 20_000, &Contains("rare-needle"), &mut decoded).unwrap();
            assert_eq!(found.iter().map(|x| x.ts).collect::<Vec<_>>(), vec![3, 7_003, 14_003]);
            assert_eq!(found[0].metadata, e[3].metadata);
            if version == 2 {
                // Only the blocks holding a needle are decompressed.
                let holding: usize = c.blocks.iter().filter(|m| found.iter().any(|x| (m.min_ts..=m.max_ts).contains(&x.ts))).map(|m| m.entries).sum();
                assert!(holding < 20_000 * 2 / 3);
                assert_eq!(decoded.lines, holding as u64);
            }
        }
    }

    #[test]
    fn large_chunks_have_several_blocks() {
        let e: Vec<Entry> = (0..20_000).map(|i| Entry::new(i, format!("line {i} {}", "x".repeat(40)))).collect();
        let bytes = encode(&e, Codec::Zstd).unwrap();
        let c = Chunk::open(&bytes).unwrap();
        assert!(c.blocks.len() > 2);
        assert!(bytes.len() < 1_000_000 / 5, "compressed: {}", bytes.len());
        assert_eq!(c.entries(19_990, 20_000).unwrap().len(), 10);
    }
}
