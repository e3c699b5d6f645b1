//! Memory per active stream and per idle partition replica, and the CPU an
//! idle replica costs (issue 19, item 6), against budgets stated here.
//!
//! 1. Active streams: one `balsa` process. Anchor: its resident memory after
//!    a first push (one stream). Then `--streams` streams each receive
//!    `--lines` lines of ~200 B; the growth of resident memory per stream is
//!    compared with the raw bytes a stream holds (labels and lines), and,
//!    scaled to 10,000 streams, with [`STREAMS_BUDGET`].
//! 2. Idle replicas: three ingesters (RF 3) and a front, first with one
//!    partition (the anchor: one replica per ingester), then with
//!    `--replicas` partitions (as many replicas per ingester). Once every
//!    partition has a leader, each ingester's resident memory and its CPU
//!    over `--seconds` are read from `/proc`; the difference per replica,
//!    scaled to 1,000 replicas, is held against [`REPLICAS_MEMORY_BUDGET`]
//!    and [`REPLICAS_CPU_BUDGET`].
//!
//! Resident memory includes what the allocator keeps; it is what an
//! operator's container limit sees. Nothing is asserted.
//!
//! `cargo run --release -p balsa-bench -- memory --help`

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;

use crate::{cpu_seconds, post_push, rss_bytes, start, Cluster, Common, Goal, Report, UNLIMITED};

/// Resident memory 10,000 active streams may add to a node, each with
/// its unflushed head (docs/performance.md states it).
pub const STREAMS_BUDGET: u64 = 256 << 20;
/// Resident memory 1,000 idle partition replicas may add to an ingester.
pub const REPLICAS_MEMORY_BUDGET: u64 = 512 << 20;
/// CPU 1,000 idle partition replicas may use, in cores.
pub const REPLICAS_CPU_BUDGET: f64 = 0.05;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Active streams pushed to one process.
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// Lines each stream receives (~200 B each).
    #[arg(long, default_value_t = 10)]
    lines: usize,
    /// Partitions of the idle cluster (replicas per ingester); 0 skips it.
    #[arg(long, default_value_t = 1000)]
    replicas: u32,
    /// Seconds over which an idle ingester's CPU is measured.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

/// Options of `all --quick`.
pub const QUICK: &[&str] = &["--streams", "2000", "--replicas", "60", "--seconds", "5"];

pub fn run(common: &Common, args: &Args, report: &mut Report) -> Result<()> {
    if args.streams > 0 {
        streams(common, args, report)?;
    }
    if args.replicas > 1 {
        replicas(common, args, report)?;
    }
    Ok(())
}

fn mib(b: f64) -> f64 {
    b / 1048576.0
}

fn streams(common: &Common, args: &Args, report: &mut Report) -> Result<()> {
    let bin = common.balsa_binary()?;
    let tmp = common.workdir("balsa-memory-")?;
    // Nothing is cut or flushed during the run: every head stays in memory.
    let config = format!(
        "{UNLIMITED}  max_global_streams_per_user: 0\ningester:\n  max_chunk_age: 24h\n  chunk_idle_period: 24h\n  flush_check_period: 1h\n"
    );
    let server = start(&bin, &tmp.path().join("data"), &config)?;
    let url = format!("{}/loki/api/v1/push", server.base);
    let pad = "x".repeat(160);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i64;
    let push = |streams: std::ops::Range<usize>| -> Result<u64> {
        let mut raw = 0u64;
        let body: Vec<serde_json::Value> = streams
            .map(|s| {
                let values: Vec<serde_json::Value> = (0..args.lines)
                    .map(|i| {
                        let line = format!("level=info stream={s} i={i} msg=\"{pad}\"");
                        raw += line.len() as u64;
                        serde_json::json!([(now + i as i64).to_string(), line])
                    })
                    .collect();
                let labels = serde_json::json!({"job": "memory", "app": format!("app-{}", s % 50), "pod": format!("pod-{s}")});
                raw += labels.to_string().len() as u64;
                serde_json::json!({"stream": labels, "values": values})
            })
            .collect();
        post_push(&url, "application/json", serde_json::json!({ "streams": body }).to_string().as_bytes())?;
        Ok(raw)
    };
    // The anchor: the process after its first push (stream 0).
    push(0..1)?;
    let pid = server.pid();
    let before = rss_bytes(pid)?;
    let mut raw = 0;
    let mut next = 1;
    while next <= args.streams {
        let end = (next + 500).min(args.streams + 1);
        raw += push(next..end)?;
        next = end;
    }
    let after = rss_bytes(pid)?;
    let n = args.streams as f64;
    let per_stream = after.saturating_sub(before) as f64 / n;
    report.add(
        "memory",
        format!("active stream ({} streams × {} lines): resident memory growth per stream ÷ raw bytes per stream", args.streams, args.lines),
        format!("{:.1} KiB per stream ({:.0} → {:.0} MiB)", per_stream / 1024.0, mib(before as f64), mib(after as f64)),
        format!("{:.1} KiB raw per stream", raw as f64 / n / 1024.0),
        per_stream / (raw as f64 / n),
        None,
    );
    report.add(
        "memory",
        format!("10,000 active streams (scaled from {}) ÷ the budget", args.streams),
        format!("{:.0} MiB", mib(per_stream * 10_000.0)),
        format!("{:.0} MiB", mib(STREAMS_BUDGET as f64)),
        per_stream * 10_000.0 / STREAMS_BUDGET as f64,
        Some(Goal::AtMost(1.0)),
    );
    Ok(())
}

/// Mean resident bytes and CPU cores of a cluster's idle ingesters.
fn idle_cost(common: &Common, partitions: u32, seconds: u64) -> Result<(f64, f64)> {
    let bin = common.balsa_binary()?;
    let tmp = common.workdir("balsa-idle-")?;
    let cluster = Cluster::start(&bin, &tmp.path().join("cluster"), partitions)?;
    let pids = cluster.ingester_pids();
    let cpu0: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect::<Result<_>>()?;
    let t = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let secs = t.elapsed().as_secs_f64();
    let mut cores = 0.0;
    let mut rss = 0.0;
    for (&pid, c0) in pids.iter().zip(cpu0) {
        cores += (cpu_seconds(pid)? - c0) / secs;
        rss += rss_bytes(pid)? as f64;
    }
    let k = pids.len() as f64;
    Ok((rss / k, cores / k))
}

fn replicas(common: &Common, args: &Args, report: &mut Report) -> Result<()> {
    let (rss1, cpu1) = idle_cost(common, 1, args.seconds)?;
    let (rss, cpu) = idle_cost(common, args.replicas, args.seconds)?;
    let extra = (args.replicas - 1) as f64;
    let per_replica = (rss - rss1).max(0.0) / extra;
    let cpu_per_replica = (cpu - cpu1).max(0.0) / extra;
    report.add(
        "memory",
        format!("idle ingester with {} replicas (3 ingesters, RF 3): resident memory ÷ with 1 replica", args.replicas),
        format!("{:.0} MiB ({:.0} KiB per replica)", mib(rss), per_replica / 1024.0),
        format!("{:.0} MiB", mib(rss1)),
        rss / rss1,
        None,
    );
    report.add(
        "memory",
        format!("1,000 idle replicas' memory (scaled from {}) ÷ the budget", args.replicas),
        format!("{:.0} MiB", mib(per_replica * 1000.0)),
        format!("{:.0} MiB", mib(REPLICAS_MEMORY_BUDGET as f64)),
        per_replica * 1000.0 / REPLICAS_MEMORY_BUDGET as f64,
        Some(Goal::AtMost(1.0)),
    );
    report.add(
        "memory",
        format!("1,000 idle replicas' CPU (scaled from {}, over {} s) ÷ the budget", args.replicas, args.seconds),
        format!("{:.2} % of a core (measured: {:.2} % with {} replicas, {:.2} % with 1)", 100.0 * cpu_per_replica * 1000.0, 100.0 * cpu, args.replicas, 100.0 * cpu1),
        format!("{:.0} % of a core", 100.0 * REPLICAS_CPU_BUDGET),
        cpu_per_replica * 1000.0 / REPLICAS_CPU_BUDGET,
        Some(Goal::AtMost(1.0)),
    );
    Ok(())
}
