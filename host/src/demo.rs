//! `portcullis demo`: the TechFin scenario, end to end, as a readable table.

use crate::policy_tests::test_token;
use portcullis_engine::{CompiledBundle, Decision, DecisionRequest, Engine, ResourceRef};
use serde_json::{Map, Value, json};
use std::path::Path;

/// One line of the scenario.
pub struct Step {
    /// Who, for the table.
    pub who: &'static str,
    /// Tenant whose IdP signs the token (`None`: a forged token).
    pub tenant: Option<&'static str>,
    /// Claims on top of the standard ones.
    pub claims: Value,
    /// Action.
    pub action: &'static str,
    /// Resource type, id and attributes.
    pub resource: (&'static str, &'static str, Value),
}

/// The TechFin story: analysts, admins, auditors, partners, and attacks across tenants.
pub fn scenario(now: i64) -> Vec<Step> {
    let report = |tenant: &str, dept: &str| json!({"tenant": tenant, "department": dept});
    let alice = json!({"oid": "alice", "roles": ["FinanceAnalyst"], "department": "finance", "amr": ["pwd", "mfa"]});
    let alice_no_mfa = json!({"oid": "alice", "roles": ["FinanceAnalyst"], "department": "finance", "amr": ["pwd"]});
    vec![
        Step {
            who: "alice (analyst, MFA)",
            tenant: Some("acme"),
            claims: alice.clone(),
            action: "view",
            resource: ("Report", "acme-q3-finance", report("acme", "finance")),
        },
        Step {
            who: "alice (analyst, MFA)",
            tenant: Some("acme"),
            claims: alice.clone(),
            action: "export",
            resource: ("Report", "acme-q3-finance", report("acme", "finance")),
        },
        Step {
            who: "alice (analyst, no MFA)",
            tenant: Some("acme"),
            claims: alice_no_mfa,
            action: "export",
            resource: ("Report", "acme-q3-finance", report("acme", "finance")),
        },
        Step {
            who: "alice (analyst, MFA)",
            tenant: Some("acme"),
            claims: alice.clone(),
            action: "view",
            resource: ("Report", "acme-payroll", report("acme", "hr")),
        },
        Step {
            who: "alice (analyst, MFA)",
            tenant: Some("acme"),
            claims: alice.clone(),
            action: "view",
            resource: ("Report", "globex-q3-finance", report("globex", "finance")),
        },
        Step {
            who: "alice, token claims tenant=globex",
            tenant: Some("acme"),
            claims: json!({"oid": "alice", "roles": ["FinanceAnalyst"], "department": "finance", "tenant": "globex", "tid": "globex"}),
            action: "view",
            resource: ("Report", "globex-q3-finance", report("globex", "finance")),
        },
        Step {
            who: "bob (tenant admin, MFA)",
            tenant: Some("globex"),
            claims: json!({"sub": "bob", "techfin_roles": ["TenantAdmin"], "amr": ["mfa"]}),
            action: "manage_user",
            resource: ("User", "globex/carol", json!({"tenant": "globex"})),
        },
        Step {
            who: "bob (tenant admin, MFA)",
            tenant: Some("globex"),
            claims: json!({"sub": "bob", "techfin_roles": ["TenantAdmin"], "amr": ["mfa"]}),
            action: "manage_user",
            resource: ("User", "acme/dave", json!({"tenant": "acme"})),
        },
        Step {
            who: "gina (globex controller)",
            tenant: Some("globex"),
            claims: json!({"sub": "gina", "techfin_roles": ["Controller"], "department": "finance", "amr": ["mfa"]}),
            action: "export",
            resource: ("Report", "globex-sales", report("globex", "sales")),
        },
        Step {
            who: "erin (auditor, 10 min)",
            tenant: Some("initech"),
            claims: json!({"sub": "erin", "realm_access": {"roles": ["Auditor"]}, "auth_time": now - 600}),
            action: "view",
            resource: ("Report", "initech-ledger", report("initech", "finance")),
        },
        Step {
            who: "erin (auditor, 2 h)",
            tenant: Some("initech"),
            claims: json!({"sub": "erin", "realm_access": {"roles": ["Auditor"]}, "auth_time": now - 7200}),
            action: "view",
            resource: ("Report", "initech-ledger", report("initech", "finance")),
        },
        Step {
            who: "erin (auditor, MFA)",
            tenant: Some("initech"),
            claims: json!({"sub": "erin", "realm_access": {"roles": ["Auditor"]}, "acr": "2"}),
            action: "export",
            resource: ("Report", "initech-ledger", report("initech", "finance")),
        },
        Step {
            who: "hank (hooli analyst, Auth0)",
            tenant: Some("hooli"),
            claims: json!({"sub": "auth0|hank", "https://techfin.example/roles": ["FinanceAnalyst"], "https://techfin.example/department": "finance"}),
            action: "view",
            resource: ("Report", "hooli-q3", report("hooli", "finance")),
        },
        Step {
            who: "pia (pied piper analyst, Auth0)",
            tenant: Some("piedpiper"),
            claims: json!({"sub": "auth0|pia", "https://techfin.example/roles": ["FinanceAnalyst"], "https://techfin.example/department": "finance"}),
            action: "view",
            resource: ("Report", "hooli-q3", report("hooli", "finance")),
        },
        Step {
            who: "partner-app (scope reports:read)",
            tenant: Some("umbrella"),
            claims: json!({"sub": null, "client_id": "partner-app", "scope": "reports:read"}),
            action: "view",
            resource: ("Report", "umbrella-q3", report("umbrella", "finance")),
        },
        Step {
            who: "partner-app (scope reports:read)",
            tenant: Some("umbrella"),
            claims: json!({"sub": null, "client_id": "partner-app", "scope": "reports:read"}),
            action: "export",
            resource: ("Report", "umbrella-q3", report("umbrella", "finance")),
        },
        Step {
            who: "nobody (valid token, no roles)",
            tenant: Some("acme"),
            claims: json!({"oid": "nobody", "department": "finance", "amr": ["mfa"]}),
            action: "view",
            resource: ("Report", "acme-q3-finance", report("acme", "finance")),
        },
        Step {
            who: "mallory (tampered token)",
            tenant: None,
            claims: alice,
            action: "view",
            resource: ("Report", "acme-q3-finance", report("acme", "finance")),
        },
    ]
}

/// Turn a valid token into a forgery: same header and signature, payload granting more roles.
fn tamper(token: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (header, payload, signature) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let mut claims: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .unwrap_or_default();
    claims.insert("roles".into(), json!(["FinanceAnalyst", "TenantAdmin"]));
    let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
    format!("{header}.{forged}.{signature}")
}

/// Decide one step.
pub fn decide(
    engine: &Engine,
    compiled: &CompiledBundle,
    dir: &Path,
    step: &Step,
    now: i64,
) -> Result<Decision, String> {
    let claims: Map<String, Value> = step.claims.as_object().cloned().unwrap_or_default();
    let token = match step.tenant {
        Some(tenant) => test_token(compiled, dir, tenant, 0, &claims, now)?,
        None => tamper(&test_token(compiled, dir, "acme", 0, &claims, now)?),
    };
    let (ty, id, attrs) = &step.resource;
    let request = DecisionRequest {
        token: Some(token),
        action: step.action.to_owned(),
        resource: ResourceRef {
            entity_type: (*ty).to_owned(),
            id: (*id).to_owned(),
            attrs: attrs.as_object().cloned().unwrap_or_default(),
        },
        context: Map::new(),
    };
    Ok(engine.decide(&request, now))
}

/// The deciding policy or error, for the table.
pub fn why(decision: &Decision) -> String {
    if !decision.reasons.is_empty() {
        return decision.reasons.join(", ");
    }
    decision
        .errors
        .first()
        .map_or_else(|| "(no permit applies)".to_owned(), |e| e.code.to_owned())
}

/// Run the scenario and print the table. Returns the number of steps.
pub fn run(dir: &Path, now: i64) -> Result<usize, String> {
    let (compiled, bundle) = portcullis::bundle_dir::load(dir).map_err(|e| e.to_string())?;
    let engine = Engine::new(bundle);
    println!(
        "Portcullis demo: TechFin policy pack, bundle revision {}",
        engine.revision()
    );
    println!();
    println!(
        "{:<34} {:<10} {:<12} {:<34} {:<16} DECIDED BY",
        "PRINCIPAL", "TENANT", "ACTION", "RESOURCE", "DECISION"
    );
    let steps = scenario(now);
    for step in &steps {
        let decision = decide(&engine, &compiled, dir, step, now)?;
        let tenant = decision
            .principal
            .as_ref()
            .map_or("-", |p| p.tenant.as_str())
            .to_owned();
        println!(
            "{:<34} {:<10} {:<12} {:<34} {:<16} {}",
            step.who,
            tenant,
            step.action,
            decision.request.resource,
            decision.decision.as_str().to_uppercase(),
            why(&decision)
        );
    }
    Ok(steps.len())
}
