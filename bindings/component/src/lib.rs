//! # portcullis-component
//!
//! The Portcullis engine as a WASI component (wasm32-wasip2). It exports the `engine`
//! interface of `wit/portcullis.wit` — load a compiled bundle, hand over issuer keys, decide —
//! and imports `crypto`, signature verification and SHA-256, from its host. The `portcullis` binary
//! embeds this component and runs it in wasmtime, checking signatures with native crypto, so
//! the sandbox costs little and fresh tokens cost what native crypto costs.
//!
//! Build it with `cargo build -p portcullis-component --target wasm32-wasip2` (the host's
//! build script does this itself). Only conversions live here; decisions are the engine's.

mod bindings;

use bindings::exports::portcullis::engine::engine::{
    Decided, EdgeAction as WitEdgeAction, EdgeVerdict, Error, Guest, HttpRequest as WitRequest,
    HttpResponse, Outcome as WitOutcome, RemoteIssuer, SliceRefused, Sliced as WitSlice,
};
use bindings::portcullis::engine::crypto;
use portcullis_engine::{
    Algorithm, Bundle, Curve, Decision, DecisionIds, DecisionRequest, Edge, EdgeAction,
    EdgeOptions, Engine, EngineOptions, ErrorInfo, HeaderPairs, HttpRequest, KeyMaterial, KeyUrl,
    Outcome, SignatureVerifier, SliceRequest, TrustedRequest, VerificationKey, apply_bearer,
};
use std::cell::RefCell;
use std::sync::Arc;

/// Small blocks from free lists, not dlmalloc's bins (see `portcullis-alloc`).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: portcullis_alloc::SizeClasses = portcullis_alloc::SizeClasses::new();

thread_local! {
    /// The engine of this instance; `None` until a bundle is loaded. Wasm components are
    /// single-threaded, so a `RefCell` is all the sharing there is.
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
    /// How HTTP requests are decided (`set-edge`); the defaults until set.
    static EDGE: RefCell<Option<Edge>> = const { RefCell::new(None) };
}

/// Checks signatures (and hashes tokens) by calling the host's `crypto` import.
struct HostVerifier;

impl SignatureVerifier for HostVerifier {
    fn verify(
        &self,
        alg: Algorithm,
        key: &VerificationKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, String> {
        let material = match key.material() {
            KeyMaterial::Rsa { n, e } => crypto::KeyMaterial::Rsa(crypto::RsaKey { n, e }),
            KeyMaterial::Ec { curve, x, y } => crypto::KeyMaterial::Ec(crypto::EcKey {
                curve: match curve {
                    Curve::P256 => crypto::Curve::P256,
                    Curve::P384 => crypto::Curve::P384,
                    Curve::Ed25519 => return Err("Ed25519 is not an EC curve".to_owned()),
                },
                x,
                y,
            }),
            KeyMaterial::Ed25519 { x } => crypto::KeyMaterial::Ed25519(x),
            KeyMaterial::Hmac { secret } => crypto::KeyMaterial::Hmac(secret),
        };
        crypto::verify(wit_algorithm(alg), material, message, signature)
    }

    /// Natively, by the host: SHA-256 in Wasm costs several times what it costs natively.
    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        // A host that answers anything but 32 bytes is broken; the digest is computed here
        // then, so that fingerprints stay right.
        <[u8; 32]>::try_from(crypto::sha256(data).as_slice())
            .unwrap_or_else(|_| portcullis_engine::sha256(data))
    }
}

fn wit_algorithm(alg: Algorithm) -> crypto::Algorithm {
    use crypto::Algorithm as W;
    match alg {
        Algorithm::HS256 => W::Hs256,
        Algorithm::HS384 => W::Hs384,
        Algorithm::HS512 => W::Hs512,
        Algorithm::RS256 => W::Rs256,
        Algorithm::RS384 => W::Rs384,
        Algorithm::RS512 => W::Rs512,
        Algorithm::PS256 => W::Ps256,
        Algorithm::PS384 => W::Ps384,
        Algorithm::PS512 => W::Ps512,
        Algorithm::ES256 => W::Es256,
        Algorithm::ES384 => W::Es384,
        Algorithm::EdDSA => W::Eddsa,
    }
}

fn error(info: &ErrorInfo) -> Error {
    Error {
        code: info.code.to_owned(),
        message: info.message.clone(),
    }
}

/// Parse a request without ever echoing it (see `portcullis_engine::parse_request`).
fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, Error> {
    portcullis_engine::parse_request(what, text).map_err(|info| error(&info))
}

fn not_loaded() -> Error {
    error(&not_loaded_info())
}

fn not_loaded_info() -> ErrorInfo {
    ErrorInfo {
        code: "bundle_missing",
        message: "no bundle is loaded".to_owned(),
        help: None,
    }
}

/// The elements of a JSON array as raw text.
fn parse_raw_array(text: &str) -> Result<Vec<&serde_json::value::RawValue>, Error> {
    serde_json::from_str(text).map_err(|e| Error {
        code: "request_invalid".to_owned(),
        message: portcullis_engine::describe_json_error("batch", &e),
    })
}

/// `edge_invalid`: edge options that do not hold together, or that the bundle's routes cannot
/// be used with.
fn edge_invalid(e: portcullis_engine::EdgeConfigError) -> Error {
    Error {
        code: "edge_invalid".to_owned(),
        message: e.to_string(),
    }
}

/// Run `f` on the loaded engine.
fn with_engine<T>(f: impl FnOnce(&Engine) -> Result<T, Error>) -> Result<T, Error> {
    ENGINE.with_borrow(|engine| engine.as_ref().map_or_else(|| Err(not_loaded()), f))
}

fn decided(decision: &Decision) -> Decided {
    Decided {
        outcome: match decision.decision {
            Outcome::Allow => WitOutcome::Allow,
            Outcome::Deny => WitOutcome::Deny,
            Outcome::Unauthenticated => WitOutcome::Unauthenticated,
        },
        status: decision.status,
        decision_json: decision.to_json(),
        audit_json: decision.audit_record().to_json(),
        keys_wanted: decision.keys_wanted().map(str::to_owned),
        error_code: decision.errors.first().map(|e| e.code.to_owned()),
        tenant: decision.principal.as_ref().map(|p| p.tenant.clone()),
    }
}

/// The exported `engine` interface.
pub(crate) struct Component;

impl Guest for Component {
    fn load(bundle_json: String, seed: u64) -> Result<String, Error> {
        let bundle = Bundle::from_json(&bundle_json).map_err(|e| error(&e.info()))?;
        let options = EngineOptions::new(Arc::new(HostVerifier), DecisionIds::Seed(seed));
        EDGE.with_borrow(|edge| match edge {
            Some(edge) => edge.check_bundle(&bundle).map_err(edge_invalid),
            None => Ok(()),
        })?;
        let engine = Engine::with_options(Arc::new(bundle), options);
        let revision = engine.revision().to_owned();
        ENGINE.set(Some(engine));
        Ok(revision)
    }

    fn revision() -> Option<String> {
        ENGINE.with_borrow(|engine| engine.as_ref().map(|e| e.revision().to_owned()))
    }

    fn remote_issuers() -> Vec<RemoteIssuer> {
        ENGINE.with_borrow(|engine| {
            let Some(engine) = engine else {
                return Vec::new();
            };
            engine
                .remote_issuers()
                .into_iter()
                .map(|(issuer, source, has_keys)| {
                    let (kind, url) = match source {
                        KeyUrl::JwksUri(url) => ("jwks-uri", url),
                        KeyUrl::Discovery(url) => ("discovery", url),
                    };
                    RemoteIssuer {
                        issuer,
                        kind: kind.to_owned(),
                        url,
                        has_keys,
                    }
                })
                .collect()
        })
    }

    fn set_issuer_keys(issuer: String, jwks_json: String) -> Result<u32, Error> {
        let jwks: serde_json::Value = parse("JWK set", &jwks_json)?;
        with_engine(|engine| {
            let count = engine
                .set_issuer_keys(&issuer, &jwks)
                .map_err(|e| error(&e.info()))?;
            Ok(u32::try_from(count).unwrap_or(u32::MAX))
        })
    }

    fn load_tenant_data(document_json: String) -> Result<u64, Error> {
        with_engine(|engine| {
            engine
                .load_tenant_data(&document_json)
                .map(|loaded| loaded.revision)
                .map_err(|e| error(&e.info()))
        })
    }

    fn forget_tenant_data(tenant: String) -> bool {
        ENGINE.with_borrow(|engine| {
            engine
                .as_ref()
                .is_some_and(|e| e.forget_tenant_data(&tenant))
        })
    }

    fn data_slice(
        tenant: String,
        query: String,
        bearer: String,
        now: i64,
    ) -> Result<WitSlice, SliceRefused> {
        let refused = |info: &ErrorInfo, status: u16, keys_wanted: Option<String>| SliceRefused {
            code: info.code.to_owned(),
            status,
            message: info.message.clone(),
            keys_wanted,
        };
        let request =
            SliceRequest::from_query(&tenant, &query).map_err(|info| refused(&info, 400, None))?;
        ENGINE.with_borrow(|engine| {
            let Some(engine) = engine else {
                return Err(refused(&not_loaded_info(), 503, None));
            };
            engine
                .data_slice(&bearer, &request, now)
                .map(|slice| WitSlice {
                    document_json: slice.json,
                    revision: slice.revision,
                    audit_json: slice.audit_json,
                })
                .map_err(|e| {
                    let keys = e.keys_wanted().map(str::to_owned);
                    refused(&e.info(), e.http_status(), keys)
                })
        })
    }

    fn set_edge(options_json: String) -> Result<(), Error> {
        let options: EdgeOptions = parse("edge options", &options_json)?;
        let edge = Edge::new(options).map_err(edge_invalid)?;
        ENGINE.with_borrow(|engine| match engine {
            Some(engine) => edge.check_bundle(engine.bundle()).map_err(edge_invalid),
            None => Ok(()),
        })?;
        EDGE.set(Some(edge));
        Ok(())
    }

    fn set_secret(name: String, secret: Vec<u8>) -> Result<u32, Error> {
        with_engine(|engine| {
            let count = engine
                .set_secret(&name, &secret)
                .map_err(|e| error(&e.info()))?;
            Ok(u32::try_from(count).unwrap_or(u32::MAX))
        })
    }

    fn authenticate(token: String, now: i64) -> Result<String, Error> {
        with_engine(|engine| {
            let principal = engine
                .authenticate(&token, now)
                .map_err(|e| error(&e.info()))?;
            serde_json::to_string(&principal).map_err(|e| Error {
                code: "internal".to_owned(),
                message: e.to_string(),
            })
        })
    }

    fn decide_http(request: WitRequest, now: i64) -> Result<EdgeVerdict, Error> {
        with_engine(|engine| {
            let headers = HeaderPairs(&request.headers);
            let http = HttpRequest {
                method: &request.method,
                path: &request.path,
                headers: &headers,
            };
            let verdict = EDGE.with_borrow_mut(|edge| {
                let edge = edge.get_or_insert_with(Edge::default);
                edge.decide(engine, &http, now)
            });
            Ok(EdgeVerdict {
                action: match verdict.action {
                    EdgeAction::Forward(identity) => WitEdgeAction::Forward(identity),
                    EdgeAction::Respond {
                        status,
                        headers,
                        body,
                    } => WitEdgeAction::Respond(HttpResponse {
                        status,
                        headers: headers
                            .into_iter()
                            .map(|(n, v)| (n.to_owned(), v))
                            .collect(),
                        body,
                    }),
                },
                outcome: verdict.outcome.as_str().to_owned(),
                decided: verdict.decision.as_ref().map(decided),
                route: verdict.route.map(str::to_owned),
            })
        })
    }

    fn decide(request_json: String, bearer: Option<String>, now: i64) -> Result<Decided, Error> {
        let mut request: DecisionRequest = parse("request", &request_json)?;
        apply_bearer(&mut request, bearer.as_deref()).map_err(|info| error(&info))?;
        with_engine(|engine| Ok(decided(&engine.decide(&request, now))))
    }

    fn decide_trusted(request_json: String, now: i64) -> Result<Decided, Error> {
        let request: TrustedRequest = parse("request", &request_json)?;
        with_engine(|engine| Ok(decided(&engine.decide_trusted(&request, now))))
    }

    fn decide_batch(
        requests_json: String,
        bearer: Option<String>,
        now: i64,
    ) -> Result<Vec<Result<Decided, Error>>, Error> {
        // Each element is parsed on its own, so one malformed request fails only itself.
        let requests: Vec<&serde_json::value::RawValue> = parse_raw_array(&requests_json)?;
        with_engine(|engine| {
            Ok(requests
                .into_iter()
                .map(|raw| {
                    let mut request: DecisionRequest = parse("request", raw.get())?;
                    apply_bearer(&mut request, bearer.as_deref()).map_err(|info| error(&info))?;
                    Ok(decided(&engine.decide(&request, now)))
                })
                .collect())
        })
    }
}
