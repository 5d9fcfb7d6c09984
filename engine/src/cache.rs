//! The verified-token cache: bounded, entries expire at the token's `exp`.
//!
//! Only tokens that passed every check are inserted, so an attacker cannot fill it with
//! chosen keys. A hit still re-checks the token's times against `now`; the engine clears the
//! cache whenever an issuer's keys change.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) struct TokenCache<V> {
    inner: Mutex<Inner<V>>,
    capacity: usize,
}

struct Inner<V> {
    map: HashMap<Arc<str>, (Arc<V>, i64)>,
    /// Insertion order, for FIFO eviction when full.
    order: VecDeque<Arc<str>>,
}

impl<V> TokenCache<V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<V>> {
        // A poisoned lock only means another thread panicked mid-update; the map is still
        // structurally sound, and the worst case is a stale entry that `get` re-checks.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached value for `token`, if present and not past `expires_at` at `now`.
    pub fn get(&self, token: &str, now: i64) -> Option<Arc<V>> {
        let mut inner = self.lock();
        match inner.map.get(token) {
            Some((value, expires_at)) if now < *expires_at => Some(Arc::clone(value)),
            Some(_) => {
                inner.map.remove(token);
                None
            }
            None => None,
        }
    }

    /// Insert a verified token, usable until `expires_at`.
    /// Insert unless `still_valid`, checked under the cache's lock (so never between a
    /// concurrent [`TokenCache::clear`] and its caller's state change), says no. Returns
    /// `still_valid`'s answer.
    pub fn insert_if(
        &self,
        token: &str,
        value: Arc<V>,
        expires_at: i64,
        now: i64,
        still_valid: impl FnOnce() -> bool,
    ) -> bool {
        let mut inner = self.lock();
        if !still_valid() {
            return false;
        }
        if self.capacity == 0 {
            return true;
        }
        if inner.map.len() >= self.capacity {
            // Full: drop the expired entries, then the oldest until an eighth of the capacity
            // is free, so that the O(capacity) sweep runs once per capacity/8 inserts, not on
            // every insert of a busy cache.
            inner.map.retain(|_, (_, exp)| now < *exp);
            let Inner { map, order } = &mut *inner;
            order.retain(|k| map.contains_key(k));
            let target = self.capacity - self.capacity.div_ceil(8);
            while map.len() > target {
                let Some(oldest) = order.pop_front() else {
                    break;
                };
                map.remove(&oldest);
            }
        }
        if inner.order.len() > self.capacity.saturating_mul(2) {
            let Inner { map, order } = &mut *inner;
            order.retain(|k| map.contains_key(k));
        }
        // One copy of the token, shared by the map and the eviction order.
        let key: Arc<str> = token.into();
        if inner
            .map
            .insert(Arc::clone(&key), (value, expires_at))
            .is_none()
        {
            inner.order.push_back(key);
        }
        true
    }

    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.map.clear();
        inner.order.clear();
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_if_is_checked_under_the_lock() {
        let cache = TokenCache::new(4);
        assert!(!cache.insert_if("a", Arc::new(1), 100, 0, || false));
        assert_eq!(cache.len(), 0, "a refused insert leaves nothing behind");
        assert!(cache.insert_if("a", Arc::new(1), 100, 0, || true));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn expires_and_evicts() {
        let cache = TokenCache::new(2);
        cache.insert_if("a", Arc::new(1), 100, 0, || true);
        cache.insert_if("b", Arc::new(2), 100, 0, || true);
        assert_eq!(cache.get("a", 50).as_deref(), Some(&1));
        assert!(cache.get("a", 100).is_none(), "entry expires at exp");
        cache.insert_if("c", Arc::new(3), 100, 0, || true);
        cache.insert_if("d", Arc::new(4), 100, 0, || true);
        assert_eq!(cache.len(), 2, "bounded");
        assert!(cache.get("b", 0).is_none(), "oldest evicted first");
        assert_eq!(cache.get("d", 0).as_deref(), Some(&4));
        cache.clear();
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_full_cache_evicts_in_batches_oldest_first() {
        let cache = TokenCache::new(16);
        for i in 0..16 {
            cache.insert_if(&format!("t{i}"), Arc::new(i), 100, 0, || true);
        }
        assert_eq!(cache.len(), 16);
        // The 17th insert frees an eighth of the capacity (the two oldest), then inserts.
        cache.insert_if("t16", Arc::new(16), 100, 0, || true);
        assert_eq!(cache.len(), 15);
        assert!(cache.get("t0", 0).is_none() && cache.get("t1", 0).is_none());
        assert_eq!(cache.get("t2", 0).as_deref(), Some(&2));
        assert_eq!(cache.get("t16", 0).as_deref(), Some(&16));
        // Expired entries go before any unexpired one.
        let cache = TokenCache::new(4);
        cache.insert_if("old", Arc::new(0), 100, 0, || true);
        cache.insert_if("short", Arc::new(1), 10, 0, || true);
        cache.insert_if("a", Arc::new(2), 100, 0, || true);
        cache.insert_if("b", Arc::new(3), 100, 0, || true);
        cache.insert_if("c", Arc::new(4), 100, 20, || true);
        assert!(cache.get("short", 20).is_none());
        assert_eq!(
            cache.get("old", 20).as_deref(),
            Some(&0),
            "only the expired entry made room"
        );
        assert_eq!(cache.len(), 4);
        // Capacity 1 still holds the newest entry.
        let cache = TokenCache::new(1);
        cache.insert_if("x", Arc::new(0), 100, 0, || true);
        cache.insert_if("y", Arc::new(1), 100, 0, || true);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get("y", 0).as_deref(), Some(&1));
    }
}
