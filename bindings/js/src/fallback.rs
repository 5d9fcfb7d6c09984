//! Synchronous signature verification for what the host's WebCrypto cannot do.

use portcullis_engine::{Algorithm, VerificationKey};

/// The engine's pure-Rust verifier.
#[cfg(feature = "fallback-crypto")]
pub(crate) fn verify(
    alg: Algorithm,
    key: &VerificationKey,
    message: &[u8],
    signature: &[u8],
) -> Result<bool, String> {
    use portcullis_engine::SignatureVerifier as _;
    portcullis_engine::RustCryptoVerifier.verify(alg, key, message, signature)
}

/// Built without a pure-Rust verifier: refuse (the decision is `unauthenticated`, `token_crypto`).
#[cfg(not(feature = "fallback-crypto"))]
pub(crate) fn verify(
    alg: Algorithm,
    _key: &VerificationKey,
    _message: &[u8],
    _signature: &[u8],
) -> Result<bool, String> {
    Err(format!(
        "this runtime's WebCrypto cannot verify `{alg}` and the package was built without the fallback verifier"
    ))
}
