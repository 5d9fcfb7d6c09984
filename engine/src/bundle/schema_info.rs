//! What the engine needs to know about the schema to build principals that conform to it:
//! which entity types exist and which attributes (of which simple type) the principal types
//! declare. Read from the schema's JSON form once, at load.

use std::collections::{BTreeMap, BTreeSet};

/// The simple attribute types the engine can fill from token claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttrType {
    String,
    Long,
    Bool,
    StringSet,
    /// Anything else (records, entities, extension types): not fillable from claims.
    Other,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct EntityShape {
    /// Declared attributes: name → (type, required).
    pub attrs: BTreeMap<String, (AttrType, bool)>,
    /// Types this entity type may be a member of (full names).
    pub member_of: BTreeSet<String>,
}

/// What the schema says an action applies to.
#[derive(Clone, Debug, Default)]
pub(crate) struct ActionShape {
    /// Full names of the principal types.
    pub principals: BTreeSet<String>,
    /// Full names of the resource types.
    pub resources: BTreeSet<String>,
    /// The context record's attributes: name → (type, required). `None` when the context type
    /// is not a plain record this summary can describe.
    pub context: Option<BTreeMap<String, (AttrType, bool)>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct SchemaInfo {
    /// Entity types by full name.
    pub entity_types: BTreeMap<String, EntityShape>,
    /// Actions by (action entity type's full name, action id).
    pub actions: BTreeMap<(String, String), ActionShape>,
}

impl SchemaInfo {
    pub fn from_json(json: &serde_json::Value) -> Self {
        let mut info = Self::default();
        let Some(namespaces) = json.as_object() else {
            return info;
        };
        for (namespace, body) in namespaces {
            let common = body
                .get("commonTypes")
                .and_then(serde_json::Value::as_object);
            let Some(types) = body
                .get("entityTypes")
                .and_then(serde_json::Value::as_object)
            else {
                continue;
            };
            for (name, def) in types {
                let full = qualify(namespace, name);
                let mut shape = EntityShape::default();
                if let Some(parents) = def
                    .get("memberOfTypes")
                    .and_then(serde_json::Value::as_array)
                {
                    for parent in parents.iter().filter_map(serde_json::Value::as_str) {
                        shape.member_of.insert(if parent.contains("::") {
                            parent.to_owned()
                        } else {
                            qualify(namespace, parent)
                        });
                    }
                }
                let attrs = def
                    .get("shape")
                    .map(|s| resolve_common(s, common))
                    .and_then(|s| s.get("attributes"))
                    .and_then(serde_json::Value::as_object);
                if let Some(attrs) = attrs {
                    for (attr, ty) in attrs {
                        let required = ty
                            .get("required")
                            .and_then(serde_json::Value::as_bool)
                            .unwrap_or(true);
                        shape
                            .attrs
                            .insert(attr.clone(), (attr_type(ty, common), required));
                    }
                }
                info.entity_types.insert(full, shape);
            }
            let Some(actions) = body.get("actions").and_then(serde_json::Value::as_object) else {
                continue;
            };
            for (id, def) in actions {
                let applies = def.get("appliesTo");
                let names = |field: &str| -> BTreeSet<String> {
                    applies
                        .and_then(|a| a.get(field))
                        .and_then(serde_json::Value::as_array)
                        .map(|list| {
                            list.iter()
                                .filter_map(serde_json::Value::as_str)
                                .map(|n| {
                                    if n.contains("::") {
                                        n.to_owned()
                                    } else {
                                        qualify(namespace, n)
                                    }
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let context = match applies.and_then(|a| a.get("context")) {
                    None => Some(BTreeMap::new()),
                    Some(ty) => record_attrs(resolve_common(ty, common), common),
                };
                let shape = ActionShape {
                    principals: names("principalTypes"),
                    resources: names("resourceTypes"),
                    context,
                };
                info.actions
                    .insert((qualify(namespace, "Action"), id.clone()), shape);
            }
        }
        info
    }

    pub fn shape(&self, name: &str) -> Option<&EntityShape> {
        self.entity_types.get(name)
    }
}

fn qualify(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}::{name}")
    }
}

fn type_name(ty: &serde_json::Value) -> Option<&str> {
    let tag = ty.get("type")?.as_str()?;
    if tag == "EntityOrCommon" {
        ty.get("name")?.as_str()
    } else {
        Some(tag)
    }
}

fn resolve_common<'a>(
    ty: &'a serde_json::Value,
    common: Option<&'a serde_json::Map<String, serde_json::Value>>,
) -> &'a serde_json::Value {
    match (type_name(ty), common) {
        (Some(name), Some(common)) => common.get(name).unwrap_or(ty),
        _ => ty,
    }
}

/// The attributes of a record type, unless it is open (`additionalAttributes`) or not a record.
fn record_attrs(
    ty: &serde_json::Value,
    common: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Option<BTreeMap<String, (AttrType, bool)>> {
    if type_name(ty) != Some("Record")
        || ty
            .get("additionalAttributes")
            .and_then(serde_json::Value::as_bool)
            == Some(true)
    {
        return None;
    }
    let attrs = ty
        .get("attributes")
        .and_then(serde_json::Value::as_object)?;
    Some(
        attrs
            .iter()
            .map(|(name, attr)| {
                let required = attr
                    .get("required")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(true);
                (name.clone(), (attr_type(attr, common), required))
            })
            .collect(),
    )
}

fn attr_type(
    ty: &serde_json::Value,
    common: Option<&serde_json::Map<String, serde_json::Value>>,
) -> AttrType {
    let ty = resolve_common(ty, common);
    match type_name(ty).map(|n| n.trim_start_matches("__cedar::")) {
        Some("String") => AttrType::String,
        Some("Long") => AttrType::Long,
        Some("Boolean" | "Bool") => AttrType::Bool,
        Some("Set") => match ty.get("element").map(|e| attr_type(e, common)) {
            Some(AttrType::String) => AttrType::StringSet,
            _ => AttrType::Other,
        },
        _ => AttrType::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_attributes_and_parents() {
        let json = json!({"": {
            "commonTypes": {"Dept": {"type": "String"}},
            "entityTypes": {
                "User": {"memberOfTypes": ["Role"], "shape": {"type": "Record", "attributes": {
                    "tenant": {"type": "String"},
                    "department": {"type": "EntityOrCommon", "name": "Dept", "required": false},
                    "level": {"type": "Long"},
                    "tags": {"type": "Set", "element": {"type": "String"}},
                }}},
                "Role": {},
            },
            "actions": {}
        }});
        let info = SchemaInfo::from_json(&json);
        let user = info.shape("User").unwrap();
        assert_eq!(user.attrs["tenant"], (AttrType::String, true));
        assert_eq!(user.attrs["department"], (AttrType::String, false));
        assert_eq!(user.attrs["level"].0, AttrType::Long);
        assert_eq!(user.attrs["tags"].0, AttrType::StringSet);
        assert!(user.member_of.contains("Role"));
        assert!(info.shape("Role").is_some());
        let json = json!({"": {
            "commonTypes": {"Session": {"type": "Record", "attributes": {"mfa": {"type": "Boolean"}, "age": {"type": "Long", "required": false}}}},
            "entityTypes": {"User": {}, "Doc": {}},
            "actions": {
                "read": {"appliesTo": {"principalTypes": ["User"], "resourceTypes": ["Doc"], "context": {"type": "EntityOrCommon", "name": "Session"}}},
                "list": {"appliesTo": {"principalTypes": ["User"], "resourceTypes": ["Doc"]}},
            }
        }});
        let info = SchemaInfo::from_json(&json);
        let read = &info.actions[&("Action".to_owned(), "read".to_owned())];
        assert!(read.principals.contains("User") && read.resources.contains("Doc"));
        let context = read.context.as_ref().unwrap();
        assert_eq!(context["mfa"], (AttrType::Bool, true));
        assert_eq!(context["age"], (AttrType::Long, false));
        assert!(
            info.actions[&("Action".to_owned(), "list".to_owned())]
                .context
                .as_ref()
                .unwrap()
                .is_empty()
        );
    }
}
