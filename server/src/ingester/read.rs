//! What queriers ask of a partition's leader, and its answers. Both travel
//! as bincode between nodes; [`Ingester::serve_read`] answers on the leader
//! after a linearizable read barrier.

use balsa_storage::index::ChunkRef;
use balsa_storage::Entry;
use serde::{Deserialize, Serialize};

use super::{Ingester, IngesterError};
use balsa_logql::labels::LabelSet;
use balsa_logql::{CompileError, LineFilter, LineFilterSpec, MatchOp, Matcher};

/// A label matcher in wire form.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireMatcher {
    pub name: String,
    /// `=`, `!=`, `=~` or `!~`.
    pub op: String,
    pub value: String,
}

impl WireMatcher {
    pub fn from_matcher(m: &Matcher) -> Self {
        let op = match m.op {
            MatchOp::Eq => "=",
            MatchOp::Neq => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        };
        Self { name: m.name.clone(), op: op.into(), value: m.value.clone() }
    }

    fn to_matcher(&self) -> Result<Matcher, WireError> {
        let op = match self.op.as_str() {
            "=" => MatchOp::Eq,
            "!=" => MatchOp::Neq,
            "=~" => MatchOp::Re,
            "!~" => MatchOp::Nre,
            o => return Err(WireError::Operator(o.into())),
        };
        Ok(Matcher::new(self.name.clone(), op, self.value.clone())?)
    }
}

pub fn wire_matchers(ms: &[Matcher]) -> Vec<WireMatcher> {
    ms.iter().map(WireMatcher::from_matcher).collect()
}

fn matchers(ws: &[WireMatcher]) -> Result<Vec<Matcher>, WireError> {
    ws.iter().map(WireMatcher::to_matcher).collect()
}

/// Why a read request from a querier cannot be served as sent.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("unknown matcher operator {0}")]
    Operator(String),
    #[error(transparent)]
    Compile(#[from] CompileError),
}

/// How a querier's read of unflushed data is served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadConsistency {
    /// On the leader after confirming its leadership with a quorum (read
    /// index): sees every write acknowledged before the query. The default.
    #[default]
    Linearizable,
    /// On the node that believes it leads, without the quorum round: one
    /// RPC cheaper; during a leader change it may miss the newest writes.
    Leader,
    /// On any replica (this process's own if it hosts one): cheapest, and
    /// may lag the leader by what is still being replicated.
    Any,
}

impl ReadConsistency {
    pub fn name(self) -> &'static str {
        match self {
            ReadConsistency::Linearizable => "linearizable",
            ReadConsistency::Leader => "leader",
            ReadConsistency::Any => "any",
        }
    }
}

/// A read of one partition.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ReadRequest {
    /// Unflushed entries in `[from, through)` of the tenant's streams
    /// matching every matcher and passing every line filter (the query's
    /// leading ones, applied where the entries are), and the tenant's
    /// flushed-but-unindexed refs.
    Streams { tenant: String, matchers: Vec<WireMatcher>, filters: Vec<LineFilterSpec>, from: i64, through: i64 },
    /// Labels of the tenant's streams matching any selector with unflushed
    /// entries in `[from, through)`, and the pending refs.
    Series { tenant: String, selectors: Vec<Vec<WireMatcher>>, from: i64, through: i64 },
}

/// For a log query whose answer is the first `n` entries of each stream in
/// one direction, and nothing the querier does afterwards can drop an entry
/// (only line filters, all sent along; no delete or retention filter
/// applies): each stream sends only its `n` newest (or oldest) entries,
/// with every entry tied with the last one, instead of all of them.
///
/// On the wire it follows the request, so a node that does not know it reads
/// the request alone and answers every entry (correct, only slower).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadLimit {
    pub n: u32,
    pub newest: bool,
}

/// The answer to a [`ReadRequest`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReadReply {
    pub streams: Vec<(LabelSet, Vec<Entry>)>,
    pub series: Vec<LabelSet>,
    /// Refs of flushed chunks that no index segment lists yet.
    pub pending: Vec<ChunkRef>,
}

impl Ingester {
    /// Answers a read of partition `p` as `consistency` asks: with
    /// `Linearizable`, once its state reflects every write acknowledged
    /// before the call.
    pub async fn serve_read(
        &self,
        p: u32,
        req: &ReadRequest,
        consistency: ReadConsistency,
        head_limit: Option<HeadLimit>,
    ) -> Result<ReadReply, IngesterError> {
        let bad = |source| IngesterError::BadRead { partition: p, source };
        match req {
            ReadRequest::Streams { tenant, matchers: ms, filters, from, through } => {
                let ms = matchers(ms).map_err(bad)?;
                let filters: Vec<LineFilter> =
                    filters.iter().map(LineFilterSpec::compile).collect::<Result<_, _>>().map_err(|e| bad(WireError::from(e)))?;
                let keep = |line: &str| filters.iter().all(|f| f.matches(line));
                self.read_with(p, consistency, |state| ReadReply {
                    streams: state
                        .select(tenant, &ms)
                        .map(|st| (st.labels.clone(), st.entries(*from, *through, keep, head_limit)))
                        .filter(|(_, e)| !e.is_empty())
                        .collect(),
                    series: Vec::new(),
                    pending: state.pending_for(tenant),
                })
                .await
            }
            ReadRequest::Series { tenant, selectors, from, through } => {
                let sels: Vec<Vec<Matcher>> = selectors.iter().map(|s| matchers(s)).collect::<Result<_, _>>().map_err(bad)?;
                self.read_with(p, consistency, |state| {
                    let mut series = Vec::new();
                    for ms in &sels {
                        for s in state.select(tenant, ms) {
                            if s.has_entries_in(*from, *through) {
                                series.push(s.labels.clone());
                            }
                        }
                    }
                    ReadReply { streams: Vec::new(), series, pending: state.pending_for(tenant) }
                })
                .await
            }
        }
    }
}
