//! The crypto-provider seam: how the engine checks a signature (and, optionally, hashes a
//! token).
//!
//! The engine decides *which* key and algorithm may verify a token; a [`SignatureVerifier`]
//! only answers "does this signature verify under this key". The default,
//! [`RustCryptoVerifier`], is pure Rust and works in every host. A host with faster crypto
//! (aws-lc-rs natively, WebCrypto in a browser, Envoy's `verify_signature`) plugs in its own.
//! Hosts whose crypto is asynchronous use [`crate::Engine::begin_token`] /
//! [`crate::Engine::finish_token`] instead, which split verification around the signature.

use crate::keys::{Algorithm, VerificationKey};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

/// Checks one signature. Implementations must be constant-time where it matters (HMAC) and
/// must return `Ok(false)`, not an error, for a signature that simply does not verify.
pub trait SignatureVerifier: Send + Sync {
    /// Whether `signature` is a valid `alg` signature of `message` under `key`.
    ///
    /// The engine has already checked that `key` may be used with `alg`.
    ///
    /// # Errors
    /// Only for provider failures (an unsupported algorithm, an internal error); these deny too.
    fn verify(
        &self,
        alg: Algorithm,
        key: &VerificationKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, String>;

    /// SHA-256 of `data`: a new token's fingerprint (in audit records) and its key among
    /// remembered rejections. The default computes it in Rust; a host whose native hashing is
    /// faster (a Wasm sandbox's host) may compute it instead. It must be SHA-256 itself:
    /// fingerprints are compared across hosts.
    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        sha256(data)
    }
}

/// SHA-256 in Rust: what [`SignatureVerifier::sha256`] does unless a host overrides it.
#[must_use]
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(data).into()
}

/// The default verifier: RustCrypto through `jsonwebtoken`'s `rust_crypto` provider.
#[cfg(feature = "rust-crypto")]
#[derive(Clone, Copy, Debug, Default)]
pub struct RustCryptoVerifier;

#[cfg(feature = "rust-crypto")]
impl SignatureVerifier for RustCryptoVerifier {
    fn verify(
        &self,
        alg: Algorithm,
        key: &VerificationKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, String> {
        let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
        let verifier = (provider.verifier_factory)(&alg.to_jsonwebtoken(), key.decoding_key())
            .map_err(|e| e.to_string())?;
        Ok(verifier.verify(message, &signature.to_vec()).is_ok())
    }
}

/// A budget of signature checks per second, for a host whose verifier has a costly path: the
/// Envoy filter checks `PS*` and `EdDSA` (which Envoy's BoringSSL function cannot) in Wasm, at
/// about a millisecond each, and a flood of distinct forged tokens (each passes every cheap
/// check: a public issuer, audience and `kid`) would otherwise take a worker's whole CPU. Past
/// the budget the host's verifier fails the check as a provider failure — a 503 with
/// `Retry-After` at an edge, never an allow — until the next second. Tokens already verified are
/// cached and never checked again, so only new tokens spend it. `now` (unix seconds) is the
/// host's: the engine reads no clock.
#[derive(Debug)]
pub struct SignatureBudget {
    per_second: u32,
    // Atomics because verifiers are `Sync`; under contention the count is approximate (a few
    // checks over), which a guard against floods can afford.
    second: AtomicI64,
    spent: AtomicU32,
}

impl SignatureBudget {
    /// A budget of `per_second` checks (`0`: unlimited).
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            second: AtomicI64::new(i64::MIN),
            spent: AtomicU32::new(0),
        }
    }

    /// Whether one more check may run in second `now`.
    pub fn take(&self, now: i64) -> bool {
        if self.per_second == 0 {
            return true;
        }
        if self.second.swap(now, Ordering::Relaxed) != now {
            self.spent.store(0, Ordering::Relaxed);
        }
        self.spent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |spent| {
                (spent < self.per_second).then_some(spent + 1)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refills_every_second() {
        let budget = SignatureBudget::new(2);
        assert!(budget.take(10) && budget.take(10));
        assert!(!budget.take(10), "spent");
        assert!(budget.take(11), "a new second");
        let unlimited = SignatureBudget::new(0);
        assert!((0..10_000).all(|_| unlimited.take(5)));
    }
}
