//! The verified-token cache: bounded, entries expire at the token's `exp`.
//!
//! Only tokens that passed every check are inserted, so an attacker cannot fill it with
//! chosen keys. A hit still re-checks the token's times against `now`; the engine clears the
//! cache whenever an issuer's keys change.
//!
//! Entries are found by a seeded 64-bit fingerprint of the token and confirmed by comparing the
//! whole token, eight bytes at a time. Hashing and comparing an ~800-byte token through the
//! standard `HashMap<str, _>` (SipHash, then a byte-at-a-time `memcmp` in Wasm) was ~6% of a
//! cached decision in the engine component. Two tokens with one fingerprint share one slot: the
//! later insert replaces the earlier, and a lookup that finds the other token misses. Either
//! way only a cache entry is lost; a token is answered from the cache only when it is equal
//! byte for byte to the one that was verified.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) struct TokenCache<V> {
    inner: Mutex<Inner<V>>,
    capacity: usize,
    /// Random per cache, so fingerprints cannot be computed in advance.
    seed: u64,
}

struct Inner<V> {
    map: HashMap<u64, Entry<V>>,
    /// Fingerprints in insertion order, for FIFO eviction when full.
    order: VecDeque<u64>,
}

struct Entry<V> {
    token: Box<str>,
    value: Arc<V>,
    expires_at: i64,
}

/// Multiplier of the fingerprint (2^64 / golden ratio, odd).
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// A seeded fingerprint of `bytes`, eight bytes at a time. Not collision resistant against an
/// adversary, and it need not be: a fingerprint only finds a slot, the whole token decides.
fn fingerprint(seed: u64, bytes: &[u8]) -> u64 {
    let (words, rest) = bytes.as_chunks::<8>();
    let mut tail = [0u8; 8];
    for (d, s) in tail.iter_mut().zip(rest) {
        *d = *s;
    }
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let mut h = seed ^ len.wrapping_mul(K);
    for word in words.iter().chain(std::iter::once(&tail)) {
        h = (h ^ u64::from_le_bytes(*word))
            .wrapping_mul(K)
            .rotate_left(29);
    }
    // murmur3's finaliser: every input bit reaches every output bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// `a == b`, eight bytes at a time and without stopping at the first difference (so the time
/// taken does not tell how much of a cached token a guess got right).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let ((aw, ar), (bw, br)) = (a.as_chunks::<8>(), b.as_chunks::<8>());
    let words = aw.iter().zip(bw).fold(0, |acc, (x, y)| {
        acc | (u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y))
    });
    let rest = ar.iter().zip(br).fold(0, |acc, (x, y)| acc | (x ^ y));
    words == 0 && rest == 0
}

impl<V> TokenCache<V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity,
            seed: RandomState::new().hash_one(K),
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
        let key = fingerprint(self.seed, token.as_bytes());
        let mut inner = self.lock();
        match inner.map.get(&key) {
            Some(entry) if !same_bytes(entry.token.as_bytes(), token.as_bytes()) => None,
            Some(entry) if now < entry.expires_at => Some(Arc::clone(&entry.value)),
            Some(_) => {
                inner.map.remove(&key);
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
            inner.map.retain(|_, entry| now < entry.expires_at);
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
        let key = fingerprint(self.seed, token.as_bytes());
        let entry = Entry {
            token: token.into(),
            value,
            expires_at,
        };
        if inner.map.insert(key, entry).is_none() {
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
    fn same_bytes_is_equality() {
        let base: Vec<u8> = (0..=40u8).collect();
        for len in 0..base.len() {
            let a = &base[..len];
            assert!(same_bytes(a, a));
            assert!(!same_bytes(a, &base[..len + 1]), "lengths differ");
            for i in 0..len {
                // One bit, in a whole word or in the tail.
                let mut b = a.to_vec();
                b[i] ^= 0x80;
                assert!(!same_bytes(a, &b), "len {len}, byte {i}");
            }
        }
    }

    #[test]
    fn fingerprints_depend_on_every_byte_length_and_seed() {
        let token = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl".to_vec();
        let f = fingerprint(7, &token);
        assert_eq!(f, fingerprint(7, &token), "deterministic");
        assert_ne!(f, fingerprint(8, &token), "seeded");
        for i in 0..token.len() {
            let mut t = token.clone();
            t[i] ^= 1;
            assert_ne!(f, fingerprint(7, &t), "byte {i}");
        }
        // A zero tail byte is not the same as no byte.
        assert_ne!(fingerprint(7, b"abc"), fingerprint(7, b"abc\0"));
    }

    #[test]
    fn a_slot_holding_another_token_is_a_miss() {
        // Two tokens with one fingerprint (forced here; by chance 1 in 2^64).
        let cache = TokenCache::new(4);
        assert!(cache.insert_if("verified", Arc::new(1), 100, 0, || true));
        {
            let mut inner = cache.lock();
            let entry = inner
                .map
                .remove(&fingerprint(cache.seed, b"verified"))
                .unwrap();
            inner.map.insert(fingerprint(cache.seed, b"other"), entry);
        }
        assert!(
            cache.get("other", 0).is_none(),
            "the whole token must match"
        );
        assert_eq!(cache.len(), 1, "a miss on another token keeps the entry");
        // An insert into the slot replaces the other token.
        assert!(cache.insert_if("other", Arc::new(2), 100, 0, || true));
        assert_eq!(cache.get("other", 0).as_deref(), Some(&2));
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
