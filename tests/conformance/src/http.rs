//! HTTP-request cases: a request as a client sends it (method, path, headers) and what the edge
//! must do with it — forward with identity headers, or answer with a status, a code and a
//! challenge — checked the same way for every host from an [`HttpAnswer`].

use crate::format::{HttpCaseRequest, HttpExpect};
use portcullis_engine::{EdgeAction, EdgeOptions, EdgeVerdict};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What stands for the case's token in its path and header values.
pub const TOKEN_PLACEHOLDER: &str = "$token";

/// An HTTP case with its token materialised and put in place: what every host runs.
#[derive(Clone, Debug, Serialize)]
pub struct ResolvedHttpCase {
    /// The case file's name.
    pub file: String,
    /// The case name.
    pub name: String,
    /// The bundle directory, relative to the repository root.
    pub bundle: String,
    /// The bundle directory on this machine.
    #[serde(skip)]
    pub bundle_dir: std::path::PathBuf,
    /// Evaluation time.
    pub now: i64,
    /// The edge options (JSON, as a host's configuration holds them).
    pub edge: Value,
    /// The concrete token (also in `request`), or none: a host must never log it.
    pub token: Option<String>,
    /// The request, `$token` replaced.
    pub request: HttpCaseRequest,
    /// What every host must do with it.
    pub expect: HttpExpect,
    /// A known engine defect this case documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_issue: Option<String>,
}

/// The decision behind an edge's answer, as a host reports it (from the decision or from its
/// audit record).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnsweredDecision {
    /// `allow`, `deny` or `unauthenticated`.
    pub decision: String,
    /// The deciding policy ids.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The error codes.
    #[serde(default)]
    pub errors: Vec<String>,
    /// The decision id.
    pub decision_id: String,
}

/// What a host did with an HTTP case's request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAnswer {
    /// `200` when the request went upstream, else the status of the edge's own answer.
    pub status: u16,
    /// The identity headers (the edge options' `forward` names) the upstream received.
    #[serde(default)]
    pub identity: BTreeMap<String, String>,
    /// The `code` of the edge's answer body.
    #[serde(default)]
    pub code: Option<String>,
    /// The `WWW-Authenticate` header of the edge's answer.
    #[serde(default)]
    pub challenge: Option<String>,
    /// The decision made, if any.
    #[serde(default)]
    pub decision: Option<AnsweredDecision>,
}

impl HttpAnswer {
    /// The answer an in-process edge gives (what a host would do with `verdict`).
    pub fn from_verdict(verdict: &EdgeVerdict<'_>) -> Self {
        let decision = verdict.decision.as_ref().map(|d| AnsweredDecision {
            decision: d.decision.as_str().to_owned(),
            reasons: d.reasons.clone(),
            errors: d.errors.iter().map(|e| e.code.to_owned()).collect(),
            decision_id: d.decision_id.clone(),
        });
        Self::from_action(&verdict.action, decision)
    }

    /// The answer for an edge action and the decision behind it.
    fn from_action(action: &EdgeAction, decision: Option<AnsweredDecision>) -> Self {
        match action {
            EdgeAction::Forward(identity) => Self::forwarded(identity, decision),
            EdgeAction::Respond {
                status,
                headers,
                body,
            } => Self::responded(
                *status,
                headers.iter().map(|(n, v)| (*n, v.as_str())),
                body,
                decision,
            ),
        }
    }

    /// A request forwarded upstream with these identity headers.
    pub fn forwarded(identity: &[(String, String)], decision: Option<AnsweredDecision>) -> Self {
        Self {
            status: 200,
            identity: identity.iter().cloned().collect(),
            code: None,
            challenge: None,
            decision,
        }
    }

    /// A request the edge answered itself: its status, response headers and JSON body.
    pub fn responded<'h>(
        status: u16,
        mut headers: impl Iterator<Item = (&'h str, &'h str)>,
        body: &str,
        decision: Option<AnsweredDecision>,
    ) -> Self {
        Self {
            status,
            identity: BTreeMap::new(),
            code: serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|b| b.get("code").and_then(Value::as_str).map(str::to_owned)),
            challenge: headers
                .find(|(name, _)| name.eq_ignore_ascii_case("www-authenticate"))
                .map(|(_, value)| value.to_owned()),
            decision,
        }
    }
}

impl AnsweredDecision {
    /// From a decision in its JSON wire form (`errors` as `[{code, message}]`).
    pub fn from_json(decision: &Value) -> Self {
        let strings = |key: &str, field: Option<&str>| -> Vec<String> {
            decision
                .get(key)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| match field {
                            Some(field) => item.get(field),
                            None => Some(item),
                        })
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let text = |key: &str| {
            decision
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Self {
            decision: text("decision"),
            reasons: strings("reasons", None),
            errors: strings("errors", Some("code")),
            decision_id: text("decision_id"),
        }
    }
}

impl ResolvedHttpCase {
    /// `file: name`, for reports.
    pub fn id(&self) -> String {
        format!("{}: {}", self.file, self.name)
    }

    /// The edge options.
    ///
    /// # Errors
    /// Options that do not parse (the loader has already refused them).
    pub fn edge_options(&self) -> Result<EdgeOptions, String> {
        serde_json::from_value(self.edge.clone()).map_err(|e| format!("edge options: {e}"))
    }

    /// The request's headers as a host hands them to the edge.
    pub fn header_pairs(&self) -> Vec<(String, Vec<u8>)> {
        self.request
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.as_bytes().to_vec()))
            .collect()
    }

    /// Check a host's answer against the expectation.
    ///
    /// # Errors
    /// Every difference, in one message.
    pub fn check(&self, answer: &HttpAnswer) -> Result<(), String> {
        let expect = &self.expect;
        let mut problems = Vec::new();
        if answer.status != expect.status {
            problems.push(format!(
                "expected status {}, got {}",
                expect.status, answer.status
            ));
        }
        if answer.code != expect.code {
            problems.push(format!(
                "expected code {:?}, got {:?}",
                expect.code, answer.code
            ));
        }
        if answer.challenge != expect.challenge {
            problems.push(format!(
                "expected challenge {:?}, got {:?}",
                expect.challenge, answer.challenge
            ));
        }
        let decision_header = self.edge_options().ok().and_then(|o| o.forward.decision_id);
        let mut identity = answer.identity.clone();
        let decision_id = decision_header
            .as_ref()
            .and_then(|name| identity.remove(name));
        if identity != expect.forward {
            problems.push(format!(
                "expected identity headers {:?}, got {identity:?}",
                expect.forward
            ));
        }
        match (expect.decision.as_outcome(), &answer.decision) {
            (None, None) => {}
            (None, Some(d)) => problems.push(format!("expected no decision, got {}", d.decision)),
            (Some(want), None) => problems.push(format!("expected {want}, got no decision")),
            (Some(want), Some(d)) => {
                if d.decision != want {
                    problems.push(format!("expected {want}, got {}", d.decision));
                }
                if let Some(reasons) = &expect.reasons {
                    let want: BTreeSet<&str> = reasons.iter().map(String::as_str).collect();
                    let got: BTreeSet<&str> = d.reasons.iter().map(String::as_str).collect();
                    if want != got {
                        problems.push(format!("expected reasons {want:?}, got {got:?}"));
                    }
                }
                if let Some(code) = &expect.error
                    && !d.errors.contains(code)
                {
                    problems.push(format!("expected error `{code}`, got {:?}", d.errors));
                }
                if answer.status == 200
                    && decision_header.is_some()
                    && decision_id.as_deref() != Some(d.decision_id.as_str())
                {
                    problems.push(format!(
                        "forwarded decision id {decision_id:?}, decided {}",
                        d.decision_id
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Check a loaded HTTP case as the loader does: `$token` used exactly when a token is given,
/// header names lowercase, a status and code that agree, and a known error code.
pub(crate) fn validate(
    request: &HttpCaseRequest,
    has_token: bool,
    expect: &HttpExpect,
) -> Result<(), String> {
    let uses = request.path.contains(TOKEN_PLACEHOLDER)
        || request
            .headers
            .iter()
            .any(|(_, v)| v.contains(TOKEN_PLACEHOLDER));
    if uses != has_token {
        return Err(if has_token {
            format!("a token is given but `{TOKEN_PLACEHOLDER}` is not in the request")
        } else {
            format!("`{TOKEN_PLACEHOLDER}` is in the request but no token is given")
        });
    }
    if let Some((name, _)) = request
        .headers
        .iter()
        .find(|(name, _)| name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(format!("header name `{name}` must be lowercase"));
    }
    if (expect.status == 200) == expect.code.is_some() {
        return Err("`code` is required exactly when `status` is not 200".into());
    }
    if expect.status != 200 && !expect.forward.is_empty() {
        return Err("`forward` only goes with `status: 200`".into());
    }
    if let Some(code) = &expect.error
        && !crate::KNOWN_ERROR_CODES.contains(&code.as_str())
    {
        return Err(format!("unknown error code `{code}`"));
    }
    Ok(())
}

/// Replace `$token` in the request.
pub(crate) fn with_token(request: HttpCaseRequest, token: Option<&str>) -> HttpCaseRequest {
    let Some(token) = token else {
        return request;
    };
    HttpCaseRequest {
        method: request.method,
        path: request.path.replace(TOKEN_PLACEHOLDER, token),
        headers: request
            .headers
            .into_iter()
            .map(|(name, value)| (name, value.replace(TOKEN_PLACEHOLDER, token)))
            .collect(),
    }
}
