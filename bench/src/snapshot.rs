//! Apply latency while a partition's snapshot is written, against the
//! same partition's apply latency with no snapshot (the anchor, measured in
//! the same run).
//!
//! Drives the real state machine of a partition (`balsa_raft::StateMachine`
//! over `PartitionState`, what an ingester replica runs) in process:
//! 1. fills it through `apply` with `--gib` GiB of unflushed lines in
//!    `--streams` streams (cut into chunks as an ingester would);
//! 2. anchor: applies one-line pushes back to back for `--anchor-secs`
//!    and records each apply's latency;
//! 3. builds a snapshot (encode + write + fsync of the file) while applying
//!    the same pushes, and records their latencies;
//! 4. loads the snapshot file as a restarting replica would.
//!
//! Prints p50/p99/max of both phases and their ratio, the snapshot's size
//! and build time, the time of one encode of the state (what applies waited
//! for when the encode held the partition's lock), and the load time.
//! Nothing is asserted.
//!
//! `cargo run --release -p balsa-bench -- snapshot --help`

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use balsa::ingester::command::{self, Command, PushBatch, RequestId, StreamBatch, SESSION_TTL_NS};
use balsa::ingester::partition::PartitionState;
use balsa_logql::labels::LabelSet;
use crate::{line, pct, Common, Report, Rng};
use balsa_raft::{Replicated, StateMachine, TypeConfig};
use balsa_storage::Entry;
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// GiB of unflushed lines the partition holds.
    #[arg(long, default_value_t = 1.0)]
    gib: f64,
    /// Streams they are spread over.
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// Raw bytes at which a head is cut (`ingester.chunk_target_raw_size`'s
    /// default).
    #[arg(long, default_value_t = 8 << 20)]
    chunk_bytes: u64,
    /// Seconds of the anchor phase.
    #[arg(long, default_value_t = 3.0)]
    anchor_secs: f64,
}

/// Options of `all --quick`.
pub const QUICK: &[&str] = &["--gib", "0.05", "--streams", "1000", "--anchor-secs", "1"];

/// Makes log entries and proposals for one partition.
struct Feed {
    rng: Rng,
    labels: Vec<LabelSet>,
    index: u64,
    ts: i64,
    chunk_bytes: u64,
}

impl Feed {
    /// A push of `lines[i]` lines to stream `streams[i]`, as the log entry
    /// a leader would have committed next.
    fn entry(&mut self, per_stream: &[(usize, usize)]) -> Result<openraft::Entry<TypeConfig>> {
        let mut streams = Vec::new();
        for &(s, n) in per_stream {
            let entries = (0..n)
                .map(|i| {
                    self.ts += 1;
                    Entry::new(self.ts, line(&mut self.rng, i, 1000))
                })
                .collect();
            streams.push(StreamBatch { tenant: "bench".into(), labels: self.labels[s].clone(), entries });
        }
        let batch = PushBatch {
            request_id: RequestId::of(&streams),
            now: self.ts,
            too_far_behind_window: 3600 * 1_000_000_000,
            chunk_target_raw_size: self.chunk_bytes,
            max_streams_per_tenant: 0,
            session_ttl: SESSION_TTL_NS,
            streams,
        };
        self.index += 1;
        Ok(openraft::Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), self.index),
            payload: EntryPayload::Normal(command::encode(&Command::Push(batch))?.into()),
        })
    }
}

/// Applies one-line pushes until `done` says stop; latencies in ms.
async fn small_pushes(
    sm: &mut StateMachine<PartitionState>,
    feed: &mut Feed,
    mut done: impl FnMut() -> bool,
) -> Result<Vec<f64>> {
    let mut lat = Vec::new();
    while !done() {
        let s = (feed.rng.next() as usize) % feed.labels.len();
        let e = feed.entry(&[(s, 1)])?;
        let t = Instant::now();
        sm.apply([e]).await.context("apply")?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        // A steady pace (about one per millisecond), not a spin that
        // starves the snapshot's thread on a 2-core machine.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    lat.sort_by(f64::total_cmp);
    Ok(lat)
}

fn summary(lat: &[f64]) -> String {
    format!("p99 {:.3} ms, max {:.3} ms ({} applies)", pct(lat, 0.99), lat.last().copied().unwrap_or(f64::NAN), lat.len())
}

pub fn run(common: &Common, args: &Args, report: &mut Report) -> Result<()> {
    // The state machine's async API on a runtime of its own, two workers
    // as on the machine it was measured on.
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(measure(common, args, report))
}

async fn measure(common: &Common, args: &Args, report: &mut Report) -> Result<()> {
    let work = common.workdir("balsa-snapshot-bench-")?;    let path = work.path().join("partition-0.snap");
    let (mut sm, shared) = StateMachine::<PartitionState>::open(path.clone()).context("open state machine")?;
    let labels = (0..args.streams)
        .map(|i| LabelSet::from_pairs(vec![("app".into(), format!("app-{}", i % 50)), ("pod".into(), format!("pod-{i}"))]))
        .collect();
    let mut feed = Feed { rng: Rng(0x5eed), labels, index: 0, ts: 1_700_000_000_000_000_000, chunk_bytes: args.chunk_bytes };

    // 1. Fill: 64 streams × 64 lines per proposal, round robin.
    let target = (args.gib * (1u64 << 30) as f64) as usize;
    let t = Instant::now();
    let (mut bytes, mut next) = (0usize, 0usize);
    while bytes < target {
        let per: Vec<(usize, usize)> = (0..64).map(|k| ((next + k) % args.streams, 64)).collect();
        next += 64;
        let e = feed.entry(&per)?;
        if let EntryPayload::Normal(b) = &e.payload {
            bytes += b.len();
        }
        sm.apply([e]).await.context("apply")?;
    }
    let mut builder = sm.get_snapshot_builder().await;
    eprintln!("snapshot: filled {:.2} GiB of proposals in {:.1} s", bytes as f64 / (1u64 << 30) as f64, t.elapsed().as_secs_f64());

    // 2. Anchor.
    let until = Instant::now() + Duration::from_secs_f64(args.anchor_secs);
    let anchor = small_pushes(&mut sm, &mut feed, || Instant::now() >= until).await?;

    // What one encode of the state costs: before images, applies waited
    // for all of it (the encode held the partition's lock).
    let t = Instant::now();
    let image = shared.read().state.image();
    let encoded = PartitionState::encode_image(&image)?.len();
    drop(image);
    let encode_secs = t.elapsed().as_secs_f64();

    // 3. The same pushes while a snapshot is built.
    let t = Instant::now();
    let build = tokio::spawn(async move { builder.build_snapshot().await.map(|s| s.meta) });
    let during = small_pushes(&mut sm, &mut feed, || build.is_finished()).await?;
    let meta = build.await?.context("build snapshot")?;
    let build_secs = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path)?.len();

    // 4. Load, as a restarting replica does.
    let t = Instant::now();
    let (_, loaded) = StateMachine::<PartitionState>::open(path).context("load snapshot")?;
    let load_secs = t.elapsed().as_secs_f64();
    let (streams, entries, raw) = loaded.read().state.sizes();

    let gib = |b: f64| b / (1u64 << 30) as f64;
    eprintln!("snapshot: up to log index {:?}", meta.last_log_id.map(|l| l.index));
    report.add(
        "snapshot",
        format!("apply p99 while a {:.2} GiB snapshot is built ({build_secs:.2} s) ÷ apply p99 without", gib(size as f64)),
        summary(&during),
        summary(&anchor),
        pct(&during, 0.99) / pct(&anchor, 0.99),
        None,
    );
    report.add(
        "snapshot",
        "worst apply during the snapshot ÷ one encode of the state (what an apply waited when the encode held the lock)",
        format!("{:.3} ms", during.last().copied().unwrap_or(f64::NAN)),
        format!("{:.1} ms for {:.2} GiB", encode_secs * 1e3, gib(encoded as f64)),
        during.last().copied().unwrap_or(f64::NAN) / 1e3 / encode_secs,
        None,
    );
    report.add(
        "snapshot",
        format!("load of the snapshot ({streams} streams, {entries} entries, {:.2} GiB raw) ÷ its build", gib(raw as f64)),
        format!("{load_secs:.2} s"),
        format!("{build_secs:.2} s"),
        load_secs / build_secs,
        None,
    );
    Ok(())
}
