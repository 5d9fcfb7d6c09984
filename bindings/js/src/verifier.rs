//! The engine's [`SignatureVerifier`] in a host whose crypto runs outside the engine
//! (`node:crypto`, or WebCrypto, which is asynchronous).
//!
//! The JS wrapper checks a token's signature between `begin_token` and `finish_token`. The
//! decisions that follow come from `Engine::decide`, which normally finds the token in the
//! verified-token cache. When it does not (a bundle with `tokens.cache_entries: 0`, a bad
//! signature, keys replaced while WebCrypto was busy), `decide` verifies again, synchronously,
//! through this verifier: it answers from the verdict the host just gave for exactly that
//! algorithm, key, message and signature, and otherwise refuses (`token_crypto`). It never
//! decides which key or algorithm is acceptable: the engine already did.

use portcullis_engine::{Algorithm, KeyMaterial, SignatureVerifier, VerificationKey};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// What WebCrypto answered for one signature.
pub(crate) struct Verdict {
    pub algorithm: Algorithm,
    pub material: KeyMaterial,
    pub message: Vec<u8>,
    pub signature: Vec<u8>,
    pub valid: bool,
}

/// A verifier that remembers the host's verdict for the duration of one synchronous call.
#[derive(Default)]
pub(crate) struct HostVerifier {
    verdict: Mutex<Option<Verdict>>,
}

impl HostVerifier {
    fn slot(&self) -> MutexGuard<'_, Option<Verdict>> {
        self.verdict.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remember `verdict` until the returned guard is dropped.
    pub fn remember(&self, verdict: Verdict) -> Remembered<'_> {
        *self.slot() = Some(verdict);
        Remembered(self)
    }
}

/// Forgets the remembered verdict when dropped, so that it never outlives the call it was for.
pub(crate) struct Remembered<'a>(&'a HostVerifier);

impl Drop for Remembered<'_> {
    fn drop(&mut self) {
        *self.0.slot() = None;
    }
}

impl SignatureVerifier for HostVerifier {
    fn verify(
        &self,
        alg: Algorithm,
        key: &VerificationKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, String> {
        if let Some(verdict) = self.slot().as_ref()
            && verdict.algorithm == alg
            && verdict.material == *key.material()
            && verdict.message == message
            && verdict.signature == signature
        {
            return Ok(verdict.valid);
        }
        Err(format!("the host's crypto could not verify `{alg}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_is_forgotten_with_its_guard() {
        let verifier = HostVerifier::default();
        {
            let _guard = verifier.remember(Verdict {
                algorithm: Algorithm::HS256,
                material: KeyMaterial::Hmac {
                    secret: vec![1; 32],
                },
                message: b"m".to_vec(),
                signature: b"s".to_vec(),
                valid: true,
            });
            assert!(verifier.slot().is_some());
        }
        assert!(verifier.slot().is_none());
    }
}
