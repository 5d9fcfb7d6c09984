//! `portcullis`: the command-line tool of the Portcullis authorization engine.
//!
//! Exit codes: 0 allow (or success), 1 deny / unauthenticated (or failed tests, or a data
//! call the service refused), 2 usage or load errors (and, for `data`, network errors).

mod config;
mod data_client;
mod demo;
mod dev_keys;
mod envoy_config;
mod init;
mod policy_tests;

mod signing;

use clap::{CommandFactory, Parser, Subcommand};
use portcullis::bundle_dir;
use portcullis::secrets::SecretSource;
use portcullis::service::{
    AuditTarget, BundleSource, Credential, DataOptions, Options, Server, TlsFiles,
};
use portcullis_engine::{
    BundleTrust, DecisionRequest, DevIssuer, Edge, EdgeAction, EdgeOptions, Engine, HeaderPairs,
    HttpRequest, KeyCase, ResourceRef,
};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Multi-tenant authorization: JWT verification + claim mapping + Cedar policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One issuer entry of a tenant (`tenants.json`).
#[derive(clap::Args)]
struct TenantIssuer {
    /// Tenant.
    #[arg(long)]
    tenant: String,
    /// Which of the tenant's issuers (default the first).
    #[arg(long, default_value_t = 0)]
    issuer: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Decide one request and print the decision as JSON (exit 0 allow, 1 deny/unauthenticated).
    /// Either `--action` and `--resource`, or an HTTP request (`--method`, `--path`,
    /// `--header`) mapped with the bundle's routes, as the Envoy filter and ext_authz map it;
    /// a request the edge answers without a decision (no route, a refused path) prints the
    /// edge's verdict (`{outcome, forward, status, headers, body, route, decision: null}`),
    /// exit 0 when it would be forwarded.
    Check {
        /// Bundle directory or compiled bundle file.
        #[arg(long)]
        bundle: PathBuf,
        /// The caller's JWT (with `--path`: sent as `Authorization: Bearer`).
        #[arg(long)]
        token: Option<String>,
        /// Action id (`view`).
        #[arg(long, required_unless_present = "path", conflicts_with = "path")]
        action: Option<String>,
        /// Resource, `Type::"id"`.
        #[arg(long, required_unless_present = "path", conflicts_with = "path")]
        resource: Option<String>,
        /// HTTP method of the request to map (with `--path`).
        #[arg(long, default_value = "GET", requires = "path")]
        method: String,
        /// HTTP path (and query) of the request to map with the bundle's routes.
        #[arg(long)]
        path: Option<String>,
        /// A request header, `name: value` (repeatable; with `--path`).
        #[arg(long = "header", requires = "path")]
        headers: Vec<String>,
        /// Edge options (JSON file: token sources, identity headers, `unmatched`, …) the
        /// request is mapped with, as the Envoy filter's `edge` (with `--path`).
        #[arg(long, requires = "path")]
        edge: Option<PathBuf>,
        /// Directory of HMAC secrets, by name (else `PORTCULLIS_SECRET_<NAME>`).
        #[arg(long)]
        secrets_dir: Option<PathBuf>,
        /// Resource attributes as a JSON object.
        #[arg(long)]
        resource_attrs: Option<String>,
        /// Extra context as a JSON object.
        #[arg(long)]
        context: Option<String>,
        /// Stored entities to decide with, for bundles that store data: a JSON file
        /// `{"tenants": {"acme": [entity, …]}}` (default: no stored entities).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Evaluation time (unix seconds; default: now).
        #[arg(long)]
        now: Option<i64>,
    },
    /// Validate a bundle directory; print every problem with its location.
    Validate {
        /// Bundle directory.
        dir: PathBuf,
    },
    /// Compile a bundle directory into one JSON document.
    Bundle {
        /// Bundle directory.
        dir: PathBuf,
        /// Output file (`-` for stdout).
        #[arg(short, long)]
        output: PathBuf,
        /// Sign the bundle with this private key (PEM: RSA, EC P-256/P-384 or Ed25519).
        #[arg(long)]
        sign: Option<PathBuf>,
        /// The `kid` to write in the signature (default: none; a host then tries each of its
        /// trusted bundle keys).
        #[arg(long, requires = "sign")]
        key_id: Option<String>,
        /// Write only this tenant's distributable bundle (what its browsers may hold).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Generate a bundle-signing key pair: `<out>.pem` (private, keep it secret) and
    /// `<out>.jwks.json` (public, for `--bundle-keys`).
    BundleKeygen {
        /// Output path prefix.
        #[arg(short, long)]
        output: PathBuf,
        /// `EdDSA` (Ed25519, the default) or `ES256`.
        #[arg(long, default_value = "EdDSA")]
        algorithm: String,
    },
    /// Run the policy tests in `<dir>/tests/*.json`.
    Test {
        /// Bundle directory.
        dir: PathBuf,
        /// Print passing tests too.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Mint a development token signed with a tenant issuer's development key.
    Token {
        /// Bundle directory (with `dev-keys/`).
        #[arg(long)]
        bundle: PathBuf,
        #[command(flatten)]
        of: TenantIssuer,
        /// Claims (JSON object) merged over the standard ones; `null` removes a claim.
        #[arg(long)]
        claims: Option<String>,
        /// Lifetime in seconds (negative: a token that has already expired, for tests).
        #[arg(long, default_value_t = 3600, allow_negative_numbers = true)]
        ttl: i64,
        /// Issue time (unix seconds; default: now).
        #[arg(long, allow_negative_numbers = true)]
        now: Option<i64>,
    },
    /// Write a new policy pack: one tenant with its development key, a schema, policies and
    /// their tests, routes. `portcullis validate` and `portcullis test` pass on it as written.
    Init {
        /// The pack's directory (created; must not hold anything yet).
        dir: PathBuf,
        /// The tenant.
        #[arg(long, default_value = "example")]
        tenant: String,
    },
    /// Generate a development key for a tenant's issuer, in the layout the pack expects:
    /// `dev-keys/<kid>.pem` and `dev-keys/<kid>.jwks.json` (an HMAC issuer:
    /// `dev-keys/<name>.secret`). A `jwks_uri` or `discovery` issuer keeps its production keys
    /// and is added to `dev-keys/issuers.json`, which `test` and `token` verify it with.
    Keygen {
        /// Bundle directory.
        #[arg(long, default_value = ".")]
        bundle: PathBuf,
        #[command(flatten)]
        of: TenantIssuer,
        /// Algorithm (default: the issuer's first).
        #[arg(long)]
        algorithm: Option<String>,
    },
    /// Write a complete `envoy.yaml` for the Portcullis Wasm filter from a pack: the hardened
    /// listener, the filter (the compiled bundle inline, the edge options), the router to the
    /// upstream, and a cluster per identity-provider origin the bundle fetches keys from.
    EnvoyConfig {
        /// Bundle directory or compiled bundle file.
        #[arg(long)]
        bundle: PathBuf,
        /// Edge options (JSON file), as `check --edge` and `serve --edge` take them.
        #[arg(long)]
        edge: Option<PathBuf>,
        /// The application's address, where allowed requests go.
        #[arg(long, value_parser = listen_address)]
        upstream: std::net::SocketAddr,
        /// Where Envoy listens.
        #[arg(long, default_value = ":10000", value_parser = listen_address)]
        listen: std::net::SocketAddr,
        /// Envoy's admin interface.
        #[arg(long, default_value = "127.0.0.1:9901", value_parser = listen_address)]
        admin: std::net::SocketAddr,
        /// The filter's `.wasm` file, as Envoy will find it.
        #[arg(long, default_value = "portcullis_envoy.wasm")]
        wasm: String,
        /// CA certificates that verify the identity providers' TLS certificates.
        #[arg(long, default_value = "/etc/ssl/certs/ca-certificates.crt")]
        ca_file: String,
        /// For a bundle that stores data: the decision service's admin listener, where the
        /// filter fetches the tenants' data (`portcullis serve --admin-listen`).
        #[arg(long, default_value = "127.0.0.1:8182", value_parser = listen_address)]
        data: std::net::SocketAddr,
        /// The environment variable (handed to the Wasm VM) holding the admin listener's
        /// bearer credential (`serve --admin-token-file`).
        #[arg(long)]
        data_token_env: Option<String>,
        /// Output file (`-`: standard output).
        #[arg(short, long, default_value = "-")]
        output: PathBuf,
    },
    /// Run the TechFin scenario through the decision service (started on a loopback port) and
    /// print a table.
    Demo {
        /// Bundle directory.
        #[arg(long, default_value = "policies/techfin")]
        bundle: PathBuf,
    },
    /// Read and write a tenant's stored data through a decision service's data API, with a
    /// bearer token from `--token-file` or `PORTCULLIS_TOKEN` (exit 1 when the service refuses
    /// a call, printed as `error: <message> (<code>)`; 2 usage, configuration or network
    /// errors).
    Data(Box<data_client::DataArgs>),
    /// Serve decisions over HTTP or HTTPS (reloads the bundle on change and on SIGHUP, and the
    /// certificates on SIGHUP).
    Serve(Box<ServeArgs>),
}

/// The options of `portcullis serve`.
#[derive(clap::Args)]
struct ServeArgs {
    /// A JSON file of these options, by their long names (`{"listen": ":8080",
    /// "audit-mode": "committed"}`): a flag given on the command line wins, then an
    /// environment variable (`PORTCULLIS_<NAME>`, e.g. `PORTCULLIS_AUDIT_MODE`), then the
    /// file.
    #[arg(long, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    /// Bundle directory, compiled bundle file, or `https://` URL of a compiled bundle.
    #[arg(long, env = "PORTCULLIS_BUNDLE")]
    bundle: String,
    /// Address of the decision listener: `host:port` (`127.0.0.1:8080`, `[::1]:8080`,
    /// `localhost:8080`) or `:port` (every IPv4 interface).
    #[arg(long, env = "PORTCULLIS_LISTEN", default_value = "127.0.0.1:8080", value_parser = listen_address)]
    listen: std::net::SocketAddr,
    /// Address of the admin listener (`/v1/bundle`, tenant bundles, `/metrics`), as
    /// `--listen`; off unless given. Off loopback it needs `--admin-token-file` or mutual
    /// TLS (`--admin-client-ca`).
    #[arg(long, env = "PORTCULLIS_ADMIN_LISTEN", value_parser = listen_address)]
    admin_listen: Option<std::net::SocketAddr>,
    /// Certificate chain (PEM, the listener's certificate first) of the decision listener,
    /// which then speaks only TLS (1.2 and 1.3, ALPN `http/1.1`); with `--tls-key`. Read
    /// again on SIGHUP.
    #[arg(long, env = "PORTCULLIS_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Private key of `--tls-cert` (PEM: PKCS #8, RSA or EC; unencrypted). Read again on
    /// SIGHUP.
    #[arg(long, env = "PORTCULLIS_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Certificate chain (PEM) of the admin listener, which then speaks only TLS; with
    /// `--admin-tls-key`.
    #[arg(long, env = "PORTCULLIS_ADMIN_TLS_CERT", requires = "admin_listen")]
    admin_tls_cert: Option<PathBuf>,
    /// Private key of `--admin-tls-cert` (PEM).
    #[arg(long, env = "PORTCULLIS_ADMIN_TLS_KEY", requires = "admin_listen")]
    admin_tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that the admin listener's clients must present a certificate
    /// from (mutual TLS; with `--admin-tls-cert`). It authenticates them off loopback as
    /// `--admin-token-file` does; with both, both are required.
    #[arg(long, env = "PORTCULLIS_ADMIN_CLIENT_CA", requires = "admin_listen")]
    admin_client_ca: Option<PathBuf>,
    /// File holding the bearer credential the admin listener requires.
    #[arg(long, env = "PORTCULLIS_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// File holding the bearer credential AuthZEN PEPs must present.
    #[arg(long, env = "PORTCULLIS_PEP_TOKEN_FILE")]
    pep_token_file: Option<PathBuf>,
    /// Directory of HMAC secrets, one file per secret name (else
    /// `PORTCULLIS_SECRET_<NAME>`).
    #[arg(long, env = "PORTCULLIS_SECRETS_DIR")]
    secrets_dir: Option<PathBuf>,
    /// JWK set of the public keys bundles must be signed with; unsigned bundles are then
    /// refused from every source.
    #[arg(long, env = "PORTCULLIS_BUNDLE_KEYS")]
    bundle_keys: Option<PathBuf>,
    /// Most items in a batch or AuthZEN `evaluations`.
    #[arg(long, env = "PORTCULLIS_MAX_BATCH_ITEMS", default_value_t = 1000)]
    max_batch_items: usize,
    /// Most connections open at once, per listener.
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Seconds a request may take from its first byte to its last header.
    #[arg(long, env = "PORTCULLIS_HEADER_TIMEOUT", default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a connection may sit idle between requests.
    #[arg(long, env = "PORTCULLIS_IDLE_TIMEOUT", default_value_t = 60)]
    idle_timeout: u64,
    /// Threads deciding (default: one per core).
    #[arg(long, env = "PORTCULLIS_DECISION_THREADS")]
    decision_threads: Option<usize>,
    /// Decisions (and batch chunks of 16) that may wait for a thread before requests are
    /// answered 503.
    #[arg(long, env = "PORTCULLIS_DECISION_QUEUE", default_value_t = 1024)]
    decision_queue: usize,
    /// Audit log: `-` for stdout, `off`, or a file to append to.
    #[arg(long, env = "PORTCULLIS_AUDIT_LOG", default_value = "-")]
    audit_log: AuditTarget,
    /// What a decision waits for before it is answered: `best-effort` (nothing; a full
    /// queue drops records, counted), `no-drop` (room in the queue: a decision is withheld,
    /// 503, rather than its record lost) or `committed` (its record written and fsynced).
    #[arg(long, env = "PORTCULLIS_AUDIT_MODE", default_value = "best-effort")]
    audit_mode: portcullis::service::AuditMode,
    /// Access log of the decision listener: `off`, `-` (stdout) or a file; one JSON line
    /// per request (`ts`, `method`, `path` without its query, `status`, `micros`).
    #[arg(long, env = "PORTCULLIS_ACCESS_LOG", default_value = "off")]
    access_log: AuditTarget,
    /// Log lines on standard error: `text` (time, level, message) or `json` (one object a
    /// line: `ts`, `level`, `msg`).
    #[arg(long, env = "PORTCULLIS_LOG_FORMAT", default_value = "text")]
    log_format: portcullis::log::Format,
    /// Count decisions by tenant in `/metrics` (`portcullis_tenant_decisions_total`): one
    /// label value per tenant of the bundle, so off by default.
    #[arg(long, env = "PORTCULLIS_METRICS_TENANTS")]
    metrics_tenants: bool,
    /// Audit queue length (records).
    #[arg(long, env = "PORTCULLIS_AUDIT_QUEUE", default_value_t = 65_536)]
    audit_queue: usize,
    /// `no-drop` and `committed`: the longest a decision waits for the audit log, in
    /// milliseconds, before it is withheld (503).
    #[arg(long, env = "PORTCULLIS_AUDIT_WAIT_MS", default_value_t = 2000)]
    audit_wait_ms: u64,
    /// Seconds between checks of the bundle source for changes.
    #[arg(long, env = "PORTCULLIS_POLL_SECONDS", default_value_t = 2)]
    poll_seconds: u64,
    /// Where the tenants' stored data is kept, for bundles that store entities: an SQLite file
    /// (`sqlite:PATH` or a path; created if absent, one process at a time) or a PostgreSQL
    /// database shared by replicas (`postgres://user@host/db`).
    #[arg(
        long,
        env = "PORTCULLIS_STORE",
        default_value = "sqlite:portcullis-data.db"
    )]
    store: String,
    /// Milliseconds between checks of the data store for other replicas' writes.
    #[arg(long, env = "PORTCULLIS_DATA_POLL_MS", default_value_t = 500)]
    data_poll_ms: u64,
    /// Edge options of `/ext_authz` (JSON file: token sources, identity headers,
    /// `unmatched`, …), as the Envoy filter's `edge`.
    #[arg(long, env = "PORTCULLIS_EDGE")]
    edge: Option<PathBuf>,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn json_object(what: &str, text: Option<&str>) -> Result<Map<String, Value>, String> {
    match text {
        None => Ok(Map::new()),
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(format!("--{what} must be a JSON object")),
            Err(e) => Err(format!("--{what} is not valid JSON: {e}")),
        },
    }
}

/// A listen address: an IP and port, `localhost:<port>` (loopback) or `:<port>` (every IPv4
/// interface). Names other than `localhost` are refused: a listener binds an address, and a
/// name that resolves elsewhere later would move it.
fn listen_address(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::{Ipv4Addr, SocketAddr};
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("`{text}`: the port must be a number from 0 to 65535"))
    };
    if let Some(p) = text.strip_prefix(':') {
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port(p)?)));
    }
    if let Some(p) = text.strip_prefix("localhost:") {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port(p)?)));
    }
    text.parse().map_err(|_| {
        format!("`{text}` is not a listen address: use `127.0.0.1:8080`, `[::1]:8080`, `localhost:8080` or `:8080`")
    })
}

/// Parse `Type::"id"`, in Cedar's syntax (as decisions and audit records write it).
fn parse_resource(text: &str) -> Result<(String, String), String> {
    portcullis_engine::parse_entity_uid_text(text).ok_or_else(|| {
        format!(
            "--resource must look like Type::\"id\" (Cedar's syntax), got `{}`",
            text.chars().take(80).collect::<String>()
        )
    })
}

/// The edge of the options in a JSON file (the defaults without one).
fn edge_from(file: Option<&std::path::Path>) -> Result<Edge, String> {
    let Some(file) = file else {
        return Ok(Edge::default());
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
    let options: EdgeOptions = portcullis_engine::parse_request("edge options", &text)
        .map_err(|e| format!("`{}`: {}", file.display(), e.message))?;
    Edge::new(options).map_err(|e| format!("`{}`: {e}", file.display()))
}

/// A listener's TLS files from its flags (`--<prefix>tls-cert`, `--<prefix>tls-key`,
/// `--<prefix>client-ca`): a certificate and its key together, a client CA only with them.
fn tls_files(
    prefix: &str,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> Result<Option<TlsFiles>, String> {
    match (cert, key, client_ca) {
        (Some(cert), Some(key), client_ca) => Ok(Some(TlsFiles {
            cert,
            key,
            client_ca,
        })),
        (None, None, None) => Ok(None),
        (Some(cert), None, _) => Err(format!(
            "`--{prefix}tls-cert {}` needs `--{prefix}tls-key`, the certificate's private key",
            cert.display()
        )),
        (None, Some(key), _) => Err(format!(
            "`--{prefix}tls-key {}` needs `--{prefix}tls-cert`, the certificate it is the key of",
            key.display()
        )),
        (None, None, Some(ca)) => Err(format!(
            "`--{prefix}client-ca {}` needs `--{prefix}tls-cert` and `--{prefix}tls-key`: mutual TLS asks clients for a certificate in a TLS handshake",
            ca.display()
        )),
    }
}

/// How a listener is reached, for the startup line.
fn security(tls: Option<&portcullis::service::Tls>) -> &'static str {
    match tls {
        None => "",
        Some(tls) if tls.mutual() => " over mutual TLS",
        Some(_) => " over TLS",
    }
}

/// Log the TLS files of a listener: their names only.
fn log_tls(listener: &str, tls: Option<&portcullis::service::Tls>) {
    let Some(tls) = tls else { return };
    let files = tls.files();
    let clients = match &files.client_ca {
        Some(ca) => format!(
            "; clients must present a certificate from a CA of `{}`",
            ca.display()
        ),
        None => String::new(),
    };
    portcullis::log::info(&format!(
        "the {listener} listener speaks TLS 1.2 and 1.3 only, certificate `{}`, key `{}`{clients}",
        files.cert.display(),
        files.key.display()
    ));
}

fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// Start the decision service, run `work` against it until it finishes or Ctrl-C / SIGTERM
/// arrives (SIGHUP reloads the bundle and the listeners' certificates), then shut down
/// gracefully.
fn serve_until(
    options: Options,
    work: impl FnOnce(String) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage_error(format!("cannot start the async runtime: {e}")),
    };
    let result: Result<(), Box<dyn std::error::Error>> = runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let server = Server::start(options).await?;
        let base = server.url();
        log_tls("decision", server.tls());
        log_tls("admin", server.admin_tls());
        // One line, so that a supervisor (or a test) reading it has both addresses.
        let decisions = format!("serving decisions at {base}{}", security(server.tls()));
        match server.admin_url() {
            Some(admin) => portcullis::log::info(&format!(
                "{decisions} (admin at {admin}{})",
                security(server.admin_tls())
            )),
            None => portcullis::log::info(&decisions),
        }
        let mut hangup = signal(SignalKind::hangup())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut work = work(base);
        let outcome = loop {
            tokio::select! {
                done = &mut work => break done,
                _ = tokio::signal::ctrl_c() => break Ok(()),
                _ = terminate.recv() => break Ok(()),
                _ = hangup.recv() => server.reload(),
            }
        };
        portcullis::log::info("shutting down");
        server.shutdown().await?;
        Ok(outcome?)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage_error(e),
    }
}

fn main() -> ExitCode {
    let args = match config::expand(std::env::args_os().collect(), &Cli::command()) {
        Ok(args) => args,
        Err(e) => return usage_error(e),
    };
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Check {
            bundle,
            token,
            action,
            resource,
            method,
            path,
            headers,
            edge,
            secrets_dir,
            resource_attrs,
            context,
            data,
            now,
        } => {
            let (_, loaded) = match bundle_dir::load(&bundle) {
                Ok(b) => b,
                Err(e) => return usage_error(e),
            };
            let secrets = SecretSource { dir: secrets_dir }.resolve(&loaded);
            let engine = Engine::new(loaded);
            if let Err(e) = portcullis::data_file::load(&engine, data.as_deref()) {
                return usage_error(e);
            }
            match secrets {
                Ok(secrets) => {
                    for (name, secret) in secrets {
                        if let Err(e) = engine.set_secret(&name, &secret) {
                            return usage_error(e.info().message);
                        }
                    }
                }
                Err(e) => return usage_error(e),
            }
            let now = now.unwrap_or_else(now_unix);
            let decision = match path {
                Some(path) => {
                    let mut pairs = Vec::new();
                    for header in &headers {
                        let Some((name, value)) = header.split_once(':') else {
                            return usage_error(format!(
                                "--header must look like `name: value`, got `{}`",
                                header.chars().take(80).collect::<String>()
                            ));
                        };
                        pairs.push((
                            name.trim().to_ascii_lowercase(),
                            value.trim().as_bytes().to_vec(),
                        ));
                    }
                    if let Some(token) = &token {
                        pairs.push((
                            "authorization".into(),
                            format!("Bearer {token}").into_bytes(),
                        ));
                    }
                    let edge = match edge_from(edge.as_deref()).and_then(|edge| {
                        edge.check_bundle(engine.bundle())
                            .map_err(|e| e.to_string())?;
                        Ok(edge)
                    }) {
                        Ok(edge) => edge,
                        Err(e) => return usage_error(e),
                    };
                    let verdict = edge.decide(
                        &engine,
                        &HttpRequest {
                            method: &method,
                            path: &path,
                            headers: &HeaderPairs(&pairs),
                        },
                        now,
                    );
                    match verdict.decision {
                        Some(decision) => decision,
                        None => {
                            // Answered or forwarded without a decision (no route, a refused
                            // path, two tokens): the edge's verdict is the output, as the JS
                            // SDK's `decideHttp` resolves to it.
                            println!("{}", verdict.to_json(KeyCase::Snake));
                            let forwarded = matches!(verdict.action, EdgeAction::Forward(_));
                            return ExitCode::from(u8::from(!forwarded));
                        }
                    }
                }
                None => {
                    let (entity_type, id) = match parse_resource(resource.as_deref().unwrap_or(""))
                    {
                        Ok(r) => r,
                        Err(e) => return usage_error(e),
                    };
                    let (attrs, context) = match (
                        json_object("resource-attrs", resource_attrs.as_deref()),
                        json_object("context", context.as_deref()),
                    ) {
                        (Ok(a), Ok(c)) => (a, c),
                        (Err(e), _) | (_, Err(e)) => return usage_error(e),
                    };
                    let request = DecisionRequest {
                        token,
                        action: action.unwrap_or_default(),
                        resource: ResourceRef {
                            entity_type,
                            id,
                            attrs,
                        },
                        context,
                    };
                    engine.decide(&request, now)
                }
            };
            println!("{}", decision.to_json());
            if decision.is_allowed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Validate { dir } => match bundle_dir::load(&dir) {
            Ok((compiled, bundle)) => {
                println!(
                    "ok: {} policies, {} tenants, revision {}",
                    bundle.policy_count(),
                    compiled.tenants.len(),
                    bundle.revision()
                );
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(e),
        },
        Command::Bundle {
            dir,
            output,
            sign,
            key_id,
            tenant,
        } => {
            let compiled = match bundle_dir::compile(&dir) {
                Ok(compiled) => compiled,
                Err(e) => return usage_error(e),
            };
            let compiled = match tenant {
                Some(tenant) => match compiled.for_tenant(&tenant) {
                    Some(slice) => slice,
                    None => {
                        return usage_error(portcullis_engine::unknown_tenant(
                            &tenant,
                            compiled.tenants.keys().map(String::as_str),
                        ));
                    }
                },
                None => compiled,
            };
            let compiled = match sign {
                Some(key) => match signing::sign(compiled, &key, key_id.as_deref()) {
                    Ok(signed) => signed,
                    Err(e) => return usage_error(e),
                },
                None => compiled,
            };
            let json = compiled.to_json();
            let written = if output.as_os_str() == "-" {
                println!("{json}");
                Ok(())
            } else {
                std::fs::write(&output, json + "\n")
            };
            match written {
                Ok(()) => {
                    eprintln!(
                        "bundle revision {}{}",
                        compiled.revision,
                        if compiled.signatures.is_empty() {
                            ""
                        } else {
                            ", signed"
                        }
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => usage_error(format!("cannot write `{}`: {e}", output.display())),
            }
        }
        Command::BundleKeygen { output, algorithm } => match signing::keygen(&output, &algorithm) {
            Ok(files) => {
                for file in files {
                    eprintln!("wrote {}", file.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(e),
        },
        Command::Test { dir, verbose } => match policy_tests::run(&dir, verbose) {
            Ok(summary) => {
                println!(
                    "{} passed, {} failed",
                    summary.passed,
                    summary.failures.len()
                );
                if summary.failures.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => usage_error(e),
        },
        Command::Token {
            bundle,
            of: TenantIssuer { tenant, issuer },
            claims,
            ttl,
            now,
        } => {
            let overrides = match json_object("claims", claims.as_deref()) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            if !bundle.is_dir() {
                return usage_error(format!(
                    "`--bundle {}` is not a directory: development tokens are signed with the keys in the pack's `dev-keys/`, so `--bundle` names the pack directory, not a compiled bundle",
                    bundle.display()
                ));
            }
            let compiled = match bundle_dir::compile(&bundle)
                .and_then(|compiled| dev_keys::overlay(&bundle, compiled))
            {
                Ok((compiled, _)) => compiled,
                Err(e) => return usage_error(e),
            };
            let now = now.unwrap_or_else(now_unix);
            let dev = match DevIssuer::for_tenant(&compiled, &tenant, issuer, &mut |p| {
                bundle_dir::read_relative(&bundle, p)
            }) {
                Ok(d) => d,
                Err(e) => return usage_error(e),
            };
            let mut all = dev.base_claims(now, ttl);
            for (k, v) in overrides {
                if v.is_null() {
                    all.remove(&k);
                } else {
                    all.insert(k, v);
                }
            }
            match dev.sign(&all) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => usage_error(e),
            }
        }
        Command::Init { dir, tenant } => match init::init(&dir, &tenant) {
            Ok(files) => {
                for file in files {
                    println!("wrote {}", dir.join(file).display());
                }
                println!(
                    "next: portcullis validate {0} && portcullis test {0}",
                    dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(e),
        },
        Command::Keygen {
            bundle,
            of: TenantIssuer { tenant, issuer },
            algorithm,
        } => match dev_keys::keygen(&bundle, &tenant, issuer, algorithm.as_deref()) {
            Ok(generated) => {
                for file in generated.files {
                    println!("wrote {}", bundle.join(file).display());
                }
                for line in generated.next {
                    println!("{line}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(e),
        },
        Command::EnvoyConfig {
            bundle,
            edge,
            upstream,
            listen,
            admin,
            wasm,
            ca_file,
            data,
            data_token_env,
            output,
        } => {
            let (compiled, loaded) = match bundle_dir::load(&bundle) {
                Ok(both) => both,
                Err(e) => return usage_error(e),
            };
            let edge = match edge_from(edge.as_deref()).and_then(|edge| {
                edge.check_bundle(&loaded).map_err(|e| e.to_string())?;
                serde_json::to_value(edge.options()).map_err(|e| e.to_string())
            }) {
                Ok(edge) => edge,
                Err(e) => return usage_error(e),
            };
            let remote = loaded.remote_issuers();
            let target = envoy_config::Target {
                compiled: &compiled,
                remote: &remote,
                edge,
                listen,
                admin,
                upstream,
                wasm: &wasm,
                ca_file: &ca_file,
                data,
                data_token_env: data_token_env.as_deref(),
            };
            let yaml = match envoy_config::render(&target) {
                Ok(yaml) => yaml,
                Err(e) => return usage_error(e),
            };
            if output.as_os_str() == "-" {
                print!("{yaml}");
            } else if let Err(e) = std::fs::write(&output, yaml) {
                return usage_error(format!("cannot write `{}`: {e}", output.display()));
            }
            ExitCode::SUCCESS
        }
        Command::Demo { bundle } => {
            let mut options = Options::new(
                BundleSource::Path(bundle.clone()),
                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            );
            options.audit.target = AuditTarget::Off;
            // An embedded store of its own, seeded with the pack's facts, gone afterwards.
            let store_dir =
                std::env::temp_dir().join(format!("portcullis-demo-{}", std::process::id()));
            let spec = format!("sqlite:{}", store_dir.join("data.db").display());
            let seeded = std::fs::create_dir_all(&store_dir)
                .map_err(|e| e.to_string())
                .and_then(|()| demo::seed_store(&spec, &bundle, now_unix()));
            if let Err(e) = seeded {
                eprintln!("error: cannot prepare the demo's store: {e}");
                return ExitCode::from(2);
            }
            options.data = Some(DataOptions {
                store: spec,
                ..DataOptions::default()
            });
            let code = serve_until(options, |base| {
                let now = now_unix();
                Box::pin(async move {
                    tokio::task::spawn_blocking(move || demo::run(&base, &bundle, now))
                        .await
                        .map_err(|e| e.to_string())?
                        .map(|_| ())
                })
            });
            let _ = std::fs::remove_dir_all(&store_dir);
            code
        }
        Command::Data(args) => data_client::run(*args),
        Command::Serve(args) => {
            let ServeArgs {
                config: _,
                bundle,
                listen,
                admin_listen,
                tls_cert,
                tls_key,
                admin_tls_cert,
                admin_tls_key,
                admin_client_ca,
                admin_token_file,
                pep_token_file,
                secrets_dir,
                bundle_keys,
                max_batch_items,
                max_connections,
                header_timeout,
                idle_timeout,
                decision_threads,
                decision_queue,
                audit_log,
                audit_mode,
                access_log,
                log_format,
                metrics_tenants,
                audit_queue,
                audit_wait_ms,
                poll_seconds,
                store,
                data_poll_ms,
                edge,
            } = *args;
            let source = match BundleSource::parse(&bundle) {
                Ok(source) => source,
                Err(e) => return usage_error(e),
            };
            let mut options = Options::new(source, listen);
            options.admin_listen = admin_listen;
            match (
                tls_files("", tls_cert, tls_key, None),
                tls_files("admin-", admin_tls_cert, admin_tls_key, admin_client_ca),
            ) {
                (Ok(tls), Ok(admin)) => {
                    options.tls = tls;
                    options.admin_tls = admin;
                }
                (Err(e), _) | (_, Err(e)) => return usage_error(e),
            }
            let credential =
                |file: Option<PathBuf>| file.map(|f| Credential::from_file(&f)).transpose();
            match (credential(admin_token_file), credential(pep_token_file)) {
                (Ok(admin), Ok(pep)) => {
                    options.admin_token = admin;
                    options.pep_token = pep;
                }
                (Err(e), _) | (_, Err(e)) => return usage_error(e),
            }
            options.secrets = SecretSource { dir: secrets_dir };
            if let Some(file) = bundle_keys {
                let trust = std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read `{}`: {e}", file.display()))
                    .and_then(|text| {
                        serde_json::from_str::<Value>(&text)
                            .map_err(|e| format!("`{}` is not JSON: {e}", file.display()))
                    })
                    .and_then(|jwks| {
                        BundleTrust::from_jwks(&jwks)
                            .map_err(|e| format!("`{}`: {}", file.display(), e.info().message))
                    });
                match trust {
                    Ok(trust) => options.bundle_trust = Some(trust),
                    Err(e) => return usage_error(e),
                }
            }
            options.input.max_batch_items = max_batch_items.max(1);
            options.connections.max_connections = max_connections.max(1);
            options.connections.header_timeout =
                std::time::Duration::from_secs(header_timeout.max(1));
            options.connections.idle_timeout = std::time::Duration::from_secs(idle_timeout.max(1));
            if let Some(threads) = decision_threads {
                options.workers.threads = threads.max(1);
            }
            options.workers.interactive_queue = decision_queue.max(1);
            options.workers.bulk_queue = decision_queue.max(1);
            options.poll_interval = std::time::Duration::from_secs(poll_seconds.max(1));
            options.data = Some(DataOptions {
                store,
                poll_interval: std::time::Duration::from_millis(data_poll_ms.max(10)),
                ..DataOptions::default()
            });
            match edge_from(edge.as_deref()) {
                Ok(edge) => options.edge = edge.options().clone(),
                Err(e) => return usage_error(e),
            }
            options.audit.target = audit_log;
            options.audit.mode = audit_mode;
            options.tenant_metrics = metrics_tenants;
            options.access_log = access_log;
            portcullis::log::set_format(log_format);
            options.audit.queue = audit_queue.max(1);
            options.audit.wait = std::time::Duration::from_millis(audit_wait_ms.max(1));
            serve_until(options, |_| Box::pin(std::future::pending()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_syntax() {
        assert_eq!(
            parse_resource(r#"Report::"q3""#).unwrap(),
            ("Report".into(), "q3".into())
        );
        assert_eq!(
            parse_resource(r#"A::B::"x\"y""#).unwrap(),
            ("A::B".into(), "x\"y".into())
        );
        assert!(parse_resource("Report").is_err());
        assert!(parse_resource(r#"::"x""#).is_err());
    }

    #[test]
    fn listen_addresses() {
        let ok =
            |text: &str, want: &str| assert_eq!(listen_address(text).unwrap().to_string(), want);
        ok("127.0.0.1:8080", "127.0.0.1:8080");
        ok("[::1]:8080", "[::1]:8080");
        ok("localhost:8080", "127.0.0.1:8080");
        ok(":8080", "0.0.0.0:8080");
        for bad in ["8080", "localhost", ":http", "example.com:80", ":70000", ""] {
            assert!(listen_address(bad).is_err(), "{bad}");
        }
    }
}
