//! Balsa's benchmarks, each against an anchor measured in the same run.
//!
//! One module per benchmark ([`push`], [`cluster`], [`scan`], [`logql`],
//! [`restart`], [`snapshot`], [`memory`]); each takes its own options and
//! adds rows to a [`Report`]: a figure of Balsa's, the anchor's figure, their
//! ratio and the goal the ratio is held against (issue 19). The
//! `balsa-bench` binary runs one of them or `all` and prints the table;
//! nothing here asserts a timing. Below the modules: starting release
//! `balsa` processes on fresh directories, load generators and small helpers.

pub mod cluster;
pub mod logql;
pub mod memory;
pub mod push;
pub mod restart;
pub mod scan;
pub mod snapshot;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

/// What a ratio is held against.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// Met when the ratio is at most this.
    AtMost(f64),
    /// Met when the ratio is at least this.
    AtLeast(f64),
}

impl Goal {
    fn met(self, ratio: f64) -> bool {
        match self {
            Goal::AtMost(g) => ratio <= g,
            Goal::AtLeast(g) => ratio >= g,
        }
    }
}

/// One line of the table: Balsa's figure against its anchor.
#[derive(Debug, Clone)]
pub struct Row {
    pub bench: &'static str,
    /// What is compared, and how the ratio is formed.
    pub what: String,
    pub balsa: String,
    pub anchor: String,
    pub ratio: f64,
    pub goal: Option<Goal>,
}

/// The rows of one run, printed as one Markdown table.
#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Benchmarks that failed, with their error.
    pub failed: Vec<(&'static str, String)>,
}

impl Report {
    /// Adds a row (and shows it on stderr at once: a long run shows progress).
    pub fn add(&mut self, bench: &'static str, what: impl Into<String>, balsa: impl Into<String>, anchor: impl Into<String>, ratio: f64, goal: Option<Goal>) {
        let row = Row { bench, what: what.into(), balsa: balsa.into(), anchor: anchor.into(), ratio, goal };
        eprintln!("{:<9} {}: {} | anchor {} | ratio {:.3}", row.bench, row.what, row.balsa, row.anchor, row.ratio);
        self.rows.push(row);
    }

    /// The table in Markdown.
    pub fn table(&self) -> String {
        let mut out = String::from("| bench | what (ratio) | balsa | anchor | ratio | goal |\n|---|---|---|---|---|---|\n");
        for r in &self.rows {
            let goal = match r.goal {
                None => String::new(),
                Some(g) => {
                    let (sign, v) = match g {
                        Goal::AtMost(v) => ("≤", v),
                        Goal::AtLeast(v) => ("≥", v),
                    };
                    format!("{sign} {v} ({})", if g.met(r.ratio) { "met" } else { "not met" })
                }
            };
            let _ = writeln!(out, "| {} | {} | {} | {} | {} | {goal} |", r.bench, r.what, r.balsa, r.anchor, ratio(r.ratio));
        }
        for (bench, e) in &self.failed {
            let _ = writeln!(out, "| {bench} | FAILED: {} | | | | |", e.replace('|', "/").replace('\n', " "));
        }
        out
    }
}

/// A ratio with three significant digits.
fn ratio(r: f64) -> String {
    if !r.is_finite() {
        return format!("{r}");
    }
    let digits = if r.abs() >= 100.0 { 0 } else if r.abs() >= 10.0 { 1 } else if r.abs() >= 1.0 { 2 } else { 3 };
    format!("{r:.digits$}")
}

/// Limits that let one benchmark tenant push as fast as it can (Loki's
/// defaults would rate-limit it at 4 MB/s).
pub const UNLIMITED: &str =
    "limits_config:\n  ingestion_rate_mb: 100000\n  ingestion_burst_size_mb: 100000\n  per_stream_rate_limit: 0\n";

/// A running `balsa`, killed on drop.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Options every benchmark takes.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// The balsa binary (default: next to this benchmark).
    #[arg(long, global = true)]
    pub balsa: Option<PathBuf>,
    /// Parent of the working directories (its disk holds the data).
    #[arg(long, global = true, default_value = "/var/tmp")]
    pub dir: PathBuf,
}

/// The push load both push benchmarks generate.
#[derive(clap::Args, Debug)]
pub struct PushLoad {
    /// Concurrent clients (writers).
    #[arg(long, visible_alias = "writers", default_value_t = 8)]
    pub clients: usize,
    /// Lines per push.
    #[arg(long, default_value_t = 1000)]
    pub lines: usize,
    /// Bytes per line (about).
    #[arg(long, default_value_t = 200)]
    pub line_bytes: usize,
    /// Seconds of load (for each system measured).
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
}

impl Common {
    /// The `balsa` binary: `--balsa`, else the one next to the benchmark.
    pub fn balsa_binary(&self) -> Result<PathBuf> {
        let bin = match &self.balsa {
            Some(b) => b.clone(),
            None => std::env::current_exe()?.with_file_name("balsa"),
        };
        if !bin.is_file() {
            bail!("no balsa binary at {}: build it (cargo build --release -p balsa) or pass --balsa", bin.display());
        }
        Ok(bin)
    }

    /// A fresh working directory under `--dir`, removed on drop.
    pub fn workdir(&self, prefix: &str) -> Result<tempfile::TempDir> {
        tempfile::Builder::new().prefix(prefix).tempdir_in(&self.dir).with_context(|| format!("a directory in {}", self.dir.display()))
    }
}

/// Processes killed on drop.
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `ok` every 100 ms until it holds, for at most `secs` seconds.
pub fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        if Instant::now() > deadline {
            bail!("{what}: not within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A Balsa cluster on 127.0.0.1: three ingesters (zones 1–3, replication
/// factor 3) and one front (distributor, querier, query frontend).
pub struct Cluster {
    pub procs: Procs,
    /// The front's base URL.
    pub base: String,
}

impl Cluster {
    /// The ingesters' process IDs (the first three processes).
    pub fn ingester_pids(&self) -> Vec<u32> {
        self.procs.0.iter().take(3).map(Child::id).collect()
    }

    /// Starts it in `dir` with `partitions` ring partitions and waits until
    /// every partition has a leader and three voters.
    pub fn start(bin: &Path, dir: &Path, partitions: u32) -> Result<Cluster> {
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
        wait_until("every partition replicated with a leader", 120, || {
            let Ok(r) = ureq::get(&format!("{base}/ring?format=json")).call() else { return false };
            let Ok(v) = r.into_json::<serde_json::Value>() else { return false };
            v["partitions"].as_array().is_some_and(|ps| {
                ps.len() == partitions as usize
                    && ps.iter().all(|p| p["leader"].is_u64() && p["voters"].as_array().is_some_and(|v| v.len() == 3))
            })
        })?;
        Ok(Cluster { procs, base })
    }
}

/// Resident memory of process `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

/// CPU seconds (user + system) process `pid` has used (`/proc/PID/stat`).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed /proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at 3.
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).context("no utime")?;
    let sticks: u64 = f.get(12).and_then(|v| v.parse().ok()).context("no stime")?;
    // USER_HZ is 100 on Linux for every architecture Balsa builds for.
    Ok((ticks + sticks) as f64 / 100.0)
}

/// Waits (at most `secs` seconds) until process `pid` uses under 5 % of a
/// core over a second: after a bulk load the server still flushes and
/// compacts its Raft log, which would share the cores with what is timed
/// next. Returns the seconds waited; not reaching it is reported, not fatal.
pub fn wait_idle(pid: u32, secs: u64) -> Result<f64> {
    let t = Instant::now();
    let mut before = cpu_seconds(pid)?;
    while t.elapsed().as_secs() < secs {
        std::thread::sleep(Duration::from_secs(1));
        let now = cpu_seconds(pid)?;
        if now - before < 0.05 {
            return Ok(t.elapsed().as_secs_f64());
        }
        before = now;
    }
    eprintln!("warning: balsa (pid {pid}) still busy after {secs} s; timing anyway");
    Ok(t.elapsed().as_secs_f64())
}

/// A free port on 127.0.0.1 now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `bin` on `data` with `config` (YAML) and waits for `/ready`.
pub fn start(bin: &Path, data: &Path, config: &str) -> Result<Server> {
    let (http, grpc) = (free_port()?, free_port()?);
    Ok(start_on(bin, data, config, (http, grpc), Duration::from_secs(30))?.0)
}

/// Starts `bin` on `data` with `config` on the given (HTTP, gRPC) ports and
/// waits up to `deadline` for `/ready`; the server and how long that took.
pub fn start_on(bin: &Path, data: &Path, config: &str, (http, grpc): (u16, u16), deadline: Duration) -> Result<(Server, Duration)> {
    let cfg = data.with_extension("yaml");
    std::fs::write(&cfg, config)?;
    let started = Instant::now();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--http.addr=127.0.0.1:{http}"))
        .arg(format!("--grpc.addr=127.0.0.1:{grpc}"))
        .arg(format!("--data.dir={}", data.display()))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let server = Server { child, base: format!("http://127.0.0.1:{http}") };
    while ureq::get(&format!("{}/ready", server.base)).call().map(|r| r.status()).unwrap_or(0) != 200 {
        if started.elapsed() > deadline {
            bail!("balsa did not become ready in {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((server, started.elapsed()))
}

/// The `p`-quantile of sorted values.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The rare string the scan benchmarks search for.
pub const NEEDLE: &str = "rare-needle-7f3a";

/// Deterministic xorshift.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A realistic logfmt HTTP log line; one in `rare_every` carries [`NEEDLE`].
pub fn line(rng: &mut Rng, i: usize, rare_every: usize) -> String {
    const PATHS: [&str; 6] = ["/api/v1/items", "/api/v1/cart", "/login", "/api/v2/search", "/healthz", "/static/app.js"];
    const LEVELS: [&str; 4] = ["info", "info", "warn", "error"];
    let r = rng.next();
    let status = [200, 200, 200, 201, 304, 404, 500][(r % 7) as usize];
    let msg = if i % rare_every == rare_every / 2 { NEEDLE } else { "request completed" };
    format!(
        "level={} method=GET path={}/{} status={status} duration_ms={} user=u{} trace_id={:016x} bytes={} msg=\"{msg}\"",
        LEVELS[(r >> 8) as usize % 4],
        PATHS[(r >> 12) as usize % 6],
        (r >> 16) % 100_000,
        (r >> 24) % 2000,
        (r >> 32) % 50_000,
        rng.next(),
        (r >> 40) % 65_536,
    )
}


/// What a load run measured.
pub struct Run {
    pub ops: usize,
    /// Payload bytes the operations carried.
    pub bytes: u64,
    pub secs: f64,
    /// Milliseconds per operation, sorted.
    pub latencies: Vec<f64>,
}

/// `clients` threads call `op(client, seq)` (returning the payload bytes it
/// carried) back to back until `seconds` pass; any error ends the run.
pub fn run_load(clients: usize, seconds: u64, op: impl Fn(usize, u64) -> Result<u64> + Send + Sync + 'static) -> Result<Run> {
    let op = Arc::new(op);
    let results = Arc::new(Mutex::new((0u64, Vec::new())));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (op, results) = (op.clone(), results.clone());
            std::thread::spawn(move || -> Result<()> {
                let mut seq = 0;
                while Instant::now() < until {
                    let t = Instant::now();
                    let bytes = op(c, seq)?;
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    let mut r = results.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                    r.0 += bytes;
                    r.1.push(ms);
                    seq += 1;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
    }
    let secs = started.elapsed().as_secs_f64();
    let (bytes, mut latencies) = results.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    latencies.sort_by(f64::total_cmp);
    Ok(Run { ops: latencies.len(), bytes, secs, latencies })
}

/// How a push body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// Loki's JSON push body.
    Json,
    /// `logproto.PushRequest`, snappy block-compressed: what promtail,
    /// Grafana Alloy and fluent-bit's Loki output send.
    Protobuf,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "JSON",
            Encoding::Protobuf => "protobuf+snappy",
        }
    }
}

/// Pushes `lines` logfmt lines padded with `pad` as writer `w`'s `seq`-th
/// batch (stream `{job="bench", writer="w"}`) as JSON and waits for the
/// 204; returns the raw bytes of the lines.
pub fn push_lines(url: &str, w: usize, seq: u64, lines: usize, pad: &str) -> Result<u64> {
    push_encoded(Encoding::Json, url, w, seq, lines, pad)
}

/// [`push_lines`] in the given encoding.
pub fn push_encoded(encoding: Encoding, url: &str, w: usize, seq: u64, lines: usize, pad: &str) -> Result<u64> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i64;
    let text: Vec<String> = (0..lines).map(|i| format!("level=info writer={w} seq={seq} i={i} msg=\"{pad}\"")).collect();
    let raw = text.iter().map(|l| l.len() as u64).sum();
    let (content_type, body) = match encoding {
        Encoding::Json => {
            let values: Vec<serde_json::Value> =
                text.into_iter().enumerate().map(|(i, line)| serde_json::json!([(now + i as i64).to_string(), line])).collect();
            let body = serde_json::json!({"streams": [{"stream": {"job": "bench", "writer": w.to_string()}, "values": values}]});
            ("application/json", body.to_string().into_bytes())
        }
        Encoding::Protobuf => {
            use balsa_proto::logproto::{EntryAdapter, PushRequest, StreamAdapter};
            use prost::Message;
            let entries = text
                .into_iter()
                .enumerate()
                .map(|(i, line)| {
                    let ts = now + i as i64;
                    EntryAdapter {
                        timestamp: Some(prost_types::Timestamp { seconds: ts / 1_000_000_000, nanos: (ts % 1_000_000_000) as i32 }),
                        line: line.into_bytes(),
                        structured_metadata: vec![],
                    }
                })
                .collect();
            let req = PushRequest { streams: vec![StreamAdapter { labels: format!("{{job=\"bench\", writer=\"{w}\"}}"), entries, hash: 0 }] };
            let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec())?;
            ("application/x-protobuf", body)
        }
    };
    // As promtail: a protobuf body is snappy-compressed without saying so.
    post_push(url, content_type, &body)?;
    Ok(raw)
}

/// POSTs a push body and waits for its 204.
pub fn post_push(url: &str, content_type: &str, body: &[u8]) -> Result<()> {
    match ureq::post(url).set("Content-Type", content_type).send_bytes(body) {
        Ok(r) if r.status() == 204 => Ok(()),
        Ok(r) => bail!("push answered {}", r.status()),
        Err(e) => bail!("push failed: {e}"),
    }
}

/// Pushes `lines` to `base` as JSON, line `i` at `begin + i × step`, in
/// batches of 2000 to streams `{job="svc0"}`…`{job="svc7"}` by four writers,
/// then flushes every chunk to the object store (`POST /flush`) and waits
/// until the server is idle (see [`wait_idle`]). Returns the seconds until
/// the flush answered.
pub fn ingest_and_flush(server: &Server, lines: &[String], begin: i64, step: i64) -> Result<f64> {
    let t = Instant::now();
    const BATCH: usize = 2000;
    const WRITERS: usize = 4;
    let base = &server.base;
    let url = format!("{base}/loki/api/v1/push");
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let url = &url;
                s.spawn(move || -> Result<()> {
                    for (b, chunk) in lines.chunks(BATCH).enumerate().skip(w).step_by(WRITERS) {
                        let first = b * BATCH;
                        let values: Vec<serde_json::Value> = chunk
                            .iter()
                            .enumerate()
                            .map(|(k, l)| serde_json::json!([(begin + (first + k) as i64 * step).to_string(), l]))
                            .collect();
                        let body = serde_json::json!({"streams": [{"stream": {"job": format!("svc{}", b % 8)}, "values": values}]});
                        post_push(url, "application/json", body.to_string().as_bytes())?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        }
        Ok(())
    })?;
    let r = ureq::post(&format!("{base}/flush")).call().context("POST /flush")?;
    if r.status() != 204 {
        bail!("flush answered {}", r.status());
    }
    let secs = t.elapsed().as_secs_f64();
    let idle = wait_idle(server.pid(), 120)?;
    eprintln!("server idle {idle:.0} s after the flush");
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_marks_goals_and_failures() {
        let mut r = Report::default();
        r.add("push", "a ÷ b", "2 ms", "1 ms", 2.0, Some(Goal::AtMost(1.0)));
        r.add("scan", "c ÷ d", "1 s", "2 s", 0.5, Some(Goal::AtLeast(0.5)));
        r.add("logql", "e ÷ f", "x", "y", 12.345, None);
        r.failed.push(("cluster", "starting etcd | twice\nfailed".into()));
        let t = r.table();
        assert!(t.contains("| push | a ÷ b | 2 ms | 1 ms | 2.00 | ≤ 1 (not met) |"), "{t}");
        assert!(t.contains("| scan | c ÷ d | 1 s | 2 s | 0.500 | ≥ 0.5 (met) |"), "{t}");
        assert!(t.contains("| logql | e ÷ f | x | y | 12.3 |  |"), "{t}");
        // A failure stays one row of the table.
        assert!(t.contains("| cluster | FAILED: starting etcd / twice failed |"), "{t}");
    }
}
