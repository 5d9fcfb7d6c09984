//! The cost of the sandbox: the same TechFin decision in the native engine (with the same
//! native `ring` crypto) and through the engine component in wasmtime.
//!
//! The component takes the request as JSON and returns the decision and its audit record as
//! JSON (what the service receives and sends anyway). Two native figures are measured: `native
//! JSON` does that same work in process (parse the request, decide, serialise the decision and
//! the audit record), so the component's ratio to it is the cost of the sandbox itself; `native
//! bare` decides an already parsed request and serialises nothing, the floor of any host.
//!
//! The sides run in alternating rounds (paired), so load on the shared machine affects them
//! alike; the report is each side's median time per decision and the ratios.
//!
//! - `remembered`: a token the engine has verified before, the same request again (the token's
//!   memo answers, Cedar is not run).
//! - `cached`: the same token over 64 reports in turn (more than its memo holds: Cedar
//!   evaluates each).
//! - `fresh RS256` / `fresh ES256`: each token is new to the engine, so every decision verifies
//!   a signature. Every round has its own tokens, decided by one long-lived engine or instance
//!   per side, as in the service (a new instance per round would also time the page faults of
//!   its fresh linear memory, which a running service has long paid).
//!
//! Every decision joins the reports' stored facts (`stored_reports`), as in the service.
//!
//! Run: `cargo bench -p portcullis --bench component` (`BENCH_QUICK=1` for a short run;
//! `PORTCULLIS_BENCH_COMPONENT=path.wasm` measures another build of the component).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use portcullis::bundle_dir::{compile, dev_token};
use portcullis::component::{DataState, Instance, Limits, Loaded, Runtime, TenantDocs};
use portcullis::crypto::RingVerifier;
use portcullis_engine::{Bundle, DataSet, DecisionIds, DecisionRequest, Engine, EngineOptions};
use serde_json::{Map, Value, json};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const NOW: i64 = 1_760_000_000;

fn claims(value: Value) -> Map<String, Value> {
    serde_json::from_value(value).unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Setup {
    compiled_json: Arc<str>,
    bundle_json: String,
    runtime: Runtime,
    /// The reports' stored facts both sides decide on.
    data: DataSet,
}

/// Reports `q3` and `r0`…`r63` of acme and globex, each in finance: the facts every decision
/// of this bench joins.
fn stored_reports() -> DataSet {
    let mut set = DataSet::default();
    for tenant in ["acme", "globex"] {
        let entities = set.tenants.entry(tenant.to_owned()).or_default();
        entities.push(json!({"uid": {"type": "Department", "id": format!("{tenant}/finance")}}));
        for id in std::iter::once("q3".to_owned()).chain((0..64).map(|n| format!("r{n}"))) {
            entities.push(json!({
                "uid": {"type": "Report", "id": format!("{tenant}/{id}")},
                "attrs": {"department": "finance"},
                "parents": [{"type": "Department", "id": format!("{tenant}/finance")}],
            }));
        }
    }
    set
}

impl Setup {
    fn native(&self) -> Engine {
        let bundle = Bundle::from_json(&self.bundle_json).unwrap();
        let engine = Engine::with_options(
            Arc::new(bundle),
            EngineOptions::new(Arc::new(RingVerifier), DecisionIds::Seed(1)),
        );
        engine.load_data_set(&self.data).unwrap();
        engine
    }

    fn instance(&self) -> Instance {
        let mut instance = self.runtime.instantiate().unwrap();
        instance
            .load(&Loaded {
                generation: 1,
                bundle_json: Arc::clone(&self.compiled_json),
                revision: String::new(),
                keys: Vec::new(),
                secrets: Vec::new(),
                edge_json: std::sync::Arc::from("{}"),
            })
            .unwrap();
        let engine = self.native();
        let state = DataState {
            generation: 1,
            tenants: self
                .data
                .tenants
                .keys()
                .map(|t| {
                    let docs = TenantDocs::new(engine.tenant_data(t).unwrap(), None);
                    (t.clone(), Arc::new(docs))
                })
                .collect(),
        };
        instance.sync_data(&state).unwrap();
        instance
    }
}

fn request(token: &str, tenant: &str) -> (DecisionRequest, String) {
    report_request(token, tenant, "q3")
}

/// A view of report `id`. A token's memo remembers its last 8 requests: rotating over more
/// reports than that has Cedar evaluate every decision.
fn report_request(token: &str, tenant: &str, id: &str) -> (DecisionRequest, String) {
    let json = json!({
        "token": token,
        "action": "view",
        "resource": {"type": "Report", "id": format!("{tenant}/{id}")},
    });
    (
        serde_json::from_value(json.clone()).unwrap(),
        json.to_string(),
    )
}

/// What the component does for one request, natively: parse it, decide, serialise the decision
/// and its audit record.
fn native_json(engine: &Engine, request_json: &str) -> (String, String) {
    let request: DecisionRequest = serde_json::from_str(request_json).unwrap();
    let decision = engine.decide(&request, NOW);
    (decision.to_json(), decision.audit_record().to_json())
}

/// Medians (ns per decision) of paired rounds: native bare, native JSON, component.
fn report(name: &str, bare: Vec<f64>, json: Vec<f64>, component: Vec<f64>) {
    let (b, j, c) = (median(bare), median(json), median(component));
    println!(
        "{name:<12} native bare {b:>8.0} ns   native JSON {j:>8.0} ns   component {c:>8.0} ns   \
         component/native JSON {:.2}   component/native bare {:.2}",
        c / j,
        c / b
    );
}

fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let rounds = if quick { 7 } else { 31 };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/techfin");
    let compiled = compile(&dir).unwrap();
    let bundle_json = compiled.to_json();
    let started = Instant::now();
    // PORTCULLIS_BENCH_COMPONENT: another build of the component to measure (another profile
    // or allocator) without rebuilding the host.
    let runtime = match std::env::var_os("PORTCULLIS_BENCH_COMPONENT") {
        Some(path) => Runtime::from_wasm(&std::fs::read(path).unwrap(), Limits::default()),
        None => Runtime::new(Limits::default()),
    }
    .unwrap();
    println!(
        "component compiled in {:.2}s",
        started.elapsed().as_secs_f64()
    );
    let setup = Setup {
        compiled_json: Arc::from(bundle_json.as_str()),
        bundle_json,
        runtime,
        data: stored_reports(),
    };

    // One token, verified once.
    let alice = claims(
        json!({"oid": "alice", "roles": ["FinanceAnalyst"], "department": "finance", "amr": ["mfa"]}),
    );
    let token = dev_token(&compiled, &dir, "acme", 0, &alice, NOW).unwrap();
    let (native_request, json_request) = request(&token, "acme");
    let engine = setup.native();
    let mut instance = setup.instance();
    assert!(engine.decide(&native_request, NOW).is_allowed());
    assert_eq!(
        instance.decide(&json_request, NOW).unwrap().outcome,
        "allow"
    );
    let per_round = if quick { 2_000 } else { 10_000 };
    // `remembered`: the same request again (the token's memo answers); `cached`: 64 reports in
    // turn (Cedar evaluates each).
    let remembered = [(native_request, json_request)];
    let rotation: Vec<(DecisionRequest, String)> = (0..64)
        .map(|n| report_request(&token, "acme", &format!("r{n}")))
        .collect();
    for (native_request, json_request) in &rotation {
        assert!(engine.decide(native_request, NOW).is_allowed());
        assert_eq!(instance.decide(json_request, NOW).unwrap().outcome, "allow");
    }
    for (name, requests) in [("remembered", &remembered[..]), ("cached", &rotation[..])] {
        let (mut bare, mut json, mut component) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            for (native_request, _) in requests.iter().cycle().take(per_round) {
                black_box(engine.decide(black_box(native_request), NOW));
            }
            bare.push(t.elapsed().as_nanos() as f64 / per_round as f64);
            let t = Instant::now();
            for (_, json_request) in requests.iter().cycle().take(per_round) {
                black_box(native_json(&engine, black_box(json_request)));
            }
            json.push(t.elapsed().as_nanos() as f64 / per_round as f64);
            let t = Instant::now();
            for (_, json_request) in requests.iter().cycle().take(per_round) {
                black_box(instance.decide(black_box(json_request), NOW).unwrap());
            }
            component.push(t.elapsed().as_nanos() as f64 / per_round as f64);
        }
        report(name, bare, json, component);
    }

    // Fresh: distinct tokens, each seen once per engine or instance.
    for (name, tenant, claims) in [
        ("fresh RS256", "acme", alice.clone()),
        (
            "fresh ES256",
            "globex",
            claims(
                json!({"sub": "bob", "techfin_roles": ["Controller"], "department": "finance", "amr": ["mfa"]}),
            ),
        ),
    ] {
        let per_round = if quick { 50 } else { 200 };
        let requests: Vec<(DecisionRequest, String)> = (0..rounds * per_round)
            .map(|i| {
                let mut c = claims.clone();
                c.insert("jti".into(), format!("bench-{i}").into());
                request(
                    &dev_token(&compiled, &dir, tenant, 0, &c, NOW).unwrap(),
                    tenant,
                )
            })
            .collect();
        let (mut bare, mut json, mut component) = (Vec::new(), Vec::new(), Vec::new());
        let (bare_engine, json_engine) = (setup.native(), setup.native());
        let mut instance = setup.instance();
        for round in requests.chunks(per_round) {
            let t = Instant::now();
            for (r, _) in round {
                black_box(bare_engine.decide(black_box(r), NOW));
            }
            bare.push(t.elapsed().as_nanos() as f64 / per_round as f64);
            let t = Instant::now();
            for (_, r) in round {
                black_box(native_json(&json_engine, black_box(r)));
            }
            json.push(t.elapsed().as_nanos() as f64 / per_round as f64);
            let t = Instant::now();
            for (_, r) in round {
                black_box(instance.decide(black_box(r), NOW).unwrap());
            }
            component.push(t.elapsed().as_nanos() as f64 / per_round as f64);
        }
        report(name, bare, json, component);
    }
}
