//! The case-file format (`cases/*.json`), documented in the crate's `README.md`.
//!
//! Every struct refuses unknown fields, so a typo in a case file is a load error rather than a
//! silently ignored expectation.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One case file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// What the file covers.
    pub description: String,
    /// The bundle directory, relative to the repository root (`policies/techfin`).
    pub bundle: String,
    /// Evaluation time (unix seconds) for every case of the file; token times are relative to it.
    pub now: i64,
    /// The decision cases.
    #[serde(default)]
    pub cases: Vec<Case>,
    /// The edge options (`EdgeOptions`: token sources, identity headers, …) the file's HTTP
    /// cases are decided with; every host configures its edge with them.
    #[serde(default)]
    pub edge: Option<Value>,
    /// The HTTP-request cases, decided by the edge with the bundle's routes.
    #[serde(default)]
    pub http: Vec<HttpCase>,
    /// The tenants' stored entities the cases decide with (`{"tenants": {"acme": [entity,
    /// …]}}`), for a bundle that stores data. Files of one bundle share one store: an entity
    /// given by two files must be given alike.
    #[serde(default)]
    pub data: Option<portcullis_engine::DataSet>,
}

/// One HTTP-request case: a request as a client sends it, and what the edge must do with it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCase {
    /// Unique within the file.
    pub name: String,
    /// The token `$token` stands for in the request's path and header values; `null` (or
    /// absent) when the request carries none.
    #[serde(default)]
    pub token: Option<TokenSpec>,
    /// The request.
    pub request: HttpCaseRequest,
    /// What every host must do with it.
    pub expect: HttpExpect,
    /// As [`Case::known_issue`].
    #[serde(default)]
    pub known_issue: Option<String>,
}

/// An HTTP request: method, path with query, and headers in order (names lowercase; a
/// repeated header is several pairs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCaseRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path and query, as the client sends it.
    pub path: String,
    /// `[name, value]` pairs.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

/// What the edge must do with an HTTP case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpExpect {
    /// `200`: forwarded upstream; anything else: answered by the edge with this status.
    pub status: u16,
    /// The `code` of the edge's answer (`forbidden`, `unauthenticated`, `request_invalid`,
    /// `unavailable`); required unless `status` is 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The decision made, or `none` when the edge answered (or forwarded) without one.
    pub decision: HttpDecision,
    /// The exact set of deciding policy ids, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<String>>,
    /// An error code that must appear among the decision's errors, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The identity headers the upstream receives (only when forwarded), exactly — the
    /// decision-id header apart, whose value must be the decision's id.
    #[serde(default)]
    pub forward: std::collections::BTreeMap<String, String>,
    /// The `WWW-Authenticate` challenge, exactly; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
}

/// The decision an HTTP case expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpDecision {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
    /// No valid token.
    Unauthenticated,
    /// No decision was made (no route, a refused request, a preflight).
    None,
}

impl HttpDecision {
    /// `allow`, `deny`, `unauthenticated`, or `None` for no decision.
    pub fn as_outcome(self) -> Option<&'static str> {
        match self {
            Self::Allow => Some("allow"),
            Self::Deny => Some("deny"),
            Self::Unauthenticated => Some("unauthenticated"),
            Self::None => None,
        }
    }
}

/// One case: a token (or none), a request and the expected decision.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique within the file.
    pub name: String,
    /// How to build the token; `null` (or absent) sends no token.
    #[serde(default)]
    pub token: Option<TokenSpec>,
    /// What is asked.
    pub request: CaseRequest,
    /// What every host must answer.
    pub expect: Expect,
    /// A known engine defect: the case states the correct expectation but is expected to fail
    /// until the engine is fixed. A runner counts it apart from passes, and fails if it passes.
    #[serde(default)]
    pub known_issue: Option<String>,
}

/// The request part of a case (the body of `POST /v1/decide`, without the token).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    /// Action id (`view`).
    pub action: String,
    /// The resource.
    pub resource: CaseResource,
    /// Extra context.
    #[serde(default)]
    pub context: Map<String, Value>,
}

/// A resource reference with attributes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseResource {
    /// Entity type (`Report`).
    #[serde(rename = "type")]
    pub entity_type: String,
    /// Entity id.
    pub id: String,
    /// Attributes, in Cedar JSON value form.
    #[serde(default)]
    pub attrs: Map<String, Value>,
}

/// The expected outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `allow`, `deny` or `unauthenticated`.
    pub decision: ExpectedDecision,
    /// The exact set of deciding policy ids, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<String>>,
    /// An error code that must appear among the decision's errors, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Who the token made the principal, when given (how an IdP's token was read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<ExpectedPrincipal>,
}

/// The principal a decision must name: each given field must match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedPrincipal {
    /// `user` or `client`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The subject or client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The roles, exactly (as a set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

/// A decision outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpectedDecision {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
    /// No valid token.
    Unauthenticated,
}

impl ExpectedDecision {
    /// `allow`, `deny` or `unauthenticated` (the engine's `Outcome::as_str`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Unauthenticated => "unauthenticated",
        }
    }
}

/// How to build a token: either `raw`, or a tenant's development issuer plus changes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// A literal token string; excludes every other field.
    #[serde(default)]
    pub raw: Option<String>,
    /// The tenant whose development issuer signs.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Which of the tenant's issuer entries (default the first).
    #[serde(default)]
    pub issuer: usize,
    /// Merged over `DevIssuer::base_claims(now, 3600)`; `null` removes a claim.
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// Merged over the default header `{alg, kid, typ}`; `null` removes a parameter.
    #[serde(default)]
    pub header: Map<String, Value>,
    /// The algorithm to sign with (default the issuer's first). Also the default header `alg`.
    #[serde(default)]
    pub alg: Option<String>,
    /// A forgery to apply.
    #[serde(default)]
    pub forge: Option<Forge>,
    /// With `other_tenant_key`: whose key signs (default the first other tenant, by name,
    /// whose key can sign the algorithm).
    #[serde(default)]
    pub key_tenant: Option<String>,
    /// With `tamper_payload`: claims merged into the payload after signing (default
    /// `{"tampered": true}`).
    #[serde(default)]
    pub tamper: Option<Map<String, Value>>,
    /// Raw JSON members appended inside the serialized header object before signing
    /// (e.g. a duplicate key).
    #[serde(default)]
    pub header_suffix: Option<String>,
    /// Raw JSON members appended inside the serialized claims object before signing
    /// (e.g. a duplicate key).
    #[serde(default)]
    pub payload_suffix: Option<String>,
}

/// A forgery applied to a development token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forge {
    /// `alg: none` (unless `header.alg` gives another casing) and an empty signature.
    None,
    /// Sign normally, then drop the signature (`header.payload.`).
    StripSignature,
    /// Sign, then re-encode the payload with `tamper` merged in, keeping the signature.
    TamperPayload,
    /// Sign, then flip bits of the signature's first byte.
    TamperSignature,
    /// HS256 (or the `alg` given, if HMAC) with the issuer's public JWK as the secret.
    HmacWithPublicKey,
    /// An all-zero signature of the right length (ECDSA r = s = 0).
    EcdsaZero,
    /// Sign with another tenant's development key, keeping this tenant's `kid`.
    OtherTenantKey,
    /// A `kid` the issuer does not have (`<kid>-unknown`).
    WrongKid,
    /// An ECDSA token re-signed in its other valid form, `(r, n - s)` (malleability: must be
    /// the same token as the original).
    HighS,
}

impl Forge {
    /// The snake-case name, as in case files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StripSignature => "strip_signature",
            Self::TamperPayload => "tamper_payload",
            Self::TamperSignature => "tamper_signature",
            Self::HmacWithPublicKey => "hmac_with_public_key",
            Self::EcdsaZero => "ecdsa_zero",
            Self::OtherTenantKey => "other_tenant_key",
            Self::WrongKid => "wrong_kid",
            Self::HighS => "high_s",
        }
    }
}

/// Every error code the engine documents for decisions (token, request and policy errors).
/// An `expect.error` outside this list is a load error, so a typo cannot make a case vacuous.
pub const KNOWN_ERROR_CODES: &[&str] = &[
    "token_missing",
    "token_too_large",
    "token_malformed",
    "token_algorithm_unsupported",
    "token_header_forbidden",
    "token_type",
    "token_issuer",
    "token_tenant",
    "token_algorithm_not_allowed",
    "token_unknown_kid",
    "token_ambiguous_key",
    "token_keys_unavailable",
    "token_keys_changed",
    "token_signature",
    "token_claim",
    "token_expired",
    "token_not_yet_valid",
    "token_iat",
    "token_audience",
    "token_lifetime",
    "token_crypto",
    "request_action",
    "request_entity",
    "request_context",
    "request_schema",
    "request_tenant",
    "request_stored_attrs",
    "data_unavailable",
    "data_depth",
    "policy_evaluation",
];
