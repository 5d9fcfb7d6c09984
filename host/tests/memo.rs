//! A token sent again for a request it was already decided for is answered from the engine's
//! memo of its evaluations (`engine/src/memo.rs`). Those answers must be the ones a fresh
//! evaluation gives: every TechFin policy test case is decided again and again, in changing
//! orders and at changing times (across the auditors' one-hour session limit), by an engine
//! with the memo and by one without it (no token cache, so no memo), and the two must agree on
//! the outcome, the reasons, the errors and the principal every time.

// Test helpers outside `#[test]` functions unwrap too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use portcullis::bundle_dir::{compile, dev_token};
use portcullis::crypto::RingVerifier;
use portcullis_engine::{
    Bundle, CompiledBundle, DataSet, DecisionIds, DecisionRequest, Engine, EngineOptions,
};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

fn engine(compiled: CompiledBundle, decision_id_seed: u64) -> Engine {
    Engine::with_options(
        Arc::new(Bundle::load(compiled).unwrap()),
        EngineOptions::new(Arc::new(RingVerifier), DecisionIds::Seed(decision_id_seed)),
    )
}

struct Case {
    /// The index of its file's pair of engines (each holds that file's stored data).
    file: usize,
    name: String,
    request: DecisionRequest,
    auth_time: Option<i64>,
}

#[test]
fn remembered_evaluations_are_fresh_evaluations() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/techfin");
    let compiled = compile(&dir).unwrap();
    let mut without = compiled.clone();
    without.settings.tokens.cache_entries = 0;
    without.revision.clear();

    let mut engines = Vec::new();
    let mut cases = Vec::new();
    let mut minted_at = None;
    for file in ["analysts", "auditors", "admins", "tenancy"] {
        let text = std::fs::read_to_string(dir.join(format!("tests/{file}.json"))).unwrap();
        let suite: Value = serde_json::from_str(&text).unwrap();
        // The pack stores its reports: both engines decide on the file's data.
        let data: DataSet =
            serde_json::from_value(suite.get("data").cloned().unwrap_or_default()).unwrap();
        let pair = (
            engine(compiled.clone(), 2 * engines.len() as u64 + 1),
            engine(without.clone(), 2 * engines.len() as u64 + 2),
        );
        pair.0.load_data_set(&data).unwrap();
        pair.1.load_data_set(&data).unwrap();
        engines.push(pair);
        let now = suite["now"].as_i64().unwrap();
        assert_eq!(
            *minted_at.get_or_insert(now),
            now,
            "one `now` for all files"
        );
        for test in suite["tests"].as_array().unwrap() {
            // Cases without claims have no token (or a trusted principal): nothing to remember.
            let Some(claims) = test.get("claims").and_then(Value::as_object).cloned() else {
                continue;
            };
            let token = dev_token(
                &compiled,
                &dir,
                test["tenant"].as_str().unwrap(),
                0,
                &claims,
                now,
            )
            .unwrap();
            let mut request: DecisionRequest = serde_json::from_value(serde_json::json!({
                "action": test["action"], "resource": test["resource"],
                "context": test.get("context").cloned().unwrap_or_else(|| serde_json::json!({})),
            }))
            .unwrap();
            request.token = Some(token);
            cases.push(Case {
                file: engines.len() - 1,
                name: test["name"].as_str().unwrap().to_owned(),
                request,
                auth_time: claims.get("auth_time").and_then(Value::as_i64),
            });
        }
    }
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let minted_at = minted_at.unwrap();
    // A session signed in at `auth_time` turns stale at `auth_time + 3600`: decide one second
    // before and at that instant for every auditor's sign-in time (the tokens live an hour).
    let mut times = vec![minted_at, minted_at + 1];
    for case in &cases {
        if let Some(at) = case.auth_time
            && at + 3600 > minted_at
            && at + 3600 < minted_at + 3600
        {
            times.extend([at + 3599, at + 3600]);
        }
    }
    assert!(
        times.len() > 2,
        "no session crosses the limit while its token is valid"
    );

    let mut changed_with_time = 0;
    for (round, now) in times.iter().enumerate() {
        // Each round in another order, each case twice, so that the memo holds the other
        // cases' answers when a case comes back.
        let n = cases.len();
        for step in 0..2 * n {
            let case = &cases[(step * (2 * round + 1) + round) % n];
            let (with_memo, without_memo) = &engines[case.file];
            let (a, b) = (
                with_memo.decide(&case.request, *now),
                without_memo.decide(&case.request, *now),
            );
            let what = format!("{} at now = {now} (round {round})", case.name);
            assert_eq!(a.decision, b.decision, "{what}");
            assert_eq!(a.reasons, b.reasons, "{what}");
            assert_eq!(a.errors, b.errors, "{what}");
            assert_eq!(a.principal, b.principal, "{what}");
            assert_eq!(a.audit_record().time, *now, "{what}");
            assert_ne!(a.decision_id, b.decision_id);
            if round > 0 && step < n {
                let before = with_memo.decide(&case.request, times[round - 1]);
                changed_with_time += usize::from(before.decision != a.decision);
            }
        }
    }
    // The auditors' answers flip at the session limit: a memo that ignored the time would have
    // answered them from before it (and failed above).
    assert!(changed_with_time > 0, "no answer changed with the time");
    for (with_memo, without_memo) in &engines {
        assert!(with_memo.cached_tokens() > 0 && without_memo.cached_tokens() == 0);
    }
}
