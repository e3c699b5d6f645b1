//! The hash ring: which partition owns a stream.
//!
//! A stream's token is the 32-bit xxHash of its tenant and its labels in
//! normal form; the token space is cut into `partitions` equal, contiguous
//! ranges, partition `i` owning `[i·2³²/n, (i+1)·2³²/n)`. Pure functions only.

use crate::labels::LabelSet;

/// The partitioning of the token space.
#[derive(Clone, Copy, Debug)]
pub struct Ring {
    partitions: u32,
}

impl Ring {
    pub fn new(partitions: u32) -> Self {
        Self { partitions: partitions.max(1) }
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The stream's token: a hash of tenant and labels.
    pub fn token(tenant: &str, labels: &LabelSet) -> u32 {
        let mut key = Vec::with_capacity(tenant.len() + 64);
        key.extend_from_slice(tenant.as_bytes());
        key.push(0);
        for (n, v) in labels.iter() {
            key.extend_from_slice(n.as_bytes());
            key.push(0xff);
            key.extend_from_slice(v.as_bytes());
            key.push(0xff);
        }
        xxhash_rust::xxh32::xxh32(&key, 0)
    }

    /// The partition whose range holds `token`.
    pub fn partition_of(&self, token: u32) -> u32 {
        ((u64::from(token) * u64::from(self.partitions)) >> 32) as u32
    }

    /// The partition owning a stream.
    pub fn partition_for(&self, tenant: &str, labels: &LabelSet) -> u32 {
        self.partition_of(Self::token(tenant, labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_contiguous_and_cover_the_token_space() {
        let r = Ring::new(8);
        assert_eq!(r.partition_of(0), 0);
        assert_eq!(r.partition_of(u32::MAX), 7);
        assert_eq!(r.partition_of(1 << 29), 1);
        assert_eq!(r.partition_of((1 << 29) - 1), 0);
    }

    #[test]
    fn tenants_and_labels_spread_over_partitions() {
        let r = Ring::new(8);
        let mut seen = [0u32; 8];
        for i in 0..800 {
            let l = LabelSet::parse(&format!("{{job=\"j{i}\"}}")).unwrap();
            seen[r.partition_for("t", &l) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        let l = LabelSet::parse(r#"{job="x"}"#).unwrap();
        assert_ne!(Ring::token("a", &l), Ring::token("b", &l));
    }
}
