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
