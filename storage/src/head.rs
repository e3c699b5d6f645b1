//! The unflushed entries of one stream.
//!
//! PERFORMANCE-CRITICAL PATH: every accepted entry is pushed here on apply,
//! and every query of recent data scans it.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::Entry;

/// Order in which a query wants entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first (Loki's default).
    Backward,
}

/// Entries of one stream ordered by timestamp; entries with equal timestamps
/// keep their arrival order.
#[derive(Clone, Debug, Default)]
pub struct HeadBlock {
    by_ts: BTreeMap<i64, Vec<Entry>>,
    len: usize,
    bytes: usize,
    /// For timestamps holding many entries: positions by a hash of line
    /// and metadata, so the duplicate check stays linear in the entries
    /// pushed (a push of a million lines at one timestamp would otherwise
    /// compare each with every earlier one). Rebuilt on demand.
    index: HashMap<i64, HashMap<u64, Vec<usize>>>,
}

/// Below this many entries at one timestamp, duplicates are found by
/// comparing them all.
const INDEX_FROM: usize = 16;

/// Positions of `entries` by [`Entry::same_hash`].
fn index_of(entries: &[Entry]) -> HashMap<u64, Vec<usize>> {
    let mut index: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        index.entry(e.same_hash()).or_default().push(i);
    }
    index
}

impl HeadBlock {
    /// Adds `entry` unless the block holds one equal in timestamp, line and
    /// structured metadata (Loki's duplicate rule, which makes a retried push
    /// harmless). Returns whether it was added.
    pub fn push(&mut self, entry: Entry) -> bool {
        let same_ts = self.by_ts.entry(entry.ts).or_default();
        let same = |e: &Entry| e.line == entry.line && e.metadata == entry.metadata;
        if same_ts.len() < INDEX_FROM {
            if same_ts.iter().any(same) {
                return false;
            }
        } else {
            let index = self.index.entry(entry.ts).or_insert_with(|| index_of(same_ts));
            let at = index.entry(entry.same_hash()).or_default();
            if at.iter().any(|&i| same(&same_ts[i])) {
                return false;
            }
            at.push(same_ts.len());
        }
        self.len += 1;
        self.bytes += entry.size();
        same_ts.push(entry);
        true
    }

    /// Takes every entry out, oldest first, leaving the block empty.
    pub fn take_all(&mut self) -> Vec<Entry> {
        self.len = 0;
        self.bytes = 0;
        self.index.clear();
        std::mem::take(&mut self.by_ts).into_values().flatten().collect()
    }

    /// The entries by timestamp, in arrival order within one: what a
    /// snapshot keeps of a head.
    pub fn by_ts(&self) -> &BTreeMap<i64, Vec<Entry>> {
        &self.by_ts
    }

    /// The head holding `by_ts` (read back from a snapshot), its counts
    /// recomputed.
    pub fn from_by_ts(by_ts: BTreeMap<i64, Vec<Entry>>) -> Self {
        let (len, bytes) = by_ts.values().flatten().fold((0, 0), |(n, b), e| (n + 1, b + e.size()));
        HeadBlock { by_ts, len, bytes, index: HashMap::new() }
    }

    /// Timestamp of the newest entry.
    pub fn newest_ts(&self) -> Option<i64> {
        self.by_ts.keys().next_back().copied()
    }

    /// Timestamp of the oldest entry.
    pub fn oldest_ts(&self) -> Option<i64> {
        self.by_ts.keys().next().copied()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the block has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of lines and metadata held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries with `from <= ts < through`, in `direction` order.
    pub fn range(&self, from: i64, through: i64, direction: Direction) -> Box<dyn Iterator<Item = &Entry> + '_> {
        if from >= through {
            return Box::new(std::iter::empty());
        }
        let r = self.by_ts.range(from..through);
        match direction {
            Direction::Forward => Box::new(r.flat_map(|(_, v)| v.iter())),
            Direction::Backward => Box::new(r.rev().flat_map(|(_, v)| v.iter().rev())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn metadata_distinguishes_entries() {
        let mut h = HeadBlock::default();
        let mut e = Entry::new(5, "x");
        assert!(h.push(e.clone()));
        e.metadata.push(("trace_id".into(), "1".into()));
        assert!(h.push(e.clone()), "different metadata: not a duplicate");
        assert!(!h.push(e));
        assert_eq!(h.len(), 2);
    }

    /// Many lines at one timestamp (a client's batch without times set):
    /// each push is checked against its timestamp's index, not every
    /// earlier line, and retried lines are still found.
    #[test]
    fn many_lines_at_one_timestamp() {
        let mut h = HeadBlock::default();
        for i in 0..200_000 {
            assert!(h.push(Entry::new(7, format!("{i}"))));
        }
        for i in (0..200_000).step_by(1000) {
            assert!(!h.push(Entry::new(7, format!("{i}"))), "a retried line is a duplicate");
        }
        assert_eq!(h.len(), 200_000);
        assert_eq!(h.take_all().len(), 200_000);
        assert!(h.push(Entry::new(7, "0")), "an emptied block forgets its index");
    }

    proptest! {
        /// Crowded timestamps (the index) deduplicate as sparse ones do.
        #[test]
        fn crowded_timestamps_deduplicate(ts in proptest::collection::vec((0i64..3, 0u8..60), 0..400)) {
            let mut h = HeadBlock::default();
            let mut want = std::collections::BTreeSet::new();
            for (t, l) in &ts {
                prop_assert_eq!(h.push(Entry::new(*t, format!("l{l}"))), want.insert((*t, format!("l{l}"))));
            }
            let got: Vec<(i64, String)> = h.range(0, 3, Direction::Forward).map(|e| (e.ts, e.line.clone())).collect();
            prop_assert_eq!(got.len(), want.len());
        }

        /// Whatever the arrival order, a range comes out sorted, complete and
        /// without duplicates, and backward is forward reversed.
        #[test]
        fn range_is_sorted_and_deduplicated(ts in proptest::collection::vec((0i64..50, 0u8..4), 0..200),
                                            from in 0i64..50, len in 0i64..60) {
            let mut h = HeadBlock::default();
            let mut want = std::collections::BTreeSet::new();
            for (t, l) in &ts {
                h.push(Entry::new(*t, format!("l{l}")));
                want.insert((*t, format!("l{l}")));
            }
            prop_assert_eq!(h.len(), want.len());
            let fwd: Vec<(i64, String)> = h.range(from, from + len, Direction::Forward).map(|e| (e.ts, e.line.clone())).collect();
            let mut sorted = fwd.clone();
            sorted.sort_by_key(|e| e.0);
            prop_assert_eq!(&fwd, &sorted);
            let expect: Vec<_> = want.iter().filter(|(t, _)| *t >= from && *t < from + len).collect();
            prop_assert_eq!(fwd.len(), expect.len());
            let mut bwd: Vec<_> = h.range(from, from + len, Direction::Backward).map(|e| (e.ts, e.line.clone())).collect();
            bwd.reverse();
            prop_assert_eq!(fwd, bwd);
        }
    }
}
