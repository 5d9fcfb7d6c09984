//! Building Cedar values as typed values (not through JSON) and evaluating a request.

use crate::bundle::{AttrType, Bundle};
use crate::claims::{Principal, PrincipalKind};
use crate::decision::DecisionError;
use crate::error::{RequestError, sanitize};
use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, Request,
    RestrictedExpression, Schema,
};
use cedar_policy_core::ast;
use cedar_policy_core::entities::{self as core_entities, NoEntitiesSchema, TCComputation};
use cedar_policy_core::extensions::Extensions;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

/// Most nested levels accepted in request-supplied attribute and context values.
const MAX_VALUE_DEPTH: usize = 16;

/// Context keys the engine fills from the token; a caller may not supply them.
pub(crate) const RESERVED_CONTEXT_KEYS: [&str; 5] =
    ["mfa", "session_age", "scopes", "token_type", "client_id"];

/// A request's entity type name: the schema's parsed copy when there is one.
pub(crate) fn entity_type(bundle: &Bundle, name: &str) -> Result<EntityTypeName, RequestError> {
    if let Some(ty) = bundle.known_type(name) {
        return Ok(ty.clone());
    }
    parse_entity_type(name)
}

fn parse_entity_type(name: &str) -> Result<EntityTypeName, RequestError> {
    EntityTypeName::from_str(name).map_err(|_| RequestError::Entity {
        reference: sanitize(name, 80),
        reason: "not a valid entity type name".into(),
    })
}

pub(crate) fn uid(type_name: EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name, EntityId::new(id))
}

/// The action uid for an action name: `view` → `Action::"view"`; a full uid is taken as is.
pub(crate) fn action_uid(bundle: &Bundle, action: &str) -> Result<EntityUid, RequestError> {
    if let Some(uid) = bundle.known_action(action) {
        return Ok(uid.clone());
    }
    if action.is_empty() || action.len() > 256 {
        return Err(RequestError::Action(sanitize(action, 80)));
    }
    if action.contains("::\"") {
        return EntityUid::from_str(action).map_err(|_| RequestError::Action(sanitize(action, 80)));
    }
    Ok(uid(
        parse_entity_type("Action").map_err(|_| RequestError::Action(sanitize(action, 80)))?,
        action,
    ))
}

/// The principal's Cedar entity: attributes `tenant` plus mapped ones, roles (and groups, when
/// the schema allows) as parents.
pub(crate) fn principal_entity(
    bundle: &Bundle,
    principal: &Principal,
) -> Result<(EntityUid, Entity), String> {
    let types = &bundle.types;
    let (ty, declared) = match principal.kind {
        PrincipalKind::User => (&types.user, &types.user_attrs),
        PrincipalKind::Client => (&types.client, &types.client_attrs),
    };
    let principal_uid = uid(
        ty.clone(),
        &format!("{}/{}", principal.tenant, principal.id),
    );
    let mut attrs = HashMap::new();
    let declares = |name: &str| declared.as_ref().is_none_or(|d| d.contains_key(name));
    if declares("tenant") {
        attrs.insert(
            "tenant".to_owned(),
            RestrictedExpression::new_string(principal.tenant.clone()),
        );
    }
    for (name, value) in &principal.attributes {
        if declares(name) {
            attrs.insert(
                name.clone(),
                value_to_expr(value, 0).map_err(|e| e.to_string())?,
            );
        }
    }
    let mut parents: HashSet<EntityUid> = principal
        .roles
        .iter()
        .map(|r| uid(types.role.clone(), r))
        .collect();
    if let Some(group) = &types.group
        && principal.kind == PrincipalKind::User
    {
        parents.extend(principal.groups.iter().map(|g| uid(group.clone(), g)));
    }
    let entity = Entity::new(principal_uid.clone(), attrs, parents).map_err(|e| e.to_string())?;
    Ok((principal_uid, entity))
}

/// Whether the entity [`principal_entity`] builds conforms to the schema. Its attributes are
/// declared ones of checked types by construction (claim mapping), so what is left is: the type
/// is declared, required attributes are present, and roles (and groups) are allowed parents.
pub(crate) fn principal_conforms(bundle: &Bundle, principal: &Principal) -> Result<(), String> {
    if !bundle.has_schema() {
        return Ok(());
    }
    let types = &bundle.types;
    let ty = match principal.kind {
        PrincipalKind::User => &types.user,
        PrincipalKind::Client => &types.client,
    }
    .to_string();
    let shape = bundle
        .entity_shape(&ty)
        .ok_or_else(|| format!("entity type `{ty}` is not declared in the schema"))?;
    if let Some((missing, _)) = shape.attrs.iter().find(|(name, (_, required))| {
        *required && name.as_str() != "tenant" && !principal.attributes.contains_key(*name)
    }) {
        return Err(format!(
            "entity type `{ty}`: required attribute `{missing}` is missing"
        ));
    }
    if shape
        .attrs
        .get("tenant")
        .is_some_and(|(t, _)| *t != AttrType::String)
    {
        return Err(format!(
            "entity type `{ty}`: attribute `tenant` must be a String"
        ));
    }
    if !principal.roles.is_empty() && !shape.member_of.contains(&types.role.to_string()) {
        return Err(format!(
            "entity type `{ty}` cannot be a member of `{}`",
            types.role
        ));
    }
    Ok(())
}

/// The keys of [`token_context`] for this principal, with their types.
pub(crate) fn token_context_keys(principal: &Principal) -> Vec<(&'static str, AttrType)> {
    let mut keys = vec![
        ("mfa", AttrType::Bool),
        ("scopes", AttrType::StringSet),
        ("token_type", AttrType::String),
    ];
    if principal.auth_time.is_some() {
        keys.push(("session_age", AttrType::Long));
    }
    if principal.client_id.is_some() {
        keys.push(("client_id", AttrType::String));
    }
    keys
}

/// Seconds since the principal signed in (`auth_time`), the only part of a token request's
/// evaluation that depends on the time.
pub(crate) fn session_age(principal: &Principal, now: i64) -> Option<i64> {
    principal
        .auth_time
        .map(|auth_time| now.saturating_sub(auth_time).max(0))
}

/// The engine's part of the context, from the token.
pub(crate) fn token_context(
    principal: &Principal,
    now: i64,
) -> Vec<(String, RestrictedExpression)> {
    let mut pairs = Vec::with_capacity(5);
    pairs.push((
        "mfa".to_owned(),
        RestrictedExpression::new_bool(principal.mfa),
    ));
    if let Some(age) = session_age(principal, now) {
        pairs.push((
            "session_age".to_owned(),
            RestrictedExpression::new_long(age),
        ));
    }
    pairs.push((
        "scopes".to_owned(),
        RestrictedExpression::new_set(
            principal
                .scopes
                .iter()
                .map(|s| RestrictedExpression::new_string(s.clone())),
        ),
    ));
    pairs.push((
        "token_type".to_owned(),
        RestrictedExpression::new_string(principal.kind.as_str().to_owned()),
    ));
    if let Some(client_id) = &principal.client_id {
        pairs.push((
            "client_id".to_owned(),
            RestrictedExpression::new_string(client_id.clone()),
        ));
    }
    pairs
}

/// A request-supplied JSON value as a Cedar value. Entity references use `{"__entity": {...}}`
/// and extension values `{"__extn": {"fn": "ip", "arg": "10.0.0.1"}}`, as in Cedar's JSON.
pub(crate) fn value_to_expr(
    value: &Value,
    depth: usize,
) -> Result<RestrictedExpression, RequestError> {
    let bad = |why: &str| RequestError::Context(why.to_owned());
    if depth > MAX_VALUE_DEPTH {
        return Err(bad("value nested too deeply"));
    }
    Ok(match value {
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => RestrictedExpression::new_long(
            n.as_i64().ok_or_else(|| bad("numbers must be integers"))?,
        ),
        Value::Array(items) => RestrictedExpression::new_set(
            items
                .iter()
                .map(|v| value_to_expr(v, depth + 1))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Value::Null => return Err(bad("null is not a Cedar value")),
        Value::Object(map) => {
            if let (Some(entity), 1) = (map.get("__entity"), map.len()) {
                let ty = entity
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("`__entity` needs a `type`"))?;
                let id = entity
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("`__entity` needs an `id`"))?;
                RestrictedExpression::new_entity_uid(uid(parse_entity_type(ty)?, id))
            } else if let (Some(extn), 1) = (map.get("__extn"), map.len()) {
                let func = extn
                    .get("fn")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("`__extn` needs `fn`"))?;
                let arg = extn
                    .get("arg")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("`__extn` needs a string `arg`"))?;
                if !func.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(bad("`__extn` function name is invalid"));
                }
                let source = format!("{func}({})", Value::String(arg.to_owned()));
                RestrictedExpression::from_str(&source).map_err(|e| bad(&e.to_string()))?
            } else {
                RestrictedExpression::new_record(
                    map.iter()
                        .map(|(k, v)| Ok((k.clone(), value_to_expr(v, depth + 1)?)))
                        .collect::<Result<Vec<_>, RequestError>>()?,
                )
                .map_err(|e| bad(&e.to_string()))?
            }
        }
    })
}

/// The resource entity from its reference and request-supplied attributes.
pub(crate) fn entity_from_attrs(
    resource_uid: &EntityUid,
    attrs: &Map<String, Value>,
) -> Result<Entity, RequestError> {
    let attrs = attrs
        .iter()
        .map(|(k, v)| Ok((k.clone(), value_to_expr(v, 0)?)))
        .collect::<Result<HashMap<_, _>, RequestError>>()
        .map_err(|e| RequestError::Entity {
            reference: resource_uid.to_string(),
            reason: e.to_string(),
        })?;
    Entity::new(resource_uid.clone(), attrs, HashSet::new()).map_err(|e| RequestError::Entity {
        reference: resource_uid.to_string(),
        reason: e.to_string(),
    })
}

/// Check request-supplied resource attributes against the schema's declaration of the type:
/// declared names only, required ones present, simple types matching. `Ok(false)` means the
/// type uses attribute types this check does not cover, and Cedar's own validation must run.
///
/// # Errors
/// An attribute the schema does not declare, a missing required one, or a wrong type.
pub(crate) fn resource_attrs_conform(
    bundle: &Bundle,
    type_name: &str,
    attrs: &Map<String, Value>,
) -> Result<bool, RequestError> {
    if !bundle.has_schema() {
        return Ok(true);
    }
    // The same error as Cedar's own schema check on the slow path.
    let bad = |reason: String| {
        RequestError::Schema(format!(
            "entity type `{}`: {reason}",
            sanitize(type_name, 80)
        ))
    };
    let Some(shape) = bundle.entity_shape(type_name) else {
        return Err(bad("the schema declares no such entity type".into()));
    };
    for (name, value) in attrs {
        let Some((ty, _)) = shape.attrs.get(name) else {
            return Err(bad(format!(
                "attribute `{}` is not declared in the schema",
                sanitize(name, 40)
            )));
        };
        let fits = match ty {
            AttrType::String => value.is_string(),
            AttrType::Long => value.is_i64(),
            AttrType::Bool => value.is_boolean(),
            AttrType::StringSet => value
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string)),
            AttrType::Other => return Ok(false),
        };
        if !fits {
            return Err(bad(format!(
                "attribute `{}` has the wrong type",
                sanitize(name, 40)
            )));
        }
    }
    if let Some((missing, _)) = shape
        .attrs
        .iter()
        .find(|(name, (_, required))| *required && !attrs.contains_key(*name))
    {
        return Err(bad(format!("required attribute `{missing}` is missing")));
    }
    Ok(true)
}

/// A Cedar entity that decisions share rather than copy: a stored entity, a bundle-wide one,
/// an action. Its ancestors are closed (every ancestor, not only its parents), which is what
/// lets a decision's store take it as it is (see [`decision_entities`]).
pub(crate) type SharedEntity = Arc<ast::Entity>;

/// A shared entity as a plain Cedar entity (a copy), for the paths that take those: JSON, the
/// schema-checked store of [`Entities::from_entities`].
pub(crate) fn unshared(entity: &SharedEntity) -> Entity {
    Entity::from(ast::Entity::clone(entity))
}

/// The entity store of one decision: `shared` entities, each with its ancestors closed
/// already, taken by reference count (never copied, whatever data they come from: a decision
/// over a large tenant touches only what it reads); then `owned` ones, built for this request
/// (the principal, a resource from its attributes), whose ancestors Cedar closes over the
/// shared ones, refusing a cycle through them. No schema pass: every entity is known to
/// conform (see the callers).
pub(crate) fn decision_entities(
    shared: Vec<SharedEntity>,
    owned: Vec<ast::Entity>,
) -> Result<Entities, RequestError> {
    let extensions = Extensions::all_available();
    let schema: Option<&NoEntitiesSchema> = None;
    let refused = |e: core_entities::err::EntitiesError| RequestError::Schema(e.to_string());
    let store = core_entities::Entities::new()
        .add_entities(
            shared,
            schema,
            TCComputation::AssumeAlreadyComputed,
            extensions,
        )
        .map_err(refused)?;
    store
        .add_entities(
            owned.into_iter().map(Arc::new),
            schema,
            TCComputation::ComputeNow,
            extensions,
        )
        .map(Entities::from)
        .map_err(refused)
}

/// The result of evaluating one request.
#[derive(Clone, Debug)]
pub(crate) struct Evaluation {
    pub allowed: bool,
    pub reasons: Vec<String>,
    pub errors: Vec<DecisionError>,
}

/// Evaluate a request against `policies`, validating it against `schema` when one is given
/// (callers pass none when they have established that validation would pass).
pub(crate) fn evaluate(
    schema: Option<&Schema>,
    policies: &PolicySet,
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    context: Vec<(String, RestrictedExpression)>,
    entities: &Entities,
) -> Result<Evaluation, RequestError> {
    let context = Context::from_pairs(context).map_err(|e| RequestError::Context(e.to_string()))?;
    let request = Request::new(principal, action, resource, context, schema)
        .map_err(|e| RequestError::Schema(e.to_string()))?;
    let response = Authorizer::new().is_authorized(&request, policies, entities);
    let diagnostics = response.diagnostics();
    Ok(Evaluation {
        allowed: response.decision() == cedar_policy::Decision::Allow,
        // The ids as written (`Display` would escape them, and costs a formatter per reason).
        reasons: diagnostics
            .reason()
            .map(|id| AsRef::<str>::as_ref(id).to_owned())
            .collect(),
        errors: diagnostics
            .errors()
            .map(|err| {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = err;
                // Evaluation errors can quote request values: bounded like every message.
                let mut error = DecisionError::from(crate::error::ErrorInfo {
                    code: "policy_evaluation",
                    message: e.to_string(),
                    help: None,
                });
                error.policy = Some(AsRef::<str>::as_ref(e.policy_id()).to_owned());
                error
            })
            .collect(),
    })
}
