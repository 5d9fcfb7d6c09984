//! The Cedar integration corpus (cedar-policy/cedar-integration-tests), run through any host's
//! trusted-principal path: the native engine, the WASI component, ... A host implements
//! [`Host`]; [`Corpus::run`] feeds it every test file and counts agreements.
//!
//! Data: `cedar-corpus-tests.tar.gz` (7,809 generated tests, 62,472 requests) and
//! `cedar-handwritten-tests.tar.gz` (22 tests, 74 requests over the sample-data schemas) in the
//! conformance folder ([`conformance_dir`]; see its README for the format). [`Corpus::unpack`]
//! unpacks them into a temporary folder, removed when the [`Corpus`] is dropped.
//!
//! For each test file, as Cedar's reference harness (`cedar-testing`, `perform_integration_test`)
//! does: policy validation against the schema must succeed iff `shouldValidate` (with one
//! pinned, mechanically checked allowance for a later Cedar change, see
//! [`VALIDATES_SINCE_CEDAR_2545`]); then every request must give the expected decision, the
//! expected set of reason policy ids and the expected set of erroring policy ids. The reference
//! harness parses and validates every request against the schema before evaluating it (a
//! failure there is a harness panic), so an engine request error (`request_*`, no policy id) is
//! always a disagreement, reported with its message.

use crate::{Error, default_repo_root};
use portcullis_engine::{Bundle, CompiledBundle, PolicySource, Settings};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Requests in `cedar-corpus-tests.tar.gz`, as documented in the conformance README.
pub const CORPUS_REQUESTS: usize = 62_472;
/// Requests in `cedar-handwritten-tests.tar.gz`, as documented in the conformance README.
pub const HANDWRITTEN_REQUESTS: usize = 74;
/// Generated tests with `shouldValidate: false` whose only validation error, when the corpus
/// was generated, was "unable to find an applicable action given the policy scope constraints".
/// cedar-policy/cedar#2545 made that finding a warning (`InvalidActionApplication`; it can only
/// make a policy never apply, never cause a runtime error), and the cedar-policy release the
/// engine uses includes it, so these policy sets now validate. Each one is checked to be exactly
/// this case; the count is pinned so that any change (a Cedar upgrade, a new corpus) is looked at.
pub const VALIDATES_SINCE_CEDAR_2545: usize = 35;
/// Disagreements printed in full when a run fails.
const SHOWN_FAILURES: usize = 20;

/// The conformance data folder: `PORTCULLIS_CONFORMANCE_DIR`, or `shared/conformance` beside
/// the repository. Missing data is an error, never a silent pass.
///
/// # Errors
/// The folder does not exist.
pub fn conformance_dir() -> Result<PathBuf, Error> {
    let dir = std::env::var_os("PORTCULLIS_CONFORMANCE_DIR").map_or_else(
        || default_repo_root().join("../shared/conformance"),
        PathBuf::from,
    );
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(Error::new(format!(
            "conformance data folder `{}` not found: clone the repository with `shared/` beside it or set \
             PORTCULLIS_CONFORMANCE_DIR to the folder holding cedar-corpus-tests.tar.gz and wycheproof/",
            dir.display()
        )))
    }
}

/// What a host said about one request, reduced to what the corpus expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the request was allowed.
    pub allowed: bool,
    /// Ids of the determining policies.
    pub reasons: BTreeSet<String>,
    /// Ids of the policies that failed to evaluate.
    pub erroring: BTreeSet<String>,
    /// Errors not tied to a policy (`code: message`): the request itself was refused.
    pub request_errors: Vec<String>,
}

impl Verdict {
    /// Reads a decision in the engine's JSON form (`decision`, `reasons`, `errors`), as every
    /// host returns it.
    ///
    /// # Errors
    /// The JSON is not such a decision.
    pub fn from_decision_json(decision: &Value) -> Result<Self, String> {
        let outcome = decision
            .get("decision")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("not a decision: {decision}"))?;
        let strings = |key: &str| -> Result<BTreeSet<String>, String> {
            decision
                .get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| format!("decision without `{key}`: {decision}"))?
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("`{key}` holds a non-string: {decision}"))
                })
                .collect()
        };
        let mut verdict = Self {
            allowed: outcome == "allow",
            reasons: strings("reasons")?,
            erroring: BTreeSet::new(),
            request_errors: Vec::new(),
        };
        let errors = decision
            .get("errors")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("decision without `errors`: {decision}"))?;
        for error in errors {
            match error.get("policy").and_then(Value::as_str) {
                Some(policy) => {
                    verdict.erroring.insert(policy.to_owned());
                }
                None => verdict.request_errors.push(format!(
                    "{}: {}",
                    error.get("code").and_then(Value::as_str).unwrap_or("?"),
                    error.get("message").and_then(Value::as_str).unwrap_or("?")
                )),
            }
        }
        Ok(verdict)
    }
}

/// A Portcullis host under test: loads a bundle, then decides trusted-principal requests.
pub trait Host: Sync {
    /// One loaded bundle (used by one thread at a time).
    type Engine;

    /// Loads a compiled bundle.
    ///
    /// # Errors
    /// The host refused the bundle (a disagreement: the corpus loads these without validation).
    fn load(&self, bundle: &CompiledBundle) -> Result<Self::Engine, String>;

    /// Decides one trusted-principal request, given in the engine's JSON form
    /// (`{"principal", "action", "resource", "context"}`).
    ///
    /// # Errors
    /// The host failed to answer (not a decision).
    fn decide_trusted(&self, engine: &mut Self::Engine, request: &Value)
    -> Result<Verdict, String>;
}

/// Whether a run also checks `shouldValidate` (with the engine's validator, in process: policy
/// validation happens when a bundle is compiled, not in the host that serves it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validation {
    /// Check it.
    Check,
    /// Only the requests.
    Skip,
}

/// Totals over a set of test files.
#[derive(Debug, Default)]
pub struct Totals {
    /// Test files.
    pub files: usize,
    /// Requests in them.
    pub requests: usize,
    /// Requests the host answered as expected.
    pub agreed: usize,
    /// Files whose `shouldValidate` held (with [`Validation::Check`]).
    pub validation_agreed: usize,
    /// Files with `shouldValidate: false` that validate because of cedar-policy/cedar#2545.
    pub validates_since_2545: usize,
    /// Disagreements and setup problems, one self-contained line each, in file order.
    pub failures: Vec<String>,
    validation: Option<Validation>,
}

impl Totals {
    /// Prints a one-line summary; returns the first disagreements as an error if anything
    /// disagreed or was not accounted for.
    ///
    /// # Errors
    /// A request disagreed, a file failed, or (with [`Validation::Check`]) a file's validation
    /// expectation was not met.
    pub fn report(&self, label: &str, seconds: f64) -> Result<(), String> {
        let checked = self.validation == Some(Validation::Check);
        let mut line = format!("{label}: {}/{} requests agree", self.agreed, self.requests);
        if checked {
            let _ = write!(
                line,
                "; shouldValidate agrees for {}/{} files, {} more validate since cedar-policy/cedar#2545",
                self.validation_agreed, self.files, self.validates_since_2545
            );
        }
        println!("{line} ({seconds:.1}s)");
        let validation_accounted =
            !checked || self.validation_agreed + self.validates_since_2545 == self.files;
        if self.failures.is_empty() && self.agreed == self.requests && validation_accounted {
            return Ok(());
        }
        let mut text = format!(
            "{label}: {} disagreements; the first {SHOWN_FAILURES}:",
            self.failures.len()
        );
        for failure in self.failures.iter().take(SHOWN_FAILURES) {
            text.push_str("\n  - ");
            text.push_str(failure);
        }
        Err(text)
    }
}

/// The unpacked corpus, in a temporary folder removed on drop (also when a test panics).
#[derive(Debug)]
pub struct Corpus {
    root: PathBuf,
}

impl Drop for Corpus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Corpus {
    /// Unpacks both archives from `conformance_dir`.
    ///
    /// # Errors
    /// An archive is missing or `tar` fails.
    pub fn unpack(conformance_dir: &Path) -> Result<Self, Error> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let root = std::env::temp_dir().join(format!(
            "portcullis-cedar-corpus-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&root)
            .map_err(|e| Error::new(format!("cannot create `{}`: {e}", root.display())))?;
        let corpus = Self { root };
        for archive in [
            "cedar-corpus-tests.tar.gz",
            "cedar-handwritten-tests.tar.gz",
        ] {
            let archive = conformance_dir.join(archive);
            if !archive.is_file() {
                return Err(Error::new(format!(
                    "conformance archive `{}` is missing",
                    archive.display()
                )));
            }
            let status = Command::new("tar")
                .arg("-xzf")
                .arg(&archive)
                .arg("-C")
                .arg(&corpus.root)
                .status()
                .map_err(|e| Error::new(format!("cannot run `tar`: {e}")))?;
            if !status.success() {
                return Err(Error::new(format!(
                    "`tar -xzf {}` failed: {status}",
                    archive.display()
                )));
            }
        }
        Ok(corpus)
    }

    /// The generated tests (`corpus-tests/`), sorted.
    ///
    /// # Errors
    /// The folder cannot be listed.
    pub fn generated(&self) -> Result<Vec<PathBuf>, Error> {
        test_files(&self.root.join("corpus-tests"))
    }

    /// The hand-written tests (`tests/<group>/`), sorted.
    ///
    /// # Errors
    /// A folder cannot be listed.
    pub fn handwritten(&self) -> Result<Vec<PathBuf>, Error> {
        let dir = self.root.join("tests");
        let mut groups: Vec<PathBuf> = list(&dir)?.into_iter().filter(|p| p.is_dir()).collect();
        groups.sort();
        let mut files = Vec::new();
        for group in groups {
            files.extend(test_files(&group)?);
        }
        Ok(files)
    }

    /// Runs `files` through `host` on up to two threads (the machines this runs on are shared),
    /// keeping failures in file order so that the report is stable.
    pub fn run<H: Host>(&self, files: &[PathBuf], host: &H, validation: Validation) -> Totals {
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, 2);
        let next = AtomicUsize::new(0);
        let mut outcomes: Vec<(usize, FileOutcome)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            let Some(path) = files.get(index) else { break };
                            done.push((index, self.run_file(path, host, validation)));
                        }
                        done
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        outcomes.sort_by_key(|(index, _)| *index);
        let mut totals = Totals {
            files: files.len(),
            validation: Some(validation),
            ..Totals::default()
        };
        for (_, outcome) in outcomes {
            totals.requests += outcome.requests;
            totals.agreed += outcome.agreed;
            totals.validation_agreed += usize::from(outcome.validation_agreed);
            totals.validates_since_2545 += usize::from(outcome.validates_since_2545);
            totals.failures.extend(outcome.failures);
        }
        totals
    }

    fn run_file<H: Host>(&self, path: &Path, host: &H, validation: Validation) -> FileOutcome {
        let name = path
            .strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string();
        let mut outcome = FileOutcome::default();
        if let Err(why) = self.run_file_inner(path, &name, host, validation, &mut outcome) {
            outcome.failures.push(format!("{name}: {why}"));
        }
        outcome
    }

    fn run_file_inner<H: Host>(
        &self,
        path: &Path,
        name: &str,
        host: &H,
        validation: Validation,
        out: &mut FileOutcome,
    ) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
        let test: CorpusTest =
            serde_json::from_str(&text).map_err(|e| format!("not a corpus test: {e}"))?;
        // Count the requests first, so a file that fails to set up still shows in the totals.
        out.requests = test.requests.len();
        let schema = self.read(&test.schema)?;
        // The engine tells the two schema syntaxes apart by a leading `{`; make sure that guess
        // is right for this file rather than getting a confusing parse error.
        let looks_json = schema.trim_start().starts_with('{');
        if looks_json != test.schema.ends_with(".json") {
            return Err(format!(
                "schema `{}` would be read as the wrong syntax",
                test.schema
            ));
        }
        let policies = self.read(&test.policies)?;
        let entities: Value = serde_json::from_str(&self.read(&test.entities)?)
            .map_err(|e| format!("`{}` is not JSON: {e}", test.entities))?;

        if validation == Validation::Check {
            let validated = Bundle::load(compiled(&test, &schema, &policies, &entities, true));
            match (validated, test.should_validate) {
                (Ok(_), true) => out.validation_agreed = true,
                (Ok(_), false) if validates_with_action_application_warning(&schema, &policies) => {
                    out.validates_since_2545 = true
                }
                (Ok(_), false) => out.failures.push(format!(
                    "{name}: shouldValidate is false but the policies validated"
                )),
                (Err(err), false) if err.problems.iter().all(|p| p.code == "policy_validation") => {
                    out.validation_agreed = true
                }
                (Err(err), _) => out.failures.push(format!(
                    "{name}: shouldValidate is {} but loading with validation failed: {err}",
                    test.should_validate
                )),
            }
        }

        let bundle = compiled(&test, &schema, &policies, &entities, false);
        let mut engine = host
            .load(&bundle)
            .map_err(|e| format!("bundle does not load: {e}"))?;
        for (index, request) in test.requests.iter().enumerate() {
            match check_request(host, &mut engine, request) {
                Ok(()) => out.agreed += 1,
                Err(why) => out.failures.push(format!(
                    "{name} request {index} ({:?}): {why}",
                    request.description
                )),
            }
        }
        Ok(())
    }

    fn read(&self, relative: &str) -> Result<String, String> {
        std::fs::read_to_string(self.root.join(relative))
            .map_err(|e| format!("cannot read `{relative}`: {e}"))
    }
}

/// One test file (`cedar-testing`'s `JsonTest`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CorpusTest {
    policies: String,
    entities: String,
    schema: String,
    should_validate: bool,
    requests: Vec<CorpusRequest>,
}

/// One request with its expected answer (`cedar-testing`'s `JsonRequest`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CorpusRequest {
    description: String,
    principal: Value,
    action: Value,
    resource: Value,
    context: Map<String, Value>,
    /// Absent in the hand-written tests; the reference harness defaults it to true.
    #[serde(default = "yes")]
    validate_request: bool,
    decision: Expected,
    reason: Vec<String>,
    errors: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expected {
    Allow,
    Deny,
}

/// What one test file contributed.
#[derive(Default)]
struct FileOutcome {
    requests: usize,
    agreed: usize,
    failures: Vec<String>,
    validation_agreed: bool,
    validates_since_2545: bool,
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let cannot = |e: std::io::Error| Error::new(format!("cannot list `{}`: {e}", dir.display()));
    std::fs::read_dir(dir)
        .map_err(cannot)?
        .map(|entry| entry.map(|e| e.path()).map_err(cannot))
        .collect()
}

/// Test files (`*.json` but not `*.entities.json`) directly in `dir`, sorted.
fn test_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut files: Vec<PathBuf> = list(dir)?
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".json") && !name.ends_with(".entities.json")
        })
        .collect();
    files.sort();
    Ok(files)
}

fn compiled(
    test: &CorpusTest,
    schema: &str,
    policies: &str,
    entities: &Value,
    validate: bool,
) -> CompiledBundle {
    let settings = Settings {
        validate_policies: validate,
        require_policy_ids: false,
        ..Settings::default()
    };
    let sources = vec![PolicySource {
        file: test.policies.clone(),
        tenant: None,
        source: policies.to_owned(),
    }];
    let mut compiled = CompiledBundle::new(settings, Some(schema.to_owned()), sources);
    compiled.entities = entities.clone();
    compiled
}

/// Whether the validator of the Cedar release the engine uses passes these policies *with* an
/// `InvalidActionApplication` warning: the finding that was a validation error before
/// cedar-policy/cedar#2545, and so the reason a `shouldValidate: false` test now validates.
fn validates_with_action_application_warning(schema: &str, policies: &str) -> bool {
    let Ok((schema, _)) = cedar_policy::Schema::from_cedarschema_str(schema) else {
        return false;
    };
    let Ok(policies) = cedar_policy::PolicySet::from_str(policies) else {
        return false;
    };
    let result = cedar_policy::Validator::new(schema)
        .validate(&policies, cedar_policy::ValidationMode::Strict);
    result.validation_passed()
        && result.validation_warnings().any(|w| {
            matches!(
                w,
                cedar_policy::ValidationWarning::InvalidActionApplication(_)
            )
        })
}

/// `{"type": T, "id": I}` or `{"__entity": {"type": T, "id": I}}`, as the reference harness accepts.
fn entity_ref(value: &Value) -> Result<(&str, &str), String> {
    let inner = value.get("__entity").unwrap_or(value);
    match (
        inner.get("type").and_then(Value::as_str),
        inner.get("id").and_then(Value::as_str),
    ) {
        (Some(ty), Some(id)) => Ok((ty, id)),
        _ => Err(format!("not an entity reference: {value}")),
    }
}

fn check_request<H: Host>(
    host: &H,
    engine: &mut H::Engine,
    request: &CorpusRequest,
) -> Result<(), String> {
    let (principal_type, principal_id) = entity_ref(&request.principal)?;
    let (action_type, action_id) = entity_ref(&request.action)?;
    let (resource_type, resource_id) = entity_ref(&request.resource)?;
    let trusted = json!({
        "principal": {"type": principal_type, "id": principal_id},
        "action": portcullis_engine::entity_uid_text(action_type, action_id),
        "resource": {"type": resource_type, "id": resource_id},
        "context": request.context,
    });
    let verdict = host.decide_trusted(engine, &trusted)?;

    let expected_reasons: BTreeSet<String> = request.reason.iter().cloned().collect();
    let expected_errors: BTreeSet<String> = request.errors.iter().cloned().collect();
    let agrees = verdict.allowed == (request.decision == Expected::Allow)
        && verdict.reasons == expected_reasons
        && verdict.erroring == expected_errors
        && verdict.request_errors.is_empty();
    if agrees {
        return Ok(());
    }
    let mut why = format!(
        "request {trusted}: expected {:?} reasons {expected_reasons:?} errors {expected_errors:?}; \
         the host said {} reasons {:?} errors {:?}",
        request.decision,
        if verdict.allowed { "allow" } else { "deny" },
        verdict.reasons,
        verdict.erroring,
    );
    if !verdict.request_errors.is_empty() {
        let _ = write!(
            why,
            "; the host rejected the request (validateRequest={}), which the reference harness never does: {}",
            request.validate_request,
            verdict.request_errors.join("; ")
        );
    }
    Err(why)
}
