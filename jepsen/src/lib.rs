//! Balsa's failure-injection suite, in Jepsen's spirit: a fresh cluster of
//! real `balsa` processes, clients pushing and reading through the front
//! while a nemesis kills, pauses and partitions nodes, a recorded history
//! of every operation, and checkers that decide from that history alone
//! whether an acknowledged line was lost, duplicated, reordered, served
//! stale or leaked to another tenant.
//!
//! - [`history`]: operations and their outcomes, `history.jsonl`;
//! - [`workload`]: the clients;
//! - [`nemesis`]: faults and their seeded schedule;
//! - [`cluster`]: the processes, and their network namespaces;
//! - [`proxy`]: the TCP proxy that cuts and delays links without root;
//! - [`checker`]: set, order and tenant checkers (pure);
//! - [`report`]: `results.json` and `report.html`;
//! - [`run`]: one test from start to verdict.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod report;
pub mod run;
pub mod workload;
