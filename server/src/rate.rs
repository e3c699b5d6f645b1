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
    buckets: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    map: HashMap<K, Bucket>,
    /// Idle buckets are dropped when the map grows past this; then it is
    /// set to twice what remains, so the sweeps cost O(1) per call.
    sweep_at: usize,
}

/// Buckets kept before idle ones are swept.
const SWEEP_FROM: usize = 10_000;

impl<K: Hash + Eq + Clone> Default for RateLimiter<K> {
    fn default() -> Self {
        Self { buckets: Mutex::new(Buckets { map: HashMap::new(), sweep_at: SWEEP_FROM }) }
    }
}

/// Buckets untouched this long are dropped (they would be full anyway).
const IDLE: Duration = Duration::from_secs(300);

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// Takes `n` tokens from `key`'s bucket (refilled at `rate`/s up to
    /// `burst`) if it has them.
    pub fn allow(&self, key: &K, n: f64, rate: f64, burst: f64, now: Instant) -> bool {
        let mut buckets = self.buckets.lock();
        if buckets.map.len() > buckets.sweep_at {
            buckets.map.retain(|_, b| now.saturating_duration_since(b.last) < IDLE);
            buckets.sweep_at = (2 * buckets.map.len()).max(SWEEP_FROM);
        }
        let b = buckets.map.entry(key.clone()).or_insert(Bucket { tokens: burst, last: now });
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

    /// Many live streams: idle buckets are swept only when the map has
    /// doubled, and buckets in use survive a sweep.
    #[test]
    fn sweeps_are_amortized_and_keep_live_buckets() {
        let l: RateLimiter<u32> = RateLimiter::default();
        let t0 = Instant::now();
        for k in 0..50_000 {
            assert!(l.allow(&k, 1.0, 1.0, 1.0, t0));
        }
        let later = t0 + IDLE + Duration::from_secs(1);
        assert!(l.allow(&0, 1.0, 1.0, 1.0, later));
        let mut k = 50_000;
        while l.buckets.lock().map.len() >= 50_000 {
            assert!(k < 200_000, "a sweep comes once the map has doubled");
            l.allow(&k, 1.0, 1.0, 1.0, later);
            k += 1;
        }
        assert!(l.buckets.lock().map.len() < 40_000, "idle buckets were swept");
        assert!(!l.allow(&0, 1.0, 1.0, 1.0, later), "a live bucket survives the sweep");
    }
}
