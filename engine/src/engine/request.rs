//! What a caller asks the engine: the request types of token mode and trusted-principal mode.

use serde::Deserialize;
use serde_json::{Map, Value};

/// A resource reference with optional attributes, as in `{"type": "Report", "id": "q3", "attrs": {...}}`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRef {
    /// Entity type (`Report`).
    #[serde(rename = "type")]
    pub entity_type: String,
    /// Entity id.
    pub id: String,
    /// Attributes, in Cedar JSON value form.
    #[serde(default)]
    pub attrs: Map<String, Value>,
}

impl ResourceRef {
    /// A resource with no attributes.
    pub fn new(entity_type: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            entity_type: entity_type.into(),
            id: id.into(),
            attrs: Map::new(),
        }
    }

    /// `Type::"id"`, as Cedar writes it ([`crate::entity_uid_text`]).
    pub fn display(&self) -> String {
        crate::wire::entity_uid_text(&self.entity_type, &self.id)
    }
}

/// A decision request with a token (the HTTP body of `POST /v1/decide`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// The bearer token (JWT), without `Bearer `.
    #[serde(default)]
    pub token: Option<String>,
    /// The action id (`view`).
    pub action: String,
    /// The resource.
    pub resource: ResourceRef,
    /// Extra context; the engine adds `mfa`, `session_age`, `scopes`, `token_type`, `client_id`.
    #[serde(default)]
    pub context: Map<String, Value>,
}

/// A decision request for an already-authenticated principal (trusted-principal mode).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedRequest {
    /// The principal. Its `attrs`, if any, make its entity (without parents); an entity with
    /// parents goes in `entities`.
    pub principal: ResourceRef,
    /// The action id.
    pub action: String,
    /// The resource. Its `attrs`, if any, make its entity, as in token mode.
    pub resource: ResourceRef,
    /// Context, as is.
    #[serde(default)]
    pub context: Map<String, Value>,
    /// Extra entities (Cedar entity JSON array), added to the bundle's static entities.
    #[serde(default)]
    pub entities: Option<Value>,
    /// Evaluate the shared policies plus this tenant's.
    #[serde(default)]
    pub tenant: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_display_quotes_and_escapes_the_id() {
        let r = ResourceRef::new("Report", "acme/q\"3\n");
        assert_eq!(r.display(), r#"Report::"acme/q\"3\n""#);
        // Cedar's text of the uid, whatever the id, and it reads back.
        for id in [
            "",
            "q3",
            "a\\b",
            "\u{0}\u{1f}\u{7f}",
            "é/日本/😀",
            "\"\"",
            "tab\there",
        ] {
            let r = ResourceRef::new("Ns::Report", id);
            let cedar = cedar_policy::EntityUid::from_type_name_and_id(
                "Ns::Report".parse().unwrap(),
                cedar_policy::EntityId::new(id),
            );
            assert_eq!(r.display(), cedar.to_string(), "{id:?}");
            assert_eq!(
                crate::parse_entity_uid_text(&r.display()),
                Some(("Ns::Report".to_owned(), id.to_owned()))
            );
        }
    }
}
