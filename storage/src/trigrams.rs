//! A block's trigram filter: which 3-byte sequences occur in its lines, as a
//! bit set with one hash (a Bloom filter with k = 1). A search for a string
//! skips, without decompressing it, every block missing one of the string's
//! trigrams. It can answer "maybe" wrongly, never "no".
//!
//! # Byte layout
//! `n` bytes, `n` a power of two from 8 to 8192, or empty. Bit `i` is bit
//! `i % 8` of byte `i / 8`. For each trigram `a b c` of a line, with
//! `h = ((a | b << 8 | c << 16) × 0x9E3779B97F4A7C15 mod 2^64) >> 48`, bit
//! `h mod 8n` is set. An empty filter says nothing: every string may occur.
//!
//! The writer sets bits in 65,536 and folds the set in halves (OR) while the
//! half stays at most [`MAX_FILL`] full, so a block of repetitive lines gets
//! a small filter; a block whose set is over half full at 65,536 bits
//! (random payloads) gets none. Logs of ~5,000 distinct trigrams per block
//! get 2 KiB, about 3 % of the block's compressed size.

/// Bits the writer starts from (8 KiB).
const FULL_BITS: usize = 1 << 16;
/// Smallest filter: one 64-bit word.
const MIN_BITS: usize = 64;
/// Largest share of set bits a filter is folded down to.
const MAX_FILL: f64 = 0.3;
/// Share of set bits at full size past which no filter is written.
const USELESS_FILL: f64 = 0.5;

fn hash(a: u8, b: u8, c: u8) -> usize {
    let t = u64::from(a) | u64::from(b) << 8 | u64::from(c) << 16;
    (t.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) as usize
}

/// Collects the trigrams of one block's lines.
pub struct TrigramBuilder {
    words: Vec<u64>,
}

impl Default for TrigramBuilder {
    fn default() -> Self {
        Self { words: vec![0; FULL_BITS / 64] }
    }
}

impl TrigramBuilder {
    /// Adds the trigrams of one line (none cross from one line to the next).
    pub fn add(&mut self, line: &[u8]) {
        for w in line.windows(3) {
            let h = hash(w[0], w[1], w[2]);
            self.words[h >> 6] |= 1 << (h & 63);
        }
    }

    /// The filter of what was added (see the module's layout), and a fresh
    /// start for the next block.
    pub fn finish(&mut self) -> Vec<u8> {
        let ones = |w: &[u64]| w.iter().map(|x| x.count_ones() as usize).sum::<usize>();
        let mut words = std::mem::replace(&mut self.words, vec![0; FULL_BITS / 64]);
        if ones(&words) as f64 > USELESS_FILL * FULL_BITS as f64 {
            return Vec::new();
        }
        while words.len() * 64 > MIN_BITS {
            let half = words.len() / 2;
            let folded: Vec<u64> = (0..half).map(|i| words[i] | words[i + half]).collect();
            if ones(&folded) as f64 > MAX_FILL * (half * 64) as f64 {
                break;
            }
            words = folded;
        }
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }
}

/// Whether `needle` may occur in a line of the block whose filter is
/// `filter`: false only when one of its trigrams is missing. Strings shorter
/// than three bytes, and empty filters, may always occur.
pub fn may_contain(filter: &[u8], needle: &[u8]) -> bool {
    if filter.is_empty() {
        return true;
    }
    let bits = filter.len() * 8;
    needle.windows(3).all(|w| {
        let i = hash(w[0], w[1], w[2]) & (bits - 1);
        filter[i >> 3] >> (i & 7) & 1 == 1
    })
}

/// Whether `filter`'s length is one a writer makes.
pub fn valid_len(len: usize) -> bool {
    len == 0 || (len.is_power_of_two() && (MIN_BITS / 8..=FULL_BITS / 8).contains(&len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn filter_of(lines: &[String]) -> Vec<u8> {
        let mut b = TrigramBuilder::default();
        for l in lines {
            b.add(l.as_bytes());
        }
        b.finish()
    }

    proptest! {
        /// Never a false "no": every substring of every line may occur.
        #[test]
        fn every_substring_of_a_line_may_occur(lines in proptest::collection::vec("[a-f0-9 =\"]{0,80}", 1..200), pick in any::<prop::sample::Index>(), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
            let f = filter_of(&lines);
            prop_assert!(valid_len(f.len()));
            let line = lines[pick.index(lines.len())].as_bytes();
            let (x, y) = (a.index(line.len() + 1), b.index(line.len() + 1));
            prop_assert!(may_contain(&f, &line[x.min(y)..x.max(y)]));
        }
    }

    #[test]
    fn strings_absent_from_repetitive_lines_are_ruled_out() {
        let lines: Vec<String> = (0..2000).map(|i| format!("level=info status={} msg=\"request completed\" trace={:08x}", 200 + i % 5, i * 7919)).collect();
        let f = filter_of(&lines);
        assert!(f.len() <= 2048, "folded small: {} bytes", f.len());
        assert!(may_contain(&f, b"request completed"));
        assert!(may_contain(&f, b"ab"), "too short to rule out");
        assert!(!may_contain(&f, b"rare-needle-7f3a"));
        assert!(!may_contain(&f, b"panic"));
        // No trigram crosses lines: the end of one and the start of the next.
        assert!(!may_contain(&filter_of(&["abc".into(), "xyz".into()]), b"abcxyz"));
    }

    #[test]
    fn random_lines_get_no_filter() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let lines: Vec<String> = (0..3000)
            .map(|_| {
                (0..80)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        char::from(b' ' + (x % 95) as u8)
                    })
                    .collect()
            })
            .collect();
        let f = filter_of(&lines);
        assert!(f.is_empty());
        assert!(may_contain(&f, b"anything"));
    }
}
