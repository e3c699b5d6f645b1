//! The ingester's gauges: per-partition Raft state (term, leader, log and
//! applied indexes, follower lag), what each partition holds in memory and
//! waits to flush, and the shared log's and transport's counters. They are
//! registered on the process' registry and read from the ingester at each
//! scrape.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};

use prometheus::IntGaugeVec;

use super::Ingester;
use crate::metrics::Metrics;

struct Gauges {
    raft_term: IntGaugeVec,
    raft_leader: IntGaugeVec,
    raft_last_log_index: IntGaugeVec,
    raft_applied_index: IntGaugeVec,
    raft_snapshot_index: IntGaugeVec,
    raft_follower_lag: IntGaugeVec,
    raft_hand_overs: IntGaugeVec,
    raft_transport: IntGaugeVec,
    flush_queue: IntGaugeVec,
    memory_streams: IntGaugeVec,
    memory_entries: IntGaugeVec,
    memory_bytes: IntGaugeVec,
    log_fsyncs: IntGaugeVec,
    log_disk_failed: IntGaugeVec,
}

/// Registers the ingester's gauges on `metrics` and sets them from
/// `ingester` at every scrape (while the ingester lives).
pub fn report(metrics: &Metrics, ingester: &Arc<Ingester>) {
    let part = &["partition"];
    let g = Gauges {
        raft_term: metrics.gauge_vec("balsa_raft_term", "Current Raft term, per partition.", part),
        raft_leader: metrics.gauge_vec("balsa_raft_leader_id", "Node id of the partition's leader (0: none).", part),
        raft_last_log_index: metrics.gauge_vec("balsa_raft_last_log_index", "Last index in the partition's log.", part),
        raft_applied_index: metrics.gauge_vec("balsa_raft_applied_index", "Last index applied to the state machine.", part),
        raft_snapshot_index: metrics.gauge_vec("balsa_raft_snapshot_index", "Last index covered by a snapshot.", part),
        raft_follower_lag: metrics.gauge_vec(
            "balsa_raft_follower_lag_entries",
            "On a partition's leader: log entries each follower is behind.",
            &["partition", "follower"],
        ),
        raft_hand_overs: metrics.gauge_vec(
            "balsa_raft_leader_hand_overs",
            "Leaderships this node handed to their preferred replica (leader balance), by result.",
            &["result"],
        ),
        raft_transport: metrics.gauge_vec(
            "balsa_raft_transport_stats",
            "Raft transport: batch RPCs sent and failed, messages sent in them and received.",
            &["kind"],
        ),
        flush_queue: metrics.gauge_vec("balsa_ingester_flush_queue_length", "Closed chunks waiting for a flush.", part),
        memory_streams: metrics.gauge_vec("balsa_ingester_memory_streams", "Streams held in memory.", part),
        memory_entries: metrics.gauge_vec("balsa_ingester_memory_entries", "Entries held in memory.", part),
        memory_bytes: metrics.gauge_vec("balsa_ingester_memory_bytes", "Bytes of entries held in memory.", part),
        log_fsyncs: metrics.gauge_vec("balsa_raft_log_sync_stats", "Group commit: fsyncs, appends they covered, nanoseconds spent.", &["kind"]),
        log_disk_failed: metrics.gauge_vec(
            "balsa_raft_log_disk_failed",
            "1 once a write or fsync of the Raft log failed: the node acknowledges nothing until restarted.",
            &[],
        ),
    };
    // Weak: the hook must not keep a stopped ingester (and its RocksDB) alive.
    let ingester: Weak<Ingester> = Arc::downgrade(ingester);
    metrics.on_scrape(move || {
        if let Some(ing) = ingester.upgrade() {
            g.observe(&ing);
        }
    });
}

impl Gauges {
    fn observe(&self, ing: &Ingester) {
        for (p, m) in ing.raft_metrics() {
            let p = p.to_string();
            let l = [p.as_str()];
            self.raft_term.with_label_values(&l).set(m.current_term as i64);
            self.raft_leader.with_label_values(&l).set(m.current_leader.unwrap_or(0) as i64);
            self.raft_last_log_index.with_label_values(&l).set(m.last_log_index.unwrap_or(0) as i64);
            self.raft_applied_index.with_label_values(&l).set(m.last_applied.map_or(0, |x| x.index) as i64);
            self.raft_snapshot_index.with_label_values(&l).set(m.snapshot.map_or(0, |x| x.index) as i64);
            if let (Some(rep), Some(last)) = (&m.replication, m.last_log_index) {
                for (f, matched) in rep {
                    let lag = last.saturating_sub(matched.map_or(0, |x| x.index));
                    self.raft_follower_lag.with_label_values(&[p.as_str(), f.to_string().as_str()]).set(lag as i64);
                }
            }
        }
        for (p, (streams, entries, bytes)) in ing.memory_sizes() {
            let p = p.to_string();
            let l = [p.as_str()];
            self.memory_streams.with_label_values(&l).set(streams as i64);
            self.memory_entries.with_label_values(&l).set(entries as i64);
            self.memory_bytes.with_label_values(&l).set(bytes as i64);
        }
        for (p, n) in ing.flush_queue() {
            self.flush_queue.with_label_values(&[p.to_string().as_str()]).set(n as i64);
        }
        let s = ing.log_db().stats();
        self.log_fsyncs.with_label_values(&["fsyncs"]).set(s.syncs.load(Relaxed) as i64);
        self.log_fsyncs.with_label_values(&["appends"]).set(s.synced_appends.load(Relaxed) as i64);
        self.log_fsyncs.with_label_values(&["nanoseconds"]).set(s.sync_nanos.load(Relaxed) as i64);
        self.log_disk_failed.with_label_values(&[] as &[&str]).set(i64::from(ing.log_db().failure().is_some()));
        let (completed, failed) = ing.hand_over_counts();
        self.raft_hand_overs.with_label_values(&["completed"]).set(completed as i64);
        self.raft_hand_overs.with_label_values(&["failed"]).set(failed as i64);
        let t = ing.transport_stats();
        self.raft_transport.with_label_values(&["batches_sent"]).set(t.batches_sent.load(Relaxed) as i64);
        self.raft_transport.with_label_values(&["batches_failed"]).set(t.batches_failed.load(Relaxed) as i64);
        self.raft_transport.with_label_values(&["messages_sent"]).set(t.messages_sent.load(Relaxed) as i64);
        self.raft_transport.with_label_values(&["messages_received"]).set(t.messages_received.load(Relaxed) as i64);
    }
}
