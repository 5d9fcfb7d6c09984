//! The component's decisions are the engine's: each request is decided by the native engine in
//! process and through the component in wasmtime; the decision JSON and the audit line must be
//! the same, field for field (but for the decision id, which each side draws from its own
//! seed), for every outcome, principal kind and error.

// Test helpers outside `#[test]` functions unwrap too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use portcullis::bundle_dir::{compile, dev_token};
use portcullis::component::{DataState, Limits, Loaded, Runtime, TenantDocs};
use portcullis::crypto::RingVerifier;
use portcullis_engine::{
    Bundle, DataSet, DecisionIds, DecisionRequest, Engine, EngineOptions, TrustedRequest,
};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::sync::Arc;

const NOW: i64 = 1_767_225_600;

fn token(
    compiled: &portcullis_engine::CompiledBundle,
    dir: &Path,
    tenant: &str,
    claims: Value,
) -> String {
    let claims: Map<String, Value> = serde_json::from_value(claims).unwrap();
    dev_token(compiled, dir, tenant, 0, &claims, NOW).unwrap()
}

/// The decision id out of a decision or audit line, which must carry one.
fn take_id(value: &mut Value) -> String {
    match value.as_object_mut().unwrap().remove("decision_id") {
        Some(Value::String(id)) if !id.is_empty() => id,
        other => panic!("no decision id: {other:?}"),
    }
}

#[test]
fn component_decisions_and_audit_lines_are_the_engines() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/techfin");
    let compiled = compile(&dir).unwrap();
    let bundle_json = compiled.to_json();
    let engine = Engine::with_options(
        Arc::new(Bundle::from_json(&bundle_json).unwrap()),
        EngineOptions::new(Arc::new(RingVerifier), DecisionIds::Seed(7)),
    );
    let runtime = Runtime::new(Limits::default()).unwrap();
    let mut instance = runtime.instantiate().unwrap();
    instance
        .load(&Loaded {
            generation: 1,
            bundle_json: Arc::from(bundle_json.as_str()),
            revision: compiled.revision.clone(),
            keys: Vec::new(),
            secrets: Vec::new(),
            edge_json: std::sync::Arc::from("{}"),
        })
        .unwrap();

    // The reports' facts are stored: both the engine and the instance hold the same data.
    let report_entity = |tenant: &str, department: &str| {
        json!({"uid": {"type": "Report", "id": format!("{tenant}/q3-{department}")},
               "attrs": {"department": department}})
    };
    let set: DataSet = serde_json::from_value(json!({"tenants": {
        "acme": [report_entity("acme", "finance"), report_entity("acme", "sales")],
        "umbrella": [report_entity("umbrella", "finance")],
    }}))
    .unwrap();
    engine.load_data_set(&set).unwrap();
    let state = DataState {
        generation: 1,
        tenants: compiled
            .tenants
            .keys()
            .map(|t| {
                let data = engine.tenant_data(t).unwrap();
                (t.clone(), Arc::new(TenantDocs::new(data, None)))
            })
            .collect(),
    };
    instance.sync_data(&state).unwrap();
    let report = |tenant: &str, department: &str| json!({"type": "Report", "id": format!("{tenant}/q3-{department}")});
    let analyst = token(
        &compiled,
        &dir,
        "acme",
        json!({"oid": "alice", "roles": ["FinanceAnalyst"], "department": "finance", "amr": ["mfa"], "jti": "j-1"}),
    );
    let client = token(
        &compiled,
        &dir,
        "umbrella",
        json!({"sub": null, "client_id": "partner-app", "scope": "reports:read"}),
    );
    let expired = {
        let claims: Map<String, Value> =
            serde_json::from_value(json!({"oid": "alice", "roles": ["FinanceAnalyst"]})).unwrap();
        dev_token(&compiled, &dir, "acme", 0, &claims, NOW - 7_200).unwrap()
    };
    let token_requests = [
        // allow, with reasons, MFA, a `jti`
        json!({"token": analyst, "action": "view", "resource": report("acme", "finance")}),
        // deny: another department
        json!({"token": analyst, "action": "view", "resource": report("acme", "sales")}),
        // a partner client (principal kind `client`, no MFA)
        json!({"token": client, "action": "view", "resource": report("umbrella", "finance")}),
        // unauthenticated: expired (the issuer is still named), and garbage
        json!({"token": expired, "action": "view", "resource": report("acme", "finance")}),
        json!({"token": "not.a.token", "action": "view", "resource": report("acme", "finance")}),
        json!({"action": "view", "resource": report("acme", "finance")}),
        // request errors: an unknown action, a reserved context key, quotes in the resource id
        json!({"token": analyst, "action": "launch", "resource": report("acme", "finance")}),
        json!({"token": analyst, "action": "view", "resource": report("acme", "finance"), "context": {"mfa": true}}),
        json!({"token": analyst, "action": "view", "resource": {"type": "Report", "id": "acme/q\"3\\\n"}}),
    ];
    let mut seen = Vec::new();
    for (i, request) in token_requests.iter().enumerate() {
        let native = engine.decide(
            &serde_json::from_value::<DecisionRequest>(request.clone()).unwrap(),
            NOW,
        );
        let through = instance.decide(&request.to_string(), NOW).unwrap();
        seen.push(native.clone());
        assert_eq!(through.outcome, native.decision.as_str());
        assert_eq!(through.status, native.status);
        let pairs = [
            (
                serde_json::to_value(&native).unwrap(),
                serde_json::from_str::<Value>(&through.decision_json).unwrap(),
            ),
            (
                serde_json::to_value(native.audit_record()).unwrap(),
                serde_json::from_str::<Value>(&through.audit_json).unwrap(),
            ),
        ];
        let mut ids = Vec::new();
        for (mut want, mut got) in pairs {
            take_id(&mut want);
            ids.push(take_id(&mut got));
            // The index, not the request: messages never show a token.
            assert_eq!(got, want, "request {i}");
        }
        assert_eq!(ids[0], ids[1], "one id in the decision and its audit line");
    }
    // The requests above cover what they claim to.
    let outcomes: Vec<&str> = seen.iter().map(|n| n.decision.as_str()).collect();
    for outcome in ["allow", "deny", "unauthenticated"] {
        assert!(outcomes.contains(&outcome), "{outcome} in {outcomes:?}");
    }
    let principals: Vec<_> = seen.iter().filter_map(|n| n.principal.as_ref()).collect();
    assert!(principals.iter().any(|p| p.kind.as_str() == "client"));
    assert!(principals.iter().any(|p| p.mfa == Some(true)));
    assert!(
        seen.iter()
            .any(|n| n.audit_record().issuer.is_some() && n.principal.is_none())
    );
    assert!(seen.iter().any(|n| n.audit_record().jti.is_some()));
    assert!(
        seen.iter()
            .any(|n| n.errors.iter().any(|e| e.code.starts_with("request_")))
    );

    // A trusted request (no token) and a batch take the same way out.
    let trusted = json!({
        "principal": {"type": "User", "id": "acme/bob", "attrs": {"tenant": "acme", "department": "finance"}},
        "action": "view",
        "resource": report("acme", "finance"),
        "tenant": "acme",
    });
    let native = engine.decide_trusted(
        &serde_json::from_value::<TrustedRequest>(trusted.clone()).unwrap(),
        NOW,
    );
    let through = instance.decide_trusted(&trusted.to_string(), NOW).unwrap();
    let (mut want, mut got) = (
        serde_json::to_value(native.audit_record()).unwrap(),
        serde_json::from_str::<Value>(&through.audit_json).unwrap(),
    );
    take_id(&mut want);
    take_id(&mut got);
    assert_eq!(got, want);
    let batch = Value::Array(token_requests[..3].to_vec()).to_string();
    let decided = instance.decide_batch(&batch, None, NOW).unwrap();
    let outcomes: Vec<&str> = decided
        .iter()
        .map(|d| d.as_ref().unwrap().outcome)
        .collect();
    assert_eq!(outcomes, ["allow", "deny", "allow"]);
}
