//! `balsa-bench`: runs one of Balsa's benchmarks, or `all` of them, and
//! prints one Markdown table of figures, anchors and ratios measured in the
//! same run. `--append FILE` adds the table to FILE (docs/performance.md)
//! under a heading with the date, the command and the commit.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use balsa_bench::{cluster, logql, memory, push, restart, scan, snapshot, Common, Report};
use clap::{Args, FromArgMatches, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "balsa-bench", about = "Balsa's benchmarks against anchors measured in the same run")]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Append the table to this file (e.g. docs/performance.md).
    #[arg(long, global = true)]
    append: Option<std::path::PathBuf>,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// Single-node push throughput and latency against the disk.
    Push(push::Args),
    /// A 3-ingester cluster's replicated push against a 3-member etcd.
    Cluster(cluster::Args),
    /// A filter scan of flushed chunks against grep and rg; size against zstd -3.
    Scan(scan::Args),
    /// LogQL questions against chdb over the same lines.
    Logql(logql::Args),
    /// Restart with unflushed lines against reading the data directory.
    Restart(restart::Args),
    /// Apply latency while a snapshot is written against without.
    Snapshot(snapshot::Args),
    /// Memory per active stream and per idle replica; idle CPU.
    Memory(memory::Args),
    /// Every benchmark above, each with its defaults (or `--quick` sizes).
    All {
        /// Small sizes and short loads: the whole suite in about two
        /// minutes (what CI runs; the figures are indicative only).
        #[arg(long)]
        quick: bool,
    },
}

/// A benchmark's options: its defaults, or its defaults with `extra` flags.
fn options<A: Args + FromArgMatches>(extra: &[&str]) -> Result<A> {
    let cmd = A::augment_args(clap::Command::new("bench").no_binary_name(true));
    let matches = cmd.try_get_matches_from(extra).context("the suite's options")?;
    Ok(A::from_arg_matches(&matches)?)
}

/// The benchmarks `all` runs, in order.
const ALL: [&str; 7] = ["push", "cluster", "scan", "logql", "restart", "snapshot", "memory"];

/// Runs benchmark `name` with its defaults, or its `--quick` sizes.
fn run_named(name: &str, common: &Common, quick: bool, report: &mut Report) -> Result<()> {
    fn opts<A: Args + FromArgMatches>(quick: bool, q: &[&str]) -> Result<A> {
        options(if quick { q } else { &[] })
    }
    match name {
        "push" => push::run(common, &opts(quick, push::QUICK)?, report),
        "cluster" => cluster::run(common, &opts(quick, cluster::QUICK)?, report),
        "scan" => scan::run(common, &opts(quick, scan::QUICK)?, report),
        "logql" => logql::run(common, &opts(quick, logql::QUICK)?, report),
        "restart" => restart::run(common, &opts(quick, restart::QUICK)?, report),
        "snapshot" => snapshot::run(common, &opts(quick, snapshot::QUICK)?, report),
        "memory" => memory::run(common, &opts(quick, memory::QUICK)?, report),
        other => anyhow::bail!("no benchmark {other}"),
    }
}

fn run_all(common: &Common, quick: bool, report: &mut Report) -> Result<()> {
    for name in ALL {
        let t = std::time::Instant::now();
        eprintln!("== {name}");
        // One benchmark's failure (a missing anchor tool, say) is reported
        // in the table; the others still run.
        if let Err(e) = run_named(name, common, quick, report) {
            eprintln!("{name} failed: {e:#}");
            report.failed.push((name, format!("{e:#}")));
        }
        eprintln!("== {name}: {:.0} s", t.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The heading `--append` writes above the table.
fn heading() -> String {
    let out = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    let mut command = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--append" => {
                args.next();
            }
            _ if a.starts_with("--append=") => {}
            _ => command.push(a),
        }
    }
    format!(
        "\n### Suite run {} (commit {})\n\n    balsa-bench {}\n\n",
        out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        out("git", &["rev-parse", "--short", "HEAD"]),
        command.join(" ")
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut report = Report::default();
    let result = match &cli.bench {
        Bench::Push(a) => push::run(&cli.common, a, &mut report),
        Bench::Cluster(a) => cluster::run(&cli.common, a, &mut report),
        Bench::Scan(a) => scan::run(&cli.common, a, &mut report),
        Bench::Logql(a) => logql::run(&cli.common, a, &mut report),
        Bench::Restart(a) => restart::run(&cli.common, a, &mut report),
        Bench::Snapshot(a) => snapshot::run(&cli.common, a, &mut report),
        Bench::Memory(a) => memory::run(&cli.common, a, &mut report),
        Bench::All { quick } => run_all(&cli.common, *quick, &mut report),
    };
    if let Err(e) = result {
        eprintln!("balsa-bench: {e:#}");
        report.failed.push(("bench", format!("{e:#}")));
    }
    let table = report.table();
    println!("{table}");
    if let Some(path) = &cli.append {
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(format!("{}{table}", heading()).as_bytes()));
        if let Err(e) = appended {
            eprintln!("balsa-bench: appending to {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
