//! `portcullis demo`: the TechFin scenario, end to end through the decision service, as a
//! readable table.

use portcullis::bundle_dir::dev_token;
use portcullis_engine::{CompiledBundle, DataSet};
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
    /// Resource type, id and attributes (`null` for a stored type: its facts are stored).
    pub resource: (&'static str, &'static str, Value),
}

/// The TechFin story: analysts, admins, auditors, partners, and attacks across tenants.
pub fn scenario(now: i64) -> Vec<Step> {
    let alice = json!({"oid": "alice", "roles": ["FinanceAnalyst"], "department": "finance", "amr": ["pwd", "mfa"]});
    let alice_no_mfa = json!({"oid": "alice", "roles": ["FinanceAnalyst"], "department": "finance", "amr": ["pwd"]});
    vec![
        Step {
            who: "alice (analyst, MFA)",
            tenant: Some("acme"),
            claims: alice.clone(),
            action: "view",
            resource: ("Report", "acme/q3-finance", Value::Null),
        },
        Step {
            who: "alice (analyst, MFA)",
            tenant: Some("acme"),
            claims: alice.clone(),
            action: "export",
            resource: ("Report", "acme/q3-finance", Value::Null),
        },
        Step {
            who: "alice (analyst, no MFA)",
            tenant: Some("acme"),
            claims: alice_no_mfa,
            action: "export",
            resource: ("Report", "acme/q3-finance", Value::Null),
        },
        Step {
            who: "alice (analyst, MFA)",
            tenant: Some("acme"),
            claims: alice.clone(),
            action: "view",
            resource: ("Report", "acme/payroll", Value::Null),
        },
        Step {
            who: "alice (analyst, MFA)",
            tenant: Some("acme"),
            claims: alice.clone(),
            action: "view",
            resource: ("Report", "globex/q3-finance", Value::Null),
        },
        Step {
            who: "alice, token claims tenant=globex",
            tenant: Some("acme"),
            claims: json!({"oid": "alice", "roles": ["FinanceAnalyst"], "department": "finance", "tenant": "globex", "tid": "globex"}),
            action: "view",
            resource: ("Report", "globex/q3-finance", Value::Null),
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
            resource: ("Report", "globex/sales", Value::Null),
        },
        Step {
            who: "erin (auditor, 10 min)",
            tenant: Some("initech"),
            claims: json!({"sub": "erin", "realm_access": {"roles": ["Auditor"]}, "auth_time": now - 600}),
            action: "view",
            resource: ("Report", "initech/ledger", Value::Null),
        },
        Step {
            who: "erin (auditor, 2 h)",
            tenant: Some("initech"),
            claims: json!({"sub": "erin", "realm_access": {"roles": ["Auditor"]}, "auth_time": now - 7200}),
            action: "view",
            resource: ("Report", "initech/ledger", Value::Null),
        },
        Step {
            who: "erin (auditor, MFA)",
            tenant: Some("initech"),
            claims: json!({"sub": "erin", "realm_access": {"roles": ["Auditor"]}, "acr": "2"}),
            action: "export",
            resource: ("Report", "initech/ledger", Value::Null),
        },
        Step {
            who: "hank (hooli analyst, Auth0)",
            tenant: Some("hooli"),
            claims: json!({"sub": "auth0|hank", "https://techfin.example/roles": ["FinanceAnalyst"], "https://techfin.example/department": "finance"}),
            action: "view",
            resource: ("Report", "hooli/q3", Value::Null),
        },
        Step {
            who: "pia (pied piper analyst, Auth0)",
            tenant: Some("piedpiper"),
            claims: json!({"sub": "auth0|pia", "https://techfin.example/roles": ["FinanceAnalyst"], "https://techfin.example/department": "finance"}),
            action: "view",
            resource: ("Report", "hooli/q3", Value::Null),
        },
        Step {
            who: "partner-app (scope reports:read)",
            tenant: Some("umbrella"),
            claims: json!({"sub": null, "client_id": "partner-app", "scope": "reports:read"}),
            action: "view",
            resource: ("Report", "umbrella/q3", Value::Null),
        },
        Step {
            who: "partner-app (scope reports:read)",
            tenant: Some("umbrella"),
            claims: json!({"sub": null, "client_id": "partner-app", "scope": "reports:read"}),
            action: "export",
            resource: ("Report", "umbrella/q3", Value::Null),
        },
        Step {
            who: "nobody (valid token, no roles)",
            tenant: Some("acme"),
            claims: json!({"oid": "nobody", "department": "finance", "amr": ["mfa"]}),
            action: "view",
            resource: ("Report", "acme/q3-finance", Value::Null),
        },
        Step {
            who: "mallory (tampered token)",
            tenant: None,
            claims: alice,
            action: "view",
            resource: ("Report", "acme/q3-finance", Value::Null),
        },
    ]
}

/// The tenants' stored facts the scenario decides on: each report in its department, each
/// department in its division.
pub fn seed() -> DataSet {
    let reports: &[(&str, &str, &str)] = &[
        ("acme", "q3-finance", "finance"),
        ("acme", "payroll", "hr"),
        ("globex", "q3-finance", "finance"),
        ("globex", "sales", "sales"),
        ("initech", "ledger", "finance"),
        ("hooli", "q3", "finance"),
        ("umbrella", "q3", "finance"),
    ];
    let mut set = DataSet::default();
    for (tenant, report, department) in reports {
        let division = if *department == "finance" {
            "markets"
        } else {
            "operations"
        };
        let entities = set.tenants.entry((*tenant).to_owned()).or_default();
        let division_uid = json!({"type": "Division", "id": format!("{tenant}/{division}")});
        let department_uid = json!({"type": "Department", "id": format!("{tenant}/{department}")});
        for entity in [
            json!({"uid": division_uid, "attrs": {}, "parents": []}),
            json!({"uid": department_uid, "attrs": {}, "parents": [division_uid]}),
        ] {
            if !entities.contains(&entity) {
                entities.push(entity);
            }
        }
        entities.push(json!({
            "uid": {"type": "Report", "id": format!("{tenant}/{report}")},
            "attrs": {"department": department},
            "parents": [department_uid],
        }));
    }
    set
}

/// Put the [`seed`] in the store at `spec` (checked by the engine, as the data API would).
///
/// # Errors
/// The bundle does not load, or the store refuses.
pub fn seed_store(spec: &str, dir: &Path, now: i64) -> Result<(), String> {
    let (_, bundle) = portcullis::bundle_dir::load(dir).map_err(|e| e.to_string())?;
    let store = portcullis::store::open(spec).map_err(|e| e.to_string())?;
    for (tenant, entities) in seed().tenants {
        portcullis::store::checked::put_entities(
            store.as_ref(),
            &bundle,
            &tenant,
            entities,
            None,
            "portcullis demo",
            now,
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
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

/// The request body of one step: a development token of the step's tenant (or a forgery)
/// and the resource.
pub fn request_body(
    compiled: &CompiledBundle,
    dir: &Path,
    step: &Step,
    now: i64,
) -> Result<String, String> {
    let claims: Map<String, Value> = step.claims.as_object().cloned().unwrap_or_default();
    let token = match step.tenant {
        Some(tenant) => dev_token(compiled, dir, tenant, 0, &claims, now)?,
        None => tamper(&dev_token(compiled, dir, "acme", 0, &claims, now)?),
    };
    let (ty, id, attrs) = &step.resource;
    let mut resource = Map::new();
    resource.insert("type".into(), json!(ty));
    resource.insert("id".into(), json!(id));
    if !attrs.is_null() {
        resource.insert("attrs".into(), attrs.clone());
    }
    Ok(json!({"token": token, "action": step.action, "resource": resource}).to_string())
}

/// The deciding policy or error, for the table.
pub fn why(decision: &Value) -> String {
    let reasons: Vec<&str> = decision
        .get("reasons")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !reasons.is_empty() {
        return reasons.join(", ");
    }
    decision
        .pointer("/errors/0/code")
        .and_then(Value::as_str)
        .map_or_else(|| "(no permit applies)".to_owned(), str::to_owned)
}

/// Run the scenario against the decision service at `base` (`http://127.0.0.1:port`) and print
/// the table. Returns the number of steps.
pub fn run(base: &str, dir: &Path, now: i64) -> Result<usize, String> {
    let compiled = portcullis::bundle_dir::compile(dir).map_err(|e| e.to_string())?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    println!(
        "Portcullis demo: TechFin policy pack, bundle revision {}",
        compiled.revision
    );
    println!("Decision service (engine component in wasmtime) at {base}");
    println!();
    println!(
        "{:<34} {:<10} {:<12} {:<34} {:<16} DECIDED BY",
        "PRINCIPAL", "TENANT", "ACTION", "RESOURCE", "DECISION"
    );
    let steps = scenario(now);
    for step in &steps {
        let body = request_body(&compiled, dir, step, now)?;
        let text = agent
            .post(&format!("{base}/v1/decide"))
            .header("content-type", "application/json")
            .send(body.as_str())
            .and_then(|mut r| r.body_mut().read_to_string())
            .map_err(|e| format!("the decision service did not answer: {e}"))?;
        let decision: Value = serde_json::from_str(&text)
            .map_err(|e| format!("the decision service answered no decision ({e}): {text}"))?;
        let field = |pointer: &str| {
            decision
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_owned()
        };
        println!(
            "{:<34} {:<10} {:<12} {:<34} {:<16} {}",
            step.who,
            field("/principal/tenant"),
            step.action,
            field("/request/resource"),
            field("/decision").to_uppercase(),
            why(&decision)
        );
    }
    println!();
    stored_facts(&agent, base, &compiled, dir, now)?;
    Ok(steps.len() + 4)
}

/// The back office stores a report in `risk`, an analyst of finance is denied, the report
/// moves to `finance`, and she is allowed: no attribute comes from her request.
fn stored_facts(
    agent: &ureq::Agent,
    base: &str,
    compiled: &CompiledBundle,
    dir: &Path,
    now: i64,
) -> Result<(), String> {
    println!(
        "Stored facts decide: acme's back office (DataWriter client) writes Report::\"acme/q3\""
    );
    let claims = |value: Value| value.as_object().cloned().unwrap_or_default();
    let back_office = dev_token(
        compiled,
        dir,
        "acme",
        0,
        &claims(
            json!({"sub": "b0ff1ce0-0000-4000-8000-000000000001", "azp": "backoffice-app", "idtyp": "app", "roles": ["DataWriter"]}),
        ),
        now,
    )?;
    let alice = claims(
        json!({"oid": "alice", "roles": ["FinanceAnalyst"], "department": "finance", "amr": ["pwd", "mfa"]}),
    );
    for department in ["risk", "finance"] {
        let entity = json!({
            "attrs": {"department": department},
            "parents": [{"type": "Department", "id": format!("acme/{department}")}],
        });
        let text = agent
            .put(&format!("{base}/v1/data/acme/entities/Report/q3"))
            .header("authorization", &format!("Bearer {back_office}"))
            .header("content-type", "application/json")
            .send(entity.to_string().as_str())
            .and_then(|mut r| r.body_mut().read_to_string())
            .map_err(|e| format!("the decision service did not answer: {e}"))?;
        let written: Value = serde_json::from_str(&text)
            .map_err(|e| format!("the data API answered no write ({e}): {text}"))?;
        let revision = written
            .get("revision")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("the data API refused the write: {text}"))?;
        println!(
            "{:<34} {:<10} {:<12} {:<34} {:<16} department = {department}",
            "acme back office",
            "acme",
            "data.write",
            "Report::\"acme/q3\"",
            format!("STORED (rev {revision})")
        );
        let step = Step {
            who: "alice (analyst of finance)",
            tenant: Some("acme"),
            claims: Value::Object(alice.clone()),
            action: "view",
            resource: ("Report", "acme/q3", Value::Null),
        };
        let body = request_body(compiled, dir, &step, now)?;
        let text = agent
            .post(&format!("{base}/v1/decide"))
            .header("content-type", "application/json")
            .send(body.as_str())
            .and_then(|mut r| r.body_mut().read_to_string())
            .map_err(|e| format!("the decision service did not answer: {e}"))?;
        let decision: Value = serde_json::from_str(&text)
            .map_err(|e| format!("the decision service answered no decision ({e}): {text}"))?;
        let field = |pointer: &str| {
            decision
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_owned()
        };
        println!(
            "{:<34} {:<10} {:<12} {:<34} {:<16} {}",
            step.who,
            field("/principal/tenant"),
            step.action,
            field("/request/resource"),
            field("/decision").to_uppercase(),
            why(&decision)
        );
    }
    Ok(())
}
