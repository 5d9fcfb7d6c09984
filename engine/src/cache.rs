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
    map: HashMap<Box<str>, (Arc<V>, i64)>,
    /// Insertion order, for FIFO eviction when full.
    order: VecDeque<Box<str>>,
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
    pub fn insert(&self, token: &str, value: Arc<V>, expires_at: i64, now: i64) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.map.len() >= self.capacity {
            inner.map.retain(|_, (_, exp)| now < *exp);
            let Inner { map, order } = &mut *inner;
            order.retain(|k| map.contains_key(k));
            while map.len() >= self.capacity {
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
        let key: Box<str> = token.into();
        if inner.map.insert(key.clone(), (value, expires_at)).is_none() {
            inner.order.push_back(key);
        }
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
    fn expires_and_evicts() {
        let cache = TokenCache::new(2);
        cache.insert("a", Arc::new(1), 100, 0);
        cache.insert("b", Arc::new(2), 100, 0);
        assert_eq!(cache.get("a", 50).as_deref(), Some(&1));
        assert!(cache.get("a", 100).is_none(), "entry expires at exp");
        cache.insert("c", Arc::new(3), 100, 0);
        cache.insert("d", Arc::new(4), 100, 0);
        assert_eq!(cache.len(), 2, "bounded");
        assert!(cache.get("b", 0).is_none(), "oldest evicted first");
        assert_eq!(cache.get("d", 0).as_deref(), Some(&4));
        cache.clear();
        assert_eq!(cache.len(), 0);
    }
}
