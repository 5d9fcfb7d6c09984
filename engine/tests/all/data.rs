//! Stored authorization data: entities validated on the way in, tenant-bound, joined into
//! decisions by uid (principal's stored parents, resource and ancestors), never taken from a
//! request for a stored type, and stamped with the data revision.

use portcullis_engine::{
    Algorithm, Bundle, BundleSources, DataDocument, DataError, DecisionRequest, Engine,
    EntityWrite, PolicySource, ResourceRef, TenantData, TrustedRequest, sign_with_pem,
};
use serde_json::{Map, Value, json};
use std::path::Path;

pub(crate) const NOW: i64 = 1_767_225_600;

const SCHEMA: &str = r#"
entity Role;
entity Division { tenant: String };
entity Department in [Division] { tenant: String };
entity Team { tenant: String };
entity User in [Role, Team] { tenant: String, department?: String };
entity Folder in [Folder] { tenant: String, owner?: Team };
entity Report in [Department, Folder] {
  tenant: String,
  department?: String,
  folder?: Folder,
  shared_with?: Set<User>,
};
type Session = { mfa: Bool, session_age?: Long, scopes: Set<String>, token_type: String, client_id?: String };
entity Tenant { tenant: String };
action view, export appliesTo { principal: [User], resource: Report, context: Session };
type Annotation = { mfa: Bool, session_age?: Long, scopes: Set<String>, token_type: String, client_id?: String, reason: String };
action annotate appliesTo { principal: [User], resource: Report, context: Annotation };
action "data.read", "data.write" appliesTo { principal: [User], resource: Tenant, context: Session };
"#;

const POLICIES: &str = r#"
@id("analyst-own-department")
permit (principal is User in Role::"FinanceAnalyst", action == Action::"view", resource is Report)
when { principal has department && resource has department
       && resource.department == principal.department && resource.tenant == principal.tenant };

@id("division-risk")
permit (principal is User in Role::"RiskOfficer", action == Action::"view", resource in Division::"acme/markets");

@id("shared-with-me")
permit (principal is User, action == Action::"view", resource is Report)
when { resource has shared_with && resource.shared_with.contains(principal) };

@id("no-cross-tenant")
forbid (principal, action, resource) when { resource.tenant != principal.tenant };

@id("team-folder")
permit (principal is User, action == Action::"view", resource is Report)
when { resource has folder && resource.folder has owner && principal in resource.folder.owner };

@id("exporters-export")
permit (principal is User in Role::"Exporter", action == Action::"export", resource is Report);

@id("annotate-for-audit")
permit (principal is User, action == Action::"annotate", resource is Report)
when { context.reason == "audit" };

@id("nothing-from-the-vault")
forbid (principal, action, resource in Folder::"acme/vault");
"#;

pub(crate) fn dev_key(name: &str) -> (String, Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/techfin/dev-keys");
    let pem = std::fs::read_to_string(dir.join(format!("{name}.pem"))).unwrap();
    let jwks = std::fs::read_to_string(dir.join(format!("{name}.jwks.json"))).unwrap();
    (pem, serde_json::from_str(&jwks).unwrap())
}

pub(crate) fn issuer(tenant: &str) -> String {
    format!("https://id.{tenant}.example")
}

pub(crate) fn bundle_with(settings: &Value) -> Result<Bundle, String> {
    bundle_with_routes(settings, None)
}

fn bundle_with_routes(settings: &Value, routes: Option<&Value>) -> Result<Bundle, String> {
    let (_, jwks) = dev_key("acme-rs256");
    let tenant = |name: &str| {
        json!({ "issuers": [{
            "issuer": issuer(name), "audiences": ["api"], "algorithms": ["RS256"],
            "jwks": jwks, "claims": { "preset": "generic", "attributes": { "department": "department" } }
        }]})
    };
    let tenants = json!({ "tenants": { "acme": tenant("acme"), "globex": tenant("globex") } });
    let sources = BundleSources {
        schema: Some(("schema.cedarschema".into(), SCHEMA.into())),
        policies: vec![PolicySource {
            file: "policies/p.cedar".into(),
            tenant: None,
            source: POLICIES.into(),
        }],
        tenants: Some(("tenants.json".into(), tenants.to_string())),
        routes: routes.map(|r| ("routes.json".into(), r.to_string())),
        entities: None,
        settings: Some(("bundle.json".into(), settings.to_string())),
    };
    let compiled = sources
        .compile(&mut |path| Err(format!("no file {path}")))
        .map_err(|e| e.to_string())?;
    Bundle::load(compiled).map_err(|e| e.to_string())
}

pub(crate) fn stored() -> Value {
    json!({ "data": { "stored": ["Division", "Department", "Team", "User", "Folder", "Report"], "max_depth": 4 } })
}

pub(crate) fn engine() -> Engine {
    Engine::new(bundle_with(&stored()).unwrap())
}

pub(crate) fn token(tenant: &str, sub: &str, roles: &[&str], department: Option<&str>) -> String {
    let (pem, jwks) = dev_key("acme-rs256");
    let header: Map<String, Value> = serde_json::from_value(
        json!({"alg": "RS256", "typ": "JWT", "kid": jwks["keys"][0]["kid"]}),
    )
    .unwrap();
    let mut claims = json!({
        "iss": issuer(tenant), "aud": "api", "sub": sub, "roles": roles,
        "iat": NOW - 10, "exp": NOW + 600
    });
    if let Some(department) = department {
        claims["department"] = json!(department);
    }
    let claims: Map<String, Value> = serde_json::from_value(claims).unwrap();
    sign_with_pem(&header, &claims, Algorithm::RS256, &pem).unwrap()
}

pub(crate) fn view(token: &str, report: &str) -> DecisionRequest {
    DecisionRequest {
        token: Some(token.to_owned()),
        action: "view".into(),
        resource: ResourceRef::new("Report", report),
        ..Default::default()
    }
}

pub(crate) fn entity(ty: &str, id: &str, attrs: &Value, parents: &[(&str, &str)]) -> Value {
    let parents: Vec<Value> = parents
        .iter()
        .map(|(t, i)| json!({"type": t, "id": i}))
        .collect();
    json!({ "uid": {"type": ty, "id": id}, "attrs": attrs, "parents": parents })
}

pub(crate) fn snapshot(tenant: &str, revision: u64, entities: Vec<Value>) -> String {
    serde_json::to_string(&DataDocument {
        tenant: tenant.into(),
        revision,
        entities,
        ..DataDocument::default()
    })
    .unwrap()
}

pub(crate) fn acme_data() -> Vec<Value> {
    vec![
        entity("Division", "acme/markets", &json!({}), &[]),
        entity(
            "Department",
            "acme/risk",
            &json!({}),
            &[("Division", "acme/markets")],
        ),
        entity(
            "Report",
            "acme/q3",
            &json!({"department": "risk"}),
            &[("Department", "acme/risk")],
        ),
        entity("Team", "acme/audit-team", &json!({}), &[]),
        entity(
            "User",
            "acme/bob",
            &json!({}),
            &[("Team", "acme/audit-team")],
        ),
        entity(
            "Folder",
            "acme/audit",
            &json!({"owner": {"__entity": {"type": "Team", "id": "acme/audit-team"}}}),
            &[],
        ),
        entity(
            "Report",
            "acme/ledger",
            &json!({
                "folder": {"__entity": {"type": "Folder", "id": "acme/audit"}},
                "shared_with": [{"__entity": {"type": "User", "id": "acme/carol"}}]
            }),
            &[("Folder", "acme/audit")],
        ),
    ]
}

#[test]
fn a_stored_report_decides_by_its_stored_department_and_a_move_flips_it() {
    let engine = engine();
    let alice = token("acme", "alice", &["FinanceAnalyst"], Some("finance"));
    // Before the tenant's data is handed over, nothing is decided without it.
    let decision = engine.decide(&view(&alice, "acme/q3"), NOW);
    assert!(!decision.is_allowed());
    assert_eq!(decision.errors[0].code, "data_unavailable");
    assert_eq!(decision.data_wanted(), Some("acme"));

    engine
        .load_tenant_data(&snapshot("acme", 1, acme_data()))
        .unwrap();
    let decision = engine.decide(&view(&alice, "acme/q3"), NOW);
    assert!(!decision.is_allowed(), "{decision:?}");
    assert_eq!(decision.data_revision, Some(1));
    assert!(decision.to_json().contains("\"data_revision\":1"));
    assert!(
        decision
            .audit_record()
            .to_json()
            .contains("\"data_revision\":1")
    );

    // The report moves to finance (revision 2, as changes): the same token, the same request,
    // now allowed — the memo of the earlier evaluation is not reused across revisions.
    let moved = json!({
        "tenant": "acme", "since": 1, "revision": 2,
        "changes": [{ "revision": 2, "type": "Report", "id": "acme/q3",
                      "entity": entity("Report", "acme/q3", &json!({"department": "finance"}), &[]) }]
    });
    let loaded = engine.load_tenant_data(&moved.to_string()).unwrap();
    assert_eq!((loaded.revision, loaded.entities), (2, 7));
    let decision = engine.decide(&view(&alice, "acme/q3"), NOW);
    assert!(decision.is_allowed(), "{decision:?}");
    assert_eq!(decision.reasons, ["analyst-own-department"]);
    assert_eq!(decision.data_revision, Some(2));
}

#[test]
fn ancestors_shares_and_team_folders_are_joined_transitively() {
    let engine = engine();
    engine
        .load_tenant_data(&snapshot("acme", 3, acme_data()))
        .unwrap();
    // Report in Department in Division: a policy on the division reaches the report.
    let risk = token("acme", "rita", &["RiskOfficer"], None);
    let decision = engine.decide(&view(&risk, "acme/q3"), NOW);
    assert_eq!(decision.reasons, ["division-risk"], "{decision:?}");
    // Shared with a named colleague.
    let carol = token("acme", "carol", &[], None);
    let decision = engine.decide(&view(&carol, "acme/ledger"), NOW);
    assert_eq!(decision.reasons, ["shared-with-me"], "{decision:?}");
    // Bob's stored entity puts him in the team that owns the folder.
    let bob = token("acme", "bob", &[], None);
    let decision = engine.decide(&view(&bob, "acme/ledger"), NOW);
    assert_eq!(decision.reasons, ["team-folder"], "{decision:?}");
    // Dave is in no team and was shared nothing.
    let dave = token("acme", "dave", &[], None);
    assert!(!engine.decide(&view(&dave, "acme/ledger"), NOW).is_allowed());
    // A report that is not stored has no facts: nothing allows it.
    assert!(
        !engine
            .decide(&view(&risk, "acme/unknown"), NOW)
            .is_allowed()
    );
}

#[test]
fn a_change_of_an_ancestor_moves_every_descendant_and_entities_are_kept_as_written() {
    let engine = engine();
    let mut data = acme_data();
    data.push(entity("Division", "acme/retail", &json!({}), &[]));
    data.push(entity("Folder", "acme/vault", &json!({}), &[]));
    data.push(entity("Folder", "acme/drafts", &json!({}), &[]));
    data.push(entity(
        "Report",
        "acme/memo",
        &json!({}),
        &[("Folder", "acme/drafts"), ("Department", "acme/risk")],
    ));
    engine.load_tenant_data(&snapshot("acme", 1, data)).unwrap();
    let rita = token("acme", "rita", &["RiskOfficer"], None);
    let change = |revision: u64, ty: &str, id: &str, parents: &[(&str, &str)]| {
        json!({
            "tenant": "acme", "since": revision - 1, "revision": revision,
            "changes": [{ "revision": revision, "type": ty, "id": id,
                          "entity": entity(ty, id, &json!({}), parents) }]
        })
        .to_string()
    };
    let reasons = |report: &str| engine.decide(&view(&rita, report), NOW).reasons;
    assert_eq!(reasons("acme/q3"), ["division-risk"]);
    assert_eq!(reasons("acme/memo"), ["division-risk"]);
    // Risk moves to retail: its reports are out of markets, though neither was written.
    engine
        .load_tenant_data(&change(
            2,
            "Department",
            "acme/risk",
            &[("Division", "acme/retail")],
        ))
        .unwrap();
    assert!(reasons("acme/q3").is_empty());
    assert!(reasons("acme/memo").is_empty());
    // Drafts goes into the vault: the memo two levels under it is forbidden; out again, not.
    engine
        .load_tenant_data(&change(
            3,
            "Folder",
            "acme/drafts",
            &[("Folder", "acme/vault")],
        ))
        .unwrap();
    engine
        .load_tenant_data(&change(
            4,
            "Department",
            "acme/risk",
            &[("Division", "acme/markets")],
        ))
        .unwrap();
    let decision = engine.decide(&view(&rita, "acme/memo"), NOW);
    assert!(!decision.is_allowed());
    assert_eq!(decision.reasons, ["nothing-from-the-vault"], "{decision:?}");
    assert_eq!(reasons("acme/q3"), ["division-risk"]);
    engine
        .load_tenant_data(&change(5, "Folder", "acme/drafts", &[]))
        .unwrap();
    assert_eq!(reasons("acme/memo"), ["division-risk"]);
    // What the engine keeps and gives back is the entity as written: its parents, not the
    // ancestors decisions see.
    let held = engine.tenant_data("acme").unwrap();
    let memo = held.get("Report", "acme/memo").unwrap();
    let mut parents: Vec<String> = memo["parents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    parents.sort();
    assert_eq!(parents, ["acme/drafts", "acme/risk"], "{memo}");
    let document = held.document();
    let q3 = document
        .entities
        .iter()
        .find(|e| e["uid"]["id"] == "acme/q3")
        .unwrap();
    assert_eq!(q3["parents"].as_array().unwrap().len(), 1, "{q3}");
}

#[test]
fn a_change_of_the_stored_principal_reaches_the_same_token_at_once() {
    let engine = engine();
    engine
        .load_tenant_data(&snapshot("acme", 1, acme_data()))
        .unwrap();
    // Bob's stored entity puts him in the team that owns the folder, and gives him a
    // department that the token does not.
    let bob = token("acme", "bob", &["FinanceAnalyst"], None);
    let decision = engine.decide(&view(&bob, "acme/ledger"), NOW);
    assert_eq!(decision.reasons, ["team-folder"], "{decision:?}");
    assert!(!engine.decide(&view(&bob, "acme/q3"), NOW).is_allowed());
    let change = |revision: u64, attrs: Value, parents: &[(&str, &str)]| {
        json!({
            "tenant": "acme", "since": revision - 1, "revision": revision,
            "changes": [{ "revision": revision, "type": "User", "id": "acme/bob",
                          "entity": entity("User", "acme/bob", &attrs, parents) }]
        })
        .to_string()
    };
    // He leaves the team and moves to risk: the same token, at the next decision, is out of
    // the folder and in risk's reports (the merged principal is made again, not reused).
    engine
        .load_tenant_data(&change(2, json!({"department": "risk"}), &[]))
        .unwrap();
    assert!(!engine.decide(&view(&bob, "acme/ledger"), NOW).is_allowed());
    let decision = engine.decide(&view(&bob, "acme/q3"), NOW);
    assert_eq!(decision.reasons, ["analyst-own-department"], "{decision:?}");
    // And back.
    engine
        .load_tenant_data(&change(3, json!({}), &[("Team", "acme/audit-team")]))
        .unwrap();
    let decision = engine.decide(&view(&bob, "acme/ledger"), NOW);
    assert_eq!(decision.reasons, ["team-folder"], "{decision:?}");
    assert!(!engine.decide(&view(&bob, "acme/q3"), NOW).is_allowed());
}

#[test]
fn a_request_never_supplies_a_stored_types_facts() {
    let engine = engine();
    engine
        .load_tenant_data(&snapshot("acme", 1, acme_data()))
        .unwrap();
    let alice = token("acme", "alice", &["FinanceAnalyst"], Some("risk"));
    let mut request = view(&alice, "acme/invented");
    request.resource.attrs =
        serde_json::from_value(json!({"tenant": "acme", "department": "risk"})).unwrap();
    let decision = engine.decide(&request, NOW);
    assert!(!decision.is_allowed());
    assert_eq!(decision.errors[0].code, "request_stored_attrs");
    // Trusted mode: neither attributes nor entities of a stored type.
    let trusted = TrustedRequest {
        principal: ResourceRef::new("User", "acme/alice"),
        action: "view".into(),
        resource: ResourceRef::new("Report", "acme/q3"),
        entities: Some(json!([entity(
            "Report",
            "acme/q3",
            &json!({"tenant": "acme", "department": "finance"}),
            &[]
        )])),
        tenant: Some("acme".into()),
        context: serde_json::from_value(json!({"mfa": false, "scopes": [], "token_type": "user"}))
            .unwrap(),
    };
    let decision = engine.decide_trusted(&trusted, NOW);
    assert_eq!(decision.errors[0].code, "request_stored_attrs");
    let no_tenant = TrustedRequest {
        tenant: None,
        entities: None,
        ..trusted
    };
    assert_eq!(
        engine.decide_trusted(&no_tenant, NOW).errors[0].code,
        "request_tenant"
    );
}

#[test]
fn nothing_of_one_tenant_reaches_another() {
    let engine = engine();
    engine
        .load_tenant_data(&snapshot("acme", 1, acme_data()))
        .unwrap();
    engine
        .load_tenant_data(&snapshot(
            "globex",
            1,
            vec![entity(
                "Report",
                "globex/q3",
                &json!({"department": "finance"}),
                &[],
            )],
        ))
        .unwrap();
    // A globex analyst of finance asks for acme's report (whose department is risk) and for
    // globex's own.
    let eve = token("globex", "eve", &["FinanceAnalyst"], Some("risk"));
    let decision = engine.decide(&view(&eve, "acme/q3"), NOW);
    assert!(!decision.is_allowed(), "{decision:?}");
    let eve_fin = token("globex", "eve", &["FinanceAnalyst"], Some("finance"));
    assert!(
        engine
            .decide(&view(&eve_fin, "globex/q3"), NOW)
            .is_allowed()
    );
    // acme's alice in finance: globex's finance report is not hers. acme's data has no such
    // report; the decision knows only the tenant its id names, so the guardrail refuses it.
    let alice = token("acme", "alice", &["FinanceAnalyst"], Some("finance"));
    let decision = engine.decide(&view(&alice, "globex/q3"), NOW);
    assert!(!decision.is_allowed());
    assert_eq!(decision.reasons, ["no-cross-tenant"], "{decision:?}");
    // A report acme does not store is its own tenant's, with no other fact: no rule allows it.
    let decision = engine.decide(&view(&alice, "acme/nothing"), NOW);
    assert!(!decision.is_allowed());
    assert!(decision.reasons.is_empty(), "{decision:?}");
    // The same in trusted mode, for the principal too (alice is not stored).
    let trusted = TrustedRequest {
        tenant: Some("acme".into()),
        principal: ResourceRef::new("User", "acme/alice"),
        action: "view".into(),
        resource: ResourceRef::new("Report", "globex/q3"),
        entities: None,
        context: serde_json::from_value(json!({"mfa": false, "scopes": [], "token_type": "user"}))
            .unwrap(),
    };
    let decision = engine.decide_trusted(&trusted, NOW);
    assert_eq!(decision.reasons, ["no-cross-tenant"], "{decision:?}");

    // Documents cannot carry another tenant's entities.
    let smuggled = snapshot(
        "globex",
        2,
        vec![entity(
            "Report",
            "acme/q3",
            &json!({"department": "finance"}),
            &[],
        )],
    );
    let err = engine.load_tenant_data(&smuggled).unwrap_err();
    assert_eq!(err.code(), "data_other_tenant", "{err}");
    let lying = snapshot(
        "globex",
        2,
        vec![entity(
            "Report",
            "globex/x",
            &json!({"tenant": "acme"}),
            &[],
        )],
    );
    assert_eq!(
        engine.load_tenant_data(&lying).unwrap_err().code(),
        "data_other_tenant"
    );
    let parent = snapshot(
        "globex",
        2,
        vec![entity(
            "Report",
            "globex/x",
            &json!({}),
            &[("Department", "acme/risk")],
        )],
    );
    assert_eq!(
        engine.load_tenant_data(&parent).unwrap_err().code(),
        "data_parent_tenant"
    );
    // Refused documents change nothing.
    assert_eq!(engine.tenant_data_revision("globex"), Some(1));
}

#[test]
fn writes_are_checked_against_the_schema_and_the_graph() {
    let bundle = bundle_with(&stored()).unwrap();
    let mut data = TenantData::new("acme");
    data.commit(
        &bundle,
        1,
        acme_data().into_iter().map(EntityWrite::Put).collect(),
    )
    .unwrap();
    let refused = |data: &TenantData, writes: Vec<EntityWrite>| {
        data.check_writes(&bundle, writes).unwrap_err()
    };
    let put = |v: Value| vec![EntityWrite::Put(v)];
    // Undeclared type, undeclared attribute, wrong attribute type, parent type not allowed.
    assert_eq!(
        refused(&data, put(entity("Role", "acme/x", &json!({}), &[]))).code(),
        "data_type"
    );
    assert_eq!(
        refused(
            &data,
            put(entity("Report", "acme/x", &json!({"colour": "red"}), &[]))
        )
        .code(),
        "data_schema"
    );
    assert_eq!(
        refused(
            &data,
            put(entity("Report", "acme/x", &json!({"department": 7}), &[]))
        )
        .code(),
        "data_schema"
    );
    assert_eq!(
        refused(
            &data,
            put(entity(
                "Report",
                "acme/x",
                &json!({}),
                &[("Team", "acme/audit-team")]
            ))
        )
        .code(),
        "data_schema"
    );
    // Ids outside the tenant.
    assert_eq!(
        refused(&data, put(entity("Report", "q3", &json!({}), &[]))).code(),
        "data_other_tenant"
    );
    assert_eq!(
        refused(&data, put(entity("Report", "acme/", &json!({}), &[]))).code(),
        "data_other_tenant"
    );
    // Cycles, within one write and of an entity with itself.
    let folders = vec![
        EntityWrite::Put(entity(
            "Folder",
            "acme/a",
            &json!({}),
            &[("Folder", "acme/b")],
        )),
        EntityWrite::Put(entity(
            "Folder",
            "acme/b",
            &json!({}),
            &[("Folder", "acme/a")],
        )),
    ];
    assert!(matches!(refused(&data, folders), DataError::Cycle { .. }));
    let self_parent = put(entity(
        "Folder",
        "acme/s",
        &json!({}),
        &[("Folder", "acme/s")],
    ));
    assert_eq!(refused(&data, self_parent).code(), "data_cycle");
    // Depth: max_depth is 4 levels. A chain f0 <- f1 <- ... <- f4 is 4 levels: fine; a report
    // under f4 makes 5.
    let chain: Vec<EntityWrite> = (0..5)
        .map(|i| {
            let parents: Vec<(&str, String)> = if i == 0 {
                vec![]
            } else {
                vec![("Folder", format!("acme/f{}", i - 1))]
            };
            let parents: Vec<(&str, &str)> =
                parents.iter().map(|(t, i)| (*t, i.as_str())).collect();
            EntityWrite::Put(entity(
                "Folder",
                &format!("acme/f{i}"),
                &json!({}),
                &parents,
            ))
        })
        .collect();
    data.commit(&bundle, 2, chain).unwrap();
    let deep = put(entity(
        "Report",
        "acme/deep",
        &json!({}),
        &[("Folder", "acme/f4")],
    ));
    assert_eq!(refused(&data, deep).code(), "data_depth");
    // Putting a new root above f0 deepens every descendant: refused too.
    let above = put(entity(
        "Folder",
        "acme/f0",
        &json!({}),
        &[("Folder", "acme/top")],
    ));
    assert_eq!(refused(&data, above).code(), "data_depth");
    // The same entity twice in one write.
    let twice = vec![
        EntityWrite::Put(entity("Team", "acme/t", &json!({}), &[])),
        EntityWrite::Delete {
            entity_type: "Team".into(),
            id: "acme/t".into(),
        },
    ];
    assert_eq!(refused(&data, twice).code(), "data_duplicate");

    // An accepted write: before and after, canonical, with `tenant` filled in.
    let checked = data
        .check_writes(
            &bundle,
            put(entity(
                "Report",
                "acme/q3",
                &json!({"department": "finance"}),
                &[],
            )),
        )
        .unwrap();
    assert_eq!(checked.len(), 1);
    assert_eq!(
        checked[0].before.as_ref().unwrap()["attrs"]["department"],
        "risk"
    );
    assert_eq!(
        checked[0].after.as_ref().unwrap()["attrs"]["tenant"],
        "acme"
    );
    // Checking applies nothing.
    assert_eq!(
        data.get("Report", "acme/q3").unwrap()["attrs"]["department"],
        "risk"
    );
    assert_eq!(data.revision(), 2);
}

#[test]
fn changes_must_start_at_the_revision_held() {
    let engine = engine();
    engine
        .load_tenant_data(&snapshot("acme", 5, acme_data()))
        .unwrap();
    let change = |since: u64, revision: u64| {
        json!({ "tenant": "acme", "since": since, "revision": revision, "changes": [
            { "revision": revision, "type": "Team", "id": "acme/audit-team" }
        ]})
        .to_string()
    };
    assert_eq!(
        engine.load_tenant_data(&change(4, 6)).unwrap_err().code(),
        "data_revision"
    );
    assert_eq!(
        engine.load_tenant_data(&change(5, 4)).unwrap_err().code(),
        "data_revision"
    );
    let loaded = engine.load_tenant_data(&change(5, 6)).unwrap();
    assert_eq!((loaded.revision, loaded.entities), (6, 6));
    // Unknown tenants and malformed documents.
    assert_eq!(
        engine
            .load_tenant_data(&snapshot("initech", 1, vec![]))
            .unwrap_err()
            .code(),
        "data_tenant"
    );
    assert_eq!(
        engine.load_tenant_data("{\"tenant\":").unwrap_err().code(),
        "data_malformed"
    );
    assert_eq!(
        engine
            .load_tenant_data(r#"{"tenant":"acme","revision":1,"extra":true}"#)
            .unwrap_err()
            .code(),
        "data_malformed"
    );
    // Forgetting a tenant's data: its decisions wait for data again.
    assert!(engine.forget_tenant_data("acme"));
    let alice = token("acme", "alice", &["FinanceAnalyst"], Some("finance"));
    assert_eq!(
        engine.decide(&view(&alice, "acme/q3"), NOW).errors[0].code,
        "data_unavailable"
    );
}

#[test]
fn stored_types_are_checked_at_load() {
    let unknown = bundle_with(&json!({"data": {"stored": ["Reprot"]}})).unwrap_err();
    assert!(unknown.contains("did you mean `Report`"), "{unknown}");
    let depth = bundle_with(&json!({"data": {"stored": ["Report"], "max_depth": 0}})).unwrap_err();
    assert!(depth.contains("max_depth"), "{depth}");
    let twice = bundle_with(&json!({"data": {"stored": ["Report", "Report"]}})).unwrap_err();
    assert!(twice.contains("twice"), "{twice}");
    let access = bundle_with(&json!({"data": {"stored": ["Report"], "access": {"resource": "Tenant", "read": "view", "write": "data.write"}}}))
        .unwrap_err();
    assert!(
        access.contains("no action `view` that applies to `Tenant`"),
        "{access}"
    );
    let access =
        bundle_with(&json!({"data": {"stored": ["Report"], "access": {"resource": "Org"}}}))
            .unwrap_err();
    assert!(access.contains("no entity type `Org`"), "{access}");
    // A route cannot give a stored type's attributes: the edge would be taking facts from the
    // client.
    let routes = json!({"routes": [{"path": "/r/{tenant}/{id}", "action": "view",
        "resource": {"type": "Report", "id": "{tenant}/{id}", "attrs": {"tenant": "{tenant}"}}}]});
    let route = bundle_with_routes(&stored(), Some(&routes)).unwrap_err();
    assert!(route.contains("stored type"), "{route}");
    assert!(route.contains("routes.json:"), "{route}");
    let routes = json!({"routes": [{"path": "/r/{tenant}/{id}", "action": "view",
        "resource": {"type": "Report", "id": "{tenant}/{id}"}}]});
    bundle_with_routes(&stored(), Some(&routes)).unwrap();
    // Without stored types a bundle's revision is what it was before data existed.
    let plain = bundle_with(&json!({})).unwrap();
    let engine = Engine::new(plain);
    assert!(!engine.stores_data());
    let alice = token("acme", "alice", &["FinanceAnalyst"], Some("finance"));
    let mut request = view(&alice, "acme/q3");
    request.resource.attrs =
        serde_json::from_value(json!({"tenant": "acme", "department": "finance"})).unwrap();
    let decision = engine.decide(&request, NOW);
    assert!(decision.is_allowed());
    assert_eq!(decision.data_revision, None);
}

/// At the edge, a decision that lacked its tenant's data is unavailable (503), whatever
/// `failure_mode` says: never forwarded on no facts, and the tenant wanted is the token's.
#[test]
fn the_edge_answers_503_until_the_tenants_data_is_loaded_whatever_the_failure_mode() {
    use portcullis_engine::{Edge, EdgeAction, EdgeOptions, EdgeOutcome, HeaderPairs, HttpRequest};
    let routes = json!({"routes": [{"methods": ["GET"], "path": "/r/{tenant}/{id}", "action": "view",
        "resource": {"type": "Report", "id": "{tenant}/{id}"}}]});
    let engine = Engine::new(bundle_with_routes(&stored(), Some(&routes)).unwrap());
    let alice = token("acme", "alice", &["FinanceAnalyst"], Some("finance"));
    let headers = vec![(
        "authorization".to_owned(),
        format!("Bearer {alice}").into_bytes(),
    )];
    for mode in ["closed", "open"] {
        let options: EdgeOptions = serde_json::from_value(json!({"failure_mode": mode})).unwrap();
        let edge = Edge::new(options).unwrap();
        let request = HttpRequest {
            method: "GET",
            path: "/r/globex/q3",
            headers: &HeaderPairs(&headers),
        };
        let verdict = edge.decide(&engine, &request, NOW);
        assert_eq!(verdict.outcome, EdgeOutcome::Unavailable, "{mode}");
        assert!(
            matches!(&verdict.action, EdgeAction::Respond { status: 503, .. }),
            "{mode}: {:?}",
            verdict.action
        );
        // The tenant wanted is the verified token's, not the path's.
        assert_eq!(verdict.data_wanted(), Some("acme"));
        assert_eq!(verdict.tenant(), Some("acme"));
    }
    engine
        .load_tenant_data(&snapshot("acme", 1, acme_data()))
        .unwrap();
    let edge = Edge::new(EdgeOptions::default()).unwrap();
    let request = HttpRequest {
        method: "GET",
        path: "/r/acme/q3",
        headers: &HeaderPairs(&headers),
    };
    let verdict = edge.decide(&engine, &request, NOW);
    assert_eq!(verdict.data_wanted(), None);
    assert_ne!(verdict.outcome, EdgeOutcome::Unavailable);
}
