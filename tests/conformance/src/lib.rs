//! # portcullis-conformance
//!
//! The cross-host conformance suite: JSON cases (`tests/conformance/cases/*.json`) that every
//! Portcullis host — native, JS SDK, Envoy filter, HTTP service — must decide identically. This
//! crate loads the cases, materialises their tokens (development tokens signed with the
//! bundle's `dev-keys/`, and forgeries of them), exports the resolved cases as one JSON
//! document for the other hosts, and checks a decision against a case's expectation. The
//! native runner is the crate's integration test.
//!
//! ```no_run
//! use portcullis_conformance::{default_repo_root, load_bundle, load_cases};
//! use portcullis_engine::Engine;
//!
//! let root = default_repo_root();
//! for case in load_cases(&root)? {
//!     let (_, bundle) = load_bundle(&case.bundle_dir)?;
//!     let decision = Engine::new(bundle).decide(&case.decision_request(), case.now);
//!     if let Err(why) = case.check(&decision) {
//!         println!("FAIL {}: {why}", case.id());
//!     }
//! }
//! # Ok::<(), portcullis_conformance::Error>(())
//! ```
//!
//! ## Concepts
//! - A **case file** names a bundle directory and a fixed `now`; each case has a token spec, a
//!   request and an expectation (the format is documented in `README.md` and in [`CaseFile`]).
//! - A **token spec** is a tenant plus claim/header changes and an optional [`Forge`], or a
//!   literal `raw` token. Materialising is deterministic given the files, except for signature
//!   schemes with random salt (RSA-PSS), whose tokens differ per run and verify all the same.
//! - A [`ResolvedCase`] has the concrete token string; [`export`] writes all of them.

mod bundle_dir;
pub mod cedar_corpus;
mod format;
mod http;
mod tokens;

// The public interface is:
pub use bundle_dir::load_bundle;
pub use format::{
    Case, CaseFile, CaseRequest, CaseResource, Expect, ExpectedDecision, Forge, HttpCase,
    HttpCaseRequest, HttpDecision, HttpExpect, KNOWN_ERROR_CODES, TokenSpec,
};
pub use http::{AnsweredDecision, HttpAnswer, ResolvedHttpCase, TOKEN_PLACEHOLDER};

use portcullis_engine::{
    Bundle, CompiledBundle, DataDocument, DataSet, Decision, DecisionRequest, Edge, Engine,
    ResourceRef,
};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// The `format` of an exported document.
pub const EXPORT_FORMAT: &str = "portcullis-conformance/1";

/// Where the case files live, relative to the repository root.
pub const CASES_DIR: &str = "tests/conformance/cases";

/// A case file or bundle could not be loaded, or a token could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    pub(crate) fn io(path: &Path, err: &std::io::Error) -> Self {
        Self::new(format!("cannot read `{}`: {err}", path.display()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The repository root this crate was built in (`tests/conformance/../..`).
pub fn default_repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// A case with its token materialised: what every host runs.
#[derive(Clone, Debug, Serialize)]
pub struct ResolvedCase {
    /// The case file's name (`techfin.json`).
    pub file: String,
    /// The case name.
    pub name: String,
    /// The bundle directory, relative to the repository root.
    pub bundle: String,
    /// The bundle directory on this machine.
    #[serde(skip)]
    pub bundle_dir: PathBuf,
    /// Evaluation time.
    pub now: i64,
    /// The concrete token, or none.
    pub token: Option<String>,
    /// The request (without the token).
    pub request: CaseRequest,
    /// The expected outcome.
    pub expect: Expect,
    /// A known engine defect this case documents (see [`Case::known_issue`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_issue: Option<String>,
}

impl ResolvedCase {
    /// `file: name`, for reports.
    pub fn id(&self) -> String {
        format!("{}: {}", self.file, self.name)
    }

    /// The engine request (the body of `POST /v1/decide`).
    pub fn decision_request(&self) -> DecisionRequest {
        DecisionRequest {
            token: self.token.clone(),
            action: self.request.action.clone(),
            resource: ResourceRef {
                entity_type: self.request.resource.entity_type.clone(),
                id: self.request.resource.id.clone(),
                attrs: self.request.resource.attrs.clone(),
            },
            context: self.request.context.clone(),
        }
    }

    /// The body of `POST /v1/decide` for this case (token included), JSON.
    pub fn request_json(&self) -> String {
        serde_json::json!({
            "token": self.token,
            "action": self.request.action,
            "resource": self.request.resource,
            "context": self.request.context,
        })
        .to_string()
    }

    /// Check an engine decision against the expectation.
    ///
    /// # Errors
    /// Every difference, in one message.
    pub fn check(&self, decision: &Decision) -> Result<(), String> {
        let json = serde_json::to_value(decision)
            .map_err(|e| format!("decision does not serialise: {e}"))?;
        self.check_json(&json)
    }

    /// Check a decision in its JSON wire form (`decision`, `status`, `reasons`, `errors[].code`,
    /// `principal`), as any host returns it.
    ///
    /// # Errors
    /// Every difference, in one message.
    pub fn check_json(&self, decision: &Value) -> Result<(), String> {
        let mut problems = Vec::new();
        let got = decision
            .get("decision")
            .and_then(Value::as_str)
            .unwrap_or("(missing)");
        let want = self.expect.decision.as_str();
        if got != want {
            problems.push(format!("expected {want}, got {got}"));
        }
        let status = decision.get("status").and_then(Value::as_u64);
        let want_status = match self.expect.decision {
            ExpectedDecision::Allow => 200,
            ExpectedDecision::Deny => 403,
            ExpectedDecision::Unauthenticated => 401,
        };
        if got == want && status != Some(want_status) {
            problems.push(format!("expected status {want_status}, got {status:?}"));
        }
        if got == "unauthenticated" && decision.get("principal").is_some_and(|p| !p.is_null()) {
            problems.push("an unauthenticated decision names a principal".into());
        }
        let reasons: BTreeSet<&str> = decision
            .get("reasons")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(expected) = &self.expect.reasons {
            let expected: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
            if expected != reasons {
                problems.push(format!("expected reasons {expected:?}, got {reasons:?}"));
            }
        }
        let errors: Vec<String> = decision
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        let code = e.get("code").and_then(Value::as_str).unwrap_or("?");
                        let message = e.get("message").and_then(Value::as_str).unwrap_or("");
                        format!("{code}: {message}")
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(want) = &self.expect.principal {
            let principal = decision.get("principal").unwrap_or(&Value::Null);
            let field = |name: &str| principal.get(name).and_then(Value::as_str);
            if let Some(kind) = &want.kind
                && field("kind") != Some(kind.as_str())
            {
                problems.push(format!(
                    "expected a {kind} principal, got {:?}",
                    field("kind")
                ));
            }
            if let Some(id) = &want.id
                && field("id") != Some(id.as_str())
            {
                problems.push(format!(
                    "expected principal id `{id}`, got {:?}",
                    field("id")
                ));
            }
            if let Some(roles) = &want.roles {
                let got: BTreeSet<&str> = principal
                    .get("roles")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let expected: BTreeSet<&str> = roles.iter().map(String::as_str).collect();
                if got != expected {
                    problems.push(format!("expected roles {expected:?}, got {got:?}"));
                }
            }
        }
        if let Some(code) = &self.expect.error {
            let found = decision
                .get("errors")
                .and_then(Value::as_array)
                .is_some_and(|errors| {
                    errors
                        .iter()
                        .any(|e| e.get("code").and_then(Value::as_str) == Some(code))
                });
            if !found {
                problems.push(format!("expected error `{code}`"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} (reasons {reasons:?}, errors {errors:?})",
                problems.join("; ")
            ))
        }
    }
}

/// Bundles already compiled while loading, by their relative path.
struct Bundles<'r> {
    root: &'r Path,
    compiled: BTreeMap<String, (PathBuf, CompiledBundle)>,
}

impl Bundles<'_> {
    fn get(&mut self, relative: &str) -> Result<&(PathBuf, CompiledBundle), Error> {
        let path = Path::new(relative);
        if relative.is_empty()
            || path.is_absolute()
            || path
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(Error::new(format!(
                "bundle `{relative}` must be a relative path inside the repository"
            )));
        }
        if !self.compiled.contains_key(relative) {
            let dir = self.root.join(path);
            let (compiled, _) = load_bundle(&dir)?;
            self.compiled.insert(relative.to_owned(), (dir, compiled));
        }
        self.compiled
            .get(relative)
            .ok_or_else(|| Error::new("bundle cache is inconsistent"))
    }
}

/// The case files under `<repo_root>/tests/conformance/cases/`, sorted by name.
///
/// # Errors
/// An unreadable directory.
pub fn case_files(repo_root: &Path) -> Result<Vec<PathBuf>, Error> {
    let dir = repo_root.join(CASES_DIR);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, &e))? {
        let path = entry.map_err(|e| Error::io(&dir, &e))?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Parse one case file (format only: no bundle, no tokens).
///
/// # Errors
/// Unreadable or invalid JSON, or a field the format does not have.
pub fn parse_case_file(path: &Path) -> Result<CaseFile, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, &e))?;
    serde_json::from_str(&text).map_err(|e| Error::new(format!("{}: {e}", path.display())))
}

/// Every case of the case files, tokens materialised.
#[derive(Clone, Debug, Default)]
pub struct Cases {
    /// The decision cases.
    pub decisions: Vec<ResolvedCase>,
    /// The HTTP-request cases.
    pub http: Vec<ResolvedHttpCase>,
    /// The stored data of each bundle (by its relative path) that stores any: every file's
    /// `data`, merged. Hosts load it before deciding ([`Cases::data_documents`]).
    pub data: BTreeMap<String, DataSet>,
    /// `data` as the documents hosts load, by bundle.
    documents: BTreeMap<String, Vec<DataDocument>>,
}

impl Cases {
    /// The data documents a host loads for `bundle` (its relative path) before deciding: one
    /// snapshot for every tenant of the bundle (empty for a tenant with no entities), or none
    /// for a bundle that stores nothing.
    pub fn data_documents(&self, bundle: &str) -> Vec<DataDocument> {
        self.documents.get(bundle).cloned().unwrap_or_default()
    }
}

/// Load every case file and materialise every decision case's token.
///
/// # Errors
/// The first file, bundle or case that cannot be loaded, named in the message.
pub fn load_cases(repo_root: &Path) -> Result<Vec<ResolvedCase>, Error> {
    load_cases_at(repo_root, None)
}

/// [`load_cases`], with every file's `now` replaced by `now` when given: for hosts that read
/// the real clock (the Envoy filter), whose tokens must be valid at the time of the run. Case
/// times are relative to `now` (`{"$now": N}`), so the expectations hold at any `now`.
///
/// # Errors
/// As [`load_cases`].
pub fn load_cases_at(repo_root: &Path, now: Option<i64>) -> Result<Vec<ResolvedCase>, Error> {
    load_all(repo_root, now).map(|cases| cases.decisions)
}

/// Load every case file, decision and HTTP cases, at `now` as in [`load_cases_at`].
///
/// # Errors
/// As [`load_cases`]; also edge options that do not hold together, and HTTP cases whose
/// `$token` and token disagree.
pub fn load_all(repo_root: &Path, now: Option<i64>) -> Result<Cases, Error> {
    let mut bundles = Bundles {
        root: repo_root,
        compiled: BTreeMap::new(),
    };
    let mut out = Cases::default();
    for path in case_files(repo_root)? {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut file = parse_case_file(&path)?;
        if let Some(now) = now {
            file.now = now;
        }
        let (dir, compiled) = bundles
            .get(&file.bundle)
            .map_err(|e| Error::new(format!("{file_name}: {e}")))?;
        let ctx = tokens::TokenContext {
            compiled,
            dir,
            now: file.now,
        };
        let edge = file
            .edge
            .clone()
            .unwrap_or_else(|| Value::Object(serde_json::Map::new()));
        serde_json::from_value(edge.clone())
            .map_err(|e| e.to_string())
            .and_then(|options| Edge::new(options).map_err(|e| e.to_string()))
            .map_err(|e| Error::new(format!("{file_name}: invalid `edge`: {e}")))?;
        // Names are unique within a file, over both kinds of case.
        let mut names = BTreeSet::new();
        let mut token = |name: &str, spec: Option<&TokenSpec>| {
            let fail = |why: String| Error::new(format!("{file_name}: case `{name}`: {why}"));
            if !names.insert(name.to_owned()) {
                return Err(fail("duplicate case name".into()));
            }
            spec.map(|spec| tokens::materialize(spec, &ctx).map_err(fail))
                .transpose()
        };
        for case in file.cases {
            if let Some(code) = &case.expect.error
                && !KNOWN_ERROR_CODES.contains(&code.as_str())
            {
                return Err(Error::new(format!(
                    "{file_name}: case `{}`: unknown error code `{code}`",
                    case.name
                )));
            }
            let token = token(&case.name, case.token.as_ref())?;
            out.decisions.push(ResolvedCase {
                file: file_name.clone(),
                name: case.name,
                bundle: file.bundle.clone(),
                bundle_dir: dir.clone(),
                now: file.now,
                token,
                request: case.request,
                expect: case.expect,
                known_issue: case.known_issue,
            });
        }
        if let Some(data) = file.data.take() {
            merge_data(out.data.entry(file.bundle.clone()).or_default(), data)
                .map_err(|why| Error::new(format!("{file_name}: `data`: {why}")))?;
        }
        for case in file.http {
            http::validate(&case.request, case.token.is_some(), &case.expect).map_err(|why| {
                Error::new(format!("{file_name}: HTTP case `{}`: {why}", case.name))
            })?;
            let token = token(&case.name, case.token.as_ref())?;
            out.http.push(ResolvedHttpCase {
                file: file_name.clone(),
                name: case.name,
                bundle: file.bundle.clone(),
                bundle_dir: dir.clone(),
                now: file.now,
                edge: edge.clone(),
                request: http::with_token(case.request, token.as_deref()),
                token,
                expect: case.expect,
                known_issue: case.known_issue,
            });
        }
    }
    for (relative, (_, compiled)) in &bundles.compiled {
        let set = out.data.get(relative).cloned().unwrap_or_default();
        let documents = data_documents(compiled, &set)
            .map_err(|why| Error::new(format!("the data of bundle `{relative}`: {why}")))?;
        if !documents.is_empty() {
            out.documents.insert(relative.clone(), documents);
        }
    }
    Ok(out)
}

/// Add `more` to `into`: an entity given twice must be given alike.
fn merge_data(into: &mut DataSet, more: DataSet) -> Result<(), String> {
    for (tenant, entities) in more.tenants {
        let held = into.tenants.entry(tenant.clone()).or_default();
        for entity in entities {
            let uid = entity.get("uid").cloned().unwrap_or(Value::Null);
            match held.iter().find(|e| e.get("uid") == Some(&uid)) {
                Some(same) if *same == entity => {}
                Some(_) => {
                    return Err(format!(
                        "tenant `{tenant}`: entity {uid} is given differently by another file"
                    ));
                }
                None => held.push(entity),
            }
        }
    }
    Ok(())
}

/// The snapshot of every tenant of the bundle (none if it stores nothing), checked by loading
/// them into an engine: a case file whose data the engine refuses is a load error, named, not a
/// host's failure.
fn data_documents(compiled: &CompiledBundle, set: &DataSet) -> Result<Vec<DataDocument>, String> {
    let engine = Engine::new(Bundle::load(compiled.clone()).map_err(|e| e.to_string())?);
    if !engine.stores_data() {
        return match set.tenants.is_empty() {
            true => Ok(Vec::new()),
            false => Err("the bundle stores no entity type".into()),
        };
    }
    engine.load_data_set(set).map_err(|e| e.to_string())?;
    Ok(compiled
        .tenants
        .keys()
        .filter_map(|tenant| engine.tenant_data(tenant).map(|data| data.document()))
        .collect())
}

/// Every resolved case as one JSON document, for hosts that run the suite elsewhere:
/// `{"format": "portcullis-conformance/1", "cases": [{file, name, bundle, now, token, request,
/// expect, known_issue?}, ...], "http_cases": [{file, name, bundle, now, edge, token, request:
/// {method, path, headers}, expect, known_issue?}, ...], "data": {"<bundle>": [data document,
/// ...]}}` (see [`Cases::data_documents`]). `now` overrides the files' times as
/// in [`load_cases_at`].
///
/// # Errors
/// As [`load_all`].
pub fn export(repo_root: &Path, now: Option<i64>) -> Result<Value, Error> {
    let cases = load_all(repo_root, now)?;
    let serialise = |value: Result<Value, serde_json::Error>| {
        value.map_err(|e| Error::new(format!("cannot serialise cases: {e}")))
    };
    Ok(serde_json::json!({
        "format": EXPORT_FORMAT,
        "cases": serialise(serde_json::to_value(&cases.decisions))?,
        "http_cases": serialise(serde_json::to_value(&cases.http))?,
        "data": serialise(serde_json::to_value(&cases.documents))?,
    }))
}

/// Run every case through one host's `decide` (which answers the decision as JSON), twice:
/// the second time a verified token may come from a cache, which must not change the outcome.
/// Prints one line per failure and a summary per case file.
///
/// # Errors
/// The ids of the failed cases (a case marked `known_issue` that fails is not a failure; one
/// that passes is, so the marker gets removed).
pub fn run_cases(
    cases: &[ResolvedCase],
    mut decide: impl FnMut(&ResolvedCase) -> Result<Value, String>,
) -> Result<usize, Vec<String>> {
    tally(cases.iter().map(|case| {
        let mut check = |when: &str| {
            decide(case)
                .and_then(|decision| case.check_json(&decision))
                .map_err(|why| format!("{when}{why}"))
        };
        let result = check("").and_then(|()| check("on the second (cached) decision: "));
        (
            case.file.as_str(),
            case.id(),
            case.known_issue.as_deref(),
            result,
        )
    }))
}

/// Run every HTTP case through one host's edge, twice (as [`run_cases`]).
///
/// # Errors
/// As [`run_cases`].
pub fn run_http_cases(
    cases: &[ResolvedHttpCase],
    mut answer: impl FnMut(&ResolvedHttpCase) -> Result<HttpAnswer, String>,
) -> Result<usize, Vec<String>> {
    tally(cases.iter().map(|case| {
        let mut check = |when: &str| {
            answer(case)
                .and_then(|answer| case.check(&answer))
                .map_err(|why| format!("{when}{why}"))
        };
        let result = check("").and_then(|()| check("on the second (cached) request: "));
        (
            case.file.as_str(),
            case.id(),
            case.known_issue.as_deref(),
            result,
        )
    }))
}

/// Check the answers a host outside this process gave (`{"<file>: <name>": answer}`) against
/// every HTTP case: a case without an answer is a failure.
///
/// # Errors
/// As [`run_cases`].
pub fn check_http_answers(
    cases: &[ResolvedHttpCase],
    answers: &BTreeMap<String, HttpAnswer>,
) -> Result<usize, Vec<String>> {
    tally(cases.iter().map(|case| {
        let id = case.id();
        let result = answers
            .get(&id)
            .ok_or_else(|| "no answer".to_owned())
            .and_then(|answer| case.check(answer));
        (case.file.as_str(), id, case.known_issue.as_deref(), result)
    }))
}

/// Count results (`(file, id, known issue, result)`), print failures and a summary per file.
fn tally<'c>(
    results: impl Iterator<Item = (&'c str, String, Option<&'c str>, Result<(), String>)>,
) -> Result<usize, Vec<String>> {
    let (mut passed, mut failed, mut known) = (0usize, Vec::new(), 0usize);
    let mut per_file: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (file, id, known_issue, result) in results {
        let tally = per_file.entry(file.to_owned()).or_default();
        tally.0 += 1;
        match (known_issue, result) {
            (None, Ok(())) => passed += 1,
            (None, Err(why)) => {
                println!("FAIL {id}: {why}");
                failed.push(id);
                tally.1 += 1;
            }
            (Some(issue), Err(why)) => {
                println!("KNOWN ISSUE {id}: {issue}: {why}");
                known += 1;
            }
            (Some(issue), Ok(())) => {
                println!(
                    "FAIL {id}: passes although marked as known issue `{issue}`: remove `known_issue`"
                );
                failed.push(id);
                tally.1 += 1;
            }
        }
    }
    for (file, (total, fails)) in &per_file {
        println!("{file}: {total} cases, {fails} failed");
    }
    println!(
        "{passed} passed, {} failed, {known} known engine issues (not counted as passed)",
        failed.len()
    );
    if failed.is_empty() {
        Ok(passed)
    } else {
        Err(failed)
    }
}
