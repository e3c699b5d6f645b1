//! Query scan speed over flushed chunks, against grep and ripgrep over the
//! same lines, and the chunks' size against `zstd -3` of them.
//!
//! Generates realistic log lines (default 1 GiB), pushes them to a fresh
//! release `balsa`, flushes everything to the filesystem object store, then
//! times `{job=~".+"} |= "<rare string>"` over the whole range (cold, then
//! warm chunk cache), and `|~ "(?i)<rare string>"`, which no block filter
//! answers: every block is decompressed and every line tested. In the same
//! run it writes the lines to a flat file and times `grep -c` and `rg -c`
//! (with `-i` for the second) for the same string, and compresses the file
//! with zstd level 3 for the size anchor. Prints ratios; asserts nothing.
//! Results go to docs/performance.md.
//!
//! `cargo run --release -p balsa-bench -- scan --help`

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::{ingest_and_flush, line, start, Common, Goal, Report, Rng, NEEDLE, UNLIMITED};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// MiB of raw log lines.
    #[arg(long, default_value_t = 1024)]
    mib: usize,
    /// One line in this many carries the rare string.
    #[arg(long, default_value_t = 200_000)]
    rare_every: usize,
}

/// Options of `all --quick`.
pub const QUICK: &[&str] = &["--mib", "128", "--rare-every", "50000"];

fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            total += if path.is_dir() { dir_bytes(&path) } else { e.metadata().map(|m| m.len()).unwrap_or(0) };
        }
    }
    total
}

/// Runs `cmd args` twice (the first warms the page cache): seconds of the
/// second run and its output, which must be `expected`.
fn time_cmd(cmd: &str, package: &str, args: &[&str], expected: usize) -> Result<f64> {
    let mut secs = 0.0;
    for _ in 0..2 {
        let t = Instant::now();
        let out = Command::new(cmd).args(args).output().with_context(|| format!("running {cmd} (install {package})"))?;
        secs = t.elapsed().as_secs_f64();
        let count = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if count != expected.to_string() {
            bail!("{cmd} counted {count:?}, expected {expected}");
        }
    }
    Ok(secs)
}

pub fn run(common: &Common, args: &Args, report: &mut Report) -> Result<()> {
    let bin = common.balsa_binary()?;
    let work = common.workdir("balsa-scan-")?;
    let flat = work.path().join("lines.txt");
    let target = (args.mib as u64) << 20;

    // 1. The lines, in a flat file too.
    let mut rng = Rng(0x5eed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&flat)?);
    let mut lines = Vec::new();
    let mut raw = 0u64;
    while raw < target {
        let l = line(&mut rng, lines.len(), args.rare_every);
        raw += l.len() as u64;
        writeln!(f, "{l}")?;
        lines.push(l);
    }
    f.flush()?;
    drop(f);
    let n = lines.len();
    let expected = lines.iter().filter(|l| l.contains(NEEDLE)).count();
    eprintln!("scan: {n} lines, {:.0} MiB raw, {expected} contain the rare string", raw as f64 / 1048576.0);

    // 2. balsa, fed and flushed.
    let config = format!("{UNLIMITED}  max_entries_limit_per_query: 100000\ningester:\n  flush_check_period: 5s\n");
    let server = start(&bin, &work.path().join("data"), &config)?;
    let base = server.base.clone();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i64;
    let start = now - 3_000_000_000_000;
    let step = 2_900_000_000_000 / n as i64;
    let secs = ingest_and_flush(&server, &lines, start, step)?;
    eprintln!("scan: ingested and flushed in {secs:.1} s ({:.1} MB/s)", raw as f64 / 1e6 / secs);
    let chunk_bytes = dir_bytes(&work.path().join("data/objects/chunks"));

    // 3. The queries, cold then warm; 4. the same searches by grep and rg.
    let flat_s = flat.to_string_lossy().to_string();
    let gbs = |secs: f64| raw as f64 / 1e9 / secs;
    let searches = [
        ("line filter for a rare string", format!("|= \"{NEEDLE}\""), None),
        ("case-insensitive regex for it (every block read)", format!("|~ \"(?i){NEEDLE}\""), Some("-i")),
    ];
    for (what, filter, flag) in searches {
        let query = format!("{{job=~\".+\"}} {filter}");
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let resp = ureq::get(&format!("{base}/loki/api/v1/query_range"))
                .query("query", &query)
                .query("start", &(start - 1).to_string())
                .query("end", &(now + 1).to_string())
                .query("limit", "100000")
                .call()
                .context("query")?;
            let v: serde_json::Value = resp.into_json()?;
            let found: usize =
                v["data"]["result"].as_array().map_or(0, |a| a.iter().map(|s| s["values"].as_array().map_or(0, |x| x.len())).sum());
            if found != expected {
                bail!("{query} found {found} lines, expected {expected}");
            }
            times.push(t.elapsed().as_secs_f64());
        }
        let cold = times[0];
        let warm = times[1..].iter().copied().fold(f64::INFINITY, f64::min);
        let balsa = format!("warm {warm:.3} s ({:.2} GB/s), cold {cold:.2} s", gbs(warm));
        for (cmd, package) in [("grep", "grep"), ("rg", "ripgrep")] {
            let args: Vec<&str> = flag.into_iter().chain(["-c", NEEDLE, &flat_s]).collect();
            let secs = time_cmd(cmd, package, &args, expected)?;
            report.add(
                "scan",
                format!("`{filter}` over {:.0} MiB of flushed chunks: {cmd} -c{} time ÷ balsa warm time", raw as f64 / 1048576.0, flag.map_or(String::new(), |f| format!(" {f}"))),
                balsa.clone(),
                format!("{cmd} {secs:.2} s ({:.2} GB/s)", gbs(secs)),
                secs / warm,
                (cmd == "rg").then_some(Goal::AtLeast(0.5)),
            );
        }
        eprintln!("scan: {what}: {balsa}");
    }
    let zstd_size = zstd::stream::encode_all(std::fs::File::open(&flat)?, 3)?.len() as u64;
    report.add(
        "scan",
        "compression: chunk bytes in the object store ÷ zstd -3 of the flat file",
        format!("{chunk_bytes} B ({:.2}× of raw)", raw as f64 / chunk_bytes as f64),
        format!("{zstd_size} B ({:.2}× of raw)", raw as f64 / zstd_size as f64),
        chunk_bytes as f64 / zstd_size as f64,
        None,
    );
    Ok(())
}
