//! A command-line client in the `balsa` binary, like Loki's `logcli`:
//! `balsa query`, `balsa labels`, `balsa series`, `balsa push`, `balsa tail`
//! (and `balsa canary`, [`canary`]), against any
//! Loki-compatible URL (`--addr`, `--org-id`, or `LOKI_ADDR`,
//! `LOKI_ORG_ID`).

pub mod canary;

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use balsa_logql::time::{format_rfc3339, now_ns};

/// Client commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a LogQL query (log or metric) and print the result.
    Query(QueryArgs),
    /// List label names, or the values of one label.
    Labels(LabelsArgs),
    /// List the series (label sets) matching selectors.
    Series(SeriesArgs),
    /// Push lines from standard input as one stream.
    Push(PushArgs),
    /// Follow new lines of a log query (WebSocket tail).
    Tail(TailArgs),
    /// Print the SHA-256 of a token read from standard input, as the auth
    /// file's `sha256` holds it.
    HashToken,
    /// Write lines at a steady rate, read them back, and count the lost,
    /// duplicated, out-of-order and late ones (like loki-canary).
    Canary(canary::CanaryArgs),
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub server: Server,
    /// The log query.
    pub query: String,
    /// Lines of history to start with.
    #[arg(long, default_value_t = 30)]
    pub limit: usize,
    /// Seconds to hold lines back so late ones are not missed (0–5).
    #[arg(long = "delay-for", default_value_t = 0)]
    pub delay_for: u32,
    #[arg(long, value_enum, default_value_t = Output::Default)]
    pub output: Output,
}

/// Where the server is.
#[derive(Debug, Args)]
pub struct Server {
    /// Server URL.
    #[arg(long, env = "LOKI_ADDR", default_value = "http://127.0.0.1:3100")]
    pub addr: String,
    /// Tenant (X-Scope-OrgID); `a|b` queries several.
    #[arg(long = "org-id", env = "LOKI_ORG_ID")]
    pub org_id: Option<String>,
    /// Token sent as `Authorization: Bearer` (a server with an auth file).
    #[arg(long = "bearer-token", env = "LOKI_BEARER_TOKEN", hide_env_values = true)]
    pub bearer_token: Option<String>,
}

/// How to print log lines.
#[derive(Clone, Copy, Debug, ValueEnum, Default)]
pub enum Output {
    /// Timestamp, labels and line.
    #[default]
    Default,
    /// The line only.
    Raw,
    /// One JSON object per line.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub server: Server,
    /// The LogQL query.
    pub query: String,
    /// How far back from now, when --from is not given.
    #[arg(long, default_value = "1h")]
    pub since: String,
    /// Start (RFC3339, Unix seconds or nanoseconds).
    #[arg(long)]
    pub from: Option<String>,
    /// End (default now).
    #[arg(long)]
    pub to: Option<String>,
    /// Most log lines to return.
    #[arg(long, default_value_t = 30)]
    pub limit: usize,
    /// Oldest first (default newest first).
    #[arg(long)]
    pub forward: bool,
    /// Step of a metric range query, e.g. 1m.
    #[arg(long)]
    pub step: Option<String>,
    /// Log lines at least this far apart (e.g. 1m), the others skipped.
    #[arg(long)]
    pub interval: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Default)]
    pub output: Output,
    /// Print the query's statistics to stderr (as logcli's `--stats`).
    #[arg(long)]
    pub stats: bool,
}

#[derive(Debug, Args)]
pub struct LabelsArgs {
    #[command(flatten)]
    pub server: Server,
    /// A label name: list its values instead of the names.
    pub name: Option<String>,
    #[arg(long, default_value = "1h")]
    pub since: String,
}

#[derive(Debug, Args)]
pub struct SeriesArgs {
    #[command(flatten)]
    pub server: Server,
    /// Stream selectors, e.g. '{app="api"}'.
    #[arg(required = true)]
    pub matchers: Vec<String>,
    #[arg(long, default_value = "1h")]
    pub since: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub server: Server,
    /// The stream's labels, e.g. '{app="api", env="dev"}'.
    #[arg(long)]
    pub labels: String,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{addr}: {message}")]
    Http { addr: String, message: String },
    #[error("invalid argument {what}: {problem}")]
    Arg { what: &'static str, problem: String },
    #[error("reading standard input: {0}")]
    Stdin(std::io::Error),
    /// A check the command ran found a problem (`balsa canary`).
    #[error("{0}")]
    Check(String),
}

pub(crate) fn request(server: &Server, method: &str, path: &str) -> ureq::Request {
    let mut r = ureq::request(method, &format!("{}{path}", server.addr.trim_end_matches('/'))).timeout(Duration::from_secs(300));
    if let Some(org) = &server.org_id {
        r = r.set("X-Scope-OrgID", org);
    }
    if let Some(token) = &server.bearer_token {
        r = r.set("Authorization", &format!("Bearer {token}"));
    }
    r
}

pub(crate) fn http_err(server: &Server, e: ureq::Error) -> CliError {
    let message = match e {
        ureq::Error::Status(code, resp) => format!("{code}: {}", resp.into_string().unwrap_or_default().trim()),
        e => e.to_string(),
    };
    CliError::Http { addr: server.addr.clone(), message }
}

fn json_of(server: &Server, r: Result<ureq::Response, ureq::Error>) -> Result<Value, CliError> {
    let resp = r.map_err(|e| http_err(server, e))?;
    resp.into_json().map_err(|e| CliError::Http { addr: server.addr.clone(), message: format!("not JSON: {e}") })
}

fn time_arg(what: &'static str, v: &str) -> Result<i64, CliError> {
    crate::api::parse_timestamp(v).map_err(|e| CliError::Arg { what, problem: e.to_string() })
}

fn since_ns(v: &str) -> Result<i64, CliError> {
    balsa_logql::units::parse_duration(v)
        .map(|d| d.as_nanos() as i64)
        .map_err(|e| CliError::Arg { what: "--since", problem: e.to_string() })
}

/// Shows `querying… Ns` on a terminal while `f` runs.
fn with_progress<T>(f: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return f();
    }
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let started = Instant::now();
    let ticker = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            if started.elapsed() > Duration::from_secs(1) && !flag.load(Ordering::Relaxed) {
                eprint!("\rquerying… {}s", started.elapsed().as_secs());
            }
        }
        eprint!("\r\x1b[K");
    });
    let out = f();
    done.store(true, Ordering::Relaxed);
    let _ = ticker.join();
    out
}

/// Runs a client command; the process exit code follows.
pub fn run(cmd: Command) -> Result<(), CliError> {
    let out = std::io::stdout();
    let mut out = out.lock();
    match cmd {
        Command::Query(a) => {
            let end = a.to.as_deref().map(|v| time_arg("--to", v)).transpose()?.unwrap_or_else(now_ns);
            let start = match &a.from {
                Some(v) => time_arg("--from", v)?,
                None => end - since_ns(&a.since)?,
            };
            let mut r = request(&a.server, "GET", "/loki/api/v1/query_range")
                .query("query", &a.query)
                .query("start", &start.to_string())
                .query("end", &end.to_string())
                .query("limit", &a.limit.to_string())
                .query("direction", if a.forward { "forward" } else { "backward" });
            if let Some(step) = &a.step {
                r = r.query("step", step);
            }
            if let Some(interval) = &a.interval {
                r = r.query("interval", interval);
            }
            let v = with_progress(|| json_of(&a.server, r.call()))?;
            print_result(&mut out, &v["data"], a.output, a.forward);
            if a.stats {
                print_stats(&v["data"]["stats"]);
            }
        }
        Command::Labels(a) => {
            let start = (now_ns() - since_ns(&a.since)?).to_string();
            let path = match &a.name {
                Some(n) => format!("/loki/api/v1/label/{n}/values"),
                None => "/loki/api/v1/labels".into(),
            };
            let v = json_of(&a.server, request(&a.server, "GET", &path).query("start", &start).call())?;
            for l in v["data"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "{}", l.as_str().unwrap_or_default());
            }
        }
        Command::Series(a) => {
            let mut r = request(&a.server, "GET", "/loki/api/v1/series").query("start", &(now_ns() - since_ns(&a.since)?).to_string());
            for m in &a.matchers {
                r = r.query("match[]", m);
            }
            let v = json_of(&a.server, r.call())?;
            for s in v["data"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "{}", labels_text(s));
            }
        }
        Command::Tail(a) => {
            let base = a.server.addr.trim_end_matches('/').replacen("http", "ws", 1);
            let query: String = form_urlencoded::byte_serialize(a.query.as_bytes()).collect();
            let url = format!("{base}/loki/api/v1/tail?query={query}&limit={}&delay_for={}", a.limit, a.delay_for);
            let mut req = tungstenite::client::IntoClientRequest::into_client_request(url.as_str())
                .map_err(|e| CliError::Arg { what: "--addr", problem: e.to_string() })?;
            if let Some(org) = &a.server.org_id {
                let v = org.parse().map_err(|_| CliError::Arg { what: "--org-id", problem: "not a valid header value".into() })?;
                req.headers_mut().insert("X-Scope-OrgID", v);
            }
            if let Some(token) = &a.server.bearer_token {
                let v = format!("Bearer {token}")
                    .parse()
                    .map_err(|_| CliError::Arg { what: "--bearer-token", problem: "not a valid header value".into() })?;
                req.headers_mut().insert("Authorization", v);
            }
            let (mut ws, _) = tungstenite::connect(req).map_err(|e| CliError::Http { addr: a.server.addr.clone(), message: e.to_string() })?;
            loop {
                match ws.read() {
                    Ok(tungstenite::Message::Text(t)) => {
                        let v: Value = serde_json::from_str(&t).unwrap_or_default();
                        print_result(&mut out, &json!({"resultType": "streams", "result": v["streams"]}), a.output, true);
                        let _ = out.flush();
                    }
                    Ok(tungstenite::Message::Close(_)) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(CliError::Http { addr: a.server.addr.clone(), message: e.to_string() }),
                }
            }
        }
        Command::Canary(a) => canary::run(a)?,
        Command::HashToken => {
            let mut token = String::new();
            std::io::stdin().read_line(&mut token).map_err(CliError::Stdin)?;
            let token = token.trim_end_matches(['\r', '\n']);
            if token.is_empty() {
                return Err(CliError::Arg { what: "standard input", problem: "no token: pipe the token in, e.g. `balsa hash-token < token.txt`".into() });
            }
            let _ = writeln!(out, "{}", crate::auth::hash_token(token));
        }
        Command::Push(a) => {
            let labels = balsa_logql::labels::LabelSet::parse(&a.labels)
                .map_err(|e| CliError::Arg { what: "--labels", problem: e.to_string() })?;
            let stdin = std::io::stdin();
            let mut batch: Vec<Value> = Vec::new();
            let mut last = 0i64;
            let mut sent = 0usize;
            let flush = |batch: &mut Vec<Value>| -> Result<(), CliError> {
                if batch.is_empty() {
                    return Ok(());
                }
                let body = json!({"streams": [{"stream": labels.to_json(), "values": batch}]});
                request(&a.server, "POST", "/loki/api/v1/push")
                    .set("Content-Type", "application/json")
                    .send_string(&body.to_string())
                    .map_err(|e| http_err(&a.server, e))?;
                batch.clear();
                Ok(())
            };
            for line in stdin.lock().lines() {
                let line = line.map_err(CliError::Stdin)?;
                // Strictly increasing timestamps keep the input order.
                let ts = now_ns().max(last + 1);
                last = ts;
                batch.push(json!([ts.to_string(), line]));
                sent += 1;
                if batch.len() >= 1000 {
                    flush(&mut batch)?;
                }
            }
            flush(&mut batch)?;
            eprintln!("pushed {sent} lines");
        }
    }
    Ok(())
}

/// The `stats` object as `Section.Field<TAB>value` lines on stderr, the
/// way logcli prints it (`Summary.TotalLinesProcessed  7000`).
fn print_stats(stats: &Value) {
    fn walk(prefix: &str, v: &Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let mut name = k.clone();
                    if let Some(first) = name.get(..1) {
                        name.replace_range(..1, &first.to_uppercase());
                    }
                    walk(&if prefix.is_empty() { name } else { format!("{prefix}.{name}") }, x);
                }
            }
            other => eprintln!("{prefix}\t{other}"),
        }
    }
    for section in ["summary", "querier", "ingester"] {
        let mut name = section.to_string();
        name.replace_range(..1, &section[..1].to_uppercase());
        walk(&name, &stats[section]);
    }
}

fn labels_text(v: &Value) -> String {
    let pairs: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", balsa_logql::labels::go_quote(v.as_str().unwrap_or_default())))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

fn print_result(out: &mut impl Write, data: &Value, output: Output, forward: bool) {
    match data["resultType"].as_str() {
        Some("streams") => {
            let mut lines: Vec<(i64, String, &str)> = Vec::new();
            for s in data["result"].as_array().into_iter().flatten() {
                let labels = labels_text(&s["stream"]);
                for v in s["values"].as_array().into_iter().flatten() {
                    let ts: i64 = v[0].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
                    lines.push((ts, labels.clone(), v[1].as_str().unwrap_or_default()));
                }
            }
            lines.sort_by_key(|l| l.0);
            if !forward {
                lines.reverse();
            }
            for (ts, labels, line) in lines {
                let _ = match output {
                    Output::Default => writeln!(out, "{} {labels} {line}", format_rfc3339(ts)),
                    Output::Raw => writeln!(out, "{line}"),
                    Output::Jsonl => writeln!(out, "{}", json!({"timestamp": format_rfc3339(ts), "labels": labels, "line": line})),
                };
            }
        }
        Some("matrix") => {
            for s in data["result"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "{}", labels_text(&s["metric"]));
                for p in s["values"].as_array().into_iter().flatten() {
                    let _ = writeln!(out, "  {} {}", p[0], p[1].as_str().unwrap_or_default());
                }
            }
        }
        Some("vector") => {
            for s in data["result"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "{} {}", labels_text(&s["metric"]), s["value"][1].as_str().unwrap_or_default());
            }
        }
        Some("scalar") => {
            let _ = writeln!(out, "{}", data["result"][1].as_str().unwrap_or_default());
        }
        _ => {
            let _ = writeln!(out, "{data}");
        }
    }
}
