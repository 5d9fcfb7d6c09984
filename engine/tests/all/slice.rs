//! A signed-in user's slice of the tenant's data: cut by the engine holding the whole data,
//! for the user's own entity and the resources they may do something with; an engine holding
//! only the slice decides those as the server does, and nothing else.

use crate::data::{NOW, acme_data, engine, entity, snapshot, token, view};
use portcullis_engine::{
    Algorithm, DataDocument, DecisionRequest, Engine, EntityRef, ResourceRef, SliceRequest,
    TrustedRequest, sign_with_pem,
};
use serde_json::{Map, Value, json};

/// acme's data of the data tests, and more: a finance report, a report shared with alice, and
/// a report in a folder every policy is forbidden on.
fn acme() -> Vec<Value> {
    let mut data = acme_data();
    data.extend([
        entity("Division", "acme/corporate", &json!({}), &[]),
        entity(
            "Department",
            "acme/finance",
            &json!({}),
            &[("Division", "acme/corporate")],
        ),
        entity(
            "Report",
            "acme/fy",
            &json!({"department": "finance"}),
            &[("Department", "acme/finance")],
        ),
        entity(
            "Report",
            "acme/shared",
            &json!({
                "department": "sales",
                "shared_with": [{"__entity": {"type": "User", "id": "acme/alice"}}]
            }),
            &[],
        ),
        entity("Folder", "acme/vault", &json!({}), &[]),
        entity(
            "Report",
            "acme/secret",
            &json!({"department": "finance"}),
            &[("Folder", "acme/vault")],
        ),
    ]);
    data
}

/// An engine holding acme's (and globex's) whole data, as the decision service does.
fn server() -> Engine {
    let engine = engine();
    engine
        .load_tenant_data(&snapshot("acme", 7, acme()))
        .unwrap();
    let globex = vec![entity(
        "Report",
        "globex/q3",
        &json!({"department": "finance"}),
        &[],
    )];
    engine
        .load_tenant_data(&snapshot("globex", 3, globex))
        .unwrap();
    engine
}

fn reports() -> Vec<EntityRef> {
    ["q3", "ledger", "fy", "shared", "secret", "none"]
        .iter()
        .map(|id| EntityRef::new("Report", format!("acme/{id}")))
        .collect()
}

fn ids(document: &DataDocument) -> Vec<String> {
    document
        .entities
        .iter()
        .map(|e| {
            format!(
                "{}::{}",
                e["uid"]["type"].as_str().unwrap(),
                e["uid"]["id"].as_str().unwrap()
            )
        })
        .collect()
}

fn request(token: &str, action: &str, report: &str, context: Value) -> DecisionRequest {
    DecisionRequest {
        token: Some(token.to_owned()),
        action: action.into(),
        resource: ResourceRef::new("Report", report),
        context: serde_json::from_value::<Map<String, Value>>(context).unwrap(),
    }
}

#[test]
fn a_slice_holds_the_users_own_entity_and_what_they_may_act_on() {
    let server = server();
    // Bob is stored (in the audit team, which owns the audit folder and its ledger).
    let bob = token("acme", "bob", &[], None);
    let mut asked = reports();
    asked.extend([
        EntityRef::new("User", "acme/carol"),
        EntityRef::new("Report", "globex/q3"),
    ]);
    let request = SliceRequest::new("acme", &asked).unwrap();
    assert_eq!(request.resources().len(), 7, "globex's report is left out");
    let slice = server.data_slice(&bob, &request, NOW).unwrap();
    let document: DataDocument = serde_json::from_str(&slice.json).unwrap();
    assert_eq!((document.tenant.as_str(), document.revision), ("acme", 7));
    // His own entity and team; the ledger he may view and its folder. Not the reports of
    // departments he is not in, not the vault, not carol (a user he may do nothing with).
    assert_eq!(
        ids(&document),
        [
            "Folder::acme/audit",
            "Report::acme/ledger",
            "Team::acme/audit-team",
            "User::acme/bob"
        ]
    );
    let scope = document.slice.unwrap();
    assert_eq!(scope.principal, EntityRef::new("User", "acme/bob"));
    assert_eq!(scope.resources, [EntityRef::new("Report", "acme/ledger")]);
    assert_eq!((slice.asked, slice.entities), (7, 4));
    // What a user learns from a resource they may act on: all of its attributes. The ledger's
    // `shared_with` names carol (her uid, not her entity).
    assert!(slice.json.contains("acme/carol"), "{}", slice.json);
    let audit: Value = serde_json::from_str(&slice.audit_json).unwrap();
    assert_eq!(audit["kind"], "data_slice");
    assert_eq!(audit["principal"], "User::\"acme/bob\"");
    assert_eq!(audit["resources"], json!(["Report::\"acme/ledger\""]));
    assert_eq!(
        (audit["asked"].clone(), audit["data_revision"].clone()),
        (json!(7), json!(7))
    );
    assert!(
        !slice.audit_json.contains(&bob),
        "no token in the audit line"
    );
    assert!(audit["token_fingerprint"].is_string());

    // Alice (finance, not stored): no entity of her own; finance's report and the one shared
    // with her, with their ancestors; never the vault's, though it is in finance too.
    let alice = token("acme", "alice", &["FinanceAnalyst"], Some("finance"));
    let slice = server.data_slice(&alice, &request, NOW).unwrap();
    let document: DataDocument = serde_json::from_str(&slice.json).unwrap();
    assert_eq!(
        ids(&document),
        [
            "Department::acme/finance",
            "Division::acme/corporate",
            "Report::acme/fy",
            "Report::acme/shared"
        ]
    );
    // Asked for nothing: only her own entity, which she does not have.
    let empty = SliceRequest::from_query("acme", "").unwrap();
    let slice = server.data_slice(&alice, &empty, NOW).unwrap();
    let document: DataDocument = serde_json::from_str(&slice.json).unwrap();
    assert!(document.entities.is_empty());
    assert!(document.slice.unwrap().resources.is_empty());
    // One action is enough: an exporter may export every report but the vault's, and view
    // none of them.
    let xena = token("acme", "xena", &["Exporter"], None);
    let slice = server.data_slice(&xena, &request, NOW).unwrap();
    let covered: Vec<&str> = slice.resources.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        covered,
        [
            "acme/fy",
            "acme/ledger",
            "acme/none",
            "acme/q3",
            "acme/shared"
        ]
    );
}

#[test]
fn decisions_on_a_slice_are_the_servers_on_the_whole_data() {
    let server = server();
    let users = [
        token("acme", "alice", &["FinanceAnalyst"], Some("finance")),
        token("acme", "rita", &["RiskOfficer"], None),
        token("acme", "bob", &[], None),
        token("acme", "carol", &[], None),
        token("acme", "xena", &["Exporter"], None),
        token("acme", "dave", &[], None),
        token(
            "acme",
            "frank",
            &["FinanceAnalyst", "Exporter"],
            Some("risk"),
        ),
    ];
    let asked = SliceRequest::new("acme", &reports()).unwrap();
    let mut compared = 0;
    for user in &users {
        let slice = server.data_slice(user, &asked, NOW).unwrap();
        let browser = engine();
        browser.load_data_slice("acme", &slice.json).unwrap();
        for report in reports() {
            let covered = slice.resources.contains(&report);
            for action in ["view", "export"] {
                let request = request(user, action, &report.id, json!({}));
                let (on_server, in_browser) =
                    (server.decide(&request, NOW), browser.decide(&request, NOW));
                if covered {
                    assert_eq!(
                        (
                            in_browser.decision,
                            &in_browser.reasons,
                            in_browser.data_revision
                        ),
                        (
                            on_server.decision,
                            &on_server.reasons,
                            on_server.data_revision
                        ),
                        "{action} {}: {in_browser:?}",
                        report.id
                    );
                    compared += 1;
                } else {
                    // Withheld: the server allows nothing, the browser decides nothing.
                    assert!(!on_server.is_allowed(), "{action} {}", report.id);
                    assert!(!in_browser.is_allowed());
                    assert_eq!(in_browser.errors[0].code, "data_outside_slice");
                }
            }
        }
        // The browser holds nothing of globex: its report is denied there as on the server.
        let other = request(user, "view", "globex/q3", json!({}));
        assert!(!browser.decide(&other, NOW).is_allowed());
        assert!(!server.decide(&other, NOW).is_allowed());
    }
    assert!(compared >= 12, "{compared}");

    // The caveat: the slice is cut with the token's context alone. An action that a request's
    // own context allows (`annotate` with a reason) covers nothing, and the browser denies
    // what the server would allow with that context.
    let dave = &users[5];
    let slice = server.data_slice(dave, &asked, NOW).unwrap();
    assert!(slice.resources.is_empty());
    let browser = engine();
    browser.load_data_slice("acme", &slice.json).unwrap();
    let annotate = request(dave, "annotate", "acme/q3", json!({"reason": "audit"}));
    assert!(server.decide(&annotate, NOW).is_allowed());
    assert_eq!(
        browser.decide(&annotate, NOW).errors[0].code,
        "data_outside_slice"
    );
}

#[test]
fn an_engine_holding_a_slice_decides_for_its_principal_and_resources_only() {
    let server = server();
    let bob = token("acme", "bob", &[], None);
    let ledger = SliceRequest::new("acme", &[EntityRef::new("Report", "acme/ledger")]).unwrap();
    let browser = engine();
    let loaded = browser
        .load_data_slice("acme", &server.data_slice(&bob, &ledger, NOW).unwrap().json)
        .unwrap();
    assert_eq!((loaded.revision, loaded.entities), (7, 4));
    assert!(browser.tenant_data("acme").unwrap().is_slice());
    assert!(browser.decide(&view(&bob, "acme/ledger"), NOW).is_allowed());
    // Another user of the tenant: the slice is not theirs (bob's team would count for them).
    let carol = token("acme", "carol", &[], None);
    let decision = browser.decide(&view(&carol, "acme/ledger"), NOW);
    assert!(!decision.is_allowed());
    assert_eq!(decision.errors[0].code, "data_outside_slice");
    // Trusted mode on a slice: the same rule.
    let trusted = |principal: &str| TrustedRequest {
        principal: ResourceRef::new("User", principal),
        action: "view".into(),
        resource: ResourceRef::new("Report", "acme/ledger"),
        tenant: Some("acme".into()),
        context: serde_json::from_value(json!({
            "mfa": false, "scopes": [], "token_type": "access"
        }))
        .unwrap(),
        ..TrustedRequest::default()
    };
    assert!(
        browser
            .decide_trusted(&trusted("acme/bob"), NOW)
            .is_allowed()
    );
    assert_eq!(
        browser.decide_trusted(&trusted("acme/carol"), NOW).errors[0].code,
        "data_outside_slice"
    );

    // A new slice of the same revision replaces it, and no decision remembered on the first
    // (the token's memo) is answered on the second.
    let q3 = SliceRequest::new("acme", &[EntityRef::new("Report", "acme/q3")]).unwrap();
    let second = server.data_slice(&bob, &q3, NOW).unwrap();
    assert_eq!(second.revision, 7);
    browser.load_data_slice("acme", &second.json).unwrap();
    assert_eq!(
        browser.decide(&view(&bob, "acme/ledger"), NOW).errors[0].code,
        "data_outside_slice"
    );

    // A slice takes no changes (another user's change could not be told apart), and is
    // never the source of a slice.
    let change = json!({"tenant": "acme", "since": 7, "revision": 8, "changes": [
        {"revision": 8, "type": "Report", "id": "acme/ledger", "entity": null}]});
    assert_eq!(
        browser
            .load_tenant_data(&change.to_string())
            .unwrap_err()
            .code(),
        "data_malformed"
    );
    assert_eq!(
        browser.data_slice(&bob, &ledger, NOW).unwrap_err().code(),
        "data_unavailable"
    );
    // What `load_data_slice` takes: a slice, of the tenant named.
    assert_eq!(
        browser
            .load_data_slice("acme", &snapshot("acme", 9, acme()))
            .unwrap_err()
            .code(),
        "data_malformed"
    );
    assert_eq!(
        browser
            .load_data_slice("globex", &second.json)
            .unwrap_err()
            .code(),
        "data_malformed"
    );
    // A slice document whose scope names another tenant's entities is refused.
    let mut forged: Value = serde_json::from_str(&second.json).unwrap();
    forged["slice"]["resources"] = json!([{"type": "Report", "id": "globex/q3"}]);
    assert_eq!(
        browser
            .load_tenant_data(&forged.to_string())
            .unwrap_err()
            .code(),
        "data_other_tenant"
    );
    // The whole data replaces a slice, and decides everything again.
    browser
        .load_tenant_data(&snapshot("acme", 9, acme()))
        .unwrap();
    assert!(!browser.tenant_data("acme").unwrap().is_slice());
    assert!(
        browser
            .decide(&view(&carol, "acme/ledger"), NOW)
            .is_allowed()
    );
}

#[test]
fn a_slice_is_only_ever_of_the_tokens_own_tenant() {
    let server = server();
    let asked = SliceRequest::new("acme", &reports()).unwrap();
    // A globex user asking for acme's slice: refused, whatever the policies say.
    let eve = token(
        "globex",
        "eve",
        &["FinanceAnalyst", "Exporter"],
        Some("finance"),
    );
    let refused = server.data_slice(&eve, &asked, NOW).unwrap_err();
    assert_eq!(
        (refused.code(), refused.http_status()),
        ("data_other_tenant", 403)
    );
    // Their own: only globex's facts.
    let own = SliceRequest::new(
        "globex",
        &[
            EntityRef::new("Report", "globex/q3"),
            EntityRef::new("Report", "acme/fy"),
        ],
    )
    .unwrap();
    let slice = server.data_slice(&eve, &own, NOW).unwrap();
    assert!(!slice.json.contains("acme"), "{}", slice.json);
    assert_eq!(slice.resources, [EntityRef::new("Report", "globex/q3")]);
    // A token that is not accepted: 401, with the token's code.
    let refused = server.data_slice("not.a.token", &asked, NOW).unwrap_err();
    assert_eq!(
        (refused.code(), refused.http_status()),
        ("token_malformed", 401)
    );
    let alice = token("acme", "alice", &["FinanceAnalyst"], Some("finance"));
    let refused = server.data_slice(&alice, &asked, NOW + 3600).unwrap_err();
    assert_eq!(refused.code(), "token_expired");
    assert!(!refused.to_string().contains(&alice));
    // A token naming a key the issuer does not have: the host should fetch its keys.
    let (pem, _) = crate::data::dev_key("acme-rs256");
    let header: Map<String, Value> =
        serde_json::from_value(json!({"alg": "RS256", "typ": "JWT", "kid": "rotated"})).unwrap();
    let claims: Map<String, Value> = serde_json::from_value(json!({
        "iss": crate::data::issuer("acme"), "aud": "api", "sub": "alice",
        "iat": NOW - 10, "exp": NOW + 600
    }))
    .unwrap();
    let unknown = sign_with_pem(&header, &claims, Algorithm::RS256, &pem).unwrap();
    let refused = server.data_slice(&unknown, &asked, NOW).unwrap_err();
    assert_eq!(refused.code(), "token_unknown_kid");
    // Before the tenant's data is loaded, nothing is cut.
    let empty = engine();
    let refused = empty.data_slice(&alice, &asked, NOW).unwrap_err();
    assert_eq!(
        (refused.code(), refused.http_status()),
        ("data_unavailable", 503)
    );
}
