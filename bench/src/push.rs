//! Single-node push throughput and latency, against the disk's own limit.
//!
//! Starts the release `balsa` on a fresh data directory, then:
//! 1. anchor: measures the data directory's disk — sequential write+fsync
//!    throughput and the latency of a small write + fdatasync;
//! 2. load: W concurrent writers push batches of N lines of ~L bytes (JSON)
//!    for D seconds, each push waiting for its 204;
//! 3. prints lines/s, MB/s of raw lines, p50/p99 push latency, and the ratios
//!    to the anchor;
//! 4. measures the most single-line pushes per second the writers reach,
//!    then pushes single lines at half that rate and prints their p99
//!    against the goal 2 × fdatasync p99 + 1 ms.
//!
//! Nothing is asserted.
//!
//! `cargo run --release -p balsa-bench -- push --help`

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use crate::{pct, push_lines, run_load, start, Common, Goal, PushLoad, Report, UNLIMITED};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    load: PushLoad,
    /// MiB written for the disk's sequential anchor.
    #[arg(long, default_value_t = 256)]
    anchor_mib: usize,
    /// After the throughput run, single-line pushes for this many seconds
    /// at half the measured push rate (issue 19: p99 latency at half load
    /// against fdatasync p99). 0 skips it.
    #[arg(long, default_value_t = 15)]
    half_load_seconds: u64,
}

/// Options of `all --quick`.
pub const QUICK: &[&str] = &["--seconds", "3", "--anchor-mib", "32", "--half-load-seconds", "3"];

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

pub fn run(common: &Common, args: &Args, report: &mut Report) -> Result<()> {
    let bin = common.balsa_binary()?;
    let tmp = common.workdir("balsa-bench-")?;

    let seq_mbs = disk_sequential(tmp.path(), args.anchor_mib)?;
    let fsync = disk_fsync_latency(tmp.path(), 500)?;

    let server = start(&bin, &tmp.path().join("data"), UNLIMITED)?;
    let url = format!("{}/loki/api/v1/push", server.base);
    let pad = "x".repeat(args.load.line_bytes.saturating_sub(40));
    let lines = args.load.lines;
    let run = run_load(args.load.clients, args.load.seconds, move |w, seq| push_lines(&url, w, seq, lines, &pad))?;
    let (secs, lat) = (run.secs, run.latencies);
    let mbs = run.bytes as f64 / 1e6 / secs;
    let load = format!("{} writers × {} lines of ~{} B, JSON", args.load.clients, args.load.lines, args.load.line_bytes);
    report.add(
        "push",
        format!("raw lines MB/s ({load}) ÷ disk sequential write+fsync MB/s"),
        format!("{mbs:.1} MB/s, {:.0} lines/s", (lat.len() * args.load.lines) as f64 / secs),
        format!("{seq_mbs:.0} MB/s"),
        mbs / seq_mbs,
        None,
    );
    report.add(
        "push",
        "push p50 ÷ 4 KiB write+fdatasync p50",
        format!("{:.1} ms (p99 {:.1} ms)", pct(&lat, 0.5), pct(&lat, 0.99)),
        format!("{:.3} ms (p99 {:.3} ms)", pct(&fsync, 0.5), pct(&fsync, 0.99)),
        pct(&lat, 0.5) / pct(&fsync, 0.5),
        None,
    );

    if args.half_load_seconds > 0 {
        // The most single-line pushes per second the writers reach, then
        // half of it, paced: the latency a push sees when the node is busy
        // but not saturated.
        let url = format!("{}/loki/api/v1/push", server.base);
        let u = url.clone();
        let max = run_load(args.load.clients, args.half_load_seconds.min(5), move |w, seq| push_lines(&u, w, seq, 1, "single"))?;
        let max_rate = max.ops as f64 / max.secs;
        let per_client = max_rate / 2.0 / args.load.clients as f64;
        let gap = std::time::Duration::from_secs_f64(1.0 / per_client);
        let before = push_histogram(&server.base)?;
        let lat = paced_latencies(&url, args.load.clients, args.half_load_seconds, gap)?;
        let server_p99 = histogram_quantile(&before, &push_histogram(&server.base)?, 0.99);
        let rate = lat.len() as f64 / args.half_load_seconds as f64;
        let goal = 2.0 * pct(&fsync, 0.99) + 1.0;
        report.add(
            "push",
            format!("single-line push p99 at half load ({rate:.0}/s of max {max_rate:.0}/s) ÷ (2 × fdatasync p99 + 1 ms)"),
            format!("{:.2} ms (p50 {:.2} ms; server's own p99 ≤ {} ms)", pct(&lat, 0.99), pct(&lat, 0.5), server_p99 * 1e3),
            format!("{goal:.3} ms"),
            pct(&lat, 0.99) / goal,
            Some(Goal::AtMost(1.0)),
        );
    }
    Ok(())
}

/// The server's own histogram of push durations (`loki_request_duration_seconds`
/// for 204 answers): (upper bound in seconds, cumulative count) per bucket.
fn push_histogram(base: &str) -> Result<Vec<(f64, u64)>> {
    let text = ureq::get(&format!("{base}/metrics")).call()?.into_string()?;
    let mut out = Vec::new();
    for l in text.lines() {
        if !(l.starts_with("loki_request_duration_seconds_bucket{") && l.contains("route=\"/loki/api/v1/push\"") && l.contains("status_code=\"204\"")) {
            continue;
        }
        let le = l.split("le=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("+Inf");
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse()? };
        let count = l.rsplit(' ').next().unwrap_or("0").parse::<f64>()? as u64;
        out.push((le, count));
    }
    Ok(out)
}

/// The bucket bound under which a `q` share of the pushes between two
/// scrapes of [`push_histogram`] finished.
fn histogram_quantile(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> f64 {
    let count = |h: &[(f64, u64)], le: f64| h.iter().find(|(l, _)| *l == le).map_or(0, |(_, c)| *c);
    let total = count(after, f64::INFINITY).saturating_sub(count(before, f64::INFINITY));
    after
        .iter()
        .find(|(le, c)| c.saturating_sub(count(before, *le)) as f64 >= q * total as f64)
        .map_or(f64::NAN, |(le, _)| *le)
}

/// `clients` threads push one line each `gap` for `seconds`: each push's
/// own latency in ms, sorted (the pause is not counted).
fn paced_latencies(url: &str, clients: usize, seconds: u64, gap: std::time::Duration) -> Result<Vec<f64>> {
    let until = Instant::now() + std::time::Duration::from_secs(seconds);
    let threads: Vec<_> = (0..clients)
        .map(|w| {
            let url = url.to_string();
            std::thread::spawn(move || -> Result<Vec<f64>> {
                let mut out = Vec::new();
                let mut seq = 1_000_000_000u64;
                while Instant::now() < until {
                    let t = Instant::now();
                    push_lines(&url, w, seq, 1, "paced")?;
                    let took = t.elapsed();
                    out.push(took.as_secs_f64() * 1000.0);
                    seq += 1;
                    if let Some(rest) = gap.checked_sub(took) {
                        std::thread::sleep(rest);
                    }
                }
                Ok(out)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        all.extend(t.join().map_err(|_| anyhow::anyhow!("client panicked"))??);
    }
    all.sort_by(f64::total_cmp);
    Ok(all)
}
