//! openraft's own storage test suite (`openraft::testing::Suite`: votes,
//! appends, truncation, purge, log state, membership and initial state
//! from log and state machine, snapshots) run against Balsa's Raft log
//! store (a group's keys in the node's shared RocksDB) and state machine.

use balsa_raft::state_machine::{bincode_decode, bincode_encode};
use balsa_raft::{GroupLog, ImageError, LogDb, NodeId, Replicated, StateMachine, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

/// The smallest state a group can replicate: the commands applied, counted.
#[derive(Default)]
struct Counter(u64);

impl Replicated for Counter {
    const SNAPSHOT_KIND: [u8; 4] = *b"TCNT";
    const IMAGE_VERSION: u16 = 1;
    type Image = u64;
    type ApplyError = std::convert::Infallible;

    fn image(&self) -> u64 {
        self.0
    }

    fn encode_image(image: &u64) -> Result<Vec<u8>, ImageError> {
        bincode_encode(image)
    }

    fn decode_image(_version: u16, bytes: &[u8]) -> Result<Self, ImageError> {
        Ok(Counter(bincode_decode(bytes)?))
    }

    fn apply(&mut self, _command: &[u8]) -> Result<Vec<u8>, Self::ApplyError> {
        self.0 += 1;
        Ok(Vec::new())
    }
}

/// A fresh data directory per test: its log database (group 7 of it: a
/// group's keys carry its id as a prefix) and a state machine whose
/// snapshot lives beside it. The directory lives as long as the test.
struct Fresh;

impl StoreBuilder<TypeConfig, GroupLog, StateMachine<Counter>, tempfile::TempDir> for Fresh {
    async fn build(&self) -> Result<(tempfile::TempDir, GroupLog, StateMachine<Counter>), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = LogDb::open(&dir.path().join("log")).expect("log database opens");
        let (sm, _shared) = StateMachine::<Counter>::open(dir.path().join("snapshot"))?;
        Ok((dir, db.group(7), sm))
    }
}

#[test]
fn log_store_and_state_machine_pass_openrafts_storage_suite() {
    Suite::test_all(Fresh).expect("every test of the suite passes");
}
