//! One worker's upkeep of its engine (see [`Upkeep`]).

use super::{
    BundleEvent, BundleFetch, DataEvent, DataFetch, FetchAnswer, KeyEvent, KeyFetch,
    MAX_KEY_DOCUMENT, SharedBundle, SharedKeys, SharedStore, SharedTenantData,
};
use crate::bundle::CompiledBundle;
use crate::engine::Engine;
use std::fmt;
use std::sync::Arc;

/// A GET the host performs: `Accept: application/json`, no redirect followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpkeepFetch {
    /// An issuer's discovery document or JWK set.
    Keys(KeyFetch),
    /// The bundle, with `If-None-Match` when it names an ETag.
    Bundle(BundleFetch),
    /// A tenant's data document, with `If-None-Match` when it names an ETag, and the host's
    /// credential for the data source.
    Data(DataFetch),
}

/// What came back for an [`UpkeepFetch`]; the body is read only when it is needed.
#[derive(Clone, Copy, Debug)]
pub struct UpkeepAnswer<'a> {
    /// The HTTP status.
    pub status: u16,
    /// The `ETag` header.
    pub etag: Option<&'a str>,
    /// The `Cache-Control` header.
    pub cache_control: Option<&'a str>,
    /// The body's length, bytes.
    pub body_len: usize,
}

/// Where the bundle of the engine in use came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleOrigin {
    /// The host's own configuration.
    Inline,
    /// Fetched by another worker.
    Shared,
    /// Fetched by this worker from `url`.
    Fetched {
        /// The bundle's URL.
        url: String,
    },
}

/// What happened, for the host's log (each event's `Display` is its line) and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpkeepEvent {
    /// An engine is in use from now on.
    InUse {
        /// Its bundle's revision.
        revision: String,
        /// How many routes the bundle has.
        routes: usize,
        /// How many remote issuers' keys are fetched for it.
        issuers: usize,
        /// Where the bundle came from.
        origin: BundleOrigin,
    },
    /// An issuer's keys were fetched and loaded.
    KeysLoaded {
        /// The issuer.
        issuer: String,
        /// How many usable keys they hold.
        keys: usize,
    },
    /// Fetching an issuer's keys failed; the last good keys stay.
    KeysFailed {
        /// The issuer.
        issuer: String,
        /// Why.
        reason: String,
    },
    /// Keys another worker stored do not load into this worker's engine.
    SharedKeysRefused {
        /// The issuer.
        issuer: String,
        /// Why.
        reason: String,
    },
    /// A bundle poll failed, or the bundle it brought does not build (`refused`); the bundle
    /// in use, if any, stays.
    BundleFailed {
        /// The bundle's URL.
        url: String,
        /// Why.
        reason: String,
        /// The bundle was fetched, and refused.
        refused: bool,
        /// Whether an engine is in use.
        serving: bool,
        /// When the poll is tried again, milliseconds from now.
        retry_ms: i64,
    },
    /// A bundle another worker stored does not build here.
    SharedBundleRefused {
        /// Why.
        reason: String,
    },
    /// A tenant's stored data was loaded, refused or forgotten.
    Data(DataEvent),
}

impl UpkeepEvent {
    /// Whether something failed (a warning, in a host's log).
    pub fn is_failure(&self) -> bool {
        match self {
            Self::Data(event) => event.is_failure(),
            Self::InUse { .. } | Self::KeysLoaded { .. } => false,
            _ => true,
        }
    }
}

impl fmt::Display for BundleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline => f.write_str("inline"),
            Self::Shared => f.write_str("shared by another worker"),
            Self::Fetched { url } => write!(f, "fetched from `{url}`"),
        }
    }
}

impl fmt::Display for UpkeepEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InUse {
                revision,
                routes,
                issuers,
                origin,
            } => write!(
                f,
                "bundle revision {revision} in use ({origin}), {routes} routes, {issuers} remote issuers"
            ),
            Self::KeysLoaded { issuer, keys } => write!(f, "loaded {keys} keys of `{issuer}`"),
            Self::KeysFailed { issuer, reason } => write!(
                f,
                "fetching the keys of `{issuer}` failed ({reason}); keeping the last good keys"
            ),
            Self::SharedKeysRefused { issuer, reason } => {
                write!(f, "shared keys of `{issuer}` refused: {reason}")
            }
            Self::BundleFailed {
                url,
                reason,
                refused,
                serving,
                retry_ms,
            } => {
                let refused = if *refused { "refused: " } else { "" };
                let consequence = if *serving {
                    "the previous bundle keeps serving"
                } else {
                    "no bundle yet: requests are answered 503"
                };
                write!(
                    f,
                    "fetching the bundle from `{url}` failed ({refused}{reason}); {consequence}; next try in {} s",
                    retry_ms / 1000
                )
            }
            Self::SharedBundleRefused { reason } => {
                write!(f, "the shared bundle was refused: {reason}")
            }
            Self::Data(event) => event.fmt(f),
        }
    }
}

/// One worker's upkeep of its engine: the engine it decides with (built from an inline bundle,
/// or from a bundle polled from a URL), its remote issuers' keys and, for a bundle that stores
/// data, the tenants' data, kept current by fetches shared with the other workers
/// ([`SharedKeys`], [`SharedBundle`], [`SharedTenantData`], over the host's [`SharedStore`]). The host performs the GETs it is handed, gives back what came, and logs or
/// counts the [`UpkeepEvent`]s; building an engine from a compiled bundle (its signature, the
/// host's own checks, its secrets) is the host's `build`. A host with one worker gives it a
/// store of its own.
#[derive(Default)]
pub struct Upkeep {
    engine: Option<Arc<Engine>>,
    keys: SharedKeys,
    bundle: Option<SharedBundle>,
    data: Option<SharedTenantData>,
}

/// A compiled bundle's JSON.
fn compiled(bytes: &[u8]) -> Result<CompiledBundle, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not a compiled bundle: {e}"))
}

/// `engine`'s `set_issuer_keys`, as the schedule loads keys.
fn load(engine: &Engine) -> impl FnMut(&str, &serde_json::Value) -> Result<usize, String> {
    |issuer, jwks| {
        engine
            .set_issuer_keys(issuer, jwks)
            .map_err(|e| e.info().message)
    }
}

/// A failed poll of `bundle`, or (`refused`) a bundle it brought that does not build.
fn bundle_failed(
    bundle: &SharedBundle,
    reason: String,
    refused: bool,
    serving: bool,
) -> UpkeepEvent {
    UpkeepEvent::BundleFailed {
        url: bundle.poll().url().to_owned(),
        reason,
        refused,
        serving,
        retry_ms: bundle.retry_ms(),
    }
}

impl Upkeep {
    /// Keys fetched as `keys` says; the bundle polled as `bundle` says, when it is not inline.
    /// No engine is in use until [`Upkeep::install`] or a bundle arrives.
    pub fn new(keys: SharedKeys, bundle: Option<SharedBundle>) -> Self {
        Self {
            engine: None,
            keys,
            bundle,
            data: None,
        }
    }

    /// Keep the tenants' data of bundles that store data as `data` says (the host's data
    /// source).
    #[must_use]
    pub fn with_data(mut self, data: SharedTenantData) -> Self {
        self.data = Some(data);
        self
    }

    /// The tenants' data schedule, if the host has a data source.
    pub fn data(&self) -> Option<&SharedTenantData> {
        self.data.as_ref()
    }

    /// The engine in use.
    pub fn engine(&self) -> Option<&Arc<Engine>> {
        self.engine.as_ref()
    }

    /// Whether anything is ever fetched (if not, a host needs no timer).
    pub fn fetches(&self) -> bool {
        self.bundle.is_some() || self.data.is_some() || !self.keys.schedule().status().is_empty()
    }

    /// Use `engine` from now on: its remote issuers' keys are followed, and those other workers
    /// stored loaded into it.
    pub fn install(
        &mut self,
        store: &dyn SharedStore,
        engine: Engine,
        origin: BundleOrigin,
    ) -> Vec<UpkeepEvent> {
        self.keys.follow(engine.bundle().remote_issuers());
        if let Some(data) = &mut self.data {
            // Held by the engine before this one: loaded again from the store, or fetched.
            data.reset(i64::MIN);
        }
        let engine = Arc::new(engine);
        self.engine = Some(Arc::clone(&engine));
        let (_, mut events) = self.sync_keys(store);
        events.push(UpkeepEvent::InUse {
            revision: engine.revision().to_owned(),
            routes: engine.bundle().route_count(),
            issuers: self.keys.schedule().status().len(),
            origin,
        });
        events
    }

    /// Take in what other workers stored: a new bundle (built with `build`) and keys.
    pub fn sync(
        &mut self,
        store: &dyn SharedStore,
        now: i64,
        build: impl FnOnce(CompiledBundle) -> Result<Engine, String>,
    ) -> Vec<UpkeepEvent> {
        let built = self
            .bundle
            .as_mut()
            .and_then(|bundle| bundle.sync(store, now, |bytes| build(compiled(bytes)?)));
        let mut events = match built {
            None => Vec::new(),
            Some(Ok(engine)) => self.install(store, engine, BundleOrigin::Shared),
            Some(Err(reason)) => vec![UpkeepEvent::SharedBundleRefused { reason }],
        };
        events.extend(self.sync_keys(store).1);
        if let (Some(data), Some(engine)) = (&mut self.data, &self.engine) {
            let loaded = data.sync(store, engine, now);
            events.extend(loaded.into_iter().map(UpkeepEvent::Data));
        }
        events
    }

    /// A decision lacked `tenant`'s data ([`crate::Decision::data_wanted`]): follow it, and
    /// load what another worker stored of it. `Some(true)`: the engine holds it now (decide
    /// again); `Some(false)`: it is being fetched (a host may hold the request until it is
    /// held, [`Upkeep::data_pending`]); `None`: it is not fetched (no data source, or a tenant
    /// that cannot be), so the request is answered now.
    pub fn data_wanted(
        &mut self,
        store: &dyn SharedStore,
        tenant: &str,
        now: i64,
    ) -> (Option<bool>, Vec<UpkeepEvent>) {
        let (Some(data), Some(engine)) = (&mut self.data, &self.engine) else {
            return (None, Vec::new());
        };
        if !engine.stores_data() || !data.wanted(engine, tenant, now) {
            return (None, Vec::new());
        }
        let events = data.sync_tenant(store, engine, tenant, now);
        let held = engine.tenant_data_revision(tenant).is_some();
        (
            Some(held),
            events.into_iter().map(UpkeepEvent::Data).collect(),
        )
    }

    /// Take in the tenants' data other workers stored (only that: [`Upkeep::sync`] also looks
    /// for a new bundle and keys).
    pub fn sync_data(&mut self, store: &dyn SharedStore, now: i64) -> Vec<UpkeepEvent> {
        let (Some(data), Some(engine)) = (&mut self.data, &self.engine) else {
            return Vec::new();
        };
        let events = data.sync(store, engine, now);
        events.into_iter().map(UpkeepEvent::Data).collect()
    }

    /// Whether a request for `tenant` waits for its data: the engine in use stores data and
    /// does not hold `tenant`'s, which is followed.
    pub fn data_pending(&self, tenant: &str) -> bool {
        let (Some(data), Some(engine)) = (&self.data, &self.engine) else {
            return false;
        };
        engine.stores_data()
            && engine.tenant_data_revision(tenant).is_none()
            && data.follows(tenant)
    }

    /// A request was decided with `tenant`'s data: it stays among the tenants recently seen.
    pub fn data_seen(&mut self, tenant: &str, now: i64) {
        if let Some(data) = &mut self.data {
            data.seen(tenant, now);
        }
    }

    /// Load the keys other workers stored into the engine in use (a decision lacked keys:
    /// another worker may have fetched them). Whether any were loaded.
    pub fn sync_keys(&mut self, store: &dyn SharedStore) -> (bool, Vec<UpkeepEvent>) {
        let Some(engine) = &self.engine else {
            return (false, Vec::new());
        };
        let mut changed = false;
        let mut events = Vec::new();
        for (issuer, loaded) in self.keys.sync(store, load(engine)) {
            match loaded {
                Ok(_) => changed = true,
                Err(reason) => events.push(UpkeepEvent::SharedKeysRefused { issuer, reason }),
            }
        }
        (changed, events)
    }

    /// A decision lacked `issuer`'s keys: bring its fetch forward (the cooldown applies).
    pub fn wanted(&mut self, issuer: &str, now: i64) {
        self.keys.wanted(issuer, now);
    }

    /// The GETs due at `now` whose lease this worker took.
    pub fn due(&mut self, store: &dyn SharedStore, now: i64) -> Vec<UpkeepFetch> {
        let mut out = Vec::new();
        if let Some(fetch) = self.bundle.as_mut().and_then(|b| b.due(store, now)) {
            out.push(UpkeepFetch::Bundle(fetch));
        }
        if let Some(engine) = &self.engine {
            let keys = self.keys.due(store, now);
            out.extend(keys.into_iter().map(UpkeepFetch::Keys));
            if let Some(data) = self.data.as_mut().filter(|_| engine.stores_data()) {
                out.extend(data.due(store, now).into_iter().map(UpkeepFetch::Data));
            }
        }
        out
    }

    /// `fetch` could not be performed: it is retried after the retry delay.
    pub fn failed(
        &mut self,
        store: &dyn SharedStore,
        fetch: &UpkeepFetch,
        reason: &str,
        now: i64,
    ) -> UpkeepEvent {
        let reason = reason.to_owned();
        match fetch {
            UpkeepFetch::Keys(fetch) => {
                self.keys.failed(store, fetch, &reason, now);
                let issuer = fetch.issuer.clone();
                UpkeepEvent::KeysFailed { issuer, reason }
            }
            UpkeepFetch::Bundle(fetch) => {
                let serving = self.engine.is_some();
                let Some(bundle) = &mut self.bundle else {
                    let url = fetch.url.clone();
                    let retry_ms = 0;
                    let refused = false;
                    return UpkeepEvent::BundleFailed {
                        url,
                        reason,
                        refused,
                        serving,
                        retry_ms,
                    };
                };
                bundle.failed(store, &reason, now);
                bundle_failed(bundle, reason, false, serving)
            }
            UpkeepFetch::Data(fetch) => {
                let failed = self
                    .data
                    .as_mut()
                    .and_then(|data| data.failed(store, fetch, &reason, now));
                failed.map_or_else(
                    || {
                        UpkeepEvent::Data(DataEvent::Failed {
                            tenant: fetch.tenant.clone(),
                            reason,
                            refused: false,
                            held: false,
                            retry_ms: 0,
                        })
                    },
                    UpkeepEvent::Data,
                )
            }
        }
    }

    /// The answer to `fetch`, its body read by `body` when it is needed; a new bundle is built
    /// with `build` and used from now on. What happened, and the GET to perform next (the JWK
    /// set a discovery document names).
    pub fn answer(
        &mut self,
        store: &dyn SharedStore,
        fetch: &UpkeepFetch,
        answer: UpkeepAnswer<'_>,
        body: impl FnOnce() -> Vec<u8>,
        now: i64,
        build: impl FnOnce(CompiledBundle) -> Result<Engine, String>,
    ) -> (Vec<UpkeepEvent>, Option<UpkeepFetch>) {
        match fetch {
            UpkeepFetch::Keys(fetch) => self.answer_keys(store, fetch, answer, body, now),
            UpkeepFetch::Bundle(_) => (self.answer_bundle(store, answer, body, now, build), None),
            UpkeepFetch::Data(fetch) => {
                let (Some(data), Some(engine)) = (&mut self.data, &self.engine) else {
                    return (Vec::new(), None);
                };
                let status = (answer.status, answer.body_len);
                let (events, next) = data.answer(store, engine, fetch, status, body, now);
                let events = events.into_iter().map(UpkeepEvent::Data).collect();
                (events, next.map(UpkeepFetch::Data))
            }
        }
    }

    fn answer_keys(
        &mut self,
        store: &dyn SharedStore,
        fetch: &KeyFetch,
        answer: UpkeepAnswer<'_>,
        body: impl FnOnce() -> Vec<u8>,
        now: i64,
    ) -> (Vec<UpkeepEvent>, Option<UpkeepFetch>) {
        let Some(engine) = self.engine.clone() else {
            return (Vec::new(), None);
        };
        if answer.body_len > MAX_KEY_DOCUMENT {
            let why = "the document is larger than 1 MiB";
            let failed = self.failed(store, &UpkeepFetch::Keys(fetch.clone()), why, now);
            return (vec![failed], None);
        }
        let body = body();
        let answer = FetchAnswer {
            status: answer.status,
            cache_control: answer.cache_control,
            body: &body,
        };
        let event = match self.keys.answer(store, fetch, answer, now, load(&engine)) {
            None => None,
            Some(KeyEvent::Fetch(next)) => return (Vec::new(), Some(UpkeepFetch::Keys(next))),
            Some(KeyEvent::Keys { issuer, keys, .. }) => {
                Some(UpkeepEvent::KeysLoaded { issuer, keys })
            }
            Some(KeyEvent::Failed { issuer, reason }) => {
                Some(UpkeepEvent::KeysFailed { issuer, reason })
            }
        };
        (event.into_iter().collect(), None)
    }

    fn answer_bundle(
        &mut self,
        store: &dyn SharedStore,
        answer: UpkeepAnswer<'_>,
        body: impl FnOnce() -> Vec<u8>,
        now: i64,
        build: impl FnOnce(CompiledBundle) -> Result<Engine, String>,
    ) -> Vec<UpkeepEvent> {
        let current = self.engine.clone();
        let serving = current.is_some();
        let Some(bundle) = &mut self.bundle else {
            return Vec::new();
        };
        let (status, etag) = (answer.status, answer.etag);
        let built = match bundle.answer(store, status, etag, answer.body_len, now) {
            BundleEvent::Unchanged => return Vec::new(),
            BundleEvent::Failed(reason) => {
                return vec![bundle_failed(bundle, reason, false, serving)];
            }
            BundleEvent::Candidate => bundle.candidate(store, etag, &body(), now, |bytes| {
                let compiled = compiled(bytes)?;
                // A server without ETags answering the revision in use, intact: nothing to
                // build. A bundle claiming it with other content goes on to be refused.
                let unchanged = !compiled.revision.is_empty()
                    && current.is_some_and(|e| e.revision() == compiled.revision)
                    && compiled.compute_revision() == compiled.revision;
                if unchanged {
                    return Ok(None);
                }
                build(compiled).map(Some)
            }),
        };
        match built {
            Ok(None) => Vec::new(),
            Err(reason) => vec![bundle_failed(bundle, reason, true, serving)],
            Ok(Some(engine)) => {
                let url = bundle.poll().url().to_owned();
                self.install(store, engine, BundleOrigin::Fetched { url })
            }
        }
    }
}

#[cfg(test)]
#[cfg(feature = "rust-crypto")]
mod tests {
    use super::*;
    use crate::bundle::{Bundle, BundleSources};
    use crate::lifecycle::shared::tests::Store;
    use crate::lifecycle::{DataPolicy, FetchStage, RefreshPolicy};
    use serde_json::json;

    const ISS: &str = "https://idp.example";
    const JWKS: &str = include_str!("../../../policies/techfin/dev-keys/acme-rs256.jwks.json");
    const URL: &str = "http://127.0.0.1:8181/v1/bundle";

    /// A bundle allowing everything, for one tenant whose issuer's keys are at `keys`.
    fn compiled(keys: serde_json::Value) -> CompiledBundle {
        let mut issuer = json!({"issuer": ISS, "audiences": ["api"], "algorithms": ["RS256"]});
        issuer
            .as_object_mut()
            .unwrap()
            .extend(keys.as_object().unwrap().clone());
        BundleSources::permit_all(&json!({"tenants": {"a": {"issuers": [issuer]}}})).unwrap()
    }

    fn remote() -> CompiledBundle {
        compiled(json!({"jwks_uri": format!("{ISS}/keys")}))
    }

    fn engine(compiled: CompiledBundle) -> Result<Engine, String> {
        Ok(Engine::new(
            Bundle::load(compiled).map_err(|e| e.to_string())?,
        ))
    }

    fn keys_worker() -> Upkeep {
        Upkeep::new(SharedKeys::new(RefreshPolicy::default(), 5000), None)
    }

    fn bundle_worker() -> Upkeep {
        let bundle = SharedBundle::new(URL, 30_000, 5_000, 5_000);
        Upkeep::new(
            SharedKeys::new(RefreshPolicy::default(), 5000),
            Some(bundle),
        )
    }

    fn ok(body_len: usize, etag: Option<&str>) -> UpkeepAnswer<'_> {
        UpkeepAnswer {
            status: 200,
            etag,
            cache_control: None,
            body_len,
        }
    }

    fn loaded(upkeep: &Upkeep) -> bool {
        upkeep.engine().unwrap().remote_issuers()[0].2
    }

    #[test]
    fn an_engine_follows_its_issuers_and_one_worker_fetches_their_keys() {
        let store = Store::default();
        let (mut a, mut b) = (keys_worker(), keys_worker());
        assert!(!a.fetches() && a.due(&store, 0).is_empty(), "no engine yet");
        let events = a.install(&store, engine(remote()).unwrap(), BundleOrigin::Inline);
        assert_eq!(
            events,
            [UpkeepEvent::InUse {
                revision: remote().revision,
                routes: 0,
                issuers: 1,
                origin: BundleOrigin::Inline
            }]
        );
        b.install(&store, engine(remote()).unwrap(), BundleOrigin::Inline);
        assert!(a.fetches());
        let [fetch] = <[UpkeepFetch; 1]>::try_from(a.due(&store, 0)).unwrap();
        assert!(b.due(&store, 1).is_empty(), "a holds the lease");
        assert_eq!(b.sync_keys(&store), (false, Vec::new()));

        let answer = a.answer(
            &store,
            &fetch,
            ok(JWKS.len(), None),
            || JWKS.into(),
            2,
            engine,
        );
        assert_eq!(
            answer,
            (
                vec![UpkeepEvent::KeysLoaded {
                    issuer: ISS.into(),
                    keys: 1
                }],
                None
            )
        );
        assert!(loaded(&a));
        assert_eq!(b.sync_keys(&store), (true, Vec::new()));
        assert!(loaded(&b));

        // Another worker's keys that do not load here.
        let mut c = keys_worker();
        store.set(
            "portcullis/keys/https://idp.example",
            b"1 2\n{\"keys\": []}",
            None,
        );
        let events = c.install(&store, engine(remote()).unwrap(), BundleOrigin::Inline);
        assert!(
            matches!(&events[0], UpkeepEvent::SharedKeysRefused { issuer, .. } if issuer == ISS),
            "{events:?}"
        );
    }

    #[test]
    fn discovery_leads_to_the_jwk_set_and_oversized_documents_are_not_read() {
        let store = Store::default();
        let mut a = keys_worker();
        let discovery =
            compiled(json!({"discovery": format!("{ISS}/.well-known/openid-configuration")}));
        a.install(&store, engine(discovery).unwrap(), BundleOrigin::Inline);
        let [fetch] = <[UpkeepFetch; 1]>::try_from(a.due(&store, 0)).unwrap();
        let document = json!({"issuer": ISS, "jwks_uri": format!("{ISS}/keys")}).to_string();
        let (events, next) = a.answer(
            &store,
            &fetch,
            ok(document.len(), None),
            || document.clone().into(),
            1,
            engine,
        );
        assert!(events.is_empty());
        let Some(UpkeepFetch::Keys(next)) = next else {
            panic!("{next:?}")
        };
        assert_eq!(
            (next.stage, next.url.as_str()),
            (FetchStage::Jwks, "https://idp.example/keys")
        );
        // A JWK set over the bound is not even read.
        let (events, next) = a.answer(
            &store,
            &UpkeepFetch::Keys(next),
            ok(MAX_KEY_DOCUMENT + 1, None),
            || panic!("read"),
            2,
            engine,
        );
        assert_eq!(
            (events, next),
            (
                vec![UpkeepEvent::KeysFailed {
                    issuer: ISS.into(),
                    reason: "the document is larger than 1 MiB".into()
                }],
                None
            )
        );
        assert_eq!(
            store
                .text("portcullis/lease/https://idp.example")
                .as_deref(),
            Some("10002")
        );
        // A GET that could not be made.
        let [fetch] = <[UpkeepFetch; 1]>::try_from(a.due(&store, 10_002)).unwrap();
        assert_eq!(
            a.failed(&store, &fetch, "no cluster", 10_003),
            UpkeepEvent::KeysFailed {
                issuer: ISS.into(),
                reason: "no cluster".into()
            }
        );
    }

    #[test]
    fn a_polled_bundle_is_built_once_and_shared() {
        let store = Store::default();
        let (mut a, mut b) = (bundle_worker(), bundle_worker());
        assert!(a.fetches());
        let inline =
            compiled(json!({"jwks": serde_json::from_str::<serde_json::Value>(JWKS).unwrap()}));
        let json = inline.to_json();
        let body = || json.clone().into_bytes();
        let [fetch] = <[UpkeepFetch; 1]>::try_from(a.due(&store, 0)).unwrap();
        let (events, _) = a.answer(
            &store,
            &fetch,
            ok(json.len(), Some("\"r1\"")),
            body,
            1,
            engine,
        );
        assert_eq!(
            events,
            [UpkeepEvent::InUse {
                revision: inline.revision.clone(),
                routes: 0,
                issuers: 0,
                origin: BundleOrigin::Fetched { url: URL.into() }
            }]
        );
        let events = b.sync(&store, 2, engine);
        assert!(
            matches!(
                &events[..],
                [UpkeepEvent::InUse {
                    origin: BundleOrigin::Shared,
                    ..
                }]
            ),
            "{events:?}"
        );
        assert!(b.sync(&store, 3, engine).is_empty(), "built once");

        // The same bundle again from a server without ETags: nothing to build.
        let [fetch] = <[UpkeepFetch; 1]>::try_from(a.due(&store, 30_001)).unwrap();
        let never = |_| -> Result<Engine, String> { panic!("built again") };
        let (events, _) = a.answer(&store, &fetch, ok(json.len(), None), body, 30_002, never);
        assert!(events.is_empty());
        // A bundle that does not build; a poll that fails.
        let [fetch] = <[UpkeepFetch; 1]>::try_from(a.due(&store, 60_002)).unwrap();
        let (events, _) = a.answer(
            &store,
            &fetch,
            ok(5, None),
            || b"{bad}".to_vec(),
            60_003,
            engine,
        );
        let [
            UpkeepEvent::BundleFailed {
                reason,
                refused: true,
                serving: true,
                ..
            },
        ] = &events[..]
        else {
            panic!("{events:?}")
        };
        assert!(reason.starts_with("not a compiled bundle"), "{reason}");
        let [fetch] = <[UpkeepFetch; 1]>::try_from(a.due(&store, 65_003)).unwrap();
        let failed = |status| UpkeepAnswer {
            status,
            ..ok(0, None)
        };
        let (events, _) = a.answer(&store, &fetch, failed(503), Vec::new, 65_004, engine);
        assert!(
            matches!(
                &events[..],
                [UpkeepEvent::BundleFailed {
                    refused: false,
                    serving: true,
                    ..
                }]
            ),
            "{events:?}"
        );
        let mut c = bundle_worker();
        let [fetch] = <[UpkeepFetch; 1]>::try_from(c.due(&store, 70_004)).unwrap();
        assert_eq!(
            c.failed(&store, &fetch, "cannot dispatch the request", 70_005),
            UpkeepEvent::BundleFailed {
                url: URL.into(),
                reason: "cannot dispatch the request".into(),
                refused: false,
                serving: false,
                retry_ms: 5_000
            }
        );
    }

    /// A bundle storing `Report` for tenant `a` (keys inline).
    fn storing() -> CompiledBundle {
        let jwks: serde_json::Value = serde_json::from_str(JWKS).unwrap();
        let tenants = json!({"tenants": {"a": {"issuers": [{"issuer": ISS,
            "audiences": ["api"], "algorithms": ["RS256"], "jwks": jwks}]}}});
        BundleSources {
            schema: Some((
                "schema.cedarschema".into(),
                "entity Report { tenant: String };\nentity Tenant;\naction \"data.read\", \"data.write\" appliesTo { principal: Report, resource: Tenant };\n".into(),
            )),
            policies: vec![crate::bundle::PolicySource {
                file: "p.cedar".into(),
                tenant: None,
                source: "@id(\"all\")\npermit(principal, action, resource);".into(),
            }],
            tenants: Some(("tenants.json".into(), tenants.to_string())),
            settings: Some((
                "bundle.json".into(),
                json!({"data": {"stored": ["Report"]}}).to_string(),
            )),
            ..BundleSources::default()
        }
        .compile(&mut |_| Err("no files".into()))
        .unwrap()
    }

    fn data_worker() -> Upkeep {
        let data = SharedTenantData::new("http://127.0.0.1:9901", DataPolicy::default());
        keys_worker().with_data(data)
    }

    #[test]
    fn a_tenant_wanted_by_a_decision_is_fetched_once_and_loaded_by_every_worker() {
        let store = Store::default();
        let (mut a, mut b) = (data_worker(), data_worker());
        assert!(a.fetches());
        for w in [&mut a, &mut b] {
            w.install(&store, engine(storing()).unwrap(), BundleOrigin::Inline);
        }
        assert_eq!(a.data_wanted(&store, "a", 0).0, Some(false));
        assert_eq!(a.data_wanted(&store, "nope", 0).0, None, "not a tenant");
        assert!(a.data_pending("a"));
        assert!(!a.data_pending("nope"));
        let [UpkeepFetch::Data(fetch)] = <[UpkeepFetch; 1]>::try_from(a.due(&store, 0)).unwrap()
        else {
            panic!()
        };
        assert_eq!(fetch.url, "http://127.0.0.1:9901/v1/data/a");
        assert_eq!(b.data_wanted(&store, "a", 1).0, Some(false));
        assert!(b.due(&store, 1).is_empty(), "a fetches for both");
        let body = json!({"tenant": "a", "revision": 2, "entities": []}).to_string();
        let answer = ok(body.len(), Some("\"2\""));
        let (events, next) = a.answer(
            &store,
            &UpkeepFetch::Data(fetch),
            answer,
            || body.clone().into_bytes(),
            2,
            engine,
        );
        assert_eq!(next, None);
        assert!(
            matches!(
                &events[..],
                [UpkeepEvent::Data(DataEvent::Loaded {
                    revision: 2,
                    fetched: true,
                    ..
                })]
            ),
            "{events:?}"
        );
        assert!(!a.data_pending("a"));
        assert_eq!(b.data_wanted(&store, "a", 3).0, Some(true), "b loads a's");
        // A new engine holds nothing: it loads what is stored on the next sync.
        b.install(&store, engine(storing()).unwrap(), BundleOrigin::Inline);
        assert!(b.data_pending("a"));
        let events = b.sync_data(&store, 4);
        assert!(
            matches!(
                &events[..],
                [UpkeepEvent::Data(DataEvent::Loaded { fetched: false, .. })]
            ),
            "{events:?}"
        );
        assert!(!b.data_pending("a"));
        // A fetch that could not be made.
        let (mut c, store) = (data_worker(), Store::default());
        c.install(&store, engine(storing()).unwrap(), BundleOrigin::Inline);
        c.data_wanted(&store, "a", 10_000);
        let [fetch] = <[UpkeepFetch; 1]>::try_from(c.due(&store, 10_000)).unwrap();
        let event = c.failed(&store, &fetch, "no cluster", 10_000);
        assert!(event.is_failure(), "{event}");
    }

    #[test]
    fn events_are_the_hosts_log_lines() {
        let in_use = |origin| UpkeepEvent::InUse {
            revision: "abc".into(),
            routes: 2,
            issuers: 1,
            origin,
        };
        let fetched = BundleOrigin::Fetched { url: URL.into() };
        let failed = |refused, serving| UpkeepEvent::BundleFailed {
            url: URL.into(),
            reason: "`x` answered HTTP 503".into(),
            refused,
            serving,
            retry_ms: 5_000,
        };
        let issuer = || ISS.to_owned();
        let lines = [
            (
                in_use(BundleOrigin::Inline),
                "bundle revision abc in use (inline), 2 routes, 1 remote issuers",
            ),
            (
                in_use(BundleOrigin::Shared),
                "bundle revision abc in use (shared by another worker), 2 routes, 1 remote issuers",
            ),
            (
                in_use(fetched),
                "bundle revision abc in use (fetched from `http://127.0.0.1:8181/v1/bundle`), 2 routes, 1 remote issuers",
            ),
            (
                UpkeepEvent::KeysLoaded {
                    issuer: issuer(),
                    keys: 2,
                },
                "loaded 2 keys of `https://idp.example`",
            ),
            (
                UpkeepEvent::KeysFailed {
                    issuer: issuer(),
                    reason: "down".into(),
                },
                "fetching the keys of `https://idp.example` failed (down); keeping the last good keys",
            ),
            (
                UpkeepEvent::SharedKeysRefused {
                    issuer: issuer(),
                    reason: "no".into(),
                },
                "shared keys of `https://idp.example` refused: no",
            ),
            (
                failed(false, false),
                "fetching the bundle from `http://127.0.0.1:8181/v1/bundle` failed (`x` answered HTTP 503); no bundle yet: requests are answered 503; next try in 5 s",
            ),
            (
                failed(true, true),
                "fetching the bundle from `http://127.0.0.1:8181/v1/bundle` failed (refused: `x` answered HTTP 503); the previous bundle keeps serving; next try in 5 s",
            ),
            (
                UpkeepEvent::SharedBundleRefused {
                    reason: "bad".into(),
                },
                "the shared bundle was refused: bad",
            ),
        ];
        for (event, line) in lines {
            assert_eq!(event.to_string(), line);
            let failure = !line.starts_with("bundle revision") && !line.starts_with("loaded");
            assert_eq!(event.is_failure(), failure, "{line}");
        }
    }
}
