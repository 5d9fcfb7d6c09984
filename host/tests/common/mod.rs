//! Helpers shared by the service's integration test binaries.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use portcullis::bundle_dir::{compile, dev_token};
use portcullis::service::{Options, Server};
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
        "resource": {"type": "Report", "id": "acme/q3"},
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

/// A service on an ephemeral loopback port, with its own tokio runtime.
pub struct Running {
    pub runtime: tokio::runtime::Runtime,
    pub server: Option<Server>,
    pub base: String,
    /// The admin listener (bundle, metrics), when the options have one.
    pub admin: String,
}

impl Running {
    pub fn start(options: Options) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(Server::start(options)).unwrap();
        let base = format!("http://{}", server.addr());
        let admin = server
            .admin_addr()
            .map(|a| format!("http://{a}"))
            .unwrap_or_default();
        Self {
            runtime,
            server: Some(server),
            base,
            admin,
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown()).unwrap();
        }
    }
}

/// A request with any method and headers: status, headers and body.
pub fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, ureq::http::HeaderMap, String) {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut response = agent.run(builder.body(body.to_vec()).unwrap()).unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.body_mut().read_to_string().unwrap(),
    )
}

pub fn token_of(dir: &Path, tenant: &str, claims: Value) -> String {
    let compiled = compile(dir).unwrap();
    let claims: Map<String, Value> = serde_json::from_value(claims).unwrap();
    dev_token(&compiled, dir, tenant, 0, &claims, now()).unwrap()
}

/// A scratch copy of the TechFin pack, which stores its reports, departments, divisions and
/// folders: data calls are `data.read`/`data.write` on `Tenant::"<tenant>"`, which back-office
/// clients (`Client in Role::"DataWriter"`) may make and tenant admins (with MFA) may read.
pub fn techfin_storing_reports(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&techfin(), &dir);
    dir
}

/// A scratch SQLite store holding the TechFin facts these tests decide on: acme's
/// `Report::"acme/q3"` (finance) and `Report::"acme/q4"` (sales), globex's `Report::"globex/q3"`
/// (finance), each in its department. Put through the engine's checks against `bundle`.
pub fn seeded_store(name: &str, bundle: &Path) -> portcullis::service::DataOptions {
    use portcullis::store;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // One store a call: tests of one binary run at once, and may share a name.
    static STORES: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "portcullis-store-{name}-{}-{}",
        std::process::id(),
        STORES.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let spec = format!("sqlite:{}", dir.join("data.db").display());
    let (_, loaded) = portcullis::bundle_dir::load(bundle).unwrap();
    let opened = store::open(&spec).unwrap();
    let report = |tenant: &str, id: &str, department: &str| {
        vec![
            json!({"uid": {"type": "Department", "id": format!("{tenant}/{department}")}}),
            json!({"uid": {"type": "Report", "id": format!("{tenant}/{id}")},
                   "attrs": {"department": department},
                   "parents": [{"type": "Department", "id": format!("{tenant}/{department}")}]}),
        ]
    };
    let mut acme = report("acme", "q3", "finance");
    acme.extend(report("acme", "q4", "sales"));
    for (tenant, entities) in [
        ("acme", acme),
        ("globex", report("globex", "q3", "finance")),
    ] {
        store::checked::put_entities(opened.as_ref(), &loaded, tenant, entities, None, "test", 0)
            .unwrap();
    }
    portcullis::service::DataOptions {
        store: spec,
        ..portcullis::service::DataOptions::default()
    }
}

/// [`techfin_storing_reports`], storing more: teams and the users themselves (a user in
/// teams), for a signed-in user's slice. The routes stop giving
/// users' attributes too.
pub fn techfin_storing_slices(name: &str) -> PathBuf {
    let dir = techfin_storing_reports(name);
    std::fs::write(
        dir.join("bundle.json"),
        r#"{"data": {"stored": ["Division", "Department", "Folder", "Report", "Team", "User"], "access": {"resource": "Tenant", "read": "data.read", "write": "data.write"}}}"#,
    )
    .unwrap();
    let schema = std::fs::read_to_string(dir.join("schema.cedarschema")).unwrap();
    let user = "entity User in [Role, Group] {";
    assert!(schema.contains(user), "the TechFin schema changed");
    let schema = schema.replace(user, "entity User in [Role, Group, Team] {")
        + "entity Team { tenant: String };\n";
    std::fs::write(dir.join("schema.cedarschema"), schema).unwrap();
    let routes = std::fs::read_to_string(dir.join("routes.json")).unwrap();
    let from = r#""resource": { "type": "User", "id": "{tenant}/{id}", "attrs": { "tenant": "{tenant}" } }"#;
    assert!(routes.contains(from), "the TechFin routes changed");
    std::fs::write(
        dir.join("routes.json"),
        routes.replace(
            from,
            r#""resource": { "type": "User", "id": "{tenant}/{id}" }"#,
        ),
    )
    .unwrap();
    dir
}
