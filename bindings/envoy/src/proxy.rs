//! The proxy-wasm glue: root context (configuration, metrics, bundle polling, key fetching) and
//! HTTP contexts (one per request, carrying out [`gate::handle`]). Header values are read as
//! bytes: nothing here panics on what a client sends. The request's headers come in one
//! `get_map_bytes`, which needs header names to be UTF-8: Envoy's codecs answer 400 to any name
//! that is not a token before a filter sees it, as the end-to-end tests check. The SDK's header
//! calls panic on a status other than OK, which Envoy returns only when the request has no
//! header map; a panic traps the VM, and a filter configured `fail_open: false` fails closed.

use crate::config::{Crypto, KeysConfig, LogLevel, Plan, RemoteBundle, Target};
use crate::crypto::{self, Prepared, WasmBudget};
use crate::gate::{self, Counter};
use crate::{bundle, keys};
use portcullis_engine::{
    Algorithm, CompiledBundle, EdgeAction, Engine, EngineOptions, ForwardHeaders, Headers, KeyUrl,
    Lookup, RustCryptoVerifier, SignatureVerifier, VerificationKey,
};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType, Status};
use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

fn log(level: proxy_wasm::types::LogLevel, message: &str) {
    // Logging is best effort: a host that refuses a log line must not fail a request.
    let _ = hostcalls::log(level, message);
}

fn now() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// Random bytes for decision ids: std's `RandomState` is seeded from WASI `random_get`.
fn random_seed() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Whether this VM has said that Envoy's `verify_signature` could not be used.
static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// Checks RSA and ECDSA signatures with Envoy's `verify_signature` foreign function (native
/// BoringSSL); everything else, and what Envoy cannot check (no such function, a key it
/// refuses), in Wasm, within the VM's budget of Wasm checks per second.
struct EnvoyVerifier {
    budget: Arc<WasmBudget>,
    envoy: bool,
}

impl SignatureVerifier for EnvoyVerifier {
    fn verify(
        &self,
        alg: Algorithm,
        key: &VerificationKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, String> {
        let in_wasm = || {
            if !self.budget.take(now()) {
                return Err(
                    "the worker's budget of Wasm signature checks is spent this second".to_owned(),
                );
            }
            RustCryptoVerifier.verify(alg, key, message, signature)
        };
        if !self.envoy {
            return in_wasm();
        }
        match crypto::prepare(alg, key.material(), message, signature) {
            Prepared::Invalid => Ok(false),
            Prepared::InWasm => in_wasm(),
            Prepared::Envoy(arguments) => {
                match hostcalls::call_foreign_function("verify_signature", Some(&arguments)) {
                    Ok(Some(result)) => crypto::parse_result(&result)
                        .ok_or_else(|| "unreadable `verify_signature` result".to_owned()),
                    Ok(None) => Err("`verify_signature` returned nothing".to_owned()),
                    // No such function in this Envoy, or arguments it cannot read (a key its
                    // BoringSSL refuses): the same check in Wasm, never an answer by default.
                    Err(status @ (Status::NotFound | Status::BadArgument)) => {
                        if !FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
                            log(
                                proxy_wasm::types::LogLevel::Warn,
                                &format!(
                                    "portcullis: Envoy's `verify_signature` answered {status:?}; signatures it cannot check are checked in Wasm"
                                ),
                            );
                        }
                        in_wasm()
                    }
                    Err(status) => Err(format!("`verify_signature` failed: {status:?}")),
                }
            }
        }
    }
}

/// Engine options for this VM: a fresh decision-id seed and the configured verifier.
fn engine_options(plan: &Plan) -> EngineOptions {
    let verifier = EnvoyVerifier {
        budget: Arc::clone(&plan.wasm_budget),
        envoy: plan.crypto == Crypto::Envoy,
    };
    EngineOptions {
        verifier: Arc::new(verifier),
        decision_id_seed: random_seed(),
    }
}

/// The request's headers, read in one hostcall, without the identity headers the filter
/// forwards: a client's copies of those, under any spelling (`x_portcullis_tenant` too), are
/// never read (a route attribute taken from one sees none) and never forwarded.
///
/// Hostcalls are most of what a remembered decision costs in Envoy. Reading a header by name is
/// one, plus a call back into the VM to allocate its value, and a decision reads four or five;
/// one read of the whole map costs less, and tells whether the client sent identity headers, so
/// the common request (it sent none) needs no removal.
struct RequestHeaders {
    pairs: Vec<(String, Vec<u8>)>,
    /// The names, as the client spelled them, of the identity headers it sent.
    spoofed: Vec<String>,
}

impl RequestHeaders {
    /// Unreadable headers read as none: no token, so nothing is allowed.
    fn read(forward: &ForwardHeaders) -> Self {
        let mut pairs = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        let mut spoofed = Vec::new();
        pairs.retain(|(name, _)| {
            let identity = forward.is_identity(name);
            if identity && !spoofed.contains(name) {
                spoofed.push(name.clone());
            }
            !identity
        });
        Self { pairs, spoofed }
    }

    /// Let the request go upstream with `identity` as its only identity headers.
    fn forward(&self, identity: &[(String, String)]) {
        // Removing a header removes every copy of it.
        for name in &self.spoofed {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
        }
        // None of them is left, so adding (cheaper than replacing) sets each once.
        for (name, value) in identity {
            let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value);
        }
    }
}

impl Headers for RequestHeaders {
    fn get(&self, name: &str) -> Lookup<'_> {
        let mut found = self.pairs.iter().filter(|(n, _)| n == name);
        match (found.next(), found.next()) {
            (None, _) => Lookup::Absent,
            (Some((_, value)), None) => Lookup::One(value),
            (Some(_), Some(_)) => Lookup::Repeated,
        }
    }
}

/// Metric ids, in [`Counter::ALL`] order.
#[derive(Default)]
struct Metrics(Vec<u32>);

impl Metrics {
    fn define() -> Self {
        Self(
            Counter::ALL
                .iter()
                .filter_map(|c| hostcalls::define_metric(MetricType::Counter, c.name()).ok())
                .collect(),
        )
    }

    fn increment(&self, counter: Counter) {
        let index = Counter::ALL.iter().position(|c| *c == counter);
        if let Some(id) = index.and_then(|i| self.0.get(i)) {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Discovery,
    Jwks,
}

struct IssuerState {
    issuer: String,
    first_url: String,
    first_stage: Stage,
    loaded_cas: Option<u32>,
    fetched_at: Option<i64>,
    in_flight: Option<(u32, Stage)>,
}

/// This VM's view of the remote issuers' keys, shared by the root context (timer, fetches)
/// and the HTTP contexts (which sync at once when a token's keys are missing).
#[derive(Default)]
struct Keys {
    issuers: Vec<IssuerState>,
    /// A token named an unknown `kid` since the last tick.
    unknown_kid: bool,
}

/// The engine this VM decides with: built in `on_configure` from an inline bundle, or from
/// each new remote bundle on a tick; `None` until a remote bundle first arrives.
type Current = RefCell<Option<Rc<Engine>>>;

/// This VM's side of the remote bundle's poll (see [`bundle`]).
#[derive(Default)]
struct BundlePoll {
    /// CAS version of the shared entry this VM's engine was built from (or refused).
    loaded_cas: Option<u32>,
    /// The fetch this VM has in flight.
    in_flight: Option<u32>,
}

#[derive(Default)]
struct Root {
    plan: Option<Rc<Plan>>,
    engine: Rc<Current>,
    metrics: Rc<Metrics>,
    keys: Rc<RefCell<Keys>>,
    poll: BundlePoll,
}

impl Keys {
    /// Follow the remote issuers of a new engine: issuers it still has keep their fetch state,
    /// and every issuer's shared keys are loaded into it by the next [`Keys::sync`].
    fn follow(&mut self, engine: &Engine) {
        let mut old = std::mem::take(&mut self.issuers);
        self.issuers = engine
            .bundle()
            .remote_issuers()
            .into_iter()
            .map(|(issuer, source)| {
                let first_url = keys::first_url(&source).to_owned();
                let first_stage = match source {
                    KeyUrl::Discovery(_) => Stage::Discovery,
                    KeyUrl::JwksUri(_) => Stage::Jwks,
                };
                let kept = old
                    .iter()
                    .position(|s| s.issuer == issuer && s.first_url == first_url)
                    .map(|i| old.swap_remove(i));
                IssuerState {
                    issuer,
                    first_url,
                    first_stage,
                    loaded_cas: None,
                    fetched_at: kept.as_ref().and_then(|s| s.fetched_at),
                    in_flight: kept.and_then(|s| s.in_flight),
                }
            })
            .collect();
    }

    /// Load keys other workers fetched into this VM's engine. Whether anything changed.
    fn sync(&mut self, engine: &Engine) -> bool {
        let mut changed = false;
        for state in &mut self.issuers {
            let Ok((Some(entry), cas)) = hostcalls::get_shared_data(&keys::keys_key(&state.issuer))
            else {
                continue;
            };
            if cas.is_some() && cas == state.loaded_cas {
                continue;
            }
            match keys::decode_keys(&entry) {
                Some((fetched_at, jwks)) => match engine.set_issuer_keys(&state.issuer, &jwks) {
                    Ok(_) => {
                        state.loaded_cas = cas;
                        state.fetched_at = Some(fetched_at);
                        changed = true;
                    }
                    Err(e) => log(
                        proxy_wasm::types::LogLevel::Warn,
                        &format!(
                            "portcullis: shared keys of `{}` refused: {}",
                            state.issuer,
                            e.info().message
                        ),
                    ),
                },
                None => state.loaded_cas = cas,
            }
        }
        changed
    }

    fn start_fetches(&mut self, config: &KeysConfig, now: i64) {
        let unknown_kid = std::mem::take(&mut self.unknown_kid);
        let timeout = Duration::from_millis(config.timeout_ms);
        let lease_for = lease_for(config.timeout_ms);
        for state in &mut self.issuers {
            if state.in_flight.is_some()
                || !keys::fetch_due(config, state.fetched_at, unknown_kid, now)
            {
                continue;
            }
            if !take_lease(
                &keys::lease_key(&state.issuer),
                now,
                now.saturating_add(lease_for),
            ) {
                continue;
            }
            match dispatch(config, &state.first_url, timeout) {
                Some(token) => state.in_flight = Some((token, state.first_stage)),
                None => fetch_failed(config, &state.issuer, now, "cannot dispatch the request"),
            }
        }
    }
}

/// How long a fetch lease is held: twice the timeout and a second, so a VM that never hears
/// back does not block the others for long.
fn lease_for(timeout_ms: u64) -> i64 {
    keys::secs(
        timeout_ms
            .div_ceil(1000)
            .saturating_mul(2)
            .saturating_add(1),
    )
}

/// Try to take the lease at shared-data `key` until `until`.
fn take_lease(key: &str, now: i64, until: i64) -> bool {
    let Ok((current, cas)) = hostcalls::get_shared_data(key) else {
        return false;
    };
    if keys::decode_lease(current.as_deref()) > now {
        return false;
    }
    hostcalls::set_shared_data(key, Some(until.to_string().as_bytes()), cas).is_ok()
}

fn set_lease(key: &str, until: i64) {
    let _ = hostcalls::set_shared_data(key, Some(until.to_string().as_bytes()), None);
}

fn fetch_failed(config: &KeysConfig, issuer: &str, now: i64, why: &str) {
    log(
        proxy_wasm::types::LogLevel::Warn,
        &format!(
            "portcullis: fetching the keys of `{issuer}` failed ({why}); keeping the last good keys"
        ),
    );
    set_lease(
        &keys::lease_key(issuer),
        now.saturating_add(keys::secs(config.retry_seconds)),
    );
}

fn dispatch(config: &KeysConfig, url: &str, timeout: Duration) -> Option<u32> {
    let (cluster, target) = config.cluster_for(url)?;
    get(cluster, &target, None, None, timeout)
}

/// `GET target` through `cluster`, with `If-None-Match` when an ETag is given.
fn get(
    cluster: &str,
    target: &Target,
    etag: Option<&str>,
    authorization: Option<&str>,
    timeout: Duration,
) -> Option<u32> {
    let mut headers = vec![
        (":method", "GET"),
        (":path", target.path.as_str()),
        (":authority", target.authority.as_str()),
        ("accept", "application/json"),
    ];
    if let Some(etag) = etag {
        headers.push(("if-none-match", etag));
    }
    if let Some(authorization) = authorization {
        headers.push(("authorization", authorization));
    }
    hostcalls::dispatch_http_call(cluster, headers, None, vec![], timeout).ok()
}

fn response_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
        .ok()
        .flatten()
}

fn response_body(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

impl Root {
    /// Use a new engine: the keys follow its remote issuers (loading the shared ones into it),
    /// then requests decide with it.
    fn install(&self, engine: Engine, source: &str) {
        let mut keys = self.keys.borrow_mut();
        keys.follow(&engine);
        keys.sync(&engine);
        log(
            proxy_wasm::types::LogLevel::Info,
            &format!(
                "portcullis: bundle revision {} in use ({source}), {} routes, {} remote issuers",
                engine.revision(),
                engine.bundle().route_count(),
                keys.issuers.len()
            ),
        );
        *self.engine.borrow_mut() = Some(Rc::new(engine));
    }

    /// Build an engine from the remote bundle in shared data, when it changed since this VM
    /// last looked.
    fn sync_bundle(&mut self, plan: &Plan, remote: &RemoteBundle) {
        let Ok((Some(entry), cas)) = hostcalls::get_shared_data(&bundle::entry_key(&remote.url))
        else {
            return;
        };
        if cas.is_some() && cas == self.poll.loaded_cas {
            return;
        }
        self.poll.loaded_cas = cas;
        let built = bundle::decode(&entry)
            .ok_or_else(|| "unreadable shared entry".to_owned())
            .and_then(|(_, bytes)| compiled(bytes))
            .and_then(|compiled| {
                plan.engine(compiled, engine_options(plan))
                    .map_err(|e| e.to_string())
            });
        match built {
            Ok(engine) => self.install(engine, "shared by another worker"),
            Err(why) => log(
                proxy_wasm::types::LogLevel::Warn,
                &format!("portcullis: the shared bundle was refused: {why}"),
            ),
        }
    }

    /// Poll the remote bundle if no worker did within the poll period.
    fn poll_bundle(
        &mut self,
        remote: &RemoteBundle,
        target: &Target,
        authorization: Option<&str>,
        now: i64,
    ) {
        let lease = bundle::lease_key(&remote.url);
        if self.poll.in_flight.is_some()
            || !take_lease(
                &lease,
                now,
                now.saturating_add(lease_for(remote.timeout_ms)),
            )
        {
            return;
        }
        let entry = hostcalls::get_shared_data(&bundle::entry_key(&remote.url))
            .ok()
            .and_then(|(entry, _)| entry);
        let etag = entry
            .as_deref()
            .and_then(bundle::decode)
            .and_then(|(etag, _)| etag);
        let timeout = Duration::from_millis(remote.timeout_ms);
        match get(&remote.cluster, target, etag, authorization, timeout) {
            Some(token) => self.poll.in_flight = Some(token),
            None => self.bundle_failed(remote, now, "cannot dispatch the request"),
        }
    }

    fn bundle_failed(&self, remote: &RemoteBundle, now: i64, why: &str) {
        let consequence = if self.engine.borrow().is_some() {
            "the previous bundle keeps serving"
        } else {
            "no bundle yet: requests are answered 503"
        };
        log(
            proxy_wasm::types::LogLevel::Warn,
            &format!(
                "portcullis: fetching the bundle from `{}` failed ({why}); {consequence}; next try in {} s",
                remote.url, remote.retry_seconds
            ),
        );
        set_lease(
            &bundle::lease_key(&remote.url),
            now.saturating_add(keys::secs(remote.retry_seconds)),
        );
    }

    /// The answer to this VM's bundle poll.
    fn on_bundle_response(&mut self, plan: &Plan, remote: &RemoteBundle, body_size: usize) {
        let now = now();
        let next_poll = now.saturating_add(keys::secs(remote.poll_seconds));
        let status = response_header(":status");
        match status.as_deref() {
            Some(b"304") => return set_lease(&bundle::lease_key(&remote.url), next_poll),
            Some(b"200") => {}
            _ => return self.bundle_failed(remote, now, "no 200 or 304 answer"),
        }
        if body_size > bundle::MAX_BUNDLE {
            return self.bundle_failed(remote, now, "bundle too large");
        }
        let body = response_body(body_size);
        let compiled = match compiled(&body) {
            Ok(compiled) => compiled,
            Err(why) => return self.refused(remote, now, &why),
        };
        let current = self.engine.borrow().clone();
        let unchanged = !compiled.revision.is_empty()
            && current.is_some_and(|engine| engine.revision() == compiled.revision)
            && compiled.compute_revision() == compiled.revision;
        if unchanged {
            // The revision in use, intact (a server without ETags): nothing to build. A bundle
            // claiming it with other content goes on to be refused.
            return set_lease(&bundle::lease_key(&remote.url), next_poll);
        }
        match plan.engine(compiled, engine_options(plan)) {
            Ok(engine) => {
                let etag = response_header("etag");
                let key = bundle::entry_key(&remote.url);
                let stored = hostcalls::set_shared_data(
                    &key,
                    Some(&bundle::encode(bundle::usable_etag(etag.as_deref()), &body)),
                    None,
                );
                if stored.is_ok() {
                    self.poll.loaded_cas = hostcalls::get_shared_data(&key)
                        .ok()
                        .and_then(|(_, cas)| cas);
                }
                self.metrics.increment(Counter::BundleUpdates);
                self.install(engine, &format!("fetched from `{}`", remote.url));
                set_lease(&bundle::lease_key(&remote.url), next_poll);
            }
            Err(e) => self.refused(remote, now, &e.to_string()),
        }
    }

    fn refused(&self, remote: &RemoteBundle, now: i64, why: &str) {
        self.metrics.increment(Counter::BundleRefused);
        self.bundle_failed(remote, now, &format!("refused: {why}"));
    }
}

/// Parse a compiled bundle (loading it, which checks everything, is [`Plan::engine`]'s).
fn compiled(bytes: &[u8]) -> Result<CompiledBundle, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not a compiled bundle: {e}"))
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, _: usize, body_size: usize, _: usize) {
        let Some(plan) = self.plan.clone() else {
            return;
        };
        if self.poll.in_flight == Some(token_id) {
            self.poll.in_flight = None;
            if let Some((remote, _)) = &plan.remote_bundle {
                self.on_bundle_response(&plan, remote, body_size);
            }
            return;
        }
        let (Some(config), Some(engine)) = (&plan.keys, self.engine.borrow().clone()) else {
            return;
        };
        let mut keys = self.keys.borrow_mut();
        let Some(state) = keys
            .issuers
            .iter_mut()
            .find(|s| s.in_flight.is_some_and(|(t, _)| t == token_id))
        else {
            return;
        };
        let stage = state.in_flight.take().map(|(_, stage)| stage);
        let now = now();
        if response_header(":status").as_deref() != Some(b"200") {
            return fetch_failed(config, &state.issuer, now, "no 200 answer");
        }
        if body_size > keys::MAX_DOCUMENT {
            return fetch_failed(config, &state.issuer, now, "document too large");
        }
        let body = response_body(body_size);
        match stage {
            Some(Stage::Discovery) => {
                let next = keys::jwks_uri(&body, &state.issuer).and_then(|uri| {
                    dispatch(config, &uri, Duration::from_millis(config.timeout_ms))
                });
                match next {
                    Some(token) => state.in_flight = Some((token, Stage::Jwks)),
                    None => fetch_failed(
                        config,
                        &state.issuer,
                        now,
                        "no usable `jwks_uri` with a cluster, or the document is another issuer's",
                    ),
                }
            }
            Some(Stage::Jwks) => {
                let parsed = serde_json::from_slice::<serde_json::Value>(&body);
                let loaded = parsed.map_err(|e| e.to_string()).and_then(|jwks| {
                    engine
                        .set_issuer_keys(&state.issuer, &jwks)
                        .map_err(|e| e.info().message)
                });
                match loaded {
                    Ok(count) => {
                        let key = keys::keys_key(&state.issuer);
                        let _ = hostcalls::set_shared_data(
                            &key,
                            Some(&keys::encode_keys(now, &body)),
                            None,
                        );
                        state.loaded_cas = hostcalls::get_shared_data(&key)
                            .ok()
                            .and_then(|(_, cas)| cas);
                        state.fetched_at = Some(now);
                        set_lease(&keys::lease_key(&state.issuer), 0);
                        log(
                            proxy_wasm::types::LogLevel::Info,
                            &format!("portcullis: loaded {count} keys of `{}`", state.issuer),
                        );
                    }
                    Err(why) => fetch_failed(config, &state.issuer, now, &why),
                }
            }
            None => {}
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _: usize) -> bool {
        self.metrics = Rc::new(Metrics::define());
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let Ok(Some(bytes)) = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        else {
            log(
                proxy_wasm::types::LogLevel::Error,
                "portcullis: no plugin configuration",
            );
            return false;
        };
        match Plan::from_json(&bytes, engine_options) {
            Ok((plan, engine)) => {
                log(
                    proxy_wasm::types::LogLevel::Info,
                    &format!(
                        "portcullis: configured, bundle {}",
                        plan.remote_bundle
                            .as_ref()
                            .map_or("inline".to_owned(), |(r, _)| format!("from `{}`", r.url))
                    ),
                );
                *self.engine.borrow_mut() = None;
                self.poll = BundlePoll::default();
                *self.keys.borrow_mut() = Keys::default();
                match engine {
                    Some(engine) => self.install(engine, "inline"),
                    None => {
                        if let Some((remote, _)) = &plan.remote_bundle {
                            // Another worker may have fetched it already.
                            self.sync_bundle(&plan, remote);
                        }
                    }
                }
                if plan.remote_bundle.is_some() || !self.keys.borrow().issuers.is_empty() {
                    let _ = hostcalls::set_tick_period(Duration::from_secs(1));
                }
                self.plan = Some(Rc::new(plan));
                true
            }
            Err(e) => {
                log(
                    proxy_wasm::types::LogLevel::Error,
                    &format!("portcullis: {e}"),
                );
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(plan) = self.plan.clone() else {
            return;
        };
        let now = now();
        if let Some((remote, target)) = &plan.remote_bundle {
            self.sync_bundle(&plan, remote);
            self.poll_bundle(remote, target, plan.bundle_authorization.as_deref(), now);
        }
        let Some(engine) = self.engine.borrow().clone() else {
            return;
        };
        let mut keys = self.keys.borrow_mut();
        keys.sync(&engine);
        if let Some(config) = &plan.keys {
            keys.start_fetches(config, now);
        }
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            plan: self.plan.clone(),
            engine: Rc::clone(&self.engine),
            metrics: Rc::clone(&self.metrics),
            keys: Rc::clone(&self.keys),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    plan: Option<Rc<Plan>>,
    engine: Rc<Current>,
    metrics: Rc<Metrics>,
    keys: Rc<RefCell<Keys>>,
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(plan) = &self.plan else {
            self.metrics.increment(Counter::Errors);
            return respond(EdgeAction::unavailable());
        };
        // No bundle yet (a remote one not fetched): no usable configuration, whatever
        // `failure_mode` says.
        let Some(engine) = self.engine.borrow().clone() else {
            self.metrics.increment(Counter::Errors);
            return respond(EdgeAction::unavailable());
        };
        let headers = RequestHeaders::read(&plan.edge.options().forward);
        let now = now();
        let mut verdict = gate::handle(plan, &engine, &headers, now);
        if verdict.keys_missing {
            // Another worker may have fetched the keys since this VM's last tick.
            let mut keys = self.keys.borrow_mut();
            if keys.sync(&engine) {
                verdict = gate::handle(plan, &engine, &headers, now);
            }
            keys.unknown_kid |= verdict.keys_missing;
        }
        if let Some(counter) = verdict.counter {
            self.metrics.increment(counter);
        }
        let level = match plan.log_level {
            LogLevel::Off => None,
            LogLevel::Debug => Some(proxy_wasm::types::LogLevel::Debug),
            LogLevel::Info => Some(proxy_wasm::types::LogLevel::Info),
            LogLevel::Warn => Some(proxy_wasm::types::LogLevel::Warn),
        };
        if let (Some(level), Some(line)) = (level, &verdict.log) {
            log(level, line);
        }
        match verdict.action {
            EdgeAction::Forward(identity) => {
                headers.forward(&identity);
                Action::Continue
            }
            respond_action @ EdgeAction::Respond { .. } => respond(respond_action),
        }
    }
}

fn respond(action: EdgeAction) -> Action {
    match action {
        EdgeAction::Respond {
            status,
            headers,
            body,
        } => {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let _ =
                hostcalls::send_http_response(u32::from(status), headers, Some(body.as_bytes()));
            Action::Pause
        }
        EdgeAction::Forward(_) => Action::Continue,
    }
}
