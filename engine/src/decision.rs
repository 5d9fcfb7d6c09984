//! Decisions and audit records. A decision is a value: deny and "unauthenticated" are
//! outcomes, not errors.

use crate::claims::{Principal, PrincipalKind};
use crate::error::ErrorInfo;
use crate::json_text::{push_int, push_opt_string, push_string, push_strings};
use crate::wire::KeyCase;
use serde::Serialize;

/// The outcome of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A permit policy applied and no forbid did.
    Allow,
    /// No permit applied, a forbid did, or something on the way failed (fail closed).
    Deny,
    /// No valid token: the caller is not authenticated.
    Unauthenticated,
}

impl Outcome {
    /// `allow`, `deny` or `unauthenticated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Unauthenticated => "unauthenticated",
        }
    }

    /// The HTTP status a gateway answers with: 200, 403 or 401.
    pub fn http_status(self) -> u16 {
        match self {
            Self::Allow => 200,
            Self::Deny => 403,
            Self::Unauthenticated => 401,
        }
    }
}

/// A summary of the principal, as it appears in decisions and audit records.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PrincipalSummary {
    /// Tenant.
    pub tenant: String,
    /// User or client.
    pub kind: PrincipalKind,
    /// Subject or client id.
    pub id: String,
    /// Cedar entity.
    pub entity: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Whether MFA was used (token principals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa: Option<bool>,
}

impl PrincipalSummary {
    pub(crate) fn from_principal(p: &Principal) -> Self {
        Self {
            tenant: p.tenant.clone(),
            kind: p.kind,
            id: p.id.clone(),
            entity: p.entity.clone(),
            roles: p.roles.clone(),
            mfa: Some(p.mfa),
        }
    }
}

/// An error that contributed to a decision: a token problem, a request problem, or a policy
/// that failed to evaluate (then `policy` names it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DecisionError {
    /// Stable code.
    pub code: &'static str,
    /// Message.
    pub message: String,
    /// The policy that failed to evaluate, for evaluation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// Longest error message a decision carries (messages may quote a request's values).
pub(crate) const MAX_ECHOED_MESSAGE: usize = 300;
/// Longest action a decision and its audit record echo, in bytes.
pub const MAX_ECHOED_ACTION: usize = 128;
/// Longest resource (`Type::"id"`) a decision and its audit record echo, in bytes.
pub const MAX_ECHOED_RESOURCE: usize = 256;

impl From<ErrorInfo> for DecisionError {
    fn from(info: ErrorInfo) -> Self {
        Self {
            code: info.code,
            message: if info.message.len() > MAX_ECHOED_MESSAGE {
                crate::error::sanitize(&info.message, MAX_ECHOED_MESSAGE)
            } else {
                info.message
            },
            policy: None,
        }
    }
}

/// What was asked, echoed into the decision for logs and audit, bounded: an action over
/// [`MAX_ECHOED_ACTION`] bytes or a resource over [`MAX_ECHOED_RESOURCE`] is cut, and ends in
/// `…[+N bytes]`, so that no request makes a large audit line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestSummary {
    /// The action id.
    pub action: String,
    /// The resource, `Type::"id"`.
    pub resource: String,
}

impl RequestSummary {
    pub(crate) fn of(action: &str, resource: &crate::engine::ResourceRef) -> Self {
        Self {
            action: bounded(action.to_owned(), MAX_ECHOED_ACTION),
            resource: bounded(resource.display(), MAX_ECHOED_RESOURCE),
        }
    }
}

/// `text` cut to at most `max` bytes (at a character boundary) with a marker saying how much
/// was cut.
fn bounded(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("…[+{cut} bytes]"));
    text
}

/// A decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// Allow, deny or unauthenticated.
    pub decision: Outcome,
    /// The HTTP status that goes with it (200, 403, 401).
    pub status: u16,
    /// Ids of the policies that decided it (permits for allow, forbids for an explicit deny).
    pub reasons: Vec<String>,
    /// Token, request and policy-evaluation errors.
    pub errors: Vec<DecisionError>,
    /// The principal, when the token was valid.
    pub principal: Option<PrincipalSummary>,
    /// Bundle revision.
    pub revision: String,
    /// Revision of the tenant data the decision joined (bundles that store data only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_revision: Option<u64>,
    /// Unique id of this decision (also in the audit record).
    pub decision_id: String,
    /// The request.
    pub request: RequestSummary,
    /// Token identity for the audit trail, never the token itself.
    #[serde(skip)]
    pub(crate) token: TokenIdentity,
    /// Evaluation time (the `now` passed in).
    #[serde(skip)]
    pub(crate) time: i64,
}

/// How the audit trail names a token without containing it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TokenIdentity {
    pub fingerprint: Option<String>,
    pub jti: Option<String>,
    pub issuer: Option<String>,
}

impl Decision {
    /// Whether the decision allows the request.
    pub fn is_allowed(&self) -> bool {
        self.decision == Outcome::Allow
    }

    /// The issuer whose keys this decision lacked — the token named a `kid` the engine does
    /// not have (its keys may have rotated), or the issuer has no keys yet — so the host
    /// should bring its fetch forward ([`crate::KeySchedule::wanted`]); `None` otherwise.
    pub fn keys_wanted(&self) -> Option<&str> {
        self.errors
            .iter()
            .any(|e| e.code == "token_unknown_kid" || e.code == "token_keys_unavailable")
            .then_some(self.token.issuer.as_deref())
            .flatten()
    }

    /// The tenant whose stored data this decision lacked (the host has not handed it over, or
    /// evicted it), so the host should fetch it; `None` otherwise.
    pub fn data_wanted(&self) -> Option<&str> {
        self.errors
            .iter()
            .any(|e| e.code == "data_unavailable")
            .then_some(self.principal.as_ref().map(|p| p.tenant.as_str()))
            .flatten()
    }

    /// The audit record for this decision: JSON-serialisable, with a token fingerprint and
    /// `jti` instead of the token.
    pub fn audit_record(&self) -> AuditRecord<'_> {
        AuditRecord {
            decision_id: &self.decision_id,
            time: self.time,
            decision: self.decision,
            tenant: self.principal.as_ref().map(|p| p.tenant.as_str()),
            principal: self.principal.as_ref().map(|p| p.entity.as_str()),
            action: &self.request.action,
            resource: &self.request.resource,
            reasons: &self.reasons,
            errors: self.errors.iter().map(|e| e.code).collect(),
            revision: &self.revision,
            data_revision: self.data_revision,
            issuer: self.token.issuer.as_deref(),
            token_fingerprint: self.token.fingerprint.as_deref(),
            jti: self.token.jti.as_deref(),
        }
    }

    /// The decision as JSON text: what `serde_json` writes for it, faster (decisions are
    /// written on every request).
    pub fn to_json(&self) -> String {
        self.to_json_as(KeyCase::Snake)
    }

    /// The decision as JSON text with the keys of `case`: [`KeyCase::Snake`] is what
    /// [`Decision::to_json`] writes; [`KeyCase::Camel`] is the JS SDK's shape — `decisionId`,
    /// and `keysWanted` (the issuer of [`Decision::keys_wanted`], when there is one) for the
    /// SDK's key fetcher. Only the engine's own keys differ: no key in a decision comes from
    /// user data.
    pub fn to_json_as(&self, case: KeyCase) -> String {
        let mut out = String::with_capacity(512);
        out.push_str("{\"decision\":");
        push_string(&mut out, self.decision.as_str());
        out.push_str(",\"status\":");
        push_int(&mut out, self.status);
        out.push_str(",\"reasons\":");
        push_strings(&mut out, self.reasons.iter().map(String::as_str));
        out.push_str(",\"errors\":");
        out.push('[');
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"code\":");
            push_string(&mut out, e.code);
            out.push_str(",\"message\":");
            push_string(&mut out, &e.message);
            if let Some(policy) = &e.policy {
                out.push_str(",\"policy\":");
                push_string(&mut out, policy);
            }
            out.push('}');
        }
        out.push(']');
        out.push_str(",\"principal\":");
        match &self.principal {
            None => out.push_str("null"),
            Some(p) => {
                out.push_str("{\"tenant\":");
                push_string(&mut out, &p.tenant);
                out.push_str(",\"kind\":");
                push_string(&mut out, p.kind.as_str());
                out.push_str(",\"id\":");
                push_string(&mut out, &p.id);
                out.push_str(",\"entity\":");
                push_string(&mut out, &p.entity);
                out.push_str(",\"roles\":");
                push_strings(&mut out, p.roles.iter().map(String::as_str));
                if let Some(mfa) = p.mfa {
                    out.push_str(",\"mfa\":");
                    out.push_str(if mfa { "true" } else { "false" });
                }
                out.push('}');
            }
        }
        out.push_str(",\"revision\":");
        push_string(&mut out, &self.revision);
        if let Some(revision) = self.data_revision {
            out.push_str(match case {
                KeyCase::Snake => ",\"data_revision\":",
                KeyCase::Camel => ",\"dataRevision\":",
            });
            out.push_str(&revision.to_string());
        }
        out.push_str(match case {
            KeyCase::Snake => ",\"decision_id\":",
            KeyCase::Camel => ",\"decisionId\":",
        });
        push_string(&mut out, &self.decision_id);
        out.push_str(",\"request\":");
        out.push_str("{\"action\":");
        push_string(&mut out, &self.request.action);
        out.push_str(",\"resource\":");
        push_string(&mut out, &self.request.resource);
        out.push('}');
        if let (KeyCase::Camel, Some(issuer)) = (case, self.keys_wanted()) {
            out.push_str(",\"keysWanted\":");
            push_string(&mut out, issuer);
        }
        out.push('}');
        out
    }
}

/// One audit line. Contains no token and no secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRecord<'a> {
    /// Decision id.
    pub decision_id: &'a str,
    /// Unix time of the decision.
    pub time: i64,
    /// Outcome.
    pub decision: Outcome,
    /// Tenant, when authenticated.
    pub tenant: Option<&'a str>,
    /// Principal entity, when authenticated.
    pub principal: Option<&'a str>,
    /// Action.
    pub action: &'a str,
    /// Resource.
    pub resource: &'a str,
    /// Deciding policies.
    pub reasons: &'a [String],
    /// Error codes.
    pub errors: Vec<&'static str>,
    /// Bundle revision.
    pub revision: &'a str,
    /// Tenant data revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_revision: Option<u64>,
    /// Token issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<&'a str>,
    /// First 16 bytes of the token's SHA-256, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_fingerprint: Option<&'a str>,
    /// The token's `jti`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<&'a str>,
}

impl AuditRecord<'_> {
    /// The record as one line of JSON: what `serde_json` writes for it, faster.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(384);
        out.push_str("{\"decision_id\":");
        push_string(&mut out, self.decision_id);
        out.push_str(",\"time\":");
        push_int(&mut out, self.time);
        out.push_str(",\"decision\":");
        push_string(&mut out, self.decision.as_str());
        out.push_str(",\"tenant\":");
        push_opt_string(&mut out, self.tenant);
        out.push_str(",\"principal\":");
        push_opt_string(&mut out, self.principal);
        out.push_str(",\"action\":");
        push_string(&mut out, self.action);
        out.push_str(",\"resource\":");
        push_string(&mut out, self.resource);
        out.push_str(",\"reasons\":");
        push_strings(&mut out, self.reasons.iter().map(String::as_str));
        out.push_str(",\"errors\":");
        push_strings(&mut out, self.errors.iter().copied());
        out.push_str(",\"revision\":");
        push_string(&mut out, self.revision);
        if let Some(revision) = self.data_revision {
            out.push_str(",\"data_revision\":");
            out.push_str(&revision.to_string());
        }
        for (key, value) in [
            (",\"issuer\":", self.issuer),
            (",\"token_fingerprint\":", self.token_fingerprint),
            (",\"jti\":", self.jti),
        ] {
            if let Some(value) = value {
                out.push_str(key);
                push_string(&mut out, value);
            }
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings with everything a JSON writer must escape, and some it must not.
    const AWKWARD: [&str; 5] = [
        "",
        "plain",
        "Report::\"q\\\"3\"",
        "line\nbreak\ttab\u{1}\u{1f}\u{7f}",
        "ünï 日本 🦀 \u{2028}",
    ];

    fn decisions() -> Vec<Decision> {
        let mut all = Vec::new();
        for (i, s) in AWKWARD.iter().enumerate() {
            let s = (*s).to_owned();
            let principal = |mfa| PrincipalSummary {
                tenant: s.clone(),
                kind: if i % 2 == 0 {
                    PrincipalKind::User
                } else {
                    PrincipalKind::Client
                },
                id: format!("{s}-id"),
                entity: format!("User::\"{s}\""),
                roles: vec![s.clone(); i],
                mfa,
            };
            for (j, outcome) in [Outcome::Allow, Outcome::Deny, Outcome::Unauthenticated]
                .into_iter()
                .enumerate()
            {
                let principal = match j {
                    0 => Some(principal(Some(i % 2 == 0))),
                    1 => Some(principal(None)),
                    _ => None,
                };
                let errors = (0..j)
                    .map(|k| DecisionError {
                        code: "token_expired",
                        message: format!("{s} {k}"),
                        policy: (k == 1).then(|| s.clone()),
                    })
                    .collect();
                let token = TokenIdentity {
                    fingerprint: (j != 1).then(|| "00ff".repeat(8)),
                    jti: (j == 0).then(|| s.clone()),
                    issuer: (j != 2).then(|| format!("https://{s}")),
                };
                all.push(Decision {
                    decision: outcome,
                    status: outcome.http_status(),
                    reasons: vec![s.clone(); j + i % 2],
                    errors,
                    principal,
                    revision: s.clone(),
                    data_revision: (j == 1).then_some(u64::MAX - i as u64),
                    decision_id: format!("{i}-{j}"),
                    request: RequestSummary {
                        action: s.clone(),
                        resource: format!("Report::\"{s}\""),
                    },
                    token,
                    time: 1_760_000_000 - (i as i64) * 1_000_000_000_000,
                });
            }
        }
        all
    }

    #[test]
    fn camel_case_decisions_differ_only_in_the_engines_keys() {
        for d in decisions() {
            let camel: serde_json::Value =
                serde_json::from_str(&d.to_json_as(KeyCase::Camel)).unwrap();
            let mut snake: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
            let map = snake.as_object_mut().unwrap();
            let id = map.remove("decision_id").unwrap();
            map.insert("decisionId".into(), id);
            if let Some(revision) = map.remove("data_revision") {
                map.insert("dataRevision".into(), revision);
            }
            if let Some(issuer) = d.keys_wanted() {
                map.insert("keysWanted".into(), issuer.into());
            }
            assert_eq!(camel, snake);
        }
        let mut wanting = decisions().remove(0);
        wanting.errors = vec![DecisionError {
            code: "token_unknown_kid",
            message: String::new(),
            policy: None,
        }];
        wanting.token.issuer = Some("https://idp.example".into());
        assert_eq!(wanting.keys_wanted(), Some("https://idp.example"));
        assert!(
            wanting
                .to_json_as(KeyCase::Camel)
                .ends_with(",\"keysWanted\":\"https://idp.example\"}")
        );
        assert!(!wanting.to_json().contains("keys"));
        wanting.token.issuer = None;
        assert_eq!(wanting.keys_wanted(), None, "no issuer: nothing to fetch");
    }

    #[test]
    fn decisions_and_audit_records_are_written_as_serde_json_writes_them() {
        let all = decisions();
        assert_eq!(all.len(), 15);
        for d in &all {
            assert_eq!(d.to_json(), serde_json::to_string(d).unwrap());
            let audit = d.audit_record();
            assert_eq!(audit.to_json(), serde_json::to_string(&audit).unwrap());
        }
        // The shapes the comparison is meant to cover are there.
        assert!(all.iter().any(|d| d.principal.is_none()));
        assert!(
            all.iter()
                .any(|d| d.principal.as_ref().is_some_and(|p| p.mfa.is_none()))
        );
        assert!(
            all.iter()
                .any(|d| d.errors.iter().any(|e| e.policy.is_some()))
        );
        assert!(
            all.iter()
                .any(|d| d.token.jti.is_some() && d.token.issuer.is_some())
        );
        assert!(all.iter().any(|d| d.token.fingerprint.is_none()));
        assert!(all.iter().any(|d| d.to_json().contains("\\u0001")));
    }
}

#[cfg(test)]
mod echo_tests {
    use super::*;
    use crate::engine::ResourceRef;

    #[test]
    fn echoed_requests_are_bounded() {
        let huge = "x".repeat(60_000);
        let summary = RequestSummary::of(&huge, &ResourceRef::new("Report", huge.clone()));
        assert!(
            summary.action.len() < MAX_ECHOED_ACTION + 20,
            "{}",
            summary.action.len()
        );
        assert!(
            summary.action.ends_with("…[+59872 bytes]"),
            "{}",
            &summary.action[120..]
        );
        assert!(summary.resource.len() < MAX_ECHOED_RESOURCE + 20);
        let short = RequestSummary::of("view", &ResourceRef::new("Report", "q3"));
        assert_eq!(
            (short.action.as_str(), short.resource.as_str()),
            ("view", "Report::\"q3\"")
        );
        // Cut at a character boundary.
        let wide = "é".repeat(100);
        assert!(
            RequestSummary::of(&wide, &ResourceRef::new("R", ""))
                .action
                .starts_with("éé")
        );
    }
}
