//! `portcullis check`: one decision from the command line, as a request (`--action`,
//! `--resource`) or as an HTTP request mapped with the bundle's routes (`--path`), with the
//! exit code and JSON the README documents.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portcullis::bundle_dir::{compile, dev_token};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn techfin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/techfin")
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn auditor_token() -> String {
    let claims: Map<String, Value> = serde_json::from_value(json!({
        "sub": "alice", "roles": ["Auditor"], "auth_time": now() - 600
    }))
    .unwrap();
    dev_token(
        &compile(&techfin()).unwrap(),
        &techfin(),
        "acme",
        0,
        &claims,
        now(),
    )
    .unwrap()
}

/// Run `portcullis check --bundle policies/techfin ARGS`: exit code, stdout as JSON, stderr.
fn check(args: &[&str]) -> (i32, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("check")
        .arg("--bundle")
        .arg(techfin())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        output.status.code().unwrap(),
        json,
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn a_request_and_an_http_request_are_decided_alike() {
    let token = auditor_token();
    let (code, request, _) = check(&[
        "--token",
        &token,
        "--action",
        "view",
        "--resource",
        "Report::\"acme/q3\"",
    ]);
    assert_eq!(code, 0, "{request}");
    assert_eq!(request["decision"], "allow");
    assert_eq!(request["reasons"], json!(["auditor-view-fresh-session"]));

    let (code, http, _) = check(&["--token", &token, "--path", "/tenants/acme/reports/q3"]);
    assert_eq!(code, 0, "{http}");
    assert_eq!(http["decision"], "allow");
    assert_eq!(http["reasons"], request["reasons"]);
    // Two processes, two decision ids (an audit trail joins on them).
    assert_ne!(request["decision_id"], http["decision_id"]);
    assert!(
        request["decision_id"]
            .as_str()
            .is_some_and(|id| id.len() == 24)
    );
    assert_eq!(http["request"], request["request"]);

    // Another tenant's report: denied by the same rule everywhere.
    let (code, other, _) = check(&["--token", &token, "--path", "/tenants/globex/reports/q3"]);
    assert_eq!(code, 1, "{other}");
    assert_eq!(other["reasons"], json!(["no-cross-tenant"]));
}

#[test]
fn http_requests_the_edge_answers_itself() {
    // No route: the edge's verdict (as the JS SDK's `decideHttp` gives it), exit 1.
    let (code, answer, _) = check(&["--path", "/nowhere"]);
    assert_eq!(code, 1);
    assert_eq!(answer["outcome"], "denied", "{answer}");
    assert_eq!(answer["forward"], false, "{answer}");
    assert_eq!(answer["status"], 403, "{answer}");
    assert_eq!(answer["body"]["code"], "forbidden");
    assert_eq!(answer["decision"], serde_json::Value::Null);
    // A path that is not canonical is refused before any route is looked at.
    let (code, answer, _) = check(&["--path", "/tenants/acme/reports/%2e%2e/q3"]);
    assert_eq!(code, 1);
    assert_eq!(answer["outcome"], "invalid", "{answer}");
    assert_eq!(answer["status"], 400, "{answer}");
    // The token in a header of the edge options' choosing.
    let dir = std::env::temp_dir().join(format!("portcullis-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let edge = dir.join("edge.json");
    std::fs::write(&edge, r#"{"token": [{"header": {"name": "x-api-token"}}]}"#).unwrap();
    let token = auditor_token();
    let header = format!("x-api-token: {token}");
    let edge_arg = edge.to_str().unwrap();
    let (code, decision, stderr) = check(&[
        "--path",
        "/tenants/acme/reports/q3",
        "--header",
        &header,
        "--edge",
        edge_arg,
    ]);
    assert_eq!(code, 0, "{decision} {stderr}");
    assert_eq!(decision["decision"], "allow");
    // Edge options that do not parse are a usage error (exit 2) naming the file.
    std::fs::write(&edge, r#"{"token": "everywhere"}"#).unwrap();
    let (code, _, stderr) = check(&["--path", "/tenants/acme/reports/q3", "--edge", edge_arg]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("edge.json"), "{stderr}");
    assert!(!stderr.contains(&token), "the token is never echoed");
}
