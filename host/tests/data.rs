//! The tenants' stored data through the decision service over real HTTP: the write API
//! authorized by the engine from the caller's token, every change audited, decisions that
//! follow the store at once, the sync endpoint, tenant isolation, and two replicas on one
//! PostgreSQL database.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Running, agent, send, techfin_storing_reports, techfin_storing_slices, token_of};
use portcullis::service::{AuditTarget, BundleSource, DataOptions, Options};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

fn options(bundle: &Path, store: &str) -> Options {
    let mut options = Options::new(
        BundleSource::Path(bundle.to_path_buf()),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    options.audit.target = AuditTarget::Off;
    options.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    options.data = Some(DataOptions {
        store: store.to_owned(),
        poll_interval: Duration::from_millis(50),
        ..DataOptions::default()
    });
    options
}

/// An Entra app-only token of `tenant`'s back-office application, with the `DataWriter` role.
fn back_office(dir: &Path, tenant: &str) -> String {
    token_of(
        dir,
        tenant,
        json!({
            "oid": "b0ff1ce0-0000-4000-8000-000000000001",
            "sub": "b0ff1ce0-0000-4000-8000-000000000001",
            "azp": "backoffice-app",
            "idtyp": "app",
            "roles": ["DataWriter"]
        }),
    )
}

fn analyst(dir: &Path, tenant: &str) -> String {
    token_of(
        dir,
        tenant,
        json!({"oid": "alice", "roles": ["FinanceAnalyst"], "department": "finance"}),
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The analyst's decision on viewing `acme/<report>`: outcome and data revision.
fn view(base: &str, token: &str, report: &str) -> (String, Value) {
    let body =
        json!({"token": token, "action": "view", "resource": {"type": "Report", "id": report}});
    let (_, _, text) = send(
        &agent(),
        "POST",
        &format!("{base}/v1/decide"),
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
    let decision: Value = serde_json::from_str(&text).unwrap();
    (
        decision["decision"].as_str().unwrap().to_owned(),
        decision["data_revision"].clone(),
    )
}

fn code(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn a_back_office_writes_its_tenants_facts_and_every_decision_follows_them() {
    let dir = techfin_storing_reports("data-api");
    let store = dir.join("data.db");
    let audit = dir.join("audit.jsonl");
    let mut options = options(&dir, &format!("sqlite:{}", store.display()));
    options.audit.target = AuditTarget::File(audit.clone());
    let running = Running::start(options);
    let (base, agent) = (&running.base, agent());
    let writer = back_office(&dir, "acme");
    let auth = bearer(&writer);
    let json_auth = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let alice = analyst(&dir, "acme");
    let entity = |rest: &str| format!("{base}/v1/data/acme/entities/Report/{rest}");

    // Nothing stored: the analyst is denied, at data revision 0.
    assert_eq!(view(base, &alice, "acme/q3"), ("deny".into(), json!(0)));

    // The backend stores the report in risk: still denied.
    let (status, headers, body) = send(
        &agent,
        "PUT",
        &entity("q3"),
        &json_auth,
        br#"{"attrs": {"department": "risk"}}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["etag"], "\"1\"");
    let written: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(written["revision"], 1);
    assert_eq!(written["entity"]["attrs"]["tenant"], "acme", "{body}");
    assert_eq!(view(base, &alice, "acme/q3"), ("deny".into(), json!(1)));

    // It moves to finance: allowed, on the very next request.
    let (status, _, body) = send(
        &agent,
        "PATCH",
        &entity("q3"),
        &json_auth,
        br#"{"attrs": {"department": "finance"}}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(view(base, &alice, "acme/q3"), ("allow".into(), json!(2)));

    // Read back, as an entity and as the tenant's sync documents.
    let auth_only = [("authorization", auth.as_str())];
    let (status, headers, body) = send(&agent, "GET", &entity("q3"), &auth_only, b"");
    assert_eq!(status, 200);
    assert_eq!(headers["etag"], "\"2\"");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["attrs"]["department"],
        "finance"
    );
    let sync = format!("{base}/v1/data/acme");
    let (status, headers, body) = send(&agent, "GET", &sync, &auth_only, b"");
    assert_eq!(status, 200, "{body}");
    let snapshot: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(snapshot["revision"], 2);
    assert_eq!(snapshot["entities"].as_array().unwrap().len(), 1);
    let tag = headers["etag"].to_str().unwrap().to_owned();
    let (status, _, _) = send(
        &agent,
        "GET",
        &sync,
        &[("authorization", auth.as_str()), ("if-none-match", &tag)],
        b"",
    );
    assert_eq!(status, 304);
    let (status, _, body) = send(&agent, "GET", &format!("{sync}?since=1"), &auth_only, b"");
    assert_eq!(status, 200);
    let changes: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (changes["since"].clone(), changes["revision"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(
        changes["changes"][0]["entity"]["attrs"]["department"],
        "finance"
    );
    // The admin listener serves the same documents to hosts that keep every tenant's data.
    let (status, _, admin_body) = send(
        &agent,
        "GET",
        &format!("{}/v1/data/acme", running.admin),
        &[],
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&admin_body).unwrap(),
        snapshot
    );

    // Bulk: an NDJSON import is one commit; the export and the listing show it.
    let lines = (1..=3)
        .map(|i| {
            json!({"uid": {"type": "Report", "id": format!("acme/r{i}")}, "attrs": {"department": "sales"}})
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    let (status, _, body) = send(
        &agent,
        "POST",
        &format!("{base}/v1/data/acme/import"),
        &auth_only,
        lines.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let imported: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (imported["revision"].clone(), imported["written"].clone()),
        (json!(3), json!(3))
    );
    let (_, _, exported) = send(
        &agent,
        "GET",
        &format!("{base}/v1/data/acme/export"),
        &auth_only,
        b"",
    );
    assert_eq!(exported.lines().count(), 4, "{exported}");
    let (_, _, page) = send(
        &agent,
        "GET",
        &format!("{base}/v1/data/acme/entities?type=Report&limit=2"),
        &auth_only,
        b"",
    );
    let page: Value = serde_json::from_str(&page).unwrap();
    assert_eq!(page["entities"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap().to_owned();
    let (_, _, page) = send(
        &agent,
        "GET",
        &format!(
            "{base}/v1/data/acme/entities?type=Report&limit=2&after={}",
            urlencode(&next)
        ),
        &auth_only,
        b"",
    );
    let page: Value = serde_json::from_str(&page).unwrap();
    assert_eq!(page["entities"].as_array().unwrap().len(), 2, "{page}");

    // A write based on a stale revision is refused; a delete takes the report away.
    let (status, _, body) = send(
        &agent,
        "DELETE",
        &entity("q3"),
        &[("authorization", auth.as_str()), ("if-match", "\"2\"")],
        b"",
    );
    assert_eq!((status, code(&body)), (412, "data_revision".into()));
    let (status, _, _) = send(&agent, "DELETE", &entity("q3"), &auth_only, b"");
    assert_eq!(status, 200);
    assert_eq!(view(base, &alice, "acme/q3"), ("deny".into(), json!(4)));

    // Every change has its audit record: who, what, before → after, at which revision.
    drop(running);
    let audit = std::fs::read_to_string(&audit).unwrap();
    let changes: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "data_change")
        .collect();
    assert_eq!(changes.len(), 6, "{audit}");
    let moved = &changes[1];
    assert_eq!(moved["entity"], "Report::\"acme/q3\"");
    assert_eq!(moved["before"]["attrs"]["department"], "risk");
    assert_eq!(moved["after"]["attrs"]["department"], "finance");
    assert_eq!(moved["revision"], 2);
    assert_eq!(moved["tenant"], "acme");
    assert!(
        moved["actor"]
            .as_str()
            .unwrap()
            .starts_with("Client::\"acme/"),
        "{moved}"
    );
    assert!(changes[5]["after"].is_null(), "the delete: {}", changes[5]);
    assert!(!audit.contains(&writer), "no token in the audit trail");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn no_one_writes_another_tenants_data_or_what_the_schema_does_not_declare() {
    let dir = techfin_storing_reports("data-abuse");
    let store = dir.join("data.db");
    let running = Running::start(options(&dir, &format!("sqlite:{}", store.display())));
    let (base, agent) = (&running.base, agent());
    let acme = bearer(&back_office(&dir, "acme"));
    // wonka signs in with Entra ID too: its back office has the same kind of token.
    let wonka = bearer(&back_office(&dir, "wonka"));
    let put = |auth: &str, tenant: &str, rest: &str, body: &str| {
        let (status, _, text) = send(
            &agent,
            "PUT",
            &format!("{base}/v1/data/{tenant}/entities/Report/{rest}"),
            &[("authorization", auth)],
            body.as_bytes(),
        );
        (status, code(&text))
    };
    // No token, a broken token, a user without the permission.
    let (status, _, _) = send(
        &agent,
        "PUT",
        &format!("{base}/v1/data/acme/entities/Report/q3"),
        &[],
        b"{}",
    );
    assert_eq!(status, 401);
    assert_eq!(put("Bearer x.y.z", "acme", "q3", "{}").0, 401);
    let alice = bearer(&analyst(&dir, "acme"));
    assert_eq!(put(&alice, "acme", "q3", "{}"), (403, "forbidden".into()));
    // wonka's back office, on acme's data: refused by the tenant binding, whatever the
    // policies say; its own tenant's write goes through.
    assert_eq!(
        put(&wonka, "acme", "q3", "{}"),
        (403, "data_other_tenant".into())
    );
    assert_eq!(put(&wonka, "wonka", "q3", "{}").0, 200);
    // The body cannot name another entity (or another tenant's).
    assert_eq!(
        put(
            &acme,
            "acme",
            "q3",
            r#"{"uid": {"type": "Report", "id": "globex/q3"}}"#
        ),
        (400, "data_malformed".into())
    );
    // Undeclared attributes, wrong types, undeclared parents, types that are not stored.
    assert_eq!(
        put(&acme, "acme", "q3", r#"{"attrs": {"colour": "red"}}"#),
        (400, "data_schema".into())
    );
    assert_eq!(
        put(&acme, "acme", "q3", r#"{"attrs": {"department": 7}}"#),
        (400, "data_schema".into())
    );
    assert_eq!(
        put(&acme, "acme", "q3", r#"{"attrs": {"tenant": "globex"}}"#),
        (403, "data_other_tenant".into())
    );
    let (status, _, text) = send(
        &agent,
        "PUT",
        &format!("{base}/v1/data/acme/entities/User/bob"),
        &[("authorization", acme.as_str())],
        b"{}",
    );
    assert_eq!((status, code(&text)), (400, "data_type".into()));
    // Unknown tenants, oversized bodies, malformed JSON.
    assert_eq!(
        put(&acme, "nosuch", "q3", "{}"),
        (404, "data_tenant".into())
    );
    let huge = format!(
        r#"{{"attrs": {{"department": "{}"}}}}"#,
        "x".repeat(200_000)
    );
    // Refused on its declared length, before a byte of it is read: sent as the head alone, as
    // a client that sent the whole body could see the connection reset before the answer.
    let head = format!(
        "PUT /v1/data/acme/entities/Report/q3 HTTP/1.1\r\nhost: {host}\r\nauthorization: {acme}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        huge.len(),
        host = base.trim_start_matches("http://"),
    );
    let mut stream = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
    let mut answer = [0u8; 12];
    std::io::Read::read_exact(&mut stream, &mut answer).unwrap();
    assert_eq!(
        &answer,
        b"HTTP/1.1 413",
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(put(&acme, "acme", "q3", "{").1, "data_malformed");
    // Nothing of wonka reaches acme: not in acme's documents, not in its decisions.
    let (_, _, body) = send(
        &agent,
        "GET",
        &format!("{base}/v1/data/acme"),
        &[("authorization", acme.as_str())],
        b"",
    );
    let snapshot: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        snapshot["entities"],
        json!(null),
        "acme stored nothing: {body}"
    );
    let (status, _, body) = send(
        &agent,
        "GET",
        &format!("{base}/v1/data/wonka"),
        &[("authorization", acme.as_str())],
        b"",
    );
    assert_eq!((status, code(&body)), (403, "data_other_tenant".into()));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn entity(ty: &str, id: &str, attrs: Value, parents: &[(&str, &str)]) -> String {
    let parents: Vec<Value> = parents
        .iter()
        .map(|(t, i)| json!({"type": t, "id": i}))
        .collect();
    json!({"uid": {"type": ty, "id": id}, "attrs": attrs, "parents": parents}).to_string()
}

/// The ids of a slice document's entities, `Type::id`, and the resources it covers.
fn slice_of(body: &str) -> (Vec<String>, Vec<String>) {
    let document: Value = serde_json::from_str(body).unwrap();
    let name = |e: &Value| {
        format!(
            "{}::{}",
            e["type"].as_str().unwrap(),
            e["id"].as_str().unwrap()
        )
    };
    let entities = document["entities"].as_array().cloned().unwrap_or_default();
    let resources = document["slice"]["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (
        entities.iter().map(|e| name(&e["uid"])).collect(),
        resources.iter().map(name).collect(),
    )
}

#[test]
fn a_users_slice_holds_their_own_facts_and_only_what_they_may_act_on() {
    let dir = techfin_storing_slices("data-slice");
    let store = dir.join("data.db");
    let audit = dir.join("audit.jsonl");
    let mut options = options(&dir, &format!("sqlite:{}", store.display()));
    options.audit.target = AuditTarget::File(audit.clone());
    let running = Running::start(options);
    let (base, agent) = (&running.base, agent());
    let writer = bearer(&back_office(&dir, "acme"));
    let lines = [
        entity("Team", "acme/analysts", json!({}), &[]),
        entity("Team", "acme/admins", json!({}), &[]),
        entity(
            "User",
            "acme/alice",
            json!({"email": "alice@acme.example"}),
            &[("Team", "acme/analysts")],
        ),
        entity(
            "User",
            "acme/bob",
            json!({"department": "finance", "email": "bob@acme.example"}),
            &[("Team", "acme/admins")],
        ),
        entity("Department", "acme/risk", json!({}), &[]),
        entity("Department", "acme/finance", json!({}), &[]),
        entity(
            "Report",
            "acme/q3",
            json!({"department": "risk"}),
            &[("Department", "acme/risk")],
        ),
        entity(
            "Report",
            "acme/q9",
            json!({"department": "finance"}),
            &[("Department", "acme/finance")],
        ),
    ]
    .join("\n");
    let (status, _, body) = send(
        &agent,
        "POST",
        &format!("{base}/v1/data/acme/import"),
        &[("authorization", writer.as_str())],
        lines.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let alice = token_of(
        &dir,
        "acme",
        json!({"oid": "alice", "roles": ["FinanceAnalyst"], "department": "finance", "amr": ["pwd", "mfa"]}),
    );
    let slice_url = |query: &str| format!("{base}/v1/data/acme/slice?{query}");
    let get = |url: &str, token: &str, extra: &[(&str, &str)]| {
        let auth = bearer(token);
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        send(&agent, "GET", url, &headers, b"")
    };
    let asked = "resource=Report/q3&resource=Report/q9&resource=User/bob";

    // Her own entity and team; the finance report and its department. Not the risk report
    // (she may do nothing with it), not bob (a user she may not manage) nor his team.
    let (status, headers, body) = get(&slice_url(asked), &alice, &[]);
    assert_eq!(status, 200, "{body}");
    let (entities, covered) = slice_of(&body);
    assert_eq!(
        entities,
        [
            "Department::acme/finance",
            "Report::acme/q9",
            "Team::acme/analysts",
            "User::acme/alice"
        ]
    );
    assert_eq!(covered, ["Report::acme/q9"]);
    assert!(!body.contains("bob"), "{body}");
    let document: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(document["revision"], 1);
    assert_eq!(document["slice"]["principal"]["id"], "acme/alice");
    assert_eq!(headers["cache-control"], "private, no-store");
    assert_eq!(headers["vary"], "authorization");
    let tag = headers["etag"].to_str().unwrap().to_owned();
    assert!(tag.starts_with("\"1-"), "{tag}");
    let (status, headers, _) = get(&slice_url(asked), &alice, &[("if-none-match", &tag)]);
    assert_eq!(
        (status, headers["etag"].to_str().unwrap()),
        (304, tag.as_str())
    );

    // An engine holding only the slice (a browser's: the tenant's distributable bundle)
    // decides the requested resources as the service does on the whole data.
    let compiled = portcullis::bundle_dir::compile(&dir).unwrap();
    let browser = portcullis_engine::Engine::new(
        portcullis_engine::Bundle::load(compiled.for_tenant("acme").unwrap()).unwrap(),
    );
    browser.load_data_slice("acme", &body).unwrap();
    let now = common::now();
    for report in ["acme/q3", "acme/q9"] {
        for action in ["view", "export"] {
            let request = json!({"action": action, "resource": {"type": "Report", "id": report}});
            let (_, _, text) = send(
                &agent,
                "POST",
                &format!("{base}/v1/decide"),
                &[("authorization", bearer(&alice).as_str())],
                request.to_string().as_bytes(),
            );
            let served: Value = serde_json::from_str(&text).unwrap();
            let mut local: portcullis_engine::DecisionRequest =
                serde_json::from_value(request).unwrap();
            local.token = Some(alice.clone());
            let decided = browser.decide(&local, now);
            assert_eq!(
                (decided.decision.as_str(), json!(decided.reasons)),
                (
                    served["decision"].as_str().unwrap(),
                    served["reasons"].clone()
                ),
                "{action} {report}: {text}"
            );
            if report == "acme/q3" {
                assert_eq!(decided.errors[0].code, "data_outside_slice");
            }
        }
    }

    // The report moves to finance: the next slice holds it, at the new revision.
    let (status, _, body) = send(
        &agent,
        "PATCH",
        &format!("{base}/v1/data/acme/entities/Report/q3"),
        &[("authorization", writer.as_str())],
        br#"{"attrs": {"department": "finance"}, "parents": [{"type": "Department", "id": "acme/finance"}]}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, headers, body) = get(&slice_url(asked), &alice, &[("if-none-match", &tag)]);
    assert_eq!(status, 200, "{body}");
    assert!(headers["etag"].to_str().unwrap().starts_with("\"2-"));
    assert_eq!(slice_of(&body).1, ["Report::acme/q3", "Report::acme/q9"]);

    // A tenant administrator may manage bob: bob's entity comes, with his team.
    let admin = token_of(
        &dir,
        "acme",
        json!({"oid": "tess", "roles": ["TenantAdmin"], "amr": ["pwd", "mfa"]}),
    );
    let (status, _, body) = get(&slice_url("resource=User/bob"), &admin, &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        slice_of(&body),
        (
            vec!["Team::acme/admins".into(), "User::acme/bob".into()],
            vec!["User::acme/bob".into()]
        )
    );
    // Asked for nothing: only one's own entity and ancestors (tess has none stored).
    let (status, _, body) = get(&format!("{base}/v1/data/acme/slice"), &admin, &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(slice_of(&body), (vec![], vec![]));

    // Who was given what is in the audit log, without the token.
    drop(running);
    let audit = std::fs::read_to_string(&audit).unwrap();
    let slices: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "data_slice")
        .collect();
    assert_eq!(slices.len(), 5, "{audit}");
    assert_eq!(slices[0]["principal"], "User::\"acme/alice\"");
    assert_eq!(slices[0]["resources"], json!(["Report::\"acme/q9\""]));
    assert_eq!(slices[0]["asked"], 3);
    assert!(!audit.contains(&alice), "no token in the audit trail");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_slice_is_never_another_tenants_and_never_without_a_valid_token() {
    let dir = techfin_storing_slices("data-slice-abuse");
    let store = dir.join("data.db");
    let running = Running::start(options(&dir, &format!("sqlite:{}", store.display())));
    let (base, agent) = (&running.base, agent());
    let writer = bearer(&back_office(&dir, "acme"));
    let (status, _, body) = send(
        &agent,
        "PUT",
        &format!("{base}/v1/data/acme/entities/Report/q3"),
        &[("authorization", writer.as_str())],
        br#"{"attrs": {"department": "finance"}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let get = |url: &str, auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let (status, headers, body) = send(&agent, "GET", url, &headers, b"");
        (status, headers, code(&body), body)
    };
    let acme_slice = format!("{base}/v1/data/acme/slice?resource=Report/q3");
    // wonka's finance analyst (Entra too) asks for acme's slice: refused by the tenant
    // binding; wonka's own slice asking for acme's report holds nothing of acme.
    let wonka = bearer(&analyst(&dir, "wonka"));
    let (status, _, code_, _) = get(&acme_slice, Some(&wonka));
    assert_eq!((status, code_.as_str()), (403, "data_other_tenant"));
    let (status, _, _, body) = get(
        &format!("{base}/v1/data/wonka/slice?resource=Report/q3&resource=Report/acme%2Fq3"),
        Some(&wonka),
    );
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("\"acme"), "{body}");
    assert_eq!(slice_of(&body), (vec![], vec![]));
    // No token, a broken one, another scheme: 401 with a challenge.
    for auth in [None, Some("Bearer x.y.z"), Some("Basic YWxpY2U6cHc=")] {
        let (status, headers, code_, body) = get(&acme_slice, auth);
        assert_eq!(
            (status, code_.as_str()),
            (401, "unauthenticated"),
            "{auth:?}: {body}"
        );
        assert!(headers.contains_key("www-authenticate"));
    }
    // Malformed, unknown and too many parameters; an overlong query.
    let alice = bearer(&analyst(&dir, "acme"));
    let many = (0..=100)
        .map(|i| format!("resource=Report/r{i}"))
        .collect::<Vec<_>>()
        .join("&");
    let long = format!("resource=Report/{}", "x".repeat(40_000));
    for query in [
        "resource=Report",
        "resource=/q3",
        "resource=Report/%ZZ",
        "since=1",
        "resource=Not%20a%20type/q3",
        many.as_str(),
        long.as_str(),
    ] {
        let (status, _, code_, body) =
            get(&format!("{base}/v1/data/acme/slice?{query}"), Some(&alice));
        assert_eq!(
            (status, code_.as_str()),
            (400, "request_invalid"),
            "{}: {body}",
            query.chars().take(40).collect::<String>()
        );
    }
    // 100 resources are fine; an unknown tenant is not.
    let hundred = (0..100)
        .map(|i| format!("resource=Report/r{i}"))
        .collect::<Vec<_>>()
        .join("&");
    let (status, _, _, body) = get(
        &format!("{base}/v1/data/acme/slice?{hundred}"),
        Some(&alice),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _, code_, _) = get(&format!("{base}/v1/data/nosuch/slice"), Some(&alice));
    assert_eq!((status, code_.as_str()), (404, "data_tenant"));
    // The analyst needs no data permission for her own slice, but still has none for the
    // tenant's whole data.
    let (status, _, _, _) = get(&acme_slice, Some(&alice));
    assert_eq!(status, 200);
    let (status, _, code_, _) = get(&format!("{base}/v1/data/acme"), Some(&alice));
    assert_eq!((status, code_.as_str()), (403, "forbidden"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The PostgreSQL database the tests may use (`PORTCULLIS_TEST_POSTGRES`); without it the
/// test fails, unless `PORTCULLIS_SKIP_POSTGRES=1` says to skip it.
fn postgres() -> Option<String> {
    match std::env::var("PORTCULLIS_TEST_POSTGRES") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("PORTCULLIS_SKIP_POSTGRES").as_deref() == Ok("1") => {
            eprintln!("skipped: PORTCULLIS_SKIP_POSTGRES=1 and no PORTCULLIS_TEST_POSTGRES");
            None
        }
        Err(_) => panic!(
            "PORTCULLIS_TEST_POSTGRES is not set (scripts/postgres.sh starts a cluster); \
             PORTCULLIS_SKIP_POSTGRES=1 skips this test"
        ),
    }
}

#[test]
fn two_replicas_on_one_postgresql_see_each_others_writes() {
    let Some(url) = postgres() else { return };
    // A schema of its own: the store's tables are created in it, apart from other tests'.
    let schema = format!("replicas_{}_{}", std::process::id(), common::now());
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    let dir = techfin_storing_reports("data-replicas");
    let first = Running::start(options(&dir, &url));
    let second = Running::start(options(&dir, &url));
    let agent = agent();
    let tenant = "acme";
    let writer = bearer(&back_office(&dir, tenant));
    let alice = analyst(&dir, tenant);
    let id = "q3";
    let report = format!("{tenant}/{id}");
    let write = |running: &Running, department: &str| {
        let (status, _, body) = send(
            &agent,
            "PUT",
            &format!("{}/v1/data/{tenant}/entities/Report/{id}", running.base),
            &[("authorization", writer.as_str())],
            json!({"attrs": {"department": department}})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["revision"]
            .as_u64()
            .unwrap()
    };
    let until_allowed = |running: &Running, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (outcome, _) = view(&running.base, &alice, &report);
            if outcome == want {
                return;
            }
            assert!(Instant::now() < deadline, "the replica never saw the write");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Written through the first, enforced by the second; and the other way round, each
    // replica's write based on the revision the other made.
    let r1 = write(&first, "finance");
    until_allowed(&second, "allow");
    let r2 = write(&second, "risk");
    assert_eq!(r2, r1 + 1);
    until_allowed(&first, "deny");
    let r3 = write(&first, "finance");
    assert_eq!(r3, r2 + 1);
    until_allowed(&second, "allow");
    drop((first, second));
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
