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
//! - [`modules`]: the composition root that wires a role (`--target`);
//! - [`cli`]: the `logcli`-like client (`balsa query`, `labels`, …) and
//!   the loki-canary-like checker (`balsa canary`).
//!
//! What it does not own: the query language, label sets, timestamps and
//! units ([`balsa_logql`]), byte formats ([`balsa_storage`]), the Raft log
//! and transport ([`balsa_raft`]), wire types ([`balsa_proto`]).

pub mod api;
pub mod auth;
pub mod cli;
pub mod compactor;
pub mod config;
pub mod controller;
pub mod deletes;
pub mod distributor;
pub mod frontend;
pub mod grpc;
pub mod ingester;
pub mod limits;
pub mod metrics;
pub mod modules;
pub mod overrides;
pub mod patterns;
pub mod places;
pub mod querier;
pub mod rate;
pub mod reload;
pub mod ring;
pub mod tenant;
pub mod units;
pub mod validation;
