//! Authorization data: the Cedar entities tenants store (reports with their departments,
//! departments in divisions, teams, folders, shares), as the engine holds them between
//! decisions.
//!
//! The bundle declares which entity types are stored (`settings.data.stored`). A stored entity
//! belongs to exactly one tenant: its id starts with the tenant's name and a `/`
//! (`Report::"acme/q3"`), and a declared `tenant` attribute, filled in when left out, names the
//! same tenant. Its parents are the same tenant's stored entities or bundle-wide ones (entities
//! of types that are not stored, such as the token roles' `Role::"FinanceAnalyst"`). Every
//! entity is validated against the schema whenever it enters the engine — on a write, and again
//! when a host hands over a snapshot or changes it fetched: a stored entity is as hostile as a
//! request until it has been checked.
//!
//! Hosts hand the engine data as documents ([`DataDocument`]): a tenant's snapshot at a
//! revision, or its changes since one. The engine does no I/O.

mod graph;
mod slice;

pub use slice::{
    EntityRef, MAX_SLICE_DOCUMENT, MAX_SLICE_QUERY, MAX_SLICE_RESOURCES, SliceRequest, SliceScope,
};

use crate::bundle::{Bundle, DataSettings, MAX_DATA_DEPTH, SchemaInfo};
use crate::cedar_glue::SharedEntity;
use crate::error::{BundleProblem, SourceLocation, sanitize};
use cedar_policy::{Entity, EntityTypeName, EntityUid, RestrictedExpression};
use cedar_policy_core::ast;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The largest data document (a snapshot or a set of changes) the engine reads.
pub const MAX_DATA_DOCUMENT: usize = 64 * 1024 * 1024;

/// The largest stored entity, as JSON text.
pub const MAX_ENTITY_BYTES: usize = 64 * 1024;

/// The stored entity types of a bundle's settings, each checked against the schema.
pub(crate) fn stored_types(
    settings: &DataSettings,
    info: Option<&SchemaInfo>,
    problems: &mut Vec<BundleProblem>,
) -> HashSet<EntityTypeName> {
    let mut stored = HashSet::new();
    let mut fail = |message: String| {
        problems
            .push(BundleProblem::new("settings", message).at(SourceLocation::file("bundle.json")));
    };
    if !(1..=MAX_DATA_DEPTH).contains(&settings.max_depth) {
        fail(format!(
            "`data.max_depth` must be between 1 and {MAX_DATA_DEPTH}"
        ));
    }
    if settings.stored.is_empty() {
        return stored;
    }
    let Some(info) = info else {
        fail("stored entity types (`data.stored`) need a schema to be validated against".into());
        return stored;
    };
    // Data calls are decided as these actions on this type: a bundle that cannot express
    // them would refuse every call, so say so now.
    let access = &settings.access;
    match info.shape(&access.resource) {
        None => fail(format!(
            "`data.access.resource`: the schema declares no entity type `{}` (data calls are \
             authorized as `{}`/`{}` on it)",
            sanitize(&access.resource, 80),
            sanitize(&access.read, 40),
            sanitize(&access.write, 40)
        )),
        Some(_) => {
            for action in [&access.read, &access.write] {
                let applies = info.actions.iter().any(|((ty, id), shape)| {
                    (ty == "Action" || ty.ends_with("::Action"))
                        && id == action
                        && shape.resources.contains(&access.resource)
                });
                if !applies {
                    fail(format!(
                        "`data.access`: the schema has no action `{}` that applies to `{}`",
                        sanitize(action, 40),
                        sanitize(&access.resource, 80)
                    ));
                }
            }
        }
    }
    if settings.stored.contains(&access.resource) {
        fail(format!(
            "`data.access.resource` `{}` cannot be a stored type",
            sanitize(&access.resource, 80)
        ));
    }
    for name in &settings.stored {
        let shown = sanitize(name, 80);
        if info.shape(name).is_none() {
            let known = info.entity_types.keys().map(String::as_str);
            let hint = crate::error::did_you_mean(name, known)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            fail(format!(
                "`data.stored`: the schema declares no entity type `{shown}`{hint}"
            ));
            continue;
        }
        let Ok(ty) = EntityTypeName::from_str(name) else {
            fail(format!(
                "`data.stored`: `{shown}` is not an entity type name"
            ));
            continue;
        };
        if !stored.insert(ty) {
            fail(format!("`data.stored` names `{shown}` twice"));
        }
    }
    stored
}

/// A tenant's data document: its snapshot at `revision` (`entities`), or its changes from
/// `since` to `revision` (`changes`). What `GET /v1/data/{tenant}` serves and every host hands
/// to [`crate::Engine::load_tenant_data`]. A signed-in user's slice
/// ([`crate::Engine::data_slice`]) is a snapshot of part of the data, with the `slice` it was
/// cut for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataDocument {
    /// The tenant.
    pub tenant: String,
    /// The revision the document brings the tenant's data to.
    pub revision: u64,
    /// For changes: the revision they start from (the revision the host holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// For a snapshot: every entity (Cedar entity JSON).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<Value>,
    /// For changes: each change, in revision order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<DataChange>,
    /// For a slice: the principal and the resources it was cut for. An engine holding a slice
    /// decides only for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<SliceScope>,
}

/// Several tenants' entities as one document: `{"tenants": {"acme": [entity, …]}}`. The form
/// of `portcullis check --data`, of policy tests' and conformance cases' `data`: facts for a
/// test, where there is no store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSet {
    /// Each tenant's entities (Cedar entity JSON).
    pub tenants: std::collections::BTreeMap<String, Vec<Value>>,
}

/// One change of a tenant's data: the entity as it is after `revision`, or `None` when that
/// revision deleted it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataChange {
    /// The revision that made the change.
    pub revision: u64,
    /// The entity's type.
    #[serde(rename = "type")]
    pub entity_type: String,
    /// The entity's id.
    pub id: String,
    /// The entity after the change (Cedar entity JSON), `null` when deleted.
    #[serde(default)]
    pub entity: Option<Value>,
}

/// One write asked of a tenant's data.
#[derive(Clone, Debug, PartialEq)]
pub enum EntityWrite {
    /// Store this entity (Cedar entity JSON), replacing the one with its uid.
    Put(Value),
    /// Delete the entity with this type and id.
    Delete {
        /// Its type.
        entity_type: String,
        /// Its id.
        id: String,
    },
}

/// A write checked against the schema and the tenant's data: the entity before and after, as
/// canonical Cedar entity JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedWrite {
    /// The entity's type.
    pub entity_type: String,
    /// The entity's id.
    pub id: String,
    /// The entity as stored before the write.
    pub before: Option<Value>,
    /// The entity after the write; `None` for a delete.
    pub after: Option<Value>,
}

/// Tenant data that cannot be used: refused writes, and documents a host handed over that do
/// not hold together. Nothing of a refused write or document is kept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// Not JSON, or not the shape of a data document or an entity.
    #[error("malformed data: {0}")]
    Malformed(String),
    /// Over a size bound.
    #[error("{what} is {size} bytes, over the limit of {max}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The bound.
        max: usize,
    },
    /// The bundle has no such tenant.
    #[error("unknown tenant `{0}`")]
    UnknownTenant(String),
    /// The entity's type is not one the bundle stores.
    #[error("`{entity}`: `{entity_type}` is not a stored entity type (the bundle stores {stored})")]
    NotStored {
        /// The entity.
        entity: String,
        /// Its type.
        entity_type: String,
        /// The stored types.
        stored: String,
    },
    /// The entity is not this tenant's: its id lacks the `<tenant>/` prefix, or its `tenant`
    /// attribute names another tenant.
    #[error("`{entity}` is not tenant `{tenant}`'s: {reason}")]
    OtherTenant {
        /// The entity.
        entity: String,
        /// The tenant written to.
        tenant: String,
        /// Why.
        reason: String,
    },
    /// The entity does not conform to the schema.
    #[error("`{entity}` does not match the schema: {reason}")]
    Schema {
        /// The entity.
        entity: String,
        /// Cedar's reason.
        reason: String,
    },
    /// A parent of a stored type in another tenant.
    #[error("`{entity}`: parent `{parent}` is in another tenant")]
    ParentTenant {
        /// The entity.
        entity: String,
        /// The parent.
        parent: String,
    },
    /// The entity would be its own ancestor.
    #[error("`{entity}` would be its own ancestor (a parent cycle)")]
    Cycle {
        /// The entity.
        entity: String,
    },
    /// The entity would be in a chain of parents longer than the bundle allows.
    #[error("`{entity}` would be in a chain of more than {max} parent levels")]
    Depth {
        /// The entity.
        entity: String,
        /// `settings.data.max_depth`.
        max: usize,
    },
    /// The entity is one of the bundle's own (static) entities.
    #[error("`{entity}` is an entity of the bundle, not of a tenant")]
    Static {
        /// The entity.
        entity: String,
    },
    /// The same entity twice in one write or document.
    #[error("`{entity}` is given twice")]
    Duplicate {
        /// The entity.
        entity: String,
    },
    /// Changes that do not start at the revision the engine holds (fetch a snapshot), or
    /// revisions out of order.
    #[error("changes from revision {since} cannot apply to revision {held}: {reason}")]
    Revision {
        /// The revision the engine holds for the tenant.
        held: u64,
        /// The revision the changes start from.
        since: u64,
        /// Why.
        reason: &'static str,
    },
}

impl DataError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "data_malformed",
            Self::TooLarge { .. } => "data_too_large",
            Self::UnknownTenant(_) => "data_tenant",
            Self::NotStored { .. } => "data_type",
            Self::OtherTenant { .. } => "data_other_tenant",
            Self::Schema { .. } => "data_schema",
            Self::ParentTenant { .. } => "data_parent_tenant",
            Self::Cycle { .. } => "data_cycle",
            Self::Depth { .. } => "data_depth",
            Self::Static { .. } => "data_static",
            Self::Duplicate { .. } => "data_duplicate",
            Self::Revision { .. } => "data_revision",
        }
    }

    /// The edge shape of this error.
    pub fn info(&self) -> crate::ErrorInfo {
        crate::ErrorInfo {
            code: self.code(),
            message: self.to_string(),
            help: None,
        }
    }
}

/// What [`crate::Engine::load_tenant_data`] loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataLoaded {
    /// The tenant.
    pub tenant: String,
    /// Its revision now.
    pub revision: u64,
    /// Its entities now.
    pub entities: usize,
}

/// One stored entity: Cedar's entity, shared by the decisions that join it, with its ancestors
/// closed (every ancestor, through stored and bundle-wide parents) once it is committed; and
/// its parents as written.
#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub entity: SharedEntity,
    pub parents: Vec<EntityUid>,
}

impl Stored {
    /// The entity as written: its parents, not its closed ancestors.
    fn written(&self) -> Entity {
        let e = &*self.entity;
        Entity::from(ast::Entity::new_with_attr_partial_value(
            e.uid().clone(),
            e.attrs().map(|(k, v)| (k.clone(), v.clone())),
            HashSet::new(),
            self.parents
                .iter()
                .cloned()
                .map(ast::EntityUID::from)
                .collect(),
            e.tags().map(|(k, v)| (k.clone(), v.clone())),
        ))
    }

    /// The entity as written, as canonical Cedar entity JSON.
    fn json(&self) -> Value {
        entity_json(&self.written())
    }
}

/// What a slice held by an engine covers (see [`SliceScope`]).
#[derive(Debug)]
pub(crate) struct Scope {
    pub principal: EntityUid,
    pub resources: HashSet<EntityUid>,
}

/// Where [`TenantData::version`]s come from: one counter for the process, so that no two
/// contents of any tenant's data share a version.
static VERSIONS: AtomicU64 = AtomicU64::new(1);

/// A tenant's stored entities at one revision, indexed by uid and by parent.
#[derive(Clone, Debug)]
pub struct TenantData {
    tenant: String,
    revision: u64,
    entities: HashMap<EntityUid, Arc<Stored>>,
    /// Parent → the stored entities that name it as a parent.
    children: HashMap<EntityUid, HashSet<EntityUid>>,
    /// For a signed-in user's slice: what it covers. `None` for the tenant's data.
    scope: Option<Arc<Scope>>,
    /// This content's version (see [`TenantData::version`]).
    version: u64,
}

impl TenantData {
    /// A tenant with no data, at revision 0.
    pub fn new(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            revision: 0,
            entities: HashMap::new(),
            children: HashMap::new(),
            scope: None,
            version: VERSIONS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// A number that names this content: every change (and every document applied) makes a
    /// new one. Unlike the revision, it tells apart two documents of one revision, such as
    /// two slices cut for different resources.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether this is a signed-in user's slice rather than the tenant's data.
    pub fn is_slice(&self) -> bool {
        self.scope.is_some()
    }

    pub(crate) fn scope(&self) -> Option<&Scope> {
        self.scope.as_deref()
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The revision.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The number of entities.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// The entity with this type and id, as canonical Cedar entity JSON.
    pub fn get(&self, entity_type: &str, id: &str) -> Option<Value> {
        let uid = parse_uid(entity_type, id).ok()?;
        self.entities.get(&uid).map(|s| s.json())
    }

    /// The snapshot document of this data.
    pub fn document(&self) -> DataDocument {
        self.snapshot_of(self.entities.values().map(|s| &**s))
    }

    /// A snapshot document at this revision holding `entities`, ordered by uid.
    fn snapshot_of<'a>(&self, entities: impl Iterator<Item = &'a Stored>) -> DataDocument {
        let mut entities: Vec<(String, Value)> = entities
            .map(|s| (s.entity.uid().to_string(), s.json()))
            .collect();
        entities.sort_by(|a, b| a.0.cmp(&b.0));
        DataDocument {
            tenant: self.tenant.clone(),
            revision: self.revision,
            entities: entities.into_iter().map(|(_, e)| e).collect(),
            ..DataDocument::default()
        }
    }

    /// The slice document for `principal` covering `resources`: the principal's stored
    /// entity and its stored ancestors, each of `resources` that is stored and its stored
    /// ancestors — what a decision of that principal about them joins, and nothing else of
    /// the tenant — with the [`SliceScope`] that says so. Which resources a user's slice may
    /// cover is [`crate::Engine::data_slice`]'s to decide; unknown uids are left out of the
    /// entities (a decision about them has no stored facts either) but stay covered.
    ///
    /// # Errors
    /// `data_depth`: a chain of parents deeper than the bundle's `max_depth` (data loaded
    /// before a bundle lowered it). Decisions on it are refused, so a slice that cut the chain
    /// would decide what the server does not.
    pub fn slice(
        &self,
        bundle: &Bundle,
        principal: &EntityRef,
        resources: &[EntityRef],
    ) -> Result<DataDocument, crate::error::RequestError> {
        let parse = |r: &EntityRef| parse_uid(&r.entity_type, &r.id).ok();
        let principal_uid = parse(principal);
        let resource_uids: Vec<EntityUid> = resources.iter().filter_map(parse).collect();
        let mut seen = HashSet::new();
        let mut found = Vec::new();
        let depth = bundle.compiled().settings.data.max_depth;
        // As a decision joins them: the principal's stored entity, then its parents counted
        // from the first level, as a resource is.
        if let Some(uid) = &principal_uid {
            seen.insert(uid);
            if let Some(stored) = self.entities.get(uid) {
                found.push(stored);
                self.ancestors_into(&stored.parents, depth, &mut seen, &mut found)?;
            }
        }
        self.ancestors_into(&resource_uids, depth, &mut seen, &mut found)?;
        let mut covered = resources.to_vec();
        covered.sort();
        covered.dedup();
        let mut document = self.snapshot_of(found.into_iter().map(|s| &**s));
        document.slice = Some(SliceScope {
            principal: principal.clone(),
            resources: covered,
        });
        Ok(document)
    }

    /// Check `writes` against the schema and this data, as one change: every entity is this
    /// tenant's, of a stored type, conforms to the schema, has parents in this tenant (or
    /// bundle-wide), and no parent cycle or chain deeper than the bundle's `max_depth` results.
    ///
    /// # Errors
    /// The first write that is refused, and why.
    pub fn check_writes(
        &self,
        bundle: &Bundle,
        writes: Vec<EntityWrite>,
    ) -> Result<Vec<CheckedWrite>, DataError> {
        let staged = self.stage(bundle, writes)?;
        Ok(staged
            .writes()
            .map(|(uid, after)| CheckedWrite {
                entity_type: uid.type_name().to_string(),
                id: uid.id().unescaped().to_owned(),
                before: self.entities.get(uid).map(|s| s.json()),
                after: after.map(Stored::json),
            })
            .collect())
    }

    /// Apply a data document: a snapshot replaces everything; changes must start at this
    /// data's revision.
    ///
    /// # Errors
    /// A document for another tenant, changes that do not start here, or an entity that is
    /// refused; nothing is applied then.
    pub fn apply(&mut self, bundle: &Bundle, document: DataDocument) -> Result<(), DataError> {
        if document.tenant != self.tenant {
            return Err(DataError::Malformed(format!(
                "a document for tenant `{}` handed to tenant `{}`'s data",
                sanitize(&document.tenant, 64),
                self.tenant
            )));
        }
        let Some(since) = document.since else {
            if !document.changes.is_empty() {
                return Err(DataError::Malformed(
                    "a snapshot (no `since`) has `changes`".into(),
                ));
            }
            let scope = match &document.slice {
                Some(slice) => Some(Arc::new(scope_of(bundle, &self.tenant, slice)?)),
                None => None,
            };
            let mut fresh = Self::new(&self.tenant);
            let writes = document.entities.into_iter().map(EntityWrite::Put);
            fresh.commit(bundle, document.revision, writes.collect())?;
            fresh.scope = scope;
            *self = fresh;
            return Ok(());
        };
        if !document.entities.is_empty() {
            return Err(DataError::Malformed(
                "changes (with `since`) have `entities`".into(),
            ));
        }
        if document.slice.is_some() || self.scope.is_some() {
            // A slice is cut for one principal and its resources: another principal's change
            // could not be told from one that belongs in it.
            return Err(DataError::Malformed(
                "changes never apply to a signed-in user's slice: fetch a new slice".into(),
            ));
        }
        let refused = |reason| DataError::Revision {
            held: self.revision,
            since,
            reason,
        };
        if since != self.revision {
            return Err(refused("the data is at another revision; fetch a snapshot"));
        }
        if document.revision < since {
            return Err(refused("the document's revision is before `since`"));
        }
        // The last change of each entity is its state at `revision`.
        let mut last: HashMap<EntityUid, usize> = HashMap::new();
        let mut uids = Vec::with_capacity(document.changes.len());
        let mut previous = since;
        for (i, change) in document.changes.iter().enumerate() {
            if change.revision <= since
                || change.revision > document.revision
                || change.revision < previous
            {
                return Err(refused("a change's revision is out of order or range"));
            }
            previous = change.revision;
            let uid = parse_uid(&change.entity_type, &change.id)?;
            last.insert(uid.clone(), i);
            uids.push(uid);
        }
        let mut writes = Vec::with_capacity(last.len());
        for (i, (change, uid)) in document.changes.into_iter().zip(uids).enumerate() {
            if last.get(&uid) != Some(&i) {
                continue;
            }
            writes.push(match change.entity {
                Some(entity) => {
                    let named = entity_uid_of(&entity);
                    if named.as_ref() != Some(&uid) {
                        return Err(DataError::Malformed(format!(
                            "the change of `{}` holds another entity",
                            sanitize(&uid.to_string(), 120)
                        )));
                    }
                    EntityWrite::Put(entity)
                }
                None => EntityWrite::Delete {
                    entity_type: change.entity_type,
                    id: change.id,
                },
            });
        }
        self.commit(bundle, document.revision, writes)
    }

    /// Check `writes` and apply them as `revision`.
    ///
    /// # Errors
    /// As [`TenantData::check_writes`]; nothing is applied then.
    pub fn commit(
        &mut self,
        bundle: &Bundle,
        revision: u64,
        writes: Vec<EntityWrite>,
    ) -> Result<(), DataError> {
        let changes = self.stage(bundle, writes)?.into_writes();
        let written: Vec<EntityUid> = changes.iter().map(|(uid, _)| uid.clone()).collect();
        for (uid, after) in changes {
            if let Some(old) = self.entities.remove(&uid) {
                for parent in &old.parents {
                    if let Some(set) = self.children.get_mut(parent) {
                        set.remove(&uid);
                        if set.is_empty() {
                            self.children.remove(parent);
                        }
                    }
                }
            }
            if let Some(new) = after {
                for parent in &new.parents {
                    self.children
                        .entry(parent.clone())
                        .or_default()
                        .insert(uid.clone());
                }
                self.entities.insert(uid, new);
            }
        }
        self.close(bundle, written);
        self.revision = revision;
        self.version = VERSIONS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Close the ancestors of the `written` entities and of their descendants, whose closure
    /// goes through them (a department moved to another division moves its reports too); a
    /// descendant of a deleted entity keeps its uid alone as an ancestor, as Cedar has it.
    /// Every other entity's closure is unchanged.
    fn close(&mut self, bundle: &Bundle, written: Vec<EntityUid>) {
        let mut affected: HashSet<EntityUid> = HashSet::new();
        let mut next = written;
        while let Some(uid) = next.pop() {
            if let Some(children) = self.children.get(&uid) {
                next.extend(children.iter().filter(|c| !affected.contains(*c)).cloned());
            }
            affected.insert(uid);
        }
        let closures: Vec<(EntityUid, HashSet<ast::EntityUID>)> = {
            let graph: HashMap<&EntityUid, &[EntityUid]> = affected
                .iter()
                .filter_map(|uid| self.entities.get_key_value(uid))
                .map(|(uid, stored)| (uid, stored.parents.as_slice()))
                .collect();
            let closed = |uid: &EntityUid| {
                self.entities
                    .get(uid)
                    .map(|s| &*s.entity)
                    .or_else(|| bundle.static_entities.get(uid).map(|e| &**e))
            };
            graph::close_ancestors(&graph, &closed)
                .into_iter()
                .map(|(uid, ancestors)| (uid.clone(), ancestors))
                .collect()
        };
        for (uid, ancestors) in closures {
            let Some(stored) = self.entities.get_mut(&uid) else {
                continue;
            };
            if stored.entity.ancestors().count() == ancestors.len()
                && stored.entity.ancestors().all(|a| ancestors.contains(a))
            {
                continue;
            }
            // A copy of this entity only when an earlier revision (or a decision) still holds it.
            let entity = Arc::make_mut(&mut Arc::make_mut(stored).entity);
            entity.remove_all_indirect_ancestors();
            for ancestor in ancestors {
                entity.add_indirect_ancestor(ancestor);
            }
        }
    }

    /// `writes` parsed, checked one by one and staged over this data, with the graph checked.
    fn stage(
        &self,
        bundle: &Bundle,
        writes: Vec<EntityWrite>,
    ) -> Result<graph::Staged<'_>, DataError> {
        let mut staged = Vec::with_capacity(writes.len());
        for write in writes {
            staged.push(match write {
                EntityWrite::Put(value) => {
                    let stored = parse_entity(bundle, &self.tenant, value)?;
                    (
                        EntityUid::from(stored.entity.uid().clone()),
                        Some(Arc::new(stored)),
                    )
                }
                EntityWrite::Delete { entity_type, id } => {
                    let uid = parse_uid(&entity_type, &id)?;
                    owned_uid(bundle, &self.tenant, &uid)?;
                    (uid, None)
                }
            });
        }
        let staged = graph::Staged::new(self, staged)?;
        staged.check(bundle.compiled().settings.data.max_depth)?;
        Ok(staged)
    }

    pub(crate) fn stored(&self, uid: &EntityUid) -> Option<&Arc<Stored>> {
        self.entities.get(uid)
    }

    /// The stored entities among `starts` and all their stored ancestors, at most `max_depth`
    /// levels up, added to `out` (skipping uids in `seen`, which gains them).
    ///
    /// On a decision's path: nothing is cloned (uids and entities are borrowed from the caller
    /// and from this data).
    ///
    /// # Errors
    /// A chain deeper than `max_depth` (writes refuse those; data loaded before a bundle
    /// lowered its `max_depth` can have them).
    pub(crate) fn ancestors_into<'a>(
        &'a self,
        starts: impl IntoIterator<Item = &'a EntityUid>,
        max_depth: usize,
        seen: &mut HashSet<&'a EntityUid>,
        out: &mut Vec<&'a Arc<Stored>>,
    ) -> Result<(), crate::error::RequestError> {
        let mut level: Vec<&EntityUid> = starts.into_iter().collect();
        let mut next = Vec::new();
        for _ in 0..=max_depth {
            for uid in level.drain(..) {
                if !seen.insert(uid) {
                    continue;
                }
                if let Some(stored) = self.entities.get(uid) {
                    out.push(stored);
                    next.extend(stored.parents.iter());
                }
            }
            if next.is_empty() {
                return Ok(());
            }
            std::mem::swap(&mut level, &mut next);
        }
        if level.iter().all(|uid| seen.contains(uid)) {
            return Ok(());
        }
        Err(crate::error::RequestError::DataDepth(max_depth))
    }
}

impl Bundle {
    /// What a decision knows about a resource of a stored type that its tenant does not store:
    /// only the tenant its id names (`Report::"globex/q3"` is globex's), as a `tenant`
    /// attribute, when the type declares one and requires no other attribute. A guardrail such
    /// as "nothing crosses tenants" then holds for resources nobody stored: an acme principal
    /// asking about `Report::"globex/q3"` is refused by it, not merely found nothing. The fact
    /// comes from the uid alone, which every stored entity of that tenant would share.
    pub(crate) fn unstored_entity(&self, uid: &EntityUid) -> Option<Entity> {
        let type_name = uid.type_name().to_string();
        if !self.stored.contains(uid.type_name()) {
            return None;
        }
        let shape = self.entity_shape(&type_name)?;
        let only_tenant_required = shape
            .attrs
            .iter()
            .all(|(name, (_, required))| name == "tenant" || !required);
        if !shape.attrs.contains_key("tenant") || !only_tenant_required {
            return None;
        }
        let id = uid.id().unescaped();
        let (tenant, rest) = id.split_once('/')?;
        if tenant.is_empty() || rest.is_empty() {
            return None;
        }
        let attrs = HashMap::from([(
            "tenant".to_owned(),
            RestrictedExpression::new_string(tenant.to_owned()),
        )]);
        Entity::new(uid.clone(), attrs, HashSet::new()).ok()
    }

    /// The action and resource a call on `tenant`'s data is authorized as
    /// (`settings.data.access`): `read` or `write` on `<resource>::"<tenant>"`, with a `tenant`
    /// attribute naming it when the type declares one (for guardrails such as "nothing crosses
    /// tenants").
    pub fn data_access(&self, tenant: &str, write: bool) -> (String, crate::ResourceRef) {
        let access = &self.compiled().settings.data.access;
        let action = if write { &access.write } else { &access.read };
        let mut resource = crate::ResourceRef::new(&access.resource, tenant);
        if self
            .entity_shape(&access.resource)
            .is_some_and(|shape| shape.attrs.contains_key("tenant"))
        {
            resource.attrs.insert(
                "tenant".into(),
                serde_json::Value::String(tenant.to_owned()),
            );
        }
        (action.clone(), resource)
    }
}

/// The scope of a slice document for `tenant`, checked: its principal and resources are
/// the tenant's (a principal's id is tenant-qualified too), and the resources of stored types.
fn scope_of(bundle: &Bundle, tenant: &str, slice: &SliceScope) -> Result<Scope, DataError> {
    if slice.resources.len() > MAX_SLICE_RESOURCES {
        return Err(DataError::Malformed(format!(
            "a slice covers at most {MAX_SLICE_RESOURCES} resources"
        )));
    }
    let owned = |r: &EntityRef| -> Result<EntityUid, DataError> {
        let uid = parse_uid(&r.entity_type, &r.id)?;
        if !in_tenant(tenant, &uid) {
            return Err(DataError::OtherTenant {
                entity: sanitize(&uid.to_string(), 120),
                tenant: tenant.to_owned(),
                reason: "a slice is cut from one tenant's data".into(),
            });
        }
        Ok(uid)
    };
    let principal = owned(&slice.principal)?;
    let mut resources = HashSet::with_capacity(slice.resources.len());
    for resource in &slice.resources {
        let uid = owned(resource)?;
        if !bundle.stored.contains(uid.type_name()) {
            return Err(DataError::Malformed(format!(
                "the slice covers `{}`, which is not of a stored type",
                sanitize(&uid.to_string(), 120)
            )));
        }
        resources.insert(uid);
    }
    Ok(Scope {
        principal,
        resources,
    })
}

/// Parse and check one entity for `tenant`.
pub(crate) fn parse_entity(
    bundle: &Bundle,
    tenant: &str,
    mut value: Value,
) -> Result<Stored, DataError> {
    let size = serde_json::to_string(&value).map_or(usize::MAX, |t| t.len());
    if size > MAX_ENTITY_BYTES {
        return Err(DataError::TooLarge {
            what: "an entity",
            size,
            max: MAX_ENTITY_BYTES,
        });
    }
    let uid = entity_uid_of(&value).ok_or_else(|| {
        DataError::Malformed("an entity needs `uid` with a `type` and an `id`".into())
    })?;
    owned_uid(bundle, tenant, &uid)?;
    let shown = || sanitize(&uid.to_string(), 120);
    // A declared `tenant` attribute is the owning tenant's name, filled in when left out.
    let type_name = uid.type_name().to_string();
    let declares_tenant = bundle
        .entity_shape(&type_name)
        .is_some_and(|shape| shape.attrs.contains_key("tenant"));
    if let Some(object) = value.as_object_mut() {
        let attrs = object
            .entry("attrs")
            .or_insert_with(|| Value::Object(Map::new()));
        if declares_tenant && let Some(attrs) = attrs.as_object_mut() {
            match attrs.get("tenant") {
                None => {
                    attrs.insert("tenant".into(), Value::String(tenant.to_owned()));
                }
                Some(Value::String(named)) if named == tenant => {}
                Some(_) => {
                    return Err(DataError::OtherTenant {
                        entity: shown(),
                        tenant: tenant.to_owned(),
                        reason: "its `tenant` attribute names another tenant".into(),
                    });
                }
            }
        }
        object
            .entry("parents")
            .or_insert_with(|| Value::Array(Vec::new()));
    }
    let entity =
        Entity::from_json_value(value, bundle.schema.as_ref()).map_err(|e| DataError::Schema {
            entity: shown(),
            reason: sanitize(&e.to_string(), 400),
        })?;
    let mut parents: Vec<EntityUid> = entity
        .as_ref()
        .parents()
        .cloned()
        .map(EntityUid::from)
        .collect();
    parents.sort_by_key(ToString::to_string);
    for parent in &parents {
        if bundle.stored.contains(parent.type_name()) && !in_tenant(tenant, parent) {
            return Err(DataError::ParentTenant {
                entity: shown(),
                parent: sanitize(&parent.to_string(), 120),
            });
        }
    }
    Ok(Stored {
        entity: Arc::new(ast::Entity::clone(entity.as_ref())),
        parents,
    })
}

/// `uid` may be stored by `tenant`: a stored type, the tenant's id prefix, not a bundle entity.
fn owned_uid(bundle: &Bundle, tenant: &str, uid: &EntityUid) -> Result<(), DataError> {
    let shown = || sanitize(&uid.to_string(), 120);
    if !bundle.stored.contains(uid.type_name()) {
        let mut stored: Vec<String> = bundle.stored.iter().map(|t| format!("`{t}`")).collect();
        stored.sort();
        return Err(DataError::NotStored {
            entity: shown(),
            entity_type: sanitize(&uid.type_name().to_string(), 80),
            stored: if stored.is_empty() {
                "none".into()
            } else {
                stored.join(", ")
            },
        });
    }
    if !in_tenant(tenant, uid) {
        return Err(DataError::OtherTenant {
            entity: shown(),
            tenant: tenant.to_owned(),
            reason: format!("a stored entity's id starts with `{tenant}/`"),
        });
    }
    if bundle.static_entities.contains_key(uid) {
        return Err(DataError::Static { entity: shown() });
    }
    Ok(())
}

/// Whether the uid's id is `<tenant>/<something>`.
pub(crate) fn in_tenant(tenant: &str, uid: &EntityUid) -> bool {
    uid.id()
        .unescaped()
        .strip_prefix(tenant)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|rest| !rest.is_empty())
}

fn parse_uid(entity_type: &str, id: &str) -> Result<EntityUid, DataError> {
    let ty = EntityTypeName::from_str(entity_type).map_err(|_| {
        DataError::Malformed(format!(
            "`{}` is not an entity type name",
            sanitize(entity_type, 80)
        ))
    })?;
    Ok(EntityUid::from_type_name_and_id(
        ty,
        cedar_policy::EntityId::new(id),
    ))
}

/// The uid an entity JSON names (`{"type", "id"}`, or Cedar's `{"__entity": …}` form).
fn entity_uid_of(value: &Value) -> Option<EntityUid> {
    let uid = value.get("uid")?;
    let uid = uid.get("__entity").unwrap_or(uid);
    parse_uid(uid.get("type")?.as_str()?, uid.get("id")?.as_str()?).ok()
}

fn entity_json(entity: &Entity) -> Value {
    // An entity parsed from JSON always writes back as JSON.
    entity.to_json_value().unwrap_or(Value::Null)
}
