//! Workers that share one fetch, through a store they all see (see [`SharedStore`]).

use super::{BundleEvent, BundleFetch, BundlePoll, FetchAnswer, KeyEvent, KeyFetch, KeySchedule};
use super::{RefreshPolicy, ms};
use crate::bundle::KeyUrl;
use serde_json::Value;
use std::collections::BTreeMap;

/// The store every worker sees, for workers that share one fetch. A host whose workers each
/// hold their own engine (Envoy: one VM per worker thread) fetches keys and bundles once for all
/// of them, through a store of byte entries, each with a version for compare-and-swap (Envoy's
/// shared data). Each worker keeps its own [`KeySchedule`] in a [`SharedKeys`] and its own
/// [`BundlePoll`] in a [`SharedBundle`] (both in an [`Upkeep`](super::Upkeep)), which keep
/// these entries:
///
/// - `portcullis/keys/<issuer>`: the last good JWK set, `<loaded at> <fresh until>\n<jwks>`
///   (unix ms). Every worker loads it into its engine when its version changes, and its
///   schedule learns that nothing is due before `fresh until`.
/// - `portcullis/bundle/<url>`: the last accepted bundle, `<etag>\n<compiled bundle>`, which
///   every worker builds into a new engine when its version changes.
/// - `portcullis/lease/<issuer>` and `portcullis/bundle-lease/<url>`: `<unix ms>` until which
///   one worker owns the fetch. A worker takes a lease with a compare-and-swap before fetching,
///   so one fetch is in flight for all workers; the others postpone theirs to the lease's end.
///   After a failure the lease is extended by the retry delay, which backs every worker off.
pub trait SharedStore {
    /// The entry at `key` (`None` when there is none) and its version; `None` when the store
    /// cannot be read.
    fn get(&self, key: &str) -> Option<(Option<Vec<u8>>, Option<u32>)>;
    /// Write `value` at `key` if the entry's version is still `version` (`None`: whatever it
    /// is); whether it was written.
    fn set(&self, key: &str, value: &[u8], version: Option<u32>) -> bool;
}

/// How long a fetch lease is held: twice the timeout and a second, so that a worker that never
/// hears back does not hold the others off for long.
pub(super) fn lease_ms(timeout_ms: u64) -> i64 {
    ms(timeout_ms.saturating_mul(2).saturating_add(1000))
}

/// Take the lease at `key` until `until`; when another worker holds it (or the store fails),
/// until when to wait.
pub(super) fn take_lease(
    store: &dyn SharedStore,
    key: &str,
    now: i64,
    until: i64,
) -> Result<(), i64> {
    let Some((current, version)) = store.get(key) else {
        return Err(now.saturating_add(1000));
    };
    let held_until = decode_lease(current.as_deref());
    if held_until > now {
        return Err(held_until);
    }
    if store.set(key, until.to_string().as_bytes(), version) {
        Ok(())
    } else {
        Err(now.saturating_add(1000))
    }
}

pub(super) fn set_lease(store: &dyn SharedStore, key: &str, until: i64) {
    store.set(key, until.to_string().as_bytes(), None);
}

/// The time until which a lease is held (0 when absent or unreadable).
fn decode_lease(entry: Option<&[u8]>) -> i64 {
    entry
        .and_then(|e| std::str::from_utf8(e).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The version of the entry at `key`, read back after writing it.
pub(super) fn version(store: &dyn SharedStore, key: &str) -> Option<u32> {
    store.get(key).and_then(|(_, version)| version)
}

/// `<header line>\n<body>`.
pub(super) fn split(entry: &[u8]) -> Option<(&[u8], &[u8])> {
    let newline = entry.iter().position(|&b| b == b'\n')?;
    let (header, rest) = entry.split_at(newline);
    Some((header, rest.get(1..)?))
}

/// A keys entry: when they were loaded and until when they are fresh (unix ms), the JWK set.
#[derive(Debug, PartialEq)]
struct KeysEntry {
    loaded_at: i64,
    fresh_until: i64,
    jwks: Value,
}

fn encode_keys(loaded_at: i64, fresh_until: i64, jwks: &[u8]) -> Vec<u8> {
    let mut out = format!("{loaded_at} {fresh_until}\n").into_bytes();
    out.extend_from_slice(jwks);
    out
}

fn decode_keys(entry: &[u8]) -> Option<KeysEntry> {
    let (times, jwks) = split(entry)?;
    let (loaded_at, fresh_until) = std::str::from_utf8(times).ok()?.split_once(' ')?;
    Some(KeysEntry {
        loaded_at: loaded_at.parse().ok()?,
        fresh_until: fresh_until.parse().ok()?,
        jwks: serde_json::from_slice(jwks).ok()?,
    })
}

fn encode_bundle(etag: Option<&str>, bundle: &[u8]) -> Vec<u8> {
    let etag = etag.filter(|e| !e.contains('\n')).unwrap_or("");
    let mut out = Vec::with_capacity(etag.len() + 1 + bundle.len());
    out.extend_from_slice(etag.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(bundle);
    out
}

fn decode_bundle(entry: &[u8]) -> Option<(Option<&str>, &[u8])> {
    let (etag, bundle) = split(entry)?;
    let etag = std::str::from_utf8(etag).ok()?;
    Some(((!etag.is_empty()).then_some(etag), bundle))
}

/// One worker's [`KeySchedule`], its fetches shared with every other worker through a
/// [`SharedStore`].
#[derive(Clone, Debug)]
pub struct SharedKeys {
    schedule: KeySchedule,
    lease: i64,
    /// The version of each issuer's entry this worker's engine holds.
    loaded: BTreeMap<String, u32>,
}

impl Default for SharedKeys {
    /// No issuers yet, the default policy, GETs without a timeout of their own.
    fn default() -> Self {
        Self::new(RefreshPolicy::default(), 0)
    }
}

impl SharedKeys {
    /// Keys kept as `policy` says, each GET taking at most `timeout_ms`.
    pub fn new(policy: RefreshPolicy, timeout_ms: u64) -> Self {
        Self {
            schedule: KeySchedule::new(policy),
            lease: lease_ms(timeout_ms),
            loaded: BTreeMap::new(),
        }
    }

    /// The schedule.
    pub fn schedule(&self) -> &KeySchedule {
        &self.schedule
    }

    /// Follow a new engine's remote issuers ([`KeySchedule::follow`]); the next
    /// [`SharedKeys::sync`] loads every issuer's shared keys into it.
    pub fn follow(&mut self, issuers: Vec<(String, KeyUrl)>) {
        self.schedule.follow(issuers);
        self.loaded.clear();
    }

    /// Hand the keys stored since this worker last looked to `load` (the host's
    /// `Engine::set_issuer_keys`): each issuer whose entry changed, and what `load` said.
    pub fn sync(
        &mut self,
        store: &dyn SharedStore,
        mut load: impl FnMut(&str, &Value) -> Result<usize, String>,
    ) -> Vec<(String, Result<usize, String>)> {
        let mut out = Vec::new();
        for status in self.schedule.status() {
            let issuer = status.issuer;
            let Some((Some(entry), Some(version))) = store.get(&keys_key(&issuer)) else {
                continue;
            };
            if self.loaded.insert(issuer.clone(), version) == Some(version) {
                continue;
            }
            let Some(keys) = decode_keys(&entry) else {
                continue;
            };
            let loaded = load(&issuer, &keys.jwks);
            if loaded.is_ok() {
                self.schedule
                    .loaded_elsewhere(&issuer, keys.loaded_at, keys.fresh_until);
            }
            out.push((issuer, loaded));
        }
        out
    }

    /// A decision lacked `issuer`'s keys ([`KeySchedule::wanted`]).
    pub fn wanted(&mut self, issuer: &str, now: i64) -> bool {
        self.schedule.wanted(issuer, now)
    }

    /// The GETs due at `now` whose lease this worker took; the others are postponed until
    /// the worker holding their lease is done.
    pub fn due(&mut self, store: &dyn SharedStore, now: i64) -> Vec<KeyFetch> {
        let mut out = Vec::new();
        for fetch in self.schedule.due(now) {
            let until = now.saturating_add(self.lease);
            match take_lease(store, &keys_lease(&fetch.issuer), now, until) {
                Ok(()) => out.push(fetch),
                Err(held_until) => self.schedule.postpone(&fetch, held_until),
            }
        }
        out
    }

    /// `fetch` could not be performed ([`KeySchedule::failed`]): every worker waits for the
    /// retry delay.
    pub fn failed(&mut self, store: &dyn SharedStore, fetch: &KeyFetch, reason: &str, now: i64) {
        self.schedule.failed(fetch, reason, now);
        self.hold_off(store, &fetch.issuer, now);
    }

    fn hold_off(&self, store: &dyn SharedStore, issuer: &str, now: i64) {
        let retry = ms(self.schedule.policy().retry);
        set_lease(store, &keys_lease(issuer), now.saturating_add(retry));
    }

    /// The answer to `fetch` ([`KeySchedule::answer`]): keys `load` accepted are stored for
    /// the other workers and the lease released; after a failure every worker waits for the
    /// retry delay.
    pub fn answer(
        &mut self,
        store: &dyn SharedStore,
        fetch: &KeyFetch,
        answer: FetchAnswer<'_>,
        now: i64,
        load: impl FnOnce(&str, &Value) -> Result<usize, String>,
    ) -> Option<KeyEvent> {
        let event = self.schedule.answer(fetch, answer, now, load);
        match &event {
            Some(KeyEvent::Keys {
                issuer,
                fresh_until,
                ..
            }) => {
                let key = keys_key(issuer);
                if store.set(&key, &encode_keys(now, *fresh_until, answer.body), None)
                    && let Some(version) = version(store, &key)
                {
                    self.loaded.insert(issuer.clone(), version);
                }
                set_lease(store, &keys_lease(issuer), 0);
            }
            Some(KeyEvent::Failed { issuer, .. }) => self.hold_off(store, issuer, now),
            Some(KeyEvent::Fetch(_)) | None => {}
        }
        event
    }
}

fn keys_key(issuer: &str) -> String {
    format!("portcullis/keys/{issuer}")
}

fn keys_lease(issuer: &str) -> String {
    format!("portcullis/lease/{issuer}")
}

/// One worker's [`BundlePoll`], its polls shared with every other worker through a
/// [`SharedStore`].
#[derive(Clone, Debug)]
pub struct SharedBundle {
    poll: BundlePoll,
    retry: i64,
    lease: i64,
    /// The version of the entry this worker's engine was built from (or refused).
    loaded: Option<u32>,
}

impl SharedBundle {
    /// Poll `url` every `interval_ms`, `retry_ms` after a failure or a refused bundle, each GET
    /// taking at most `timeout_ms`.
    pub fn new(url: impl Into<String>, interval_ms: u64, retry_ms: u64, timeout_ms: u64) -> Self {
        Self {
            poll: BundlePoll::new(url, interval_ms, retry_ms),
            retry: ms(retry_ms),
            lease: lease_ms(timeout_ms),
            loaded: None,
        }
    }

    /// The poll.
    pub fn poll(&self) -> &BundlePoll {
        &self.poll
    }

    /// The retry delay, milliseconds.
    pub fn retry_ms(&self) -> i64 {
        self.retry
    }

    fn bundle_key(&self) -> String {
        format!("portcullis/bundle/{}", self.poll.url())
    }

    fn lease_key(&self) -> String {
        format!("portcullis/bundle-lease/{}", self.poll.url())
    }

    /// The bundle stored since this worker last looked, handed to `build` (which loads it);
    /// when it builds, it is in use here from `now` ([`BundlePoll::adopted`]). `None` when
    /// nothing new was stored.
    pub fn sync<T>(
        &mut self,
        store: &dyn SharedStore,
        now: i64,
        build: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Option<Result<T, String>> {
        let Some((Some(entry), version)) = store.get(&self.bundle_key()) else {
            return None;
        };
        if version.is_some() && version == self.loaded {
            return None;
        }
        self.loaded = version;
        let (etag, bytes) = decode_bundle(&entry)?;
        let built = build(bytes);
        if built.is_ok() {
            self.poll.adopted(etag, now);
        }
        Some(built)
    }

    /// The poll due at `now`, if this worker took its lease; when another worker holds it,
    /// postponed until it is done.
    pub fn due(&mut self, store: &dyn SharedStore, now: i64) -> Option<BundleFetch> {
        let fetch = self.poll.due(now)?;
        let until = now.saturating_add(self.lease);
        match take_lease(store, &self.lease_key(), now, until) {
            Ok(()) => Some(fetch),
            Err(held_until) => {
                self.poll.postpone(held_until);
                None
            }
        }
    }

    /// The poll could not be performed ([`BundlePoll::failed`]): every worker waits for the
    /// retry delay.
    pub fn failed(&mut self, store: &dyn SharedStore, reason: &str, now: i64) {
        self.poll.failed(reason, now);
        self.hold_off(store, now);
    }

    fn hold_off(&self, store: &dyn SharedStore, now: i64) {
        set_lease(store, &self.lease_key(), now.saturating_add(self.retry));
    }

    /// Every worker waits for this one's next poll.
    fn hold_until_due(&self, store: &dyn SharedStore, now: i64) {
        set_lease(
            store,
            &self.lease_key(),
            self.poll.next_due().unwrap_or(now),
        );
    }

    /// The answer to the poll ([`BundlePoll::answer`]); after a failure every worker waits for
    /// the retry delay. Hand a [`BundleEvent::Candidate`]'s body to [`SharedBundle::candidate`].
    pub fn answer(
        &mut self,
        store: &dyn SharedStore,
        status: u16,
        etag: Option<&str>,
        body_len: usize,
        now: i64,
    ) -> BundleEvent {
        let event = self.poll.answer(status, etag, body_len, now);
        match &event {
            BundleEvent::Unchanged => self.hold_until_due(store, now),
            BundleEvent::Failed(_) => self.hold_off(store, now),
            BundleEvent::Candidate => {}
        }
        event
    }

    /// A candidate's body (with the answer's `etag`), handed to `build`: `Ok(Some(_))` is a
    /// new bundle, stored for the other workers; `Ok(None)` the bundle in use, unchanged;
    /// `Err` a refused one ([`BundlePoll::refused`]: every worker waits for the retry delay).
    pub fn candidate<T>(
        &mut self,
        store: &dyn SharedStore,
        etag: Option<&str>,
        body: &[u8],
        now: i64,
        build: impl FnOnce(&[u8]) -> Result<Option<T>, String>,
    ) -> Result<Option<T>, String> {
        let built = build(body);
        match &built {
            Ok(new) => {
                self.poll.accepted(now);
                self.hold_until_due(store, now);
                let key = self.bundle_key();
                if new.is_some() && store.set(&key, &encode_bundle(etag, body), None) {
                    self.loaded = version(store, &key);
                }
            }
            Err(_) => {
                self.poll.refused(now);
                self.hold_off(store, now);
            }
        }
        built
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::lifecycle::FetchStage;
    use serde_json::json;
    use std::cell::RefCell;

    /// Entries and their versions, as Envoy keeps them: every write bumps the version.
    #[derive(Default)]
    pub(in crate::lifecycle) struct Store(RefCell<BTreeMap<String, (Vec<u8>, u32)>>);

    impl SharedStore for Store {
        fn get(&self, key: &str) -> Option<(Option<Vec<u8>>, Option<u32>)> {
            Some(match self.0.borrow().get(key) {
                Some((value, version)) => (Some(value.clone()), Some(*version)),
                None => (None, None),
            })
        }

        fn set(&self, key: &str, value: &[u8], version: Option<u32>) -> bool {
            let mut entries = self.0.borrow_mut();
            let current = entries.get(key).map(|(_, v)| *v);
            if version.is_some() && version != current {
                return false;
            }
            let next = current.map_or(1, |v| v + 1);
            entries.insert(key.to_owned(), (value.to_vec(), next));
            true
        }
    }

    impl Store {
        pub(in crate::lifecycle) fn text(&self, key: &str) -> Option<String> {
            let entries = self.0.borrow();
            Some(String::from_utf8_lossy(&entries.get(key)?.0).into_owned())
        }
    }

    /// A store that cannot be read.
    struct Broken;

    impl SharedStore for Broken {
        fn get(&self, _: &str) -> Option<(Option<Vec<u8>>, Option<u32>)> {
            None
        }

        fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> bool {
            false
        }
    }

    const ISS: &str = "https://idp.example";
    const JWKS: &str = r#"{"keys":[{"kid":"a"}]}"#;

    fn worker() -> SharedKeys {
        let mut keys = SharedKeys::new(RefreshPolicy::default(), 5000);
        keys.follow(vec![(ISS.into(), KeyUrl::JwksUri(format!("{ISS}/keys")))]);
        keys
    }

    fn load(_: &str, jwks: &Value) -> Result<usize, String> {
        Ok(jwks["keys"].as_array().map_or(0, Vec::len))
    }

    fn ok(body: &str) -> FetchAnswer<'_> {
        FetchAnswer {
            status: 200,
            cache_control: Some("max-age=600"),
            body: body.as_bytes(),
        }
    }

    #[test]
    fn entries_round_trip_and_garbage_is_none() {
        let entry = encode_keys(1234, 5678, br#"{"keys":[]}"#);
        assert_eq!(
            decode_keys(&entry),
            Some(KeysEntry {
                loaded_at: 1234,
                fresh_until: 5678,
                jwks: json!({"keys": []})
            })
        );
        for bad in [&b""[..], b"12", b"12\n{}", b"x 1\n{}", b"1 2\n{", b"\n{}"] {
            assert_eq!(decode_keys(bad), None, "{bad:?}");
        }
        assert_eq!(decode_lease(Some(b"99")), 99);
        assert_eq!(decode_lease(Some(b"\xff")), 0);
        assert_eq!(decode_lease(None), 0);
        assert_eq!(lease_ms(5000), 11_000);

        let entry = encode_bundle(Some("\"abc\""), b"{\"format\":1}");
        assert_eq!(
            decode_bundle(&entry),
            Some((Some("\"abc\""), &b"{\"format\":1}"[..]))
        );
        assert_eq!(
            decode_bundle(&encode_bundle(None, b"{}")),
            Some((None, &b"{}"[..]))
        );
        assert_eq!(
            decode_bundle(&encode_bundle(Some("a\nb"), b"{}")),
            Some((None, &b"{}"[..]))
        );
        assert_eq!(decode_bundle(b"no newline"), None);
        assert_eq!(decode_bundle(b"\xff\n{}"), None);
    }

    #[test]
    fn one_worker_fetches_keys_and_the_others_load_them() {
        let store = Store::default();
        let (mut a, mut b) = (worker(), worker());
        let [fetch] = <[KeyFetch; 1]>::try_from(a.due(&store, 0)).unwrap();
        assert_eq!(fetch.stage, FetchStage::Jwks);
        assert_eq!(
            store
                .text("portcullis/lease/https://idp.example")
                .as_deref(),
            Some("11000")
        );
        assert!(b.due(&store, 1).is_empty(), "the lease is a's");
        assert_eq!(b.schedule().next_due(), Some(11_000));

        let event = a.answer(&store, &fetch, ok(JWKS), 10, load);
        assert!(matches!(event, Some(KeyEvent::Keys { keys: 1, .. })));
        assert_eq!(
            store.text("portcullis/keys/https://idp.example").as_deref(),
            Some(format!("10 600010\n{JWKS}").as_str())
        );
        assert_eq!(
            store
                .text("portcullis/lease/https://idp.example")
                .as_deref(),
            Some("0"),
            "released"
        );
        assert!(a.sync(&store, load).is_empty(), "a holds what it stored");
        assert_eq!(b.sync(&store, load), [(ISS.to_owned(), Ok(1))]);
        assert!(b.sync(&store, load).is_empty(), "loaded once");
        assert!(b.schedule().all_loaded());
        assert_eq!(b.schedule().next_due(), Some(600_010));

        // A new engine loads the keys again; keys it refuses are reported.
        b.follow(vec![(ISS.into(), KeyUrl::JwksUri(format!("{ISS}/keys")))]);
        let refuse = |_: &str, _: &Value| Err("no usable key".to_owned());
        assert_eq!(
            b.sync(&store, refuse),
            [(ISS.to_owned(), Err("no usable key".to_owned()))]
        );
    }

    #[test]
    fn a_failed_key_fetch_holds_every_worker_off_for_the_retry_delay() {
        let store = Store::default();
        let (mut a, mut b) = (worker(), worker());
        let [fetch] = <[KeyFetch; 1]>::try_from(a.due(&store, 0)).unwrap();
        let down = FetchAnswer {
            status: 503,
            cache_control: None,
            body: b"",
        };
        assert!(matches!(
            a.answer(&store, &fetch, down, 100, load),
            Some(KeyEvent::Failed { .. })
        ));
        assert!(b.due(&store, 10_099).is_empty());
        assert_eq!(b.due(&store, 10_100), [fetch], "b retries");
        assert!(a.due(&store, 10_100).is_empty(), "b holds the lease now");
        // A GET that could not be made at all.
        let (mut c, store) = (worker(), Store::default());
        let [fetch] = <[KeyFetch; 1]>::try_from(c.due(&store, 0)).unwrap();
        c.failed(&store, &fetch, "no cluster", 5);
        assert_eq!(
            store
                .text("portcullis/lease/https://idp.example")
                .as_deref(),
            Some("10005")
        );
        assert_eq!(c.schedule().next_due(), Some(10_005));
        // A store that cannot be read: try again in a second.
        let mut d = worker();
        assert!(d.due(&Broken, 0).is_empty());
        assert_eq!(d.schedule().next_due(), Some(1000));
    }

    fn bundle() -> SharedBundle {
        SharedBundle::new("http://policy/v1/bundle", 30_000, 5_000, 5_000)
    }

    const LEASE: &str = "portcullis/bundle-lease/http://policy/v1/bundle";
    const ENTRY: &str = "portcullis/bundle/http://policy/v1/bundle";

    #[test]
    fn one_worker_polls_the_bundle_and_the_others_build_it() {
        let store = Store::default();
        let (mut a, mut b) = (bundle(), bundle());
        let fetch = a.due(&store, 0).unwrap();
        assert_eq!(fetch.if_none_match, None);
        assert_eq!(b.due(&store, 1), None, "the lease is a's");
        assert_eq!(
            a.answer(&store, 200, Some("\"r1\""), 2, 10),
            BundleEvent::Candidate
        );
        let built = a.candidate(&store, Some("\"r1\""), b"{}", 10, |body| {
            Ok(Some(body.len()))
        });
        assert_eq!(built, Ok(Some(2)));
        assert_eq!(store.text(ENTRY).as_deref(), Some("\"r1\"\n{}"));
        assert_eq!(
            store.text(LEASE).as_deref(),
            Some("30010"),
            "until a's next poll"
        );
        assert_eq!(
            a.sync(&store, 11, |_| Ok(())),
            None,
            "a holds what it stored"
        );

        assert_eq!(
            b.sync(&store, 20, |body| Ok(body.to_vec())),
            Some(Ok(b"{}".to_vec()))
        );
        assert_eq!(b.sync(&store, 21, |_| Ok(())), None, "built once");
        assert_eq!(b.poll().next_due(), Some(30_020));
        // b's next poll is due an interval after it adopted a's bundle, with its ETag.
        assert_eq!(b.due(&store, 30_019), None);
        let fetch = b.due(&store, 30_020).unwrap();
        assert_eq!(fetch.if_none_match.as_deref(), Some("\"r1\""));
        assert_eq!(
            b.answer(&store, 304, None, 0, 30_030),
            BundleEvent::Unchanged
        );
        assert_eq!(store.text(LEASE).as_deref(), Some("60030"));
        // The bundle in use, unchanged: nothing stored.
        let fetch = b.due(&store, 60_030).unwrap();
        assert_eq!(fetch.if_none_match.as_deref(), Some("\"r1\""));
        assert_eq!(
            b.answer(&store, 200, None, 2, 60_030),
            BundleEvent::Candidate
        );
        assert_eq!(
            b.candidate(&store, None, b"{}", 60_030, |_| Ok(None::<()>)),
            Ok(None)
        );
        assert_eq!(store.text(ENTRY).as_deref(), Some("\"r1\"\n{}"));
    }

    #[test]
    fn failed_polls_and_refused_bundles_hold_every_worker_off() {
        let store = Store::default();
        let mut a = bundle();
        a.due(&store, 0).unwrap();
        assert!(matches!(
            a.answer(&store, 503, None, 0, 100),
            BundleEvent::Failed(_)
        ));
        assert_eq!(store.text(LEASE).as_deref(), Some("5100"));
        a.due(&store, 5_100).unwrap();
        a.failed(&store, "cannot dispatch the request", 5_200);
        assert_eq!(store.text(LEASE).as_deref(), Some("10200"));
        a.due(&store, 10_200).unwrap();
        a.answer(&store, 200, Some("\"bad\""), 2, 10_300);
        let refused = a.candidate(&store, Some("\"bad\""), b"{}", 10_300, |_| {
            Err::<Option<()>, _>("invalid bundle".to_owned())
        });
        assert_eq!(refused, Err("invalid bundle".to_owned()));
        assert_eq!(store.text(LEASE).as_deref(), Some("15300"));
        assert_eq!(store.text(ENTRY), None, "nothing shared");
        // A stored bundle that does not build is not looked at again.
        store.set(ENTRY, b"\n{}", None);
        let mut b = bundle();
        assert_eq!(
            b.sync(&store, 0, |_| Err::<(), _>("bad".to_owned())),
            Some(Err("bad".to_owned()))
        );
        assert_eq!(b.sync(&store, 1, |_| Ok(())), None);
    }
}
