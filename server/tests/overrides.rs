//! Per-tenant overrides, re-read while the server runs; retention per tenant.

mod common;

use std::time::Duration;

use common::{now_ns, wait_for, Balsa};
use serde_json::json;

fn push_line(b: &Balsa, tenant: &str, ts: i64, line: &str) -> u16 {
    b.push_json(Some(tenant), &json!({"streams": [{"stream": {"job": "o"}, "values": [[ts.to_string(), line]]}]})).0
}

#[test]
fn overrides_reload_while_pushing_and_a_broken_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overrides.yaml");
    std::fs::write(&file, "overrides:\n  team-a:\n    max_line_size: 10\n").unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, format!("auth_enabled: true\nruntime_config:\n  file: {}\n  period: 100ms\n", file.display())).unwrap();
    let b = Balsa::start(&[&format!("--config.file={}", cfg.display())]);
    let t = now_ns() - 1_000_000_000;
    assert_eq!(push_line(&b, "team-a", t, "twenty bytes of line"), 400, "team-a's override applies");
    assert_eq!(push_line(&b, "team-b", t, "twenty bytes of line"), 204, "team-b keeps the defaults");

    std::fs::write(&file, "overrides:\n  team-a:\n    max_line_size: 100\n").unwrap();
    wait_for("the new override to apply", Duration::from_secs(30), || push_line(&b, "team-a", t + 1, "twenty bytes of line") == 204);
    let (_, text) = b.get("/runtime_config", &[], &[]);
    assert!(text.contains("max_line_size: 100"), "{text}");

    std::fs::write(&file, "overrides:\n  team-a:\n    max_line_sise: 1\n").unwrap();
    wait_for("the broken file to be refused", Duration::from_secs(30), || {
        b.get("/metrics", &[], &[]).1.contains("balsa_runtime_config_last_reload_successful 0")
    });
    assert_eq!(push_line(&b, "team-a", t + 2, &"x".repeat(50)), 204, "the limits in force stay");
    assert_eq!(push_line(&b, "team-a", t + 3, &"x".repeat(150)), 400);
    assert!(b.get("/runtime_config", &[], &[]).1.contains("max_line_size: 100"));
}

#[test]
fn retention_is_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overrides.yaml");
    std::fs::write(&file, "overrides:\n  short:\n    retention_period: 2h\n").unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, format!("auth_enabled: true\nruntime_config:\n  file: {}\n", file.display())).unwrap();
    let b = Balsa::start(&[&format!("--config.file={}", cfg.display())]);
    let old = now_ns() - 3 * 3_600_000_000_000;
    assert_eq!(push_line(&b, "short", old, "old line"), 204);
    assert_eq!(push_line(&b, "long", old, "old line"), 204);
    assert!(b.query_lines(Some("short"), r#"{job="o"}"#, 6, 10).is_empty());
    assert_eq!(b.query_lines(Some("long"), r#"{job="o"}"#, 6, 10).len(), 1);
}

#[test]
fn retention_stream_rules_pick_the_highest_priority_match() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "limits_config:\n  retention_period: 48h\n  retention_stream:\n  - selector: '{env=\"dev\"}'\n    priority: 1\n    period: 2h\n  - selector: '{env=~\"dev|test\", app=\"keep\"}'\n    priority: 2\n    period: 72h\n",
    )
    .unwrap();
    let b = Balsa::start(&[&format!("--config.file={}", cfg.display())]);
    let old = now_ns() - 3 * 3_600_000_000_000;
    for (env, app) in [("dev", "x"), ("dev", "keep"), ("prod", "x")] {
        let body = json!({"streams": [{"stream": {"env": env, "app": app}, "values": [[old.to_string(), "old"]]}]});
        assert_eq!(b.push_json(None, &body).0, 204);
    }
    let got = |sel: &str| b.query_lines(None, sel, 6, 10).len();
    assert_eq!(got(r#"{env="dev", app="x"}"#), 0, "2h rule");
    assert_eq!(got(r#"{env="dev", app="keep"}"#), 1, "the priority-2 rule wins");
    assert_eq!(got(r#"{env="prod"}"#), 1, "retention_period 48h");
}
