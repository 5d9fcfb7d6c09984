//! The engine as a sandboxed WASI component in wasmtime.
//!
//! [`Runtime`] compiles the embedded component once (Cranelift, at startup: deserialising a
//! precompiled one is `unsafe`) and keeps an [`InstancePre`](wasmtime::component::InstancePre)
//! over a pooling allocator. Every store gets a memory limit and an epoch deadline — a ticker
//! thread advances the epoch — so no call can run away or grow without bound. [`Pool`] keeps
//! idle instances for reuse: an instance serves one call at a time and is never created per
//! request. The state every instance must hold (bundle and remote keys) is a [`Loaded`]
//! generation; an instance that holds an older generation reloads before it serves.

use crate::crypto;
use portcullis_engine::{Algorithm, Curve, KeyMaterial, KeyUrl};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod wit {
    wasmtime::component::bindgen!({
        world: "portcullis",
        path: "../bindings/component/wit",
    });
}

use wit::exports::portcullis::engine::engine::{
    self as wit_engine, EdgeAction as WitEdgeAction, Error as WitError, Outcome,
};
use wit::portcullis::engine::crypto as wit_crypto;

/// The component, built by `build.rs` from `bindings/component` for wasm32-wasip2.
pub static COMPONENT_WASM: &[u8] = include_bytes!(env!("PORTCULLIS_COMPONENT_WASM"));

/// How often the epoch advances.
const TICK: Duration = Duration::from_millis(10);

/// Sandbox limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most linear memory one instance may use.
    pub memory_bytes: usize,
    /// Most instances alive at once (idle and busy).
    pub max_instances: u32,
    /// Longest a decision call may run.
    pub decide_deadline: Duration,
    /// Longest loading a bundle or keys into an instance may run.
    pub load_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            max_instances: 64,
            decide_deadline: Duration::from_secs(1),
            load_deadline: Duration::from_secs(10),
        }
    }
}

/// Why a call into the component did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The engine refused the input (a stable code and a message).
    #[error("{code}: {message}")]
    Engine {
        /// Stable error code (`request_invalid`, `bundle_invalid`, ...).
        code: String,
        /// Message; never contains a token.
        message: String,
    },
    /// The sandbox failed: a trap, the deadline, the memory limit, or no instance to be had.
    /// The instance is discarded.
    #[error("sandbox failure: {0}")]
    Sandbox(String),
}

impl From<WitError> for CallError {
    fn from(e: WitError) -> Self {
        Self::Engine {
            code: e.code,
            message: e.message,
        }
    }
}

/// One decision out of the component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    /// `allow`, `deny` or `unauthenticated`.
    pub outcome: &'static str,
    /// The HTTP status that goes with it.
    pub status: u16,
    /// The decision, JSON.
    pub decision_json: String,
    /// The audit record, JSON (no token).
    pub audit_json: String,
    /// The issuer whose keys the decision lacked: bring its key fetch forward.
    pub keys_wanted: Option<String>,
    /// The code of the decision's first error, if any.
    pub error_code: Option<String>,
    /// The verified principal's tenant, if any.
    pub tenant: Option<String>,
}

/// A signed-in user's slice of their tenant's data, cut by the component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sliced {
    /// The slice document, JSON.
    pub document_json: String,
    /// The revision of the tenant's data it was cut from.
    pub revision: u64,
    /// Its audit line, JSON (no token).
    pub audit_json: String,
}

/// Why the component cut no slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceRefused {
    /// Stable code (`token_*`, `request_invalid`, `data_other_tenant`, ...).
    pub code: String,
    /// The HTTP status that goes with it.
    pub status: u16,
    /// Message; never contains a token.
    pub message: String,
    /// The issuer whose keys the token lacked: bring its key fetch forward.
    pub keys_wanted: Option<String>,
}

/// A remote issuer whose keys the host must fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteIssuer {
    /// The issuer (`iss`).
    pub issuer: String,
    /// Where its keys are: a JWK set URL, or an OIDC discovery URL.
    pub source: KeyUrl,
    /// Whether the engine holds keys for it.
    pub has_keys: bool,
}

fn decided(d: wit_engine::Decided) -> Decided {
    Decided {
        outcome: match d.outcome {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Unauthenticated => "unauthenticated",
        },
        status: d.status,
        decision_json: d.decision_json,
        audit_json: d.audit_json,
        keys_wanted: d.keys_wanted,
        error_code: d.error_code,
        tenant: d.tenant,
    }
}

/// What every instance must hold: one generation of bundle, keys, secrets and edge options.
pub struct Loaded {
    /// Bumped on every change; instances holding another generation reload.
    pub generation: u64,
    /// The compiled bundle, JSON.
    pub bundle_json: Arc<str>,
    /// Its revision.
    pub revision: String,
    /// JWK sets (JSON) of remote issuers, by issuer.
    pub keys: Vec<(String, Arc<str>)>,
    /// HMAC secrets the bundle names, by name (never logged).
    pub secrets: crate::secrets::Secrets,
    /// Edge options (JSON) HTTP requests (ext_authz) are decided with.
    pub edge_json: Arc<str>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("generation", &self.generation)
            .field("revision", &self.revision)
            .field("issuers", &self.keys.len())
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

/// One HTTP request for [`Instance::decide_http`]: header names lowercase, repeated headers as
/// repeated pairs.
#[derive(Clone, Debug)]
pub struct HttpCheck {
    /// Method.
    pub method: String,
    /// Path and query, as the upstream will get them.
    pub path: String,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// What a gateway does with a checked request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EdgeAction {
    /// Forward with these identity headers.
    Forward(Vec<(String, String)>),
    /// Answer with this status, headers and body.
    Respond {
        /// Status.
        status: u16,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Body (JSON).
        body: String,
    },
}

/// The engine's answer to an HTTP request.
#[derive(Clone, Debug)]
pub struct EdgeVerdict {
    /// Forward or respond.
    pub action: EdgeAction,
    /// `allowed`, `denied`, `unauthenticated`, `invalid`, `unavailable`, `preflight` or
    /// `no-route`.
    pub outcome: String,
    /// The decision, when one was made.
    pub decided: Option<Decided>,
    /// The matched route's template.
    pub route: Option<String>,
}

/// The data of one store: WASI (no files, no environment, no network: only what Rust's std
/// needs, such as random bytes for hash maps) and the memory limiter.
struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit_crypto::Host for HostState {
    fn verify(
        &mut self,
        alg: wit_crypto::Algorithm,
        key: wit_crypto::KeyMaterial,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<bool, String> {
        crypto::verify(algorithm(alg), &material(key), &message, &signature)
    }

    fn sha256(&mut self, data: Vec<u8>) -> Vec<u8> {
        crypto::sha256(&data)
    }
}

fn algorithm(alg: wit_crypto::Algorithm) -> Algorithm {
    use wit_crypto::Algorithm as W;
    match alg {
        W::Hs256 => Algorithm::HS256,
        W::Hs384 => Algorithm::HS384,
        W::Hs512 => Algorithm::HS512,
        W::Rs256 => Algorithm::RS256,
        W::Rs384 => Algorithm::RS384,
        W::Rs512 => Algorithm::RS512,
        W::Ps256 => Algorithm::PS256,
        W::Ps384 => Algorithm::PS384,
        W::Ps512 => Algorithm::PS512,
        W::Es256 => Algorithm::ES256,
        W::Es384 => Algorithm::ES384,
        W::Eddsa => Algorithm::EdDSA,
    }
}

fn material(key: wit_crypto::KeyMaterial) -> KeyMaterial {
    match key {
        wit_crypto::KeyMaterial::Rsa(k) => KeyMaterial::Rsa { n: k.n, e: k.e },
        wit_crypto::KeyMaterial::Ec(k) => KeyMaterial::Ec {
            curve: match k.curve {
                wit_crypto::Curve::P256 => Curve::P256,
                wit_crypto::Curve::P384 => Curve::P384,
            },
            x: k.x,
            y: k.y,
        },
        wit_crypto::KeyMaterial::Ed25519(x) => KeyMaterial::Ed25519 { x },
        wit_crypto::KeyMaterial::Hmac(secret) => KeyMaterial::Hmac { secret },
    }
}

fn sandbox(err: impl std::fmt::Display) -> CallError {
    CallError::Sandbox(err.to_string())
}

/// A failed call: the trap's short name (`interrupt` for the deadline) rather than a wasm
/// backtrace.
fn trap(err: wasmtime::Error) -> CallError {
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => CallError::Sandbox(trap.to_string()),
        None => CallError::Sandbox(format!("{err:#}")),
    }
}

/// Advances the engine's epoch every [`TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // A ticker that panicked has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

/// The compiled component and everything needed to instantiate it quickly.
pub struct Runtime {
    engine: wasmtime::Engine,
    pre: wit::PortcullisPre<HostState>,
    limits: Limits,
    _ticker: Ticker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn ticks(deadline: Duration) -> u64 {
    // At least one full tick, so a deadline never fires before it has begun.
    u64::try_from(deadline.as_millis() / TICK.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
        + 1
}

/// Why the component runtime cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// wasmtime refused the configuration (the pooling allocator's limits).
    #[error("wasmtime: {0}")]
    Wasmtime(#[source] wasmtime::Error),
    /// The component does not compile.
    #[error("cannot compile the component: {0}")]
    Compile(#[source] wasmtime::Error),
    /// An import cannot be linked.
    #[error("cannot link {what}: {source}")]
    Link {
        /// What was being linked.
        what: &'static str,
        /// Why not.
        #[source]
        source: wasmtime::Error,
    },
    /// A thread cannot be started.
    #[error("cannot start the {what}: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
}

impl Runtime {
    /// Compile the embedded component.
    ///
    /// # Errors
    /// When wasmtime cannot set up the pooling allocator or compile or link the component.
    pub fn new(limits: Limits) -> Result<Self, SetupError> {
        Self::from_wasm(COMPONENT_WASM, limits)
    }

    /// Compile a component from bytes (the embedded one, or another build of it).
    ///
    /// # Errors
    /// As for [`Runtime::new`].
    pub fn from_wasm(wasm: &[u8], limits: Limits) -> Result<Self, SetupError> {
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(limits.max_instances)
            .total_core_instances(limits.max_instances.saturating_mul(8))
            .total_memories(limits.max_instances.saturating_mul(2))
            .total_tables(limits.max_instances.saturating_mul(8))
            .max_memory_size(limits.memory_bytes);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        let engine = wasmtime::Engine::new(&config).map_err(SetupError::Wasmtime)?;
        let component = Component::new(&engine, wasm).map_err(SetupError::Compile)?;
        let link = |what| move |source| SetupError::Link { what, source };
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link("WASI"))?;
        wit::Portcullis::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(link("the crypto import"))?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(wit::PortcullisPre::new)
            .map_err(link("the component"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (engine, stop) = (engine.clone(), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("portcullis-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|source| SetupError::Thread {
                    what: "epoch ticker",
                    source,
                })?
        };
        Ok(Self {
            engine,
            pre,
            limits,
            _ticker: Ticker {
                stop,
                thread: Some(thread),
            },
        })
    }

    /// A fresh instance with no bundle.
    ///
    /// # Errors
    /// [`CallError::Sandbox`] when the pool has no free slot or instantiation traps.
    pub fn instantiate(&self) -> Result<Instance, CallError> {
        let state = HostState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(ticks(self.limits.load_deadline));
        let bindings = self.pre.instantiate(&mut store).map_err(trap)?;
        Ok(Instance {
            store,
            bindings,
            generation: None,
            data_generation: None,
            data: HashMap::new(),
            decide_ticks: ticks(self.limits.decide_deadline),
            load_ticks: ticks(self.limits.load_deadline),
        })
    }
}

/// The tenants' stored data every instance decides with. Each [`Pool::publish_data`] makes a
/// new generation; an instance brings itself to the current one before every call, so a
/// decision made after a write was published sees it, whichever instance makes it.
#[derive(Debug, Default)]
pub struct DataState {
    /// Bumped on every change.
    pub generation: u64,
    /// Each tenant's documents.
    pub tenants: HashMap<String, Arc<TenantDocs>>,
}

/// One tenant's data, as instances load it.
#[derive(Debug)]
pub struct TenantDocs {
    /// The data, natively.
    pub data: Arc<portcullis_engine::TenantData>,
    /// The changes that led to its revision from the revision before it, when that was one
    /// step: `(since, document)`. An instance at `since` applies these instead of the
    /// snapshot.
    pub step: Option<(u64, Arc<str>)>,
    /// Its snapshot document, written the first time it is asked for.
    snapshot: std::sync::OnceLock<Arc<str>>,
}

impl TenantDocs {
    /// `data`, reached from the revision before through `step` if given.
    pub fn new(data: Arc<portcullis_engine::TenantData>, step: Option<(u64, Arc<str>)>) -> Self {
        Self {
            data,
            step,
            snapshot: std::sync::OnceLock::new(),
        }
    }

    /// The revision.
    pub fn revision(&self) -> u64 {
        self.data.revision()
    }

    /// The snapshot document (a `DataDocument`, JSON).
    pub fn snapshot(&self) -> Arc<str> {
        Arc::clone(self.snapshot.get_or_init(|| {
            Arc::from(serde_json::to_string(&self.data.document()).unwrap_or_default())
        }))
    }
}

/// One component instance: one engine, used by one caller at a time.
pub struct Instance {
    store: Store<HostState>,
    bindings: wit::Portcullis,
    generation: Option<u64>,
    /// The data generation it holds, and each tenant's revision.
    data_generation: Option<u64>,
    data: HashMap<String, u64>,
    decide_ticks: u64,
    load_ticks: u64,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// Load a bundle and keys. On failure the instance holds no generation (and reloads next time).
    ///
    /// # Errors
    /// The engine's load or key error, or a sandbox failure.
    pub fn load(&mut self, loaded: &Loaded) -> Result<(), CallError> {
        self.generation = None;
        // A new engine holds no data.
        self.data_generation = None;
        self.data.clear();
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| sandbox(format!("no random seed: {e}")))?;
        self.store.set_epoch_deadline(self.load_ticks);
        let api = self.bindings.portcullis_engine_engine();
        api.call_load(
            &mut self.store,
            &loaded.bundle_json,
            u64::from_le_bytes(seed),
        )
        .map_err(trap)??;
        for (issuer, jwks) in &loaded.keys {
            api.call_set_issuer_keys(&mut self.store, issuer, jwks)
                .map_err(trap)??;
        }
        for (name, secret) in &loaded.secrets {
            api.call_set_secret(&mut self.store, name, secret)
                .map_err(trap)??;
        }
        api.call_set_edge(&mut self.store, &loaded.edge_json)
            .map_err(trap)??;
        self.generation = Some(loaded.generation);
        Ok(())
    }

    /// Bring the instance's tenant data to `state`: each tenant whose revision differs gets its
    /// one-step changes when the instance is at their start, its snapshot otherwise; tenants
    /// gone from `state` are forgotten.
    ///
    /// # Errors
    /// The engine refused a document (the instance then holds no data generation and syncs
    /// again next time), or a sandbox failure.
    pub fn sync_data(&mut self, state: &DataState) -> Result<(), CallError> {
        if self.data_generation == Some(state.generation) {
            return Ok(());
        }
        self.data_generation = None;
        self.store.set_epoch_deadline(self.load_ticks);
        let api = self.bindings.portcullis_engine_engine();
        for (tenant, docs) in &state.tenants {
            let held = self.data.get(tenant).copied();
            if held == Some(docs.revision()) {
                continue;
            }
            let step = docs.step.as_ref().filter(|(since, _)| held == Some(*since));
            // Changes that do not apply (the instance missed a step) fall back to the snapshot.
            let stepped = match step {
                Some((_, changes)) => api
                    .call_load_tenant_data(&mut self.store, changes)
                    .map_err(trap)?
                    .ok(),
                None => None,
            };
            let revision = match stepped {
                Some(revision) => revision,
                None => api
                    .call_load_tenant_data(&mut self.store, &docs.snapshot())
                    .map_err(trap)??,
            };
            self.data.insert(tenant.clone(), revision);
        }
        let gone: Vec<String> = self
            .data
            .keys()
            .filter(|t| !state.tenants.contains_key(*t))
            .cloned()
            .collect();
        for tenant in gone {
            api.call_forget_tenant_data(&mut self.store, &tenant)
                .map_err(trap)?;
            self.data.remove(&tenant);
        }
        self.data_generation = Some(state.generation);
        Ok(())
    }

    /// Decide an HTTP request with the bundle's routes and the edge options.
    ///
    /// # Errors
    /// A sandbox failure (or no bundle loaded).
    pub fn decide_http(&mut self, request: &HttpCheck, now: i64) -> Result<EdgeVerdict, CallError> {
        self.store.set_epoch_deadline(self.decide_ticks);
        let api = self.bindings.portcullis_engine_engine();
        let wit_request = wit_engine::HttpRequest {
            method: request.method.clone(),
            path: request.path.clone(),
            headers: request.headers.clone(),
        };
        let verdict = api
            .call_decide_http(&mut self.store, &wit_request, now)
            .map_err(trap)??;
        Ok(EdgeVerdict {
            action: match verdict.action {
                WitEdgeAction::Forward(identity) => EdgeAction::Forward(identity),
                WitEdgeAction::Respond(r) => EdgeAction::Respond {
                    status: r.status,
                    headers: r.headers,
                    body: r.body,
                },
            },
            outcome: verdict.outcome,
            decided: verdict.decided.map(decided),
            route: verdict.route,
        })
    }

    /// Verify a token: its principal as JSON.
    ///
    /// # Errors
    /// The token's error (`token_*`), or a sandbox failure.
    pub fn authenticate(&mut self, token: &str, now: i64) -> Result<String, CallError> {
        self.store.set_epoch_deadline(self.decide_ticks);
        let api = self.bindings.portcullis_engine_engine();
        Ok(api
            .call_authenticate(&mut self.store, token, now)
            .map_err(trap)??)
    }

    /// Decide a token request (`POST /v1/decide` body, JSON).
    ///
    /// # Errors
    /// `request_invalid` for a malformed request, or a sandbox failure.
    pub fn decide(&mut self, request_json: &str, now: i64) -> Result<Decided, CallError> {
        self.decide_with_bearer(request_json, None, now)
    }

    /// Decide a token request whose transport carried `bearer` (`Authorization: Bearer`):
    /// the request's token, unless the request has its own (then `request_invalid`).
    ///
    /// # Errors
    /// As for [`Instance::decide`]; `request_invalid` for a token sent two ways.
    pub fn decide_with_bearer(
        &mut self,
        request_json: &str,
        bearer: Option<&str>,
        now: i64,
    ) -> Result<Decided, CallError> {
        self.store.set_epoch_deadline(self.decide_ticks);
        let api = self.bindings.portcullis_engine_engine();
        Ok(decided(
            api.call_decide(&mut self.store, request_json, bearer, now)
                .map_err(trap)??,
        ))
    }

    /// Cut the slice of `tenant`'s data the holder of `bearer` may have, for the resources of
    /// a slice `query` (`resource=<Type>/<id>&…`). The inner `Err` is the engine's refusal.
    ///
    /// # Errors
    /// A sandbox failure.
    pub fn data_slice(
        &mut self,
        tenant: &str,
        query: &str,
        bearer: &str,
        now: i64,
    ) -> Result<Result<Sliced, SliceRefused>, CallError> {
        self.store.set_epoch_deadline(self.decide_ticks);
        let api = self.bindings.portcullis_engine_engine();
        let answer = api
            .call_data_slice(&mut self.store, tenant, query, bearer, now)
            .map_err(trap)?;
        Ok(answer
            .map(|s| Sliced {
                document_json: s.document_json,
                revision: s.revision,
                audit_json: s.audit_json,
            })
            .map_err(|r| SliceRefused {
                code: r.code,
                status: r.status,
                message: r.message,
                keys_wanted: r.keys_wanted,
            }))
    }

    /// Decide a trusted-principal request (JSON).
    ///
    /// # Errors
    /// As for [`Instance::decide`].
    pub fn decide_trusted(&mut self, request_json: &str, now: i64) -> Result<Decided, CallError> {
        self.store.set_epoch_deadline(self.decide_ticks);
        let api = self.bindings.portcullis_engine_engine();
        Ok(decided(
            api.call_decide_trusted(&mut self.store, request_json, now)
                .map_err(trap)??,
        ))
    }

    /// Decide a JSON array of token requests; one result per element. `bearer`: the batch's
    /// one token, for every element (an element with its own token fails, `request_invalid`).
    ///
    /// # Errors
    /// `request_invalid` when the body is not an array, or a sandbox failure.
    pub fn decide_batch(
        &mut self,
        requests_json: &str,
        bearer: Option<&str>,
        now: i64,
    ) -> Result<Vec<Result<Decided, CallError>>, CallError> {
        self.store.set_epoch_deadline(self.decide_ticks);
        let api = self.bindings.portcullis_engine_engine();
        let results = api
            .call_decide_batch(&mut self.store, requests_json, bearer, now)
            .map_err(trap)??;
        Ok(results
            .into_iter()
            .map(|r| r.map(decided).map_err(CallError::from))
            .collect())
    }

    /// The remote issuers of the loaded bundle.
    ///
    /// # Errors
    /// A sandbox failure.
    pub fn remote_issuers(&mut self) -> Result<Vec<RemoteIssuer>, CallError> {
        self.store.set_epoch_deadline(self.decide_ticks);
        let api = self.bindings.portcullis_engine_engine();
        let issuers = api.call_remote_issuers(&mut self.store).map_err(trap)?;
        Ok(issuers
            .into_iter()
            .filter_map(|i| {
                let source = match i.kind.as_str() {
                    "jwks-uri" => KeyUrl::JwksUri(i.url),
                    "discovery" => KeyUrl::Discovery(i.url),
                    _ => return None,
                };
                Some(RemoteIssuer {
                    issuer: i.issuer,
                    source,
                    has_keys: i.has_keys,
                })
            })
            .collect())
    }

    /// The loaded bundle's revision.
    ///
    /// # Errors
    /// A sandbox failure.
    pub fn revision(&mut self) -> Result<Option<String>, CallError> {
        self.store.set_epoch_deadline(self.decide_ticks);
        let api = self.bindings.portcullis_engine_engine();
        api.call_revision(&mut self.store).map_err(trap)
    }
}

/// Reusable instances over one [`Runtime`], all brought to the current [`Loaded`] generation.
pub struct Pool {
    runtime: Runtime,
    idle: Mutex<Vec<Instance>>,
    current: arc_swap::ArcSwapOption<Loaded>,
    data: arc_swap::ArcSwap<DataState>,
    /// Serializes [`Pool::publish_data`]'s read-modify-write of `data`.
    publishing: Mutex<()>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("runtime", &self.runtime)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool with no bundle yet.
    pub fn new(runtime: Runtime) -> Self {
        Self {
            runtime,
            idle: Mutex::new(Vec::new()),
            current: arc_swap::ArcSwapOption::empty(),
            data: arc_swap::ArcSwap::from_pointee(DataState::default()),
            publishing: Mutex::new(()),
        }
    }

    /// Make these tenants' documents what every instance decides with from now on (`None`
    /// forgets a tenant). Returns the new data generation.
    pub fn publish_data(&self, changes: Vec<(String, Option<Arc<TenantDocs>>)>) -> u64 {
        let _one = self
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = self.data.load_full();
        let mut tenants = now.tenants.clone();
        for (tenant, docs) in changes {
            match docs {
                Some(docs) => tenants.insert(tenant, docs),
                None => tenants.remove(&tenant),
            };
        }
        let generation = now.generation + 1;
        self.data.store(Arc::new(DataState {
            generation,
            tenants,
        }));
        generation
    }

    /// The data every instance decides with.
    pub fn data(&self) -> Arc<DataState> {
        self.data.load_full()
    }

    /// Make `loaded` what every instance serves from now on (instances reload lazily; call
    /// [`Pool::refresh`] to do it off the request path).
    pub fn install(&self, loaded: Loaded) {
        self.current.store(Some(Arc::new(loaded)));
    }

    /// The generation being served.
    pub fn current(&self) -> Option<Arc<Loaded>> {
        self.current.load_full()
    }

    /// Bring every idle instance to the current generation (one at a time, so requests keep
    /// being served by the others).
    pub fn refresh(&self) {
        let Some(loaded) = self.current.load_full() else {
            return;
        };
        let stale: Vec<Instance> = {
            let mut idle = self.lock_idle();
            let (fresh, stale) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|i| i.generation == Some(loaded.generation));
            *idle = fresh;
            stale
        };
        for mut instance in stale {
            // A stale instance that cannot load is dropped; the next call makes a new one.
            let data = self.data.load_full();
            if instance
                .load(&loaded)
                .and_then(|()| instance.sync_data(&data))
                .is_ok()
            {
                self.lock_idle().push(instance);
            }
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `f` on an instance holding the current generation.
    ///
    /// # Errors
    /// `bundle_missing` before a bundle is installed, a load failure, or what `f` returns. An
    /// instance that failed in the sandbox is discarded, never reused.
    pub fn with<R>(
        &self,
        f: impl FnOnce(&mut Instance) -> Result<R, CallError>,
    ) -> Result<R, CallError> {
        let Some(loaded) = self.current.load_full() else {
            return Err(CallError::Engine {
                code: "bundle_missing".into(),
                message: "no bundle is loaded".into(),
            });
        };
        let popped = self.lock_idle().pop();
        let mut instance = match popped {
            Some(instance) => instance,
            None => self.runtime.instantiate()?,
        };
        let data = self.data.load();
        let result = if instance.generation == Some(loaded.generation) {
            Ok(())
        } else {
            instance.load(&loaded)
        }
        .and_then(|()| instance.sync_data(&data))
        .and_then(|()| f(&mut instance));
        if !matches!(result, Err(CallError::Sandbox(_))) {
            self.lock_idle().push(instance);
        }
        result
    }
}
