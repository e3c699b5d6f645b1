//! Shared pieces of Balsa's benchmarks: starting a release `balsa` on a
//! fresh data directory with a benchmark configuration, and small helpers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

/// Limits that let one benchmark tenant push as fast as it can (Loki's
/// defaults would rate-limit it at 4 MB/s).
pub const UNLIMITED: &str =
    "limits_config:\n  ingestion_rate_mb: 100000\n  ingestion_burst_size_mb: 100000\n  per_stream_rate_limit: 0\n";

/// A running `balsa`, killed on drop.
pub struct Server {
    child: Child,
    pub base: String,
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
    #[arg(long)]
    pub balsa: Option<PathBuf>,
    /// Parent of the working directory (its disk holds the data).
    #[arg(long, default_value = "/var/tmp")]
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
        Ok(match &self.balsa {
            Some(b) => b.clone(),
            None => std::env::current_exe()?.with_file_name("balsa"),
        })
    }
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

/// Pushes `lines` logfmt lines padded with `pad` as writer `w`'s `seq`-th
/// batch (stream `{job="bench", writer="w"}`) and waits for the 204;
/// returns the raw bytes of the lines.
pub fn push_lines(url: &str, w: usize, seq: u64, lines: usize, pad: &str) -> Result<u64> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i64;
    let mut raw = 0u64;
    let values: Vec<serde_json::Value> = (0..lines)
        .map(|i| {
            let line = format!("level=info writer={w} seq={seq} i={i} msg=\"{pad}\"");
            raw += line.len() as u64;
            serde_json::json!([(now + i as i64).to_string(), line])
        })
        .collect();
    let body = serde_json::json!({"streams": [{"stream": {"job": "bench", "writer": w.to_string()}, "values": values}]});
    match ureq::post(url).set("Content-Type", "application/json").send_string(&body.to_string()) {
        Ok(r) if r.status() == 204 => Ok(raw),
        Ok(r) => bail!("push answered {}", r.status()),
        Err(e) => bail!("push failed: {e}"),
    }
}
