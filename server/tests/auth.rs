//! Tenant authentication without a gateway (`auth.file`): bearer tokens and
//! Basic auth grant tenants per access; every refusal has its status and
//! text; the file is re-read on SIGHUP; gRPC push and the CLI carry tokens.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use balsa_proto::logproto::pusher_client::PusherClient;
use base64::Engine;
use common::{now_ns, wait_for, Balsa, BIN};
use serde_json::json;

/// `balsa hash-token`, as an operator makes the file's hashes.
fn hash(token: &str) -> String {
    let mut child = Command::new(BIN).arg("hash-token").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{token}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn tokens_file(shipper: &str) -> String {
    format!(
        "tokens:\n  - name: shipper\n    sha256: {}\n    write: [team-a]\n  - name: grafana\n    sha256: {}\n    read: [team-a]\n  - name: ops\n    sha256: {}\n    read: ['*']\n    delete: ['*']\n    admin: true\n",
        hash(shipper),
        hash("grafana-secret"),
        hash("ops-secret")
    )
}

fn push(b: &Balsa, headers: &[(&str, &str)], line: &str) -> (u16, String) {
    let t = now_ns() - 1_000_000_000;
    let body = json!({"streams": [{"stream": {"job": "audit"}, "values": [[t.to_string(), line]]}]});
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    b.post("/loki/api/v1/push", &h, body.to_string().as_bytes())
}

fn query(b: &Balsa, headers: &[(&str, &str)]) -> (u16, String) {
    b.get("/loki/api/v1/query_range", &[("query", r#"{job="audit"}"#), ("since", "1h")], headers)
}

fn lines(body: &str) -> Vec<String> {
    common::result_lines(&serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")))
}

#[test]
fn tokens_decide_tenants_and_every_refusal_is_clear() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.yaml");
    std::fs::write(&file, tokens_file("shipper-secret")).unwrap();
    let b = Balsa::start(&[&format!("--auth.file={}", file.display())]);
    let bearer = |t: &str| format!("Bearer {t}");

    // Writes: the token's only tenant, or the header naming it.
    assert_eq!(push(&b, &[("Authorization", &bearer("shipper-secret"))], "one").0, 204);
    assert_eq!(push(&b, &[("Authorization", &bearer("shipper-secret")), ("X-Scope-OrgID", "team-a")], "two").0, 204);
    let (s, text) = push(&b, &[("Authorization", &bearer("shipper-secret")), ("X-Scope-OrgID", "team-b")], "x");
    assert_eq!((s, text.trim()), (403, "token 'shipper' may not write tenant 'team-b'"));
    let (s, text) = push(&b, &[("X-Scope-OrgID", "team-a")], "x");
    assert_eq!(s, 401, "a bare X-Scope-OrgID is not trusted: {text}");
    assert!(text.starts_with("no credentials"), "{text}");
    let (s, text) = push(&b, &[("Authorization", &bearer("guessed"))], "x");
    assert_eq!((s, text.trim()), (401, "invalid credentials: the token is not known"));
    assert_eq!(push(&b, &[("Authorization", "Digest abc")], "x").0, 401);

    // Reads: Bearer, or Basic as Grafana's data source sends it (user = tenant).
    let (s, body) = query(&b, &[("Authorization", &bearer("grafana-secret"))]);
    assert_eq!(s, 200, "{body}");
    assert_eq!(lines(&body), ["one", "two"]);
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("team-a:grafana-secret"));
    let (s, body) = query(&b, &[("Authorization", &basic)]);
    assert_eq!((s, lines(&body)), (200, vec!["one".to_string(), "two".to_string()]));
    assert_eq!(query(&b, &[("Authorization", &bearer("shipper-secret"))]).0, 403, "a write token cannot read");
    let (s, text) = query(&b, &[("Authorization", &bearer("grafana-secret")), ("X-Scope-OrgID", "team-a|team-b")]);
    assert_eq!((s, text.trim()), (403, "token 'grafana' may not read tenant 'team-b'"));
    let (s, text) = query(&b, &[("Authorization", &bearer("ops-secret"))]);
    assert_eq!(s, 401, "ops may read any tenant, so it must name one: {text}");
    assert!(text.contains("name the tenant with X-Scope-OrgID"), "{text}");
    let (s, body) = query(&b, &[("Authorization", &bearer("ops-secret")), ("X-Scope-OrgID", "team-b")]);
    assert_eq!((s, lines(&body).len()), (200, 0), "tenants stay apart");

    // Operating the process needs an admin token; health and metrics are open.
    assert_eq!(b.post("/flush", &[("Authorization", &bearer("grafana-secret"))], b"").0, 403);
    assert!(b.post("/flush", &[("Authorization", &bearer("ops-secret"))], b"").0 < 300);
    assert_eq!(b.get("/ready", &[], &[]).0, 200);
    let metrics = b.get("/metrics", &[], &[]).1;
    assert!(metrics.contains(r#"balsa_auth_refusals_total{reason="forbidden"}"#), "{metrics}");
    assert!(metrics.contains("balsa_auth_file_last_reload_successful 1"));

    // gRPC push takes the token from the `authorization` metadata.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let codes = rt.block_on(async {
        let mut c = PusherClient::connect(format!("http://127.0.0.1:{}", b.grpc_port)).await.unwrap();
        let t = now_ns() - 1_000_000_000;
        let req = || common::grpc_push_request(r#"{job="audit"}"#, t, "grpc", &[]);
        let mut out = Vec::new();
        for token in [None, Some("grafana-secret"), Some("shipper-secret")] {
            let mut r = tonic::Request::new(req());
            if let Some(t) = token {
                r.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
            }
            out.push(c.push(r).await.map(|_| ()).map_err(|e| e.code()));
        }
        out
    });
    assert_eq!(codes, [Err(tonic::Code::Unauthenticated), Err(tonic::Code::PermissionDenied), Ok(())]);

    // The CLI carries the token.
    let out = Command::new(BIN)
        .args(["query", r#"{job="audit"}"#, "--since=1h", "--output=raw", "--addr", &b.url(""), "--bearer-token", "grafana-secret"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut got: Vec<&str> = stdout.lines().collect();
    got.sort();
    assert_eq!(got, ["grpc", "one", "two"]);
}

#[test]
fn the_tokens_file_is_reloaded_on_sighup_and_a_bad_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.yaml");
    std::fs::write(&file, tokens_file("old-secret")).unwrap();
    let b = Balsa::start(&[&format!("--auth.file={}", file.display())]);
    assert_eq!(push(&b, &[("Authorization", "Bearer old-secret")], "a").0, 204);

    std::fs::write(&file, "tokens:\n  - name: broken\n    sha256: nothex\n").unwrap();
    b.signal("HUP");
    wait_for("the bad file to be refused", Duration::from_secs(10), || {
        b.get("/metrics", &[], &[]).1.contains("balsa_auth_file_last_reload_successful 0")
    });
    assert_eq!(push(&b, &[("Authorization", "Bearer old-secret")], "b").0, 204, "the grants in force stay");

    std::fs::write(&file, tokens_file("new-secret")).unwrap();
    b.signal("HUP");
    wait_for("the rotated token to work", Duration::from_secs(10), || {
        push(&b, &[("Authorization", "Bearer new-secret")], "c").0 == 204
    });
    assert_eq!(push(&b, &[("Authorization", "Bearer old-secret")], "d").0, 401, "the old token stops working");
}

#[test]
fn an_auth_file_that_cannot_be_used_stops_the_start_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.yaml");
    std::fs::write(&file, "tokens:\n  - name: x\n    sha256: abc\n").unwrap();
    let (code, stderr) = common::run_to_exit(&[&format!("--auth.file={}", file.display())], dir.path());
    assert_ne!(code, 0);
    assert!(stderr.contains("sha256 must be 64 hex digits"), "{stderr}");
    let (code, stderr) = common::run_to_exit(&[&format!("--auth.file={}", file.display()), "--auth.enabled=false"], dir.path());
    assert_ne!(code, 0);
    assert!(stderr.contains("auth_enabled cannot be false"), "{stderr}");
}

/// A CA, a server certificate for 127.0.0.1 and client certificates: two
/// signed by the CA (`promtail-b`, `stranger`), one by another CA (`rogue`).
fn certificates(dir: &std::path::Path) -> std::path::PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let ca = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        (p.self_signed(&key).unwrap(), key)
    };
    let (ca_cert, ca_key) = ca("balsa test CA");
    let (other_cert, other_key) = ca("another CA");
    let write = |name: &str, pem: String| std::fs::write(dir.join(name), pem).unwrap();
    write("ca.pem", ca_cert.pem());
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    write("server.pem", server.signed_by(&key, &ca_cert, &ca_key).unwrap().pem());
    write("server-key.pem", key.serialize_pem());
    for (cn, issuer, issuer_key) in [("promtail-b", &ca_cert, &ca_key), ("stranger", &ca_cert, &ca_key), ("rogue", &other_cert, &other_key)] {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        write(&format!("{cn}.pem"), p.signed_by(&key, issuer, issuer_key).unwrap().pem());
        write(&format!("{cn}-key.pem"), key.serialize_pem());
    }
    dir.to_path_buf()
}

/// `curl` over HTTPS trusting the test CA, optionally with a client
/// certificate; (status, body), status 0 when no HTTP answer came.
fn curl(certs: &std::path::Path, url: &str, client: Option<&str>, extra: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", "--cacert"]).arg(certs.join("ca.pem"));
    if let Some(cn) = client {
        cmd.arg("--cert").arg(certs.join(format!("{cn}.pem"))).arg("--key").arg(certs.join(format!("{cn}-key.pem")));
    }
    let out = cmd.args(extra).arg(url).output().expect("curl runs (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    match code.trim().parse::<u16>() {
        Ok(code) if code != 0 => (code, body.to_string()),
        _ => (0, String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

#[test]
fn verified_client_certificates_over_https_are_principals() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(&tokens, format!("{}certificates:\n  - common_name: promtail-b\n    write: [team-b]\n", tokens_file("shipper-secret"))).unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "auth:\n  file: {}\nserver:\n  http_tls_config:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n",
            tokens.display(),
            certs.join("server.pem").display(),
            certs.join("server-key.pem").display(),
            certs.join("ca.pem").display()
        ),
    )
    .unwrap();
    let mut b = Balsa::new(&[&format!("--config.file={}", cfg.display())]);
    b.spawn_nowait();
    let https = |path: &str| format!("https://127.0.0.1:{}{path}", b.http_port);
    wait_for("HTTPS /ready", Duration::from_secs(60), || curl(&certs, &https("/ready"), None, &[]).0 == 200);

    let t = now_ns() - 1_000_000_000;
    let body = json!({"streams": [{"stream": {"job": "tls"}, "values": [[t.to_string(), "by certificate"]]}]}).to_string();
    let push = |client: Option<&str>, extra: &[&str]| {
        let mut args = vec!["-H", "Content-Type: application/json", "--data-binary", body.as_str()];
        args.extend_from_slice(extra);
        curl(&certs, &https("/loki/api/v1/push"), client, &args)
    };
    assert_eq!(push(Some("promtail-b"), &[]).0, 204, "a granted certificate writes its tenant");
    let (s, text) = push(Some("promtail-b"), &["-H", "X-Scope-OrgID: team-a"]);
    assert_eq!((s, text.trim()), (403, "certificate 'promtail-b' may not write tenant 'team-a'"));
    let (s, text) = push(Some("stranger"), &[]);
    assert_eq!((s, text.trim()), (401, "invalid credentials: no grant for the client certificate 'stranger'"));
    assert_eq!(push(Some("rogue"), &[]).0, 0, "a certificate from another CA fails the handshake");
    let (s, text) = push(None, &[]);
    assert_eq!(s, 401, "no certificate and no token: {text}");
    assert_eq!(push(None, &["-H", "Authorization: Bearer shipper-secret"]).0, 204, "tokens work over HTTPS too");
    let plain = ureq::get(&format!("http://127.0.0.1:{}/ready", b.http_port)).timeout(Duration::from_secs(5)).call();
    assert!(!matches!(plain, Ok(ref r) if r.status() == 200), "plain HTTP is not served");

    let (s, body) = curl(
        &certs,
        &format!("{}?query=%7Bjob%3D%22tls%22%7D&since=1h", https("/loki/api/v1/query_range")),
        None,
        &["-H", "Authorization: Bearer ops-secret", "-H", "X-Scope-OrgID: team-b"],
    );
    assert_eq!((s, lines(&body)), (200, vec!["by certificate".to_string()]));
    assert!(b.alive());
}
