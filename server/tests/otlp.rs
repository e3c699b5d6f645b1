//! OTLP/HTTP logs ingestion (`/otlp/v1/logs`): OpenTelemetry's own Python
//! SDK and exporter push to Balsa, and what they sent is read back with
//! LogQL, labels and structured metadata placed as Loki places them.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{now_ns, wait_for, Balsa};
use prost::Message;

/// The message of an OTLP error answer (a protobuf `google.rpc.Status`).
fn status_message(body: &str) -> String {
    balsa_proto::otlp::Status::decode(body.as_bytes()).map(|s| s.message).unwrap_or_else(|e| panic!("not a Status ({e}): {body:?}"))
}

/// Emits three records through the OpenTelemetry SDK's logging bridge and
/// its OTLP/HTTP protobuf exporter, then shuts the provider down (which
/// exports and waits).
const EMIT: &str = r#"
import logging, sys
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.sdk.resources import Resource

url, compression, service = sys.argv[1], sys.argv[2], sys.argv[3]
resource = Resource.create({"service.name": service, "k8s.namespace.name": "shop", "host.name": "node-a"})
provider = LoggerProvider(resource=resource)
provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=url, compression=Compression(compression), timeout=20)))
log = logging.getLogger("orders")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(LoggingHandler(logger_provider=provider))
for i in range(3):
    log.warning("order %d placed", i, extra={"order.id": str(i), "user": "u%d" % i})
provider.shutdown()
"#;

fn emit(b: &Balsa, compression: &str, service: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", EMIT, &b.url("/otlp/v1/logs"), compression, service])
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the OpenTelemetry SDK script failed; it needs `pip install opentelemetry-sdk \
         opentelemetry-exporter-otlp-proto-http` (.ci/run installs them):\n{stderr}"
    );
    stderr
}

#[test]
fn opentelemetry_sdk_logs_are_stored_with_loki_labels_and_metadata() {
    let b = Balsa::start(&[]);
    for (compression, service) in [("none", "checkout"), ("gzip", "checkout-gz"), ("deflate", "checkout-zlib")] {
        let stderr = emit(&b, compression, service);
        let query = format!(r#"{{service_name="{service}", k8s_namespace_name="shop"}}"#);
        let mut lines = Vec::new();
        wait_for(&format!("the SDK's {compression} export to be queryable (exporter said: {stderr})"), Duration::from_secs(20), || {
            lines = b.query_lines(None, &query, 1, 100);
            lines.len() == 3
        });
        let texts: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(texts, ["order 0 placed", "order 1 placed", "order 2 placed"]);
        assert!(lines.iter().all(|(ts, _)| (now_ns() - ts).abs() < 600_000_000_000), "the records' own times: {lines:?}");
        // Record attributes, record fields and non-index resource attributes
        // are structured metadata, usable as labels in a pipeline.
        let one = b.query_lines(None, &format!(r#"{query} | order_id="1" | user="u1" | severity_text="WARN" | host_name="node-a" | scope_name="orders""#), 1, 100);
        assert_eq!(one.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>(), ["order 1 placed"]);
    }
    let labels = b.get_json("/loki/api/v1/labels", &[], &[]);
    let labels: Vec<&str> = labels["data"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert!(labels.contains(&"service_name") && labels.contains(&"k8s_namespace_name"), "{labels:?}");
    assert!(!labels.contains(&"host_name") && !labels.contains(&"order_id"), "metadata is not indexed: {labels:?}");
}

#[test]
fn otlp_config_places_attributes_and_bad_requests_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "limits_config:\n  otlp_config:\n    severity_text_as_label: true\n    log_attributes:\n      - action: index_label\n        attributes: [http.route]\n      - action: drop\n        regex: secret\\..*\n",
    )
    .unwrap();
    let mut b = Balsa::start(&[&format!("--config.file={}", cfg.display())]);
    let t = now_ns() - 1_000_000_000;
    let record = |route: &str, line: &str| {
        format!(
            r#"{{"timeUnixNano":"{t}","severityText":"ERROR","body":{{"stringValue":"{line}"}},
              "attributes":[{{"key":"http.route","value":{{"stringValue":"{route}"}}}},{{"key":"secret.token","value":{{"stringValue":"hunter2"}}}}]}}"#
        )
    };
    let body = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"pay"}}}}]}},
            "scopeLogs":[{{"logRecords":[{},{}]}}]}}]}}"#,
        record("/pay", "declined"),
        record("/refund", "refunded")
    );
    let json = [("Content-Type", "application/json")];
    let (status, text) = b.post("/otlp/v1/logs", &json, body.as_bytes());
    assert_eq!(status, 204, "{text}");
    let pay = b.query_lines(None, r#"{service_name="pay", severity_text="ERROR", http_route="/pay"}"#, 1, 10);
    assert_eq!(pay, [(t, "declined".to_string())]);
    let dropped = b.query_lines(None, r#"{service_name="pay"} | secret_token!="""#, 1, 10);
    assert!(dropped.is_empty(), "a dropped attribute is not stored: {dropped:?}");

    let (status, text) = b.post("/otlp/v1/logs", &[("Content-Type", "text/plain")], b"x");
    assert_eq!((status, status_message(&text).as_str()), (400, "content type: text/plain is not supported"));
    // One bad record refuses the request: nothing of it is stored.
    let bad = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"half"}}}}]}},
            "scopeLogs":[{{"logRecords":[{},{{"traceId":"not-hex"}}]}}]}}]}}"#,
        record("/a", "first")
    );
    let (status, text) = b.post("/otlp/v1/logs", &json, bad.as_bytes());
    assert_eq!(status, 400, "{text}");
    assert!(status_message(&text).contains(r#"traceId "not-hex" is not 16 bytes in hex"#), "{text}");
    let (status, _) = b.post("/otlp/v1/logs", &[("Content-Type", "application/x-protobuf")], b"\xff\xff\xff");
    assert_eq!(status, 400);
    assert!(b.query_lines(None, r#"{service_name="half"}"#, 1, 10).is_empty());
    let (status, text) = b.post("/otlp/v1/logs", &json, b"{}");
    assert_eq!(status, 204, "an export without records is a success: {text}");
    assert!(b.alive(), "bad bodies do not bring the process down");
}
