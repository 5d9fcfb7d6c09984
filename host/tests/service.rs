//! The decision service over real HTTP on loopback: endpoints, limits and errors, reload under
//! load, the sandbox's deadline and memory limit (abuse and the connection cap: `abuse.rs`).

// Test helpers outside `#[test]` functions unwrap too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Running, agent, analyst_token, copy_dir, now, send, techfin, token_of, view_request};
use portcullis::bundle_dir::compile;
use portcullis::component::{CallError, Limits, Loaded, Pool, Runtime, TenantDocs};
use portcullis::service::{
    AuditTarget, BundleSource, InstallError, Options, Refusal, Server, StartError,
};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Status and body of a POST.
fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> (u16, String) {
    let mut response = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

fn get(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)]) -> (u16, Option<String>, String) {
    let mut request = agent.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, etag, response.body_mut().read_to_string().unwrap())
}

fn options(bundle: &Path) -> Options {
    let mut options = Options::new(
        BundleSource::Path(bundle.to_path_buf()),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    options.audit.target = AuditTarget::Off;
    options.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let name = bundle
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    options.data = Some(common::seeded_store(&name, bundle));
    options
}

#[test]
fn the_token_travels_one_way_header_or_body() {
    let dir = techfin();
    let mut options = options(&dir);
    options.tenant_metrics = true;
    let running = Running::start(options);
    let (base, agent) = (&running.base, agent());
    let token = analyst_token(&dir);
    let request = r#"{"action": "view", "resource": {"type": "Report", "id": "acme/q3"}}"#;
    let bearer = format!("Bearer {token}");
    let decide = |headers: &[(&str, &str)], body: &str| {
        let (status, headers, body) = send(
            &agent,
            "POST",
            &format!("{base}/v1/decide"),
            headers,
            body.as_bytes(),
        );
        (
            status,
            headers,
            serde_json::from_str::<Value>(&body).unwrap(),
        )
    };
    // `Authorization: Bearer` (RFC 6750 §2.1), as ext_authz and the Envoy filter take it.
    let (status, _, decision) = decide(&[("authorization", &bearer)], request);
    assert_eq!(status, 200, "{decision}");
    assert_eq!(decision["decision"], "allow", "{decision}");
    // Both the header and the body's `token`, another scheme, a header sent twice: 400, with
    // RFC 6750's `invalid_request`, and never the token in the answer.
    let both = view_request(&token);
    for (headers, body, why) in [
        (
            vec![("authorization", bearer.as_str())],
            both.as_str(),
            "more than one way",
        ),
        (
            vec![("authorization", "Basic dXNlcjpwdw==")],
            request,
            "not a bearer token",
        ),
        (
            vec![
                ("authorization", bearer.as_str()),
                ("authorization", bearer.as_str()),
            ],
            request,
            "more than once",
        ),
    ] {
        let (status, headers, error) = decide(&headers, body);
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["code"], "request_invalid");
        assert!(error["message"].as_str().unwrap().contains(why), "{error}");
        assert!(!error.to_string().contains(&token[..40]));
        if why != "more than one way" {
            assert_eq!(
                headers["www-authenticate"],
                "Bearer realm=\"portcullis\", error=\"invalid_request\""
            );
        }
    }

    // A batch with one token for all (`{token, requests}`, as the JS SDK's `decideMany`), or
    // the header; an element with its own token then fails alone.
    let other_department = r#"{"action": "view", "resource": {"type": "Report", "id": "acme/q4"}}"#;
    let batch = |headers: &[(&str, &str)], body: String| {
        let (status, _, body) = send(
            &agent,
            "POST",
            &format!("{base}/v1/decide/batch"),
            headers,
            body.as_bytes(),
        );
        (status, serde_json::from_str::<Value>(&body).unwrap())
    };
    let (status, answer) = batch(
        &[],
        format!(r#"{{"token": "{token}", "requests": [{request}, {other_department}, {both}]}}"#),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decisions"][0]["decision"], "allow", "{answer}");
    assert_eq!(answer["decisions"][1]["decision"], "deny", "{answer}");
    assert_eq!(answer["decisions"][2]["error"]["code"], "request_invalid");
    let (status, answer) = batch(
        &[("authorization", &bearer)],
        format!("[{request}, {other_department}]"),
    );
    assert_eq!(answer["decisions"][1]["decision"], "deny", "{answer}");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decisions"][0]["decision"], "allow", "{answer}");
    for (headers, body) in [
        (
            vec![("authorization", bearer.as_str())],
            format!(r#"{{"token": "{token}", "requests": []}}"#),
        ),
        (
            vec![],
            format!(r#"{{"token": "{token}", "requests": [], "extra": 1}}"#),
        ),
        (vec![], format!(r#"{{"token": "{token}"}}"#)),
    ] {
        let (status, error) = batch(&headers, body);
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["code"], "request_invalid", "{error}");
        assert!(!error.to_string().contains(&token[..40]), "{error}");
    }
    // Asked for, decisions are counted by tenant too.
    let (_, _, metrics) = get(&agent, &format!("{}/metrics", running.admin), &[]);
    assert!(
        metrics.contains("portcullis_tenant_decisions_total{tenant=\"acme\",outcome=\"allow\"} 3"),
        "{metrics}"
    );
}

#[test]
fn the_access_log_has_a_line_per_request_and_never_the_query() {
    let dir = techfin();
    let log = std::env::temp_dir().join(format!("portcullis-access-{}.jsonl", std::process::id()));
    std::fs::remove_file(&log).ok();
    let mut options = options(&dir);
    options.access_log = AuditTarget::File(log.clone());
    let running = Running::start(options);
    let (base, agent) = (&running.base, agent());
    let token = analyst_token(&dir);
    let (status, _) = post(
        &agent,
        &format!("{base}/v1/decide"),
        view_request(&token).as_bytes(),
    );
    assert_eq!(status, 200);
    let secret_query = format!("{base}/ext_authz/tenants/acme/reports/q3?access_token={token}");
    let (status, _, _) = get(&agent, &secret_query, &[]);
    assert_eq!(status, 401);
    assert_eq!(get(&agent, &format!("{base}/nowhere"), &[]).0, 404);
    drop(running); // shuts down: the log is flushed
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(&token[..40]), "{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(String, String, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["method"].as_str().unwrap().to_owned(),
                l["path"].as_str().unwrap().to_owned(),
                l["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("POST".into(), "/v1/decide".into(), 200),
            (
                "GET".into(),
                "/ext_authz/tenants/acme/reports/q3".into(),
                401
            ),
            ("GET".into(), "/nowhere".into(), 404),
        ],
        "{text}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["ts"].as_str().is_some_and(|t| t.ends_with('Z')))
    );
    std::fs::remove_file(&log).ok();
}

#[test]
fn endpoints_decide_and_refuse_bad_requests() {
    let dir = techfin();
    let audit = std::env::temp_dir().join(format!(
        "portcullis-service-audit-{}.log",
        std::process::id()
    ));
    std::fs::remove_file(&audit).ok();
    let mut options = options(&dir);
    options.audit.target = AuditTarget::File(audit.clone());
    let running = Running::start(options);
    let (base, admin, agent) = (&running.base, &running.admin, agent());
    let token = analyst_token(&dir);

    assert_eq!(get(&agent, &format!("{base}/healthz"), &[]).0, 200);
    assert_eq!(get(&agent, &format!("{base}/readyz"), &[]).0, 200);

    // One decision: allowed, with the engine's decision JSON.
    let (status, body) = post(
        &agent,
        &format!("{base}/v1/decide"),
        view_request(&token).as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let decision: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(decision["decision"], "allow", "{body}");
    assert_eq!(decision["principal"]["tenant"], "acme");
    let revision = decision["revision"].as_str().unwrap().to_owned();

    // No token: unauthenticated, never allow.
    let (status, body) = post(
        &agent,
        &format!("{base}/v1/decide"),
        br#"{"action": "view", "resource": {"type": "Report", "id": "r"}}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["decision"],
        "unauthenticated"
    );

    // Malformed JSON, a wrong shape, not UTF-8, too large: stable codes, no decision, and no
    // part of the request in the answer (a token in the wrong field is not echoed).
    for (bad, status, code) in [
        (b"{not json".to_vec(), 400, "request_invalid"),
        (br#"{"action": 1}"#.to_vec(), 400, "request_invalid"),
        (
            format!(r#"{{"action": "view", "resource": "{token}"}}"#).into_bytes(),
            400,
            "request_invalid",
        ),
        (
            format!(
                r#"{{"tokn": "{token}", "action": "view", "resource": {{"type": "R", "id": "r"}}}}"#
            )
            .into_bytes(),
            400,
            "request_invalid",
        ),
        (vec![0xff, 0xfe], 400, "request_invalid"),
        // Just over the limit: small enough that the client finishes sending before the 413.
        (vec![b' '; (64 << 10) + 100], 413, "request_too_large"),
    ] {
        let (got, body) = post(&agent, &format!("{base}/v1/decide"), &bad);
        assert_eq!(got, status, "{body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["code"], code, "{body}");
        assert!(!body.contains(&token[..40]), "{body}");
        assert!(!body.contains("DecisionRequest"), "{body}");
    }
    let (status, _, body) = get(&agent, &format!("{base}/nowhere"), &[]);
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "not_found"
    );
    // A known endpoint, another method: 405 with `Allow` and the documented body.
    let (status, headers, body) = send(&agent, "GET", &format!("{base}/v1/decide"), &[], b"");
    assert_eq!(status, 405, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "method_not_allowed",
        "{body}"
    );
    assert!(
        headers
            .get("allow")
            .is_some_and(|v| v.to_str().unwrap().contains("POST")),
        "{headers:?}"
    );

    // Batch: one result per element, a bad element fails alone (and says so without a Rust
    // type name).
    let batch = format!("[{}, {{\"action\": 5}}, 42]", view_request(&token));
    let (status, body) = post(&agent, &format!("{base}/v1/decide/batch"), batch.as_bytes());
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["decisions"][0]["decision"], "allow", "{body}");
    assert_eq!(
        answer["decisions"][1]["error"]["code"], "request_invalid",
        "{body}"
    );
    assert!(
        answer["decisions"][2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expected an object, found a number"),
        "{body}"
    );

    // AuthZEN.
    let evaluation = json!({
        "subject": {"type": "user", "id": "alice", "properties": {"token": token}},
        "action": {"name": "view"},
        "resource": {"type": "Report", "id": "acme/q3"},
    });
    let (status, body) = post(
        &agent,
        &format!("{base}/access/v1/evaluation"),
        evaluation.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["decision"],
        true,
        "{body}"
    );
    let mut evaluations = evaluation.clone();
    evaluations["evaluations"] = json!([
        {},
        {"resource": {"type": "Report", "id": "globex/q3"}},
    ]);
    let (status, body) = post(
        &agent,
        &format!("{base}/access/v1/evaluations"),
        evaluations.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["evaluations"][0]["decision"], true, "{body}");
    assert_eq!(answer["evaluations"][1]["decision"], false, "{body}");

    // The bundle and metrics are the admin listener's, not the decision listener's.
    assert_eq!(get(&agent, &format!("{base}/v1/bundle"), &[]).0, 404);
    assert_eq!(get(&agent, &format!("{base}/metrics"), &[]).0, 404);
    let (status, etag, body) = get(&agent, &format!("{admin}/v1/bundle"), &[]);
    assert_eq!(status, 200);
    let etag = etag.unwrap();
    assert_eq!(etag, format!("\"{revision}\""));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["revision"],
        revision.as_str()
    );
    assert_eq!(
        get(
            &agent,
            &format!("{admin}/v1/bundle"),
            &[("if-none-match", &etag)]
        )
        .0,
        304
    );
    assert_eq!(
        get(
            &agent,
            &format!("{admin}/v1/bundle"),
            &[("if-none-match", "\"other\"")]
        )
        .0,
        200
    );

    let (_, _, metrics) = get(&agent, &format!("{admin}/metrics"), &[]);
    assert!(
        metrics.contains("portcullis_decisions_total{outcome=\"allow\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_decisions_total{outcome=\"unauthenticated\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_decision_seconds_count"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_audit_dropped_total 0"),
        "{metrics}"
    );
    // The bundle served, when it was loaded, and decisions with an error by its code; no
    // tenant label unless asked for.
    assert!(
        metrics.contains(&format!(
            "portcullis_bundle_info{{revision=\"{revision}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_bundle_loaded_timestamp_seconds 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_decision_errors_total{code=\"token_missing\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("portcullis_tenant_decisions_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_requests_too_large_total 1"),
        "{metrics}"
    );

    // The audit log has a line per decision, and never the token.
    drop(running);
    let log = std::fs::read_to_string(&audit).unwrap();
    std::fs::remove_file(&audit).ok();
    assert!(!log.contains(&token));
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{log}");
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[0]["tenant"], "acme");
    assert!(lines[0]["token_fingerprint"].is_string());
}

/// A copy of the TechFin pack with an HS256 tenant whose secret is named, not inlined; its
/// development secret in `dev-keys/`, and a secrets directory for the service.
fn pack_with_hmac_tenant(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("portcullis-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    copy_dir(&techfin(), &dir);
    let mut tenants: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tenants.json")).unwrap()).unwrap();
    tenants["tenants"]["hooli-hs"] = json!({"display_name": "Hooli internal (HS256)", "issuers": [{
        "issuer": "https://hs.example", "audiences": ["api://techfin"], "algorithms": ["HS256"],
        "secret": "hooli-hmac", "claims": {"preset": "generic", "attributes": {"department": "department"}}
    }]});
    std::fs::write(dir.join("tenants.json"), tenants.to_string()).unwrap();
    let secret = "a-shared-hmac-secret-of-thirty-two-bytes-or-more";
    std::fs::write(
        dir.join("dev-keys/hooli-hmac.secret"),
        format!("{secret}\n"),
    )
    .unwrap();
    let secrets = dir.join("service-secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("hooli-hmac"), secret).unwrap();
    (dir, secrets)
}

/// Finding 1: no served document holds a secret, the full bundle is the admin listener's
/// (with its credential), and a browser gets only its own tenant's bundle, for a valid token.
#[test]
fn bundles_are_served_without_secrets_and_only_to_whom_they_belong() {
    let (dir, secrets) = pack_with_hmac_tenant("secrets");
    let secret = std::fs::read_to_string(secrets.join("hooli-hmac")).unwrap();
    let mut options = options(&dir);
    options.secrets = portcullis::secrets::SecretSource {
        dir: Some(secrets.clone()),
    };
    options.admin_token = Some(
        portcullis::service::Credential::new(b"admin-credential-0123456789".to_vec()).unwrap(),
    );
    let running = Running::start(options);
    let (base, admin, agent) = (&running.base, &running.admin, agent());

    // The HS256 tenant works: the service read its secret from the secrets directory.
    let hs = token_of(
        &dir,
        "hooli-hs",
        json!({"sub": "ann", "roles": ["Auditor"], "amr": ["mfa"]}),
    );
    let request = json!({"token": hs, "action": "view",
        "resource": {"type": "Report", "id": "hooli-hs/r1"}});
    let (_, body) = post(
        &agent,
        &format!("{base}/v1/decide"),
        request.to_string().as_bytes(),
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["decision"],
        "allow",
        "{body}"
    );

    // The admin listener wants its credential.
    assert_eq!(get(&agent, &format!("{admin}/v1/bundle"), &[]).0, 401);
    assert_eq!(
        get(
            &agent,
            &format!("{admin}/v1/bundle"),
            &[("authorization", "Bearer wrong-credential-000000")]
        )
        .0,
        401
    );
    let auth = [("authorization", "Bearer admin-credential-0123456789")];
    let (status, _, full) = get(&agent, &format!("{admin}/v1/bundle"), &auth);
    assert_eq!(status, 200);
    assert!(
        !full.contains(&secret),
        "the served bundle holds the secret"
    );
    assert!(!full.contains("\"oct\""), "{full}");
    assert!(
        full.contains("\"secret\": \"hooli-hmac\""),
        "the bundle names the secret"
    );
    assert_eq!(get(&agent, &format!("{admin}/metrics"), &auth).0, 200);
    assert_eq!(get(&agent, &format!("{admin}/healthz"), &[]).0, 200);

    // A browser's bundle: only its own tenant's, for a valid token of that tenant.
    assert_eq!(get(&agent, &format!("{base}/v1/bundle/tenant"), &[]).0, 401);
    assert_eq!(
        get(
            &agent,
            &format!("{base}/v1/bundle/tenant"),
            &[("authorization", "Bearer x.y.z")]
        )
        .0,
        401
    );
    let acme = analyst_token(&dir);
    let bearer = format!("Bearer {acme}");
    let (status, etag, slice) = get(
        &agent,
        &format!("{base}/v1/bundle/tenant"),
        &[("authorization", &bearer)],
    );
    assert_eq!(status, 200, "{slice}");
    let slice: Value = serde_json::from_str(&slice).unwrap();
    let tenants: Vec<&String> = slice["tenants"].as_object().unwrap().keys().collect();
    assert_eq!(tenants, ["acme"]);
    let text = slice.to_string();
    for other in [
        "globex",
        "org_hooli",
        "Pied Piper",
        "hooli-hmac",
        "controllers.cedar",
    ] {
        assert!(!text.contains(other), "`{other}` in acme's bundle");
    }
    portcullis_engine::Bundle::from_json(&text).unwrap();
    assert_eq!(
        get(
            &agent,
            &format!("{base}/v1/bundle/tenant"),
            &[
                ("authorization", &bearer),
                ("if-none-match", &etag.unwrap())
            ]
        )
        .0,
        304
    );
    let (status, _, globex) = get(&agent, &format!("{admin}/v1/bundle/tenants/globex"), &auth);
    assert_eq!(status, 200);
    assert!(globex.contains("controllers.cedar") && !globex.contains("\"acme\""));
    drop(running);

    // A named secret the service cannot find: it does not start (no bundle without its keys).
    let mut missing = self::options(&dir);
    missing.secrets = portcullis::secrets::SecretSource {
        dir: Some(dir.join("no-such-dir")),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let err = runtime.block_on(Server::start(missing)).unwrap_err();
    assert!(
        matches!(
            err,
            StartError::Bundle(Refusal::Install(InstallError::Secret(_)))
        ),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(err.contains("secret `hooli-hmac` not found"), "{err}");
    assert!(err.contains("PORTCULLIS_SECRET_HOOLI_HMAC"), "{err}");
    // Off loopback, the admin listener needs a credential.
    let mut open = self::options(&dir);
    open.secrets = portcullis::secrets::SecretSource { dir: Some(secrets) };
    open.admin_listen = Some(SocketAddr::from(([0, 0, 0, 0], 0)));
    let err = runtime.block_on(Server::start(open)).unwrap_err();
    assert!(matches!(err, StartError::AdminOffLoopback(_)), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("--admin-token-file"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Finding 6: ext_authz decides on the request's own method and path with the bundle's
/// routes; headers a client can set are never inputs, a repeated token header is a 403.
#[test]
fn ext_authz_decides_on_method_and_path_never_on_client_headers() {
    let dir = techfin();
    let running = Running::start(options(&dir));
    let (base, agent) = (&running.base, agent());
    let analyst = analyst_token(&dir);
    let auditor = token_of(
        &dir,
        "acme",
        json!({"oid": "aud", "roles": ["Auditor"], "amr": ["mfa"]}),
    );
    let ext = |method: &str, path: &str, headers: &[(&str, &str)]| {
        send(
            &agent,
            method,
            &format!("{base}/ext_authz{path}"),
            headers,
            b"",
        )
    };
    let bearer = |t: &str| format!("Bearer {t}");

    // The review's reproduction: DELETE a user while claiming a harmless view of a report.
    let spoofed = [
        ("authorization", bearer(&analyst)),
        ("x-portcullis-action", "view".into()),
        ("x-portcullis-resource-type", "Report".into()),
        ("x-portcullis-resource-id", "acme/q3".into()),
        (
            "x-portcullis-resource-attrs",
            r#"{"tenant":"acme","department":"finance"}"#.into(),
        ),
    ];
    let spoofed: Vec<(&str, &str)> = spoofed.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let (status, _, body) = ext("DELETE", "/tenants/acme/users/bob", &spoofed);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("\"code\":\"forbidden\""), "{body}");

    // An auditor views a report of her tenant (the route gives tenant; no department needed);
    // the identity headers come back for Envoy to set upstream.
    let (status, headers, _) = ext(
        "GET",
        "/tenants/acme/reports/q3?x=1",
        &[("authorization", &bearer(&auditor))],
    );
    assert_eq!(status, 200);
    assert_eq!(headers["x-portcullis-tenant"], "acme");
    assert_eq!(headers["x-portcullis-subject"], "aud");
    assert_eq!(headers["x-portcullis-roles"], "Auditor");
    // The edge knows a report's department from the stored facts alone: the analyst of
    // finance views acme's finance report q3, not its sales report q4, and a department the
    // client claims changes nothing.
    let analyst_on = |path: &str| {
        ext(
            "GET",
            path,
            &[
                ("authorization", &bearer(&analyst)),
                ("x-portcullis-resource-attrs", r#"{"department":"sales"}"#),
            ],
        )
        .0
    };
    assert_eq!(analyst_on("/tenants/acme/reports/q3"), 200);
    assert_eq!(analyst_on("/tenants/acme/reports/q4"), 403);
    // Another tenant, no token, a bad token, a refused path, two tokens.
    assert_eq!(
        ext(
            "GET",
            "/tenants/globex/reports/q3",
            &[("authorization", &bearer(&auditor))]
        )
        .0,
        403
    );
    let (status, headers, _) = ext("GET", "/tenants/acme/reports/q3", &[]);
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"api\"");
    let (status, headers, _) = ext(
        "GET",
        "/tenants/acme/reports/q3",
        &[("authorization", "Bearer not.a.token")],
    );
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(
        ext(
            "GET",
            "/tenants/acme/reports/..%2F..%2Fglobex%2Freports%2Fq3",
            &[("authorization", &bearer(&auditor))]
        )
        .0,
        400
    );
    let twice = [
        ("authorization", bearer(&auditor)),
        ("authorization", bearer(&analyst)),
    ];
    let twice: Vec<(&str, &str)> = twice.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(ext("GET", "/tenants/acme/reports/q3", &twice).0, 403);
    // As Envoy joins a repeated header by default.
    let joined = format!("{},{}", bearer(&auditor), bearer(&analyst));
    assert_eq!(
        ext(
            "GET",
            "/tenants/acme/reports/q3",
            &[("authorization", &joined)]
        )
        .0,
        403
    );
    assert_eq!(
        ext("GET", "/admin", &[("authorization", &bearer(&auditor))]).0,
        403
    );
    assert_eq!(
        ext(
            "GET",
            "/tenants/acme/reports/q3",
            &[
                ("authorization", &bearer(&auditor)),
                ("x-http-method-override", "DELETE")
            ]
        )
        .0,
        400
    );
    // An allow sets every identity header, so Envoy removes none.
    let (_, headers, _) = ext(
        "GET",
        "/tenants/acme/reports/q3",
        &[("authorization", &bearer(&auditor))],
    );
    assert!(headers.get("x-envoy-auth-headers-to-remove").is_none());
    drop(running);

    // An unmatched route passed without a decision: Envoy is told to remove every identity
    // header, so a client's `x-portcullis-tenant` never reaches the upstream.
    let mut passing = options(&dir);
    passing.edge = serde_json::from_value(json!({"unmatched": "pass"})).unwrap();
    let running = Running::start(passing);
    let (status, headers, _) = send(
        &agent,
        "GET",
        &format!("{}/ext_authz/elsewhere", running.base),
        &[("x-portcullis-tenant", "globex")],
        b"",
    );
    assert_eq!(status, 200);
    assert!(headers.get("x-portcullis-tenant").is_none());
    assert_eq!(
        headers["x-envoy-auth-headers-to-remove"],
        "x-portcullis-tenant,x-portcullis-subject,x-portcullis-roles,x-portcullis-decision-id"
    );
}

/// Finding 7: the subject of an AuthZEN evaluation is the body's; the `Authorization` header
/// authenticates the PEP, when a PEP credential is configured, and is never the subject.
#[test]
fn authzen_subjects_come_from_the_body() {
    let dir = techfin();
    let mut options = options(&dir);
    options.pep_token =
        Some(portcullis::service::Credential::new(b"pep-credential-0123456789".to_vec()).unwrap());
    let running = Running::start(options);
    let (base, agent) = (&running.base, agent());
    let analyst = analyst_token(&dir);
    let admin = token_of(
        &dir,
        "acme",
        json!({"oid": "root", "roles": ["TenantAdmin"], "amr": ["mfa"]}),
    );
    let evaluation = |subject: Option<&str>| {
        let mut body = json!({
            "action": {"name": "manage_user"},
            "resource": {"type": "User", "id": "acme/bob", "properties": {"tenant": "acme"}},
        });
        if let Some(token) = subject {
            body["subject"] = json!({"type": "user", "id": "x", "properties": {"token": token}});
        }
        body.to_string()
    };
    let pep = "Bearer pep-credential-0123456789";
    let decide = |subject: Option<&str>, auth: &str| {
        let (status, _, body) = send(
            &agent,
            "POST",
            &format!("{base}/access/v1/evaluation"),
            &[
                ("authorization", auth),
                ("content-type", "application/json"),
            ],
            evaluation(subject).as_bytes(),
        );
        (status, body)
    };
    let (status, body) = decide(Some(&admin), pep);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["decision"],
        true
    );
    // The analyst is the subject, whatever token the header carries: denied.
    let (_, body) = decide(Some(&analyst), pep);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["decision"],
        false,
        "{body}"
    );
    // No subject token: unauthenticated, not the header's token.
    let (_, body) = decide(None, pep);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["decision"], false);
    assert_eq!(answer["context"]["decision"], "unauthenticated");
    // Without the PEP credential: 401, whatever the body says.
    assert_eq!(decide(Some(&admin), &format!("Bearer {admin}")).0, 401);
    assert_eq!(decide(Some(&admin), "").0, 401);
}

/// Findings 2 and 8: batches are bounded before they are expanded (413 in milliseconds), and
/// echoed fields are bounded in decisions and audit lines.
#[test]
fn inputs_are_bounded_before_they_are_expanded() {
    let dir = techfin();
    let audit = std::env::temp_dir().join(format!("portcullis-bounds-{}.log", std::process::id()));
    std::fs::remove_file(&audit).ok();
    let mut options = options(&dir);
    options.audit.target = AuditTarget::File(audit.clone());
    let running = Running::start(options);
    let (base, agent) = (&running.base, agent());

    // 1 MiB of `[1,1,…]`: 524k items, refused for the count, not decided.
    let mut items = String::from("[");
    while items.len() < (1 << 20) - 4 {
        items.push_str("1,");
    }
    items.push_str("1]");
    let start = Instant::now();
    let (status, body) = post(&agent, &format!("{base}/v1/decide/batch"), items.as_bytes());
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("more than 1000 items"), "{body}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // 1000 items are fine.
    let thousand = format!("[{}]", vec!["{}"; 1000].join(","));
    let (status, body) = post(
        &agent,
        &format!("{base}/v1/decide/batch"),
        thousand.as_bytes(),
    );
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["decisions"]
            .as_array()
            .unwrap()
            .len(),
        1000
    );

    // The review's AuthZEN amplification: a 200 KB default property inherited by 5,000 empty
    // evaluations would expand to 1 GB. Refused before expanding.
    let evaluations = json!({
        "subject": {"type": "user", "id": "a"},
        "action": {"name": "view"},
        "resource": {"type": "Report", "id": "r", "properties": {"department": "x".repeat(200_000)}},
        "evaluations": vec![json!({}); 5_000],
    })
    .to_string();
    let start = Instant::now();
    let (status, body) = post(
        &agent,
        &format!("{base}/access/v1/evaluations"),
        evaluations.as_bytes(),
    );
    assert_eq!(status, 413, "{body}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // The same with 900 evaluations of a small resource: allowed, and decided.
    let small = json!({
        "subject": {"type": "user", "id": "a"},
        "action": {"name": "view"},
        "resource": {"type": "Report", "id": "r", "properties": {"tenant": "acme"}},
        "evaluations": vec![json!({}); 900],
    })
    .to_string();
    let (status, _) = post(
        &agent,
        &format!("{base}/access/v1/evaluations"),
        small.as_bytes(),
    );
    assert_eq!(status, 200);

    // A 30 KB action and a 30 KB resource, without a token: the decision and the audit line echo
    // them cut, with a marker.
    let huge = "a".repeat(30_000);
    let request = json!({"action": huge, "resource": {"type": "Report", "id": huge}}).to_string();
    let (status, body) = post(&agent, &format!("{base}/v1/decide"), request.as_bytes());
    assert_eq!(status, 200);
    assert!(body.len() < 2_000, "{} bytes", body.len());
    assert!(body.contains("…[+"), "{body}");
    drop(running);
    let log = std::fs::read_to_string(&audit).unwrap();
    std::fs::remove_file(&audit).ok();
    let longest = log.lines().map(str::len).max().unwrap();
    assert!(longest < 2_048, "an audit line of {longest} bytes");
}

/// Finding 5: bundle URLs follow no redirect, and signed bundles are enforced from every
/// source once bundle keys are configured.
#[test]
fn redirects_are_refused_and_signatures_required() {
    use axum::routing::get as route;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/bundle.json",
        route(|| async {
            (
                axum::http::StatusCode::FOUND,
                [(axum::http::header::LOCATION, "http://127.0.0.2:9/evil.json")],
            )
        }),
    );
    runtime.spawn(async move { axum::serve(listener, app).await });
    let mut redirected = self::options(&techfin());
    redirected.bundle =
        BundleSource::parse(&format!("http://127.0.0.1:{port}/bundle.json")).unwrap();
    let err = runtime.block_on(Server::start(redirected)).unwrap_err();
    assert!(
        matches!(err, StartError::Bundle(Refusal::Fetch(_))),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(
        err.contains("redirect (HTTP 302), which is not followed"),
        "{err}"
    );

    // Signed bundles: an unsigned one is refused, a signed one serves.
    let jwks: Value = serde_json::from_str(include_str!(
        "../../policies/techfin/dev-keys/globex-es256.jwks.json"
    ))
    .unwrap();
    let trust = portcullis_engine::BundleTrust::from_jwks(&jwks).unwrap();
    let mut unsigned = self::options(&techfin());
    unsigned.bundle_trust = Some(trust.clone());
    let err = runtime.block_on(Server::start(unsigned)).unwrap_err();
    assert!(
        matches!(err, StartError::Bundle(Refusal::Invalid(_))),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(err.contains("not signed"), "{err}");
    let signed = portcullis_engine::sign_bundle(
        compile(&techfin()).unwrap(),
        portcullis_engine::Algorithm::ES256,
        include_str!("../../policies/techfin/dev-keys/globex-es256.pem"),
        Some("globex-es256"),
    )
    .unwrap();
    let file = std::env::temp_dir().join(format!("portcullis-signed-{}.json", std::process::id()));
    std::fs::write(&file, signed.to_json()).unwrap();
    let mut trusted = self::options(&file);
    trusted.bundle_trust = Some(trust);
    trusted.poll_interval = Duration::from_millis(50);
    let running = Running::start(trusted);
    // A tampered copy (any policy changed, revision recomputed) is refused on reload.
    let mut tampered = signed.clone();
    tampered.policies[0].source = "@id(\"all\") permit(principal, action, resource);".into();
    let tampered = tampered.seal();
    std::fs::write(&file, tampered.to_json()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while running.server().metrics().reloads_failed() == 0 {
        assert!(
            Instant::now() < deadline,
            "the tampered bundle was not refused"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, _, body) = get(&agent(), &format!("{}/v1/bundle", running.admin), &[]);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["revision"],
        signed.revision.as_str()
    );
    drop(running);
    std::fs::remove_file(&file).ok();
}

#[test]
fn reload_under_load_fails_no_request_and_refuses_a_bad_bundle() {
    let dir = std::env::temp_dir().join(format!("portcullis-reload-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    copy_dir(&techfin(), &dir);
    let mut options = options(&dir);
    options.poll_interval = Duration::from_millis(50);
    let running = Running::start(options);
    let (base, admin) = (running.base.clone(), running.admin.clone());
    let token = analyst_token(&dir);
    let body = view_request(&token);

    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let revisions = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, done, failed, revisions) = (
                stop.clone(),
                done.clone(),
                failed.clone(),
                revisions.clone(),
            );
            let (base, body) = (base.clone(), body.clone());
            std::thread::spawn(move || {
                let agent = agent();
                // Bounded: at most 20,000 requests per client.
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (status, text) =
                        post(&agent, &format!("{base}/v1/decide"), body.as_bytes());
                    let decision: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if status == 200 && decision["decision"] == "allow" {
                        revisions
                            .lock()
                            .unwrap()
                            .insert(decision["revision"].as_str().unwrap().to_owned());
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        eprintln!("failed: {status} {text}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let agent = agent();
    let revision = |agent: &ureq::Agent| {
        let (_, _, body) = get(agent, &format!("{admin}/v1/bundle"), &[]);
        serde_json::from_str::<Value>(&body).unwrap()["revision"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let wait_for = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let first = revision(&agent);
    wait_for("traffic", &|| done.load(Ordering::Relaxed) > 50);

    // Three good swaps, each adding a policy: each new revision is served.
    let mut seen = vec![first.clone()];
    for n in 0..3 {
        std::fs::write(
            dir.join(format!("policies/extra{n}.cedar")),
            format!("@id(\"extra-{n}\") forbid(principal, action == Action::\"view\", resource) when {{ resource.tenant == \"never-{n}\" }};\n"),
        )
        .unwrap();
        let before = seen.last().unwrap().clone();
        wait_for("the new revision", &|| revision(&agent) != before);
        seen.push(revision(&agent));
        let count = done.load(Ordering::Relaxed);
        wait_for("traffic on the new revision", &|| {
            done.load(Ordering::Relaxed) > count + 50
        });
    }

    // A bad bundle is refused; the last good one keeps serving.
    let good = seen.last().unwrap().clone();
    std::fs::write(
        dir.join("policies/broken.cedar"),
        "permit(principal,, action, resource);\n",
    )
    .unwrap();
    wait_for("the refusal", &|| {
        running.server().metrics().reloads_failed() >= 1
    });
    let count = done.load(Ordering::Relaxed);
    wait_for("traffic after the refusal", &|| {
        done.load(Ordering::Relaxed) > count + 50
    });
    assert_eq!(revision(&agent), good);

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let revisions = revisions.lock().unwrap().clone();
    std::fs::remove_dir_all(&dir).ok();
    println!(
        "{} requests, {} failed, revisions served {revisions:?}",
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert_eq!(seen.len(), 4);
    assert!(revisions.contains(&good), "{revisions:?}");
    assert!(
        revisions.iter().all(|r| seen.contains(r)),
        "{revisions:?} vs {seen:?}"
    );
}

fn techfin_loaded(generation: u64) -> Loaded {
    let compiled = compile(&techfin()).unwrap();
    Loaded {
        generation,
        revision: compiled.revision.clone(),
        bundle_json: Arc::from(compiled.to_json().as_str()),
        keys: Vec::new(),
        secrets: Vec::new(),
        edge_json: std::sync::Arc::from("{}"),
    }
}

#[test]
fn sandbox_deadline_and_memory_limit_fail_closed() {
    // A batch too big for a 20 ms deadline traps; the instance is discarded and the next call
    // gets a fresh one.
    let limits = Limits {
        decide_deadline: Duration::from_millis(10),
        ..Limits::default()
    };
    let pool = Pool::new(Runtime::new(limits).unwrap());
    pool.install(techfin_loaded(1));
    let dir = techfin();
    let (_, bundle) = portcullis::bundle_dir::load(&dir).unwrap();
    let store = common::seeded_store("sandbox", &dir);
    let store = portcullis::store::open(&store.store).unwrap();
    let acme = portcullis::store::checked::read_tenant(store.as_ref(), &bundle, "acme").unwrap();
    pool.publish_data(vec![(
        "acme".into(),
        Some(Arc::new(TenantDocs::new(Arc::new(acme), None))),
    )]);
    let token = analyst_token(&dir);
    let one = view_request(&token);
    let decided = pool.with(|i| i.decide(&one, now())).unwrap();
    assert_eq!(decided.outcome, "allow");
    let many = format!("[{}]", vec![one.as_str(); 20_000].join(","));
    match pool.with(|i| i.decide_batch(&many, None, now())) {
        Err(CallError::Sandbox(why)) => assert!(why == "wasm trap: interrupt", "{why}"),
        other => panic!(
            "expected the deadline to trap, got {:?}",
            other.map(|v| v.len())
        ),
    }
    assert_eq!(
        pool.with(|i| i.decide(&one, now())).unwrap().outcome,
        "allow"
    );

    // 2 MiB of linear memory is enough to instantiate, not to load the bundle: a sandbox
    // failure, never a decision.
    let small = Limits {
        memory_bytes: 2 << 20,
        ..Limits::default()
    };
    let pool = Pool::new(Runtime::new(small).unwrap());
    pool.install(techfin_loaded(1));
    assert!(matches!(
        pool.with(|i| i.decide(&one, now())),
        Err(CallError::Sandbox(_))
    ));

    // Before any bundle: not loaded, not a decision.
    let pool = Pool::new(Runtime::new(Limits::default()).unwrap());
    assert!(
        matches!(pool.with(|i| i.decide(&one, now())), Err(CallError::Engine { code, .. }) if code == "bundle_missing")
    );
}

/// A route may not read a header ext_authz sets itself: the service refuses such a bundle (at
/// start here; a reload goes through the same check and keeps the previous bundle).
#[test]
fn a_route_reading_an_identity_header_is_refused() {
    let dir = std::env::temp_dir().join(format!("portcullis-identity-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    copy_dir(&techfin(), &dir);
    let routes = std::fs::read_to_string(dir.join("routes.json")).unwrap();
    let routes = routes.replacen(
        r#""attrs": { "tenant": "{tenant}" }"#,
        r#""attrs": { "tenant": "{tenant}", "department": { "client_header": "x-department" } }"#,
        1,
    );
    std::fs::write(dir.join("routes.json"), routes).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // With the default identity headers, the route is fine.
    let server = runtime.block_on(Server::start(options(&dir))).unwrap();
    runtime.block_on(server.shutdown()).unwrap();
    let mut options = options(&dir);
    options.edge = serde_json::from_str(r#"{"forward": {"tenant": "x-department"}}"#).unwrap();
    let err = runtime.block_on(Server::start(options)).unwrap_err();
    assert!(
        matches!(
            err,
            StartError::Bundle(Refusal::Install(InstallError::Edge(_)))
        ),
        "{err:?}"
    );
    let err = err.to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        err.contains("reads `x-department`, an identity header the edge sets itself"),
        "{err}"
    );
}
