//! `jepsen test …` runs a failure-injection test against a fresh Balsa
//! cluster; `jepsen check history.jsonl` checks a recorded history again.
//! Exit code 0 only when the history is valid. See jepsen/README.md.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use jepsen::cluster::Net;
use jepsen::nemesis::Kind;

#[derive(Parser)]
#[command(name = "jepsen", about = "Failure-injection tests for Balsa: real processes, real faults, checked histories.")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Starts a cluster, runs the workload under faults, checks the history.
    Test(TestArgs),
    /// Checks a recorded history.jsonl again.
    Check { history: PathBuf },
}

#[derive(clap::Args)]
struct TestArgs {
    /// Ingesters.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Zones the ingesters are spread over (round-robin).
    #[arg(long, default_value_t = 3)]
    zones: usize,
    /// Ring partitions (Raft groups).
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Workloads, comma-separated: set (always), order (backward reads
    /// too), tenants (two tenants with the same labels).
    #[arg(long, default_value = "set,order,tenants")]
    workload: String,
    /// Faults, comma-separated: kill, pause, partition, loss, latency, clock,
    /// disk, store (chunks go to an S3-compatible server, which is stopped),
    /// drain, join, crash-all; or none.
    #[arg(long, default_value = "kill,pause,partition")]
    nemesis: String,
    /// Seconds of load under faults.
    #[arg(long, default_value_t = 60.0)]
    time_limit: f64,
    /// Pushes per second over all writers.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Lines per push.
    #[arg(long, default_value_t = 5)]
    batch: usize,
    /// Seconds between faults.
    #[arg(long, default_value_t = 8.0)]
    interval: f64,
    /// Seconds each fault lasts (longer than the 3 s election lease).
    #[arg(long, default_value_t = 8.0)]
    hold: f64,
    /// Seed of the fault schedule (default: drawn and printed).
    #[arg(long)]
    seed: Option<u64>,
    /// auto (netns when root with nftables, else proxy), netns (partitions
    /// and packet loss with nftables), proxy (partitions and latency through
    /// a TCP proxy, no root), or local (no network faults).
    #[arg(long, default_value = "auto")]
    net: String,
    /// The balsa binary (default: next to this one).
    #[arg(long)]
    balsa: Option<PathBuf>,
    /// Where run directories are created.
    #[arg(long, default_value = "jepsen-results")]
    results: PathBuf,
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Check { history } => {
            let a = jepsen::run::recheck(&history)?;
            println!("{}", serde_json::to_string_pretty(&a)?);
            Ok(if a.valid { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Cmd::Test(args) => test(args),
    }
}

fn test(a: TestArgs) -> Result<ExitCode> {
    let mut nemesis = Vec::new();
    for k in a.nemesis.split(',').map(str::trim).filter(|k| !k.is_empty() && *k != "none") {
        nemesis.push(k.parse::<Kind>().map_err(anyhow::Error::msg)?);
    }
    let mut tenants = false;
    let mut backward = false;
    for w in a.workload.split(',').map(str::trim) {
        match w {
            "set" => {}
            "order" => backward = true,
            "tenants" => tenants = true,
            other => bail!("unknown workload `{other}` (known: set, order, tenants)"),
        }
    }
    if a.nodes < 3 {
        bail!("--nodes must be at least 3 (replication factor 3)");
    }
    if a.zones == 0 || a.zones > 26 {
        bail!("--zones must be between 1 and 26");
    }
    let root = unsafe { libc::geteuid() } == 0;
    let nft = std::process::Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success());
    let net = match a.net.as_str() {
        "auto" if root && nft && !nemesis.contains(&Kind::Latency) => Net::Namespaces,
        "auto" | "proxy" => Net::Proxy,
        "local" => Net::Local,
        "netns" if !root => bail!("--net netns needs root (network namespaces)"),
        "netns" if !nft => bail!("--net netns needs nftables (`nft`; Debian package nftables)"),
        "netns" => Net::Namespaces,
        other => bail!("unknown --net `{other}` (auto, netns, proxy, local)"),
    };
    let needs = |k: Kind, nets: &[Net], how: &str| -> Result<()> {
        if nemesis.contains(&k) && !nets.contains(&net) {
            bail!("the {} nemesis needs {how} (this run: {net:?})", serde_json::to_value(k)?.as_str().unwrap_or("?"));
        }
        Ok(())
    };
    needs(Kind::Partition, &[Net::Namespaces, Net::Proxy], "--net netns or --net proxy")?;
    needs(Kind::Loss, &[Net::Namespaces], "--net netns (root and nftables)")?;
    needs(Kind::Latency, &[Net::Proxy], "--net proxy")?;
    if nemesis.contains(&Kind::Clock) && !std::path::Path::new(jepsen::cluster::LIBFAKETIME).is_file() {
        bail!("the clock nemesis needs libfaketime at {} (Debian package faketime)", jepsen::cluster::LIBFAKETIME);
    }
    let balsa = match a.balsa {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("balsa"),
    };
    if !balsa.is_file() {
        bail!("no balsa binary at {} (build it with `cargo build --release -p balsa`, or pass --balsa)", balsa.display());
    }
    let seed = a.seed.unwrap_or_else(|| rand::random::<u32>() as u64);
    let cfg = jepsen::run::Config {
        balsa,
        nodes: a.nodes,
        zones: a.zones,
        partitions: a.partitions,
        nemesis,
        time_limit: a.time_limit,
        rate: a.rate,
        writers: a.concurrency.max(1),
        batch: a.batch.max(1),
        tenants,
        backward,
        seed,
        interval: a.interval,
        hold: a.hold,
        net,
        results: std::fs::canonicalize(".").context("current directory")?.join(&a.results),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    jepsen::run::stop_on_signals();
    let out = jepsen::run::run(&cfg)?;
    let an = &out.analysis;
    println!("elements: {} attempted, {} acknowledged, {} indeterminate, {} failed", an.attempted, an.acknowledged, an.indeterminate, an.failed);
    for (k, n) in &an.counts {
        println!("  {k:16} {n}");
    }
    for x in an.examples.iter().take(10) {
        println!("  e.g. {}: {}", x.kind, x.detail);
    }
    println!("{}: {}", if an.valid { "VALID" } else { "INVALID" }, out.dir.display());
    Ok(if an.valid { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
