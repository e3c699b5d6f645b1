//! Replicated push throughput of a 3-ingester cluster (replication factor
//! 3, one ingester per zone) against a 3-member etcd cluster on the same
//! machine, with the same number of concurrent clients.
//!
//! 1. Balsa: three `--target=ingester` processes and one front
//!    (distributor, querier) on 127.0.0.1; W writers push batches of N lines
//!    of ~L bytes to the front for D seconds, each waiting for its 204 (the
//!    lines are then fsynced on two of three replicas at least); once as
//!    JSON and once as snappy-compressed protobuf (what promtail sends);
//! 2. anchor: three `etcd` members (Debian's `etcd-server`) on 127.0.0.1; W
//!    clients put 1 KiB values through etcd's JSON gateway for D seconds,
//!    each waiting for its answer (committed on a majority, fsynced);
//! 3. reports Balsa's durable replicated bytes/s (each encoding) against
//!    etcd's bytes/s, and the push latencies. Nothing is asserted.
//!
//! `cargo run --release -p balsa-bench -- cluster --help`

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;

use crate::{free_port, pct, push_encoded, run_load, wait_until, Cluster, Common, Encoding, Goal, Procs, PushLoad, Report};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    load: PushLoad,
    /// Ring partitions of the Balsa cluster.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Push encodings to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [Encoding::Json, Encoding::Protobuf], value_enum)]
    encodings: Vec<Encoding>,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    etcd: PathBuf,
}

/// Options of `all --quick`.
pub const QUICK: &[&str] = &["--seconds", "3", "--partitions", "4"];

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

pub fn run(common: &Common, args: &Args, report: &mut Report) -> Result<()> {
    let bin = common.balsa_binary()?;
    let tmp = common.workdir("balsa-cluster-bench-")?;

    let cluster = Cluster::start(&bin, &tmp.path().join("balsa"), args.partitions)?;
    let mut balsa = Vec::new();
    for &encoding in &args.encodings {
        let url = format!("{}/loki/api/v1/push", cluster.base);
        let pad = "x".repeat(args.load.line_bytes.saturating_sub(40));
        let lines = args.load.lines;
        let run = run_load(args.load.clients, args.load.seconds, move |w, seq| push_encoded(encoding, &url, w, seq, lines, &pad))?;
        balsa.push((encoding, run));
    }
    drop(cluster);

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

    let e_mbs = etcd.bytes as f64 / 1e6 / etcd.secs;
    let e_puts = etcd.ops as f64 / etcd.secs;
    for (encoding, run) in &balsa {
        let b_mbs = run.bytes as f64 / 1e6 / run.secs;
        let b_lines = (run.ops * args.load.lines) as f64 / run.secs;
        report.add(
            "cluster",
            format!(
                "3 ingesters RF 3: raw lines MB/s durable on a majority ({}, {} clients × {} lines) ÷ 3-member etcd MB/s of 1 KiB puts",
                encoding.name(),
                args.load.clients,
                args.load.lines
            ),
            format!("{b_mbs:.1} MB/s, {b_lines:.0} lines/s, push p50 {:.0} ms p99 {:.0} ms", pct(&run.latencies, 0.5), pct(&run.latencies, 0.99)),
            format!("{e_mbs:.2} MB/s, {e_puts:.0} puts/s, put p50 {:.1} ms p99 {:.1} ms", pct(&etcd.latencies, 0.5), pct(&etcd.latencies, 0.99)),
            b_mbs / e_mbs,
            Some(Goal::AtLeast(10.0)),
        );
    }
    // The absolute floor for the cluster, as a ratio to 40 MB/s.
    if let Some(best) = balsa.iter().map(|(_, r)| r.bytes as f64 / 1e6 / r.secs).reduce(f64::max) {
        report.add("cluster", "best encoding's raw lines MB/s ÷ the 40 MB/s target", format!("{best:.1} MB/s"), "40 MB/s", best / 40.0, Some(Goal::AtLeast(1.0)));
    }
    Ok(())
}
