//! Signatures checked by Envoy where it can, in Wasm within the worker's budget otherwise.

use super::{log, now};
use crate::config::{Crypto, Plan};
use crate::crypto::{self, Prepared};
use portcullis_engine::{
    Algorithm, DecisionIds, EngineOptions, RustCryptoVerifier, SignatureBudget, SignatureVerifier,
    VerificationKey,
};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, Status};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this VM has said that Envoy's `verify_signature` could not be used.
static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// Checks RSA and ECDSA signatures with Envoy's `verify_signature` foreign function (native
/// BoringSSL); everything else, and what Envoy cannot check (no such function, a key it
/// refuses), in Wasm, within the VM's budget of Wasm checks per second.
struct EnvoyVerifier {
    budget: Arc<SignatureBudget>,
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
                                LogLevel::Warn,
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
pub(super) fn engine_options(plan: &Plan) -> EngineOptions {
    let verifier = EnvoyVerifier {
        budget: Arc::clone(&plan.wasm_budget),
        envoy: plan.crypto == Crypto::Envoy,
    };
    EngineOptions::new(Arc::new(verifier), DecisionIds::Random)
}
