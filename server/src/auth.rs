//! Tenant authentication without a gateway: who may read, write or delete
//! which tenants' logs, from bearer tokens (or Basic auth, as Grafana's data
//! source sends it) or verified client certificates. With an `auth.file`, a
//! request's credentials decide its
//! tenants; `X-Scope-OrgID` only narrows within what they allow.
//!
//! The file holds SHA-256 hashes of the tokens, never the tokens (`balsa
//! hash-token` prints one). It is re-read like the overrides file
//! (every `runtime_config.period` and on SIGHUP); a file that does not
//! parse is refused with a log line and the grants in force stay.
//!
//! ```yaml
//! tokens:
//!   - name: promtail-team-a        # in logs and errors; never the secret
//!     sha256: 3a6eb079...          # hex SHA-256 of the token
//!     write: [team-a]
//!   - name: grafana
//!     sha256: 9f86d081...
//!     read: ["*"]                  # every tenant
//!   - name: ops
//!     sha256: 2c26b46b...
//!     delete: [team-a]             # delete requests (/loki/api/v1/delete)
//!     admin: true                  # /flush, /ingester/drain, /ring, /config, /runtime_config
//! certificates:                    # HTTPS with a client_ca_file: verified client certificates
//!   - common_name: promtail-b      # the subject's CN
//!     write: [team-b]
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::Engine;
use parking_lot::RwLock;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error_code::{Coded, ErrorCode};
use crate::metrics::Metrics;
use crate::tenant::{self, TenantError};

/// What a request does, which decides the grant it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Needs no credentials (`/ready`, `/metrics`, build info).
    Open,
    Read,
    Write,
    Delete,
    /// Operating the process: flush, drain, the ring, the configuration.
    Admin,
}

impl Access {
    /// The access an HTTP path needs. Anything not listed is a read, so a
    /// new endpoint is never open by accident.
    pub fn of_path(path: &str) -> Access {
        match path {
            "/ready" | "/metrics" | "/loki/api/v1/status/buildinfo" | "/loki/api/v1/format_query" => Access::Open,
            "/loki/api/v1/push" | "/api/prom/push" | "/otlp/v1/logs" => Access::Write,
            "/loki/api/v1/delete" => Access::Delete,
            "/flush" | "/ingester/drain" | "/ring" | "/config" | "/runtime_config" => Access::Admin,
            _ => Access::Read,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Access::Open | Access::Read => "read",
            Access::Write => "write",
            Access::Delete => "delete",
            Access::Admin => "administer",
        }
    }
}

/// Why a request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// 401.
    #[error("no credentials: send Authorization: Bearer <token> (or Basic auth with the token as password)")]
    NoCredentials,
    /// 401.
    #[error("invalid credentials: the token is not known")]
    BadToken,
    /// 401.
    #[error("malformed Authorization header: {0}")]
    Malformed(String),
    /// 401: the token allows several tenants and the request named none.
    #[error("no org id: {who} may {verb} {allowed}; name the tenant with X-Scope-OrgID")]
    Ambiguous { who: String, verb: &'static str, allowed: String },
    /// 403.
    #[error("{who} may not {verb} tenant '{tenant}'")]
    Forbidden { who: String, verb: &'static str, tenant: String },
    /// 403: the credentials grant this access for no tenant at all.
    #[error("{who} may not {verb} any tenant")]
    NoGrant { who: String, verb: &'static str },
    /// 403.
    #[error("{who} may not administer this process")]
    NotAdmin { who: String },
    /// 401: a verified client certificate the file does not list.
    #[error("invalid credentials: no grant for the client certificate '{0}'")]
    UnknownCertificate(String),
    /// 400 (or 401 for a missing id), as without authentication.
    #[error(transparent)]
    Tenant(#[from] TenantError),
}

impl Coded for AuthError {
    fn code(&self) -> ErrorCode {
        match self {
            AuthError::Tenant(t) => t.code(),
            e if e.is_forbidden() => ErrorCode::Forbidden,
            _ => ErrorCode::Unauthenticated,
        }
    }

    fn http_body(&self) -> String {
        match self {
            AuthError::Tenant(t) => t.http_body(),
            e => format!("{e}\n"),
        }
    }
}

impl AuthError {
    /// Whether the answer is 403 (else 401, or 400 for a bad tenant id).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, AuthError::Forbidden { .. } | AuthError::NoGrant { .. } | AuthError::NotAdmin { .. })
    }

    /// The reason label of `balsa_auth_refusals_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::NoCredentials => "no_credentials",
            AuthError::BadToken | AuthError::UnknownCertificate(_) => "bad_token",
            AuthError::Malformed(_) => "malformed",
            AuthError::Ambiguous { .. } => "no_org_id",
            AuthError::Forbidden { .. } | AuthError::NoGrant { .. } | AuthError::NotAdmin { .. } => "forbidden",
            AuthError::Tenant(_) => "bad_org_id",
        }
    }
}

/// The auth file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("auth file {path}: {problem}")]
pub struct AuthFileError {
    pub path: String,
    pub problem: GrantsError,
}

/// What is wrong with the auth file; `at` names the entry
/// (`tokens[0] (ci)`, `certificates[1] (grafana).read`).
#[derive(Debug, thiserror::Error)]
pub enum GrantsError {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error("{path}: {problem}")]
    Yaml { path: String, problem: String },
    #[error("{at}: {source}")]
    Tenant { at: String, source: TenantError },
    #[error("{at}: the same credential is listed twice")]
    SameCredential { at: String },
    #[error("{at}: the name is used twice")]
    SameName { at: String },
    #[error("tokens[{0}]: a token needs a name")]
    TokenWithoutName(usize),
    #[error("{at}: sha256 must be 64 hex digits (balsa hash-token prints it)")]
    BadHash { at: String },
    #[error("certificates[{0}]: common_name is empty")]
    EmptyCommonName(usize),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    tokens: Vec<RawToken>,
    #[serde(default)]
    certificates: Vec<RawCertificate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    sha256: String,
    #[serde(flatten)]
    grants: RawGrants,
}

/// Client certificates (HTTPS with `client_ca_file`) by subject common name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificate {
    common_name: String,
    #[serde(flatten)]
    grants: RawGrants,
}

#[derive(Deserialize)]
struct RawGrants {
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
    #[serde(default)]
    delete: Vec<String>,
    #[serde(default)]
    admin: bool,
}

/// Tenants one access is granted for.
#[derive(Debug, Clone, Default)]
struct Tenants {
    any: bool,
    listed: Vec<String>,
}

impl Tenants {
    fn parse(list: Vec<String>, what: &str) -> Result<Self, GrantsError> {
        let mut t = Tenants::default();
        for id in list {
            if id == "*" {
                t.any = true;
            } else {
                tenant::validate(&id).map_err(|source| GrantsError::Tenant { at: what.into(), source })?;
                t.listed.push(id);
            }
        }
        Ok(t)
    }

    fn allows(&self, tenant: &str) -> bool {
        self.any || self.listed.iter().any(|t| t == tenant)
    }

    fn describe(&self) -> String {
        match (self.any, self.listed.as_slice()) {
            (true, _) => "any tenant".into(),
            (false, l) => format!("tenants {}", l.join(", ")),
        }
    }
}

/// How a principal proves who it is.
#[derive(Debug, PartialEq, Eq)]
enum Credential {
    /// SHA-256 of a bearer token.
    Token([u8; 32]),
    /// A verified client certificate's subject common name.
    Certificate(String),
}

/// What one token or certificate may do.
#[derive(Debug)]
struct Grant {
    /// `token 'name'` or `certificate 'cn'`, for messages.
    who: String,
    credential: Credential,
    read: Tenants,
    write: Tenants,
    delete: Tenants,
    admin: bool,
}

fn parse(text: &str) -> Result<Vec<Grant>, GrantsError> {
    let raw: RawFile = serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text))
        .map_err(|e| GrantsError::Yaml { path: e.path().to_string(), problem: e.inner().to_string() })?;
    let mut grants: Vec<Grant> = Vec::with_capacity(raw.tokens.len() + raw.certificates.len());
    let mut add = |at: String, who: String, credential: Credential, g: RawGrants| -> Result<(), GrantsError> {
        if grants.iter().any(|x| x.credential == credential) {
            return Err(GrantsError::SameCredential { at });
        }
        if grants.iter().any(|x| x.who == who) {
            return Err(GrantsError::SameName { at });
        }
        grants.push(Grant {
            read: Tenants::parse(g.read, &format!("{at}.read"))?,
            write: Tenants::parse(g.write, &format!("{at}.write"))?,
            delete: Tenants::parse(g.delete, &format!("{at}.delete"))?,
            admin: g.admin,
            who,
            credential,
        });
        Ok(())
    };
    for (i, t) in raw.tokens.into_iter().enumerate() {
        let at = format!("tokens[{i}] ({})", t.name);
        if t.name.is_empty() {
            return Err(GrantsError::TokenWithoutName(i));
        }
        let Some(hash) = decode_sha256(&t.sha256) else { return Err(GrantsError::BadHash { at }) };
        add(at, format!("token '{}'", t.name), Credential::Token(hash), t.grants)?;
    }
    for (i, c) in raw.certificates.into_iter().enumerate() {
        if c.common_name.is_empty() {
            return Err(GrantsError::EmptyCommonName(i));
        }
        let at = format!("certificates[{i}] ({})", c.common_name);
        add(at, format!("certificate '{}'", c.common_name), Credential::Certificate(c.common_name), c.grants)?;
    }
    Ok(grants)
}

fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The hex SHA-256 of a token, as the auth file holds it.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The grants in force, re-read from their file.
pub struct Auth {
    file: PathBuf,
    grants: RwLock<Arc<Vec<Grant>>>,
    last_ok: AtomicBool,
    /// Requests refused, by reason (registered by [`Auth::report`]).
    refusals: std::sync::OnceLock<prometheus::IntCounterVec>,
}

impl Auth {
    /// Loads `file`; a file that cannot be used is an error at start.
    pub fn new(file: PathBuf) -> Result<Self, AuthFileError> {
        let auth = Self {
            file,
            grants: RwLock::new(Arc::new(Vec::new())),
            last_ok: AtomicBool::new(true),
            refusals: std::sync::OnceLock::new(),
        };
        auth.reload()?;
        Ok(auth)
    }

    pub fn last_reload_ok(&self) -> bool {
        self.last_ok.load(Ordering::Relaxed)
    }

    /// Registers the refusals counter and the gauge of whether the last
    /// reload succeeded (set at each scrape).
    pub fn report(self: &Arc<Self>, metrics: &Metrics) {
        let refusals =
            metrics.counter_vec("balsa_auth_refusals_total", "Requests refused for their credentials, by reason.", &["reason"]);
        let _ = self.refusals.set(refusals);
        let ok = metrics.gauge("balsa_auth_file_last_reload_successful", "Whether the last reload of the auth file succeeded.");
        let me = Arc::downgrade(self);
        metrics.on_scrape(move || {
            if let Some(a) = me.upgrade() {
                ok.set(i64::from(a.last_reload_ok()));
            }
        });
    }

    /// Counts a refused request under its reason.
    pub fn count_refusal(&self, e: &AuthError) {
        if let Some(c) = self.refusals.get() {
            c.with_label_values(&[e.reason()]).inc();
        }
    }

    /// Re-reads the file; on any problem the grants in force stay.
    pub fn reload(&self) -> Result<(), AuthFileError> {
        let err = |problem: GrantsError| AuthFileError { path: self.file.display().to_string(), problem };
        let result = std::fs::read_to_string(&self.file).map_err(|e| err(e.into())).and_then(|t| parse(&t).map_err(err));
        self.last_ok.store(result.is_ok(), Ordering::Relaxed);
        let grants = result?;
        let mut current = self.grants.write();
        if current.len() != grants.len() {
            tracing::info!(file = %self.file.display(), tokens = grants.len(), "auth file loaded");
        }
        *current = Arc::new(grants);
        Ok(())
    }

    /// Checks a request's credentials for `access` and returns the value
    /// `X-Scope-OrgID` must carry from here on: the tenants named by the
    /// header (or the Basic auth user name, or the token's only tenant),
    /// each allowed to the token. `None` for open and admin requests.
    /// An Authorization header wins over a client certificate
    /// (`cert_common_name`, verified by the TLS layer).
    pub fn authorize(
        &self,
        access: Access,
        authorization: Option<&str>,
        org_id: Option<&str>,
        cert_common_name: Option<&str>,
    ) -> Result<Option<String>, AuthError> {
        if access == Access::Open {
            return Ok(None);
        }
        let grants = self.grants.read().clone();
        let (g, user) = match (authorization.map(str::trim).filter(|v| !v.is_empty()), cert_common_name) {
            (None, Some(cn)) => {
                let g = grants.iter().find(|g| matches!(&g.credential, Credential::Certificate(c) if c == cn));
                (g.ok_or_else(|| AuthError::UnknownCertificate(cn.to_string()))?, None)
            }
            (authorization, _) => {
                let (token, user) = credentials(authorization)?;
                let presented = Sha256::digest(token.as_bytes());
                // Every token is compared, in constant time, whatever matches.
                let mut found: Option<&Grant> = None;
                for g in grants.iter() {
                    if let Credential::Token(hash) = &g.credential {
                        if bool::from(hash.ct_eq(presented.as_slice())) {
                            found = Some(g);
                        }
                    }
                }
                (found.ok_or(AuthError::BadToken)?, user)
            }
        };
        let tenants = match access {
            Access::Open => return Ok(None),
            Access::Admin if g.admin => return Ok(None),
            Access::Admin => return Err(AuthError::NotAdmin { who: g.who.clone() }),
            Access::Read => &g.read,
            Access::Write => &g.write,
            Access::Delete => &g.delete,
        };
        if !tenants.any && tenants.listed.is_empty() {
            return Err(AuthError::NoGrant { who: g.who.clone(), verb: access.verb() });
        }
        let asked = match (org_id.map(str::trim).filter(|s| !s.is_empty()), user.filter(|u| !u.is_empty())) {
            (Some(h), _) => tenant::resolve_many(true, Some(h))?,
            (None, Some(u)) => tenant::resolve_many(true, Some(&u))?,
            (None, None) => match (tenants.any, tenants.listed.as_slice()) {
                (false, [only]) => vec![only.clone()],
                _ => {
                    return Err(AuthError::Ambiguous { who: g.who.clone(), verb: access.verb(), allowed: tenants.describe() })
                }
            },
        };
        if let Some(t) = asked.iter().find(|t| !tenants.allows(t)) {
            return Err(AuthError::Forbidden { who: g.who.clone(), verb: access.verb(), tenant: t.clone() });
        }
        Ok(Some(asked.join("|")))
    }
}

/// The token and the Basic auth user name (if any) of an Authorization
/// header.
fn credentials(authorization: Option<&str>) -> Result<(String, Option<String>), AuthError> {
    let value = authorization.map(str::trim).filter(|v| !v.is_empty()).ok_or(AuthError::NoCredentials)?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(AuthError::Malformed("the bearer token is empty".into()));
        }
        Ok((rest.to_string(), None))
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| AuthError::Malformed("Basic credentials are not base64".into()))?;
        let text = String::from_utf8(decoded).map_err(|_| AuthError::Malformed("Basic credentials are not UTF-8".into()))?;
        let (user, password) =
            text.split_once(':').ok_or_else(|| AuthError::Malformed("Basic credentials need user:password".into()))?;
        if password.is_empty() {
            return Err(AuthError::Malformed("the Basic auth password (the token) is empty".into()));
        }
        Ok((password.to_string(), Some(user.to_string())))
    } else {
        Err(AuthError::Malformed(format!("unsupported scheme {scheme:?}: use Bearer or Basic")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn az(a: &Auth, access: Access, authorization: Option<&str>, org: Option<&str>) -> Result<Option<String>, AuthError> {
        a.authorize(access, authorization, org, None)
    }

    fn auth(yaml: &str) -> (tempfile::TempDir, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth.yaml");
        std::fs::write(&f, yaml).unwrap();
        let a = Auth::new(f).unwrap();
        (dir, a)
    }

    fn file() -> String {
        format!(
            "tokens:\n  - name: shipper\n    sha256: {}\n    write: [team-a]\n  - name: grafana\n    sha256: {}\n    read: [team-a, team-b]\n  - name: ops\n    sha256: {}\n    read: ['*']\n    delete: [team-a]\n    admin: true\n",
            hash_token("s3cret-a"),
            hash_token("s3cret-g"),
            hash_token("s3cret-o")
        )
    }

    fn basic(user: &str, pass: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
    }

    #[test]
    fn tokens_grant_what_they_list_and_the_header_narrows() {
        let (_d, a) = auth(&file());
        let w = Access::Write;
        assert_eq!(az(&a, w, Some("Bearer s3cret-a"), None), Ok(Some("team-a".into())), "the only tenant");
        assert_eq!(az(&a, w, Some("bearer s3cret-a"), Some("team-a")), Ok(Some("team-a".into())));
        assert_eq!(
            az(&a, w, Some("Bearer s3cret-a"), Some("team-b")).unwrap_err().to_string(),
            "token 'shipper' may not write tenant 'team-b'"
        );
        assert!(az(&a, Access::Read, Some("Bearer s3cret-a"), Some("team-a")).unwrap_err().is_forbidden(), "write is not read");
        assert_eq!(az(&a, Access::Read, Some("Bearer s3cret-a"), None).unwrap_err().to_string(), "token 'shipper' may not read any tenant");
        let r = Access::Read;
        assert_eq!(az(&a, r, Some("Bearer s3cret-g"), Some("team-b|team-a")), Ok(Some("team-a|team-b".into())));
        assert!(az(&a, r, Some("Bearer s3cret-g"), Some("team-a|team-c")).unwrap_err().is_forbidden());
        assert_eq!(
            az(&a, r, Some("Bearer s3cret-g"), None).unwrap_err().to_string(),
            "no org id: token 'grafana' may read tenants team-a, team-b; name the tenant with X-Scope-OrgID"
        );
        assert_eq!(az(&a, r, Some(&basic("team-b", "s3cret-g")), None), Ok(Some("team-b".into())), "Basic user names the tenant");
        assert_eq!(az(&a, r, Some(&basic("", "s3cret-o")), Some("anyone")), Ok(Some("anyone".into())));
        assert_eq!(az(&a, Access::Delete, Some("Bearer s3cret-o"), None), Ok(Some("team-a".into())));
        assert!(az(&a, Access::Delete, Some("Bearer s3cret-g"), Some("team-a")).unwrap_err().is_forbidden());
        assert_eq!(az(&a, Access::Admin, Some("Bearer s3cret-o"), None), Ok(None));
        assert_eq!(az(&a, Access::Admin, Some("Bearer s3cret-g"), None), Err(AuthError::NotAdmin { who: "token 'grafana'".into() }));
        assert_eq!(az(&a, Access::Open, None, None), Ok(None));
    }

    #[test]
    fn client_certificates_are_principals_and_a_token_wins_over_them() {
        let yaml = format!("{}certificates:\n  - common_name: promtail-b\n    write: [team-b]\n", file());
        let (_d, a) = auth(&yaml);
        let cert = |access, org, cn| a.authorize(access, None, org, Some(cn));
        assert_eq!(cert(Access::Write, None, "promtail-b"), Ok(Some("team-b".into())));
        assert_eq!(
            cert(Access::Write, Some("team-a"), "promtail-b").unwrap_err().to_string(),
            "certificate 'promtail-b' may not write tenant 'team-a'"
        );
        assert_eq!(cert(Access::Write, None, "stranger"), Err(AuthError::UnknownCertificate("stranger".into())));
        assert_eq!(a.authorize(Access::Write, Some("Bearer s3cret-a"), None, Some("promtail-b")), Ok(Some("team-a".into())));
        let dup = format!("{yaml}  - common_name: promtail-b\n    read: [x]\n");
        std::fs::write(_d.path().join("auth.yaml"), dup).unwrap();
        assert!(a.reload().unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn every_refusal_names_its_reason() {
        let (_d, a) = auth(&file());
        let r = Access::Read;
        assert_eq!(az(&a, r, None, Some("team-a")), Err(AuthError::NoCredentials));
        assert_eq!(az(&a, r, Some("Bearer wrong"), Some("team-a")), Err(AuthError::BadToken));
        assert_eq!(az(&a, r, Some(&basic("team-a", "wrong")), None), Err(AuthError::BadToken));
        assert!(matches!(az(&a, r, Some("Bearer "), None), Err(AuthError::Malformed(_))));
        assert!(matches!(az(&a, r, Some("Digest x"), None), Err(AuthError::Malformed(_))));
        assert!(matches!(az(&a, r, Some("Basic !!!"), None), Err(AuthError::Malformed(_))));
        assert!(matches!(az(&a, r, Some(&basic("team-a", "")), None), Err(AuthError::Malformed(_))));
        assert!(matches!(az(&a, r, Some("Bearer s3cret-g"), Some("../x")), Err(AuthError::Tenant(_))));
        assert!(matches!(az(&a, r, Some(&basic("a/b", "s3cret-g")), None), Err(AuthError::Tenant(_))));
    }

    #[test]
    fn a_bad_file_is_refused_and_the_grants_in_force_stay() {
        let (d, a) = auth(&file());
        let f = d.path().join("auth.yaml");
        for (bad, says) in [
            ("tokens:\n  - name: x\n    sha256: abc\n", "64 hex digits"),
            ("tokens:\n  - name: x\n    sha256: 00\n    raed: [a]\n", "raed"),
            (&format!("tokens:\n  - name: x\n    sha256: {}\n  - name: y\n    sha256: {}\n", hash_token("t"), hash_token("t")), "twice"),
            (&format!("tokens:\n  - name: x\n    sha256: {}\n    read: ['a/b']\n", hash_token("t")), "unsupported character"),
        ] {
            std::fs::write(&f, bad).unwrap();
            let e = a.reload().unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
            assert!(!a.last_reload_ok());
            assert_eq!(az(&a, Access::Write, Some("Bearer s3cret-a"), None), Ok(Some("team-a".into())));
        }
        std::fs::write(&f, format!("tokens:\n  - name: new\n    sha256: {}\n    write: [team-z]\n", hash_token("rotated"))).unwrap();
        a.reload().unwrap();
        assert_eq!(az(&a, Access::Write, Some("Bearer s3cret-a"), None), Err(AuthError::BadToken), "a removed token stops working");
        assert_eq!(az(&a, Access::Write, Some("Bearer rotated"), None), Ok(Some("team-z".into())));
    }

    #[test]
    fn paths_need_the_access_their_data_does() {
        assert_eq!(Access::of_path("/loki/api/v1/push"), Access::Write);
        assert_eq!(Access::of_path("/otlp/v1/logs"), Access::Write);
        assert_eq!(Access::of_path("/loki/api/v1/query_range"), Access::Read);
        assert_eq!(Access::of_path("/loki/api/v1/label/job/values"), Access::Read);
        assert_eq!(Access::of_path("/loki/api/v1/delete"), Access::Delete);
        assert_eq!(Access::of_path("/ingester/drain"), Access::Admin);
        assert_eq!(Access::of_path("/metrics"), Access::Open);
        assert_eq!(Access::of_path("/some/new/endpoint"), Access::Read);
    }
}
