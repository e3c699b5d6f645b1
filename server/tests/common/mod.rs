//! Test harness: runs the real `balsa` binary on 127.0.0.1 with its own data
//! directory and ports, and talks to it over HTTP.
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod load;

pub const BIN: &str = env!("CARGO_BIN_EXE_balsa");

/// Polls `cond` every 20 ms; panics naming `what` after `deadline`.
pub fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running (or stopped) balsa process and its data directory.
pub struct Balsa {
    pub dir: tempfile::TempDir,
    pub http_port: u16,
    pub grpc_port: u16,
    child: Option<Child>,
    extra_args: Vec<String>,
}

/// A port that is free now, below Linux's ephemeral range (32768+), so an
/// outgoing connection cannot take it before the server binds it.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(0, 20_000 + (std::process::id() % 1_000) as u16 * 12, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        let p = if p >= 32_000 {
            NEXT.store(20_001, Ordering::SeqCst);
            20_000
        } else {
            p
        };
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

impl Balsa {
    /// Starts balsa with default settings plus `args`, and waits for /ready.
    pub fn start(args: &[&str]) -> Self {
        let mut b = Self::new(args);
        b.spawn();
        b
    }

    /// Starts balsa with `yaml` as its configuration file (kept in its
    /// directory), and waits for /ready.
    pub fn with_config(yaml: &str) -> Self {
        let mut b = Self::new(&[]);
        let cfg = b.dir.path().join("config.yaml");
        std::fs::write(&cfg, yaml).expect("config file");
        b.extra_args.push(format!("--config.file={}", cfg.display()));
        b.spawn();
        b
    }

    /// A process not started yet, with its directory and ports chosen.
    pub fn new(args: &[&str]) -> Self {
        Balsa {
            dir: tempfile::tempdir().expect("temp dir"),
            http_port: free_port(),
            grpc_port: free_port(),
            child: None,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn grpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    /// Adds arguments for the next start.
    pub fn add_args(&mut self, args: &[String]) {
        self.extra_args.extend(args.iter().cloned());
    }

    /// Sends a signal (`STOP`, `CONT`, `TERM`) to the process.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("kill").success();
        assert!(ok, "kill -{sig} {pid}");
    }

    /// Waits up to `deadline` for the process to exit; its exit code.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return status.code();
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The running server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("balsa is running").id()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the process again on the same data directory and ports.
    pub fn spawn(&mut self) {
        self.spawn_nowait();
        self.wait_ready();
    }

    /// Starts the process without waiting for it to be ready.
    pub fn spawn_nowait(&mut self) {
        let log = std::fs::File::create(self.dir.path().join(format!("balsa-{}.log", Instant::now().elapsed().as_nanos())))
            .expect("log file");
        let child = Command::new(BIN)
            .arg(format!("--http.addr=127.0.0.1:{}", self.http_port))
            .arg(format!("--grpc.addr=127.0.0.1:{}", self.grpc_port))
            .arg(format!("--data.dir={}", self.data_dir().display()))
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn balsa");
        self.child = Some(child);
    }

    /// Polls /ready until 200; panics with the process state after 60 s.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = ureq::get(&self.url("/ready")).timeout(Duration::from_secs(2)).call() {
                if r.status() == 200 {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                let logs = self.logs();
                let tail: Vec<&str> = logs.lines().rev().take(10).collect();
                panic!("balsa exited before becoming ready: {status}\nlast log lines (newest first):\n{}", tail.join("\n"));
            }
            if Instant::now() > deadline {
                let logs = self.logs();
                let tail: Vec<&str> = logs.lines().rev().take(30).collect();
                panic!(
                    "balsa not ready after 60 s: {}\nlast log lines (newest first):\n{}",
                    self.get("/ready", &[], &[]).1,
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("reap");
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// POSTs a body with headers; returns (status, body).
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        let mut req = ureq::post(&self.url(path)).timeout(Duration::from_secs(30));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        into_pair(req.send_bytes(body))
    }

    /// GETs `path` with query pairs; returns (status, body).
    pub fn get(&self, path: &str, query: &[(&str, &str)], headers: &[(&str, &str)]) -> (u16, String) {
        let mut req = ureq::get(&self.url(path)).timeout(Duration::from_secs(30));
        for (k, v) in query {
            req = req.query(k, v);
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        into_pair(req.call())
    }

    /// GET that must answer 200 with JSON.
    pub fn get_json(&self, path: &str, query: &[(&str, &str)], headers: &[(&str, &str)]) -> serde_json::Value {
        let (status, body) = self.get(path, query, headers);
        assert_eq!(status, 200, "GET {path} {query:?}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// Pushes JSON for `tenant` (None: no header).
    pub fn push_json(&self, tenant: Option<&str>, body: &serde_json::Value) -> (u16, String) {
        let mut h = vec![("Content-Type", "application/json")];
        if let Some(t) = tenant {
            h.push(("X-Scope-OrgID", t));
        }
        self.post("/loki/api/v1/push", &h, body.to_string().as_bytes())
    }

    /// Every (ts, line) a log query returns over the last `hours`, forward.
    pub fn query_lines(&self, tenant: Option<&str>, query: &str, hours: i64, limit: usize) -> Vec<(i64, String)> {
        let start = (now_ns() - hours * 3_600_000_000_000).to_string();
        let end = (now_ns() + 600_000_000_000).to_string();
        let limit = limit.to_string();
        let mut h = Vec::new();
        if let Some(t) = tenant {
            h.push(("X-Scope-OrgID", t));
        }
        let v = self.get_json(
            "/loki/api/v1/query_range",
            &[("query", query), ("start", &start), ("end", &end), ("limit", &limit), ("direction", "forward")],
            &h,
        );
        let mut out = Vec::new();
        for s in v["data"]["result"].as_array().expect("result array") {
            for e in s["values"].as_array().expect("values") {
                let ts: i64 = e[0].as_str().expect("ts string").parse().expect("ts int");
                out.push((ts, e[1].as_str().expect("line").to_string()));
            }
        }
        out.sort();
        out
    }

    /// The process's log so far.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.path()) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with(".log") {
                    let _ = std::fs::File::open(e.path()).and_then(|mut f| f.read_to_string(&mut all));
                }
            }
        }
        all
    }
}

impl Drop for Balsa {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn into_pair(r: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    // Not `into_string`: it stops at 10 MB, and exactly-once checks read more.
    let body = |resp: ureq::Response| {
        let mut s = String::new();
        match resp.into_reader().read_to_string(&mut s) {
            Ok(_) => s,
            Err(e) => format!("reading the body failed: {e}"),
        }
    };
    match r {
        Ok(resp) => (resp.status(), body(resp)),
        Err(ureq::Error::Status(code, resp)) => (code, body(resp)),
        Err(e) => (0, format!("transport error: {e}")),
    }
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_nanos() as i64
}

/// Runs the binary with `args` and returns (exit code, stderr).
/// The lines of a `query_range` answer for log streams, sorted.
pub fn result_lines(v: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = v["data"]["result"]
        .as_array()
        .expect("result array")
        .iter()
        .flat_map(|s| s["values"].as_array().expect("values").iter().map(|e| e[1].as_str().expect("line").to_string()))
        .collect();
    out.sort();
    out
}

/// A one-entry `logproto.PushRequest`, as gRPC clients send it.
pub fn grpc_push_request(labels: &str, ts: i64, line: &str, metadata: &[(&str, &str)]) -> balsa_proto::logproto::PushRequest {
    use balsa_proto::logproto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter};
    PushRequest {
        streams: vec![StreamAdapter {
            labels: labels.into(),
            entries: vec![EntryAdapter {
                timestamp: Some(prost_types::Timestamp { seconds: ts / 1_000_000_000, nanos: (ts % 1_000_000_000) as i32 }),
                line: line.as_bytes().to_vec(),
                structured_metadata: metadata
                    .iter()
                    .map(|(name, value)| LabelPairAdapter { name: name.to_string(), value: value.to_string() })
                    .collect(),
            }],
            hash: 0,
        }],
    }
}

/// Every file below `dir` (none if it does not exist), sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

pub fn run_to_exit(args: &[&str], cwd: &Path) -> (i32, String) {
    let out = Command::new(BIN).args(args).current_dir(cwd).output().expect("run balsa");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A `moto_server` (PyPI `moto[server]`) on a free 127.0.0.1 port, ended on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto; `None` (with a note) where it is not installed, except in
    /// CI, which must have it.
    pub fn start() -> Option<Moto> {
        let port = free_port();
        let child = match Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "CI must provide moto_server: {e}");
                eprintln!("skipped: moto_server not installed ({e}); pip install 'moto[server]'");
                return None;
            }
        };
        let m = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
        wait_for("moto_server to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Some(m)
    }

    /// Creates a bucket (path-style PUT; moto does not check signatures).
    pub fn create_bucket(&self, name: &str) {
        let r = ureq::put(&format!("{}/{name}", self.endpoint)).call();
        assert!(r.is_ok(), "create bucket: {r:?}");
    }
}
