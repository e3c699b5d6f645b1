//! Balsa's server: the `balsa` binary's components and their wiring.
//!
//! What this crate owns — one module per component, as in Loki's `pkg/`:
//! - [`distributor`]: validates pushes and routes them to partitions;
//! - [`ingester`]: the partitions' Raft groups and their state machines,
//!   and the router that sends a partition's request to its leader;
//! - [`controller`]: the Raft group that owns the ring and places replicas;
//! - [`frontend`]: queues, splits, parallelises and caches queries;
//! - [`querier`]: reads partitions and object storage for queries;
//! - [`compactor`]: merges index segments, applies retention and deletes;
//! - [`deletes`]: delete requests, filtered at query time;
//! - [`api`]: Loki's HTTP API; [`grpc`]: Loki's gRPC push;
//! - [`overrides`]: per-tenant limits, reloaded at run time ([`reload`]);
//! - [`auth`]: bearer tokens granting tenants, without a gateway;
//! - [`config`], [`limits`], [`validation`], [`tenant`], [`ring`],
//!   [`metrics`];
//! - [`modules`]: the composition root: what each role of `--target` needs
//!   (a table), one file per role, the servers with those roles' routes;
//! - [`cli`]: the `logcli`-like client (`balsa query`, `labels`, …) and
//!   the loki-canary-like checker (`balsa canary`).
//!
//! Public are only what the binary uses (`cli`, `config`, `modules`) and
//! `ingester` (the snapshot benchmark drives a partition's state); every
//! other module is `pub(crate)`, so code nothing calls shows up as dead.
//!
//! What it does not own: the query language, label sets, timestamps and
//! units ([`balsa_logql`]), byte formats ([`balsa_storage`]), the Raft log
//! and transport ([`balsa_raft`]), wire types ([`balsa_proto`]).
//!
//! # Layers
//!
//! The modules form layers, lowest first. A module imports (`crate::…`)
//! only from layers below its own — never from its own layer or above —
//! so the layers read bottom-up and have no cycles. The unit test
//! `layers::no_upward_imports` reads this list and every source file, and
//! fails on an import that runs upward or a module missing from the list.
//!
//! 1. foundations: `units`, `error_code`
//! 2. kernel: `tenant`, `rate`, `reload`, `places`, `patterns`, `metrics`
//! 3. defaults: `limits`
//! 4. policy: `overrides`, `validation`, `auth`, `deletes`
//! 5. placement: `ring`
//! 6. ring owner: `controller`
//! 7. storage of recent lines: `ingester`
//! 8. write and read paths: `distributor`, `querier`, `compactor`
//! 9. query scheduling: `frontend`
//! 10. protocols: `api`, `grpc`
//! 11. clients: `cli`
//! 12. settings: `config`
//! 13. composition root: `modules`

// The crate is read with `cargo doc --document-private-items`: its map
// above links to the crate-private modules.
#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod api;
pub(crate) mod auth;
pub mod cli;
pub(crate) mod compactor;
pub mod config;
pub(crate) mod controller;
pub(crate) mod deletes;
pub(crate) mod distributor;
pub(crate) mod error_code;
pub(crate) mod frontend;
pub(crate) mod grpc;
pub mod ingester;
pub(crate) mod limits;
pub(crate) mod metrics;
pub mod modules;
pub(crate) mod overrides;
pub(crate) mod patterns;
pub(crate) mod places;
pub(crate) mod querier;
pub(crate) mod rate;
pub(crate) mod reload;
pub(crate) mod ring;
pub(crate) mod tenant;
pub(crate) mod units;
pub(crate) mod validation;

/// The check of the layer list above against the source.
#[cfg(test)]
mod layers {
    use std::collections::BTreeMap;

    /// Module → layer, from the list in this file's documentation.
    fn layers() -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for line in include_str!("lib.rs").lines() {
            let Some((n, rest)) = line.strip_prefix("//! ").and_then(|l| l.split_once(". ")) else { continue };
            let Ok(layer) = n.parse::<usize>() else { continue };
            for module in rest.split('`').skip(1).step_by(2) {
                out.insert(module.to_string(), layer);
            }
        }
        out
    }

    /// The modules of the crate a source text imports (`crate::x`,
    /// `crate::{x, y}`), outside comments.
    fn imports(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    Some(group) => group.split('}').next().unwrap_or("").split(',').map(|n| n.trim().split("::").next().unwrap_or("")).collect(),
                    None => vec![rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or("")],
                };
                out.extend(names.into_iter().filter(|n| !n.is_empty()).map(str::to_string));
            }
        }
        out
    }

    /// Every upward or same-layer import of `module` (whose files' texts
    /// are given), as "module → import".
    fn violations(layers: &BTreeMap<String, usize>, module: &str, texts: &[String]) -> Vec<String> {
        let own = layers[module];
        let mut out: Vec<String> = texts
            .iter()
            .flat_map(|t| imports(t))
            .filter(|i| i != module && layers.get(i).is_some_and(|l| *l >= own))
            .map(|i| format!("{module} (layer {own}) imports {i} (layer {})", layers[&i]))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The source texts of each top-level module (a file, or a folder of them).
    fn modules() -> BTreeMap<String, Vec<String>> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(&src).expect("server/src is readable") {
            let path = e.expect("a directory entry").path();
            let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if name == "lib" || name == "main" {
                continue;
            }
            let mut texts = Vec::new();
            let mut stack = vec![path];
            while let Some(p) = stack.pop() {
                if p.is_dir() {
                    stack.extend(std::fs::read_dir(&p).expect("a module folder is readable").map(|e| e.expect("an entry").path()));
                } else if p.extension().is_some_and(|x| x == "rs") {
                    texts.push(std::fs::read_to_string(&p).expect("a source file is readable"));
                }
            }
            out.insert(name, texts);
        }
        out
    }

    #[test]
    fn no_upward_imports() {
        let layers = layers();
        assert!(layers.len() > 20, "the layer list in lib.rs was not read: {layers:?}");
        let modules = modules();
        let unlisted: Vec<&String> = modules.keys().filter(|m| !layers.contains_key(*m)).collect();
        assert!(unlisted.is_empty(), "modules missing from the layer list in lib.rs: {unlisted:?}");
        let bad: Vec<String> = modules.iter().flat_map(|(m, texts)| violations(&layers, m, texts)).collect();
        assert!(bad.is_empty(), "imports that run upward (see the layer list in lib.rs):\n{}", bad.join("\n"));
    }

    #[test]
    fn an_upward_import_is_found() {
        let layers = layers();
        let text = "// crate::api in a comment is not an import\nuse crate::{limits::Limits, distributor::Distributor};\nfn f() { crate::tenant::x(); }".to_string();
        assert_eq!(violations(&layers, "validation", &[text]), vec!["validation (layer 4) imports distributor (layer 8)".to_string()]);
        assert_eq!(imports("let x = crate::ring::Ring::new();"), vec!["ring".to_string()]);
    }
}
