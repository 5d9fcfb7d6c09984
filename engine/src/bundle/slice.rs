//! Policy slices: the policies whose scope can match a request's principal type, action and
//! resource type.
//!
//! Cedar evaluates every policy of a set; most of a bundle's policies name another action or
//! another principal type in their scope and can never apply. A policy whose scope cannot
//! match is never satisfied and never errors (the scope is equality and type tests, evaluated
//! before the condition), so leaving it out changes neither the decision, nor the reasons,
//! nor the errors. Slices are computed on first use and cached, bounded.

use cedar_policy::{
    ActionConstraint, EntityTypeName, EntityUid, Policy, PolicySet, PrincipalConstraint,
    ResourceConstraint,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// Most slices kept before the cache starts over (a slice is a few policy references).
const MAX_SLICES: usize = 65_536;

/// What a slice is for.
pub(crate) struct SliceKey<'a> {
    pub tenant: Option<&'a str>,
    pub principal: &'a EntityTypeName,
    pub action: &'a EntityUid,
    pub resource: &'a EntityTypeName,
}

impl SliceKey<'_> {
    /// The key as the cache holds it: clones of Cedar's shared names, no formatting (this runs
    /// on every decision).
    fn owned(&self) -> CacheKey {
        CacheKey {
            tenant: self.tenant.map(Box::from),
            principal: self.principal.clone(),
            action: self.action.clone(),
            resource: self.resource.clone(),
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CacheKey {
    tenant: Option<Box<str>>,
    principal: EntityTypeName,
    action: EntityUid,
    resource: EntityTypeName,
}

/// The slice cache of one bundle.
#[derive(Debug, Default)]
pub(crate) struct Slices {
    cache: RwLock<HashMap<CacheKey, Arc<PolicySet>>>,
}

impl Slices {
    /// The slice of `set` for `key`; `action_ancestors` are the action groups the action is in.
    pub fn get(
        &self,
        set: &PolicySet,
        key: &SliceKey<'_>,
        action_ancestors: Option<&HashSet<EntityUid>>,
    ) -> Arc<PolicySet> {
        let cache_key = key.owned();
        if let Some(slice) = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&cache_key)
        {
            return Arc::clone(slice);
        }
        let mut slice = PolicySet::new();
        for policy in set.policies() {
            if could_apply(policy, key, action_ancestors) {
                // Ids are unique within `set`, so adding cannot fail.
                let _ = slice.add(policy.clone());
            }
        }
        let slice = Arc::new(slice);
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= MAX_SLICES {
            cache.clear();
        }
        cache.insert(cache_key, Arc::clone(&slice));
        slice
    }
}

/// Whether `policy`'s scope can match. Conservative: `true` whenever it cannot be ruled out
/// from types and the action alone.
fn could_apply(
    policy: &Policy,
    key: &SliceKey<'_>,
    action_ancestors: Option<&HashSet<EntityUid>>,
) -> bool {
    let principal = match policy.principal_constraint() {
        PrincipalConstraint::Any | PrincipalConstraint::In(_) => true,
        PrincipalConstraint::Eq(uid) => uid.type_name() == key.principal,
        PrincipalConstraint::Is(ty) | PrincipalConstraint::IsIn(ty, _) => &ty == key.principal,
    };
    let resource = match policy.resource_constraint() {
        ResourceConstraint::Any | ResourceConstraint::In(_) => true,
        ResourceConstraint::Eq(uid) => uid.type_name() == key.resource,
        ResourceConstraint::Is(ty) | ResourceConstraint::IsIn(ty, _) => &ty == key.resource,
    };
    let action = match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => &uid == key.action,
        ActionConstraint::In(groups) => groups.iter().any(|group| {
            group == key.action
                // Without the schema's action hierarchy, an `in` cannot be ruled out.
                || action_ancestors.is_none_or(|ancestors| ancestors.contains(group))
        }),
    };
    principal && resource && action
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn slices_keep_only_policies_whose_scope_can_match() {
        let set = PolicySet::from_str(
            r#"
            permit(principal is User, action == Action::"view", resource is Report);
            permit(principal is Client, action == Action::"view", resource is Report);
            permit(principal, action in [Action::"export", Action::"write"], resource);
            permit(principal == User::"a", action in [Action::"readers"], resource == Report::"r");
            forbid(principal in Role::"x", action, resource);
            "#,
        )
        .unwrap();
        let user = EntityTypeName::from_str("User").unwrap();
        let report = EntityTypeName::from_str("Report").unwrap();
        let view = EntityUid::from_str(r#"Action::"view""#).unwrap();
        let readers: HashSet<EntityUid> =
            [EntityUid::from_str(r#"Action::"readers""#).unwrap()].into();
        let key = SliceKey {
            tenant: None,
            principal: &user,
            action: &view,
            resource: &report,
        };
        let ids = |slice: &PolicySet| {
            let mut ids: Vec<String> = slice.policies().map(|p| p.id().to_string()).collect();
            ids.sort();
            ids
        };
        let slices = Slices::default();
        assert_eq!(
            ids(&slices.get(&set, &key, Some(&readers))),
            ["policy0", "policy3", "policy4"]
        );
        let other = Slices::default();
        assert_eq!(
            ids(&other.get(&set, &key, Some(&HashSet::new()))),
            ["policy0", "policy4"]
        );
        let unknown = Slices::default();
        assert_eq!(
            ids(&unknown.get(&set, &key, None)),
            ["policy0", "policy2", "policy3", "policy4"],
            "without an action hierarchy every `in` stays"
        );
    }
}
