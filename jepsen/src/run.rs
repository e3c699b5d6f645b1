//! One test run: start a cluster, run the clients while the nemesis injects
//! the scheduled faults, heal, wait for recovery, read everything, check
//! the history and write the results directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checker::{check, Analysis};
use crate::cluster::{Cluster, ClusterError, Net};
use crate::history::{write_jsonl, Direction, Op, OpType, Recorder, NEMESIS};
use crate::nemesis::{self, Fault, Kind};
use crate::report;
use crate::workload::{self, Load};

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub balsa: PathBuf,
    pub nodes: usize,
    pub zones: usize,
    pub partitions: u32,
    pub nemesis: Vec<Kind>,
    pub time_limit: f64,
    /// Pushes per second over all writers.
    pub rate: f64,
    pub writers: usize,
    pub batch: usize,
    /// Two tenants with the same labels (the `tenants` workload).
    pub tenants: bool,
    /// Backward final reads too (the `order` workload).
    pub backward: bool,
    pub seed: u64,
    /// Seconds between faults and how long each lasts.
    pub interval: f64,
    pub hold: f64,
    pub net: Net,
    /// Where the run's directory is created.
    pub results: PathBuf,
    /// The command line, for the report.
    pub command: String,
}

/// Why a run could not be completed (anomalies are not errors: they make
/// the run invalid).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io { what: what.to_string(), source }
}

/// The outcome of a run.
pub struct Outcome {
    pub dir: PathBuf,
    pub analysis: Analysis,
}

/// Set by the first SIGINT or SIGTERM: the run stops its load and faults
/// early, heals, checks what it recorded and removes its processes and
/// namespaces. A second signal exits at once.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::Relaxed) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) }
    }
}

/// Installs the SIGINT/SIGTERM handler (the nodes run in process groups
/// of their own, so a Ctrl-C reaches only the harness).
pub fn stop_on_signals() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only does async-signal-safe things.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Sleeps until `at` seconds after `start`, or until interrupted.
fn sleep_until(start: Instant, at: f64) {
    let target = start + Duration::from_secs_f64(at.max(0.0));
    loop {
        let now = Instant::now();
        if target <= now || interrupted() {
            return;
        }
        std::thread::sleep((target - now).min(Duration::from_millis(100)));
    }
}

/// Runs the test described by `cfg`.
pub fn run(cfg: &Config) -> Result<Outcome, RunError> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let dir = cfg.results.join(format!("{stamp}-seed{}", cfg.seed));
    std::fs::create_dir_all(&dir).map_err(io("creating the results directory"))?;
    let schedule = nemesis::schedule(cfg.seed, &cfg.nemesis, cfg.time_limit, cfg.interval, cfg.hold);
    println!("seed {} — replay with --seed {}", cfg.seed, cfg.seed);
    for f in &schedule {
        println!("  at {:6.1} s for {:4.1} s: {:?} {:?}", f.at, f.hold, f.kind, f.target);
    }
    let json = serde_json::to_string_pretty(&schedule).unwrap_or_default();
    std::fs::write(dir.join("schedule.json"), json).map_err(io("writing schedule.json"))?;

    println!("starting {} ingesters in {} zones ({:?}) and a front; data and logs in {}", cfg.nodes, cfg.zones, cfg.net, dir.display());
    let fake_clock = cfg.nemesis.contains(&Kind::Clock);
    let faulty_disks = cfg.nemesis.contains(&Kind::Disk);
    let s3 = cfg.nemesis.contains(&Kind::Store);
    let mut cluster = Cluster::start(&cfg.balsa, &dir, cfg.nodes, cfg.zones, cfg.partitions, cfg.net, fake_clock, faulty_disks, s3)?;
    let tenants: Vec<String> = if cfg.tenants { vec!["jepsen-a".into(), "jepsen-b".into()] } else { vec!["jepsen".into()] };
    let load = Load {
        url: format!("http://{}", cluster.front.http),
        tenants: tenants.clone(),
        writers: cfg.writers,
        rate: cfg.rate,
        batch: cfg.batch,
        streams_per_writer: 4,
        read_every: 5.0,
    };
    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = workload::start(&load, &rec, &stop);
    let start = Instant::now();
    println!("load running for {} s", cfg.time_limit);
    for f in &schedule {
        inject(&mut cluster, &rec, start, f);
    }
    sleep_until(start, cfg.time_limit);
    if interrupted() {
        println!("{:7.1} s  interrupted: stopping the load early", rec.now());
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    cluster.heal_network();
    let recovered = cluster.wait_healthy(Duration::from_secs(120));
    println!("load stopped; cluster healthy again: {recovered:?}");
    final_reads(&load, &rec, cfg.writers as i64 + tenants.len() as i64, cfg.backward);

    let events = rec.events();
    write_jsonl(&dir.join("history.jsonl"), &events).map_err(io("writing history.jsonl"))?;
    let analysis = check(&events);
    let faults = report::intervals(&events);
    let rec_times = report::recovery(&faults);
    let results = report::Results {
        valid: analysis.valid,
        seed: cfg.seed,
        command: cfg.command.clone(),
        operations: report::op_counts(&events),
        analysis: &analysis,
        faults: &faults,
        recovery_p50_seconds: rec_times.map(|r| r.0),
        recovery_max_seconds: rec_times.map(|r| r.1),
    };
    let json = serde_json::to_string_pretty(&results).unwrap_or_default();
    std::fs::write(dir.join("results.json"), json).map_err(io("writing results.json"))?;
    std::fs::write(dir.join("report.html"), report::html(&events, &results)).map_err(io("writing report.html"))?;
    let o = &results.operations;
    println!(
        "{} pushes, {} reads: {} ok, {} failed, {} indeterminate; {} faults; recovery after heal p50 {} max {}",
        o.adds,
        o.reads,
        o.ok,
        o.fail,
        o.info,
        faults.len(),
        fmt_secs(results.recovery_p50_seconds),
        fmt_secs(results.recovery_max_seconds)
    );
    Ok(Outcome { dir, analysis })
}

fn fmt_secs(s: Option<f64>) -> String {
    s.map_or("—".into(), |s| format!("{s:.2} s"))
}

/// Waits for `f`'s time, injects it, holds it, heals it; both ends go in
/// the history. A fault that cannot be injected is recorded and skipped.
fn inject(cluster: &mut Cluster, rec: &Recorder, start: Instant, f: &Fault) {
    sleep_until(start, f.at);
    if interrupted() {
        return;
    }
    let kind = serde_json::to_value(f.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let name = format!("{kind} {:?}", f.target);
    match nemesis::start(cluster, f) {
        Ok((active, targets)) => {
            println!("{:7.1} s  start {name} on {targets:?}", rec.now());
            rec.record(NEMESIS, OpType::Info, Op::Nemesis { fault: name.clone(), targets: targets.clone(), start: true }, None);
            sleep_until(start, f.at + f.hold);
            let healed = nemesis::heal(cluster, active);
            println!("{:7.1} s  heal  {name}", rec.now());
            let error = healed.err().map(|e| e.to_string());
            rec.record(NEMESIS, OpType::Info, Op::Nemesis { fault: name, targets, start: false }, error);
        }
        Err(e) => {
            println!("{:7.1} s  could not start {name}: {e}", rec.now());
            // In the history too: an unsafe act of the cluster (a wiped
            // node that ran) makes it invalid.
            rec.record(NEMESIS, OpType::Info, Op::Nemesis { fault: name, targets: Vec::new(), start: true }, Some(e.to_string()));
        }
    }
}

/// Reads every tenant forward (and backward), retrying for up to a minute.
fn final_reads(load: &Load, rec: &Recorder, process: i64, backward: bool) {
    let mut dirs = vec![Direction::Forward];
    if backward {
        dirs.push(Direction::Backward);
    }
    for tenant in &load.tenants {
        for d in &dirs {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !workload::read(&load.url, tenant, *d, true, process, rec) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Checks a recorded history again (`jepsen check`).
pub fn recheck(path: &Path) -> Result<Analysis, RunError> {
    let events = crate::history::read_jsonl(path).map_err(io("reading the history"))?;
    Ok(check(&events))
}
