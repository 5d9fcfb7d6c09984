//! `portcullis serve`: the decision service over HTTP.
//!
//! Two listeners. The **decision listener** (`--listen`) answers decisions — `POST
//! /v1/decide`, `POST /v1/decide/batch`, AuthZEN (`/access/v1/evaluation[s]`), Envoy
//! ext_authz (`/ext_authz/*`) — a signed-in user's own tenant bundle (`GET /v1/bundle/tenant`,
//! authenticated by the user's token) and the health probes. The **admin listener**
//! (`--admin-listen`, off by default; bound to loopback, or authenticated with
//! `--admin-token-file` or mutual TLS) serves what only operators may see: the whole compiled
//! bundle, any tenant's bundle, metrics. Either listener can speak TLS instead of plain HTTP
//! ([`TlsFiles`]; certificates are re-read on [`Server::reload`]). Every error answers
//! `{"code", "message"}` with a stable code ([`ErrorCode`]).
//!
//! Decisions never run on the async workers: they go to a few decision threads through
//! bounded queues ([`workers`]), a full queue is a 503 with `Retry-After`, and probes never
//! queue. Inputs are bounded before they are expanded (bodies, batch items, AuthZEN's
//! inherited defaults), connections are capped with idle eviction, and headers and idle
//! connections have deadlines ([`listener`]). Reading and validating bundles, fetching keys
//! and writing the audit log happen off the request path.

mod admin;
mod audit;
mod authzen;
mod data;
mod decide;
mod ext_authz;
mod http;
mod keys;
pub mod listener;
mod metrics;
mod ready;
mod source;
mod tls;
pub mod workers;

pub use admin::{Credential, CredentialError};
pub use audit::{AuditMode, AuditOptions, AuditTarget};
pub use data::DataOptions;
pub use keys::KeyOptions;
pub use listener::ConnectionLimits;
pub use metrics::Metrics;
pub use source::{BundleSource, InsecureUrl, Refusal};
pub use tls::{Tls, TlsError, TlsFiles};
pub use workers::WorkerLimits;

use crate::component::{CallError, Decided, Instance, Limits, Loaded, Pool, Runtime, SetupError};
use crate::secrets::{SecretError, SecretSource};
use arc_swap::ArcSwapOption;
use audit::Audit;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_engine::{Bundle, BundleTrust, EdgeConfigError, EdgeOptions};
use source::{Fetched, Polled, Watcher};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use workers::{Busy, Priority, Workers};

/// Service settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the bundle comes from.
    pub bundle: BundleSource,
    /// The decision listener (`127.0.0.1:0` for an ephemeral port).
    pub listen: SocketAddr,
    /// The admin listener (bundle, metrics), if any.
    pub admin_listen: Option<SocketAddr>,
    /// The bearer credential the admin listener requires (off loopback, this or mutual TLS is
    /// required).
    pub admin_token: Option<Credential>,
    /// TLS of the decision listener (then it speaks only TLS).
    pub tls: Option<TlsFiles>,
    /// TLS of the admin listener; with `client_ca`, mutual TLS, which authenticates the admin
    /// listener's clients off loopback as a credential does (both: both are required).
    pub admin_tls: Option<TlsFiles>,
    /// The bearer credential an AuthZEN PEP must present, if any. It only authenticates the
    /// PEP: the subject of a decision always comes from the request body.
    pub pep_token: Option<Credential>,
    /// Where audit lines go, and what a decision waits for before it is answered.
    pub audit: AuditOptions,
    /// The access log: one JSON line per request of the decision listener (`Off` by default).
    pub access_log: AuditTarget,
    /// Count decisions by tenant too (`portcullis_tenant_decisions_total`; a label per tenant
    /// of the bundle).
    pub tenant_metrics: bool,
    /// How often the bundle source is checked for changes.
    pub poll_interval: Duration,
    /// Input bounds.
    pub input: InputLimits,
    /// Longest a request (including reading its body) may take.
    pub request_timeout: Duration,
    /// Sandbox limits of the engine component.
    pub limits: Limits,
    /// Decision threads and their queues.
    pub workers: WorkerLimits,
    /// Connection cap and deadlines (each listener has its own).
    pub connections: ConnectionLimits,
    /// The time decisions are made at.
    pub clock: Clock,
    /// Caching and refetching of remote issuers' keys.
    pub keys: KeyOptions,
    /// Where the secrets of HMAC issuers are read.
    pub secrets: SecretSource,
    /// Public keys bundles must be signed with; when set, unsigned bundles are refused from
    /// every source.
    pub bundle_trust: Option<BundleTrust>,
    /// How ext_authz decides HTTP requests (token sources, identity headers, ...).
    pub edge: EdgeOptions,
    /// Where the tenants' stored data is kept, for bundles that store entities (`None`: such
    /// bundles are refused).
    pub data: Option<DataOptions>,
}

/// Why the service cannot start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An admin listener off loopback needs a credential.
    #[error(
        "the admin listener `{0}` is not on loopback: give it a credential with `--admin-token-file`, or mutual TLS with `--admin-client-ca`"
    )]
    AdminOffLoopback(SocketAddr),
    /// A listener's TLS files cannot be used (it does not start, in TLS or otherwise).
    #[error("TLS of the {listener} listener: {source}")]
    Tls {
        /// `decision` or `admin`.
        listener: &'static str,
        /// Why not.
        #[source]
        source: TlsError,
    },
    /// The edge options do not hold together.
    #[error("edge options: {0}")]
    Edge(#[source] EdgeConfigError),
    /// The edge options cannot be written for the component (not expected to happen).
    #[error("edge options: {0}")]
    EdgeJson(#[from] serde_json::Error),
    /// The component runtime or a thread cannot be set up.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The audit log cannot be opened.
    #[error("cannot open the audit log `{}`: {source}", .path.display())]
    AuditLog {
        /// The file.
        path: std::path::PathBuf,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// The first bundle cannot be loaded (later ones are refused and the last good one kept).
    #[error("cannot load the bundle: {0}")]
    Bundle(#[source] Refusal),
    /// The source gave no bundle.
    #[error("the bundle source answered nothing")]
    NoBundle,
    /// An address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// A task of the server panicked or was cancelled.
    #[error("a service task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Why a valid bundle cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A route reads one of ext_authz's identity headers.
    #[error("the bundle cannot be used with the edge options: {0}")]
    Edge(#[source] EdgeConfigError),
    /// A secret it names cannot be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// It stores data and the data store cannot be opened.
    #[error("the data store cannot be opened: {0}")]
    Store(#[source] crate::store::StoreError),
    /// It stores data and the service was started without a store.
    #[error("the bundle stores entities and this service has no data store (`--store`)")]
    NoStore,
}

/// Input bounds, checked before anything is expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputLimits {
    /// Largest body of a single decision.
    pub max_body: usize,
    /// Largest body of a batch (and largest AuthZEN batch once every item has its defaults).
    pub max_batch_body: usize,
    /// Most items of a batch or AuthZEN `evaluations`.
    pub max_batch_items: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            max_body: 64 << 10,
            max_batch_body: 1 << 20,
            max_batch_items: 1000,
        }
    }
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
            admin_listen: None,
            admin_token: None,
            tls: None,
            admin_tls: None,
            pep_token: None,
            audit: AuditOptions::default(),
            tenant_metrics: false,
            access_log: AuditTarget::Off,
            poll_interval: Duration::from_secs(2),
            input: InputLimits::default(),
            request_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            workers: WorkerLimits::default(),
            connections: ConnectionLimits::default(),
            clock: Clock::system(),
            keys: KeyOptions::default(),
            secrets: SecretSource::default(),
            bundle_trust: None,
            edge: EdgeOptions::default(),
            data: None,
        }
    }
}

/// The stable error codes of the HTTP edge (besides the engine's own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The body, the number of batch items or the expanded batch is over its limit (413).
    RequestTooLarge,
    /// The body is not UTF-8 or not the expected JSON (400).
    RequestInvalid,
    /// No bundle is loaded yet (503).
    NotReady,
    /// The engine sandbox failed; the request is denied (503).
    Unavailable,
    /// The decision queues are full; retry after the `Retry-After` seconds (503).
    Overloaded,
    /// A credential is missing or wrong (401).
    Unauthenticated,
    /// No such endpoint (404).
    NotFound,
    /// The endpoint exists, not for this method (405, with `Allow`).
    MethodNotAllowed,
}

impl ErrorCode {
    /// The code as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestTooLarge => "request_too_large",
            Self::RequestInvalid => "request_invalid",
            Self::NotReady => "not_ready",
            Self::Unavailable => "unavailable",
            Self::Overloaded => "overloaded",
            Self::Unauthenticated => "unauthenticated",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestInvalid => StatusCode::BAD_REQUEST,
            Self::NotReady | Self::Unavailable | Self::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
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

fn edge_error(code: ErrorCode, message: &str) -> Response {
    let mut response = error_response(code.status(), code.as_str(), message);
    if matches!(code, ErrorCode::Overloaded | ErrorCode::NotReady) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
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
    /// Compiled JSON, for the component and the admin listener's `GET /v1/bundle`. Never holds
    /// a secret: the engine refuses bundles that do.
    json: Arc<str>,
    etag: HeaderValue,
    /// Loaded natively, to validate fetched keys against and to cut tenant bundles from.
    bundle: Arc<Bundle>,
    /// The secrets it names, read when it was installed.
    secrets: crate::secrets::Secrets,
    /// Tenant bundles cut so far, by tenant: `(etag, json)`.
    tenants: Mutex<HashMap<String, (HeaderValue, Arc<str>)>>,
}

/// Everything the handlers share.
struct Shared {
    pool: Pool,
    workers: Workers,
    metrics: Arc<Metrics>,
    audit: Audit,
    /// The access log (best effort: a full queue drops lines).
    access: Audit,
    served: ArcSwapOption<Served>,
    /// Remote issuers' keys and their schedule.
    keys: keys::Keys,
    generation: AtomicU64,
    input: InputLimits,
    clock: Clock,
    secrets: SecretSource,
    /// The edge options, natively: every bundle's routes are checked against them.
    edge: portcullis_engine::Edge,
    edge_json: Arc<str>,
    /// The identity headers ext_authz may forward (`edge.forward`).
    identity_headers: Vec<String>,
    pep_token: Option<Credential>,
    admin_token: Option<Credential>,
    /// The data store, opened with the first bundle that stores entities.
    data: std::sync::OnceLock<Arc<data::Data>>,
    data_options: Option<DataOptions>,
}

impl Shared {
    /// Serve `fetched` from now on (instances reload lazily, and in the background right
    /// away), once the secrets it names are read; `false` when its revision is already served.
    ///
    /// # Errors
    /// A route reads one of ext_authz's identity headers, or a secret it names cannot be read:
    /// the bundle is not installed.
    fn install(&self, fetched: Fetched) -> Result<bool, InstallError> {
        let current = self.served.load();
        if current
            .as_ref()
            .is_some_and(|served| served.bundle.revision() == fetched.bundle.revision())
        {
            return Ok(false);
        }
        self.edge
            .check_bundle(&fetched.bundle)
            .map_err(InstallError::Edge)?;
        let secrets = self.secrets.resolve(&fetched.bundle)?;
        if !fetched.bundle.compiled().settings.data.stored.is_empty() {
            // The tenants' data, checked against the new bundle, before any instance serves it.
            if self.data.get().is_none() {
                let options = self.data_options.clone().ok_or(InstallError::NoStore)?;
                let opened = data::Data::open(options).map_err(InstallError::Store)?;
                let _ = self.data.set(Arc::new(opened));
            }
            self.load_all_data(&fetched.bundle);
        }
        self.keys.follow(&fetched.bundle.remote_issuers());
        let revision = fetched.bundle.revision().to_owned();
        let etag = HeaderValue::from_str(&format!("\"{revision}\""))
            .unwrap_or(HeaderValue::from_static("\"\""));
        self.served.store(Some(Arc::new(Served {
            json: Arc::from(fetched.json),
            etag,
            bundle: Arc::new(fetched.bundle),
            secrets,
            tenants: Mutex::new(HashMap::new()),
        })));
        self.metrics.bundle_loaded(&revision, now_unix());
        self.publish();
        Ok(true)
    }

    /// Hand the current bundle, keys and secrets to the pool as a new generation.
    fn publish(&self) {
        let Some(served) = self.served.load_full() else {
            return;
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.pool.install(Loaded {
            generation,
            bundle_json: Arc::clone(&served.json),
            revision: served.bundle.revision().to_owned(),
            keys: self.keys.current(),
            secrets: served.secrets.clone(),
            edge_json: Arc::clone(&self.edge_json),
        });
    }

    /// Run `f` on a component instance, on a decision thread.
    async fn run<R: Send + 'static>(
        self: &Arc<Self>,
        priority: Priority,
        f: impl FnOnce(&mut Instance) -> Result<R, CallError> + Send + 'static,
    ) -> Result<R, Early> {
        let shared = Arc::clone(self);
        let receiver = self
            .workers
            .submit(priority, move || shared.pool.with(f))
            .map_err(|Busy| self.overloaded())?;
        self.outcome(receiver.await)
    }

    /// The 503 of full queues.
    fn overloaded(&self) -> Early {
        self.metrics.overloaded();
        Box::new(edge_error(
            ErrorCode::Overloaded,
            "the decision queues are full; retry shortly",
        ))
    }

    fn outcome<R>(
        &self,
        received: Result<Result<R, CallError>, tokio::sync::oneshot::error::RecvError>,
    ) -> Result<R, Early> {
        match received {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(err)) => Err(Box::new(self.call_error(&err))),
            // The decision thread dropped the job (it panicked): fail closed.
            Err(_) => Err(Box::new(edge_error(
                ErrorCode::Unavailable,
                "the decision engine failed; the request is denied",
            ))),
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
                crate::log::error(&format!("engine sandbox failure, request denied: {why}"));
                edge_error(
                    ErrorCode::Unavailable,
                    "the decision engine failed; the request is denied",
                )
            }
        }
    }

    /// Count and log a decision, and react to an unknown key id; `Err` is the answer when
    /// the audit log (`no-drop`, `committed`) did not take the record in time: the decision
    /// is withheld, never answered without its record.
    async fn record(&self, decided: &Decided, elapsed: Duration) -> Result<(), Early> {
        self.record_all([decided], elapsed).await
    }

    /// [`Shared::record`] for a batch: one record not taken withholds them all.
    async fn record_all<'a>(
        &self,
        decided: impl IntoIterator<Item = &'a Decided>,
        elapsed: Duration,
    ) -> Result<(), Early> {
        let mut lines = Vec::new();
        for decided in decided {
            self.metrics.decision(decided.outcome, elapsed);
            self.metrics.decided(
                decided.outcome,
                decided.error_code.as_deref(),
                decided.tenant.as_deref(),
            );
            if let Some(issuer) = &decided.keys_wanted {
                self.keys.wanted(issuer);
            }
            lines.push(decided.audit_json.clone());
        }
        self.audit
            .record_all(lines)
            .await
            .map_err(|_| self.audit_withheld())
    }

    /// The answer to a decision whose record the audit log did not take.
    fn audit_withheld(&self) -> Early {
        crate::log::error("the audit log did not take a record in time; the decision is withheld");
        Box::new(edge_error(
            ErrorCode::Overloaded,
            "the audit log is not keeping up; the decision is withheld",
        ))
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Read a whole body of at most `limit` bytes as UTF-8. A declared length over the limit is
/// refused before a byte is read.
async fn read_body(shared: &Shared, body: Body, limit: usize) -> Result<String, Early> {
    let too_large = || {
        shared.metrics.too_large();
        Box::new(edge_error(
            ErrorCode::RequestTooLarge,
            &format!("the request body is larger than {limit} bytes"),
        ))
    };
    // A declared `content-length` is the body's lower bound: over the limit, nothing is read.
    if usize::try_from(axum::body::HttpBody::size_hint(&body).lower()).map_or(true, |n| n > limit) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    String::from_utf8(bytes.into()).map_err(|_| {
        Box::new(edge_error(
            ErrorCode::RequestInvalid,
            "the request body is not UTF-8",
        ))
    })
}

/// A running service.
pub struct Server {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    /// The listeners' TLS, decision then admin.
    tls: [Option<Arc<Tls>>; 2],
    shared: Arc<Shared>,
    reload: Arc<Notify>,
    reload_tls: Arc<Notify>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("admin_addr", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Compile the engine component, load the bundle, bind, and start serving.
    ///
    /// # Errors
    /// The component cannot be set up, the bundle cannot be loaded (a bad bundle at startup is
    /// fatal; later ones are refused), a secret it names cannot be read, an address cannot be
    /// bound, a listener's TLS files cannot be used, or the admin listener would be reachable
    /// off loopback without a credential or mutual TLS.
    pub async fn start(options: Options) -> Result<Self, StartError> {
        let mutual = options
            .admin_tls
            .as_ref()
            .is_some_and(|tls| tls.client_ca.is_some());
        if let Some(admin) = options.admin_listen
            && !admin.ip().is_loopback()
            && options.admin_token.is_none()
            && !mutual
        {
            return Err(StartError::AdminOffLoopback(admin));
        }
        // Before anything slow: a TLS mistake is reported at once, and never served around.
        let tls = |listener: &'static str, files: &Option<TlsFiles>| {
            files
                .clone()
                .map(|files| Tls::load(files).map(Arc::new))
                .transpose()
                .map_err(|source| StartError::Tls { listener, source })
        };
        let tls = [
            tls("decision", &options.tls)?,
            match options.admin_listen {
                Some(_) => tls("admin", &options.admin_tls)?,
                None => None,
            },
        ];
        let edge = portcullis_engine::Edge::new(options.edge.clone()).map_err(StartError::Edge)?;
        let edge_json: Arc<str> = Arc::from(serde_json::to_string(edge.options())?);
        let limits = options.limits.clone();
        crate::log::info("compiling the engine component (once per start; seconds)");
        let runtime = tokio::task::spawn_blocking(move || Runtime::new(limits)).await??;
        let metrics = Arc::new(if options.tenant_metrics {
            Metrics::with_tenants()
        } else {
            Metrics::default()
        });
        let audit = Audit::start(&options.audit, Some(Arc::clone(&metrics)))?;
        let access = Audit::start(&AuditOptions::to(options.access_log.clone()), None)?;
        let shared = Arc::new(Shared {
            pool: Pool::new(runtime),
            workers: Workers::start(options.workers)?,
            metrics,
            audit,
            access,
            served: ArcSwapOption::empty(),
            keys: keys::Keys::new(options.keys),
            generation: AtomicU64::new(0),
            input: options.input,
            clock: options.clock.clone(),
            secrets: options.secrets.clone(),
            edge,
            edge_json,
            identity_headers: options.edge.forward.names().map(str::to_owned).collect(),
            pep_token: options.pep_token.clone(),
            admin_token: options.admin_token.clone(),
            data: std::sync::OnceLock::new(),
            data_options: options.data.clone(),
        });
        let mut watcher = Watcher::new(
            options.bundle.clone(),
            options.bundle_trust.clone(),
            options.poll_interval,
        );
        let first = Arc::clone(&shared);
        let (watcher, first) = tokio::task::spawn_blocking(move || {
            let polled = watcher.poll(true, |fetched| first.install(fetched));
            (watcher, polled)
        })
        .await?;
        match first {
            Polled::Installed(_) => {}
            Polled::Unchanged => return Err(StartError::NoBundle),
            Polled::Refused(e) => return Err(StartError::Bundle(e)),
        }
        let warm = Arc::clone(&shared);
        tokio::task::spawn_blocking(move || warm.pool.refresh());
        let (shutdown, _) = watch::channel(false);
        let mut tasks = Vec::new();
        // Bind a listener and serve `router` on it until shutdown.
        let listen = async |addr: SocketAddr, router: axum::Router, tls: &Option<Arc<Tls>>| {
            let bound = |source| StartError::Listen { addr, source };
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(bound)?;
            let bound = listener.local_addr().map_err(bound)?;
            let task = tokio::spawn(listener::serve(
                listener,
                router,
                options.connections,
                Arc::clone(&shared.metrics.connections),
                tls.clone(),
                shutdown.subscribe(),
            ));
            Ok::<_, StartError>((bound, task))
        };
        let (addr, task) = listen(
            options.listen,
            decide::router(Arc::clone(&shared), options.request_timeout),
            &tls[0],
        )
        .await?;
        tasks.push(task);
        let admin_addr = match options.admin_listen {
            Some(admin) => {
                let router = admin::router(Arc::clone(&shared), options.request_timeout);
                let (bound, task) = listen(admin, router, &tls[1]).await?;
                tasks.push(task);
                Some(bound)
            }
            None => None,
        };
        tasks.push(tokio::spawn(keys::watch(
            Arc::clone(&shared),
            shutdown.subscribe(),
        )));
        let reload = Arc::new(Notify::new());
        tasks.push(tokio::spawn(watch_bundle(
            watcher,
            Arc::clone(&shared),
            Arc::clone(&reload),
            shutdown.subscribe(),
        )));
        if let Some(data) = &options.data {
            tasks.push(tokio::spawn(watch_data(
                Arc::clone(&shared),
                data.poll_interval,
                shutdown.subscribe(),
            )));
        }
        let reload_tls = Arc::new(Notify::new());
        tasks.push(tokio::spawn(watch_certificates(
            tls.clone(),
            Arc::clone(&shared.metrics),
            Arc::clone(&reload_tls),
            shutdown.subscribe(),
        )));
        Ok(Self {
            addr,
            admin_addr,
            tls,
            shared,
            reload,
            reload_tls,
            shutdown,
            tasks,
        })
    }

    /// The decision listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address, if it has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The decision listener's base URL: `https://<addr>` when it speaks TLS, else `http://`.
    pub fn url(&self) -> String {
        url(self.addr, self.tls[0].as_deref())
    }

    /// The admin listener's base URL, if it has one.
    pub fn admin_url(&self) -> Option<String> {
        self.admin_addr
            .map(|addr| url(addr, self.tls[1].as_deref()))
    }

    /// The decision listener's TLS, if it speaks TLS.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls[0].as_deref()
    }

    /// The admin listener's TLS, if it has one and it speaks TLS.
    pub fn admin_tls(&self) -> Option<&Tls> {
        self.tls[1].as_deref()
    }

    /// Check the bundle source now and reload if it changed, and read the listeners'
    /// certificate files again (what SIGHUP does). Both happen in the background: a bad bundle
    /// or bad certificate files are refused with a log line, and what was served goes on.
    pub fn reload(&self) {
        self.reload.notify_one();
        self.reload_tls.notify_one();
    }

    /// Whether the service is ready (`GET /readyz`): it serves a bundle, and every remote
    /// issuer's keys were fetched once, successfully or not (an issuer without keys fails its
    /// tenants' decisions closed, and is reported, but does not make the service unready).
    pub fn ready(&self) -> bool {
        ready::Readiness::of(&self.shared).ready()
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Stop accepting connections, finish the requests in flight, and stop.
    ///
    /// # Errors
    /// When a task of the server failed.
    pub async fn shutdown(self) -> Result<(), StartError> {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            task.await?;
        }
        // The requests in flight are answered: every record they queued is written and synced
        // before the process exits.
        self.shared.audit.finish().await;
        self.shared.access.finish().await;
        Ok(())
    }
}

fn url(addr: SocketAddr, tls: Option<&Tls>) -> String {
    let scheme = if tls.is_some() { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

/// On each reload, read the TLS listeners' files again: new ones serve the connections
/// accepted from then on; files that do not load are refused (logged, counted) and the
/// previous ones go on.
async fn watch_certificates(
    listeners: [Option<Arc<Tls>>; 2],
    metrics: Arc<Metrics>,
    reload: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = reload.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        for (name, tls) in ["decision", "admin"].into_iter().zip(&listeners) {
            let Some(tls) = tls else { continue };
            let reloading = Arc::clone(tls);
            match tokio::task::spawn_blocking(move || reloading.reload()).await {
                Ok(Ok(())) => {
                    metrics.tls_reload(true);
                    crate::log::info(&format!(
                        "the {name} listener's certificate was read again from `{}`",
                        tls.files().cert.display()
                    ));
                }
                Ok(Err(e)) => {
                    metrics.tls_reload(false);
                    crate::log::error(&format!(
                        "new TLS files of the {name} listener refused, the previous certificate keeps serving: {e}"
                    ));
                }
                Err(_) => crate::log::error("the certificate reload failed"),
            }
        }
    }
}

/// Poll the bundle source; install each valid new bundle, refuse and report invalid ones.
/// Poll the data store for other replicas' commits, for as long as the service runs.
async fn watch_data(shared: Arc<Shared>, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(served) = shared.served.load_full() else {
            continue;
        };
        let polling = Arc::clone(&shared);
        let polled = tokio::task::spawn_blocking(move || polling.poll_data(&served.bundle)).await;
        if let Ok(Err(e)) = polled {
            crate::log::error(&format!("data store: {e}"));
        }
    }
}

async fn watch_bundle(
    mut watcher: Watcher,
    shared: Arc<Shared>,
    reload: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let force = tokio::select! {
            () = tokio::time::sleep(watcher.wait()) => false,
            () = reload.notified() => true,
            _ = stop.wait_for(|s| *s) => return,
        };
        let installing = Arc::clone(&shared);
        let polled = tokio::task::spawn_blocking(move || {
            let polled = watcher.poll(force, |fetched| installing.install(fetched));
            (watcher, polled)
        })
        .await;
        let Ok((returned, polled)) = polled else {
            crate::log::error("the bundle watcher failed; reloads stop");
            return;
        };
        watcher = returned;
        match polled {
            Polled::Unchanged if force => {
                let revision = shared
                    .served
                    .load()
                    .as_ref()
                    .map_or_else(|| "none".to_owned(), |s| s.bundle.revision().to_owned());
                crate::log::info(&format!(
                    "reload asked; the bundle is unchanged (revision {revision})"
                ));
            }
            Polled::Unchanged => {}
            Polled::Installed(revision) => {
                crate::log::info(&format!("bundle revision {revision} loaded"));
                shared.metrics.reload(true);
                let warm = Arc::clone(&shared);
                // Bring idle instances to the new bundle before requests need them.
                let _ = tokio::task::spawn_blocking(move || warm.pool.refresh()).await;
            }
            Polled::Refused(e) => {
                shared.metrics.reload(false);
                crate::log::warn(&format!(
                    "new bundle refused, the previous one keeps serving: {e}"
                ));
            }
        }
    }
}
