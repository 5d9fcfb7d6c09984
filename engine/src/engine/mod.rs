//! The engine: a loaded bundle, the issuers' keys, a token cache, and `decide`.

mod authenticate;
mod request;

pub use authenticate::{PendingSignature, TokenStep};
pub use request::{DecisionRequest, ResourceRef, TrustedRequest};

use authenticate::{Rejected, VerifiedToken};

use crate::bundle::{Bundle, KeySource, KeyUrl};
use crate::cache::TokenCache;
use crate::cedar_glue::{self, RESERVED_CONTEXT_KEYS};
use crate::crypto::SignatureVerifier;
use crate::decision::{
    Decision, DecisionError, Outcome, PrincipalSummary, RequestSummary, TokenIdentity,
};
use crate::error::{KeyError, RequestError, sanitize};
use crate::keys::{Algorithm, KeySet};
use cedar_policy::{Entities, Entity, RestrictedExpression};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// `format!("{z:016x}{n:08x}")` through the crate's hex writer instead of the formatter: this
/// runs on every decision.
fn decision_id(z: u64, n: u64) -> String {
    let mut id = crate::error::hex(&z.to_be_bytes());
    match u32::try_from(n) {
        Ok(n) => id.push_str(&crate::error::hex(&n.to_be_bytes())),
        Err(_) => id.push_str(&format!("{n:x}")),
    }
    id
}

/// Engine configuration beyond the bundle.
#[derive(Clone)]
pub struct EngineOptions {
    /// How signatures are checked.
    pub verifier: Arc<dyn SignatureVerifier>,
    /// Mixed into decision ids so that several engine instances do not repeat each other's ids
    /// (a host passes random bytes here).
    pub decision_id_seed: u64,
}

#[cfg(feature = "rust-crypto")]
impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            verifier: Arc::new(crate::crypto::RustCryptoVerifier),
            decision_id_seed: 0,
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
            seed: options.decision_id_seed,
            key_generation: AtomicU64::new(0),
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

    fn next_decision_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // splitmix64 of seed ^ counter: unique per (seed, counter), not guessable from a count.
        let mut z =
            (self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        decision_id(z, n)
    }

    /// Decide a request that carries a token, at unix time `now`.
    pub fn decide(&self, request: &DecisionRequest, now: i64) -> Decision {
        let summary = RequestSummary::of(&request.action, &request.resource);
        let token = request.token.as_deref().unwrap_or("");
        let verified = match self.verified(token, now) {
            Ok(v) => v,
            Err(failure) => {
                return self.decision(
                    Outcome::Unauthenticated,
                    summary,
                    Vec::new(),
                    vec![failure.error.info().into()],
                    None,
                    TokenIdentity {
                        issuer: failure.issuer,
                        ..TokenIdentity::default()
                    },
                    now,
                );
            }
        };
        let principal = Some(PrincipalSummary::from_principal(&verified.principal));
        let evaluate = || self.evaluate_token_request(&verified, request, now);
        // Without a token cache the token, and its memo, is gone after this request.
        let result = if self.bundle.compiled().settings.tokens.cache_entries > 0 {
            let age = cedar_glue::session_age(&verified.principal, now);
            verified.memo.get_or_evaluate(age, request, evaluate)
        } else {
            evaluate()
        };
        self.conclude(result, summary, principal, verified.identity.clone(), now)
    }

    fn evaluate_token_request(
        &self,
        verified: &VerifiedToken,
        request: &DecisionRequest,
        now: i64,
    ) -> Result<cedar_glue::Evaluation, RequestError> {
        let action = cedar_glue::action_uid(&self.bundle, &request.action)?;
        let resource_uid = cedar_glue::uid(
            cedar_glue::entity_type(&self.bundle, &request.resource.entity_type)?,
            &request.resource.id,
        );
        let mut context = cedar_glue::token_context(&verified.principal, now);
        for (key, value) in &request.context {
            if RESERVED_CONTEXT_KEYS.contains(&key.as_str()) {
                return Err(RequestError::Context(format!(
                    "`{}` is set by the engine from the token",
                    sanitize(key, 40)
                )));
            }
            context.push((key.clone(), cedar_glue::value_to_expr(value, 0)?));
        }
        if let Err(why) = &verified.entity_conforms {
            return Err(RequestError::Schema(why.clone()));
        }
        let mut entities: Vec<Entity> = Vec::with_capacity(3 + self.bundle.static_entities.len());
        entities.push(verified.entity.clone());
        // The principal's own entity and the bundle's static entities are authoritative: a
        // request cannot redefine them through resource attributes.
        let mut checked = true;
        if resource_uid != verified.uid && !self.bundle.static_uids.contains(&resource_uid) {
            checked = cedar_glue::resource_attrs_conform(
                &self.bundle,
                &request.resource.entity_type,
                &request.resource.attrs,
            )?;
            entities.push(cedar_glue::entity_from_attrs(
                &resource_uid,
                &request.resource.attrs,
            )?);
        }
        entities.extend(self.bundle.static_entities.iter().cloned());
        let store = if checked {
            // Every entity is known to conform (the principal since verification, the resource
            // just now, static entities since load): skip Cedar's per-request schema pass and
            // add only the action this request names.
            entities.extend(self.bundle.action_entity(&action).cloned());
            // `add_entities` repairs the hierarchy of the entities it adds; `from_entities` runs
            // Cedar's general cycle-aware closure, which costs a quarter of a cached decision.
            // Same result: every entity's ancestors closed, cycles refused.
            Entities::empty().add_entities(entities, None)
        } else {
            Entities::from_entities(entities, self.bundle.schema.as_ref())
        }
        .map_err(|e| RequestError::Schema(e.to_string()))?;
        let validated = request.context.is_empty()
            && self.bundle.request_conforms(
                &action,
                verified.uid.type_name(),
                resource_uid.type_name(),
                &cedar_glue::token_context_keys(&verified.principal),
            );
        let policies = self.bundle.policies_for(
            Some(&verified.principal.tenant),
            verified.uid.type_name(),
            &action,
            resource_uid.type_name(),
        );
        let schema = self.bundle.schema.as_ref().filter(|_| !validated);
        cedar_glue::evaluate(
            schema,
            &policies,
            verified.uid.clone(),
            action,
            resource_uid,
            context,
            &store,
        )
    }

    /// Decide for an explicit, already-authenticated principal (no token).
    pub fn decide_trusted(&self, request: &TrustedRequest, now: i64) -> Decision {
        let summary = RequestSummary::of(&request.action, &request.resource);
        let principal = Some(PrincipalSummary {
            tenant: request.tenant.clone().unwrap_or_default(),
            kind: crate::claims::PrincipalKind::User,
            id: request.principal.id.clone(),
            entity: request.principal.display(),
            roles: Vec::new(),
            mfa: None,
        });
        let result = self.evaluate_trusted(request);
        self.conclude(result, summary, principal, TokenIdentity::default(), now)
    }

    fn evaluate_trusted(
        &self,
        request: &TrustedRequest,
    ) -> Result<cedar_glue::Evaluation, RequestError> {
        if let Some(tenant) = &request.tenant
            && !self.bundle.compiled().tenants.contains_key(tenant)
        {
            return Err(RequestError::UnknownTenant(sanitize(tenant, 64)));
        }
        let principal = cedar_glue::uid(
            cedar_glue::entity_type(&self.bundle, &request.principal.entity_type)?,
            &request.principal.id,
        );
        let action = cedar_glue::action_uid(&self.bundle, &request.action)?;
        let resource = cedar_glue::uid(
            cedar_glue::entity_type(&self.bundle, &request.resource.entity_type)?,
            &request.resource.id,
        );
        let context: Vec<(String, RestrictedExpression)> = match &self.bundle.schema {
            // With a schema, Cedar's own JSON parser applies the action's context types
            // (implicit entity and extension values), exactly as Cedar's reference harness does.
            Some(schema) => cedar_policy::Context::from_json_value(
                Value::Object(request.context.clone()),
                Some((schema, &action)),
            )
            .map_err(|e| RequestError::Context(e.to_string()))?
            .into_iter()
            .collect(),
            None => request
                .context
                .iter()
                .map(|(k, v)| Ok((k.clone(), cedar_glue::value_to_expr(v, 0)?)))
                .collect::<Result<_, RequestError>>()?,
        };
        let mut entities: Vec<Entity> = self.bundle.static_entities.clone();
        if let Some(extra) = &request.entities {
            let parsed = Entities::from_json_value(extra.clone(), self.bundle.schema.as_ref())
                .map_err(|e| RequestError::Entity {
                    reference: "entities".into(),
                    reason: e.to_string(),
                })?;
            entities.extend(
                parsed
                    .into_iter()
                    .filter(|e| !self.bundle.is_schema_action(&e.uid())),
            );
        }
        // The principal's and the resource's `attrs`, as in token mode (no parents: give an
        // entity with parents in `entities` instead); an entity given twice is ambiguous.
        for (reference, uid) in [
            (&request.principal, &principal),
            (&request.resource, &resource),
        ] {
            if reference.attrs.is_empty() {
                continue;
            }
            if entities.iter().any(|e| e.uid() == *uid) {
                return Err(RequestError::Entity {
                    reference: sanitize(&reference.display(), 120),
                    reason: "attributes are given here and the entity is also among the \
                             entities (or given twice): give it once"
                        .into(),
                });
            }
            entities.push(cedar_glue::entity_from_attrs(uid, &reference.attrs)?);
        }
        let store = Entities::from_entities(entities, self.bundle.schema.as_ref())
            .map_err(|e| RequestError::Schema(e.to_string()))?;
        let policies = self.bundle.policies_for(
            request.tenant.as_deref(),
            principal.type_name(),
            &action,
            resource.type_name(),
        );
        cedar_glue::evaluate(
            self.bundle.schema.as_ref(),
            &policies,
            principal,
            action,
            resource,
            context,
            &store,
        )
    }

    /// The decision for an evaluation, or a deny for a request that could not be evaluated.
    fn conclude(
        &self,
        result: Result<cedar_glue::Evaluation, RequestError>,
        request: RequestSummary,
        principal: Option<PrincipalSummary>,
        token: TokenIdentity,
        now: i64,
    ) -> Decision {
        match result {
            Ok(eval) => {
                let outcome = if eval.allowed {
                    Outcome::Allow
                } else {
                    Outcome::Deny
                };
                self.decision(
                    outcome,
                    request,
                    eval.reasons,
                    eval.errors,
                    principal,
                    token,
                    now,
                )
            }
            Err(err) => self.decision(
                Outcome::Deny,
                request,
                Vec::new(),
                vec![err.info().into()],
                principal,
                token,
                now,
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn decision(
        &self,
        outcome: Outcome,
        request: RequestSummary,
        reasons: Vec<String>,
        errors: Vec<DecisionError>,
        principal: Option<PrincipalSummary>,
        token: TokenIdentity,
        now: i64,
    ) -> Decision {
        Decision {
            decision: outcome,
            status: outcome.http_status(),
            reasons,
            errors,
            principal,
            revision: self.bundle.revision().to_owned(),
            decision_id: self.next_decision_id(),
            request,
            token,
            time: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_ids_are_what_format_writes() {
        let values = [
            0,
            1,
            0xabc,
            u64::from(u32::MAX),
            1 << 32,
            (1 << 36) - 1,
            u64::MAX,
        ];
        for z in values {
            for n in values {
                assert_eq!(
                    decision_id(z, n),
                    format!("{z:016x}{n:08x}"),
                    "{z:#x}, {n:#x}"
                );
            }
        }
    }
}
