//! The distributable form of a bundle for one tenant: what a browser of that tenant may hold.
//!
//! A bundle names every client organisation, its issuers, its `match` claims (an Auth0
//! `org_id`, a Google `hd`), its display name and its own policies. A browser needs only its
//! own tenant's: the schema, the shared policies and that tenant's, its issuers, the routes
//! and settings, and the static entities that belong to no other tenant. The slice is a
//! bundle of its own, with its own revision, that decides exactly as the whole bundle does for
//! that tenant's principals.

use super::CompiledBundle;

impl CompiledBundle {
    /// The part of this bundle one tenant's clients may hold, or `None` for an unknown tenant.
    /// Its revision is its own; the signatures of the whole bundle do not cover it (and are not
    /// carried over).
    pub fn for_tenant(&self, tenant: &str) -> Option<CompiledBundle> {
        let config = self.tenants.get(tenant)?;
        let others: Vec<&str> = self
            .tenants
            .keys()
            .map(String::as_str)
            .filter(|t| *t != tenant)
            .collect();
        let mut slice = self.clone();
        slice.signatures.clear();
        slice.revision.clear();
        slice.tenants = [(tenant.to_owned(), config.clone())].into_iter().collect();
        slice
            .policies
            .retain(|p| p.tenant.as_deref().is_none_or(|t| t == tenant));
        if let serde_json::Value::Array(entities) = &mut slice.entities {
            entities.retain(|entity| !belongs_to_another(entity, &others));
        }
        Some(slice.seal())
    }
}

/// Whether a static entity is another tenant's: its id is `<other>/…` or its `tenant`
/// attribute names another tenant.
fn belongs_to_another(entity: &serde_json::Value, others: &[&str]) -> bool {
    let id = entity
        .get("uid")
        .and_then(|uid| uid.get("id").or_else(|| uid.get("__entity")?.get("id")))
        .and_then(serde_json::Value::as_str);
    let tenant_attr = entity
        .get("attrs")
        .and_then(|a| a.get("tenant"))
        .and_then(serde_json::Value::as_str);
    others.iter().any(|other| {
        tenant_attr == Some(*other)
            || id.is_some_and(|id| {
                id.strip_prefix(*other)
                    .is_some_and(|rest| rest.starts_with('/'))
            })
    })
}

#[cfg(test)]
mod tests {
    use crate::bundle::{Bundle, CompiledBundle, PolicySource, Settings, TenantConfig};
    use serde_json::json;

    #[test]
    fn a_tenant_slice_holds_nothing_of_other_tenants() {
        let policy = |file: &str, tenant: Option<&str>| PolicySource {
            file: file.into(),
            tenant: tenant.map(str::to_owned),
            source: format!("@id(\"{file}\") permit(principal, action, resource);"),
        };
        let mut bundle = CompiledBundle::new(
            Settings::default(),
            None,
            vec![
                policy("shared", None),
                policy("acme-only", Some("acme")),
                policy("globex-only", Some("globex")),
            ],
        );
        for (name, display) in [("acme", "Acme Corp"), ("globex", "Globex Secret Project")] {
            bundle.tenants.insert(
                name.into(),
                TenantConfig {
                    display_name: Some(display.into()),
                    issuers: Vec::new(),
                },
            );
        }
        bundle.entities = json!([
            {"uid": {"type": "Role", "id": "FinanceAnalyst"}, "attrs": {}, "parents": []},
            {"uid": {"type": "Team", "id": "acme/risk"}, "attrs": {}, "parents": []},
            {"uid": {"type": "Team", "id": "globex/risk"}, "attrs": {}, "parents": []},
            {"uid": {"type": "Folder", "id": "f1"}, "attrs": {"tenant": "globex"}, "parents": []},
        ]);
        let bundle = bundle.seal();
        let slice = bundle.for_tenant("acme").unwrap();
        let text = slice.to_json();
        assert!(!text.contains("globex"), "{text}");
        assert!(text.contains("acme-only") && text.contains("shared"));
        assert!(text.contains("FinanceAnalyst") && text.contains("acme/risk"));
        assert_ne!(slice.revision, bundle.revision);
        assert_eq!(Bundle::load(slice).unwrap().policy_count(), 2);
        assert!(bundle.for_tenant("initech").is_none());
    }
}
