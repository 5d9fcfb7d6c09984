//! The Cedar integration corpus (all 62,472 generated and 74 hand-written requests) through the
//! trusted-principal path of the native engine and of the engine as a WASI component in
//! wasmtime: decision, reasons and erroring policies must all agree with Cedar's reference
//! answers. The runner is `portcullis_conformance::cedar_corpus`; the JS SDK has its own
//! (`bindings/js/test/cedar-corpus.test.mjs`).

// Test helpers outside `#[test]` functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portcullis::component::{Instance, Limits, Loaded, Runtime};
use portcullis_conformance::cedar_corpus::{
    CORPUS_REQUESTS, Corpus, HANDWRITTEN_REQUESTS, Host, Totals, VALIDATES_SINCE_CEDAR_2545,
    Validation, Verdict, conformance_dir,
};
use portcullis_engine::{Bundle, CompiledBundle, Engine, TrustedRequest};
use serde::Deserialize as _;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// The engine in process.
struct Native;

impl Host for Native {
    type Engine = Engine;

    fn load(&self, bundle: &CompiledBundle) -> Result<Engine, String> {
        Bundle::load(bundle.clone())
            .map(Engine::new)
            .map_err(|e| e.to_string())
    }

    fn decide_trusted(&self, engine: &mut Engine, request: &Value) -> Result<Verdict, String> {
        let request = TrustedRequest::deserialize(request).map_err(|e| e.to_string())?;
        let decision = engine.decide_trusted(&request, 0);
        Verdict::from_decision_json(&serde_json::to_value(&decision).map_err(|e| e.to_string())?)
    }
}

/// The embedded component, one fresh instance per test file; requests and decisions cross the
/// sandbox as JSON, as they do in the service.
struct Component(Runtime);

impl Host for Component {
    type Engine = Instance;

    fn load(&self, bundle: &CompiledBundle) -> Result<Instance, String> {
        let mut instance = self.0.instantiate().map_err(|e| e.to_string())?;
        instance
            .load(&Loaded {
                generation: 1,
                revision: bundle.revision.clone(),
                bundle_json: Arc::from(bundle.to_json().as_str()),
                keys: Vec::new(),
                secrets: Vec::new(),
                edge_json: std::sync::Arc::from("{}"),
            })
            .map_err(|e| e.to_string())?;
        Ok(instance)
    }

    fn decide_trusted(&self, instance: &mut Instance, request: &Value) -> Result<Verdict, String> {
        let decided = instance
            .decide_trusted(&request.to_string(), 0)
            .map_err(|e| e.to_string())?;
        let decision: Value =
            serde_json::from_str(&decided.decision_json).map_err(|e| e.to_string())?;
        Verdict::from_decision_json(&decision)
    }
}

/// Runs the generated and the hand-written tests through `host`; panics with the first
/// disagreements, or if fewer requests were checked than the corpus holds.
fn run(label: &str, host: &impl Host, validation: Validation) -> (Totals, Totals) {
    let corpus = Corpus::unpack(&conformance_dir().unwrap()).unwrap();
    let mut problems = Vec::new();
    let mut totals = Vec::new();
    for (part, files) in [
        ("generated", corpus.generated().unwrap()),
        ("hand-written", corpus.handwritten().unwrap()),
    ] {
        let started = Instant::now();
        let part_totals = corpus.run(&files, host, validation);
        if let Err(report) =
            part_totals.report(&format!("{label}, {part}"), started.elapsed().as_secs_f64())
        {
            problems.push(report);
        }
        totals.push(part_totals);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let handwritten = totals.pop().unwrap();
    let generated = totals.pop().unwrap();
    // Guard against checking less than the corpus holds (a file skipped, an archive changed).
    assert_eq!(generated.requests, CORPUS_REQUESTS, "generated requests");
    assert_eq!(
        handwritten.requests, HANDWRITTEN_REQUESTS,
        "hand-written requests"
    );
    (generated, handwritten)
}

#[test]
fn native_engine_agrees_with_the_reference_answers() {
    let (generated, handwritten) = run("native", &Native, Validation::Check);
    assert_eq!(
        generated.validates_since_2545, VALIDATES_SINCE_CEDAR_2545,
        "generated tests that should not validate but do, with Cedar's `InvalidActionApplication` warning"
    );
    assert_eq!(
        handwritten.validates_since_2545, 0,
        "hand-written tests explained by cedar-policy/cedar#2545"
    );
}

#[test]
fn component_agrees_with_the_reference_answers() {
    let runtime = Runtime::new(Limits::default()).unwrap();
    run("component", &Component(runtime), Validation::Skip);
}
