//! The conformance cases through the engine as a WASI component in wasmtime (with the host's
//! native crypto), in process and through the decision service over HTTP: the same cases and
//! expectations as the native runner.

// Test helpers outside `#[test]` functions unwrap too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use portcullis::component::{EdgeAction, HttpCheck, Limits, Loaded, Pool, Runtime, TenantDocs};
use portcullis::service::{AuditTarget, BundleSource, Clock, DataOptions, Options, Server};
use portcullis::store;
use portcullis_conformance::{
    AnsweredDecision, Cases, HttpAnswer, default_repo_root, load_all, load_bundle, run_cases,
    run_http_cases,
};
use portcullis_engine::TenantData;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

fn all() -> Cases {
    let all = load_all(&default_repo_root(), None)
        .unwrap_or_else(|e| panic!("cannot load the conformance cases: {e}"));
    assert!(!all.decisions.is_empty(), "no conformance cases found");
    all
}

/// A pool of component instances holding the bundle at `dir` (`bundle`, relative), the edge
/// options `edge` and the cases' stored data for the bundle.
fn pool(all: &Cases, bundle: &str, dir: &std::path::Path, edge: &Value) -> Pool {
    let (compiled, loaded) = load_bundle(dir).unwrap_or_else(|e| panic!("{e}"));
    let pool = Pool::new(Runtime::new(Limits::default()).unwrap());
    let data = all
        .data_documents(bundle)
        .into_iter()
        .map(|document| {
            let tenant = document.tenant.clone();
            let mut data = TenantData::new(&tenant);
            data.apply(&loaded, document).unwrap();
            (
                tenant,
                Some(Arc::new(TenantDocs::new(Arc::new(data), None))),
            )
        })
        .collect();
    pool.publish_data(data);
    pool.install(Loaded {
        generation: 1,
        revision: compiled.revision.clone(),
        bundle_json: Arc::from(compiled.to_json().as_str()),
        keys: Vec::new(),
        secrets: Vec::new(),
        edge_json: Arc::from(edge.to_string().as_str()),
    });
    pool
}

#[test]
fn component_decides_every_case_as_expected() {
    let all = all();
    // One pool per case file, like one engine per file in the native runner.
    let mut pools: BTreeMap<String, Pool> = BTreeMap::new();
    let result = run_cases(&all.decisions, |case| {
        let pool = pools
            .entry(case.file.clone())
            .or_insert_with(|| pool(&all, &case.bundle, &case.bundle_dir, &serde_json::json!({})));
        let decided = pool
            .with(|i| i.decide(&case.request_json(), case.now))
            .map_err(|e| e.to_string())?;
        serde_json::from_str::<Value>(&decided.decision_json).map_err(|e| e.to_string())
    });
    if let Err(failed) = result {
        panic!(
            "{} conformance cases failed through the component: {failed:#?}",
            failed.len()
        );
    }
}

#[test]
fn component_edge_answers_every_http_case_as_expected() {
    let all = all();
    assert!(!all.http.is_empty(), "no HTTP conformance cases found");
    let mut pools: BTreeMap<String, Pool> = BTreeMap::new();
    let result = run_http_cases(&all.http, |case| {
        let pool = pools
            .entry(case.file.clone())
            .or_insert_with(|| pool(&all, &case.bundle, &case.bundle_dir, &case.edge));
        let check = HttpCheck {
            method: case.request.method.clone(),
            path: case.request.path.clone(),
            headers: case.header_pairs(),
        };
        let verdict = pool
            .with(|i| i.decide_http(&check, case.now))
            .map_err(|e| e.to_string())?;
        let decision = match &verdict.decided {
            Some(decided) => Some(AnsweredDecision::from_json(
                &serde_json::from_str(&decided.decision_json).map_err(|e| e.to_string())?,
            )),
            None => None,
        };
        Ok(match &verdict.action {
            EdgeAction::Forward(identity) => HttpAnswer::forwarded(identity, decision),
            EdgeAction::Respond {
                status,
                headers,
                body,
            } => HttpAnswer::responded(
                *status,
                headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                body,
                decision,
            ),
        })
    });
    if let Err(failed) = result {
        panic!(
            "{} HTTP conformance cases failed through the component: {failed:#?}",
            failed.len()
        );
    }
}

#[test]
fn http_service_decides_every_case_as_expected() {
    let all = all();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    // One service per case file: its bundle, and a clock fixed at the file's `now`.
    // Each with a store of its own, seeded with the cases' data before it starts.
    let stores =
        std::env::temp_dir().join(format!("portcullis-conformance-{}", std::process::id()));
    let mut servers: BTreeMap<String, Server> = BTreeMap::new();
    let result = run_cases(&all.decisions, |case| {
        let server = servers.entry(case.file.clone()).or_insert_with(|| {
            let mut options = Options::new(
                BundleSource::Path(case.bundle_dir.clone()),
                ([127, 0, 0, 1], 0).into(),
            );
            options.audit.target = AuditTarget::Off;
            options.clock = Clock::fixed(case.now);
            let documents = all.data_documents(&case.bundle);
            if !documents.is_empty() {
                std::fs::create_dir_all(&stores).unwrap();
                let spec = format!(
                    "sqlite:{}",
                    stores.join(&case.file).with_extension("db").display()
                );
                let store = store::open(&spec).unwrap();
                let (_, bundle) = load_bundle(&case.bundle_dir).unwrap();
                for document in documents {
                    store::checked::put_entities(
                        store.as_ref(),
                        &bundle,
                        &document.tenant,
                        document.entities,
                        None,
                        "conformance",
                        case.now,
                    )
                    .unwrap();
                }
                options.data = Some(DataOptions {
                    store: spec,
                    ..DataOptions::default()
                });
            }
            runtime.block_on(Server::start(options)).unwrap()
        });
        let mut response = agent
            .post(&format!("http://{}/v1/decide", server.addr()))
            .header("content-type", "application/json")
            .send(case.request_json().as_str())
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("HTTP {status}: {body}"));
        }
        serde_json::from_str::<Value>(&body).map_err(|e| e.to_string())
    });
    for server in servers.into_values() {
        runtime.block_on(server.shutdown()).unwrap();
    }
    let _ = std::fs::remove_dir_all(&stores);
    if let Err(failed) = result {
        panic!(
            "{} conformance cases failed over HTTP: {failed:#?}",
            failed.len()
        );
    }
}
