//! Evaluation: a request (with a verified token, or for a trusted principal) made into Cedar
//! entities and context and evaluated against the policies that can apply to it.

use super::assemble::Asked;
use super::authenticate::VerifiedToken;
use super::{DecisionRequest, Engine, TrustedRequest};
use crate::cedar_glue::{self, RESERVED_CONTEXT_KEYS, SharedEntity, unshared};
use crate::data::{Scope, Stored, TenantData};
use crate::decision::{Decision, Outcome, PrincipalSummary, RequestSummary, TokenIdentity};
use crate::error::{RequestError, sanitize};
use cedar_policy::{Entities, Entity, EntityUid, RestrictedExpression};
use cedar_policy_core::ast;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, PoisonError};

impl VerifiedToken {
    /// The token's principal entity merged with its stored entity ([`merge_principal`]): made
    /// once for each stored entity the token meets (a write of the entity makes a new one)
    /// and cloned after.
    fn merged_with(&self, stored: &Arc<Stored>) -> ast::Entity {
        let mut merged = self.merged.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((with, entity)) = merged.as_ref()
            && Arc::ptr_eq(with, stored)
        {
            return entity.clone();
        }
        let entity = merge_principal(&self.entity, stored);
        *merged = Some((Arc::clone(stored), entity.clone()));
        entity
    }
}

/// The token's principal entity with its stored entity's attributes (which win, but for
/// `tenant`, which is the token's and the same by construction) and parents (added to the
/// token's roles and groups). Its ancestors are closed with the decision's store.
fn merge_principal(token: &Entity, stored: &Stored) -> ast::Entity {
    let token = token.as_ref();
    let mut attrs: BTreeMap<_, _> = token.attrs().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (name, value) in stored.entity.attrs() {
        if name != "tenant" {
            attrs.insert(name.clone(), value.clone());
        }
    }
    let mut parents: HashSet<ast::EntityUID> = token.parents().cloned().collect();
    parents.extend(stored.parents.iter().cloned().map(ast::EntityUID::from));
    ast::Entity::new_with_attr_partial_value(
        token.uid().clone(),
        attrs,
        HashSet::new(),
        parents,
        token.tags().map(|(k, v)| (k.clone(), v.clone())),
    )
}

/// A decision on a signed-in user's slice is made only for its principal, and on a stored
/// resource only when the slice covers it: anything else would be decided on missing facts.
fn outside_slice(
    scope: &Scope,
    principal: &EntityUid,
    resource: &EntityUid,
    resource_stored: bool,
) -> Result<(), RequestError> {
    if scope.principal != *principal {
        return Err(RequestError::OutsideSlice(sanitize(
            &principal.to_string(),
            120,
        )));
    }
    if resource_stored && !scope.resources.contains(resource) {
        return Err(RequestError::OutsideSlice(sanitize(
            &resource.to_string(),
            120,
        )));
    }
    Ok(())
}

impl Engine {
    /// Decide a request that carries a token, at unix time `now`.
    pub fn decide(&self, request: &DecisionRequest, now: i64) -> Decision {
        let summary = RequestSummary::of(&request.action, &request.resource);
        let token = request.token.as_deref().unwrap_or("");
        let verified = match self.verified(token, now) {
            Ok(v) => v,
            Err(failure) => {
                let asked = Asked {
                    request: summary,
                    principal: None,
                    token: TokenIdentity {
                        issuer: failure.issuer,
                        ..TokenIdentity::default()
                    },
                    now,
                    data_revision: None,
                };
                return self.decision(
                    asked,
                    Outcome::Unauthenticated,
                    Vec::new(),
                    vec![failure.error.info().into()],
                );
            }
        };
        let principal = Some(PrincipalSummary::from_principal(&verified.principal));
        let data = self.decision_data(Some(&verified.principal.tenant));
        let data_revision = data
            .as_ref()
            .ok()
            .and_then(|d| d.as_ref().map(|d| d.revision()));
        let result = match &data {
            Err(err) => Err(err.clone()),
            Ok(data) => {
                let evaluate =
                    || self.evaluate_token_request(&verified, request, now, data.as_deref());
                // Without a token cache the token, and its memo, is gone after this request.
                if self.bundle.compiled().settings.tokens.cache_entries > 0 {
                    let age = cedar_glue::session_age(&verified.principal, now);
                    let version = data.as_ref().map(|d| d.version());
                    verified
                        .memo
                        .get_or_evaluate(age, version, request, evaluate)
                } else {
                    evaluate()
                }
            }
        };
        let asked = Asked {
            request: summary,
            principal,
            token: verified.identity.clone(),
            now,
            data_revision,
        };
        self.conclude(result, asked)
    }

    /// The data a decision in `tenant` joins: `None` when the bundle stores nothing.
    fn decision_data(&self, tenant: Option<&str>) -> Result<Option<Arc<TenantData>>, RequestError> {
        if self.bundle.stored.is_empty() {
            return Ok(None);
        }
        let tenant = tenant.ok_or(RequestError::TenantRequired)?;
        self.tenant_data(tenant)
            .map(Some)
            .ok_or_else(|| RequestError::DataUnavailable(sanitize(tenant, 64)))
    }

    pub(super) fn evaluate_token_request(
        &self,
        verified: &VerifiedToken,
        request: &DecisionRequest,
        now: i64,
        data: Option<&TenantData>,
    ) -> Result<cedar_glue::Evaluation, RequestError> {
        let action = cedar_glue::action_uid(&self.bundle, &request.action)?;
        let resource_uid = cedar_glue::uid(
            cedar_glue::entity_type(&self.bundle, &request.resource.entity_type)?,
            &request.resource.id,
        );
        let resource_stored = self.bundle.stored.contains(resource_uid.type_name());
        if resource_stored && !request.resource.attrs.is_empty() {
            return Err(RequestError::StoredAttributes(sanitize(
                &request.resource.entity_type,
                80,
            )));
        }
        if let Some(scope) = data.and_then(TenantData::scope) {
            outside_slice(scope, &verified.uid, &resource_uid, resource_stored)?;
        }
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
        // Shared: stored entities, static entities, the action. Owned: the principal, a
        // resource from its attributes.
        let mut shared: Vec<SharedEntity> =
            Vec::with_capacity(8 + self.bundle.static_entities.len());
        let mut owned: Vec<ast::Entity> = Vec::with_capacity(2);
        match data {
            Some(data) => self.join_data(data, verified, &resource_uid, &mut shared, &mut owned)?,
            None => owned.push(ast::Entity::clone(verified.entity.as_ref())),
        }
        // The principal's own entity, the bundle's static entities and stored entities are
        // authoritative: a request cannot redefine them through resource attributes.
        let mut checked = true;
        if resource_uid != verified.uid
            && !resource_stored
            && !self.bundle.static_entities.contains_key(&resource_uid)
        {
            checked = cedar_glue::resource_attrs_conform(
                &self.bundle,
                &request.resource.entity_type,
                &request.resource.attrs,
            )?;
            let resource = cedar_glue::entity_from_attrs(&resource_uid, &request.resource.attrs)?;
            owned.push(ast::Entity::clone(resource.as_ref()));
        }
        shared.extend(self.bundle.static_entities.values().cloned());
        let store = if checked {
            // Every entity is known to conform (the principal since verification, the resource
            // just now, stored entities since written, static entities since load): skip
            // Cedar's per-request schema pass, add only the action this request names, and
            // share what is shared.
            shared.extend(self.bundle.action_entity(&action).cloned());
            cedar_glue::decision_entities(shared, owned)?
        } else {
            let entities = shared
                .iter()
                .map(unshared)
                .chain(owned.into_iter().map(Entity::from));
            Entities::from_entities(entities, self.bundle.schema.as_ref())
                .map_err(|e| RequestError::Schema(e.to_string()))?
        };
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

    /// The principal's entity (merged with its stored one, if any) and the stored entities the
    /// decision rests on: the principal's stored ancestors, the resource and its ancestors.
    fn join_data(
        &self,
        data: &TenantData,
        verified: &VerifiedToken,
        resource: &EntityUid,
        shared: &mut Vec<SharedEntity>,
        owned: &mut Vec<ast::Entity>,
    ) -> Result<(), RequestError> {
        let mut seen = HashSet::from([&verified.uid]);
        let mut starts: Vec<&EntityUid> = Vec::new();
        match data.stored(&verified.uid) {
            Some(stored) => {
                owned.push(verified.merged_with(stored));
                starts.extend(stored.parents.iter());
            }
            None => owned.push(ast::Entity::clone(verified.entity.as_ref())),
        }
        starts.push(resource);
        let depth = self.bundle.compiled().settings.data.max_depth;
        let mut found = Vec::new();
        data.ancestors_into(starts, depth, &mut seen, &mut found)?;
        shared.extend(found.into_iter().map(|s| Arc::clone(&s.entity)));
        owned.extend(self.unstored(data, resource));
        Ok(())
    }

    /// The entity of `uid` when it is of a stored type its tenant does not store (see
    /// `Bundle::unstored_entity`).
    fn unstored(&self, data: &TenantData, uid: &EntityUid) -> Option<ast::Entity> {
        if data.stored(uid).is_some() {
            return None;
        }
        self.bundle
            .unstored_entity(uid)
            .map(|entity| ast::Entity::clone(entity.as_ref()))
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
        let data = self.decision_data(request.tenant.as_deref());
        let data_revision = data
            .as_ref()
            .ok()
            .and_then(|d| d.as_ref().map(|d| d.revision()));
        let result = data.and_then(|data| self.evaluate_trusted(request, data.as_deref()));
        let asked = Asked {
            request: summary,
            principal,
            token: TokenIdentity::default(),
            now,
            data_revision,
        };
        self.conclude(result, asked)
    }

    fn evaluate_trusted(
        &self,
        request: &TrustedRequest,
        data: Option<&TenantData>,
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
        let mut entities: Vec<Entity> =
            self.bundle.static_entities.values().map(unshared).collect();
        if let Some(extra) = &request.entities {
            let parsed = Entities::from_json_value(extra.clone(), self.bundle.schema.as_ref())
                .map_err(|e| RequestError::Entity {
                    reference: "entities".into(),
                    reason: e.to_string(),
                })?;
            for entity in parsed {
                let uid = entity.uid();
                if self.bundle.stored.contains(uid.type_name()) {
                    return Err(RequestError::StoredAttributes(sanitize(
                        &uid.type_name().to_string(),
                        80,
                    )));
                }
                if !self.bundle.is_schema_action(&uid) {
                    entities.push(entity);
                }
            }
        }
        if let Some(data) = data {
            if let Some(scope) = data.scope() {
                let stored = self.bundle.stored.contains(resource.type_name());
                outside_slice(scope, &principal, &resource, stored)?;
            }
            for (reference, uid) in [
                (&request.principal, &principal),
                (&request.resource, &resource),
            ] {
                if !reference.attrs.is_empty() && self.bundle.stored.contains(uid.type_name()) {
                    return Err(RequestError::StoredAttributes(sanitize(
                        &reference.entity_type,
                        80,
                    )));
                }
            }
            let known: Vec<EntityUid> = entities.iter().map(Entity::uid).collect();
            let mut seen: HashSet<&EntityUid> = known.iter().collect();
            let depth = self.bundle.compiled().settings.data.max_depth;
            let mut found = Vec::new();
            data.ancestors_into([&principal, &resource], depth, &mut seen, &mut found)?;
            entities.extend(found.into_iter().map(|s| unshared(&s.entity)));
            for uid in [&principal, &resource] {
                entities.extend(self.unstored(data, uid).map(Entity::from));
            }
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
}
