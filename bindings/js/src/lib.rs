//! # portcullis-js
//!
//! The Portcullis decision engine for browsers and Node, compiled to WebAssembly with
//! wasm-bindgen. This crate is the thin, low-level layer: it converts between JSON text and
//! the engine's types and splits token verification around the signature check, which the
//! JavaScript side does with the host's crypto (`node:crypto` or WebCrypto). The npm package
//! (`bindings/js/js/portcullis.js`, built into `bindings/js/pkg/` by `build.sh`) wraps it in the
//! public API:
//!
//! ```js
//! import { Portcullis } from "portcullis";
//! const pc = await Portcullis.load(compiledBundle);
//! const decision = await pc.decide({ token, action: "view",
//!   resource: { type: "Report", id: "q3", attrs: { tenant: "acme", department: "finance" } } });
//! if (decision.decision === "allow") { /* show the button */ }
//! ```
//!
//! ## How a decision with a fresh token flows
//! 1. [`RawEngine::decide`] asks the engine to begin verifying the token
//!    ([`Engine::begin_token`]): every check but the signature. A cached or rejected token is
//!    decided at once and the decision returned as JSON text.
//! 2. Otherwise it returns a [`Pending`]: algorithm, key (as a JWK), signing input and
//!    signature. JavaScript verifies it with `node:crypto` (Node) or `crypto.subtle.verify`.
//! 3. [`RawEngine::finish`] hands the verdict to the engine ([`Engine::finish_token`], which
//!    caches the verified token) and decides the request(s) with [`Engine::decide`].
//!
//! Everything but the signature arithmetic stays in the engine. The module carries no verifier
//! of its own: a signature the host cannot check (Ed25519 in older browsers) is refused
//! (`token_crypto`), which keeps the browsers' module small.

mod convert;
mod keys;
mod verifier;

use portcullis_engine::{
    Bundle, DecisionIds, DecisionRequest, Edge, EdgeOptions, Engine, EngineOptions, HeaderPairs,
    HttpRequest, KeyCase, KeyUrl, PendingSignature, TokenStep, TrustedRequest,
};
use serde_json::{Map, Value};
use std::sync::Arc;
use verifier::{HostVerifier, Verdict};
use wasm_bindgen::prelude::*;

/// The verdict codes [`RawEngine::finish`] takes.
const VERDICT_INVALID: u32 = 0;
const VERDICT_VALID: u32 = 1;

/// A time from the JS clock (seconds or milliseconds), as a whole number.
pub(crate) fn clock_time(now: f64) -> Result<i64, JsValue> {
    if now.is_finite() && now.abs() < 1e17 {
        #[allow(clippy::cast_possible_truncation)]
        Ok(now.floor() as i64)
    } else {
        Err(convert::invalid(
            "clock",
            "the clock returned something that is not a time".to_owned(),
        ))
    }
}

fn parse<T: serde::de::DeserializeOwned>(text: &[u8], what: &str) -> Result<T, JsValue> {
    let text = std::str::from_utf8(text)
        .map_err(|_| convert::invalid("request_invalid", format!("invalid {what}: not UTF-8")))?;
    portcullis_engine::parse_request(what, text).map_err(|info| convert::error(&info))
}

/// What to do once the signature is checked.
enum Work {
    One(Box<DecisionRequest>),
    Many(Vec<DecisionRequest>),
    Authenticate(String),
    Http(OwnedHttpRequest),
}

/// An HTTP request for [`RawEngine::decide_http`]: `{method, path, headers: [[name, value]]}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnedHttpRequest {
    method: String,
    path: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
}

impl OwnedHttpRequest {
    /// The headers as the edge reads them: names lowercase, values as bytes.
    fn pairs(&self) -> Vec<(String, Vec<u8>)> {
        self.headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.as_bytes().to_vec()))
            .collect()
    }
}

/// A token waiting for its signature to be checked by the host. Returned by
/// [`RawEngine::decide`], [`RawEngine::decide_many`] and [`RawEngine::authenticate`]; passed back,
/// with the verdict, to [`RawEngine::finish`].
#[wasm_bindgen]
pub struct Pending {
    signature: Box<PendingSignature>,
    work: Work,
    now: i64,
}

#[wasm_bindgen]
impl Pending {
    /// The JOSE algorithm (`RS256`, `PS256`, `ES256`, `ES384`, `EdDSA`, `HS256`, ...).
    #[wasm_bindgen(getter)]
    pub fn algorithm(&self) -> String {
        self.signature.algorithm.name().to_owned()
    }

    /// A name for (algorithm, key material) under which the host caches the imported key.
    #[wasm_bindgen(getter, js_name = keyHandle)]
    pub fn key_handle(&self) -> String {
        convert::key_handle(self.signature.algorithm, self.signature.key.material())
    }

    /// The key as a JWK (JSON text) for `crypto.subtle.importKey("jwk", ...)`.
    #[wasm_bindgen(js_name = keyJwk)]
    pub fn key_jwk(&self) -> String {
        convert::jwk(self.signature.key.material())
    }

    /// The signed bytes (`header.payload`).
    #[wasm_bindgen(getter, js_name = signingInput)]
    pub fn signing_input(&self) -> Vec<u8> {
        self.signature.signing_input.clone()
    }

    /// The decoded signature.
    #[wasm_bindgen(getter)]
    pub fn signature(&self) -> Vec<u8> {
        self.signature.signature.clone()
    }
}

/// The engine, as JavaScript sees it. Values cross as JSON text; `portcullis.js` turns them
/// into objects and errors.
#[wasm_bindgen]
pub struct RawEngine {
    engine: Engine,
    verifier: Arc<HostVerifier>,
    edge: Edge,
}

impl RawEngine {
    /// The engine, for the key schedule.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }
}

#[wasm_bindgen]
impl RawEngine {
    /// Load a compiled bundle (the JSON `portcullis bundle` writes). `seed_hi`/`seed_lo` are
    /// random bits mixed into decision ids.
    ///
    /// # Errors
    /// `bundle_invalid`, with every problem.
    #[wasm_bindgen(constructor)]
    pub fn new(bundle_json: &str, seed_hi: u32, seed_lo: u32) -> Result<RawEngine, JsValue> {
        let bundle = Bundle::from_json(bundle_json).map_err(|e| convert::bundle_error(&e))?;
        let verifier = Arc::new(HostVerifier::default());
        let options = EngineOptions::new(
            Arc::clone(&verifier) as Arc<dyn portcullis_engine::SignatureVerifier>,
            DecisionIds::Seed((u64::from(seed_hi) << 32) | u64::from(seed_lo)),
        );
        Ok(Self {
            engine: Engine::with_options(Arc::new(bundle), options),
            verifier,
            edge: Edge::default(),
        })
    }

    /// Set the edge options [`RawEngine::decide_http`] maps requests with (JSON, as the Envoy
    /// filter's `edge`).
    ///
    /// # Errors
    /// `edge_invalid`: options that do not parse or hold together, or that the bundle's
    /// routes cannot be used with.
    #[wasm_bindgen(js_name = setEdge)]
    pub fn set_edge(&mut self, options_json: &str) -> Result<(), JsValue> {
        let invalid = |message: String| convert::invalid("edge_invalid", message);
        let options: EdgeOptions = portcullis_engine::parse_request("edge options", options_json)
            .map_err(|e| invalid(e.message))?;
        let edge = Edge::new(options).map_err(|e| invalid(e.to_string()))?;
        edge.check_bundle(self.engine.bundle())
            .map_err(|e| invalid(e.to_string()))?;
        self.edge = edge;
        Ok(())
    }

    /// The bundle revision.
    #[wasm_bindgen(getter)]
    pub fn revision(&self) -> String {
        self.engine.revision().to_owned()
    }

    /// The number of verified tokens in the cache.
    #[wasm_bindgen(getter, js_name = cachedTokens)]
    pub fn cached_tokens(&self) -> u32 {
        u32::try_from(self.engine.cached_tokens()).unwrap_or(u32::MAX)
    }

    /// Issuers whose keys the host fetches: JSON `[{issuer, jwksUri?, discovery?, loaded}]`.
    #[wasm_bindgen(js_name = remoteIssuers)]
    pub fn remote_issuers(&self) -> String {
        let list: Vec<Value> = self
            .engine
            .remote_issuers()
            .into_iter()
            .map(|(issuer, source, loaded)| {
                let mut entry = Map::new();
                entry.insert("issuer".into(), issuer.into());
                match source {
                    KeyUrl::JwksUri(url) => entry.insert("jwksUri".into(), url.into()),
                    KeyUrl::Discovery(url) => entry.insert("discovery".into(), url.into()),
                };
                entry.insert("loaded".into(), loaded.into());
                Value::Object(entry)
            })
            .collect();
        Value::Array(list).to_string()
    }

    /// The names of the HMAC secrets the bundle's issuers need (JSON array of strings).
    #[wasm_bindgen(js_name = secretNames)]
    pub fn secret_names(&self) -> String {
        let names: Vec<&str> = self
            .engine
            .bundle()
            .secrets()
            .into_iter()
            .map(|s| s.name.as_str())
            .collect();
        serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
    }

    /// Hand over an HMAC secret the bundle names; returns the number of issuers using it.
    ///
    /// # Errors
    /// `keys_unknown_secret`, `keys_invalid_secret`.
    #[wasm_bindgen(js_name = setSecret)]
    pub fn set_secret(&self, name: &str, secret: &[u8]) -> Result<u32, JsValue> {
        let count = self
            .engine
            .set_secret(name, secret)
            .map_err(|e| convert::error(&e.info()))?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// Replace a remote issuer's JWK set (JSON text); returns the number of usable keys.
    ///
    /// # Errors
    /// `keys_unknown_issuer`, `keys_invalid`; the previous keys stay.
    #[wasm_bindgen(js_name = setIssuerKeys)]
    pub fn set_issuer_keys(&self, issuer: &str, jwks_json: &str) -> Result<u32, JsValue> {
        let jwks: Value = serde_json::from_str(jwks_json)
            .map_err(|e| convert::invalid("keys_invalid", format!("invalid JWK set: {e}")))?;
        let count = self
            .engine
            .set_issuer_keys(issuer, &jwks)
            .map_err(|e| convert::error(&e.info()))?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// Hand over a tenant's stored data (a `DataDocument`, JSON text): a snapshot (in a
    /// browser, the signed-in user's slice) or the changes since the revision held. Returns the
    /// revision now held.
    ///
    /// # Errors
    /// `data_*` codes; the data held stays as it was.
    #[wasm_bindgen(js_name = loadTenantData)]
    pub fn load_tenant_data(&self, document_json: &str) -> Result<f64, JsValue> {
        let loaded = self
            .engine
            .load_tenant_data(document_json)
            .map_err(|e| convert::error(&e.info()))?;
        // Revisions count commits: far below 2^53.
        #[allow(clippy::cast_precision_loss)]
        Ok(loaded.revision as f64)
    }

    /// Hand over a signed-in user's slice of `tenant`'s data (the document of
    /// `GET /v1/data/{tenant}/slice`, JSON text), which must be a slice of that tenant.
    /// Returns `{tenant, revision, entities}` as JSON text.
    ///
    /// # Errors
    /// `data_*` codes; the data held stays as it was.
    #[wasm_bindgen(js_name = loadDataSlice)]
    pub fn load_data_slice(&self, tenant: &str, document_json: &str) -> Result<String, JsValue> {
        let loaded = self
            .engine
            .load_data_slice(tenant, document_json)
            .map_err(|e| convert::error(&e.info()))?;
        Ok(serde_json::json!({
            "tenant": loaded.tenant,
            "revision": loaded.revision,
            "entities": loaded.entities,
        })
        .to_string())
    }

    /// Decide one request (`{token?, action, resource, context}`, JSON as UTF-8) at unix time
    /// `now`. A string token comes apart, as UTF-8 (empty: none), so that neither side writes or
    /// reads it as JSON. Returns the decision as JSON text, or a [`Pending`] signature for the
    /// host to check.
    ///
    /// # Errors
    /// `request_invalid` when the request does not have the documented shape.
    pub fn decide(&self, token: &[u8], request_json: &[u8], now: f64) -> Result<JsValue, JsValue> {
        let now = clock_time(now)?;
        let mut request: DecisionRequest = parse(request_json, "request")?;
        if !token.is_empty() {
            if request.token.is_some() {
                return Err(convert::invalid(
                    "request_invalid",
                    "invalid request: two tokens".to_owned(),
                ));
            }
            let token = std::str::from_utf8(token).map_err(|_| {
                convert::invalid(
                    "request_invalid",
                    "invalid request: the token is not UTF-8".to_owned(),
                )
            })?;
            request.token = Some(token.to_owned());
        }
        Ok(match self.begin(request.token.as_deref(), now) {
            Some(signature) => self.pending(signature, Work::One(Box::new(request)), now),
            None => JsValue::from_str(&convert::decision(&self.engine.decide(&request, now))),
        })
    }

    /// Decide several requests (`[{action, resource, context}]`, JSON as UTF-8) for one token.
    /// Returns a JSON array of decisions, or a [`Pending`] signature.
    ///
    /// # Errors
    /// `request_invalid` when a request does not have the documented shape.
    #[wasm_bindgen(js_name = decideMany)]
    pub fn decide_many(
        &self,
        token: Option<String>,
        requests_json: &[u8],
        now: f64,
    ) -> Result<JsValue, JsValue> {
        let now = clock_time(now)?;
        let items: Vec<Map<String, Value>> = parse(requests_json, "requests")?;
        let requests = items
            .into_iter()
            .enumerate()
            .map(|(index, mut item)| {
                if item.contains_key("token") {
                    return Err(convert::invalid(
                        "request_invalid",
                        format!(
                            "invalid requests: request {index} has a `token`; the batch has one token for all"
                        ),
                    ));
                }
                if let Some(token) = &token {
                    item.insert("token".into(), Value::String(token.clone()));
                }
                serde_json::from_value(Value::Object(item)).map_err(|e| {
                    convert::invalid(
                        "request_invalid",
                        format!("invalid requests: request {index}: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<DecisionRequest>, JsValue>>()?;
        Ok(match self.begin(token.as_deref(), now) {
            Some(signature) => self.pending(signature, Work::Many(requests), now),
            None => JsValue::from_str(&self.decide_all(&requests, now)),
        })
    }

    /// Decide an HTTP request (`{method, path, headers: [[name, value]]}`, JSON as UTF-8) with
    /// the bundle's routes and the edge options, as the Envoy filter does. Returns the verdict
    /// as JSON text ([`portcullis_engine::EdgeVerdict::to_json`]), or a [`Pending`] signature.
    ///
    /// # Errors
    /// `request_invalid` when the request does not have the documented shape.
    #[wasm_bindgen(js_name = decideHttp)]
    pub fn decide_http(&self, request_json: &[u8], now: f64) -> Result<JsValue, JsValue> {
        let now = clock_time(now)?;
        let request: OwnedHttpRequest = parse(request_json, "HTTP request")?;
        let pairs = request.pairs();
        let http = HttpRequest {
            method: &request.method,
            path: &request.path,
            headers: &HeaderPairs(&pairs),
        };
        let mapped = match self.edge.map(&self.engine, &http) {
            Ok(mapped) => mapped,
            Err(verdict) => return Ok(JsValue::from_str(&verdict.to_json(KeyCase::Camel))),
        };
        Ok(match self.begin(mapped.token(), now) {
            // Mapped again when the signature is checked: the bundle may change meanwhile.
            Some(signature) => self.pending(signature, Work::Http(request), now),
            None => {
                JsValue::from_str(&self.edge.decide_mapped(mapped, now).to_json(KeyCase::Camel))
            }
        })
    }

    /// Verify a token and map its claims, without deciding anything. Returns the principal as
    /// JSON text, or a [`Pending`] signature.
    ///
    /// # Errors
    /// Why the token is not accepted (`token_*`).
    pub fn authenticate(&self, token: &str, now: f64) -> Result<JsValue, JsValue> {
        let now = clock_time(now)?;
        match self.begin(Some(token), now) {
            Some(signature) => {
                Ok(self.pending(signature, Work::Authenticate(token.to_owned()), now))
            }
            None => self.principal(token, now),
        }
    }

    /// Finish what a [`Pending`] was for, with the host's verdict on its signature:
    /// `0` invalid, `1` valid, anything else: the host could not check it (the token is refused
    /// with `token_crypto`).
    ///
    /// # Errors
    /// For [`RawEngine::authenticate`]: why the token is not accepted.
    pub fn finish(&self, pending: Pending, verdict: u32) -> Result<String, JsValue> {
        let Pending {
            signature,
            work,
            now,
        } = pending;
        let mut signature = *signature;
        let _remembered = match verdict {
            VERDICT_INVALID | VERDICT_VALID => {
                let valid = verdict == VERDICT_VALID;
                let remembered = self.verifier.remember(Verdict {
                    algorithm: signature.algorithm,
                    material: signature.key.material().clone(),
                    message: std::mem::take(&mut signature.signing_input),
                    signature: std::mem::take(&mut signature.signature),
                    valid,
                });
                // Its result is not needed: the decisions below find the token in the cache,
                // or verify again and get the same answer (with the error, if any). If the
                // issuer's keys changed since `begin`, the engine caches nothing
                // (`token_keys_changed`) and `decide` starts over with the current keys (and
                // the remembered verdict, if the key is still there).
                let _ = self.engine.finish_token(signature, valid, now);
                Some(remembered)
            }
            _ => None,
        };
        match work {
            Work::One(request) => Ok(convert::decision(&self.engine.decide(&request, now))),
            Work::Many(requests) => Ok(self.decide_all(&requests, now)),
            Work::Authenticate(token) => self
                .principal(&token, now)
                .map(|p| p.as_string().unwrap_or_default()),
            Work::Http(request) => Ok(self.verdict(&request, now)),
        }
    }

    /// Decide for an explicit, already-authenticated principal (trusted-principal mode):
    /// `{principal, action, resource, context?, entities?, tenant?}` as JSON text, where
    /// `action` is an action id or an entity reference `{type, id}`.
    ///
    /// # Errors
    /// `request_invalid` when the request does not have the documented shape.
    #[wasm_bindgen(js_name = decideTrusted)]
    pub fn decide_trusted(&self, request_json: &str, now: f64) -> Result<String, JsValue> {
        let now = clock_time(now)?;
        let mut request: Map<String, Value> = parse(request_json.as_bytes(), "trusted request")?;
        if let Some(Value::Object(action)) = request.get("action") {
            let uid = match (
                action.get("type").and_then(Value::as_str),
                action.get("id").and_then(Value::as_str),
                action.len(),
            ) {
                (Some(ty), Some(id), 2) => portcullis_engine::entity_uid_text(ty, id),
                _ => {
                    return Err(convert::invalid(
                        "request_invalid",
                        "invalid trusted request: `action` must be an action id or `{type, id}`"
                            .to_owned(),
                    ));
                }
            };
            request.insert("action".into(), Value::String(uid));
        }
        let request: TrustedRequest =
            serde_json::from_value(Value::Object(request)).map_err(|e| {
                convert::invalid("request_invalid", format!("invalid trusted request: {e}"))
            })?;
        Ok(convert::decision(
            &self.engine.decide_trusted(&request, now),
        ))
    }
}

impl RawEngine {
    /// The signature work for `token`, or `None` when the engine can decide at once (a cached
    /// token, or one it rejects before any signature work).
    fn begin(&self, token: Option<&str>, now: i64) -> Option<Box<PendingSignature>> {
        match self.engine.begin_token(token.unwrap_or(""), now) {
            Ok(TokenStep::NeedsSignature(pending)) => Some(pending),
            _ => None,
        }
    }

    fn pending(&self, signature: Box<PendingSignature>, work: Work, now: i64) -> JsValue {
        JsValue::from(Pending {
            signature,
            work,
            now,
        })
    }

    fn verdict(&self, request: &OwnedHttpRequest, now: i64) -> String {
        let pairs = request.pairs();
        self.edge
            .decide(
                &self.engine,
                &HttpRequest {
                    method: &request.method,
                    path: &request.path,
                    headers: &HeaderPairs(&pairs),
                },
                now,
            )
            .to_json(KeyCase::Camel)
    }

    fn decide_all(&self, requests: &[DecisionRequest], now: i64) -> String {
        let decisions: Vec<_> = requests
            .iter()
            .map(|request| self.engine.decide(request, now))
            .collect();
        convert::decisions(&decisions)
    }

    fn principal(&self, token: &str, now: i64) -> Result<JsValue, JsValue> {
        self.engine
            .authenticate(token, now)
            .map(|p| JsValue::from_str(&convert::principal(&p)))
            .map_err(|e| convert::token_error(&e))
    }
}

/// The query of `GET /v1/data/{tenant}/slice` asking for `resources_json` (`[{type, id}]`,
/// full ids as decisions name them): `resource=<Type>/<id>&…`, ids relative to the tenant
/// (resources of another tenant left out). Empty for none.
///
/// # Errors
/// `request_invalid`: not an array of `{type, id}`, more resources than a slice takes, or a
/// type that is not an entity type name.
#[wasm_bindgen(js_name = sliceQuery)]
pub fn slice_query(tenant: &str, resources_json: &[u8]) -> Result<String, JsValue> {
    let resources: Vec<portcullis_engine::EntityRef> = parse(resources_json, "resources")?;
    portcullis_engine::SliceRequest::new(tenant, &resources)
        .map(|request| request.query())
        .map_err(|info| convert::error(&info))
}

/// The largest slice document the SDK reads, bytes (the service serves none larger).
#[wasm_bindgen(js_name = maxSliceDocument)]
pub fn max_slice_document() -> u32 {
    u32::try_from(portcullis_engine::MAX_SLICE_DOCUMENT).unwrap_or(u32::MAX)
}
