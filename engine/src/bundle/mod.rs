//! Bundles: everything a decision needs except the request.
//!
//! A bundle is authored as a directory (schema, `policies/*.cedar`, `tenants.json`, optional
//! `entities.json` and `bundle.json`), which a host reads into [`BundleSources`] and compiles
//! into one JSON document, a [`CompiledBundle`]. Every host loads that document with
//! [`Bundle::from_json`]. Loading validates everything and reports every problem with its file
//! and line; a bundle that does not load never replaces one that does.

mod compile;
mod config;
mod distribute;
mod issuers;
mod locate;
mod policies;
mod routes;
mod schema;
mod schema_info;
mod signature;
mod slice;

pub use compile::{BUNDLE_FORMAT, BundleSources, CompiledBundle};
pub use config::{
    ClaimPath, ClaimsConfig, DataAccess, DataSettings, EntityTypes, IssuerConfig, MAX_CLOCK_SKEW,
    MAX_DATA_DEPTH, MAX_TOKEN_LIFETIME, Preset, SecretRef, Settings, TenantConfig, TenantsFile,
    TokenSettings,
};
pub(crate) use issuers::{IssuerEntry, KeySource, normalize_typ};
pub use issuers::{KeyUrl, acceptable_key_url};
pub use policies::PolicySource;
pub(crate) use schema::PrincipalTypes;
pub(crate) use schema_info::{ActionShape, AttrType, SchemaInfo};
pub use signature::{BUNDLE_SIGNATURE_TYPE, BundleTrust};

use issuers::{issuer_aliases, resolve_issuers};
use policies::{parse_policies, validate_policies};
use schema::{parse_schema, resolve_types};

use crate::cedar_glue::SharedEntity;
use crate::edge::routes::Route;
use crate::error::{BundleError, BundleProblem, SourceLocation, sanitize};
use cedar_policy::{Entities, EntityTypeName, EntityUid, PolicySet, Schema};
use miette::Diagnostic;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

/// A loaded, validated bundle. Immutable; share it behind an `Arc`.
#[derive(Debug)]
pub struct Bundle {
    compiled: CompiledBundle,
    pub(crate) schema: Option<Schema>,
    pub(crate) shared: Arc<PolicySet>,
    pub(crate) tenant_policies: HashMap<String, Arc<PolicySet>>,
    pub(crate) issuers: HashMap<String, Vec<IssuerEntry>>,
    /// Other spellings of an issuer's `iss` its IdP documents (Google's `accounts.google.com`
    /// for `https://accounts.google.com`), to the configured one.
    issuer_aliases: HashMap<String, String>,
    /// The bundle-wide entities (`entities.json`), their ancestors closed.
    pub(crate) static_entities: HashMap<EntityUid, SharedEntity>,
    pub(crate) action_uids: HashSet<EntityUid>,
    /// The schema's action entities (with their action groups as ancestors).
    action_entities: HashMap<EntityUid, SharedEntity>,
    /// The action groups each schema action is in.
    action_ancestors: HashMap<EntityUid, HashSet<EntityUid>>,
    slices: slice::Slices,
    no_ancestors: HashSet<EntityUid>,
    /// What each schema action applies to, for the request fast path.
    action_shapes: HashMap<
        EntityUid,
        (
            HashSet<EntityTypeName>,
            HashSet<EntityTypeName>,
            ActionShape,
        ),
    >,
    schema_info: Option<SchemaInfo>,
    /// Entity type names of the schema, parsed once (requests name them by string).
    known_types: HashMap<String, EntityTypeName>,
    /// `Action::"<id>"` uids of the schema by id, parsed once.
    known_actions: HashMap<String, EntityUid>,
    pub(crate) types: PrincipalTypes,
    policy_count: usize,
    routes: Vec<Route>,
    /// The entity types tenants store (`settings.data.stored`).
    pub(crate) stored: HashSet<EntityTypeName>,
}

/// The names (and, when compiling a directory, the texts) of the files problems are reported
/// against.
struct Files<'a> {
    schema: &'a str,
    tenants: issuers::TenantsText<'a>,
    routes: routes::RoutesText<'a>,
}

impl Bundle {
    /// Load a compiled bundle from its JSON text.
    ///
    /// # Errors
    /// Malformed JSON, a revision that does not match the content, or any validation problem.
    pub fn from_json(text: &str) -> Result<Self, BundleError> {
        Self::from_json_named(text, "compiled bundle")
    }

    /// [`Bundle::from_json`] for a document a host read from `name` (a file or URL), which a
    /// JSON error is reported against.
    ///
    /// # Errors
    /// As for [`Bundle::from_json`].
    pub fn from_json_named(text: &str, name: &str) -> Result<Self, BundleError> {
        let compiled: CompiledBundle = serde_json::from_str(text).map_err(|err| {
            BundleError::one(
                BundleProblem::new("json", crate::error::json_message(&err)).at(SourceLocation {
                    file: name.to_owned(),
                    line: Some(err.line()),
                    column: Some(err.column()),
                }),
            )
        })?;
        Self::load(compiled)
    }

    /// Load a compiled bundle.
    ///
    /// # Errors
    /// A revision that does not match the content, or any validation problem.
    pub fn load(compiled: CompiledBundle) -> Result<Self, BundleError> {
        if !compiled.revision.is_empty() && compiled.revision != compiled.compute_revision() {
            return Err(BundleError::one(
                BundleProblem::new("revision", "bundle revision does not match its content")
                    .help("the document was edited after compilation; rebuild it with `portcullis bundle`"),
            ));
        }
        let no_files = std::collections::BTreeMap::new();
        let files = Files {
            schema: "schema",
            tenants: issuers::TenantsText {
                file: "tenants",
                text: None,
                jwks_files: &no_files,
            },
            routes: routes::RoutesText {
                file: "routes",
                text: None,
            },
        };
        Self::load_with_files(compiled.seal(), &files)
    }

    fn load_with_files(compiled: CompiledBundle, files: &Files<'_>) -> Result<Self, BundleError> {
        let (schema_file, tenants_file) = (files.schema, files.tenants.file);
        let mut problems = Vec::new();
        if compiled.format != BUNDLE_FORMAT {
            return Err(BundleError::one(
                BundleProblem::new(
                    "format",
                    format!("unknown bundle format `{}`", sanitize(&compiled.format, 40)),
                )
                .help(format!("this engine reads `{BUNDLE_FORMAT}`")),
            ));
        }
        let settings = &compiled.settings;
        if settings.tokens.clock_skew > MAX_CLOCK_SKEW {
            problems.push(BundleProblem::new(
                "settings",
                format!(
                    "clock skew of {}s is over the maximum of {MAX_CLOCK_SKEW}s",
                    settings.tokens.clock_skew
                ),
            ));
        }
        if !(60..=MAX_TOKEN_LIFETIME).contains(&settings.tokens.max_lifetime) {
            problems.push(BundleProblem::new(
                "settings",
                format!(
                    "`tokens.max_lifetime` must be between 60 and {MAX_TOKEN_LIFETIME} seconds"
                ),
            ));
        }
        if settings.tokens.max_bytes == 0 || settings.tokens.max_bytes > 1024 * 1024 {
            problems.push(BundleProblem::new(
                "settings",
                "`tokens.max_bytes` must be between 1 and 1048576",
            ));
        }

        // Schema.
        let (schema, schema_info) = match &compiled.schema {
            Some(text) => match parse_schema(text, schema_file) {
                Ok((schema, info)) => (Some(schema), Some(info)),
                Err(problem) => {
                    problems.push(problem);
                    (None, None)
                }
            },
            None => (None, None),
        };
        let types = resolve_types(&settings.entity_types, schema_info.as_ref(), &mut problems);

        // Policies.
        let tenant_names: BTreeSet<&str> = compiled.tenants.keys().map(String::as_str).collect();
        for name in &tenant_names {
            if !valid_tenant_name(name) {
                problems.push(
                    BundleProblem::new(
                        "tenants",
                        format!("invalid tenant name `{}`", sanitize(name, 64)),
                    )
                    .at(SourceLocation::file(tenants_file))
                    .help("use 1-64 letters, digits, `.`, `_` or `-`"),
                );
            }
        }
        let policies = parse_policies(&compiled, &tenant_names, &mut problems);
        if settings.validate_policies
            && let Some(schema) = &schema
        {
            validate_policies(schema, &compiled, &policies, &mut problems);
        }
        let shared = Arc::new(policies.shared);
        let mut tenant_policies = HashMap::new();
        for (tenant, own) in policies.per_tenant {
            let mut set = (*shared).clone();
            for policy in own {
                if let Err(err) = set.add(policy) {
                    problems.push(BundleProblem::new("policy", err.to_string()));
                }
            }
            tenant_policies.insert(tenant, Arc::new(set));
        }

        // Tenants and issuers.
        let issuers = resolve_issuers(&compiled, &types, &files.tenants, &mut problems);
        let issuer_aliases = issuer_aliases(&compiled, &issuers);

        // Entities.
        let mut action_entities = HashMap::new();
        let mut action_ancestors = HashMap::new();
        if let Some(schema) = &schema {
            match schema.action_entities() {
                Ok(actions) => {
                    for action in actions.iter() {
                        let uid = action.uid();
                        let ancestors: HashSet<EntityUid> = actions
                            .ancestors(&uid)
                            .map(|a| a.cloned().collect())
                            .unwrap_or_default();
                        action_ancestors.insert(uid.clone(), ancestors);
                        action_entities.insert(uid, Arc::new(action.as_ref().clone()));
                    }
                }
                Err(err) => problems.push(BundleProblem::new("schema", err.to_string())),
            }
        }
        let action_uids: HashSet<EntityUid> = action_entities.keys().cloned().collect();
        let mut static_entities = HashMap::new();
        match Entities::from_json_value(compiled.entities.clone(), schema.as_ref()) {
            // With a schema, Cedar adds the schema's action entities; decisions add the one
            // they name, so they are not kept here. Cedar has closed their ancestors.
            Ok(entities) => static_entities.extend(
                entities
                    .into_iter()
                    .filter(|e| !action_uids.contains(&e.uid()))
                    .map(|e| (e.uid(), Arc::new(e.as_ref().clone()))),
            ),
            Err(err) => problems.push(
                BundleProblem::new("entities", diagnostic_text(&err))
                    .at(SourceLocation::file("entities.json")),
            ),
        }
        let mut known_types: HashMap<String, EntityTypeName> = schema_info
            .iter()
            .flat_map(|info| info.entity_types.keys())
            .filter_map(|name| {
                EntityTypeName::from_str(name)
                    .ok()
                    .map(|ty| (name.clone(), ty))
            })
            .collect();
        for ty in [&types.user, &types.client, &types.role] {
            known_types.insert(ty.to_string(), ty.clone());
        }
        let parse_types = |names: &BTreeSet<String>| -> HashSet<EntityTypeName> {
            names
                .iter()
                .filter_map(|n| EntityTypeName::from_str(n).ok())
                .collect()
        };
        let action_shapes = schema_info
            .iter()
            .flat_map(|info| info.actions.iter())
            .filter_map(|((ty, id), shape)| {
                let uid = EntityUid::from_type_name_and_id(
                    EntityTypeName::from_str(ty).ok()?,
                    cedar_policy::EntityId::new(id),
                );
                Some((
                    uid,
                    (
                        parse_types(&shape.principals),
                        parse_types(&shape.resources),
                        shape.clone(),
                    ),
                ))
            })
            .collect();
        let known_actions = action_uids
            .iter()
            .filter(|uid| uid.type_name().to_string() == "Action")
            .map(|uid| (uid.id().unescaped().to_owned(), uid.clone()))
            .collect();

        let stored = crate::data::stored_types(&settings.data, schema_info.as_ref(), &mut problems);
        let stored_names: BTreeSet<String> = stored.iter().map(ToString::to_string).collect();
        let routes = routes::compile(
            &compiled.routes,
            schema_info.as_ref(),
            &stored_names,
            &files.routes,
            &mut problems,
        );

        if !problems.is_empty() {
            return Err(BundleError { problems });
        }
        Ok(Self {
            routes,
            stored,
            issuer_aliases,
            policy_count: policies.count,
            compiled,
            schema,
            shared,
            tenant_policies,
            issuers,
            static_entities,
            action_uids,
            action_entities,
            action_ancestors,
            slices: slice::Slices::default(),
            no_ancestors: HashSet::new(),
            action_shapes,
            schema_info,
            known_types,
            known_actions,
            types,
        })
    }

    /// The content revision, as it appears in every decision.
    pub fn revision(&self) -> &str {
        &self.compiled.revision
    }

    /// The compiled document this bundle was loaded from.
    pub fn compiled(&self) -> &CompiledBundle {
        &self.compiled
    }

    /// Number of policies across shared and tenant sets.
    pub fn policy_count(&self) -> usize {
        self.policy_count
    }

    /// The configured issuer (and its entries) a token's `iss` names, directly or by one of
    /// the spellings its IdP documents.
    pub(crate) fn issuer(&self, iss: &str) -> Option<(&String, &Vec<IssuerEntry>)> {
        self.issuers.get_key_value(iss).or_else(|| {
            self.issuer_aliases
                .get(iss)
                .and_then(|configured| self.issuers.get_key_value(configured))
        })
    }

    /// The compiled routes, in order.
    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Number of routes.
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// Tenant names.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.compiled.tenants.keys().map(String::as_str)
    }

    /// The tenants that trust `issuer` (several, for an issuer shared by tenants and told apart
    /// by a claim, as Google's), by name.
    pub fn issuer_tenants(&self, issuer: &str) -> Vec<String> {
        let mut tenants: Vec<String> = self
            .issuers
            .get(issuer)
            .into_iter()
            .flatten()
            .map(|entry| entry.tenant.clone())
            .collect();
        tenants.sort();
        tenants.dedup();
        tenants
    }

    /// Issuers whose keys a host must fetch: issuer and where its keys are (a JWK set URL or a
    /// discovery document).
    pub fn remote_issuers(&self) -> Vec<(String, KeyUrl)> {
        let mut out: Vec<(String, KeyUrl)> = Vec::new();
        for (issuer, entries) in &self.issuers {
            let url = entries.iter().find_map(|e| match &e.source {
                KeySource::JwksUri(url) => Some(KeyUrl::JwksUri(url.clone())),
                KeySource::Discovery(url) => Some(KeyUrl::Discovery(url.clone())),
                KeySource::Inline | KeySource::Secret(_) => None,
            });
            if let Some(url) = url
                && !out.iter().any(|(i, _)| i == issuer)
            {
                out.push((issuer.clone(), url));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The HMAC secrets a host must hand over ([`crate::Engine::set_secret`]), by name, each
    /// once.
    pub fn secrets(&self) -> Vec<&SecretRef> {
        let mut out: Vec<&SecretRef> = Vec::new();
        for entry in self.issuers.values().flatten() {
            if let KeySource::Secret(secret) = &entry.source
                && !out.iter().any(|s| s.name == secret.name)
            {
                out.push(secret);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The schema's entity for an action, if the schema declares it.
    pub(crate) fn action_entity(&self, uid: &EntityUid) -> Option<&SharedEntity> {
        self.action_entities.get(uid)
    }

    /// Whether Cedar's request validation is sure to pass for a request whose context holds
    /// exactly the engine's `provided` keys: the action applies to these types and its context
    /// record declares those keys with the engine's types and requires no other. When it is,
    /// the validation pass can be skipped; otherwise Cedar validates (and decides).
    pub(crate) fn request_conforms(
        &self,
        action: &EntityUid,
        principal: &EntityTypeName,
        resource: &EntityTypeName,
        provided: &[(&str, AttrType)],
    ) -> bool {
        let Some((principals, resources, shape)) = self.action_shapes.get(action) else {
            return false;
        };
        let Some(context) = &shape.context else {
            return false;
        };
        principals.contains(principal)
            && resources.contains(resource)
            && provided.iter().all(|(key, ty)| {
                context
                    .get(*key)
                    .is_some_and(|(declared, _)| declared == ty)
            })
            && context.iter().all(|(name, (_, required))| {
                !required || provided.iter().any(|(key, _)| key == name)
            })
    }

    /// What the schema declares for an entity type (`None` without a schema or for an
    /// undeclared type).
    pub(crate) fn entity_shape(&self, type_name: &str) -> Option<&schema_info::EntityShape> {
        self.schema_info.as_ref()?.shape(type_name)
    }

    /// Whether the bundle has a schema.
    pub(crate) fn has_schema(&self) -> bool {
        self.schema.is_some()
    }

    /// A schema entity type by name, without parsing.
    pub(crate) fn known_type(&self, name: &str) -> Option<&EntityTypeName> {
        self.known_types.get(name)
    }

    /// A schema action `Action::"<id>"` by id, without parsing.
    pub(crate) fn known_action(&self, id: &str) -> Option<&EntityUid> {
        self.known_actions.get(id)
    }

    /// The schema actions that apply to this principal type and resource type, by the names
    /// a request gives them (`view`, or `Ns::Action::"view"` outside the `Action` type), in
    /// order.
    pub(crate) fn actions_applying(
        &self,
        principal: &EntityTypeName,
        resource: &EntityTypeName,
    ) -> Vec<String> {
        let mut names: Vec<String> = self
            .action_shapes
            .iter()
            .filter(|(_, (principals, resources, _))| {
                principals.contains(principal) && resources.contains(resource)
            })
            .map(|(uid, _)| {
                if uid.type_name().to_string() == "Action" {
                    uid.id().unescaped().to_owned()
                } else {
                    uid.to_string()
                }
            })
            .collect();
        names.sort();
        names
    }

    pub(crate) fn is_schema_action(&self, uid: &EntityUid) -> bool {
        self.action_uids.contains(uid)
    }

    /// The policies of `tenant` (shared plus its own) whose scope can match a request of this
    /// principal type, action and resource type.
    pub(crate) fn policies_for(
        &self,
        tenant: Option<&str>,
        principal: &EntityTypeName,
        action: &EntityUid,
        resource: &EntityTypeName,
    ) -> Arc<PolicySet> {
        let own = tenant.filter(|t| self.tenant_policies.contains_key(*t));
        let set = own
            .and_then(|t| self.tenant_policies.get(t))
            .unwrap_or(&self.shared);
        let ancestors = self.schema.as_ref().map(|_| {
            self.action_ancestors
                .get(action)
                .unwrap_or(&self.no_ancestors)
        });
        let key = slice::SliceKey {
            tenant: own,
            principal,
            action,
            resource,
        };
        self.slices.get(set, &key, ancestors)
    }

    /// The whole policy set of `tenant` (shared plus its own).
    #[cfg(test)]
    pub(crate) fn tenant_set(&self, tenant: Option<&str>) -> &PolicySet {
        tenant
            .and_then(|t| self.tenant_policies.get(t))
            .map_or(&self.shared, |p| p)
    }
}

fn valid_tenant_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The first label's offset of a diagnostic, if any.
fn diagnostic_offset(diag: &dyn Diagnostic) -> Option<usize> {
    diag.labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset())
}

/// A diagnostic's message with its help, for problems that have no location.
fn diagnostic_text(diag: &dyn Diagnostic) -> String {
    let mut text = diag.to_string();
    if let Some(help) = diag.help() {
        text.push_str(&format!(" ({help})"));
    }
    text
}

#[cfg(test)]
mod tests;
