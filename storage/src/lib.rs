//! Storage of Balsa: how log entries are held in memory, laid out in bytes,
//! and kept in object storage.
//!
//! What this crate owns:
//! - [`Entry`]: one log line with its timestamp and structured metadata.
//! - [`HeadBlock`]: the in-memory, not yet flushed entries of one stream,
//!   ordered by time, with Loki's duplicate rule.
//! - [`chunk`]: the compressed, checksummed chunk format of flushed entries;
//!   [`trigrams`]: the per-block filter that lets a string search skip blocks.
//! - [`index`]: index segments, the catalogue of flushed chunks.
//! - [`keys`]: the bucket's layout, every object key it builds and reads.
//! - [`envelope`]: the versioned, CRC32C-checksummed frame around snapshots
//!   and index segments, so corruption is detected rather than served.
//! - [`object_store`]: the object-store trait and its filesystem backend;
//!   [`s3`]: the S3 backend.
//!
//! It knows nothing of Raft, HTTP or tenants' limits.
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

pub mod chunk;
mod entry;
pub mod envelope;
mod head;
pub mod index;
pub mod keys;
pub mod object_store;
pub mod s3;
pub mod trigrams;

pub use entry::{Entry, MetadataPair};
pub use head::{Direction, HeadBlock};
