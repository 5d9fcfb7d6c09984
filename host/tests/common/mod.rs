//! Helpers shared by the service's integration test binaries.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use portcullis::bundle_dir::{compile, dev_token};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn techfin() -> PathBuf {
    repo_root().join("policies/techfin")
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into()
}

pub fn analyst_token(dir: &Path) -> String {
    let compiled = compile(dir).unwrap();
    let claims: Map<String, Value> = serde_json::from_value(json!({
        "oid": "alice", "roles": ["FinanceAnalyst"], "department": "finance", "amr": ["pwd", "mfa"]
    }))
    .unwrap();
    dev_token(&compiled, dir, "acme", 0, &claims, now()).unwrap()
}

pub fn view_request(token: &str) -> String {
    json!({
        "token": token,
        "action": "view",
        "resource": {"type": "Report", "id": "acme-q3", "attrs": {"tenant": "acme", "department": "finance"}},
    })
    .to_string()
}

/// Copy a directory tree (a scratch copy of a policy pack).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
