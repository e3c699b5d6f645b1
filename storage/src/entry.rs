//! One log entry.

use serde::{Deserialize, Serialize};

/// A structured-metadata label attached to one entry.
pub type MetadataPair = (String, String);

/// A log line with its timestamp (Unix nanoseconds) and structured metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub ts: i64,
    pub line: String,
    pub metadata: Vec<MetadataPair>,
}

impl Entry {
    /// An entry without structured metadata.
    pub fn new(ts: i64, line: impl Into<String>) -> Self {
        Self { ts, line: line.into(), metadata: Vec::new() }
    }

    /// The entry as its parts: timestamp, line, metadata (what LogQL's
    /// pipeline takes).
    pub fn into_parts(self) -> (i64, String, Vec<MetadataPair>) {
        (self.ts, self.line, self.metadata)
    }

    /// A hash of what makes two entries at one timestamp the same (line
    /// and metadata; Loki's duplicate rule), for indexes of crowded
    /// timestamps.
    pub fn same_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.line.hash(&mut h);
        self.metadata.hash(&mut h);
        h.finish()
    }

    /// Bytes the entry counts for in limits and stats: line plus metadata.
    pub fn size(&self) -> usize {
        self.line.len() + self.metadata.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    }
}
