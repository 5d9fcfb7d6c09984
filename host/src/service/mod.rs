//! `portcullis serve`: the decision service over HTTP.
//!
//! Decisions run in the embedded engine component ([`crate::component::Pool`]) on the tokio
//! worker threads: a decision takes tens of microseconds, and the component's epoch deadline
//! bounds it. Everything else — reading and validating bundles, fetching keys, writing the audit
//! log — happens off the request path.
//!
//! Endpoints: `POST /v1/decide`, `POST /v1/decide/batch`, `POST /access/v1/evaluation`,
//! `POST /access/v1/evaluations` (AuthZEN), `/ext_authz/*` (Envoy ext_authz HTTP mode),
//! `GET /v1/bundle`, `GET /healthz`, `GET /readyz`, `GET /metrics`. Every error answers
//! `{"code", "message"}` with a stable code (see [`ErrorCode`]).

mod audit;
mod authzen;
mod keys;
mod metrics;
mod source;

pub use audit::AuditTarget;
pub use keys::Bounds as KeyBounds;
pub use metrics::Metrics;
pub use source::BundleSource;

use crate::component::{CallError, Decided, KeyUrl, Limits, Loaded, Pool, Runtime};
use crate::crypto::RingVerifier;
use arc_swap::ArcSwapOption;
use audit::Audit;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use portcullis_engine::{Bundle, Engine, EngineOptions};
use source::{Fetched, Watcher};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// Service settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the bundle comes from.
    pub bundle: BundleSource,
    /// Address to listen on (`127.0.0.1:0` for an ephemeral port).
    pub listen: SocketAddr,
    /// Where audit lines go.
    pub audit: AuditTarget,
    /// Audit queue length; records beyond it are dropped and counted.
    pub audit_queue: usize,
    /// How often the bundle source is checked for changes.
    pub poll_interval: Duration,
    /// Largest request body of a single decision.
    pub max_body: usize,
    /// Largest request body of a batch.
    pub max_batch_body: usize,
    /// Longest a request (including reading its body) may take.
    pub request_timeout: Duration,
    /// Sandbox limits of the engine component.
    pub limits: Limits,
    /// The time decisions are made at.
    pub clock: Clock,
    /// Caching and refetching of remote issuers' keys.
    pub key_bounds: KeyBounds,
}

/// Where the service reads the time, in unix seconds: the system clock, or a fixed time for
/// tests whose tokens were minted at a fixed time.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(now_unix))
    }

    /// Always `now`.
    pub fn fixed(now: i64) -> Self {
        Self(Arc::new(move || now))
    }

    fn now(&self) -> i64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

impl Options {
    /// Defaults for a bundle and address.
    pub fn new(bundle: BundleSource, listen: SocketAddr) -> Self {
        Self {
            bundle,
            listen,
            audit: AuditTarget::Stdout,
            audit_queue: 65_536,
            poll_interval: Duration::from_secs(2),
            max_body: 64 << 10,
            max_batch_body: 1 << 20,
            request_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            clock: Clock::system(),
            key_bounds: KeyBounds::default(),
        }
    }
}

/// The stable error codes of the HTTP edge (besides the engine's own, such as
/// `request_invalid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The body is larger than the limit (413).
    RequestTooLarge,
    /// The body is not UTF-8 or not the expected JSON (400).
    RequestInvalid,
    /// No bundle is loaded yet (503).
    NotReady,
    /// The engine sandbox failed; the request is denied (503).
    Unavailable,
}

impl ErrorCode {
    /// The code as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestTooLarge => "request_too_large",
            Self::RequestInvalid => "request_invalid",
            Self::NotReady => "not_ready",
            Self::Unavailable => "unavailable",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestInvalid => StatusCode::BAD_REQUEST,
            Self::NotReady | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"code": code, "message": message}).to_string();
    json_response(status, body)
}

/// An answer given before (or instead of) a decision: an error response, boxed because
/// responses are large.
type Early = Box<Response>;

/// One element of a batch: a decision, or the `(code, message)` of why there is none.
type BatchItem = Result<Decided, (String, String)>;

fn edge_error(code: ErrorCode, message: &str) -> Response {
    error_response(code.status(), code.as_str(), message)
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The bundle being served.
struct Served {
    /// Compiled JSON, for the component and for `GET /v1/bundle`.
    json: Arc<str>,
    etag: HeaderValue,
    /// Loaded natively, to validate fetched keys against.
    bundle: Arc<Bundle>,
    /// Remote issuers of this bundle; the service is ready once each has keys.
    remote: Vec<(String, KeyUrl)>,
}

/// When an issuer's keys are fetched next.
#[derive(Clone, Copy, Debug)]
struct KeyState {
    next_fetch: Instant,
    last_early: Option<Instant>,
}

/// Everything the handlers share.
struct Shared {
    pool: Pool,
    metrics: Arc<Metrics>,
    audit: Audit,
    served: ArcSwapOption<Served>,
    /// JWK sets of remote issuers (JSON), by issuer.
    keys: Mutex<Vec<(String, Arc<str>)>>,
    key_state: Mutex<HashMap<String, KeyState>>,
    keys_wake: Notify,
    key_bounds: KeyBounds,
    generation: AtomicU64,
    max_body: usize,
    max_batch_body: usize,
    clock: Clock,
}

impl Shared {
    /// Serve `fetched` from now on: instances reload lazily, and in the background right away.
    fn install(&self, fetched: Fetched) {
        let remote: Vec<(String, KeyUrl)> = fetched
            .bundle
            .remote_issuers()
            .into_iter()
            .filter_map(|(issuer, source)| keys::key_url(&source).map(|url| (issuer, url)))
            .collect();
        self.lock_keys()
            .retain(|(issuer, _)| remote.iter().any(|(i, _)| i == issuer));
        let revision = fetched.bundle.revision().to_owned();
        let etag = HeaderValue::from_str(&format!("\"{revision}\""))
            .unwrap_or(HeaderValue::from_static("\"\""));
        self.served.store(Some(Arc::new(Served {
            json: Arc::from(fetched.json),
            etag,
            bundle: Arc::new(fetched.bundle),
            remote,
        })));
        self.publish();
        self.keys_wake.notify_one();
    }

    /// Hand the current bundle and keys to the pool as a new generation.
    fn publish(&self) {
        let Some(served) = self.served.load_full() else {
            return;
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.pool.install(Loaded {
            generation,
            bundle_json: Arc::clone(&served.json),
            revision: served.bundle.revision().to_owned(),
            keys: self.lock_keys().clone(),
        });
    }

    fn lock_keys(&self) -> std::sync::MutexGuard<'_, Vec<(String, Arc<str>)>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_key_state(&self) -> std::sync::MutexGuard<'_, HashMap<String, KeyState>> {
        self.key_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A token named a key id the engine does not know: fetch that issuer's keys early, at
    /// most once per cooldown.
    fn unknown_kid(&self, decided: &Decided) {
        if decided.outcome != "unauthenticated"
            || !decided.decision_json.contains("token_unknown_kid")
        {
            return;
        }
        let Some(issuer) = serde_json::from_str::<serde_json::Value>(&decided.audit_json)
            .ok()
            .and_then(|a| a.get("issuer")?.as_str().map(str::to_owned))
        else {
            return;
        };
        let now = Instant::now();
        let mut states = self.lock_key_state();
        let Some(state) = states.get_mut(&issuer) else {
            return;
        };
        if state
            .last_early
            .is_none_or(|t| now.duration_since(t) >= self.key_bounds.unknown_kid_cooldown)
        {
            state.last_early = Some(now);
            state.next_fetch = now;
            drop(states);
            self.keys_wake.notify_one();
        }
    }

    fn ready(&self) -> bool {
        let Some(served) = self.served.load_full() else {
            return false;
        };
        let keys = self.lock_keys();
        served
            .remote
            .iter()
            .all(|(issuer, _)| keys.iter().any(|(i, _)| i == issuer))
    }

    /// Run one decision through the component and account for it.
    fn decide(
        &self,
        f: impl FnOnce(&mut crate::component::Instance) -> Result<Decided, CallError>,
    ) -> Result<Decided, Early> {
        let start = Instant::now();
        let result = self.pool.with(f);
        match result {
            Ok(decided) => {
                self.metrics.decision(decided.outcome, start.elapsed());
                Ok(decided)
            }
            Err(err) => {
                self.metrics.decision("error", start.elapsed());
                Err(Box::new(self.call_error(&err)))
            }
        }
    }

    fn call_error(&self, err: &CallError) -> Response {
        match err {
            CallError::Engine { code, message } if code == "bundle_missing" => {
                edge_error(ErrorCode::NotReady, message)
            }
            CallError::Engine { code, message } => {
                error_response(StatusCode::BAD_REQUEST, code, message)
            }
            CallError::Sandbox(why) => {
                eprintln!("portcullis: engine sandbox failure, request denied: {why}");
                edge_error(
                    ErrorCode::Unavailable,
                    "the decision engine failed; the request is denied",
                )
            }
        }
    }

    /// Log the decision, and react to an unknown key id.
    fn audit(&self, decided: &Decided) {
        self.unknown_kid(decided);
        self.audit.record(decided.audit_json.clone());
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Read a whole body of at most `limit` bytes as UTF-8.
async fn read_body(body: Body, limit: usize) -> Result<String, Early> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        Box::new(edge_error(
            ErrorCode::RequestTooLarge,
            &format!("the request body is larger than {limit} bytes"),
        ))
    })?;
    String::from_utf8(bytes.into()).map_err(|_| {
        Box::new(edge_error(
            ErrorCode::RequestInvalid,
            "the request body is not UTF-8",
        ))
    })
}

async fn decide(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let body = match read_body(request.into_body(), shared.max_body).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    match shared.decide(|i| i.decide(&body, shared.clock.now())) {
        Ok(decided) => {
            shared.audit(&decided);
            json_response(StatusCode::OK, decided.decision_json)
        }
        Err(response) => *response,
    }
}

/// Decide a JSON array of requests; answer `{"decisions": [...]}` with, per element, the
/// decision or `{"error": {"code", "message"}}`.
async fn decide_batch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let body = match read_body(request.into_body(), shared.max_batch_body).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    match batch(&shared, &body) {
        Ok(results) => {
            let items: Vec<String> = results
                .into_iter()
                .map(|r| match r {
                    Ok(decided) => decided.decision_json,
                    Err(e) => {
                        serde_json::json!({"error": {"code": e.0, "message": e.1}}).to_string()
                    }
                })
                .collect();
            json_response(
                StatusCode::OK,
                format!("{{\"decisions\":[{}]}}", items.join(",")),
            )
        }
        Err(response) => *response,
    }
}

/// Run a batch, counting and auditing each decision.
fn batch(shared: &Shared, body: &str) -> Result<Vec<BatchItem>, Early> {
    let start = Instant::now();
    let results = shared
        .pool
        .with(|i| i.decide_batch(body, shared.clock.now()))
        .map_err(|e| {
            shared.metrics.decision("error", start.elapsed());
            Box::new(shared.call_error(&e))
        })?;
    let elapsed = start.elapsed() / u32::try_from(results.len().max(1)).unwrap_or(u32::MAX);
    Ok(results
        .into_iter()
        .map(|r| match r {
            Ok(decided) => {
                shared.metrics.decision(decided.outcome, elapsed);
                shared.audit(&decided);
                Ok(decided)
            }
            Err(CallError::Engine { code, message }) => {
                shared.metrics.decision("error", elapsed);
                Err((code, message))
            }
            Err(CallError::Sandbox(why)) => {
                shared.metrics.decision("error", elapsed);
                Err((ErrorCode::Unavailable.as_str().to_owned(), why))
            }
        })
        .collect())
}

async fn bundle(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some(served) = shared.served.load_full() else {
        return edge_error(ErrorCode::NotReady, "no bundle is loaded");
    };
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == served.etag.to_str().unwrap_or("") || tag.trim() == "*");
    if matches {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, served.etag.clone())],
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, served.etag.clone()),
        ],
        served.json.to_string(),
    )
        .into_response()
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        shared.metrics.render(),
    )
        .into_response()
}

fn router(shared: Arc<Shared>, timeout: Duration) -> Router {
    Router::new()
        .route("/v1/decide", post(decide))
        .route("/v1/decide/batch", post(decide_batch))
        .route("/access/v1/evaluation", post(authzen::evaluation))
        .route("/access/v1/evaluations", post(authzen::evaluations))
        .route("/ext_authz", any(authzen::ext_authz))
        .route("/ext_authz/{*path}", any(authzen::ext_authz))
        .route("/v1/bundle", get(bundle))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // Bodies are read with explicit limits (`read_body`), answering a stable error code.
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(shared)
}

/// A running service.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    reload: Arc<Notify>,
    shutdown: watch::Sender<bool>,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    watcher: tokio::task::JoinHandle<()>,
    keys: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Compile the engine component, load the bundle, bind, and start serving.
    ///
    /// # Errors
    /// The component cannot be set up, the bundle cannot be loaded (a bad bundle at startup is
    /// fatal; later ones are refused), or the address cannot be bound.
    pub async fn start(options: Options) -> Result<Self, String> {
        let limits = options.limits.clone();
        let runtime = tokio::task::spawn_blocking(move || Runtime::new(limits))
            .await
            .map_err(|e| e.to_string())??;
        let metrics = Arc::new(Metrics::default());
        let audit = Audit::start(&options.audit, options.audit_queue, Arc::clone(&metrics))?;
        let shared = Arc::new(Shared {
            pool: Pool::new(runtime),
            metrics,
            audit,
            served: ArcSwapOption::empty(),
            keys: Mutex::new(Vec::new()),
            key_state: Mutex::new(HashMap::new()),
            keys_wake: Notify::new(),
            key_bounds: options.key_bounds,
            generation: AtomicU64::new(0),
            max_body: options.max_body,
            max_batch_body: options.max_batch_body,
            clock: options.clock.clone(),
        });
        let mut watcher = Watcher::new(options.bundle.clone());
        let (watcher, first) = tokio::task::spawn_blocking(move || {
            let first = watcher.poll(true);
            (watcher, first)
        })
        .await
        .map_err(|e| e.to_string())?;
        match first {
            Ok(Some(fetched)) => shared.install(fetched),
            Ok(None) => return Err("the bundle source answered nothing".into()),
            Err(e) => return Err(format!("cannot load the bundle: {e}")),
        }
        let warm = Arc::clone(&shared);
        tokio::task::spawn_blocking(move || warm.pool.refresh());
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (shutdown, mut stop) = watch::channel(false);
        let app = router(Arc::clone(&shared), options.request_timeout);
        let http = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .into_future(),
        );
        let keys_task = tokio::spawn(watch_keys(Arc::clone(&shared), shutdown.subscribe()));
        let reload = Arc::new(Notify::new());
        let watcher = tokio::spawn(watch_bundle(
            watcher,
            Arc::clone(&shared),
            Arc::clone(&reload),
            shutdown.subscribe(),
            options.poll_interval,
        ));
        Ok(Self {
            addr,
            shared,
            reload,
            shutdown,
            http,
            watcher,
            keys: keys_task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Check the bundle source now and reload if it changed (what SIGHUP does).
    pub fn reload(&self) {
        self.reload.notify_one();
    }

    /// Whether a bundle and the keys of all its remote issuers are loaded (`GET /readyz`).
    pub fn ready(&self) -> bool {
        self.shared.ready()
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Stop accepting connections, finish the requests in flight, and stop.
    ///
    /// # Errors
    /// When the HTTP server failed.
    pub async fn shutdown(self) -> Result<(), String> {
        let _ = self.shutdown.send(true);
        let _ = self.watcher.await;
        let _ = self.keys.await;
        match self.http.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Poll the bundle source; install each valid new bundle, refuse and report invalid ones.
async fn watch_bundle(
    mut watcher: Watcher,
    shared: Arc<Shared>,
    reload: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    interval: Duration,
) {
    loop {
        let force = tokio::select! {
            () = tokio::time::sleep(interval) => false,
            () = reload.notified() => true,
            _ = stop.wait_for(|s| *s) => return,
        };
        let polled = tokio::task::spawn_blocking(move || {
            let result = watcher.poll(force);
            (watcher, result)
        })
        .await;
        let Ok((returned, result)) = polled else {
            eprintln!("portcullis: the bundle watcher failed; reloads stop");
            return;
        };
        watcher = returned;
        match result {
            Ok(None) => {}
            Ok(Some(fetched)) => {
                let current = shared.pool.current().map(|l| l.revision.clone());
                if current.as_deref() == Some(fetched.bundle.revision()) {
                    continue;
                }
                eprintln!(
                    "portcullis: bundle revision {} loaded",
                    fetched.bundle.revision()
                );
                shared.install(fetched);
                shared.metrics.reload(true);
                let warm = Arc::clone(&shared);
                // Bring idle instances to the new bundle before requests need them.
                let _ = tokio::task::spawn_blocking(move || warm.pool.refresh()).await;
            }
            Err(e) => {
                shared.metrics.reload(false);
                eprintln!("portcullis: new bundle refused, the previous one keeps serving: {e}");
            }
        }
    }
}

/// Fetch remote issuers' keys when due: first load, `max-age` expiry, retry after a failure,
/// or an unknown key id. One issuer at a time.
async fn watch_keys(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let bounds = shared.key_bounds;
    let agent = source::http_agent(bounds.timeout);
    loop {
        let Some(served) = shared.served.load_full() else {
            return;
        };
        for (issuer, url) in &served.remote {
            let now = Instant::now();
            let due = shared
                .lock_key_state()
                .get(issuer)
                .is_none_or(|s| now >= s.next_fetch);
            if !due {
                continue;
            }
            let (agent, url) = (agent.clone(), url.clone());
            let fetched = tokio::task::spawn_blocking(move || keys::fetch(&agent, &url, &bounds))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
            // Validate against the bundle natively before any instance sees the keys.
            let validated = fetched.and_then(|f| {
                let engine = Engine::with_options(
                    Arc::clone(&served.bundle),
                    EngineOptions {
                        verifier: Arc::new(RingVerifier),
                        decision_id_seed: 0,
                    },
                );
                engine
                    .set_issuer_keys(issuer, &f.jwks)
                    .map(|_| f)
                    .map_err(|e| e.to_string())
            });
            let next_fetch = match validated {
                Ok(f) => {
                    shared.metrics.key_fetch(true);
                    let jwks: Arc<str> = Arc::from(f.jwks.to_string());
                    let changed = {
                        let mut keys = shared.lock_keys();
                        let old = keys.iter().position(|(i, _)| i == issuer);
                        let changed = old
                            .and_then(|i| keys.get(i))
                            .is_none_or(|(_, k)| **k != *jwks);
                        if let Some(i) = old {
                            keys.remove(i);
                        }
                        keys.push((issuer.clone(), jwks));
                        changed
                    };
                    if changed {
                        shared.publish();
                        let warm = Arc::clone(&shared);
                        let _ = tokio::task::spawn_blocking(move || warm.pool.refresh()).await;
                    }
                    now + f.max_age
                }
                Err(e) => {
                    shared.metrics.key_fetch(false);
                    eprintln!(
                        "portcullis: keys of `{issuer}` not refreshed, the last good keys stay: {e}"
                    );
                    now + bounds.retry
                }
            };
            let mut states = shared.lock_key_state();
            let state = states.entry(issuer.clone()).or_insert(KeyState {
                next_fetch,
                last_early: None,
            });
            state.next_fetch = next_fetch;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shared.keys_wake.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
