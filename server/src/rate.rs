//! Token buckets for ingestion rate limits, keyed by tenant or stream.
//! Local to this process (Loki's `local` strategy; with one distributor it
//! equals `global`).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Buckets by key; idle ones are forgotten.
pub struct RateLimiter<K> {
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Default for RateLimiter<K> {
    fn default() -> Self {
        Self { buckets: Mutex::new(HashMap::new()) }
    }
}

/// Buckets untouched this long are dropped (they would be full anyway).
const IDLE: Duration = Duration::from_secs(300);

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// Takes `n` tokens from `key`'s bucket (refilled at `rate`/s up to
    /// `burst`) if it has them.
    pub fn allow(&self, key: &K, n: f64, rate: f64, burst: f64, now: Instant) -> bool {
        let mut buckets = self.buckets.lock();
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| now.duration_since(b.last) < IDLE);
        }
        let b = buckets.entry(key.clone()).or_insert(Bucket { tokens: burst, last: now });
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + dt * rate).min(burst);
        b.last = now;
        if n <= b.tokens {
            b.tokens -= n;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let l: RateLimiter<&str> = RateLimiter::default();
        let t0 = Instant::now();
        assert!(l.allow(&"a", 60.0, 10.0, 100.0, t0));
        assert!(!l.allow(&"a", 60.0, 10.0, 100.0, t0), "40 left");
        assert!(l.allow(&"b", 60.0, 10.0, 100.0, t0), "keys are separate");
        assert!(l.allow(&"a", 60.0, 10.0, 100.0, t0 + Duration::from_secs(2)), "refilled to 60");
        assert!(!l.allow(&"a", 101.0, 10.0, 100.0, t0 + Duration::from_secs(100)), "never above burst");
    }
}
