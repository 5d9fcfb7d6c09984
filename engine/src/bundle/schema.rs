//! The bundle's Cedar schema, parsed (human syntax or JSON), and the principal entity types
//! resolved against it. What the engine reads from the schema is in `schema_info`.

use super::{AttrType, EntityTypes, SchemaInfo, diagnostic_offset};
use crate::error::{BundleProblem, SourceLocation, sanitize};
use cedar_policy::{EntityTypeName, Schema};
use miette::Diagnostic;
use std::collections::BTreeMap;
use std::str::FromStr;

/// Entity type names, parsed, and what the schema says about them.
#[derive(Debug)]
pub(crate) struct PrincipalTypes {
    pub user: EntityTypeName,
    pub client: EntityTypeName,
    pub role: EntityTypeName,
    /// Groups become parents only when the schema allows it (or there is no schema).
    pub group: Option<EntityTypeName>,
    /// Declared attributes; `None` without a schema (then every mapped attribute is used).
    pub user_attrs: Option<BTreeMap<String, (AttrType, bool)>>,
    pub client_attrs: Option<BTreeMap<String, (AttrType, bool)>>,
}

pub(super) fn parse_schema(text: &str, file: &str) -> Result<(Schema, SchemaInfo), BundleProblem> {
    let json = if text.trim_start().starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            BundleProblem::new("schema", e.to_string()).at(SourceLocation {
                file: file.to_owned(),
                line: Some(e.line()),
                column: Some(e.column()),
            })
        })?;
        value
    } else {
        let (fragment, _warnings) = cedar_policy::SchemaFragment::from_cedarschema_str(text)
            .map_err(|err| {
                let location = diagnostic_offset(&err).map_or_else(
                    || SourceLocation::file(file),
                    |o| SourceLocation::at_offset(file, text, o),
                );
                let mut problem = BundleProblem::new("schema", err.to_string()).at(location);
                if let Some(help) = err.help() {
                    problem = problem.help(help.to_string());
                }
                problem
            })?;
        fragment
            .to_json_value()
            .map_err(|e| BundleProblem::new("schema", e.to_string()))?
    };
    let schema = Schema::from_json_value(json.clone()).map_err(|err| {
        // The JSON form has no positions: a schema written in Cedar's syntax is parsed again
        // from its text, whose errors point into it.
        let located = (!text.trim_start().starts_with('{'))
            .then(|| Schema::from_cedarschema_str(text).err())
            .flatten();
        let location = located
            .as_ref()
            .and_then(|e| diagnostic_offset(e))
            .map_or_else(
                || SourceLocation::file(file),
                |o| SourceLocation::at_offset(file, text, o),
            );
        let mut problem = BundleProblem::new("schema", err.to_string()).at(location);
        match unresolved_suggestion(&err.to_string(), &json) {
            Some(hint) => problem = problem.help(hint),
            None => {
                if let Some(help) = err.help() {
                    problem = problem.help(help.to_string());
                }
            }
        }
        problem
    })?;
    Ok((schema, SchemaInfo::from_json(&json)))
}

/// Cedar's built-in type names, for "did you mean" on an unresolved type.
const BUILTIN_TYPES: [&str; 11] = [
    "String", "Long", "Bool", "Boolean", "Set", "Record", "Entity", "ipaddr", "decimal",
    "datetime", "duration",
];

/// "did you mean `String`?" for `failed to resolve type: Strng`: the closest built-in type or
/// type the schema declares (entity and common types, in any namespace).
fn unresolved_suggestion(message: &str, json: &serde_json::Value) -> Option<String> {
    let names = message.strip_prefix("failed to resolve type")?;
    let name = names.split_once(": ")?.1.split(", ").next()?.trim();
    let short = name.rsplit("::").next().unwrap_or(name);
    let mut declared: Vec<&str> = Vec::new();
    for namespace in json.as_object().into_iter().flat_map(|n| n.values()) {
        for kind in ["entityTypes", "commonTypes"] {
            if let Some(types) = namespace.get(kind).and_then(serde_json::Value::as_object) {
                declared.extend(types.keys().map(String::as_str));
            }
        }
    }
    let candidates = BUILTIN_TYPES.iter().copied().chain(declared);
    crate::error::did_you_mean(short, candidates).map(|s| format!("did you mean `{s}`?"))
}

pub(super) fn resolve_types(
    types: &EntityTypes,
    info: Option<&SchemaInfo>,
    problems: &mut Vec<BundleProblem>,
) -> PrincipalTypes {
    let mut parse = |name: &str, what: &str| match EntityTypeName::from_str(name) {
        Ok(ty) => ty,
        Err(_) => {
            problems.push(BundleProblem::new(
                "settings",
                format!("invalid {what} entity type name `{}`", sanitize(name, 64)),
            ));
            EntityTypeName::from_str("Invalid").unwrap_or_else(|_| unreachable_type())
        }
    };
    let user = parse(&types.user, "user");
    let client = parse(&types.client, "client");
    let role = parse(&types.role, "role");
    let group_ty = parse(&types.group, "group");
    let attrs =
        |name: &str| info.map(|i| i.shape(name).map(|s| s.attrs.clone()).unwrap_or_default());
    let group = match info {
        None => Some(group_ty),
        Some(info) => info
            .shape(&types.user)
            .is_some_and(|s| s.member_of.contains(&types.group))
            .then_some(group_ty),
    };
    PrincipalTypes {
        user_attrs: attrs(&types.user),
        client_attrs: attrs(&types.client),
        user,
        client,
        role,
        group,
    }
}

// A fixed, valid name used only to keep going after an error has been recorded.
fn unreachable_type() -> EntityTypeName {
    #[allow(clippy::expect_used)]
    EntityTypeName::from_str("Portcullis").expect("a valid literal type name")
}
