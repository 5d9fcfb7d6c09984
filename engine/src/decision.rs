//! Decisions and audit records. A decision is a value: deny and "unauthenticated" are
//! outcomes, not errors.

use crate::claims::{Principal, PrincipalKind};
use crate::error::ErrorInfo;
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

impl From<ErrorInfo> for DecisionError {
    fn from(info: ErrorInfo) -> Self {
        Self {
            code: info.code,
            message: info.message,
            policy: None,
        }
    }
}

/// What was asked, echoed into the decision for logs and audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestSummary {
    /// The action id.
    pub action: String,
    /// The resource, `Type::"id"`.
    pub resource: String,
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
            issuer: self.token.issuer.as_deref(),
            token_fingerprint: self.token.fingerprint.as_deref(),
            jti: self.token.jti.as_deref(),
        }
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
