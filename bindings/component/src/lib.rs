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
    Decided, Error, Guest, Outcome as WitOutcome, RemoteIssuer,
};
use bindings::portcullis::engine::crypto;
use portcullis_engine::{
    Algorithm, Bundle, Curve, Decision, DecisionRequest, Engine, EngineOptions, ErrorInfo,
    KeyMaterial, KeySource, Outcome, SignatureVerifier, TrustedRequest, VerificationKey,
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

fn request_invalid(what: &str, err: &serde_json::Error) -> Error {
    Error {
        code: "request_invalid".to_owned(),
        message: format!("invalid {what}: {err}"),
    }
}

fn not_loaded() -> Error {
    Error {
        code: "bundle_missing".to_owned(),
        message: "no bundle is loaded".to_owned(),
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
    }
}

/// The exported `engine` interface.
pub(crate) struct Component;

impl Guest for Component {
    fn load(bundle_json: String, seed: u64) -> Result<String, Error> {
        let bundle = Bundle::from_json(&bundle_json).map_err(|e| error(&e.info()))?;
        let options = EngineOptions {
            verifier: Arc::new(HostVerifier),
            decision_id_seed: seed,
        };
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
                .filter_map(|(issuer, source, has_keys)| {
                    let (kind, url) = match source {
                        KeySource::Inline => return None,
                        KeySource::JwksUri(url) => ("jwks-uri", url),
                        KeySource::Discovery(url) => ("discovery", url),
                    };
                    Some(RemoteIssuer {
                        issuer,
                        kind: kind.to_owned(),
                        url,
                        has_keys,
                    })
                })
                .collect()
        })
    }

    fn set_issuer_keys(issuer: String, jwks_json: String) -> Result<u32, Error> {
        let jwks: serde_json::Value =
            serde_json::from_str(&jwks_json).map_err(|e| request_invalid("JWK set", &e))?;
        with_engine(|engine| {
            let count = engine
                .set_issuer_keys(&issuer, &jwks)
                .map_err(|e| error(&e.info()))?;
            Ok(u32::try_from(count).unwrap_or(u32::MAX))
        })
    }

    fn decide(request_json: String, now: i64) -> Result<Decided, Error> {
        let request: DecisionRequest =
            serde_json::from_str(&request_json).map_err(|e| request_invalid("request", &e))?;
        with_engine(|engine| Ok(decided(&engine.decide(&request, now))))
    }

    fn decide_trusted(request_json: String, now: i64) -> Result<Decided, Error> {
        let request: TrustedRequest =
            serde_json::from_str(&request_json).map_err(|e| request_invalid("request", &e))?;
        with_engine(|engine| Ok(decided(&engine.decide_trusted(&request, now))))
    }

    fn decide_batch(requests_json: String, now: i64) -> Result<Vec<Result<Decided, Error>>, Error> {
        // Each element is parsed on its own, so one malformed request fails only itself.
        let requests: Vec<serde_json::Value> =
            serde_json::from_str(&requests_json).map_err(|e| request_invalid("batch", &e))?;
        with_engine(|engine| {
            Ok(requests
                .into_iter()
                .map(|value| {
                    let request: DecisionRequest = serde_json::from_value(value)
                        .map_err(|e| request_invalid("request", &e))?;
                    Ok(decided(&engine.decide(&request, now)))
                })
                .collect())
        })
    }
}
