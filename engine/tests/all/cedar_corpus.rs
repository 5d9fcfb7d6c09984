//! The Cedar integration corpus (cedar-policy/cedar-integration-tests) run through the
//! engine's trusted-principal path, [`Engine::decide_trusted`].
//!
//! Data: `cedar-corpus-tests.tar.gz` (7,809 generated tests, 62,472 requests) and
//! `cedar-handwritten-tests.tar.gz` (22 tests, 74 requests over the sample-data schemas) in the
//! conformance folder (`PORTCULLIS_CONFORMANCE_DIR`, default `../../shared/conformance` from this
//! crate; see its README for the format). The archives are unpacked into a temporary folder at
//! test time and removed afterwards.
//!
//! For each test file, as Cedar's reference harness (`cedar-testing`, `perform_integration_test`)
//! does: policy validation against the schema must succeed iff `shouldValidate` (with one
//! pinned, mechanically checked allowance for a later Cedar change, see
//! [`VALIDATES_SINCE_CEDAR_2545`]); then every
//! request must give the expected decision, the expected set of reason policy ids and the
//! expected set of erroring policy ids. The reference harness parses and validates every
//! request against the schema before evaluating it (a failure there is a harness panic), so an
//! engine request error (`request_*`, no policy id) is always a disagreement, reported with
//! its message.

use portcullis_engine::{
    Bundle, CompiledBundle, Engine, PolicySource, ResourceRef, Settings, TrustedRequest,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Requests in `cedar-corpus-tests.tar.gz`, as documented in the conformance README.
const CORPUS_REQUESTS: usize = 62_472;
/// Requests in `cedar-handwritten-tests.tar.gz`, as documented in the conformance README.
const HANDWRITTEN_REQUESTS: usize = 74;
/// Generated tests with `shouldValidate: false` whose only validation error, when the corpus
/// was generated, was "unable to find an applicable action given the policy scope constraints".
/// cedar-policy/cedar#2545 made that finding a warning (`InvalidActionApplication`; it can only
/// make a policy never apply, never cause a runtime error), and the cedar-policy release the
/// engine uses includes it, so these policy sets now validate. Each one is checked to be exactly
/// this case; the count is pinned so that any change (a Cedar upgrade, a new corpus) is looked at.
const VALIDATES_SINCE_CEDAR_2545: usize = 35;
/// Disagreements printed in full when the test fails.
const SHOWN_FAILURES: usize = 20;

/// The conformance data folder. Missing data is a failure, never a silent pass: a test that
/// checks nothing must not look green.
pub(crate) fn conformance_dir() -> PathBuf {
    let dir = std::env::var_os("PORTCULLIS_CONFORMANCE_DIR").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/conformance"
            ))
        },
        PathBuf::from,
    );
    assert!(
        dir.is_dir(),
        "conformance data folder `{}` not found: clone the repository with `shared/` beside it or set \
         PORTCULLIS_CONFORMANCE_DIR to the folder holding cedar-corpus-tests.tar.gz and wycheproof/",
        dir.display()
    );
    dir
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

/// `{"type": T, "id": I}` or `{"__entity": {"type": T, "id": I}}`, as the reference harness accepts.
fn entity_ref(value: &Value) -> Result<(String, String), String> {
    let inner = value.get("__entity").unwrap_or(value);
    match (
        inner.get("type").and_then(Value::as_str),
        inner.get("id").and_then(Value::as_str),
    ) {
        (Some(ty), Some(id)) => Ok((ty.to_owned(), id.to_owned())),
        _ => Err(format!("not an entity reference: {value}")),
    }
}

/// `Type::"id"` in the exact form Cedar prints it, so that the engine's `action_uid` (which
/// takes any string containing `::"` as a full uid and parses it with `EntityUid::from_str`)
/// gets back exactly `id`. Cedar only parses uids in *normalized* form, the one its `Display`
/// writes: the id escaped with Rust's `escape_debug` (`\t`, `\"`, `\u{e249}`, ...). Corpus
/// action ids contain control and private-use characters, so JSON quoting would not do (Cedar
/// has no `\uXXXX`, `\b` or `\f`), nor would escaping only quotes and backslashes.
fn cedar_uid(entity_type: &str, id: &str) -> String {
    format!("{entity_type}::\"{}\"", id.escape_debug())
}

/// A temporary folder removed on drop, also when the test panics.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("portcullis-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create `{}`: {e}", path.display()));
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unpack(archive: &Path, into: &Path) {
    assert!(
        archive.is_file(),
        "conformance archive `{}` is missing",
        archive.display()
    );
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap_or_else(|e| panic!("cannot run `tar` to unpack `{}`: {e}", archive.display()));
    assert!(
        status.success(),
        "`tar -xzf {}` failed: {status}",
        archive.display()
    );
}

/// Test files (`*.json` but not `*.entities.json`) directly in `dir`, sorted.
fn test_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list `{}`: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("cannot list `{}`: {e}", dir.display()))
                .path()
        })
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".json") && !name.ends_with(".entities.json")
        })
        .collect();
    files.sort();
    files
}

/// What one test file contributed.
#[derive(Default)]
struct FileOutcome {
    requests: usize,
    agreed: usize,
    /// Disagreements (and setup problems), one self-contained line each.
    failures: Vec<String>,
    /// Whether the `shouldValidate` expectation held.
    validation_agreed: bool,
    /// `shouldValidate: false`, but the policies validate because of cedar-policy/cedar#2545.
    validates_since_2545: bool,
}

fn read(root: &Path, relative: &str) -> Result<String, String> {
    std::fs::read_to_string(root.join(relative))
        .map_err(|e| format!("cannot read `{relative}`: {e}"))
}

fn load(
    test: &CorpusTest,
    schema: &str,
    policies: &str,
    entities: &Value,
    validate: bool,
) -> Result<Bundle, portcullis_engine::BundleError> {
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
    Bundle::load(compiled)
}

fn run_file(root: &Path, path: &Path) -> FileOutcome {
    let name = path
        .strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string();
    let mut outcome = FileOutcome::default();
    if let Err(why) = run_file_inner(root, path, &name, &mut outcome) {
        outcome.failures.push(format!("{name}: {why}"));
    }
    outcome
}

fn run_file_inner(
    root: &Path,
    path: &Path,
    name: &str,
    out: &mut FileOutcome,
) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let test: CorpusTest =
        serde_json::from_str(&text).map_err(|e| format!("not a corpus test: {e}"))?;
    // Count the requests first, so a file that fails to set up still shows in the totals.
    out.requests = test.requests.len();
    let schema = read(root, &test.schema)?;
    // The engine tells the two schema syntaxes apart by a leading `{`; make sure that guess is
    // right for this file rather than getting a confusing parse error.
    let looks_json = schema.trim_start().starts_with('{');
    if looks_json != test.schema.ends_with(".json") {
        return Err(format!(
            "schema `{}` would be read as the wrong syntax",
            test.schema
        ));
    }
    let policies = read(root, &test.policies)?;
    let entities: Value = serde_json::from_str(&read(root, &test.entities)?)
        .map_err(|e| format!("`{}` is not JSON: {e}", test.entities))?;

    match (
        load(&test, &schema, &policies, &entities, true),
        test.should_validate,
    ) {
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

    let bundle = load(&test, &schema, &policies, &entities, false)
        .map_err(|e| format!("bundle does not load: {e}"))?;
    let engine = Engine::new(bundle);
    for (index, request) in test.requests.iter().enumerate() {
        match check_request(&engine, request) {
            Ok(()) => out.agreed += 1,
            Err(why) => out.failures.push(format!(
                "{name} request {index} ({:?}): {why}",
                request.description
            )),
        }
    }
    Ok(())
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

fn check_request(engine: &Engine, request: &CorpusRequest) -> Result<(), String> {
    let (principal_type, principal_id) = entity_ref(&request.principal)?;
    let (action_type, action_id) = entity_ref(&request.action)?;
    let (resource_type, resource_id) = entity_ref(&request.resource)?;
    let trusted = TrustedRequest {
        principal: ResourceRef::new(principal_type, principal_id),
        action: cedar_uid(&action_type, &action_id),
        resource: ResourceRef::new(resource_type, resource_id),
        context: request.context.clone(),
        entities: None,
        tenant: None,
    };
    let decision = engine.decide_trusted(&trusted, 0);

    let allowed = decision.is_allowed();
    let reasons: BTreeSet<&str> = decision.reasons.iter().map(String::as_str).collect();
    let erroring: BTreeSet<&str> = decision
        .errors
        .iter()
        .filter_map(|e| e.policy.as_deref())
        .collect();
    let request_errors: Vec<String> = decision
        .errors
        .iter()
        .filter(|e| e.policy.is_none())
        .map(|e| format!("{}: {}", e.code, e.message))
        .collect();
    let expected_reasons: BTreeSet<&str> = request.reason.iter().map(String::as_str).collect();
    let expected_errors: BTreeSet<&str> = request.errors.iter().map(String::as_str).collect();

    let agrees = allowed == (request.decision == Expected::Allow)
        && reasons == expected_reasons
        && erroring == expected_errors
        && request_errors.is_empty();
    if agrees {
        return Ok(());
    }
    let mut why = format!(
        "principal {} action {} resource {} context {}: expected {:?} reasons {expected_reasons:?} errors {expected_errors:?}; \
         engine said {} reasons {reasons:?} errors {erroring:?}",
        trusted.principal.display(),
        trusted.action,
        trusted.resource.display(),
        Value::Object(request.context.clone()),
        request.decision,
        decision.decision.as_str(),
    );
    if !request_errors.is_empty() {
        let _ = write!(
            why,
            "; the engine rejected the request (validateRequest={}), which the reference harness never does: {}",
            request.validate_request,
            request_errors.join("; ")
        );
    }
    Err(why)
}

/// Totals over a set of test files.
#[derive(Default)]
struct Totals {
    files: usize,
    requests: usize,
    agreed: usize,
    validation_agreed: usize,
    validates_since_2545: usize,
    failures: Vec<String>,
}

/// Run `files` on up to two threads (the machines this runs on are shared), keeping the
/// failures in file order so that the report is stable.
fn run_files(root: &Path, files: &[PathBuf]) -> Totals {
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
                        done.push((index, run_file(root, path)));
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

fn report(label: &str, totals: &Totals, seconds: f64) -> Option<String> {
    println!(
        "{label}: {}/{} requests agree; shouldValidate agrees for {}/{} files, {} more validate since \
         cedar-policy/cedar#2545 ({seconds:.1}s)",
        totals.agreed,
        totals.requests,
        totals.validation_agreed,
        totals.files,
        totals.validates_since_2545
    );
    let validation_accounted =
        totals.validation_agreed + totals.validates_since_2545 == totals.files;
    if totals.failures.is_empty() && totals.agreed == totals.requests && validation_accounted {
        return None;
    }
    let mut text = format!(
        "{label}: {} disagreements; the first {SHOWN_FAILURES}:",
        totals.failures.len()
    );
    for failure in totals.failures.iter().take(SHOWN_FAILURES) {
        text.push_str("\n  - ");
        text.push_str(failure);
    }
    Some(text)
}

#[test]
fn cedar_corpus_agrees_with_the_reference_answers() {
    let conformance = conformance_dir();
    let root = TempDir::new("cedar-corpus");
    let started = Instant::now();
    unpack(&conformance.join("cedar-corpus-tests.tar.gz"), &root.0);
    unpack(&conformance.join("cedar-handwritten-tests.tar.gz"), &root.0);
    println!(
        "cedar corpus: unpacked in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let corpus_files = test_files(&root.0.join("corpus-tests"));
    let handwritten_dir = root.0.join("tests");
    let mut handwritten_files = Vec::new();
    let mut groups: Vec<PathBuf> = std::fs::read_dir(&handwritten_dir)
        .unwrap_or_else(|e| panic!("cannot list `{}`: {e}", handwritten_dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    groups.sort();
    for group in groups {
        handwritten_files.extend(test_files(&group));
    }

    let started = Instant::now();
    let corpus = run_files(&root.0, &corpus_files);
    let corpus_report = report("cedar corpus", &corpus, started.elapsed().as_secs_f64());
    let started = Instant::now();
    let handwritten = run_files(&root.0, &handwritten_files);
    let handwritten_report = report(
        "cedar handwritten",
        &handwritten,
        started.elapsed().as_secs_f64(),
    );

    let started = Instant::now();
    drop(root);
    println!(
        "cedar corpus: cleaned up in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let problems: Vec<String> = [corpus_report, handwritten_report]
        .into_iter()
        .flatten()
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Guard against checking less than the corpus holds (a file skipped, an archive changed).
    assert_eq!(
        corpus.requests, CORPUS_REQUESTS,
        "requests in the generated corpus"
    );
    assert_eq!(
        handwritten.requests, HANDWRITTEN_REQUESTS,
        "requests in the hand-written tests"
    );
    assert_eq!(
        corpus.validates_since_2545, VALIDATES_SINCE_CEDAR_2545,
        "generated tests that should not validate but do, with Cedar's `InvalidActionApplication` warning"
    );
    assert_eq!(
        handwritten.validates_since_2545, 0,
        "hand-written tests explained by cedar-policy/cedar#2545"
    );
}

#[test]
fn cedar_uid_round_trips_awkward_ids() {
    for id in [
        "view",
        "",
        "a\"b",
        "it's",
        "back\\slash",
        "\u{1}",
        "\u{1c}@A",
        "tab\there",
        "nl\n\r",
        "\0",
        "é✓",
        "\u{e249}\u{4}",
        "\u{301}x",
        "::\"",
    ] {
        let text = cedar_uid("A::Action", id);
        let uid = cedar_policy::EntityUid::from_str(&text)
            .unwrap_or_else(|e| panic!("`{text}` does not parse: {e}"));
        assert_eq!(uid.id().unescaped(), id, "{text}");
        assert_eq!(uid.type_name().to_string(), "A::Action");
    }
}
