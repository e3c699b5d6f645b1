//! Configuration: a YAML file with Loki's section names where the concept is
//! the same, overridden by command-line flags, then validated.
//!
//! ```yaml
//! target: all
//! auth_enabled: false
//! server: { http_listen_address: 0.0.0.0, http_listen_port: 3100, grpc_listen_port: 9095 }
//! common: { path_prefix: ./data }
//! ring: { partitions: 8 }
//! ingester: { max_chunk_age: 2h, chunk_idle_period: 30m, chunk_encoding: zstd }
//! storage: { backend: filesystem, filesystem: { directory: ./data/objects } }
//! distributor: { max_recv_msg_size: 100MB }
//! limits_config: { max_line_size: 256KB, reject_old_samples_max_age: 168h }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use balsa_storage::chunk::Codec;

use crate::api::tls::{ClientAuth, HttpTls};
use crate::limits::Limits;
use crate::units::{ByteSize, Dur};

/// Why the configuration cannot be used. Every variant names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Yaml { path: String, message: String },
    #[error("invalid value for {key}: {problem}")]
    Invalid { key: &'static str, problem: String },
}

/// Command-line flags. Loki's single-dash spelling (`-config.file=x`) is
/// accepted too.
#[derive(Debug, Parser, Default)]
#[command(name = "balsa", version, about = "Loki-compatible log storage that does not lose acknowledged lines")]
pub struct Flags {
    /// A client command instead of the server.
    #[command(subcommand)]
    pub command: Option<crate::cli::Command>,
    /// YAML configuration file.
    #[arg(long = "config.file")]
    pub config_file: Option<PathBuf>,
    /// Roles to run; `all` runs every role in this process.
    #[arg(long = "target")]
    pub target: Option<String>,
    /// HTTP listen address (default 0.0.0.0:3100).
    #[arg(long = "http.addr")]
    pub http_addr: Option<SocketAddr>,
    /// gRPC listen address (default 0.0.0.0:9095).
    #[arg(long = "grpc.addr")]
    pub grpc_addr: Option<SocketAddr>,
    /// Directory for all local data (default ./data).
    #[arg(long = "data.dir")]
    pub data_dir: Option<PathBuf>,
    /// Require X-Scope-OrgID on every request (default false: tenant `fake`).
    #[arg(long = "auth.enabled")]
    pub auth_enabled: Option<bool>,
    /// Tokens file granting tenants (see `auth.file`); implies
    /// `--auth.enabled=true`.
    #[arg(long = "auth.file")]
    pub auth_file: Option<PathBuf>,
    /// Number of ring partitions, each one Raft group (default 8). Fixed
    /// when the cluster is bootstrapped.
    #[arg(long = "ring.partitions")]
    pub ring_partitions: Option<u32>,
    /// Replicas per partition: 3, or 1 for a lone `--target=all` process
    /// without `--join`. Partitions start once this many ingesters joined.
    /// Fixed when the cluster is bootstrapped.
    #[arg(long = "ring.replication-factor")]
    pub replication_factor: Option<u32>,
    /// Bootstrap a new ring although the object store names another
    /// cluster: only after losing every ingester of that cluster (their
    /// flushed data stays readable), never while one of them still runs.
    #[arg(long = "ring.new-cluster")]
    pub new_cluster: Option<bool>,
    /// This node's id in the cluster, above 0 (default 1).
    #[arg(long = "node.id")]
    pub node_id: Option<u64>,
    /// This node's availability zone (default `zone-a`).
    #[arg(long = "zone")]
    pub zone: Option<String>,
    /// gRPC addresses of ingesters to join through, comma-separated. An
    /// ingester without it bootstraps a new cluster; distributors and
    /// queriers need it to find the ring.
    #[arg(long = "join", value_delimiter = ',')]
    pub join: Vec<String>,
    /// Address other nodes use for this node's gRPC server (default: the
    /// listen address, with 127.0.0.1 for an unspecified IP).
    #[arg(long = "grpc.advertise-addr")]
    pub grpc_advertise_addr: Option<String>,
    /// Local IP address this node's connections to other nodes leave from
    /// (hosts with several addresses; default: chosen by the kernel).
    #[arg(long = "grpc.source-addr")]
    pub grpc_source_addr: Option<std::net::IpAddr>,
    /// Log filter, e.g. `info` or `balsa=debug` (RUST_LOG wins).
    #[arg(long = "log.level", default_value = "info,openraft=warn")]
    pub log_level: String,
}

/// PEM files of the cluster's TLS: this node's certificate and key, and
/// the CA that signed every node's certificate.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub ca: Vec<u8>,
    pub cert_file: PathBuf,
}

impl TlsFiles {
    /// The gRPC server's TLS: our identity; clients must present a
    /// certificate signed by the CA.
    pub fn server(&self) -> tonic::transport::ServerTlsConfig {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
    }

    /// Node-to-node clients: trust the CA, present our identity.
    pub fn client(&self) -> tonic::transport::ClientTlsConfig {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
    }
}

/// One role a process can run (Loki's `-target` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Hosts partition replicas and a controller replica (stateful).
    Ingester,
    Distributor,
    Querier,
    QueryFrontend,
    /// Merges index segments, applies retention and deletes (run one).
    Compactor,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Ingester, Role::Distributor, Role::Querier, Role::QueryFrontend, Role::Compactor];

    pub fn name(self) -> &'static str {
        match self {
            Role::Ingester => "ingester",
            Role::Distributor => "distributor",
            Role::Querier => "querier",
            Role::QueryFrontend => "query-frontend",
            Role::Compactor => "compactor",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The roles a process runs (`--target=ingester,compactor`; `all` is every
/// one): a set of [`Role`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target(u8);

/// A `--target` that is no role.
#[derive(Debug, thiserror::Error)]
#[error("unknown target '{0}'; expected one of all, read, write, backend, distributor, ingester, querier, query-frontend, compactor")]
pub struct UnknownTarget(pub String);

impl Target {
    pub const ALL: Target = Target(0b1_1111);

    /// The set of `roles`.
    pub fn of(roles: &[Role]) -> Self {
        Target(roles.iter().fold(0, |bits, r| bits | r.bit()))
    }

    pub fn has(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// Parses Loki's comma-separated target list.
    pub fn parse(s: &str) -> Result<Self, UnknownTarget> {
        let mut roles = Vec::new();
        for part in s.split(',').map(str::trim) {
            match part {
                "all" => roles.extend(Role::ALL),
                // Loki's simple scalable deployment.
                "write" => roles.extend([Role::Ingester, Role::Distributor]),
                "read" => roles.extend([Role::Querier, Role::QueryFrontend]),
                "backend" => roles.push(Role::Compactor),
                name => match Role::ALL.into_iter().find(|r| r.name() == name) {
                    Some(r) => roles.push(r),
                    None => return Err(UnknownTarget(name.into())),
                },
            }
        }
        Ok(Self::of(&roles))
    }

    /// The roles, comma-separated, as `/config` shows them.
    pub fn names(&self) -> String {
        if *self == Self::ALL {
            return "all".into();
        }
        Role::ALL.into_iter().filter(|r| self.has(*r)).map(Role::name).collect::<Vec<_>>().join(",")
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub target: Target,
    pub auth_enabled: bool,
    /// Bearer tokens and the tenants they grant (`auth.file`), re-read like
    /// the overrides file. Set, it implies `auth_enabled`.
    pub auth_file: Option<PathBuf>,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub partitions: u32,
    /// Raft node id of this process.
    pub node_id: u64,
    /// Availability zone of this node.
    pub zone: String,
    /// Ingesters to join through (empty: bootstrap).
    pub join: Vec<String>,
    /// Bootstrap over an object store that names another cluster
    /// (`ring.new_cluster`, false).
    pub new_cluster: bool,
    pub replication_factor: u32,
    /// gRPC address peers use for this node.
    pub grpc_advertise_addr: String,
    /// HTTP address shown for this node in `/ring`.
    pub http_advertise_addr: String,
    /// Where connections to other nodes leave from (`--grpc.source-addr`).
    pub grpc_source_addr: Option<std::net::IpAddr>,
    /// An unreachable ingester is marked dead after this (`ring.dead_node_timeout`, 5m).
    pub dead_node_timeout: Duration,
    /// Largest accepted push body, compressed (Loki: 100 MiB).
    pub max_recv_msg_size: usize,
    /// Largest accepted push body after decompression.
    pub max_decompressed_size: usize,
    /// Entries older than the stream's newest minus half this are rejected
    /// (`too_far_behind`); Loki's default is 2h, so the window is 1h.
    pub max_chunk_age: Duration,
    /// A head idle this long (no append) is cut (`ingester.chunk_idle_period`, 30m).
    pub chunk_idle_period: Duration,
    /// A head holding this many bytes of lines is cut
    /// (`ingester.chunk_target_raw_size`, 8MB: about Loki's 1.5MB compressed).
    pub chunk_target_raw_size: u64,
    /// Codec of flushed chunks (`ingester.chunk_encoding`, zstd).
    pub chunk_encoding: Codec,
    /// How often the leader looks for chunks to cut and flush
    /// (`ingester.flush_check_period`, 30s).
    pub flush_check_period: Duration,
    /// Where flushed chunks and index segments live.
    pub storage: StorageConfig,
    /// TLS of the gRPC server and of node-to-node clients; `None`: plain.
    pub tls: Option<TlsFiles>,
    /// HTTPS for the HTTP API; `None`: plain HTTP.
    pub http_tls: Option<HttpTls>,
    /// Bytes of chunks the querier keeps in memory (`querier.chunk_cache_size`, 256MB).
    pub chunk_cache_bytes: usize,
    /// How queriers read unflushed data (`querier.read_consistency`).
    pub read_consistency: crate::ingester::read::ReadConsistency,
    /// How long a live tail is served before it is closed
    /// (`querier.tail_max_duration`, Loki's default 1h).
    pub tail_max_duration: Duration,
    /// How often the compactor runs (`compactor.compaction_interval`, 10m).
    pub compaction_interval: Duration,
    /// How long a delete request can be cancelled before the compactor
    /// executes it (`compactor.delete_request_cancel_period`, 24h).
    pub delete_request_cancel_period: Duration,
    /// How often every process re-reads the delete requests, so a request
    /// made through one hides its lines in all within this time
    /// (`compactor.delete_request_refresh_period`, 10s).
    pub delete_request_refresh_period: Duration,
    /// How long a chunk the compactor no longer lists stays readable before
    /// it is deleted (`compactor.retention_delete_delay`, 2h as in Loki):
    /// longer than any query, so none misses a chunk it listed.
    pub retention_delete_delay: Duration,
    /// Per-tenant overrides file (`runtime_config.file`), re-read every
    /// `runtime_config.period` (10s) and on SIGHUP.
    pub runtime_config_file: Option<PathBuf>,
    pub runtime_config_period: Duration,
    /// Queries a tenant may have running or queued
    /// (`frontend.max_outstanding_per_tenant`, 2048); more get 429.
    pub max_outstanding_per_tenant: usize,
    /// Metric query pieces kept (`frontend.results_cache_entries`, 4096; 0 = no cache).
    pub results_cache_entries: usize,
    /// A partition snapshots its state after this many log entries at the
    /// latest (sooner once the log since the last snapshot is as large as
    /// it, and 64 MiB), and the log below the snapshot is purged
    /// (`raft.snapshot_logs_since_last`, 100000).
    pub snapshot_logs_since_last: u64,
    pub limits: Limits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    target: Option<String>,
    auth_enabled: Option<bool>,
    auth: RawAuth,
    server: RawServer,
    common: RawCommon,
    ring: RawRing,
    distributor: RawDistributor,
    ingester: RawIngester,
    querier: RawQuerier,
    compactor: RawCompactor,
    runtime_config: RawRuntimeConfig,
    frontend: RawFrontend,
    storage: RawStorage,
    raft: RawRaft,
    limits_config: Option<Limits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawAuth {
    file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRaft {
    snapshot_logs_since_last: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawServer {
    http_listen_address: Option<String>,
    http_listen_port: Option<u16>,
    grpc_listen_address: Option<String>,
    grpc_listen_port: Option<u16>,
    grpc_tls_config: Option<RawTls>,
    http_tls_config: Option<RawHttpTls>,
}

/// `server.http_tls_config` (Loki's keys): HTTPS for the HTTP API,
/// optionally checking clients' certificates.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawHttpTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    client_auth_type: Option<String>,
}

/// `server.grpc_tls_config`: TLS for every gRPC connection of the cluster,
/// mutual (each node presents its certificate and checks its peer's).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawCommon {
    path_prefix: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRing {
    partitions: Option<u32>,
    node_id: Option<u64>,
    zone: Option<String>,
    join: Option<Vec<String>>,
    replication_factor: Option<u32>,
    advertise_addr: Option<String>,
    dead_node_timeout: Option<Dur>,
    new_cluster: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawDistributor {
    max_recv_msg_size: Option<ByteSize>,
    max_decompressed_size: Option<ByteSize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawIngester {
    max_chunk_age: Option<Dur>,
    chunk_idle_period: Option<Dur>,
    chunk_target_raw_size: Option<ByteSize>,
    chunk_encoding: Option<String>,
    flush_check_period: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawFrontend {
    max_outstanding_per_tenant: Option<usize>,
    results_cache_entries: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRuntimeConfig {
    file: Option<PathBuf>,
    period: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawCompactor {
    compaction_interval: Option<Dur>,
    delete_request_cancel_period: Option<Dur>,
    retention_delete_delay: Option<Dur>,
    delete_request_refresh_period: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawQuerier {
    chunk_cache_size: Option<ByteSize>,
    read_consistency: Option<String>,
    tail_max_duration: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawStorage {
    backend: Option<String>,
    filesystem: RawFilesystem,
    s3: Option<RawS3>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawS3 {
    bucket: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    force_path_style: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawFilesystem {
    directory: Option<PathBuf>,
}

/// The object store.
#[derive(Clone, Debug)]
pub enum StorageConfig {
    /// Files under a directory (default `<data dir>/objects`).
    Filesystem { directory: PathBuf },
    /// An S3 bucket (AWS or S3-compatible).
    S3(balsa_storage::s3::S3Config),
}

/// Rewrites Loki-style `-name.x=v` flags to `--name.x=v`.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let b = a.as_bytes();
            if i > 0 && b.len() > 2 && b[0] == b'-' && b[1] != b'-' && a.split('=').next().is_some_and(|n| n.contains('.')) {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

impl Config {
    /// Reads the file named by the flags (if any), applies the flags on top
    /// and validates the result.
    pub fn load(flags: &Flags) -> Result<Self, ConfigError> {
        let raw = match &flags.config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
                parse_yaml(&text, &path.display().to_string())?
            }
            None => RawConfig::default(),
        };
        Self::validate(raw, flags)
    }

    fn validate(raw: RawConfig, flags: &Flags) -> Result<Self, ConfigError> {
        let target = Target::parse(flags.target.as_deref().or(raw.target.as_deref()).unwrap_or("all"))
            .map_err(|e| ConfigError::Invalid { key: "target", problem: e.to_string() })?;
        let http_addr = match flags.http_addr {
            Some(a) => a,
            None => addr("server.http_listen_address", raw.server.http_listen_address, raw.server.http_listen_port.unwrap_or(3100))?,
        };
        let grpc_addr = match flags.grpc_addr {
            Some(a) => a,
            None => addr("server.grpc_listen_address", raw.server.grpc_listen_address, raw.server.grpc_listen_port.unwrap_or(9095))?,
        };
        let tls = match raw.server.grpc_tls_config {
            None => None,
            Some(t) => {
                let read = |key: &'static str, f: Option<PathBuf>| -> Result<(PathBuf, Vec<u8>), ConfigError> {
                    let f = f.ok_or_else(|| ConfigError::Invalid { key, problem: "required when grpc_tls_config is set".into() })?;
                    let bytes = std::fs::read(&f)
                        .map_err(|e| ConfigError::Invalid { key, problem: format!("cannot read {}: {e}", f.display()) })?;
                    Ok((f, bytes))
                };
                let (cert_file, cert) = read("server.grpc_tls_config.cert_file", t.cert_file)?;
                let (_, key) = read("server.grpc_tls_config.key_file", t.key_file)?;
                let (_, ca) = read("server.grpc_tls_config.client_ca_file", t.client_ca_file)?;
                Some(TlsFiles { cert, key, ca, cert_file })
            }
        };
        let http_tls = match raw.server.http_tls_config {
            None => None,
            Some(t) => {
                let read = |key: &'static str, f: &PathBuf| {
                    std::fs::read(f).map_err(|e| ConfigError::Invalid { key, problem: format!("cannot read {}: {e}", f.display()) })
                };
                let required = |key: &'static str, f: Option<PathBuf>| {
                    f.ok_or_else(|| ConfigError::Invalid { key, problem: "required when http_tls_config is set".into() })
                };
                let cert = read("server.http_tls_config.cert_file", &required("server.http_tls_config.cert_file", t.cert_file)?)?;
                let key = read("server.http_tls_config.key_file", &required("server.http_tls_config.key_file", t.key_file)?)?;
                let client_ca = t.client_ca_file.as_ref().map(|f| read("server.http_tls_config.client_ca_file", f)).transpose()?;
                let client_auth = match (t.client_auth_type.as_deref(), &client_ca) {
                    (None, None) | (Some("NoClientCert"), _) => ClientAuth::None,
                    (None, Some(_)) | (Some("VerifyClientCertIfGiven"), Some(_)) => ClientAuth::VerifyIfGiven,
                    (Some("RequireAndVerifyClientCert"), Some(_)) => ClientAuth::Require,
                    (Some("VerifyClientCertIfGiven" | "RequireAndVerifyClientCert"), None) => {
                        return Err(ConfigError::Invalid {
                            key: "server.http_tls_config.client_ca_file",
                            problem: "required to verify client certificates".into(),
                        })
                    }
                    (Some(other), _) => {
                        return Err(ConfigError::Invalid {
                            key: "server.http_tls_config.client_auth_type",
                            problem: format!(
                                "'{other}' is not supported; use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                            ),
                        })
                    }
                };
                Some(HttpTls { cert, key, client_ca, client_auth })
            }
        };
        let partitions = flags.ring_partitions.or(raw.ring.partitions).unwrap_or(8);
        if !(1..=4096).contains(&partitions) {
            return Err(ConfigError::Invalid {
                key: "ring.partitions",
                problem: format!("{partitions} is out of range; use 1 to 4096"),
            });
        }
        let node_id = flags.node_id.or(raw.ring.node_id).unwrap_or(1);
        if node_id == 0 {
            return Err(ConfigError::Invalid { key: "ring.node_id", problem: "must be at least 1".into() });
        }
        let zone = flags.zone.clone().or(raw.ring.zone).unwrap_or_else(|| "zone-a".into());
        if zone.is_empty() {
            return Err(ConfigError::Invalid { key: "ring.zone", problem: "must not be empty".into() });
        }
        let join: Vec<String> = if flags.join.is_empty() { raw.ring.join.unwrap_or_default() } else { flags.join.clone() };
        let join: Vec<String> = join.into_iter().map(|j| j.trim().to_string()).filter(|j| !j.is_empty()).collect();
        if join.is_empty() && !target.has(Role::Ingester) {
            return Err(ConfigError::Invalid {
                key: "ring.join",
                problem: format!(
                    "target '{}' hosts no ring: give --join with the gRPC address of at least one ingester",
                    target.names()
                ),
            });
        }
        // One process on its own (everything, no --join) keeps one copy, as
        // Loki's single binary does; anything that forms a cluster keeps 3.
        let single = target == Target::ALL && join.is_empty();
        let replication_factor =
            flags.replication_factor.or(raw.ring.replication_factor).unwrap_or(if single { 1 } else { 3 });
        if !(1..=7).contains(&replication_factor) {
            return Err(ConfigError::Invalid {
                key: "ring.replication_factor",
                problem: format!("{replication_factor} is out of range; use 1 to 7"),
            });
        }
        let advertise = |a: SocketAddr| {
            let ip = if a.ip().is_unspecified() { std::net::IpAddr::from([127, 0, 0, 1]) } else { a.ip() };
            SocketAddr::new(ip, a.port()).to_string()
        };
        let grpc_advertise_addr = flags.grpc_advertise_addr.clone().or(raw.ring.advertise_addr).unwrap_or_else(|| advertise(grpc_addr));
        let http_advertise_addr = advertise(http_addr);
        let dead_node_timeout = raw.ring.dead_node_timeout.map_or(Duration::from_secs(300), |d| d.0);
        if dead_node_timeout < Duration::from_secs(5) {
            return Err(ConfigError::Invalid {
                key: "ring.dead_node_timeout",
                problem: "must be at least 5s (a restart must not count as a death)".into(),
            });
        }
        let max_recv_msg_size = raw.distributor.max_recv_msg_size.map_or(100 << 20, |b| b.0);
        if max_recv_msg_size == 0 {
            return Err(ConfigError::Invalid { key: "distributor.max_recv_msg_size", problem: "must be positive".into() });
        }
        let max_decompressed_size = raw.distributor.max_decompressed_size.map_or(5000 << 20, |b| b.0);
        let max_chunk_age = raw.ingester.max_chunk_age.map_or(Duration::from_secs(2 * 3600), |d| d.0);
        if max_chunk_age.is_zero() {
            return Err(ConfigError::Invalid { key: "ingester.max_chunk_age", problem: "must be positive".into() });
        }
        let positive = |key: &'static str, d: Duration| {
            if d.is_zero() {
                Err(ConfigError::Invalid { key, problem: "must be positive".into() })
            } else {
                Ok(d)
            }
        };
        let chunk_idle_period =
            positive("ingester.chunk_idle_period", raw.ingester.chunk_idle_period.map_or(Duration::from_secs(1800), |d| d.0))?;
        let flush_check_period =
            positive("ingester.flush_check_period", raw.ingester.flush_check_period.map_or(Duration::from_secs(30), |d| d.0))?;
        let chunk_target_raw_size = raw.ingester.chunk_target_raw_size.map_or(8 << 20, |b| b.0);
        let chunk_encoding = match raw.ingester.chunk_encoding.as_deref() {
            None => Codec::Zstd,
            Some(s) => Codec::parse(s).ok_or_else(|| ConfigError::Invalid {
                key: "ingester.chunk_encoding",
                problem: format!("unknown codec '{s}'; use zstd, lz4, snappy or none"),
            })?,
        };
        let data_dir = flags.data_dir.clone().or(raw.common.path_prefix.clone()).unwrap_or_else(|| PathBuf::from("./data"));
        let storage = match raw.storage.backend.as_deref().unwrap_or("filesystem") {
            "filesystem" => StorageConfig::Filesystem {
                directory: raw.storage.filesystem.directory.clone().unwrap_or_else(|| data_dir.join("objects")),
            },
            "s3" => {
                let s3 = raw.storage.s3.unwrap_or_default();
                let bucket = s3.bucket.filter(|b| !b.is_empty()).ok_or(ConfigError::Invalid {
                    key: "storage.s3.bucket",
                    problem: "is required with backend s3".into(),
                })?;
                if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
                    return Err(ConfigError::Invalid {
                        key: "storage.s3.secret_access_key",
                        problem: "access_key_id and secret_access_key go together (or leave both out for the AWS credential chain)".into(),
                    });
                }
                StorageConfig::S3(balsa_storage::s3::S3Config {
                    bucket,
                    endpoint: s3.endpoint,
                    region: s3.region,
                    access_key_id: s3.access_key_id,
                    secret_access_key: s3.secret_access_key,
                    force_path_style: s3.force_path_style,
                })
            }
            other => {
                return Err(ConfigError::Invalid {
                    key: "storage.backend",
                    problem: format!("unknown backend '{other}'; use filesystem or s3"),
                })
            }
        };
        let chunk_cache_bytes = raw.querier.chunk_cache_size.map_or(256 << 20, |b| b.0);
        let read_consistency = match raw.querier.read_consistency.as_deref().unwrap_or("linearizable") {
            "linearizable" => crate::ingester::read::ReadConsistency::Linearizable,
            "leader" => crate::ingester::read::ReadConsistency::Leader,
            "any" => crate::ingester::read::ReadConsistency::Any,
            other => {
                return Err(ConfigError::Invalid {
                    key: "querier.read_consistency",
                    problem: format!("'{other}' is not one of linearizable, leader, any"),
                })
            }
        };
        let compaction_interval = positive(
            "compactor.compaction_interval",
            raw.compactor.compaction_interval.map_or(Duration::from_secs(600), |d| d.0),
        )?;
        let snapshot_logs_since_last = raw.raft.snapshot_logs_since_last.unwrap_or(100_000);
        if snapshot_logs_since_last == 0 {
            return Err(ConfigError::Invalid { key: "raft.snapshot_logs_since_last", problem: "must be at least 1".into() });
        }
        let limits = raw.limits_config.unwrap_or_default();
        limits.validate().map_err(|crate::limits::LimitError { key, problem }| ConfigError::Invalid { key, problem })?;
        let auth_file = flags.auth_file.clone().or(raw.auth.file.clone());
        let auth_enabled = match (flags.auth_enabled.or(raw.auth_enabled), &auth_file) {
            (Some(false), Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "auth.file",
                    problem: "tokens grant tenants, so auth_enabled cannot be false with an auth file".into(),
                })
            }
            (enabled, file) => enabled.unwrap_or(false) || file.is_some(),
        };
        Ok(Self {
            target,
            auth_enabled,
            auth_file,
            http_addr,
            grpc_addr,
            data_dir,
            partitions,
            node_id,
            zone,
            join,
            new_cluster: flags.new_cluster.or(raw.ring.new_cluster).unwrap_or(false),
            replication_factor,
            grpc_advertise_addr,
            http_advertise_addr,
            grpc_source_addr: flags.grpc_source_addr,
            dead_node_timeout,
            max_recv_msg_size: usize::try_from(max_recv_msg_size).unwrap_or(usize::MAX),
            max_decompressed_size: usize::try_from(max_decompressed_size).unwrap_or(usize::MAX),
            max_chunk_age,
            chunk_idle_period,
            chunk_target_raw_size,
            chunk_encoding,
            flush_check_period,
            storage,
            tls,
            http_tls,
            chunk_cache_bytes: usize::try_from(chunk_cache_bytes).unwrap_or(usize::MAX),
            read_consistency,
            tail_max_duration: positive("querier.tail_max_duration", raw.querier.tail_max_duration.map_or(Duration::from_secs(3600), |d| d.0))?,
            compaction_interval,
            delete_request_cancel_period: raw
                .compactor
                .delete_request_cancel_period
                .map_or(Duration::from_secs(24 * 3600), |d| d.0),
            retention_delete_delay: raw.compactor.retention_delete_delay.map_or(Duration::from_secs(2 * 3600), |d| d.0),
            delete_request_refresh_period: positive(
                "compactor.delete_request_refresh_period",
                raw.compactor.delete_request_refresh_period.map_or(Duration::from_secs(10), |d| d.0),
            )?,
            max_outstanding_per_tenant: raw.frontend.max_outstanding_per_tenant.unwrap_or(2048).max(1),
            results_cache_entries: raw.frontend.results_cache_entries.unwrap_or(4096),
            runtime_config_file: raw.runtime_config.file.clone(),
            runtime_config_period: positive(
                "runtime_config.period",
                raw.runtime_config.period.map_or(Duration::from_secs(10), |d| d.0),
            )?,
            snapshot_logs_since_last,
            limits,
        })
    }
}

impl Config {
    /// How this process dials other nodes (TLS, source address).
    pub fn dialer(&self) -> balsa_raft::network::Dialer {
        balsa_raft::network::Dialer { tls: self.tls.as_ref().map(TlsFiles::client), source: self.grpc_source_addr }
    }

    /// The configuration in force as YAML, with Loki's section names where
    /// they exist and secrets redacted (`GET /config`).
    pub fn to_yaml(&self) -> String {
        let d = |d: Duration| format!("{}ms", d.as_millis());
        let storage = match &self.storage {
            StorageConfig::Filesystem { directory } => {
                serde_json::json!({"backend": "filesystem", "filesystem": {"directory": directory}})
            }
            StorageConfig::S3(s3) => serde_json::json!({"backend": "s3", "s3": {
                "bucket": s3.bucket, "endpoint": s3.endpoint, "region": s3.region,
                "access_key_id": s3.access_key_id.as_ref().map(|_| "<redacted>"),
                "secret_access_key": s3.secret_access_key.as_ref().map(|_| "<redacted>"),
                "force_path_style": s3.force_path_style}}),
        };
        let v = serde_json::json!({
            "target": self.target.names(),
            "auth_enabled": self.auth_enabled,
            "auth": {"file": self.auth_file},
            "server": {"http_listen_address": self.http_addr.ip().to_string(), "http_listen_port": self.http_addr.port(),
                "grpc_listen_address": self.grpc_addr.ip().to_string(), "grpc_listen_port": self.grpc_addr.port(),
                "grpc_tls_config": self.tls.as_ref().map(|t| serde_json::json!({"cert_file": t.cert_file, "key_file": "<redacted>"})),
                "http_tls_config": self.http_tls.as_ref().map(|t| serde_json::json!({"client_auth_type": format!("{:?}", t.client_auth)}))},
            "common": {"path_prefix": self.data_dir},
            "ring": {"partitions": self.partitions, "node_id": self.node_id, "zone": self.zone, "join": self.join,
                "replication_factor": self.replication_factor, "advertise_addr": self.grpc_advertise_addr,
                "dead_node_timeout": d(self.dead_node_timeout), "new_cluster": self.new_cluster},
            "distributor": {"max_recv_msg_size": self.max_recv_msg_size, "max_decompressed_size": self.max_decompressed_size},
            "ingester": {"max_chunk_age": d(self.max_chunk_age), "chunk_idle_period": d(self.chunk_idle_period),
                "chunk_target_raw_size": self.chunk_target_raw_size, "chunk_encoding": format!("{:?}", self.chunk_encoding).to_lowercase(),
                "flush_check_period": d(self.flush_check_period)},
            "storage": storage,
            "querier": {"chunk_cache_size": self.chunk_cache_bytes, "read_consistency": self.read_consistency.name(),
                "tail_max_duration": d(self.tail_max_duration)},
            "frontend": {"max_outstanding_per_tenant": self.max_outstanding_per_tenant, "results_cache_entries": self.results_cache_entries},
            "compactor": {"compaction_interval": d(self.compaction_interval),
                "delete_request_cancel_period": d(self.delete_request_cancel_period),
                "retention_delete_delay": d(self.retention_delete_delay),
                "delete_request_refresh_period": d(self.delete_request_refresh_period)},
            "runtime_config": {"file": self.runtime_config_file, "period": d(self.runtime_config_period)},
            "raft": {"snapshot_logs_since_last": self.snapshot_logs_since_last},
            "limits_config": serde_json::to_value(&self.limits).unwrap_or_default(),
        });
        serde_yaml_ng::to_string(&v).unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }
}

/// The configuration file `path` holds `text`.
fn parse_yaml(text: &str, path: &str) -> Result<RawConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner().to_string();
        let message = if at.is_empty() || at == "." { inner } else { format!("{at}: {inner}") };
        ConfigError::Yaml { path: path.into(), message }
    })
}

fn addr(key: &'static str, host: Option<String>, port: u16) -> Result<SocketAddr, ConfigError> {
    let host = host.unwrap_or_else(|| "0.0.0.0".into());
    let text = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    text.parse().map_err(|e| ConfigError::Invalid { key, problem: format!("'{host}' is not an IP address: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_yaml(text: &str) -> Result<Config, ConfigError> {
        let raw = parse_yaml(text, "t.yaml")?;
        Config::validate(raw, &Flags::default())
    }

    #[test]
    fn defaults_are_lokis() {
        let c = load_yaml("").unwrap();
        assert_eq!(c.http_addr.port(), 3100);
        assert_eq!(c.grpc_addr.port(), 9095);
        assert_eq!(c.limits.max_line_size.0, 256 * 1024);
        assert_eq!(c.limits.max_label_names_per_series, 15);
        assert_eq!(c.limits.reject_old_samples_max_age.0, Duration::from_secs(7 * 86_400));
        assert!(!c.auth_enabled);
    }

    #[test]
    fn errors_name_the_key() {
        let e = load_yaml("limits_config:\n  max_line_sise: 5\n").unwrap_err().to_string();
        assert!(e.contains("max_line_sise"), "{e}");
        let e = load_yaml("limits_config:\n  max_line_size: 5XB\n").unwrap_err().to_string();
        assert!(e.contains("unknown unit"), "{e}");
        let e = load_yaml("ring:\n  partitions: 0\n").unwrap_err().to_string();
        assert!(e.contains("ring.partitions"), "{e}");
        let e = load_yaml("querier:\n  read_consistency: eventual\n").unwrap_err().to_string();
        assert!(e.contains("querier.read_consistency") && e.contains("linearizable, leader, any"), "{e}");
        let e = load_yaml("target: querier\n").unwrap_err().to_string();
        assert!(e.contains("--join"), "a querier without ingesters to join is refused: {e}");
        let e = load_yaml("target: ingestr\n").unwrap_err().to_string();
        assert!(e.contains("unknown target 'ingestr'"), "{e}");
    }

    #[test]
    fn simple_scalable_targets_are_their_roles() {
        let roles = |s: &str| Target::parse(s).unwrap().names();
        assert_eq!(roles("write"), "ingester,distributor");
        assert_eq!(roles("read"), "querier,query-frontend");
        assert_eq!(roles("backend"), "compactor");
        assert_eq!(roles("read,write,backend"), "all");
    }

    #[test]
    fn flags_override_the_file_and_loki_spelling_works() {
        let args = normalize_args(["balsa", "-config.file=x.yaml", "--http.addr", "127.0.0.1:1"].map(String::from));
        assert_eq!(args[1], "--config.file=x.yaml");
        let flags = Flags::try_parse_from(&args).unwrap();
        let raw = parse_yaml("server:\n  http_listen_port: 4000\n", "t.yaml").unwrap();
        assert_eq!(Config::validate(raw, &flags).unwrap().http_addr.port(), 1);
    }

    #[test]
    fn the_config_in_force_renders_and_reads_back() {
        let c = load_yaml("storage:\n  backend: s3\n  s3:\n    bucket: b\n    access_key_id: AKIA\n    secret_access_key: hunter2\n").unwrap();
        let text = c.to_yaml();
        assert!(text.contains("bucket: b") && !text.contains("hunter2") && !text.contains("AKIA"), "{text}");
        let back: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(back["limits_config"]["max_label_names_per_series"], serde_yaml_ng::Value::from(15));
    }

    #[test]
    fn sizes_and_durations_read_as_lokis_configuration() {
        assert_eq!("64kb".parse::<ByteSize>().unwrap().0, 65536);
        let d: Dur = serde_yaml_ng::from_str("1h30m").unwrap();
        assert_eq!(d.0, Duration::from_secs(5400));
        assert_eq!(serde_yaml_ng::to_string(&Dur(Duration::from_secs(721 * 3600))).unwrap().trim(), "30d1h");
    }
}
