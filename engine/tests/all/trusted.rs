//! Trusted-principal mode: the `attrs` of the principal and the resource.

use portcullis_engine::{
    Algorithm, Bundle, CompiledBundle, DecisionIds, Engine, EngineOptions, PolicySource,
    ResourceRef, Settings, SignatureVerifier, TrustedRequest, VerificationKey,
};
use serde_json::{Map, Value, json};
use std::sync::Arc;

const NOW: i64 = 1_767_225_600;

fn engine() -> Engine {
    engine_with_ids(DecisionIds::Seed(0))
}

fn engine_with_ids(ids: DecisionIds) -> Engine {
    let policies = vec![PolicySource {
        file: "policies/department.cedar".into(),
        tenant: None,
        source: r#"@id("same-department") permit(principal, action == Action::"view", resource)
            when { principal has department && resource has department
                   && principal.department == resource.department };"#
            .into(),
    }];
    let bundle = Bundle::load(CompiledBundle::new(Settings::default(), None, policies)).unwrap();
    // No crypto at all: trusted decisions check no signature, so these tests also run without
    // the `rust-crypto` feature.
    let options = EngineOptions::new(Arc::new(NoSignatures), ids);
    Engine::with_options(Arc::new(bundle), options)
}

/// A verifier that refuses every signature.
struct NoSignatures;

impl SignatureVerifier for NoSignatures {
    fn verify(
        &self,
        _: Algorithm,
        _: &VerificationKey,
        _: &[u8],
        _: &[u8],
    ) -> Result<bool, String> {
        Err("trusted decisions check no signature".into())
    }
}

fn with_attrs(entity_type: &str, id: &str, attrs: Value) -> ResourceRef {
    let attrs: Map<String, Value> = serde_json::from_value(attrs).unwrap();
    ResourceRef {
        attrs,
        ..ResourceRef::new(entity_type, id)
    }
}

fn request(principal: ResourceRef, resource: ResourceRef) -> TrustedRequest {
    TrustedRequest {
        principal,
        action: "view".into(),
        resource,
        ..Default::default()
    }
}

#[test]
fn principal_and_resource_attrs_are_used() {
    let engine = engine();
    let alice = || with_attrs("User", "alice", json!({"department": "finance"}));
    let allowed = engine.decide_trusted(
        &request(
            alice(),
            with_attrs("Report", "q3", json!({"department": "finance"})),
        ),
        NOW,
    );
    assert!(allowed.is_allowed(), "{allowed:?}");
    assert_eq!(allowed.reasons, ["same-department"]);
    let denied = engine.decide_trusted(
        &request(
            alice(),
            with_attrs("Report", "q3", json!({"department": "sales"})),
        ),
        NOW,
    );
    assert!(
        !denied.is_allowed() && denied.errors.is_empty(),
        "{denied:?}"
    );
    // Without attributes the entities are unknown to the store: no department, no allow.
    let bare = engine.decide_trusted(
        &request(
            ResourceRef::new("User", "alice"),
            ResourceRef::new("Report", "q3"),
        ),
        NOW,
    );
    assert!(!bare.is_allowed());
}

#[test]
fn decision_ids_are_random_per_engine_unless_a_seed_is_given() {
    let ids = |engine: &Engine| -> Vec<String> {
        (0..3)
            .map(|_| {
                let decision = engine.decide_trusted(
                    &request(
                        with_attrs("User", "alice", json!({})),
                        with_attrs("Report", "q3", json!({})),
                    ),
                    NOW,
                );
                decision.decision_id
            })
            .collect()
    };
    // By default, every engine draws its own seed: no id of one is an id of another (as two
    // processes started with the README's `Engine::new`).
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    {
        let first = ids(&engine_with_ids(DecisionIds::default()));
        let second = ids(&engine_with_ids(DecisionIds::default()));
        assert!(
            first.iter().all(|id| !second.contains(id)),
            "{first:?} {second:?}"
        );
        let unique: std::collections::HashSet<_> = first.iter().collect();
        assert_eq!(unique.len(), first.len(), "{first:?}");
    }
    // A fixed seed repeats, for tests that need reproducible ids.
    let seeded = ids(&engine_with_ids(DecisionIds::Seed(42)));
    assert_eq!(seeded, ids(&engine_with_ids(DecisionIds::Seed(42))));
    assert_ne!(seeded, ids(&engine_with_ids(DecisionIds::Seed(43))));
    assert!(
        seeded
            .iter()
            .all(|id| id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()))
    );
}

#[test]
fn an_entity_given_twice_is_refused() {
    let engine = engine();
    let mut twice = request(
        with_attrs("User", "alice", json!({"department": "finance"})),
        with_attrs("Report", "q3", json!({"department": "finance"})),
    );
    twice.entities = Some(json!([
        {"uid": {"type": "Report", "id": "q3"}, "attrs": {"department": "sales"}, "parents": []}
    ]));
    let decision = engine.decide_trusted(&twice, NOW);
    assert!(!decision.is_allowed());
    assert_eq!(decision.errors[0].code, "request_entity", "{decision:?}");
    // The principal as its own resource, with attributes on both sides.
    let same = request(
        with_attrs("User", "alice", json!({"department": "finance"})),
        with_attrs("User", "alice", json!({"department": "finance"})),
    );
    let decision = engine.decide_trusted(&same, NOW);
    assert_eq!(decision.errors[0].code, "request_entity", "{decision:?}");
}
