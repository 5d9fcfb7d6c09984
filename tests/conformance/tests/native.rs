//! The native host runner: every conformance case through `Engine::decide`, in process.
//!
//! Each case is decided twice on the same engine (one engine per case file): the second time a
//! verified token may come from the token cache, which must not change the outcome
//! ([`run_cases`]).

use portcullis_conformance::{
    Cases, HttpAnswer, default_repo_root, export, load_all, load_bundle, load_cases,
    parse_case_file, run_cases, run_http_cases,
};
use portcullis_engine::{Edge, Engine, HeaderPairs, HttpRequest};
use std::collections::BTreeMap;

/// An engine with the bundle at `dir` and the cases' stored data for it (`bundle`).
fn engine_with_data(all: &Cases, bundle: &str, dir: &std::path::Path) -> Result<Engine, String> {
    let (_, loaded) = load_bundle(dir).map_err(|e| e.to_string())?;
    let engine = Engine::new(loaded);
    for document in all.data_documents(bundle) {
        engine
            .apply_tenant_data(document)
            .map_err(|e| format!("{bundle}: {e}"))?;
    }
    Ok(engine)
}

#[test]
fn native_host_decides_every_case_as_expected() {
    let root = default_repo_root();
    let all =
        load_all(&root, None).unwrap_or_else(|e| panic!("cannot load the conformance cases: {e}"));
    let cases = &all.decisions;
    assert!(!cases.is_empty(), "no conformance cases found");
    let mut engines: BTreeMap<String, Engine> = BTreeMap::new();
    let result = run_cases(cases, |case| {
        let engine = engines.entry(case.file.clone()).or_insert_with(|| {
            engine_with_data(&all, &case.bundle, &case.bundle_dir).unwrap_or_else(|e| panic!("{e}"))
        });
        serde_json::to_value(engine.decide(&case.decision_request(), case.now))
            .map_err(|e| e.to_string())
    });
    if let Err(failed) = result {
        panic!("{} conformance cases failed: {failed:#?}", failed.len());
    }
}

#[test]
fn native_edge_answers_every_http_case_as_expected() {
    let all = load_all(&default_repo_root(), None)
        .unwrap_or_else(|e| panic!("cannot load the conformance cases: {e}"));
    let cases = &all.http;
    assert!(cases.len() > 30, "only {} HTTP cases", cases.len());
    let mut engines: BTreeMap<String, (Engine, Edge)> = BTreeMap::new();
    let result = run_http_cases(cases, |case| {
        let (engine, edge) = engines.entry(case.file.clone()).or_insert_with(|| {
            let edge = Edge::new(case.edge_options().unwrap()).unwrap();
            let engine = engine_with_data(&all, &case.bundle, &case.bundle_dir)
                .unwrap_or_else(|e| panic!("{e}"));
            (engine, edge)
        });
        let headers = case.header_pairs();
        let request = HttpRequest {
            method: &case.request.method,
            path: &case.request.path,
            headers: &HeaderPairs(&headers),
        };
        Ok(HttpAnswer::from_verdict(
            &edge.decide(engine, &request, case.now),
        ))
    });
    if let Err(failed) = result {
        panic!(
            "{} HTTP conformance cases failed: {failed:#?}",
            failed.len()
        );
    }
}

#[test]
fn export_has_every_case_with_a_concrete_token() {
    let root = default_repo_root();
    let cases = load_cases(&root).unwrap();
    let document = export(&root, None).unwrap();
    assert_eq!(document["format"], portcullis_conformance::EXPORT_FORMAT);
    let exported = document["cases"].as_array().unwrap();
    assert_eq!(exported.len(), cases.len());
    for (json, case) in exported.iter().zip(&cases) {
        assert_eq!(json["name"], case.name.as_str());
        assert_eq!(json["bundle"], case.bundle.as_str());
        assert_eq!(json["now"], case.now);
        assert_eq!(json["request"]["action"], case.request.action.as_str());
        assert!(json["token"].is_string() || json["token"].is_null());
        assert!(
            json.get("bundle_dir").is_none(),
            "machine-specific paths must not be exported"
        );
    }
}

#[test]
fn case_files_refuse_unknown_fields() {
    let dir = std::env::temp_dir().join(format!("portcullis-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("typo.json");
    let typo = r#"{"description": "d", "bundle": "policies/techfin", "now": 0, "cases": [
        {"name": "n", "token": null, "request": {"action": "view", "resource": {"type": "Report", "id": "r"}},
         "expect": {"decision": "deny", "reasons": [], "eror": "token_missing"}}]}"#;
    std::fs::write(&path, typo).unwrap();
    let err = parse_case_file(&path).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert!(err.contains("eror"), "{err}");
}

#[test]
fn checker_reports_every_difference() {
    use portcullis_conformance::{
        CaseRequest, CaseResource, Expect, ExpectedDecision, ResolvedCase,
    };
    use serde_json::json;
    let case = ResolvedCase {
        file: "x.json".into(),
        name: "n".into(),
        bundle: "policies/techfin".into(),
        bundle_dir: default_repo_root(),
        now: 0,
        token: None,
        request: CaseRequest {
            action: "view".into(),
            resource: CaseResource {
                entity_type: "Report".into(),
                id: "r".into(),
                attrs: Default::default(),
            },
            context: Default::default(),
        },
        expect: Expect {
            decision: ExpectedDecision::Deny,
            reasons: Some(vec!["no-cross-tenant".into()]),
            error: Some("request_context".into()),
            principal: None,
        },
        known_issue: None,
    };
    let good = json!({"decision": "deny", "status": 403, "reasons": ["no-cross-tenant"],
                      "errors": [{"code": "request_context", "message": "m"}], "principal": null});
    assert_eq!(case.check_json(&good), Ok(()));
    let wrong_outcome = json!({"decision": "allow", "status": 200, "reasons": ["no-cross-tenant"],
                               "errors": [{"code": "request_context", "message": "m"}]});
    assert!(
        case.check_json(&wrong_outcome)
            .unwrap_err()
            .contains("expected deny, got allow")
    );
    let wrong_reasons = json!({"decision": "deny", "status": 403, "reasons": ["no-cross-tenant", "other"],
                               "errors": [{"code": "request_context", "message": "m"}]});
    assert!(
        case.check_json(&wrong_reasons)
            .unwrap_err()
            .contains("expected reasons")
    );
    let missing_error =
        json!({"decision": "deny", "status": 403, "reasons": ["no-cross-tenant"], "errors": []});
    assert!(
        case.check_json(&missing_error)
            .unwrap_err()
            .contains("expected error `request_context`")
    );
    let wrong_status = json!({"decision": "deny", "status": 200, "reasons": ["no-cross-tenant"],
                              "errors": [{"code": "request_context", "message": "m"}]});
    assert!(
        case.check_json(&wrong_status)
            .unwrap_err()
            .contains("expected status 403")
    );
}

#[test]
fn http_checker_reports_every_difference() {
    use portcullis_conformance::AnsweredDecision;
    let cases = load_all(&default_repo_root(), None).unwrap().http;
    let allowed = cases
        .iter()
        .find(|c| c.expect.status == 200 && !c.expect.forward.is_empty())
        .unwrap();
    let decision = AnsweredDecision {
        decision: "allow".into(),
        reasons: allowed.expect.reasons.clone().unwrap_or_default(),
        errors: Vec::new(),
        decision_id: "d-1".into(),
    };
    let mut identity = allowed.expect.forward.clone();
    identity.insert("x-portcullis-decision-id".into(), "d-1".into());
    let right = HttpAnswer {
        status: 200,
        identity: identity.clone(),
        code: None,
        challenge: None,
        decision: Some(decision.clone()),
    };
    allowed.check(&right).unwrap();
    let wrong = [
        HttpAnswer {
            status: 403,
            code: Some("forbidden".into()),
            ..right.clone()
        },
        HttpAnswer {
            identity: identity
                .iter()
                .map(|(k, v)| (k.clone(), format!("{v}x")))
                .collect(),
            ..right.clone()
        },
        HttpAnswer {
            decision: None,
            ..right.clone()
        },
        HttpAnswer {
            decision: Some(AnsweredDecision {
                decision_id: "d-2".into(),
                ..decision.clone()
            }),
            ..right.clone()
        },
        HttpAnswer {
            decision: Some(AnsweredDecision {
                reasons: vec!["other".into()],
                ..decision
            }),
            ..right.clone()
        },
        HttpAnswer {
            challenge: Some("Bearer".into()),
            ..right
        },
    ];
    for answer in wrong {
        assert!(allowed.check(&answer).is_err(), "{answer:?} passed");
    }
}

#[test]
fn http_cases_use_their_token_exactly_when_they_have_one() {
    let dir = std::env::temp_dir().join(format!("portcullis-http-{}", std::process::id()));
    let cases = dir.join("tests/conformance/cases");
    std::fs::create_dir_all(&cases).unwrap();
    // The bundle is resolved relative to the root: link the real one in.
    std::os::unix::fs::symlink(default_repo_root().join("policies"), dir.join("policies")).unwrap();
    let file = |token: &str, path: &str, expect: &str| {
        format!(
            r#"{{"description": "d", "bundle": "policies/techfin", "now": 1767225600,
            "http": [{{"name": "n", {token} "request": {{"method": "GET", "path": "{path}"}},
            "expect": {expect}}}]}}"#
        )
    };
    let ok = r#"{"status": 403, "code": "forbidden", "decision": "none"}"#;
    let token = r#""token": {"tenant": "acme"},"#;
    for (text, problem) in [
        (file(token, "/x", ok), "not in the request"),
        (file("", "/x?access_token=$token", ok), "no token is given"),
        (
            file(
                "",
                "/x",
                r#"{"status": 200, "code": "forbidden", "decision": "none"}"#,
            ),
            "`code` is required",
        ),
        (
            file("", "/x", r#"{"status": 403, "decision": "none"}"#),
            "`code` is required",
        ),
    ] {
        std::fs::write(cases.join("t.json"), text).unwrap();
        let err = load_all(&dir, None).unwrap_err().to_string();
        assert!(err.contains(problem), "{err}");
    }
    std::fs::write(
        cases.join("t.json"),
        file(token, "/x?access_token=$token", ok),
    )
    .unwrap();
    let loaded = load_all(&dir, None).unwrap().http;
    std::fs::remove_dir_all(&dir).ok();
    let token = loaded[0].token.as_deref().unwrap();
    assert_eq!(loaded[0].request.path, format!("/x?access_token={token}"));
}
