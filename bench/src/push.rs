//! Single-node push throughput and latency, against the disk's own limit.
//!
//! Starts the release `balsa` on a fresh data directory, then:
//! 1. anchor: measures the data directory's disk — sequential write+fsync
//!    throughput and the latency of a small write + fdatasync;
//! 2. load: W concurrent writers push batches of N lines of ~L bytes (JSON)
//!    for D seconds, each push waiting for its 204;
//! 3. prints lines/s, MB/s of raw lines, p50/p99 push latency, and the ratios
//!    to the anchor. Nothing is asserted: the numbers go to
//!    docs/performance.md.
//!
//! `cargo run --release -p balsa-bench --bin push-bench -- --help`

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use balsa_bench::{pct, push_lines, run_load, start, Common, PushLoad, UNLIMITED};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    load: PushLoad,
    /// MiB written for the disk's sequential anchor.
    #[arg(long, default_value_t = 256)]
    anchor_mib: usize,
}

/// Sequential write of `mib` MiB with one fsync at the end: MB/s.
fn disk_sequential(dir: &Path, mib: usize) -> Result<f64> {
    let path = dir.join("anchor-seq");
    let mut f = OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
    let block = vec![0x5au8; 1 << 20];
    let t = Instant::now();
    for _ in 0..mib {
        f.write_all(&block)?;
    }
    f.sync_all()?;
    let secs = t.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(mib as f64 * 1.048_576 / secs)
}

/// Latency of appending 4 KiB and fdatasync, `n` times: sorted ms.
fn disk_fsync_latency(dir: &Path, n: usize) -> Result<Vec<f64>> {
    let path = dir.join("anchor-fsync");
    let mut f = OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
    let block = vec![0xa5u8; 4096];
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    std::fs::remove_file(&path)?;
    lat.sort_by(f64::total_cmp);
    Ok(lat)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bin = args.common.balsa_binary()?;
    let tmp = tempfile::Builder::new().prefix("balsa-bench-").tempdir_in(&args.common.dir)?;

    let seq_mbs = disk_sequential(tmp.path(), args.anchor_mib)?;
    let fsync = disk_fsync_latency(tmp.path(), 500)?;
    println!("anchor  disk sequential write+fsync: {seq_mbs:.1} MB/s");
    println!("anchor  4 KiB write+fdatasync: p50 {:.3} ms, p99 {:.3} ms", pct(&fsync, 0.5), pct(&fsync, 0.99));

    let server = start(&bin, &tmp.path().join("data"), UNLIMITED)?;
    let url = format!("{}/loki/api/v1/push", server.base);
    let pad = "x".repeat(args.load.line_bytes.saturating_sub(40));
    let lines = args.load.lines;
    let run = run_load(args.load.clients, args.load.seconds, move |w, seq| push_lines(&url, w, seq, lines, &pad))?;
    let (secs, lat, pushes) = (run.secs, run.latencies, run.ops);
    let lines_s = (pushes * args.load.lines) as f64 / secs;
    let mbs = run.bytes as f64 / 1e6 / secs;
    println!(
        "balsa   {} writers x {} lines of ~{} B: {pushes} pushes in {secs:.1} s",
        args.load.clients, args.load.lines, args.load.line_bytes
    );
    println!("balsa   {lines_s:.0} lines/s, {mbs:.1} MB/s of raw lines");
    println!("balsa   push latency: p50 {:.1} ms, p99 {:.1} ms", pct(&lat, 0.5), pct(&lat, 0.99));
    println!("ratio   balsa MB/s / disk sequential MB/s: {:.3}", mbs / seq_mbs);
    println!("ratio   balsa push p50 / fdatasync p50: {:.1}", pct(&lat, 0.5) / pct(&fsync, 0.5));
    Ok(())
}
