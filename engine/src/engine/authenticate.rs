//! The token pipeline: a token checked in two halves (everything but the signature, then the
//! signature), verified tokens cached, rejected ones remembered.

use super::Engine;
use crate::bundle::IssuerEntry;
use crate::cedar_glue;
use crate::claims::Principal;
use crate::data::Stored;
use crate::decision::TokenIdentity;
use crate::error::{TokenError, hex, sanitize};
use crate::keys::{Algorithm, VerificationKey};
use crate::memo::Memo;
use crate::token::{self, TokenTimes};
use cedar_policy::{Entity, EntityUid};
use serde_json::{Map, Value};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// What the engine keeps for a verified token.
#[derive(Debug)]
pub(crate) struct VerifiedToken {
    pub principal: Principal,
    pub uid: EntityUid,
    pub entity: Entity,
    /// Whether `entity` conforms to the schema, checked once when the token was verified.
    pub entity_conforms: Result<(), String>,
    pub times: TokenTimes,
    pub identity: TokenIdentity,
    /// The token's evaluations, for the same request sent again (see [`crate::memo`]).
    pub memo: Memo,
    /// `entity` merged with the stored entity of its uid, and that stored entity (see
    /// `VerifiedToken::merged_with`).
    pub merged: Mutex<Option<(Arc<Stored>, cedar_policy_core::ast::Entity)>>,
}

/// A token that passed every check but the signature: what an asynchronous crypto host
/// (WebCrypto) must verify before calling [`Engine::finish_token`].
#[derive(Debug)]
pub struct PendingSignature {
    token: String,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The key to verify with.
    pub key: VerificationKey,
    /// Bytes that were signed (`header.payload`).
    pub signing_input: Vec<u8>,
    /// The decoded signature.
    pub signature: Vec<u8>,
    issuer: String,
    tenant: String,
    claims: Map<String, Value>,
    times: TokenTimes,
    key_generation: u64,
    digest: [u8; 32],
}

/// The result of the first half of token verification.
#[derive(Debug)]
pub enum TokenStep {
    /// Already verified (cache hit); decide right away.
    Cached,
    /// The signature must be checked.
    NeedsSignature(Box<PendingSignature>),
}

/// [`TokenStep`] with the cached token itself, for internal callers.
// `allow`, not `expect`: on 32-bit targets the variant is under the lint's threshold.
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per verification and consumed at once: a box would cost an allocation per fresh token"
)]
enum Step<'a> {
    Hit(Arc<VerifiedToken>),
    Pending(Unverified<'a>),
    /// The token's ECDSA signature was high-S: verify its low-S twin instead, so that both
    /// forms are one token (one fingerprint, one cache entry).
    Canonical(String),
}

/// Why a token was not accepted, with the configured issuer it named when it got that far (for
/// the audit record, and for hosts that refetch an issuer's keys on `token_unknown_kid`).
pub(super) struct TokenFailure {
    pub(super) error: TokenError,
    pub(super) issuer: Option<String>,
}

impl From<TokenError> for TokenFailure {
    fn from(error: TokenError) -> Self {
        Self {
            error,
            issuer: None,
        }
    }
}

/// A token whose signature did not verify: who it claimed to come from, and its times (so
/// that a remembered rejection answers what the whole check would: expired, not yet valid,
/// too old, or a bad signature).
pub(super) struct Rejected {
    issuer: String,
    times: TokenTimes,
}

impl TokenFailure {
    fn of(issuer: &str) -> impl Fn(TokenError) -> Self + '_ {
        move |error| Self {
            error,
            issuer: Some(issuer.to_owned()),
        }
    }
}

/// A token that passed every check but the signature, borrowing the token and the issuer entry
/// ([`PendingSignature`] is its owned form, for hosts that verify asynchronously).
struct Unverified<'a> {
    token: &'a str,
    signing_input: &'a [u8],
    signature: Vec<u8>,
    algorithm: Algorithm,
    key: VerificationKey,
    entry: &'a IssuerEntry,
    claims: Map<String, Value>,
    times: TokenTimes,
    /// [`Engine::key_generation`] when the key was chosen.
    key_generation: u64,
    /// SHA-256 of the token: its fingerprint, and its key among rejected tokens.
    digest: [u8; 32],
}

impl Unverified<'_> {
    fn into_pending(self) -> PendingSignature {
        PendingSignature {
            token: self.token.to_owned(),
            algorithm: self.algorithm,
            key: self.key,
            signing_input: self.signing_input.to_vec(),
            signature: self.signature,
            issuer: self.entry.issuer.clone(),
            tenant: self.entry.tenant.clone(),
            claims: self.claims,
            times: self.times,
            key_generation: self.key_generation,
            digest: self.digest,
        }
    }
}

impl Engine {
    /// Verify a token and map its claims to a principal, without deciding anything.
    ///
    /// # Errors
    /// Why the token is not accepted.
    pub fn authenticate(&self, token: &str, now: i64) -> Result<Principal, TokenError> {
        self.verified(token, now)
            .map(|v| v.principal.clone())
            .map_err(|f| f.error)
    }

    pub(super) fn verified(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Arc<VerifiedToken>, TokenFailure> {
        // Keys replaced mid-verification: start over once with the new keys (a second change
        // within one verification is reported, not chased).
        match self.verify_once(token, now) {
            Err(TokenFailure {
                error: TokenError::KeysChanged,
                ..
            }) => self.verify_once(token, now),
            result => result,
        }
    }

    fn verify_once(&self, token: &str, now: i64) -> Result<Arc<VerifiedToken>, TokenFailure> {
        match self.step(token, now)? {
            Step::Hit(verified) => Ok(verified),
            // A low-S signature is never rewritten again: one level deep.
            Step::Canonical(canonical) => self.verify_once(&canonical, now),
            Step::Pending(unverified) => {
                let ok = self
                    .verifier
                    .verify(
                        unverified.algorithm,
                        &unverified.key,
                        unverified.signing_input,
                        &unverified.signature,
                    )
                    .map_err(|e| {
                        TokenFailure::of(&unverified.entry.issuer)(TokenError::Crypto(e))
                    })?;
                self.finish(unverified, ok, now)
            }
        }
    }

    /// First half of verification: every check that needs no signature work. A host with
    /// asynchronous crypto verifies the returned signature itself and calls
    /// [`Engine::finish_token`].
    ///
    /// # Errors
    /// Why the token is not accepted.
    pub fn begin_token(&self, token: &str, now: i64) -> Result<TokenStep, TokenError> {
        Ok(match self.step(token, now).map_err(|f| f.error)? {
            Step::Hit(_) => TokenStep::Cached,
            Step::Pending(unverified) => {
                TokenStep::NeedsSignature(Box::new(unverified.into_pending()))
            }
            Step::Canonical(canonical) => return self.begin_token(&canonical, now),
        })
    }

    fn step<'a>(&'a self, token: &'a str, now: i64) -> Result<Step<'a>, TokenFailure> {
        let max_bytes = self.bundle.compiled().settings.tokens.max_bytes;
        if token.len() > max_bytes {
            return Err(TokenError::TooLarge {
                size: token.len(),
                limit: max_bytes,
            }
            .into());
        }
        if let Some(hit) = self.cache.get(token, now) {
            if let Err(error) = hit.times.check(now) {
                return Err(TokenFailure {
                    error,
                    issuer: hit.identity.issuer.clone(),
                });
            }
            return Ok(Step::Hit(hit));
        }
        // A forged token sent again is answered before any decoding: one SHA-256 (which a new
        // token needs anyway, for its fingerprint) and a lookup.
        let digest = self.verifier.sha256(token.as_bytes());
        if let Some(rejected) = self.rejected.get(&hex(&digest), now) {
            let failed = TokenFailure::of(&rejected.issuer);
            rejected.times.check(now).map_err(&failed)?;
            return Err(failed(TokenError::BadSignature));
        }
        let parsed = token::parse(token, max_bytes)?;
        if let Some(canonical) = parsed.canonical {
            return Ok(Step::Canonical(canonical));
        }
        let issuer = match parsed.claims.get("iss") {
            Some(Value::String(iss)) => iss,
            _ => return Err(TokenError::UntrustedIssuer("(no `iss` string)".into()).into()),
        };
        // From here on, failures name the configured issuer (never an unknown `iss`).
        let (issuer, entries) = self
            .bundle
            .issuer(issuer)
            .ok_or_else(|| TokenError::UntrustedIssuer(sanitize(issuer, 120)))?;
        let failed = TokenFailure::of(issuer);
        let entry = token::select_entry(entries, &parsed.claims).map_err(&failed)?;
        token::check_header(&parsed, entry).map_err(&failed)?;
        let times = token::check_claims(&parsed.claims, entry, now).map_err(&failed)?;
        let key_generation = self.key_generation.load(Ordering::SeqCst);
        let key = self
            .key_for(entry, parsed.alg, parsed.kid.as_deref())
            .map_err(&failed)?;
        Ok(Step::Pending(Unverified {
            token,
            signing_input: parsed.signing_input.as_bytes(),
            signature: parsed.signature,
            algorithm: parsed.alg,
            key,
            entry,
            claims: parsed.claims,
            times,
            key_generation,
            digest,
        }))
    }

    /// Second half of verification, after the host checked the signature of `pending`.
    ///
    /// # Errors
    /// A bad signature, or claims that do not form a principal.
    pub fn finish_token(
        &self,
        pending: PendingSignature,
        signature_ok: bool,
        now: i64,
    ) -> Result<Principal, TokenError> {
        let entry = self
            .bundle
            .issuers
            .get(&pending.issuer)
            .and_then(|entries| entries.iter().find(|e| e.tenant == pending.tenant))
            .ok_or_else(|| TokenError::UntrustedIssuer(sanitize(&pending.issuer, 120)))?;
        let unverified = Unverified {
            token: &pending.token,
            signing_input: &pending.signing_input,
            signature: pending.signature,
            algorithm: pending.algorithm,
            key: pending.key,
            entry,
            claims: pending.claims,
            times: pending.times,
            key_generation: pending.key_generation,
            digest: pending.digest,
        };
        self.finish(unverified, signature_ok, now)
            .map(|v| v.principal.clone())
            .map_err(|f| f.error)
    }

    fn finish(
        &self,
        pending: Unverified<'_>,
        signature_ok: bool,
        now: i64,
    ) -> Result<Arc<VerifiedToken>, TokenFailure> {
        let failed = TokenFailure::of(&pending.entry.issuer);
        let expires_at = pending.times.exp.saturating_add(pending.times.skew);
        let generation = pending.key_generation;
        let current_keys = move || self.key_generation.load(Ordering::SeqCst) == generation;
        if !signature_ok {
            // Remembered only against the keys it was checked with.
            self.rejected.insert_if(
                &hex(&pending.digest),
                Arc::new(Rejected {
                    issuer: pending.entry.issuer.clone(),
                    times: pending.times,
                }),
                expires_at,
                now,
                current_keys,
            );
            return Err(failed(TokenError::BadSignature));
        }
        let entry = pending.entry;
        let types = &self.bundle.compiled().settings.entity_types;
        let principal = entry
            .mapping
            .map(
                &pending.claims,
                &entry.tenant,
                &entry.issuer,
                &types.user,
                &types.client,
                now.saturating_add(pending.times.skew),
            )
            .map_err(|claim| failed(TokenError::BadClaim(claim)))?;
        let (uid, entity) = cedar_glue::principal_entity(&self.bundle, &principal)
            .map_err(|_| failed(TokenError::BadClaim("attributes")))?;
        let fingerprint = crate::error::hex16(&pending.digest);
        let identity = TokenIdentity {
            fingerprint: Some(fingerprint),
            jti: pending
                .claims
                .get("jti")
                .and_then(Value::as_str)
                .map(|j| sanitize(j, 128)),
            issuer: Some(entry.issuer.clone()),
        };
        let entity_conforms = cedar_glue::principal_conforms(&self.bundle, &principal);
        let verified = Arc::new(VerifiedToken {
            principal,
            uid,
            entity,
            entity_conforms,
            times: pending.times,
            identity,
            memo: Memo::default(),
            merged: Mutex::new(None),
        });
        let inserted = self.cache.insert_if(
            pending.token,
            Arc::clone(&verified),
            expires_at,
            now,
            current_keys,
        );
        if !inserted {
            return Err(failed(TokenError::KeysChanged));
        }
        Ok(verified)
    }

    fn key_for(
        &self,
        entry: &IssuerEntry,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<VerificationKey, TokenError> {
        match &entry.inline_keys {
            Some(keys) => token::select_key(keys, alg, kid).cloned(),
            None => {
                let remote = self
                    .remote_keys
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let keys = remote
                    .get(&entry.issuer)
                    .ok_or(TokenError::KeysUnavailable)?;
                token::select_key(keys, alg, kid).cloned()
            }
        }
    }
}
