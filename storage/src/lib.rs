//! Storage formats of Balsa: how log entries are held and how they are laid
//! out in bytes.
//!
//! What this crate owns:
//! - [`Entry`]: one log line with its timestamp and structured metadata.
//! - [`HeadBlock`]: the in-memory, not yet flushed entries of one stream,
//!   ordered by time, with Loki's duplicate rule.
//! - [`envelope`]: the versioned, CRC32C-checksummed frame around every blob
//!   Balsa writes to disk (state-machine snapshots today), so corruption is
//!   detected rather than served.
//!
//! It does no I/O and knows nothing of Raft, HTTP or tenants.
//!
//! ```
//! use balsa_storage::{Entry, HeadBlock, Direction};
//!
//! let mut head = HeadBlock::default();
//! assert!(head.push(Entry::new(2, "b")));
//! assert!(head.push(Entry::new(1, "a")));
//! assert!(!head.push(Entry::new(1, "a")), "same ts, line and metadata: duplicate");
//! let lines: Vec<_> = head.range(0, 10, Direction::Forward).map(|e| e.line.as_str()).collect();
//! assert_eq!(lines, ["a", "b"]);
//! ```

mod entry;
pub mod envelope;
mod head;

pub use entry::{Entry, MetadataPair};
pub use head::{Direction, HeadBlock};
