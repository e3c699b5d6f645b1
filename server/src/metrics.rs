//! Prometheus metrics an operator graphs: request latencies and what the
//! components count. It keeps the process' one registry; a component
//! registers its own counters on it when it is built (the distributor, the
//! ingester client, the flusher, the compactor, the chunk reader), and one
//! with state to report at scrape time (the ingester's Raft groups, the
//! querier's decode queue, the runtime overrides) its gauges, set in an
//! [`Metrics::on_scrape`] hook. This module imports no component.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    pub request_duration: HistogramVec,
    /// Shared by every reader of the bucket (querier, compactor).
    pub corrupt_objects: IntCounter,
    /// What components set when Prometheus scrapes (see [`Metrics::on_scrape`]).
    scrapers: std::sync::Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    // Names are fixed and unique below; a duplicate is a programming error
    // caught by the unit test `registers_and_renders`.
    r.register(Box::new(m.clone())).expect("metric registered twice");
    m
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        Self {
            request_duration: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("loki_request_duration_seconds", "Time to answer HTTP and gRPC requests.")
                        .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                    &["route", "method", "status_code"],
                )
                .expect("valid metric"),
            ),
            corrupt_objects: reg(
                &r,
                IntCounter::new("balsa_corrupt_objects_total", "Chunks or index segments that failed their checksum.").expect("valid metric"),
            ),
            scrapers: Default::default(),
            registry: r,
        }
    }

    /// Registers a component's gauge, one value per set of `labels`.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        reg(&self.registry, IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    /// Registers a component's counter.
    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        reg(&self.registry, IntCounter::new(name, help).expect("valid metric"))
    }

    /// Registers a component's counter, one value per set of `labels`.
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        reg(&self.registry, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    /// Registers a component's gauge without labels.
    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        reg(&self.registry, IntGauge::new(name, help).expect("valid metric"))
    }

    /// Runs `f` before each scrape: how a component sets the gauges it
    /// registered from its current state (Raft terms, memory, queues).
    pub fn on_scrape(&self, f: impl Fn() + Send + Sync + 'static) {
        self.scrapers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Box::new(f));
    }

    /// Renders every metric in Prometheus' text format, after the
    /// components have set their gauges.
    pub fn render(&self) -> String {
        for scrape in self.scrapers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            scrape();
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_renders() {
        let m = Metrics::new();
        let discarded = m.counter_vec("loki_discarded_samples_total", "Entries refused.", &["reason", "tenant"]);
        discarded.with_label_values(&["line_too_long", "t"]).inc();
        let text = m.render();
        assert!(text.contains(r#"loki_discarded_samples_total{reason="line_too_long",tenant="t"} 1"#), "{text}");
    }
}
