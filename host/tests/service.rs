//! The decision service over real HTTP on loopback: endpoints, limits and errors, reload under
//! load, and the sandbox's deadline and memory limit.

// Test helpers outside `#[test]` functions unwrap too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use portcullis::bundle_dir::{compile, dev_token};
use portcullis::component::{CallError, Limits, Loaded, Pool, Runtime};
use portcullis::service::{AuditTarget, BundleSource, Options, Server};
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn techfin() -> PathBuf {
    repo_root().join("policies/techfin")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into()
}

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

/// A service on an ephemeral loopback port, with its own tokio runtime.
struct Running {
    runtime: tokio::runtime::Runtime,
    server: Option<Server>,
    base: String,
}

impl Running {
    fn start(options: Options) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(Server::start(options)).unwrap();
        let base = format!("http://{}", server.addr());
        Self {
            runtime,
            server: Some(server),
            base,
        }
    }

    fn server(&self) -> &Server {
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

fn options(bundle: &Path) -> Options {
    let mut options = Options::new(
        BundleSource::Path(bundle.to_path_buf()),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    options.audit = AuditTarget::Off;
    options
}

fn analyst_token(dir: &Path) -> String {
    let compiled = compile(dir).unwrap();
    let claims: Map<String, Value> = serde_json::from_value(json!({
        "oid": "alice", "roles": ["FinanceAnalyst"], "department": "finance", "amr": ["pwd", "mfa"]
    }))
    .unwrap();
    dev_token(&compiled, dir, "acme", 0, &claims, now()).unwrap()
}

fn view_request(token: &str) -> String {
    json!({
        "token": token,
        "action": "view",
        "resource": {"type": "Report", "id": "acme-q3", "attrs": {"tenant": "acme", "department": "finance"}},
    })
    .to_string()
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
    options.audit = AuditTarget::File(audit.clone());
    let running = Running::start(options);
    let (base, agent) = (&running.base, agent());
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

    // Malformed JSON, a wrong shape, not UTF-8, too large: stable codes, no decision.
    for (bad, status, code) in [
        (b"{not json".to_vec(), 400, "request_invalid"),
        (br#"{"action": 1}"#.to_vec(), 400, "request_invalid"),
        (vec![0xff, 0xfe], 400, "request_invalid"),
        // Just over the limit: small enough that the client finishes sending before the 413.
        (vec![b' '; (64 << 10) + 100], 413, "request_too_large"),
    ] {
        let (got, body) = post(&agent, &format!("{base}/v1/decide"), &bad);
        assert_eq!(got, status, "{body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["code"], code, "{body}");
        assert!(!body.contains(&token));
    }

    // Batch: one result per element, a bad element fails alone.
    let batch = format!("[{}, {{\"action\": 5}}]", view_request(&token));
    let (status, body) = post(&agent, &format!("{base}/v1/decide/batch"), batch.as_bytes());
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["decisions"][0]["decision"], "allow", "{body}");
    assert_eq!(
        answer["decisions"][1]["error"]["code"], "request_invalid",
        "{body}"
    );

    // AuthZEN.
    let evaluation = json!({
        "subject": {"type": "user", "id": "alice", "properties": {"token": token}},
        "action": {"name": "view"},
        "resource": {"type": "Report", "id": "acme-q3", "properties": {"tenant": "acme", "department": "finance"}},
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
        {"resource": {"type": "Report", "id": "globex-q3", "properties": {"tenant": "globex", "department": "finance"}}},
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

    // Envoy ext_authz: the route's headers name action and resource; 200 allows.
    let ext = |auth: &str, action: Option<&str>| {
        let mut request = agent
            .get(&format!("{base}/ext_authz/reports/acme-q3"))
            .header("authorization", auth)
            .header("x-portcullis-resource-type", "Report")
            .header("x-portcullis-resource-id", "acme-q3")
            .header(
                "x-portcullis-resource-attrs",
                r#"{"tenant": "acme", "department": "finance"}"#,
            );
        if let Some(action) = action {
            request = request.header("x-portcullis-action", action);
        }
        request.call().unwrap().status().as_u16()
    };
    assert_eq!(ext(&format!("Bearer {token}"), Some("view")), 200);
    assert_eq!(ext("Bearer not.a.token", Some("view")), 401);
    assert_eq!(ext(&format!("Bearer {token}"), None), 403);

    // The compiled bundle, with an ETag that makes a repeat fetch a 304.
    let (status, etag, body) = get(&agent, &format!("{base}/v1/bundle"), &[]);
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
            &format!("{base}/v1/bundle"),
            &[("if-none-match", &etag)]
        )
        .0,
        304
    );
    assert_eq!(
        get(
            &agent,
            &format!("{base}/v1/bundle"),
            &[("if-none-match", "\"other\"")]
        )
        .0,
        200
    );

    let (_, _, metrics) = get(&agent, &format!("{base}/metrics"), &[]);
    assert!(
        metrics.contains("portcullis_decisions_total{outcome=\"allow\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_decisions_total{outcome=\"unauthenticated\"} 2"),
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

    // The audit log has a line per decision, and never the token.
    drop(running);
    let log = std::fs::read_to_string(&audit).unwrap();
    std::fs::remove_file(&audit).ok();
    assert!(!log.contains(&token));
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8, "{log}");
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[0]["tenant"], "acme");
    assert!(lines[0]["token_fingerprint"].is_string());
}

fn copy_dir(from: &Path, to: &Path) {
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

#[test]
fn reload_under_load_fails_no_request_and_refuses_a_bad_bundle() {
    let dir = std::env::temp_dir().join(format!("portcullis-reload-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    copy_dir(&techfin(), &dir);
    let mut options = options(&dir);
    options.poll_interval = Duration::from_millis(50);
    let running = Running::start(options);
    let base = running.base.clone();
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
        let (_, _, body) = get(agent, &format!("{base}/v1/bundle"), &[]);
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
    let token = analyst_token(&dir);
    let one = view_request(&token);
    let decided = pool.with(|i| i.decide(&one, now())).unwrap();
    assert_eq!(decided.outcome, "allow");
    let many = format!("[{}]", vec![one.as_str(); 20_000].join(","));
    match pool.with(|i| i.decide_batch(&many, now())) {
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
