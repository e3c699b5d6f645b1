//! `GET /ring`: the cluster as the controller records it (nodes, zones,
//! states, each partition's replicas) joined with what every ingester
//! reports of its replicas (role, term, leader, commit/applied index, lag).
//! JSON with `Accept: application/json` or `?format=json`, HTML otherwise.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use balsa_proto::cluster as pb;
use serde_json::{json, Value};

use super::AppState;

/// The cluster view as JSON.
async fn view(api: &AppState) -> Value {
    let ring = api.ingesters.ring();
    let statuses = api.ingesters.statuses().await;
    let mut replicas: BTreeMap<u32, Vec<(u64, pb::ReplicaStatus)>> = BTreeMap::new();
    let mut nodes_status = BTreeMap::new();
    let mut controller = Vec::new();
    for (node, s) in &statuses {
        match s {
            Ok(st) => {
                nodes_status.insert(*node, Value::String("reachable".into()));
                for r in &st.replicas {
                    replicas.entry(r.partition).or_default().push((*node, r.clone()));
                }
                if let Some(c) = &st.controller {
                    controller.push(json!({"node": node, "role": c.role, "term": c.term, "applied_index": c.applied_index}));
                }
            }
            Err(e) => {
                nodes_status.insert(*node, Value::String(format!("unreachable: {e}")));
            }
        }
    }
    let nodes: Vec<Value> = ring
        .nodes
        .values()
        .map(|n| {
            let owned = ring.partitions.iter().filter(|a| a.replicas.contains(&n.id)).count();
            let leading = replicas.values().flatten().filter(|(id, r)| *id == n.id && r.role == "leader").count();
            json!({"id": n.id, "zone": n.zone, "grpc_addr": n.grpc_addr, "http_addr": n.http_addr,
                "incarnation": format!("{:016x}", n.incarnation), "state": n.state.name(), "replicas": owned, "leaders": leading,
                "health": nodes_status.get(&n.id).cloned().unwrap_or(Value::Null)})
        })
        .collect();
    let partitions: Vec<Value> = ring
        .partitions
        .iter()
        .enumerate()
        .map(|(p, a)| {
            let reported = replicas.get(&(p as u32)).cloned().unwrap_or_default();
            let leader = reported.iter().find(|(_, r)| r.role == "leader");
            let lag: BTreeMap<String, u64> =
                leader.map(|(_, r)| r.lag.iter().map(|(k, v)| (k.to_string(), *v)).collect()).unwrap_or_default();
            json!({
                "partition": p, "epoch": a.epoch, "replicas": a.replicas,
                "leader": leader.map(|(id, _)| *id),
                "term": leader.map(|(_, r)| r.term),
                "voters": leader.map(|(_, r)| r.voters.clone()),
                "commit_index": leader.map(|(_, r)| r.committed_index),
                "applied_index": leader.map(|(_, r)| r.applied_index),
                "lag": lag,
                "members": reported.iter().map(|(id, r)| json!({"node": id, "role": r.role, "term": r.term,
                    "last_log_index": r.last_log_index, "applied_index": r.applied_index})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "epoch": ring.epoch,
        "replication_factor": ring.replication_factor,
        "nodes": nodes,
        "partitions": partitions,
        "controller": controller,
    })
}

pub async fn ring(State(api): State<AppState>, headers: HeaderMap, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let v = view(&api).await;
    let wants_json = q.get("format").is_some_and(|f| f == "json")
        || headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("application/json"));
    if wants_json {
        return axum::Json(v).into_response();
    }
    Html(render_html(&v)).into_response()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

fn render_html(v: &Value) -> String {
    let mut h = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Balsa ring</title>\
         <style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>\
         </head><body><h1>Ring</h1>",
    );
    let _ = write!(h, "<p>epoch {} · replication factor {}</p>", cell(&v["epoch"]), cell(&v["replication_factor"]));
    table(&mut h, "Nodes", &v["nodes"], &["id", "zone", "state", "health", "grpc_addr", "http_addr", "replicas", "leaders"]);
    table(
        &mut h,
        "Partitions",
        &v["partitions"],
        &["partition", "epoch", "replicas", "leader", "term", "voters", "commit_index", "applied_index", "lag"],
    );
    h.push_str("</body></html>");
    h
}

/// An HTML table of `rows` (a JSON array of objects), one column per key.
fn table(h: &mut String, title: &str, rows: &Value, cols: &[&str]) {
    let _ = write!(h, "<h2>{title}</h2><table><tr>");
    for c in cols {
        let _ = write!(h, "<th>{c}</th>");
    }
    h.push_str("</tr>");
    for r in rows.as_array().into_iter().flatten() {
        h.push_str("<tr>");
        for c in cols {
            let _ = write!(h, "<td>{}</td>", cell(&r[*c]));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}
