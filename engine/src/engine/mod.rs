//! The engine: a loaded bundle, the issuers' keys, a token cache, and `decide`.

mod assemble;
mod authenticate;
mod data;
mod evaluate;
mod request;
mod slice;

pub use authenticate::{PendingSignature, TokenStep};
pub use request::{DecisionRequest, ResourceRef, TrustedRequest};
pub use slice::{DataSlice, SliceError};

use authenticate::{Rejected, VerifiedToken};

use crate::bundle::{Bundle, KeySource, KeyUrl};
use crate::cache::TokenCache;
use crate::crypto::SignatureVerifier;
use crate::error::{KeyError, sanitize};
use crate::keys::{Algorithm, KeySet};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Engine configuration beyond the bundle: [`EngineOptions::new`], or the default (the
/// built-in crypto, random decision ids).
#[derive(Clone)]
#[non_exhaustive]
pub struct EngineOptions {
    /// How signatures are checked.
    pub verifier: Arc<dyn SignatureVerifier>,
    /// How decision ids are made unique.
    pub decision_ids: DecisionIds,
}

impl EngineOptions {
    /// Options with this verifier and decision-id rule.
    pub fn new(verifier: Arc<dyn SignatureVerifier>, decision_ids: DecisionIds) -> Self {
        Self {
            verifier,
            decision_ids,
        }
    }
}

#[cfg(feature = "rust-crypto")]
impl Default for EngineOptions {
    fn default() -> Self {
        Self::new(
            Arc::new(crate::crypto::RustCryptoVerifier),
            DecisionIds::default(),
        )
    }
}

/// What makes an engine's decision ids unique. An id is 16 hex digits (a 64-bit mix of the
/// engine's seed and a counter, not guessable from the count) then the counter in hex, so two
/// engines repeat each other's ids only if their seeds are equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    not(all(target_arch = "wasm32", target_os = "unknown")),
    derive(Default)
)]
pub enum DecisionIds {
    /// A seed drawn from the operating system's randomness when the engine is created: ids
    /// unique across engines, processes and restarts (the default). Not on
    /// `wasm32-unknown-unknown`, which has no randomness of its own: the JS SDK passes bytes
    /// from `crypto.getRandomValues` as a [`DecisionIds::Seed`].
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    #[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), default)]
    Random,
    /// This seed: random bytes the host drew, or a fixed value where ids must be reproducible
    /// (tests). Engines given the same seed give the same ids.
    Seed(u64),
}

impl DecisionIds {
    /// The seed: drawn now for [`DecisionIds::Random`].
    fn seed(self) -> u64 {
        match self {
            #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
            Self::Random => {
                use std::hash::{BuildHasher, Hasher};
                // std seeds `RandomState` from the OS (WASI `random_get` in Wasm) once per
                // thread and steps it on every `new`: a different hash of nothing each time.
                std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish()
            }
            Self::Seed(seed) => seed,
        }
    }
}

/// The decision engine. Cheap to share (`Arc<Engine>`); `decide` takes `&self`.
pub struct Engine {
    bundle: Arc<Bundle>,
    remote_keys: RwLock<HashMap<String, KeySet>>,
    cache: TokenCache<VerifiedToken>,
    /// Tokens whose signature did not verify (by SHA-256), so that a forged token sent again
    /// and again costs one signature check, not one per request. Cleared with `cache`.
    rejected: TokenCache<Rejected>,
    verifier: Arc<dyn SignatureVerifier>,
    counter: AtomicU64,
    seed: u64,
    /// Bumped whenever an issuer's keys change: a signature checked against an older
    /// generation's key is not trusted (the key may have just been removed).
    key_generation: AtomicU64,
    /// The tenants' stored data, by tenant.
    data: RwLock<HashMap<String, Arc<crate::data::TenantData>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("revision", &self.bundle.revision())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `bundle` with the default (pure-Rust) crypto.
    #[cfg(feature = "rust-crypto")]
    pub fn new(bundle: Bundle) -> Self {
        Self::with_options(Arc::new(bundle), EngineOptions::default())
    }

    /// An engine with explicit options.
    pub fn with_options(bundle: Arc<Bundle>, options: EngineOptions) -> Self {
        let capacity = bundle.compiled().settings.tokens.cache_entries;
        Self {
            bundle,
            remote_keys: RwLock::new(HashMap::new()),
            cache: TokenCache::new(capacity),
            rejected: TokenCache::new(capacity),
            verifier: options.verifier,
            counter: AtomicU64::new(0),
            seed: options.decision_ids.seed(),
            key_generation: AtomicU64::new(0),
            data: RwLock::new(HashMap::new()),
        }
    }

    /// The bundle.
    pub fn bundle(&self) -> &Arc<Bundle> {
        &self.bundle
    }

    /// The bundle revision.
    pub fn revision(&self) -> &str {
        self.bundle.revision()
    }

    /// Issuers whose keys the host must fetch, and whether each has keys yet.
    pub fn remote_issuers(&self) -> Vec<(String, KeyUrl, bool)> {
        let keys = self
            .remote_keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.bundle
            .remote_issuers()
            .into_iter()
            .map(|(issuer, source)| {
                let loaded = keys.contains_key(&issuer);
                (issuer, source, loaded)
            })
            .collect()
    }

    /// Hand the engine the current JWK set of a remote issuer (fetched by the host). Replaces
    /// the previous keys and forgets every cached token, so a removed key stops working at once.
    ///
    /// # Errors
    /// An unknown issuer, or a JWK set with no usable key; the previous keys stay.
    pub fn set_issuer_keys(&self, issuer: &str, jwks: &Value) -> Result<usize, KeyError> {
        let entries = self
            .bundle
            .issuers
            .get(issuer)
            .ok_or_else(|| KeyError::UnknownIssuer(sanitize(issuer, 120)))?;
        let mut algorithms: Vec<Algorithm> = entries
            .iter()
            .flat_map(|e| e.algorithms.iter().copied())
            .collect();
        algorithms.sort();
        algorithms.dedup();
        let (keys, _notes) = KeySet::from_jwks(jwks, &algorithms).map_err(KeyError::InvalidJwks)?;
        let count = keys.keys().len();
        self.remote_keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(issuer.to_owned(), keys);
        // Bump before clearing: a verification that chose its key before this point either
        // inserts before the clear (and is cleared) or sees the new generation (and does not).
        self.key_generation.fetch_add(1, Ordering::SeqCst);
        self.cache.clear();
        self.rejected.clear();
        Ok(count)
    }

    /// Hand the engine an HMAC secret the bundle names (`"secret": "<name>"` on an issuer),
    /// read by the host from its own secret source: every issuer naming it verifies with it
    /// from now on. Returns the number of such issuers.
    ///
    /// # Errors
    /// No issuer names the secret, or it is too short for their algorithms; the previous
    /// secret, if any, stays.
    pub fn set_secret(&self, name: &str, secret: &[u8]) -> Result<usize, KeyError> {
        let mut sets = Vec::new();
        for (issuer, entries) in &self.bundle.issuers {
            let mut algorithms = Vec::new();
            let mut kid = None;
            for entry in entries {
                if let KeySource::Secret(named) = &entry.source
                    && named.name == name
                {
                    algorithms.extend(entry.algorithms.iter().copied());
                    kid = named.kid.as_deref();
                }
            }
            if algorithms.is_empty() {
                continue;
            }
            algorithms.sort();
            algorithms.dedup();
            let keys = KeySet::from_secret(secret, kid, &algorithms).map_err(|why| {
                KeyError::InvalidSecret {
                    name: sanitize(name, 64),
                    reason: why,
                }
            })?;
            sets.push((issuer.clone(), keys));
        }
        if sets.is_empty() {
            return Err(KeyError::UnknownSecret(sanitize(name, 64)));
        }
        let count = sets.len();
        self.remote_keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(sets);
        self.key_generation.fetch_add(1, Ordering::SeqCst);
        self.cache.clear();
        self.rejected.clear();
        Ok(count)
    }

    /// Number of verified tokens in the cache.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }
}
