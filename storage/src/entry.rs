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

    /// Bytes the entry counts for in limits and stats: line plus metadata.
    pub fn size(&self) -> usize {
        self.line.len() + self.metadata.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    }
}
