//! Error types, one enum per boundary: bundle loading, token verification, requests.
//!
//! Every error flattens to the stable edge shape `{code, message, help?}` through
//! [`ErrorInfo`], which is what the JS, Envoy and HTTP hosts put on the wire. Messages are
//! lowercase without a final period, put user input in backticks and never contain a token,
//! a key or a secret.

use serde::Serialize;
use std::fmt;

/// The stable, serialisable shape every error takes at a host's edge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorInfo {
    /// A stable machine-readable code (documented in the README's error table).
    pub code: &'static str,
    /// A human-readable message.
    pub message: String,
    /// What to do about it, when there is something to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// Where in the bundle sources a problem is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceLocation {
    /// The file, relative to the bundle directory (`policies/analysts.cedar`).
    pub file: String,
    /// 1-based line, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl SourceLocation {
    /// A location naming only a file.
    pub fn file(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: None,
            column: None,
        }
    }

    /// A location at a byte offset of `source`, converted to line and column.
    pub fn at_offset(file: impl Into<String>, source: &str, offset: usize) -> Self {
        let offset = offset.min(source.len());
        let before = source.get(..offset).unwrap_or(source);
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
            before.get(nl + 1..).map_or(0, |rest| rest.chars().count())
        }) + 1;
        Self {
            file: file.into(),
            line: Some(line),
            column: Some(column),
        }
    }
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

/// One problem found while loading or validating a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BundleProblem {
    /// A stable code (`policy_parse`, `policy_validation`, `schema`, `tenants`, `keys`, ...).
    pub code: &'static str,
    /// Where it is, when it is in a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<SourceLocation>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl BundleProblem {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            location: None,
            message: message.into(),
            help: None,
        }
    }

    pub(crate) fn at(mut self, location: SourceLocation) -> Self {
        self.location = Some(location);
        self
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for BundleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, " (help: {help})")?;
        }
        Ok(())
    }
}

/// A bundle failed to load. It carries every problem found, not just the first, so a
/// policy author can fix them in one go.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_problems(.problems))]
pub struct BundleError {
    /// All problems, in source order where that applies.
    pub problems: Vec<BundleProblem>,
}

fn render_problems(problems: &[BundleProblem]) -> String {
    match problems {
        [one] => format!("invalid bundle: {one}"),
        many => {
            let mut out = format!("invalid bundle: {} problems", many.len());
            for problem in many {
                out.push_str("\n  - ");
                out.push_str(&problem.to_string());
            }
            out
        }
    }
}

impl BundleError {
    pub(crate) fn one(problem: BundleProblem) -> Self {
        Self {
            problems: vec![problem],
        }
    }

    /// The edge shape of this error.
    pub fn info(&self) -> ErrorInfo {
        ErrorInfo {
            code: "bundle_invalid",
            message: self.to_string(),
            help: self.problems.first().and_then(|p| p.help.clone()),
        }
    }
}

/// Why a token was not accepted. Each variant maps to a stable code; none carries token bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No token was presented.
    #[error("no token was presented")]
    Missing,
    /// The token is larger than the configured limit.
    #[error("token is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The token is not a compact JWS (three base64url parts of JSON).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm that is never accepted (`none`) or unknown.
    #[error("token algorithm `{0}` is not supported")]
    UnsupportedAlgorithm(String),
    /// The header uses a feature that is refused (`crit`, embedded keys, compression).
    #[error("token header parameter `{0}` is not accepted")]
    ForbiddenHeader(&'static str),
    /// The header `typ` is not the one the issuer requires.
    #[error("token type `{found}` is not the required `{expected}`")]
    WrongType {
        /// What the token says (sanitised, truncated).
        found: String,
        /// What the issuer profile requires.
        expected: String,
    },
    /// `iss` is missing, not a string or not a configured issuer (named, sanitised: an issuer
    /// is not a secret, and a user configuring a tenant needs to see which one arrived).
    #[error("token issuer `{0}` is not trusted")]
    UntrustedIssuer(String),
    /// The issuer is trusted, but the token matches none (or several) of its tenant entries.
    #[error("token matches no tenant of its issuer")]
    NoTenant,
    /// The algorithm is not in the issuer's allowlist.
    #[error("algorithm `{0}` is not allowed for this issuer")]
    AlgorithmNotAllowed(String),
    /// No key of the issuer has the token's `kid`.
    #[error("no key of the issuer has this token's `kid`")]
    UnknownKey,
    /// The token has no `kid` and the issuer has several candidate keys.
    #[error("token has no `kid` and the issuer has several keys for its algorithm")]
    AmbiguousKey,
    /// The issuer's keys are not available yet (remote JWKS not fetched).
    #[error("keys for the token's issuer are not loaded")]
    KeysUnavailable,
    /// The issuer's keys were replaced while the signature was being checked, so the check
    /// proves nothing about the current keys (the engine's own path starts over; a host that
    /// verifies asynchronously retries).
    #[error("the issuer's keys changed while the token was being verified")]
    KeysChanged,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// A registered claim has the wrong type or is missing.
    #[error("token claim `{0}` is missing or malformed")]
    BadClaim(&'static str),
    /// `exp` is in the past.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future, or older than the issuer's maximum token age.
    #[error("token issue time is out of range")]
    IssuedAt,
    /// `exp` is further from now, or from `iat`, than the issuer's maximum token lifetime.
    #[error("token lifetime is over the issuer's maximum of {limit}s")]
    Lifetime {
        /// The maximum, seconds.
        limit: i64,
    },
    /// `aud` names none of the configured audiences.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// The crypto provider failed (not a bad signature).
    #[error("signature check failed: {0}")]
    Crypto(String),
}

impl TokenError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "token_missing",
            Self::TooLarge { .. } => "token_too_large",
            Self::Malformed(_) => "token_malformed",
            Self::UnsupportedAlgorithm(_) => "token_algorithm_unsupported",
            Self::ForbiddenHeader(_) => "token_header_forbidden",
            Self::WrongType { .. } => "token_type",
            Self::UntrustedIssuer(_) => "token_issuer",
            Self::NoTenant => "token_tenant",
            Self::AlgorithmNotAllowed(_) => "token_algorithm_not_allowed",
            Self::UnknownKey => "token_unknown_kid",
            Self::AmbiguousKey => "token_ambiguous_key",
            Self::KeysUnavailable => "token_keys_unavailable",
            Self::KeysChanged => "token_keys_changed",
            Self::BadSignature => "token_signature",
            Self::BadClaim(_) => "token_claim",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::IssuedAt => "token_iat",
            Self::Lifetime { .. } => "token_lifetime",
            Self::WrongAudience => "token_audience",
            Self::Crypto(_) => "token_crypto",
        }
    }

    /// The edge shape of this error.
    pub fn info(&self) -> ErrorInfo {
        let help = match self {
            Self::UnknownKey | Self::KeysUnavailable => {
                Some("the host refreshes the issuer's JWKS; retry shortly".to_owned())
            }
            Self::KeysChanged => Some("retry: the next attempt uses the current keys".to_owned()),
            Self::Missing => Some("send `Authorization: Bearer <token>`".to_owned()),
            _ => None,
        };
        ErrorInfo {
            code: self.code(),
            message: self.to_string(),
            help,
        }
    }
}

/// A request to the engine was malformed (not a policy outcome: the caller misused the API).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The action is not a valid Cedar action id.
    #[error("invalid action `{0}`")]
    Action(String),
    /// The resource or principal reference is not a valid entity reference.
    #[error("invalid entity reference `{reference}`: {reason}")]
    Entity {
        /// The offending reference, truncated.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The context is not an object, or uses a key the engine reserves.
    #[error("invalid context: {0}")]
    Context(String),
    /// Cedar rejected the request against the schema.
    #[error("request does not match the schema: {0}")]
    Schema(String),
    /// The named tenant does not exist in the bundle.
    #[error("unknown tenant `{0}`")]
    UnknownTenant(String),
    /// The bundle stores entities and the host has not handed the engine this tenant's data
    /// (deciding without it could miss a fact a policy forbids on).
    #[error("the data of tenant `{0}` is not loaded")]
    DataUnavailable(String),
    /// The request gives attributes (or an entity) of a stored type: its facts come from the
    /// tenant's data, never from a request.
    #[error(
        "`{0}` is a stored entity type: its attributes come from the tenant's data, never from a request"
    )]
    StoredAttributes(String),
    /// The bundle stores data and a trusted request names no tenant to take it from.
    #[error("the bundle stores entities: a request for a trusted principal names its tenant")]
    TenantRequired,
    /// A chain of stored parents deeper than the bundle's `data.max_depth`.
    #[error("stored entities have a chain of parents deeper than {0} levels")]
    DataDepth(usize),
    /// The engine holds only a signed-in user's slice of the tenant's data, and the decision
    /// is outside it: another principal's, or about a stored resource the slice was not cut
    /// for (or that its principal may do nothing with). Decided on the slice, it would miss
    /// facts the server decides on.
    #[error("`{0}` is outside the data slice the engine holds: fetch a slice that asks for it")]
    OutsideSlice(String),
}

impl RequestError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Action(_) => "request_action",
            Self::Entity { .. } => "request_entity",
            Self::Context(_) => "request_context",
            Self::Schema(_) => "request_schema",
            Self::UnknownTenant(_) => "request_tenant",
            Self::DataUnavailable(_) => "data_unavailable",
            Self::TenantRequired => "request_tenant",
            Self::StoredAttributes(_) => "request_stored_attrs",
            Self::DataDepth(_) => "data_depth",
            Self::OutsideSlice(_) => "data_outside_slice",
        }
    }

    /// The edge shape of this error.
    pub fn info(&self) -> ErrorInfo {
        ErrorInfo {
            code: self.code(),
            message: self.to_string(),
            help: None,
        }
    }
}

/// Keys handed to the engine by a host could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No issuer of the bundle has this URL.
    #[error("issuer `{0}` is not in the bundle")]
    UnknownIssuer(String),
    /// The JWK set is not valid JSON or has no usable key.
    #[error("invalid JWK set: {0}")]
    InvalidJwks(String),
    /// No issuer of the bundle names this secret.
    #[error("no issuer of the bundle names the secret `{0}`")]
    UnknownSecret(String),
    /// The secret cannot be used (too short for the issuers' algorithms). Never contains the
    /// secret.
    #[error("secret `{name}` cannot be used: {reason}")]
    InvalidSecret {
        /// The secret's name.
        name: String,
        /// Why.
        reason: String,
    },
}

impl KeyError {
    /// The edge shape of this error.
    pub fn info(&self) -> ErrorInfo {
        let code = match self {
            Self::UnknownIssuer(_) => "keys_unknown_issuer",
            Self::InvalidJwks(_) => "keys_invalid",
            Self::UnknownSecret(_) => "keys_unknown_secret",
            Self::InvalidSecret { .. } => "keys_invalid_secret",
        };
        ErrorInfo {
            code,
            message: self.to_string(),
            help: None,
        }
    }
}

/// Lowercase hex of the first 16 bytes of a SHA-256 digest: revisions and token fingerprints.
pub(crate) fn hex16(digest: &[u8]) -> String {
    hex(digest.get(..16).unwrap_or(digest))
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let digit = |nibble: u8| char::from_digit(u32::from(nibble), 16).unwrap_or('0');
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(digit(byte >> 4));
        out.push(digit(byte & 0x0f));
    }
    out
}

/// A `serde_json` error's message without the ` at line L column C` it ends with: the
/// problem's location says where, once.
pub fn json_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    text.strip_suffix(&suffix)
        .map_or_else(|| text.clone(), str::to_owned)
}

/// The candidate closest to `name` (edit distance at most a third of its length, and at
/// least 1), for "did you mean" hints.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance over characters, a swap of neighbours counting as one edit (optimal string
/// alignment: `veiw` is one edit from `view`). Short names only: quadratic.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    let at = |i: usize, j: usize| i * width + j;
    let get = |d: &[usize], i: usize, j: usize| d.get(at(i, j)).copied().unwrap_or(usize::MAX / 2);
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            let value = if i == 0 || j == 0 {
                i + j
            } else {
                let cost = usize::from(a.get(i - 1) != b.get(j - 1));
                let mut best = (get(&d, i - 1, j) + 1)
                    .min(get(&d, i, j - 1) + 1)
                    .min(get(&d, i - 1, j - 1) + cost);
                if i > 1 && j > 1 && a.get(i - 1) == b.get(j - 2) && a.get(i - 2) == b.get(j - 1) {
                    best = best.min(get(&d, i - 2, j - 2) + 1);
                }
                best
            };
            if let Some(cell) = d.get_mut(at(i, j)) {
                *cell = value;
            }
        }
    }
    get(&d, a.len(), b.len())
}

/// Shorten user-controlled text before it goes into a message, and strip control characters.
pub(crate) fn sanitize(text: &str, max: usize) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_from_offset() {
        let src = "ab\ncde\nf";
        assert_eq!(SourceLocation::at_offset("x", src, 0).line, Some(1));
        let l = SourceLocation::at_offset("x", src, 4);
        assert_eq!((l.line, l.column), (Some(2), Some(2)));
        assert_eq!(l.to_string(), "x:2:2");
    }

    #[test]
    fn hex16_is_lowercase_and_truncated() {
        let digest: Vec<u8> = (0u8..32).map(|b| b.wrapping_mul(17)).collect();
        assert_eq!(hex16(&digest), "00112233445566778899aabbccddeeff");
        assert_eq!(hex16(&[0xAB]), "ab");
    }

    #[test]
    fn suggestions_are_close_names_only() {
        assert_eq!(did_you_mean("veiw", ["view", "export"]), Some("view"));
        assert_eq!(did_you_mean("Strng", ["String", "Long"]), Some("String"));
        assert_eq!(did_you_mean("delete", ["view", "export"]), None);
        assert_eq!(did_you_mean("view", ["view"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
    }

    #[test]
    fn sanitize_truncates_and_strips() {
        assert_eq!(sanitize("a\u{7}bc", 2), "ab…");
        assert_eq!(sanitize("abc", 5), "abc");
    }
}
