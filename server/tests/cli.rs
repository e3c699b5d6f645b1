//! The `logcli`-like client against a running server.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Balsa, BIN};

fn balsa(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run balsa");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn push_query_labels_and_series_from_the_command_line() {
    let b = Balsa::start(&["--auth.enabled=true"]);
    let addr = b.url("");
    let (code, _, err) = balsa(&["push", "--addr", &addr, "--org-id", "t", "--labels", r#"{app="cli"}"#], Some("first\nsecond error\nthird\n"));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("pushed 3 lines"), "{err}");
    let (code, out, err) = balsa(&["query", "--addr", &addr, "--org-id", "t", "--output", "raw", "--forward", r#"{app="cli"}"#], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "first\nsecond error\nthird\n");
    let (_, out, err) = balsa(&["query", "--addr", &addr, "--org-id", "t", "--stats", r#"{app="cli"} |= "error""#], None);
    assert!(out.trim_end().ends_with(r#"{app="cli", service_name="cli"} second error"#), "{out}");
    assert!(err.lines().any(|l| l == "Summary.TotalEntriesReturned\t1"), "--stats prints the statistics: {err}");
    assert!(err.contains("Ingester.Store.Chunk.HeadChunkLines\t"), "{err}");
    let (_, out, _) = balsa(&["query", "--addr", &addr, "--org-id", "t", "--output", "jsonl", "--limit", "1", r#"{app="cli"}"#], None);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(v["line"], "third", "newest first by default");
    let (_, out, _) = balsa(&["labels", "--addr", &addr, "--org-id", "t", "app"], None);
    assert_eq!(out, "cli\n");
    let (_, out, _) = balsa(&["series", "--addr", &addr, "--org-id", "t", r#"{app="cli"}"#], None);
    assert_eq!(out, "{app=\"cli\", service_name=\"cli\"}\n");
    let (code, _, err) = balsa(&["query", "--addr", &addr, r#"{app="cli"}"#], None);
    assert_eq!(code, 1);
    assert!(err.contains("401") && err.contains("no org id"), "{err}");
    let (code, _, err) = balsa(&["query", "--addr", &addr, "--since", "soon", r#"{app="cli"}"#], None);
    assert_eq!(code, 2);
    assert!(err.contains("--since"), "{err}");
}

#[test]
fn tail_prints_the_newest_lines() {
    let b = Balsa::start(&[]);
    let addr = b.url("");
    let (code, _, err) = balsa(&["push", "--addr", &addr, "--labels", r#"{app="tail"}"#], Some("alpha\nbeta\ngamma\n"));
    assert_eq!(code, 0, "{err}");
    let mut child = Command::new(BIN)
        .args(["tail", "--addr", &addr, "--limit", "2", "--output", "raw", r#"{app="tail"}"#])
        .stdout(Stdio::piped())
        .spawn()
        .expect("balsa tail");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let got: Vec<String> = (0..2).map_while(|_| rx.recv_timeout(std::time::Duration::from_secs(20)).ok()).collect();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(got, ["beta", "gamma"]);
}
