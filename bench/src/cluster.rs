//! Replicated push throughput of a 3-ingester cluster (replication factor
//! 3, one ingester per zone) against a 3-member etcd cluster on the same
//! machine, with the same number of concurrent clients.
//!
//! 1. Balsa: three `--target=ingester` processes and one front
//!    (distributor, querier) on 127.0.0.1; W writers push batches of N lines
//!    of ~L bytes to the front for D seconds, each waiting for its 204 (the
//!    lines are then fsynced on two of three replicas at least);
//! 2. anchor: three `etcd` members (Debian's `etcd-server`) on 127.0.0.1; W
//!    clients put 1 KiB values through etcd's JSON gateway for D seconds,
//!    each waiting for its answer (committed on a majority, fsynced);
//! 3. prints both, and Balsa's durable replicated bytes/s and lines/s
//!    against etcd's bytes/s and puts/s as ratios. Nothing is asserted.
//!
//! `cargo run --release -p balsa-bench --bin cluster-bench -- --help`

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use balsa_bench::{free_port, pct, push_lines, run_load, Common, PushLoad, UNLIMITED};
use base64::Engine;
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    load: PushLoad,
    /// Ring partitions of the Balsa cluster.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    etcd: PathBuf,
}

/// Processes killed on drop.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        if Instant::now() > deadline {
            bail!("{what}: not within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Starts the Balsa cluster; returns its processes and the front's URL.
fn start_balsa(bin: &Path, dir: &Path, partitions: u32) -> Result<(Procs, String)> {
    std::fs::create_dir_all(dir)?;
    let cfg = dir.join("cluster.yaml");
    std::fs::write(&cfg, format!("storage:\n  filesystem:\n    directory: {}\n{UNLIMITED}", dir.join("objects").display()))?;
    let mut procs = Procs(Vec::new());
    let mut seeds = Vec::new();
    for id in 1..=3u32 {
        let (http, grpc) = (free_port()?, free_port()?);
        let mut cmd = Command::new(bin);
        cmd.arg("--target=ingester")
            .arg(format!("--node.id={id}"))
            .arg(format!("--zone=zone-{id}"))
            .arg(format!("--http.addr=127.0.0.1:{http}"))
            .arg(format!("--grpc.addr=127.0.0.1:{grpc}"))
            .arg(format!("--data.dir={}", dir.join(format!("ingester-{id}")).display()))
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--ring.partitions={partitions}"))
            .arg("--ring.replication-factor=3")
            .arg("--log.level=warn");
        if let Some(first) = seeds.first() {
            cmd.arg(format!("--join={first}"));
        }
        procs.0.push(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().with_context(|| format!("starting {}", bin.display()))?);
        seeds.push(format!("127.0.0.1:{grpc}"));
    }
    let (http, grpc) = (free_port()?, free_port()?);
    procs.0.push(
        Command::new(bin)
            .arg("--target=distributor,querier,query-frontend")
            .arg("--node.id=100")
            .arg(format!("--http.addr=127.0.0.1:{http}"))
            .arg(format!("--grpc.addr=127.0.0.1:{grpc}"))
            .arg(format!("--data.dir={}", dir.join("front").display()))
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--join={}", seeds.join(",")))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let base = format!("http://127.0.0.1:{http}");
    wait_until("every partition replicated with a leader", 60, || {
        let Ok(r) = ureq::get(&format!("{base}/ring?format=json")).call() else { return false };
        let Ok(v) = r.into_json::<serde_json::Value>() else { return false };
        v["partitions"].as_array().is_some_and(|ps| {
            !ps.is_empty() && ps.iter().all(|p| p["leader"].is_u64() && p["voters"].as_array().is_some_and(|v| v.len() == 3))
        })
    })?;
    Ok((procs, base))
}

/// Starts a 3-member etcd cluster; returns its processes and client URLs.
fn start_etcd(bin: &Path, dir: &Path) -> Result<(Procs, Vec<String>)> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| Ok((free_port()?, free_port()?))).collect::<Result<_>>()?;
    std::fs::create_dir_all(dir)?;
    let cluster: Vec<String> = ports.iter().enumerate().map(|(i, (_, p))| format!("e{i}=http://127.0.0.1:{p}")).collect();
    let mut procs = Procs(Vec::new());
    for (i, (c, p)) in ports.iter().enumerate() {
        procs.0.push(
            Command::new(bin)
                .arg(format!("--name=e{i}"))
                .arg(format!("--data-dir={}", dir.join(format!("etcd-{i}")).display()))
                .arg(format!("--listen-client-urls=http://127.0.0.1:{c}"))
                .arg(format!("--advertise-client-urls=http://127.0.0.1:{c}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{p}"))
                .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{p}"))
                .arg(format!("--initial-cluster={}", cluster.join(",")))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=balsa-bench")
                .arg("--quota-backend-bytes=8589934592")
                .arg("--log-level=error")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {} (Debian package etcd-server)", bin.display()))?,
        );
    }
    let urls: Vec<String> = ports.iter().map(|(c, _)| format!("http://127.0.0.1:{c}")).collect();
    for u in &urls {
        wait_until("etcd healthy", 60, || {
            ureq::get(&format!("{u}/health")).call().ok().and_then(|r| r.into_string().ok()).is_some_and(|b| b.contains("true"))
        })?;
    }
    Ok((procs, urls))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bin = args.common.balsa_binary()?;
    let tmp = tempfile::Builder::new().prefix("balsa-cluster-bench-").tempdir_in(&args.common.dir)?;

    let (procs, base) = start_balsa(&bin, &tmp.path().join("balsa"), args.partitions)?;
    let url = format!("{base}/loki/api/v1/push");
    let pad = "x".repeat(args.load.line_bytes.saturating_sub(40));
    let lines = args.load.lines;
    let balsa = run_load(args.load.clients, args.load.seconds, move |w, seq| push_lines(&url, w, seq, lines, &pad))?;
    drop(procs);

    let (etcd_procs, urls) = start_etcd(&args.etcd, &tmp.path().join("etcd"))?;
    let value = base64::engine::general_purpose::STANDARD.encode(vec![b'v'; 1024]);
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
    let etcd = run_load(args.load.clients, args.load.seconds, move |c, seq| {
        let key = base64::engine::general_purpose::STANDARD.encode(format!("bench/{c}/{seq}"));
        let body = serde_json::json!({"key": key, "value": value});
        let u = &urls[c % urls.len()];
        match agent.post(&format!("{u}/v3/kv/put")).send_string(&body.to_string()) {
            Ok(r) if r.status() == 200 => Ok(1024),
            Ok(r) => bail!("etcd put answered {}", r.status()),
            Err(e) => bail!("etcd put failed: {e}"),
        }
    })?;
    drop(etcd_procs);

    let b_lines = (balsa.ops * args.load.lines) as f64 / balsa.secs;
    let b_mbs = balsa.bytes as f64 / 1e6 / balsa.secs;
    let e_puts = etcd.ops as f64 / etcd.secs;
    let e_mbs = etcd.bytes as f64 / 1e6 / etcd.secs;
    println!(
        "balsa   3 ingesters RF=3, {} clients x {} lines of ~{} B: {} pushes in {:.1} s",
        args.load.clients, args.load.lines, args.load.line_bytes, balsa.ops, balsa.secs
    );
    println!("balsa   {b_lines:.0} lines/s, {b_mbs:.2} MB/s of raw lines, replicated and fsynced");
    println!("balsa   push latency: p50 {:.1} ms, p99 {:.1} ms", pct(&balsa.latencies, 0.5), pct(&balsa.latencies, 0.99));
    println!("anchor  etcd 3 members, {} clients x 1 KiB puts: {} puts in {:.1} s", args.load.clients, etcd.ops, etcd.secs);
    println!("anchor  etcd {e_puts:.0} puts/s, {e_mbs:.2} MB/s of values");
    println!("anchor  etcd put latency: p50 {:.1} ms, p99 {:.1} ms", pct(&etcd.latencies, 0.5), pct(&etcd.latencies, 0.99));
    println!("ratio   balsa MB/s / etcd MB/s: {:.1}", b_mbs / e_mbs);
    println!("ratio   balsa lines/s / etcd puts/s: {:.1}", b_lines / e_puts);
    println!("ratio   balsa push p50 / etcd put p50: {:.1}", pct(&balsa.latencies, 0.5) / pct(&etcd.latencies, 0.5));
    Ok(())
}
