//! `portcullis test`: policy tests of a bundle directory (`tests/*.json`).
//!
//! A test names a tenant and token claims (the runner signs a development token with the
//! tenant's dev key, so the whole token path is exercised), or a raw `token`, or an explicit
//! `principal` (trusted-principal mode); then the request and the expected outcome.

use portcullis::bundle_dir::{self, dev_token};
use portcullis_engine::{DecisionRequest, Engine, ResourceRef, TrustedRequest};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::Path;

/// One test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// What the file covers (for readers; not used by the runner).
    #[serde(default, rename = "description")]
    pub _description: Option<String>,
    /// Evaluation time for every test in the file.
    pub now: i64,
    /// The stored entities the file's tests decide with, for bundles that store data (default:
    /// none).
    #[serde(default)]
    pub data: Option<portcullis_engine::DataSet>,
    /// The tests.
    pub tests: Vec<PolicyTest>,
}

/// One policy test.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyTest {
    /// Name shown in the report.
    pub name: String,
    /// Tenant whose development issuer signs the token.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Which of the tenant's issuers (default the first).
    #[serde(default)]
    pub issuer: usize,
    /// Claims added to (or, with `null`, removed from) the standard claims.
    #[serde(default)]
    pub claims: Option<Map<String, Value>>,
    /// A raw token instead of claims.
    #[serde(default)]
    pub token: Option<String>,
    /// An explicit principal instead of a token (trusted-principal mode).
    #[serde(default)]
    pub principal: Option<ResourceRef>,
    /// Action id.
    pub action: String,
    /// Resource.
    pub resource: ResourceRef,
    /// Context.
    #[serde(default)]
    pub context: Map<String, Value>,
    /// The outcome expected.
    pub expect: Expect,
    /// Exact deciding policies, when given.
    #[serde(default)]
    pub reasons: Option<Vec<String>>,
    /// An error code that must appear, when given.
    #[serde(default)]
    pub error: Option<String>,
}

/// A policy test's expected outcome: `allow`, `deny` or `unauthenticated` (anything else is
/// refused when the file is read, with its line and column).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// `allow`.
    Allow,
    /// `deny`.
    Deny,
    /// `unauthenticated`.
    Unauthenticated,
}

impl Expect {
    fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Unauthenticated => "unauthenticated",
        }
    }
}

/// Outcome of a run.
pub struct Summary {
    /// Passed tests.
    pub passed: usize,
    /// Failed tests, with why.
    pub failures: Vec<String>,
}

/// Run every `tests/*.json` of the bundle directory.
pub fn run(dir: &Path, verbose: bool) -> Result<Summary, String> {
    let (compiled, bundle) = bundle_dir::compile(dir)
        .and_then(|compiled| crate::dev_keys::overlay(dir, compiled))
        .map_err(|e| e.to_string())?;
    let secrets = bundle_dir::dev_secrets(dir, &bundle)?;
    let engine = Engine::new(bundle);
    for (name, secret) in secrets {
        engine
            .set_secret(&name, &secret)
            .map_err(|e| e.info().message)?;
    }
    let tests_dir = dir.join("tests");
    let mut files: Vec<_> = std::fs::read_dir(&tests_dir)
        .map_err(|e| format!("cannot read `{}`: {e}", tests_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut summary = Summary {
        passed: 0,
        failures: Vec::new(),
    };
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let file: TestFile = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}:{}:{}: {}",
                path.display(),
                e.line(),
                e.column(),
                portcullis_engine::json_message(&e)
            )
        })?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if file.data.is_some() || engine.stores_data() {
            engine
                .load_data_set(&file.data.clone().unwrap_or_default())
                .map_err(|e| format!("{}: `data`: {e} ({})", path.display(), e.code()))?;
        }
        for test in &file.tests {
            let result = run_one(&engine, &compiled, dir, test, file.now);
            let label = format!("{file_name}: {}", test.name);
            match result {
                Ok(()) => {
                    summary.passed += 1;
                    if verbose {
                        println!("ok   {label}");
                    }
                }
                Err(why) => {
                    println!("FAIL {label}: {why}");
                    summary.failures.push(label);
                }
            }
        }
    }
    Ok(summary)
}

fn run_one(
    engine: &Engine,
    compiled: &portcullis_engine::CompiledBundle,
    dir: &Path,
    test: &PolicyTest,
    now: i64,
) -> Result<(), String> {
    let decision = if let Some(principal) = &test.principal {
        engine.decide_trusted(
            &TrustedRequest {
                principal: principal.clone(),
                action: test.action.clone(),
                resource: test.resource.clone(),
                context: test.context.clone(),
                entities: None,
                tenant: test.tenant.clone(),
            },
            now,
        )
    } else {
        let token = match (&test.token, &test.tenant) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(tenant)) => Some(dev_token(
                compiled,
                dir,
                tenant,
                test.issuer,
                test.claims.as_ref().unwrap_or(&Map::new()),
                now,
            )?),
            (None, None) => None,
        };
        engine.decide(
            &DecisionRequest {
                token,
                action: test.action.clone(),
                resource: test.resource.clone(),
                context: test.context.clone(),
            },
            now,
        )
    };
    let got = decision.decision.as_str();
    let mut problems = Vec::new();
    if got != test.expect.as_str() {
        problems.push(format!("expected {}, got {got}", test.expect.as_str()));
    }
    if let Some(reasons) = &test.reasons {
        let mut want = reasons.clone();
        want.sort();
        let mut have = decision.reasons.clone();
        have.sort();
        if want != have {
            problems.push(format!("expected reasons {want:?}, got {have:?}"));
        }
    }
    if let Some(code) = &test.error
        && !decision.errors.iter().any(|e| e.code == code)
    {
        problems.push(format!(
            "expected error `{code}`, got {:?}",
            decision.errors.iter().map(|e| e.code).collect::<Vec<_>>()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let detail: Vec<String> = decision
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect();
        Err(format!("{} (errors: {detail:?})", problems.join("; ")))
    }
}
