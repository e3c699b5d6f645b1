//! Counted places per key (a tenant, or a set of tenants): a bounded
//! number in use at once, each given back when its holder drops it. The
//! frontend's outstanding queries and the live tails take them.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// The places in use, by key.
#[derive(Clone, Default)]
pub struct Places(Arc<Mutex<HashMap<String, usize>>>);

/// One place, held until dropped.
pub struct Place {
    places: Places,
    key: String,
}

impl Places {
    /// Takes a place under `key` unless `max` are in use; else the number
    /// in use.
    pub fn take(&self, key: &str, max: usize) -> Result<Place, usize> {
        let mut used = self.0.lock();
        let n = used.get(key).copied().unwrap_or(0);
        if n >= max {
            return Err(n);
        }
        used.insert(key.to_string(), n + 1);
        Ok(Place { places: self.clone(), key: key.to_string() })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut used = self.places.0.lock();
        if let Some(n) = used.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                used.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_per_key_and_given_back_on_drop() {
        let p = Places::default();
        let a = p.take("a", 1).unwrap();
        assert_eq!(p.take("a", 1).err(), Some(1));
        assert!(p.take("b", 1).is_ok(), "other keys are not affected");
        drop(a);
        assert!(p.take("a", 1).is_ok());
        assert!(p.0.lock().is_empty(), "nothing left in use");
    }
}
