//! # portcullis-envoy
//!
//! Portcullis as an Envoy HTTP filter (proxy-wasm, `wasm32-wasip1`): Envoy verifies the caller's
//! token, maps the request to an action and a resource, asks the engine, and either forwards
//! the request with the caller's identity or answers 401/403 — with no call to any other
//! service on the request path. `build.sh` builds `portcullis_envoy.wasm`;
//! `examples/envoy/` shows it in a complete `envoy.yaml`.
//!
//! The engine is built once per VM (one per Envoy worker) in `on_configure`; requests never
//! parse policy. A configuration that does not validate is refused by `on_configure`, so Envoy
//! keeps the previous one (or refuses to start).
//!
//! ## Configuration
//! The plugin configuration is one JSON document (unknown fields are errors); its `edge`
//! object is the same JSON as `portcullis serve`'s ext_authz options. The routes —
//! method and path to action and resource — are part of the bundle (`routes.json` in its
//! directory; see the README's "Routes"): the filter, `portcullis serve`'s ext_authz and
//! `portcullis check --path` map requests with the same engine code.
//!
//! ```json
//! {
//!   "bundle": { "inline": { "format": "portcullis.bundle/v1", "...": "the output of `portcullis bundle`" } },
//!   "edge": {
//!     "unmatched": "deny",
//!     "token": [ { "header": { "name": "authorization", "prefix": "Bearer " } },
//!                { "cookie": { "name": "access_token" } },
//!                { "query": { "name": "access_token" } } ],
//!     "forward": { "tenant": "x-portcullis-tenant", "subject": "x-portcullis-subject",
//!                  "roles": "x-portcullis-roles", "decision_id": "x-portcullis-decision-id" },
//!     "dry_run": false,
//!     "cors_preflight": true,
//!     "failure_mode": "closed",
//!     "realm": "api"
//!   },
//!   "log": { "level": "info" },
//!   "crypto": "envoy",
//!   "wasm_signatures_per_second": 200,
//!   "bundle_keys": { "keys": [ "...public JWKs bundles must be signed with" ] },
//!   "keys": { "clusters": { "http://127.0.0.1:4000": "idp" }, "timeout_ms": 5000,
//!             "refresh": { "min_age_seconds": 60, "max_age_seconds": 86400,
//!                          "default_age_seconds": 300, "retry_seconds": 10,
//!                          "unknown_kid_cooldown_seconds": 30 } }
//! }
//! ```
//!
//! | field | meaning (default) |
//! |---|---|
//! | `bundle.inline` | the compiled bundle (`portcullis bundle <dir> -o bundle.json`) |
//! | `bundle.remote` | instead of `inline`: `{"url", "cluster", "poll_seconds", "retry_seconds", "timeout_ms", "token_env"}` (30, 5, 5000, none): the bundle is fetched through the Envoy `cluster` (for example from `portcullis serve`'s admin listener, `GET /v1/bundle`) and polled with `If-None-Match`; `token_env` names the VM environment variable holding the admin listener's bearer credential; see [`portcullis_engine::Upkeep`] |
//! | `bundle_keys` | a JWK set of public keys: every bundle (inline or fetched) must carry a signature that verifies with one of them (`portcullis bundle --sign`), or it is refused (none: signatures are not required) |
//! | `edge.unmatched` | `deny` (403) or `pass` (forward without decision; safe only when the upstream routes exactly like the bundle) (`deny`) |
//! | `edge.token` | sources in order: `header` (with case-insensitive `prefix`), `cookie`, `query`; a token in more than one is refused (400, RFC 6750 §2), the same token header twice is refused (403) (`authorization`, `Bearer `) |
//! | `edge.forward` | identity headers set on allowed requests; a client's copies are never read and never forwarded, allowed or not, under any spelling (`x_portcullis_tenant`, `X-Portcullis-Tenant`); roles are comma-separated, each percent-encoded (all four, as shown; `{}` for none) |
//! | `edge.dry_run` | decide, count and log, but always forward (`false`); a request that cannot be mapped is still refused |
//! | `edge.cors_preflight` | forward `OPTIONS` with `Origin` and `Access-Control-Request-Method` without a token, when a route matches the method asked about and the path (`true`) |
//! | `edge.failure_mode` | when no decision can be made (no keys for the token's issuer yet, the signature could not be checked): `closed` answers 503, `open` forwards without identity (`closed`) |
//! | `edge.realm` | the `realm` of `WWW-Authenticate` challenges (`api`) |
//! | `log.level` | level of the one JSON decision-log line per request: `off`, `debug`, `info`, `warn` (`info`) |
//! | `crypto` | where `RS*` and `ES*` signatures are checked: `envoy` (Envoy's `verify_signature` foreign function, BoringSSL; in Wasm, with a warning, where the function is missing or refuses a key) or `wasm` (RustCrypto); `PS*`, `EdDSA` and `HS*` are always checked in Wasm (`envoy`) |
//! | `wasm_signatures_per_second` | signatures a worker checks in Wasm per second; past it, a new token is answered 503 until the next second (cached tokens are not checked again) (`200`; `0`: unlimited) |
//! | `keys` | required when the bundle has `jwks_uri`/`discovery` issuers: `clusters` (URL origin → Envoy cluster), `timeout_ms` of a fetch (5000), `refresh`: bounds of the IdP's `max-age` (60 s – 24 h), the age without one (300 s), retry delay (10 s), unknown-`kid` cooldown (30 s) |
//! | `data` | required when the bundle stores data (`settings.data.stored`), refused otherwise: `{"url", "cluster", "token_env", "timeout_ms", "poll_ms", "wait_ms", "max_bytes", "idle_seconds"}` (none, none, none, 5000, 500, 1000, 16 MiB, 600): the tenants' data is fetched through `cluster` from `<url>/v1/data/<tenant>` (the decision service's admin listener; `https`, or `http` to loopback), with the bearer credential in the VM variable `token_env`; see "Tenants' stored data" below |
//!
//! HMAC issuers' secrets are never in the bundle: the filter reads the secret named `n` from
//! the VM's environment variable `PORTCULLIS_SECRET_<N>` (upper case, `_` for other
//! characters), which Envoy passes from its own environment with
//! `vm_config.environment_variables.host_env_keys`; a bundle naming a secret the VM lacks is
//! refused.
//!
//! ## Responses
//! Every local answer is JSON `{"code", "message", "decision_id"?}`:
//! - Allowed: forwarded, with the identity headers.
//! - 401 `unauthenticated` with `WWW-Authenticate: Bearer realm="api"` (no token) or `Bearer
//!   realm="api", error="invalid_token"` (a token that does not verify); RFC 6750 §3.1.
//! - 403 `forbidden` when policy denies (with the decision id), or for unmatched routes.
//! - 400 `request_invalid` for a request that cannot be mapped (a path that is not canonical,
//!   a method-override header, a header a route reads that is not UTF-8) or that carries a token
//!   in two places (`error="invalid_request"`); 403 `request_invalid` for a repeated input header.
//! - 503 `unavailable` (with `Retry-After`) when the token's issuer has no keys yet or its
//!   signature could not be checked (fail closed), or, whatever `failure_mode` says, when a
//!   remote bundle has not arrived yet, or the tenant's stored data did not arrive within
//!   `data.wait_ms`.
//!
//! ## Stats and logs
//! Counters `portcullis.allowed`, `portcullis.denied`, `portcullis.unauthenticated`,
//! `portcullis.errors`, for a remote bundle `portcullis.bundle_updates` (new revisions
//! accepted) and `portcullis.bundle_refused`, and with `data` `portcullis.data_updates`,
//! `portcullis.data_refused`, `portcullis.data_evictions` and `portcullis.data_wait_timeouts`
//! (Envoy shows them as `wasmcustom.portcullis.*`). The decision log is the
//! engine's audit record (token fingerprint and `jti`, never the token) plus `http.method`,
//! `http.path` (without query), `http.route`, `http.status` and `dry_run`.
//!
//! ## A bundle fetched over HTTP
//! With `bundle.remote`, the filter starts without a bundle (503) and one worker polls the URL
//! every `poll_seconds` for all of them (Envoy shared data, as for keys), sending the last
//! ETag in `If-None-Match`. A new bundle is loaded off the request path (on the timer) and
//! swapped in between requests; one that does not load (a revision that does not match its
//! content, a policy that does not compile, a remote issuer without a cluster) is logged,
//! counted and dropped, and the previous bundle keeps serving, as it does while the source is
//! down. The URL's scheme does not choose TLS: give the cluster a TLS `transport_socket` for
//! anything but loopback. See [`portcullis_engine::Upkeep`].
//!
//! ## Tenants' stored data
//! With `data`, the filter keeps the data of every tenant it sees, on the engine's schedule
//! ([`portcullis_engine::SharedTenantData`]). The tenant of a request is the verified token's
//! (never a header or path a client controls); a request whose tenant's data is not held is
//! paused while one worker fetches the snapshot for all (Envoy shared data), then decided with
//! it; after `wait_ms` it is answered 503, never forwarded, whatever `failure_mode` says
//! (only `dry_run` forwards it). Held tenants are polled every `poll_ms` for changes
//! (`?since=`, `If-None-Match`); a failure or a refused document (over `max_bytes`, malformed,
//! another tenant's) keeps the last good data and is retried with a doubling delay. Each worker
//! holds at most `max_bytes` of documents, forgetting the tenants least recently seen past it,
//! and those idle for `idle_seconds`. Each worker's memory grows by about 17 times the
//! document bytes it holds (100 tenants of 1,000 entities, 9.9 MiB of JSON: about 170 MiB per
//! worker); a write is enforced at the edge within 0.6 s at p99 with the default `poll_ms`
//! (`BENCHMARKS.md`).
//!
//! ## Keys of remote issuers
//! Fetched through Envoy clusters on the engine's schedule ([`portcullis_engine::KeySchedule`],
//! the same as `portcullis serve`'s and the JS SDK's): OIDC discovery (whose `issuer` must be
//! the configured one), then `jwks_uri`; kept for the IdP's `Cache-Control: max-age` within
//! `keys.refresh`'s bounds; refetched early when a token names an unknown `kid` (once per
//! cooldown, for that issuer only); one fetch in flight for all workers
//! ([`portcullis_engine::SharedStore`]); the last good keys kept when the IdP is down.

pub mod config;
pub mod crypto;
pub mod gate;
#[cfg(target_arch = "wasm32")]
mod proxy;

/// Small blocks from free lists, not dlmalloc's bins (see `portcullis-alloc`).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: portcullis_alloc::SizeClasses = portcullis_alloc::SizeClasses::new();
