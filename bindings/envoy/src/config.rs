//! The filter's plugin configuration: its JSON shape (serde, unknown fields refused) and its
//! validation into a [`Plan`], done once per VM in `on_configure`. The routes are the bundle's
//! (`routes.json` in its directory); the request logic is the engine's [`Edge`].

use portcullis_engine::{
    Bundle, BundleTrust, CompiledBundle, DataPolicy, Edge, EdgeConfigError, EdgeOptions, Engine,
    EngineOptions, HttpTarget, RefreshPolicy, RustCryptoVerifier, SignatureBudget,
    acceptable_key_url,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The plugin configuration, as written in `envoy.yaml`
/// (`typed_config.config.configuration.value`). See the crate docs for a full example.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Where the compiled bundle comes from.
    pub bundle: BundleSource,
    /// No longer here: routes are part of the bundle. Present only to say so.
    #[serde(default)]
    pub routes: Option<serde_json::Value>,
    /// How requests are treated around the decision: token sources, identity headers, unmatched
    /// routes, preflights, dry run, failure mode, realm. The same options as `portcullis
    /// serve`'s ext_authz; see [`EdgeOptions`].
    #[serde(default)]
    pub edge: EdgeOptions,
    /// The decision log.
    #[serde(default)]
    pub log: LogConfig,
    /// How remote issuers' keys are fetched (required when the bundle has `jwks_uri` or
    /// `discovery` issuers).
    #[serde(default)]
    pub keys: Option<KeysConfig>,
    /// Where RSA and ECDSA signatures are checked.
    #[serde(default)]
    pub crypto: Crypto,
    /// Signatures a worker may check in Wasm per second (`PS*`, `EdDSA`, and what Envoy's
    /// `verify_signature` cannot check); past it a new token is answered 503 until the next
    /// second (default 200; `0`: unlimited). See [`SignatureBudget`].
    #[serde(default = "default_wasm_budget")]
    pub wasm_signatures_per_second: u32,
    /// Public keys (a JWK set) bundles must be signed with. When set, a bundle, inline or
    /// fetched, is used only if one of its signatures verifies with one of these keys.
    #[serde(default)]
    pub bundle_keys: Option<serde_json::Value>,
    /// Stats beyond the filter's totals.
    #[serde(default)]
    pub stats: StatsConfig,
    /// Where the tenants' stored data comes from (required when the bundle stores data,
    /// refused when it does not).
    #[serde(default)]
    pub data: Option<DataConfig>,
}

/// Where the tenants' stored data is fetched from: the decision service's admin listener
/// (`GET /v1/data/{tenant}`), through an Envoy cluster. See
/// [`portcullis_engine::SharedTenantData`].
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The base URL of the data source (`http://127.0.0.1:9901`: `GET <url>/v1/data/<tenant>`);
    /// `https`, or plain `http` to loopback only. Its authority and path go to `cluster`,
    /// whose transport socket decides whether the connection uses TLS.
    pub url: String,
    /// The Envoy cluster serving `url`.
    pub cluster: String,
    /// The environment variable of the VM holding the admin listener's bearer credential
    /// (`portcullis serve --admin-token-file`), sent with every fetch; none by default.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Timeout of one fetch, milliseconds (default 5000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// How often each tenant's data is polled for changes, milliseconds (default 500: a
    /// write is enforced within about a second).
    #[serde(default = "default_data_poll")]
    pub poll_ms: u64,
    /// How long a request for a tenant whose data is not held yet waits for it before it is
    /// answered 503, milliseconds (default 1000).
    #[serde(default = "default_data_wait")]
    pub wait_ms: u64,
    /// The most bytes of data documents (snapshot JSON) each worker holds (default 16 MiB);
    /// past it the tenants least recently seen are forgotten. A worker's memory grows by
    /// about 17 times the bytes it holds (`BENCHMARKS.md`).
    #[serde(default = "default_data_max_bytes")]
    pub max_bytes: usize,
    /// A tenant no request was decided for in this many seconds is forgotten (default 600).
    #[serde(default = "default_data_idle")]
    pub idle_seconds: u64,
}

impl DataConfig {
    /// The engine's data policy of this configuration.
    pub fn policy(&self) -> DataPolicy {
        DataPolicy::default().with(
            self.poll_ms,
            self.timeout_ms,
            self.max_bytes,
            self.idle_seconds.saturating_mul(1000),
        )
    }
}

/// Stats beyond the filter's totals (`portcullis.allowed`, ...).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StatsConfig {
    /// Count decisions by route and outcome too: `portcullis.route.<route>.<outcome>`, where
    /// `<route>` is the route's path template with `/` as `_` and the braces dropped
    /// (`/tenants/{tenant}/reports/{id}` → `tenants_tenant_reports_id`) and `<outcome>` is
    /// `allowed`, `denied`, `unauthenticated` or `errors`. One stat per route and outcome (the
    /// bundle's routes, a bounded set); off by default, as it costs a hostcall per request.
    #[serde(default)]
    pub routes: bool,
}

/// Where RSA (`RS*`) and ECDSA (`ES*`) signatures are checked; the other algorithms are always
/// checked in Wasm.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Crypto {
    /// By Envoy (BoringSSL), through its `verify_signature` foreign function (the default);
    /// in Wasm where Envoy lacks the function.
    #[default]
    Envoy,
    /// In Wasm (RustCrypto).
    Wasm,
}

/// Where the compiled bundle comes from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum BundleSource {
    /// The compiled bundle itself (the output of `portcullis bundle`).
    Inline(Box<CompiledBundle>),
    /// Fetched through an Envoy cluster and polled with `If-None-Match` (for example from the
    /// decision service's `GET /v1/bundle`); see [`portcullis_engine::Upkeep`].
    Remote(RemoteBundle),
}

/// A bundle fetched over HTTP through an Envoy cluster.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RemoteBundle {
    /// The bundle's URL: its authority and path are sent to `cluster` (whose transport socket
    /// decides whether the connection uses TLS).
    pub url: String,
    /// The Envoy cluster serving `url`.
    pub cluster: String,
    /// How often the bundle is polled, seconds (default 30).
    #[serde(default = "default_poll")]
    pub poll_seconds: u64,
    /// Wait after a failed or refused fetch, seconds (default 5).
    #[serde(default = "default_retry")]
    pub retry_seconds: u64,
    /// Timeout of one fetch, milliseconds (default 5000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// The environment variable of the VM (`vm_config.environment_variables.host_env_keys`)
    /// holding the bearer credential sent with each poll (`portcullis serve
    /// --admin-token-file`); none by default (an admin listener on loopback needs none).
    #[serde(default)]
    pub token_env: Option<String>,
}

/// Decision-log settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Envoy log level of the per-request decision line.
    #[serde(default)]
    pub level: LogLevel,
}

/// A log level.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// No decision log.
    Off,
    /// Debug.
    Debug,
    /// Info (the default).
    #[default]
    Info,
    /// Warn.
    Warn,
}

/// How remote issuers' keys are fetched.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// URL origin (`scheme://host[:port]`, as in the bundle's URLs) → Envoy cluster name.
    /// Every discovery and JWKS URL must have its origin here.
    pub clusters: BTreeMap<String, String>,
    /// How long keys are kept (the IdP's `Cache-Control: max-age`, within bounds), retries and
    /// the unknown-`kid` cooldown, in seconds: the engine's [`RefreshPolicy`], the same
    /// schedule as `portcullis serve` and the JS SDK.
    #[serde(default)]
    pub refresh: RefreshPolicy,
    /// Timeout of one HTTP fetch, milliseconds (default 5000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

impl KeysConfig {
    /// The cluster serving `url`, if its origin is configured.
    pub fn cluster_for(&self, url: &str) -> Option<(&str, HttpTarget)> {
        let target = HttpTarget::parse(url)?;
        self.clusters
            .get(&target.origin)
            .map(|cluster| (cluster.as_str(), target))
    }
}

fn default_wasm_budget() -> u32 {
    200
}
fn default_retry() -> u64 {
    5
}
fn default_poll() -> u64 {
    30
}
fn default_timeout() -> u64 {
    5000
}
fn default_data_poll() -> u64 {
    500
}
fn default_data_wait() -> u64 {
    1000
}
fn default_data_max_bytes() -> usize {
    DataPolicy::default().max_bytes
}
fn default_data_idle() -> u64 {
    DataPolicy::default().idle / 1000
}

/// A configuration problem, reported by `on_configure` (which then refuses the configuration)
/// or by a bundle poll (which then keeps the bundle in use).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration is not JSON of the expected shape.
    #[error("invalid configuration: {0}")]
    Json(#[from] serde_json::Error),
    /// `bundle_keys` is not a usable JWK set.
    #[error("`bundle_keys`: {0}")]
    BundleKeys(String),
    /// The old place of routes.
    #[error(
        "`routes` are part of the bundle now: move them to `routes.json` in the bundle directory and rebuild it with `portcullis bundle`"
    )]
    RoutesInConfig,
    /// The edge options do not hold together.
    #[error("`edge`: {0}")]
    Edge(#[source] EdgeConfigError),
    /// `bundle.remote` is not usable.
    #[error("`bundle.remote{field}`: {problem}")]
    RemoteBundle {
        /// The field (`.url`, `.cluster`, ...), or empty for the whole object.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The bundle's signature is missing or does not verify against `bundle_keys`.
    #[error("bundle refused: {0}")]
    Unsigned(String),
    /// The bundle does not load, or its routes cannot be used with the edge options.
    #[error("invalid bundle: {0}")]
    Bundle(String),
    /// A remote issuer's keys cannot be fetched: no cluster reaches it.
    #[error("{0}")]
    NoCluster(String),
    /// A secret the bundle names is not in the VM's environment, or is unusable.
    #[error("{0}")]
    Secret(String),
    /// `data` is not usable, missing for a bundle that stores data, or given for one that
    /// does not.
    #[error("`data{field}`: {problem}")]
    Data {
        /// The field (`.url`, `.cluster`, ...), or empty for the whole object.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// A validated configuration: what every request of this VM uses, beside the engine (which a
/// remote bundle replaces while the plan stays).
pub struct Plan {
    /// The request logic: routes come from the engine's bundle, the rest from this
    /// configuration.
    pub edge: Edge,
    /// See [`FilterConfig::log`].
    pub log_level: LogLevel,
    /// See [`FilterConfig::keys`].
    pub keys: Option<KeysConfig>,
    /// Where the bundle is fetched from, when it is not inline.
    pub remote_bundle: Option<(RemoteBundle, HttpTarget)>,
    /// The `authorization` header of each bundle poll (from [`RemoteBundle::token_env`]).
    pub bundle_authorization: Option<String>,
    /// See [`FilterConfig::crypto`].
    pub crypto: Crypto,
    /// See [`FilterConfig::bundle_keys`].
    pub bundle_trust: Option<BundleTrust>,
    /// See [`FilterConfig::wasm_signatures_per_second`]; shared by every engine of the VM.
    pub wasm_budget: Arc<SignatureBudget>,
    /// See [`StatsConfig::routes`].
    pub route_stats: bool,
    /// Where the tenants' data comes from, and its base URL split for the cluster.
    pub data: Option<(DataConfig, HttpTarget)>,
    /// The `authorization` header of each data fetch (from [`DataConfig::token_env`]).
    pub data_authorization: Option<String>,
}

impl Plan {
    /// Parse and validate the plugin configuration; with an inline bundle, also build the
    /// engine with the `options` the plan asks for (a remote bundle's engine comes with its
    /// first fetch).
    ///
    /// # Errors
    /// Malformed JSON, an invalid bundle, token source, identity header or remote bundle
    /// source, or a remote issuer whose URL has no cluster.
    pub fn from_json(
        bytes: &[u8],
        options: impl FnOnce(&Self) -> EngineOptions,
    ) -> Result<(Self, Option<Engine>), ConfigError> {
        let config: FilterConfig = serde_json::from_slice(bytes)?;
        let FilterConfig {
            bundle,
            routes,
            edge,
            log,
            keys,
            crypto,
            bundle_keys,
            wasm_signatures_per_second,
            stats,
            data,
        } = config;
        let bundle_trust = bundle_keys
            .map(|jwks| {
                BundleTrust::from_jwks(&jwks).map_err(|e| ConfigError::BundleKeys(e.info().message))
            })
            .transpose()?;
        if routes.is_some() {
            return Err(ConfigError::RoutesInConfig);
        }
        let edge = Edge::new(edge).map_err(ConfigError::Edge)?;
        let (inline, remote_bundle) = match bundle {
            BundleSource::Inline(compiled) => (Some(compiled), None),
            BundleSource::Remote(remote) => {
                let target = validate_remote_bundle(&remote)?;
                (None, Some((remote, target)))
            }
        };
        let bundle_authorization = remote_bundle
            .as_ref()
            .and_then(|(r, _)| r.token_env.as_deref())
            .map(|var| {
                bearer_from_env(var).ok_or_else(|| ConfigError::RemoteBundle {
                    field: ".token_env",
                    problem: no_env(var),
                })
            })
            .transpose()?;
        let data = data
            .map(|config| validate_data(&config).map(|target| (config, target)))
            .transpose()?;
        let data_authorization = data
            .as_ref()
            .and_then(|(d, _)| d.token_env.as_deref())
            .map(|var| {
                bearer_from_env(var).ok_or_else(|| ConfigError::Data {
                    field: ".token_env",
                    problem: no_env(var),
                })
            })
            .transpose()?;
        let plan = Self {
            edge,
            log_level: log.level,
            keys,
            remote_bundle,
            bundle_authorization,
            crypto,
            bundle_trust,
            wasm_budget: Arc::new(SignatureBudget::new(wasm_signatures_per_second)),
            route_stats: stats.routes,
            data,
            data_authorization,
        };
        let engine = inline
            .map(|compiled| plan.engine(*compiled, options(&plan)))
            .transpose()?;
        Ok((plan, engine))
    }

    /// Build the engine of a compiled bundle, checking that every remote issuer's keys can be
    /// fetched through a configured cluster and that its routes work with the edge options.
    ///
    /// # Errors
    /// An invalid bundle (including one whose revision does not match its content), a
    /// remote issuer whose URL has no cluster in `keys.clusters`, or a route that reads an
    /// identity header.
    pub fn engine(
        &self,
        compiled: CompiledBundle,
        options: EngineOptions,
    ) -> Result<Engine, ConfigError> {
        if let Some(trust) = &self.bundle_trust {
            trust
                .check(&compiled, &RustCryptoVerifier)
                .map_err(|e| ConfigError::Unsigned(e.to_string()))?;
        }
        let bundle = Bundle::load(compiled).map_err(|e| {
            let problems: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
            ConfigError::Bundle(problems.join("; "))
        })?;
        for (issuer, source) in bundle.remote_issuers() {
            let url = source.url();
            let keys = self.keys.as_ref().ok_or_else(|| {
                ConfigError::NoCluster(
                    "the bundle has remote issuers: `keys.clusters` is required".into(),
                )
            })?;
            if keys.cluster_for(url).is_none() {
                return Err(ConfigError::NoCluster(format!(
                    "no cluster in `keys.clusters` for the origin of `{url}` (issuer `{issuer}`)"
                )));
            }
        }
        let stores_data = !bundle.compiled().settings.data.stored.is_empty();
        match (stores_data, &self.data) {
            (true, None) => {
                return Err(ConfigError::Data {
                    field: "",
                    problem: "the bundle stores data (`settings.data.stored`): configure where the tenants' data is fetched from".into(),
                });
            }
            (false, Some(_)) => {
                return Err(ConfigError::Data {
                    field: "",
                    problem:
                        "the bundle stores no data (`settings.data.stored` is empty): remove `data`"
                            .into(),
                });
            }
            _ => {}
        }
        let secrets = bundle.secrets().into_iter().cloned().collect::<Vec<_>>();
        let engine = Engine::with_options(Arc::new(bundle), options);
        self.edge
            .check_bundle(engine.bundle())
            .map_err(|e| ConfigError::Bundle(e.to_string()))?;
        // HMAC secrets come from the VM's environment, which Envoy fills from its own
        // (`vm_config.environment_variables.host_env_keys`): never from the bundle.
        for secret in secrets {
            let var = secret.env_var();
            let value = std::env::var_os(&var).filter(|v| !v.is_empty()).ok_or_else(|| {
                ConfigError::Secret(format!(
                    "the bundle names the secret `{}`: pass it to the VM as `{var}` (vm_config.environment_variables.host_env_keys)",
                    secret.name
                ))
            })?;
            engine
                .set_secret(&secret.name, value.as_encoded_bytes())
                .map_err(|e| ConfigError::Secret(e.info().message))?;
        }
        Ok(engine)
    }
}

/// `Bearer <the VM's variable var>`, when it holds a usable credential.
fn bearer_from_env(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .map(|token| format!("Bearer {token}"))
}

fn no_env(var: &str) -> String {
    format!("the VM has no usable `{var}` (vm_config.environment_variables.host_env_keys)")
}

fn validate_data(data: &DataConfig) -> Result<HttpTarget, ConfigError> {
    let fail = |field, problem: String| ConfigError::Data { field, problem };
    let target = HttpTarget::parse(&data.url)
        .filter(|t| !data.url.contains(['?', '#']) && !t.path.contains("//"))
        .ok_or_else(|| {
            fail(
                ".url",
                format!(
                    "`{}` is not an http(s) base URL (no query, no fragment)",
                    data.url
                ),
            )
        })?;
    if !acceptable_key_url(&data.url) {
        return Err(fail(
            ".url",
            format!(
                "`{}`: plain http is for loopback only; use https (and a TLS transport socket on the cluster)",
                data.url
            ),
        ));
    }
    if data.cluster.is_empty() {
        return Err(fail(".cluster", "must not be empty".into()));
    }
    if data.timeout_ms == 0
        || data.poll_ms == 0
        || data.wait_ms == 0
        || data.max_bytes == 0
        || data.idle_seconds == 0
    {
        return Err(fail(
            "",
            "`timeout_ms`, `poll_ms`, `wait_ms`, `max_bytes` and `idle_seconds` must be positive"
                .into(),
        ));
    }
    if data.wait_ms > 60_000 {
        return Err(fail(".wait_ms", "must be at most 60000".into()));
    }
    Ok(target)
}

fn validate_remote_bundle(remote: &RemoteBundle) -> Result<HttpTarget, ConfigError> {
    let target = HttpTarget::parse(&remote.url).ok_or_else(|| ConfigError::RemoteBundle {
        field: ".url",
        problem: format!("`{}` is not an http(s) URL", remote.url),
    })?;
    if remote.cluster.is_empty() {
        return Err(ConfigError::RemoteBundle {
            field: ".cluster",
            problem: "must not be empty".into(),
        });
    }
    if remote.poll_seconds == 0 || remote.retry_seconds == 0 || remote.timeout_ms == 0 {
        return Err(ConfigError::RemoteBundle {
            field: "",
            problem: "`poll_seconds`, `retry_seconds` and `timeout_ms` must be positive".into(),
        });
    }
    Ok(target)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use portcullis_engine::BundleSources;
    use serde_json::json;

    /// A compiled bundle allowing everything, for tenant `a` with `issuer` (none: no tenant).
    pub(crate) fn compiled(issuer: Option<serde_json::Value>) -> CompiledBundle {
        BundleSources::permit_all(&match issuer {
            Some(issuer) => json!({"tenants": {"a": {"issuers": [issuer]}}}),
            None => json!({"tenants": {}}),
        })
        .unwrap()
    }

    fn remote_issuer() -> serde_json::Value {
        json!({"issuer": "https://idp.a", "audiences": ["x"], "algorithms": ["RS256"],
               "jwks_uri": "https://idp.a/jwks"})
    }

    fn plan(config: serde_json::Value) -> Result<(Plan, Option<Engine>), ConfigError> {
        Plan::from_json(config.to_string().as_bytes(), |_| EngineOptions::default())
    }

    #[test]
    fn a_remote_bundle_is_configured_without_an_engine() {
        let (plan, engine) = plan(json!({
            "bundle": {"remote": {"url": "http://127.0.0.1:8181/v1/bundle?x=1", "cluster": "policy"}}
        }))
        .unwrap();
        assert!(engine.is_none());
        let (remote, target) = plan.remote_bundle.unwrap();
        assert_eq!(
            (remote.poll_seconds, remote.retry_seconds, remote.timeout_ms),
            (30, 5, 5000)
        );
        assert_eq!(
            (target.authority.as_str(), target.path.as_str()),
            ("127.0.0.1:8181", "/v1/bundle?x=1")
        );
    }

    #[test]
    fn bad_remote_bundle_sources_are_refused() {
        for (remote, expected) in [
            (
                json!({"url": "file:///etc/bundle.json", "cluster": "c"}),
                "not an http(s) URL",
            ),
            (
                json!({"url": "http://h/b", "cluster": ""}),
                "`bundle.remote.cluster`: must not be empty",
            ),
            (
                json!({"url": "http://h/b", "cluster": "c", "poll_seconds": 0}),
                "must be positive",
            ),
            (
                json!({"url": "http://h/b", "cluster": "c", "etag": "x"}),
                "unknown field",
            ),
        ] {
            let err = plan(json!({"bundle": {"remote": remote}})).err().unwrap();
            assert!(err.to_string().contains(expected), "{err} lacks {expected}");
        }
    }

    #[test]
    fn engines_are_built_only_from_sound_bundles_whose_issuers_have_clusters() {
        let remote =
            json!({"remote": {"url": "http://127.0.0.1:8181/v1/bundle", "cluster": "policy"}});
        let (without_keys, _) = plan(json!({"bundle": remote})).unwrap();
        let (with_keys, _) = plan(json!({
            "bundle": remote,
            "keys": {"clusters": {"https://idp.a": "idp"}}
        }))
        .unwrap();
        let bundle = compiled(Some(remote_issuer()));
        let err = without_keys
            .engine(bundle.clone(), EngineOptions::default())
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("`keys.clusters` is required"),
            "{err}"
        );
        assert_eq!(
            with_keys
                .engine(bundle.clone(), EngineOptions::default())
                .unwrap()
                .revision(),
            bundle.revision
        );

        let mut tampered = bundle.clone();
        tampered.policies[0].source = "@id(\"all\")\nforbid(principal, action, resource);".into();
        let err = with_keys
            .engine(tampered, EngineOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("invalid bundle"), "{err}");

        let mut elsewhere = remote_issuer();
        elsewhere["jwks_uri"] = json!("https://other.idp/jwks");
        let err = with_keys
            .engine(compiled(Some(elsewhere)), EngineOptions::default())
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("no cluster in `keys.clusters`"),
            "{err}"
        );
    }

    #[test]
    fn key_refresh_is_the_engines_policy_in_seconds() {
        let remote =
            json!({"remote": {"url": "http://127.0.0.1:8181/v1/bundle", "cluster": "policy"}});
        let (configured, _) = plan(json!({
            "bundle": remote,
            "keys": {"clusters": {}, "refresh": {"retry_seconds": 1, "unknown_kid_cooldown_seconds": 2}}
        }))
        .unwrap();
        let refresh = configured.keys.unwrap().refresh;
        assert_eq!((refresh.retry, refresh.unknown_kid_cooldown), (1000, 2000));
        assert_eq!(refresh.max_age, RefreshPolicy::default().max_age);
        // The fields of the fixed schedule before it are refused, by name.
        let err = plan(json!({
            "bundle": remote, "keys": {"clusters": {}, "refresh_seconds": 300}
        }))
        .err()
        .unwrap();
        assert!(
            err.to_string().contains("unknown field `refresh_seconds`"),
            "{err}"
        );
    }

    #[test]
    fn with_bundle_keys_only_bundles_signed_with_one_of_them_are_used() {
        const PEM: &str = include_str!("../../../policies/techfin/dev-keys/globex-es256.pem");
        const JWKS: &str =
            include_str!("../../../policies/techfin/dev-keys/globex-es256.jwks.json");
        const OTHER: &str = include_str!("../../../policies/techfin/dev-keys/acme-rs256.pem");
        let jwks: serde_json::Value = serde_json::from_str(JWKS).unwrap();
        let sign = |pem, alg| {
            portcullis_engine::sign_bundle(compiled(None), alg, pem, Some("globex-es256")).unwrap()
        };
        let config =
            |bundle: CompiledBundle| json!({"bundle": {"inline": bundle}, "bundle_keys": jwks});
        let signed = sign(PEM, portcullis_engine::Algorithm::ES256);
        let (_, engine) = plan(config(signed.clone())).unwrap();
        assert_eq!(engine.unwrap().revision(), signed.revision);
        for (bundle, expected) in [
            (compiled(None), "bundle refused"),
            (
                sign(OTHER, portcullis_engine::Algorithm::RS256),
                "bundle refused",
            ),
        ] {
            let err = plan(config(bundle)).err().unwrap();
            assert!(err.to_string().contains(expected), "{err}");
        }
        // A signed bundle whose policies were changed after signing.
        let mut tampered = signed;
        tampered.policies[0].source = "@id(\"all\")\nforbid(principal, action, resource);".into();
        assert!(plan(config(tampered)).is_err());
        // Keys that are not a JWK set of public keys are a configuration error.
        let err = plan(json!({"bundle": {"inline": compiled(None)}, "bundle_keys": {"keys": 1}}))
            .err()
            .unwrap();
        assert!(err.to_string().contains("`bundle_keys`"), "{err}");
    }

    #[test]
    fn edge_options_that_cannot_work_are_refused() {
        let config = json!({"bundle": {"inline": compiled(None)},
                            "edge": {"forward": {"tenant": "X-Tenant"}}});
        let err = plan(config).err().unwrap();
        assert!(
            err.to_string().starts_with("`edge`: invalid header name"),
            "{err}"
        );
    }

    /// A bundle that stores `Report`s, for tenant `a`.
    fn storing() -> CompiledBundle {
        let jwks: serde_json::Value = serde_json::from_str(include_str!(
            "../../../policies/techfin/dev-keys/acme-rs256.jwks.json"
        ))
        .unwrap();
        let tenants = json!({"tenants": {"a": {"issuers": [{"issuer": "https://idp.a",
            "audiences": ["x"], "algorithms": ["RS256"], "jwks": jwks}]}}});
        portcullis_engine::BundleSources {
            schema: Some((
                "schema.cedarschema".into(),
                "entity Report { tenant: String };\nentity Tenant;\naction \"data.read\", \"data.write\" appliesTo { principal: Report, resource: Tenant };\n".into(),
            )),
            policies: vec![portcullis_engine::PolicySource {
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

    #[test]
    fn data_is_required_for_a_bundle_that_stores_data_and_refused_otherwise() {
        let data = json!({"url": "http://127.0.0.1:9901", "cluster": "admin"});
        let (plan, engine) = plan(json!({"bundle": {"inline": storing()}, "data": data})).unwrap();
        assert!(engine.unwrap().stores_data());
        let (config, target) = plan.data.unwrap();
        assert_eq!(
            (
                config.timeout_ms,
                config.poll_ms,
                config.wait_ms,
                config.idle_seconds
            ),
            (5000, 500, 1000, 600)
        );
        assert_eq!(config.max_bytes, 16 << 20);
        assert_eq!(config.policy().idle, 600_000);
        assert_eq!(target.origin, "http://127.0.0.1:9901");
        assert!(plan.data_authorization.is_none());

        let err = plan_err(json!({"bundle": {"inline": storing()}}));
        assert!(err.starts_with("`data`: the bundle stores data"), "{err}");
        let err = plan_err(json!({"bundle": {"inline": compiled(None)}, "data": data}));
        assert!(
            err.starts_with("`data`: the bundle stores no data"),
            "{err}"
        );
        for (data, expected) in [
            (
                json!({"url": "http://127.0.0.1:9901/?x=1", "cluster": "c"}),
                "`data.url`: `http://127.0.0.1:9901/?x=1` is not an http(s) base URL",
            ),
            (
                json!({"url": "ftp://127.0.0.1", "cluster": "c"}),
                "is not an http(s) base URL",
            ),
            (
                json!({"url": "http://admin.internal:9901", "cluster": "c"}),
                "plain http is for loopback only",
            ),
            (
                json!({"url": "https://admin.internal", "cluster": ""}),
                "`data.cluster`: must not be empty",
            ),
            (
                json!({"url": "https://admin.internal", "cluster": "c", "poll_ms": 0}),
                "must be positive",
            ),
            (
                json!({"url": "https://admin.internal", "cluster": "c", "wait_ms": 60001}),
                "`data.wait_ms`: must be at most 60000",
            ),
            (
                json!({"url": "https://admin.internal", "cluster": "c", "token_env": "PORTCULLIS_TEST_NO_SUCH_VAR"}),
                "`data.token_env`: the VM has no usable `PORTCULLIS_TEST_NO_SUCH_VAR`",
            ),
            (
                json!({"url": "https://admin.internal", "cluster": "c", "tenants": ["a"]}),
                "unknown field `tenants`",
            ),
        ] {
            let err = plan_err(json!({"bundle": {"inline": storing()}, "data": data}));
            assert!(err.contains(expected), "{err} lacks {expected}");
        }
    }

    fn plan_err(config: serde_json::Value) -> String {
        plan(config).err().unwrap().to_string()
    }

    #[test]
    fn an_inline_bundle_comes_with_its_engine() {
        let bundle = compiled(None);
        let (plan, engine) = plan(json!({"bundle": {"inline": bundle}, })).unwrap();
        assert!(plan.remote_bundle.is_none());
        assert_eq!(engine.unwrap().revision(), bundle.revision);
    }
}
