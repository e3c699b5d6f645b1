//! A fresh Balsa cluster of real processes: `n` ingesters spread over
//! zones (replication factor 3) and one front (distributor, querier,
//! query-frontend) that the clients talk to.
//!
//! With [`Net::Namespaces`] (needs root) every ingester runs in its own
//! network namespace, joined to a bridge by a veth pair, so the nemesis can
//! cut links with nftables inside a node's namespace. With [`Net::Proxy`]
//! everything listens on 127.0.0.1 and nodes reach each other through
//! jepsen's TCP proxy ([`crate::proxy`]), which cuts and delays links. With
//! [`Net::Local`] nodes talk directly and the network is left alone.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::proxy::{self, Proxy, Route};

/// Why the cluster could not be started or changed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("{0}")]
    NotReady(String),
    /// The cluster did something unsafe (a history checker counts it).
    #[error("{UNSAFE_MARK}{0}")]
    Unsafe(String),
    /// The fault is not applied now (it would break the run's premises).
    #[error("{0}")]
    Skipped(String),
}

/// How an unsafe act of the cluster starts in a nemesis event's error.
pub const UNSAFE_MARK: &str = "UNSAFE: ";

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// How nodes are connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    /// One network namespace per ingester (root only): partitions and
    /// packet loss with nftables.
    Namespaces,
    /// Everything on 127.0.0.1, nodes linked through jepsen's TCP proxy:
    /// partitions and added latency, no root needed.
    Proxy,
    /// Everything on 127.0.0.1, no network faults.
    Local,
}

/// Runs a command and fails with its stderr.
fn run(cmd: &str, args: &[&str]) -> Result<(), ClusterError> {
    let out = Command::new(cmd).args(args).output().map_err(io(format!("running {cmd}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ClusterError::Command {
            command: format!("{cmd} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The namespaces, veths and bridge of one test, removed on drop.
struct Network {
    tag: String,
    subnet: u8,
    /// The nodes whose namespace and veth exist.
    nodes: Vec<u64>,
}

impl Network {
    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn ns(&self, id: u64) -> String {
        format!("{}n{id}", self.tag)
    }

    fn ip(&self, id: u64) -> String {
        format!("10.213.{}.{id}", self.subnet)
    }

    fn host_ip(&self) -> String {
        format!("10.213.{}.254", self.subnet)
    }

    fn create(nodes: usize) -> Result<Self, ClusterError> {
        // The bridge's name claims the subnet: a run next to this one (or
        // the leftovers of a killed one) holds another.
        let first = std::process::id() % 250;
        let mut claimed = None;
        for k in 0..250 {
            let subnet = ((first + k) % 250) as u8;
            let tag = format!("bj{subnet}");
            if run("ip", &["link", "add", &format!("{tag}br"), "type", "bridge"]).is_ok() {
                claimed = Some((tag, subnet));
                break;
            }
        }
        let Some((tag, subnet)) = claimed else {
            return Err(ClusterError::NotReady("no free test subnet: remove leftover bridges `bj*br` (ip link del …)".into()));
        };
        // Built first: if a step below fails, dropping it removes what exists.
        let mut net = Network { tag, subnet, nodes: Vec::new() };
        let br = net.bridge();
        run("ip", &["addr", "add", &format!("{}/24", net.host_ip()), "dev", &br])?;
        run("ip", &["link", "set", &br, "up"])?;
        for id in 1..=nodes as u64 {
            net.add(id)?;
        }
        Ok(net)
    }

    /// Creates node `id`'s namespace, joined to the bridge.
    fn add(&mut self, id: u64) -> Result<(), ClusterError> {
        let (ns, host, inner) = (self.ns(id), format!("{}h{id}", self.tag), format!("{}v{id}", self.tag));
        run("ip", &["netns", "add", &ns])?;
        self.nodes.push(id);
        run("ip", &["link", "add", &host, "type", "veth", "peer", "name", &inner])?;
        run("ip", &["link", "set", &inner, "netns", &ns])?;
        run("ip", &["link", "set", &host, "master", &self.bridge()])?;
        run("ip", &["link", "set", &host, "up"])?;
        run("ip", &["netns", "exec", &ns, "ip", "addr", "add", &format!("{}/24", self.ip(id)), "dev", &inner])?;
        run("ip", &["netns", "exec", &ns, "ip", "link", "set", &inner, "up"])?;
        run("ip", &["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])
    }

    /// Drops traffic between node `id` and `others` (both directions): all
    /// of it, or `loss` percent of the packets at random.
    fn cut(&self, id: u64, others: &[u64], loss: Option<u32>) -> Result<(), ClusterError> {
        if others.is_empty() {
            return Ok(());
        }
        let ips: Vec<String> = others.iter().map(|o| self.ip(*o)).collect();
        let set = format!("{{ {} }}", ips.join(", "));
        let share = loss.map_or(String::new(), |p| format!("numgen random mod 100 < {p} "));
        let rules = format!(
            "table inet jepsen {{\n chain in {{ type filter hook input priority 0; ip saddr {set} {share}drop; }}\n chain out {{ type filter hook output priority 0; ip daddr {set} {share}drop; }}\n}}\n"
        );
        let ns = self.ns(id);
        let _ = run("ip", &["netns", "exec", &ns, "nft", "delete", "table", "inet", "jepsen"]);
        let file = std::env::temp_dir().join(format!("{}-{id}.nft", self.tag));
        std::fs::write(&file, rules).map_err(io("writing nft rules"))?;
        let r = run("ip", &["netns", "exec", &ns, "nft", "-f", &file.display().to_string()]);
        let _ = std::fs::remove_file(&file);
        r
    }

    fn heal(&self, id: u64) {
        let _ = run("ip", &["netns", "exec", &self.ns(id), "nft", "delete", "table", "inet", "jepsen"]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for &id in &self.nodes {
            let _ = run("ip", &["link", "del", &format!("{}h{id}", self.tag)]);
            let _ = run("ip", &["netns", "del", &self.ns(id)]);
        }
        let _ = run("ip", &["link", "del", &self.bridge()]);
    }
}

/// One balsa process.
pub struct Node {
    pub id: u64,
    pub zone: String,
    pub http: String,
    /// Where the node's gRPC server listens.
    pub grpc: String,
    /// The gRPC address other nodes use (the proxy's, with `--net proxy`).
    pub advertise: String,
    data: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    netns: Option<String>,
    /// libfaketime's offset file, when clocks may be skewed.
    faketime: Option<PathBuf>,
    /// faultio, when disk faults may be injected.
    disk: Option<Faultio>,
    child: Option<Child>,
    paused: bool,
    /// Drained for good: no longer part of the cluster.
    retired: bool,
    /// Its disk was wiped (it is retired too).
    wiped: bool,
}

/// libfaketime (Debian package `faketime`), multi-threaded flavour.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// `faultio/faultio.c`, built by build.rs: while the file named by
/// `BALSA_FAULTIO_CONTROL` exists, writes and syncs of files fail with EIO.
const FAULTIO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libfaultio.so"));

/// Writes the faultio library into `dir`; returns its path.
pub fn write_faultio(dir: &Path) -> Result<PathBuf, ClusterError> {
    let lib = dir.join("libfaultio.so");
    std::fs::write(&lib, FAULTIO).map_err(io("writing libfaultio.so"))?;
    Ok(lib)
}

/// A node's faultio: the library, and the file that arms it.
#[derive(Clone)]
struct Faultio {
    lib: PathBuf,
    control: PathBuf,
}

/// What a node's process needs preloaded and in its environment.
fn preload(cmd: &mut Command, faketime: Option<&Path>, disk: Option<&Faultio>) {
    let mut libs: Vec<String> = Vec::new();
    if let Some(f) = disk {
        libs.push(f.lib.display().to_string());
        cmd.env("BALSA_FAULTIO_CONTROL", &f.control);
    }
    if let Some(rc) = faketime {
        libs.push(LIBFAKETIME.to_string());
        // Wall clock only: timers and leases run on the monotonic clock.
        cmd.env("FAKETIME_TIMESTAMP_FILE", rc).env("FAKETIME_CACHE_DURATION", "1").env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    }
    if !libs.is_empty() {
        cmd.env("LD_PRELOAD", libs.join(" "));
    }
}

impl Node {
    fn spawn(&mut self, bin: &Path) -> Result<(), ClusterError> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).map_err(io("opening a node log"))?;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg(format!("--http.addr={}", self.http))
            .arg(format!("--grpc.addr={}", self.grpc))
            .arg(format!("--data.dir={}", self.data.display()))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            // Not in the terminal's process group: a Ctrl-C reaches only the
            // harness, which heals and then stops the nodes itself.
            .process_group(0);
        preload(&mut cmd, self.faketime.as_deref(), self.disk.as_ref());
        self.child = Some(cmd.spawn().map_err(io(format!("starting node {}", self.id)))?);
        self.paused = false;
        Ok(())
    }

    fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) with a pid of a child this harness started.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// kill -9, and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = true;
    }

    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    fn ready(&self) -> bool {
        ureq::get(&format!("http://{}/ready", self.http))
            .timeout(Duration::from_secs(2))
            .call()
            .is_ok_and(|r| r.status() == 200)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.paused {
            self.resume();
        }
        self.kill();
    }
}

/// The whole cluster.
pub struct Cluster {
    /// Every ingester ever started, by id - 1 (retired ones included).
    pub ingesters: Vec<Node>,
    pub front: Node,
    pub zones: usize,
    spawner: Spawner,
    /// The S3-compatible server (`moto_server`), when chunks go to S3.
    store: Option<Child>,
    net: Option<Network>,
    proxy: Option<Proxy>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut s) = self.store.take() {
            // SAFETY: kill(2) on a child this harness started.
            unsafe {
                libc::kill(s.id() as i32, libc::SIGCONT);
            }
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// Starts `moto_server` (PyPI `moto[server]`) on `host` with a bucket
/// `jepsen`; returns it and its endpoint.
fn start_store(host: &str, used: &mut Vec<u16>) -> Result<(Child, String), ClusterError> {
    let port = free_port(used);
    let child = Command::new("moto_server")
        .args(["-H", host, "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(io("starting moto_server (pip install 'moto[server]')"))?;
    let endpoint = format!("http://{host}:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::put(&format!("{endpoint}/jepsen")).timeout(Duration::from_secs(2)).call().is_err() {
        if Instant::now() > deadline {
            return Err(ClusterError::NotReady("moto_server did not answer within 30 s".into()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok((child, endpoint))
}

/// A free TCP port on 127.0.0.1 below the ephemeral range.
fn free_port(used: &mut Vec<u16>) -> u16 {
    let base = 20000 + (std::process::id() % 5000) as u16 * 4;
    let mut p = base;
    loop {
        if !used.contains(&p) && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            used.push(p);
            return p;
        }
        p += 1;
    }
}

/// What every ingester of the cluster is started with.
struct Spawner {
    bin: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    zones: usize,
    partitions: u32,
    fake_clock: bool,
    faulty_disks: bool,
    used: Vec<u16>,
}

impl Spawner {
    /// Prepares and starts ingester `id`, joining through `join` (none:
    /// it bootstraps the cluster). With a network, the node runs in its
    /// namespace; with a proxy, others reach it through a new route.
    fn ingester(&mut self, id: u64, join: &[String], net: Option<&Network>, proxy: Option<&Proxy>) -> Result<Node, ClusterError> {
        let zone = format!("zone-{}", (b'a' + ((id as usize - 1) % self.zones) as u8) as char);
        let (http, grpc, netns) = match net {
            Some(n) => (format!("{}:3100", n.ip(id)), format!("{}:9095", n.ip(id)), Some(n.ns(id))),
            None => (format!("127.0.0.1:{}", free_port(&mut self.used)), format!("127.0.0.1:{}", free_port(&mut self.used)), None),
        };
        let mut args = vec![
            "--target=ingester".to_string(),
            format!("--node.id={id}"),
            format!("--zone={zone}"),
            format!("--config.file={}", self.config.display()),
            format!("--ring.partitions={}", self.partitions),
            "--ring.replication-factor=3".to_string(),
        ];
        let advertise = match proxy {
            Some(p) => {
                let listen = format!("127.0.0.1:{}", free_port(&mut self.used));
                let parse = |a: &str| a.parse().map_err(|_| ClusterError::NotReady(format!("bad address {a}")));
                p.add(Route { node: id, listen: parse(&listen)?, upstream: parse(&grpc)? }).map_err(io("starting a proxy route"))?;
                args.push(format!("--grpc.advertise-addr={listen}"));
                args.push(format!("--grpc.source-addr={}", proxy::source_ip(id)));
                listen
            }
            None => grpc.clone(),
        };
        if !join.is_empty() {
            args.push(format!("--join={}", join.join(",")));
        }
        let node_dir = self.dir.join(format!("node-{id}"));
        std::fs::create_dir_all(&node_dir).map_err(io("creating a node directory"))?;
        let faketime = if self.fake_clock {
            let rc = node_dir.join("faketime.rc");
            std::fs::write(&rc, "+0\n").map_err(io("writing a faketime file"))?;
            Some(rc)
        } else {
            None
        };
        let disk = self.faulty_disks.then(|| Faultio { lib: self.dir.join("libfaultio.so"), control: node_dir.join("disk-failing") });
        let mut node = Node {
            id,
            zone,
            http,
            grpc,
            advertise,
            data: node_dir.join("data"),
            log: node_dir.join("balsa.log"),
            args,
            netns,
            faketime,
            disk,
            child: None,
            paused: false,
            retired: false,
            wiped: false,
        };
        node.spawn(&self.bin)?;
        Ok(node)
    }
}

impl Cluster {
    /// Starts `nodes` ingesters over `zones` zones with `partitions` ring
    /// partitions, and the front; waits until the front is ready and every
    /// partition has a leader. Data and logs go under `dir`.
    /// With `fake_clock`, ingesters run under libfaketime so that
    /// [`Cluster::skew_clock`] works; with `faulty_disks`, with faultio
    /// preloaded so that [`Cluster::fail_disk`] does; with `s3`, chunks are
    /// cut within seconds and flushed to an S3-compatible server that
    /// [`Cluster::pause_store`] can stop.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        bin: &Path,
        dir: &Path,
        nodes: usize,
        zones: usize,
        partitions: u32,
        net: Net,
        fake_clock: bool,
        faulty_disks: bool,
        s3: bool,
    ) -> Result<Self, ClusterError> {
        if faulty_disks {
            write_faultio(dir)?;
        }
        let network = match net {
            Net::Namespaces => Some(Network::create(nodes)?),
            Net::Proxy | Net::Local => None,
        };
        let proxy = match net {
            Net::Proxy => Some(Proxy::start(&[]).map_err(io("starting the proxy"))?),
            Net::Namespaces | Net::Local => None,
        };
        let mut used = Vec::new();
        let (store, storage) = if s3 {
            let host = network.as_ref().map_or("127.0.0.1".to_string(), Network::host_ip);
            let (child, endpoint) = start_store(&host, &mut used)?;
            let yaml = format!(
                "storage:\n  backend: s3\n  s3:\n    bucket: jepsen\n    endpoint: {endpoint}\n    region: us-east-1\n    access_key_id: test\n    secret_access_key: test\n    force_path_style: true\ningester:\n  chunk_idle_period: 3s\n  max_chunk_age: 20s\n  flush_check_period: 2s\n"
            );
            (Some(child), yaml)
        } else {
            (None, format!("storage:\n  filesystem:\n    directory: {}\n", dir.join("objects").display()))
        };
        let config = dir.join("cluster.yaml");
        std::fs::write(
            &config,
            format!(
                "auth_enabled: true\n{storage}limits_config:\n  max_entries_limit_per_query: 10000000\n  ingestion_rate_mb: 1000\n  ingestion_burst_size_mb: 1000\nring:\n  dead_node_timeout: 10m\n"
            ),
        )
        .map_err(io("writing the cluster config"))?;
        let mut spawner =
            Spawner { bin: bin.to_path_buf(), dir: dir.to_path_buf(), config: config.clone(), zones, partitions, fake_clock, faulty_disks, used };
        let mut ingesters: Vec<Node> = Vec::new();
        for id in 1..=nodes as u64 {
            let join: Vec<String> = ingesters.first().map(|n| n.advertise.clone()).into_iter().collect();
            ingesters.push(spawner.ingester(id, &join, network.as_ref(), proxy.as_ref())?);
        }
        let seeds: Vec<String> = ingesters.iter().map(|n| n.advertise.clone()).collect();
        let front_dir = dir.join("front");
        std::fs::create_dir_all(&front_dir).map_err(io("creating the front's directory"))?;
        let grpc = format!("127.0.0.1:{}", free_port(&mut spawner.used));
        let mut front = Node {
            id: 100,
            zone: "zone-a".into(),
            http: format!("127.0.0.1:{}", free_port(&mut spawner.used)),
            advertise: grpc.clone(),
            grpc,
            data: front_dir.join("data"),
            log: front_dir.join("balsa.log"),
            args: vec![
                "--target=distributor,querier,query-frontend".into(),
                "--node.id=100".into(),
                format!("--join={}", seeds.join(",")),
                format!("--config.file={}", config.display()),
            ],
            netns: None,
            faketime: None,
            disk: None,
            child: None,
            paused: false,
            retired: false,
            wiped: false,
        };
        front.spawn(bin)?;
        let c = Cluster { ingesters, front, zones, spawner, store, net: network, proxy };
        c.wait_healthy(Duration::from_secs(120))?;
        Ok(c)
    }

    /// The ids of the ingesters that are part of the cluster (not retired).
    pub fn members(&self) -> Vec<u64> {
        self.ingesters.iter().filter(|n| !n.retired).map(|n| n.id).collect()
    }

    /// Starts a brand-new ingester (the next id), joining through the
    /// running members; returns its id.
    pub fn add_node(&mut self) -> Result<u64, ClusterError> {
        let id = self.ingesters.len() as u64 + 1;
        if let Some(n) = &mut self.net {
            n.add(id)?;
        }
        let join: Vec<String> = self.ingesters.iter().filter(|n| !n.retired && n.running()).map(|n| n.advertise.clone()).collect();
        let node = self.spawner.ingester(id, &join, self.net.as_ref(), self.proxy.as_ref())?;
        self.ingesters.push(node);
        Ok(id)
    }

    /// A lost disk: kills ingester `id`, deletes its data directory, starts
    /// it again under its old id and expects it to refuse within a minute
    /// ([`ClusterError::Unsafe`] if it runs instead), then retires it and
    /// starts a replacement under a new id; returns the new id. Once per
    /// cluster ([`ClusterError::Skipped`] after).
    pub fn wipe_and_replace(&mut self, id: u64) -> Result<u64, ClusterError> {
        if self.ingesters.iter().any(|n| n.wiped) {
            return Err(ClusterError::Skipped("a run wipes at most one disk (two could take a partition's majority)".into()));
        }
        let bin = self.spawner.bin.clone();
        let n = self.node(id);
        n.kill();
        n.wiped = true;
        match std::fs::remove_dir_all(&n.data) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("wiping a data directory")(e)),
            _ => {}
        }
        n.spawn(&bin)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let refused = loop {
            match n.child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(status))) => break !status.success(),
                Some(Ok(None)) if Instant::now() < deadline && !n.ready() => std::thread::sleep(Duration::from_millis(100)),
                _ => break false,
            }
        };
        n.kill();
        n.retired = true;
        if !refused {
            return Err(ClusterError::Unsafe(format!("node {id} rejoined under its old id with an empty data directory")));
        }
        self.add_node()
    }

    /// Drains ingester `id` for good: it leaves the cluster and is not
    /// started again.
    pub fn retire(&mut self, id: u64) -> Result<(), ClusterError> {
        self.drain(id)?;
        self.node(id).retired = true;
        Ok(())
    }


    pub fn node(&mut self, id: u64) -> &mut Node {
        &mut self.ingesters[id as usize - 1]
    }

    /// Starts a killed ingester again on its data.
    pub fn restart(&mut self, id: u64) -> Result<(), ClusterError> {
        let bin = self.spawner.bin.clone();
        let n = self.node(id);
        if !n.running() {
            n.spawn(&bin)?;
        }
        Ok(())
    }

    /// `/ring` as JSON, from the front.
    pub fn ring(&self) -> Option<Value> {
        let r = ureq::get(&format!("http://{}/ring?format=json", self.front.http)).timeout(Duration::from_secs(5)).call().ok()?;
        r.into_json().ok()
    }

    /// The leader of partition `p`, as the ring shows it.
    pub fn leader_of(&self, p: usize) -> Option<u64> {
        self.ring()?["partitions"][p]["leader"].as_u64()
    }

    /// The controller group's leader.
    pub fn controller_leader(&self) -> Option<u64> {
        let r = self.ring()?;
        r["controller"].as_array()?.iter().find(|c| c["role"] == "leader")?["node"].as_u64()
    }

    pub fn partitions(&self) -> usize {
        self.ring().and_then(|r| r["partitions"].as_array().map(Vec::len)).unwrap_or(0)
    }

    /// Waits until every ingester and the front answer `/ready` and every
    /// partition has a leader.
    pub fn wait_healthy(&self, deadline: Duration) -> Result<Duration, ClusterError> {
        let start = Instant::now();
        loop {
            let problem = self.health_problem();
            let Some(problem) = problem else { return Ok(start.elapsed()) };
            if start.elapsed() > deadline {
                return Err(ClusterError::NotReady(format!("cluster not healthy after {deadline:?}: {problem}; see the node logs")));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What keeps the cluster from being healthy, if anything.
    fn health_problem(&self) -> Option<String> {
        if !self.front.ready() {
            return Some("the front is not ready".into());
        }
        let unready: Vec<u64> = self.ingesters.iter().filter(|n| !n.retired && !n.ready()).map(|n| n.id).collect();
        if !unready.is_empty() {
            return Some(format!("ingesters {unready:?} not ready"));
        }
        let Some(ring) = self.ring() else { return Some("no ring from the front".into()) };
        let ps = ring["partitions"].as_array().cloned().unwrap_or_default();
        let leaderless: Vec<usize> = ps.iter().enumerate().filter(|(_, p)| !p["leader"].is_u64()).map(|(i, _)| i).collect();
        if ps.is_empty() {
            Some("the ring has no partitions yet".into())
        } else if !leaderless.is_empty() {
            Some(format!("partitions {leaderless:?} have no leader"))
        } else {
            None
        }
    }

    /// Cuts every link between the groups (each node only reaches nodes of
    /// its own group).
    pub fn partition(&self, groups: &[Vec<u64>]) -> Result<(), ClusterError> {
        let cuts: Vec<(u64, Vec<u64>)> = groups
            .iter()
            .flat_map(|g| {
                let others: Vec<u64> = groups.iter().filter(|o| *o != g).flatten().copied().collect();
                g.iter().map(move |id| (*id, others.clone()))
            })
            .collect();
        self.cut(&cuts, None)
    }

    /// Per node, drops its traffic with the listed nodes: all of it, or
    /// (network namespaces only) `loss` percent of the packets.
    pub fn cut(&self, cuts: &[(u64, Vec<u64>)], loss: Option<u32>) -> Result<(), ClusterError> {
        match (&self.net, &self.proxy, loss) {
            (Some(net), _, _) => {
                for (id, others) in cuts {
                    net.cut(*id, others, loss)?;
                }
                Ok(())
            }
            (None, Some(proxy), None) => {
                for (id, others) in cuts {
                    proxy.cut(*id, others);
                }
                Ok(())
            }
            (None, Some(_), Some(_)) => Err(ClusterError::NotReady("packet loss needs --net netns (root and nftables)".into())),
            (None, None, _) => Err(ClusterError::NotReady("network faults need --net netns or --net proxy".into())),
        }
    }

    /// Adds `delay` each way to every link of ingester `id` (proxy only).
    pub fn slow_down(&self, id: u64, delay: Duration) -> Result<(), ClusterError> {
        let Some(proxy) = &self.proxy else {
            return Err(ClusterError::NotReady("added latency needs --net proxy".into()));
        };
        proxy.delay(id, delay);
        Ok(())
    }

    /// Sets ingester `id`'s wall clock `secs` seconds off the real one
    /// (0: true time again); takes effect within a second.
    pub fn skew_clock(&mut self, id: u64, secs: i64) -> Result<(), ClusterError> {
        let Some(rc) = self.node(id).faketime.clone() else {
            return Err(ClusterError::NotReady("clock skew needs the cluster started with fake clocks".into()));
        };
        std::fs::write(&rc, format!("{secs:+}\n")).map_err(io("writing a faketime file"))
    }

    /// Makes every write and sync of files by ingester `id` fail with EIO
    /// (faultio; within 100 ms). The node must stop acknowledging what it
    /// cannot make durable; [`Cluster::repair_disk`] heals it.
    pub fn fail_disk(&mut self, id: u64) -> Result<(), ClusterError> {
        let Some(Faultio { control, .. }) = self.node(id).disk.clone() else {
            return Err(ClusterError::NotReady("disk faults need the cluster started with faulty disks".into()));
        };
        std::fs::write(&control, b"").map_err(io("arming faultio"))
    }

    /// Restarts ingester `id` (kill -9) on a working disk again.
    pub fn repair_disk(&mut self, id: u64) -> Result<(), ClusterError> {
        let node = self.node(id);
        node.kill();
        if let Some(f) = &node.disk {
            match std::fs::remove_file(&f.control) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("disarming faultio")(e)),
                _ => {}
            }
        }
        self.restart(id)
    }

    /// Stops (`true`: SIGSTOP) or resumes the S3-compatible server: an
    /// object-store outage during flushes.
    pub fn pause_store(&mut self, paused: bool) -> Result<(), ClusterError> {
        let Some(s) = &self.store else {
            return Err(ClusterError::NotReady("object-store faults need the cluster started with S3".into()));
        };
        let sig = if paused { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) on a child this harness started.
        unsafe {
            libc::kill(s.id() as i32, sig);
        }
        Ok(())
    }

    /// Drains ingester `id` (`POST /ingester/drain`) and waits until it has
    /// moved everything away and exited (at most two minutes).
    pub fn drain(&mut self, id: u64) -> Result<(), ClusterError> {
        let url = format!("http://{}/ingester/drain", self.node(id).http);
        ureq::post(&url)
            .timeout(Duration::from_secs(10))
            .call()
            .map_err(|e| ClusterError::NotReady(format!("draining node {id}: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let node = self.node(id);
        while node.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None))) {
            if Instant::now() > deadline {
                return Err(ClusterError::NotReady(format!("node {id} still running 120 s after its drain began")));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        node.child = None;
        Ok(())
    }

    /// Removes every cut and delay.
    pub fn heal_network(&self) {
        if let Some(net) = &self.net {
            for n in &self.ingesters {
                net.heal(n.id);
            }
        }
        if let Some(proxy) = &self.proxy {
            proxy.heal();
        }
    }
}
