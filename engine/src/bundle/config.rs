//! The bundle's configuration documents: `tenants.json`, `bundle.json` settings and the
//! claim-mapping configuration. Unknown fields are errors, so a typo never silently drops a rule.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `tenants.json`: every tenant and the issuers it trusts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsFile {
    /// Tenants by name.
    pub tenants: BTreeMap<String, TenantConfig>,
}

/// One tenant (a client organisation).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// A display name, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The identity providers whose tokens act in this tenant.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
}

/// One trusted issuer of a tenant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` value.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one.
    pub audiences: Vec<String>,
    /// The algorithm allowlist (`RS256`, `ES256`, ...).
    pub algorithms: Vec<String>,
    /// An inline JWK set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// A JWK set file, relative to the bundle directory (inlined into `jwks` by compilation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<String>,
    /// A JWK set URL the host fetches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// An OIDC discovery URL the host resolves `jwks_uri` from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<String>,
    /// For HMAC (`HS*`) issuers: the name of the shared secret, which the verifying host reads
    /// from its own secret source (`--secrets-dir`, `PORTCULLIS_SECRET_<NAME>`). The secret
    /// itself never goes in a bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    /// Claim mapping.
    #[serde(default)]
    pub claims: ClaimsConfig,
    /// Claims that must equal these values for a token of a shared issuer to be this tenant's.
    #[serde(default, rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub match_claims: BTreeMap<String, String>,
    /// Required JOSE header `typ` (compared case-insensitively, `application/` prefix optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// Maximum age of a token in seconds, measured from `iat` (which becomes required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_token_age: Option<u64>,
    /// Allowed clock skew in seconds for `exp`, `nbf` and `iat` (default from settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew: Option<u64>,
    /// The longest a token may be valid, seconds, from now and from `iat` (default
    /// `tokens.max_lifetime` of the settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_token_lifetime: Option<u64>,
}

/// The name of an issuer's HMAC secret (`"acme-hmac"`), optionally with the `kid` its tokens
/// carry (`{"name": "acme-hmac", "kid": "k1"}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// The secret's name: 1-64 letters, digits, `.`, `_` or `-`.
    pub name: String,
    /// The key id tokens signed with it carry, if any.
    pub kid: Option<String>,
}

impl SecretRef {
    /// The environment variable a host reads this secret from: `PORTCULLIS_SECRET_` and the
    /// name in upper case, with every other character than a letter or digit as `_`.
    pub fn env_var(&self) -> String {
        let mut out = String::from("PORTCULLIS_SECRET_");
        out.extend(self.name.chars().map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        }));
        out
    }

    pub(crate) fn valid_name(&self) -> bool {
        (1..=64).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && !self.name.starts_with('.')
    }
}

impl Serialize for SecretRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.kid {
            None => serializer.serialize_str(&self.name),
            Some(kid) => {
                let mut map = serde_json::Map::new();
                map.insert("name".into(), self.name.clone().into());
                map.insert("kid".into(), kid.clone().into());
                serde_json::Value::Object(map).serialize(serializer)
            }
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expected = "a secret name, or {\"name\": \"<name>\", \"kid\": \"<kid>\"}";
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(name) => Ok(Self { name, kid: None }),
            serde_json::Value::Object(map) if map.keys().all(|k| k == "name" || k == "kid") => {
                let name = map.get("name").and_then(serde_json::Value::as_str);
                let kid = match map.get("kid") {
                    None => Ok(None),
                    Some(serde_json::Value::String(kid)) => Ok(Some(kid.clone())),
                    Some(_) => Err(()),
                };
                match (name, kid) {
                    (Some(name), Ok(kid)) => Ok(Self {
                        name: name.to_owned(),
                        kid,
                    }),
                    _ => Err(serde::de::Error::custom(format!("expected {expected}"))),
                }
            }
            _ => Err(serde::de::Error::custom(format!("expected {expected}"))),
        }
    }
}

/// A claim path: a dotted string (`realm_access.roles`) or an explicit list of keys, for claim
/// names that contain dots (`["https://example.com/roles"]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClaimPath {
    /// Dotted path.
    Dotted(String),
    /// Explicit keys.
    Keys(Vec<String>),
}

impl ClaimPath {
    /// The keys of this path.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Self::Dotted(path) => path.split('.').collect(),
            Self::Keys(keys) => keys.iter().map(String::as_str).collect(),
        }
    }

    /// Look the path up in a claims object.
    pub fn lookup<'a>(
        &self,
        claims: &'a serde_json::Map<String, serde_json::Value>,
    ) -> Option<&'a serde_json::Value> {
        let mut keys = self.keys().into_iter();
        let mut current = claims.get(keys.next()?)?;
        for key in keys {
            current = current.as_object()?.get(key)?;
        }
        Some(current)
    }

    pub(crate) fn is_valid(&self) -> bool {
        let keys = self.keys();
        !keys.is_empty() && keys.iter().all(|k| !k.is_empty())
    }
}

impl From<&str> for ClaimPath {
    fn from(path: &str) -> Self {
        Self::Dotted(path.to_owned())
    }
}

/// An identity-provider preset: where roles, groups, scopes, MFA and auth time live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Microsoft Entra ID.
    Entra,
    /// Google Workspace.
    Google,
    /// AWS Cognito.
    Cognito,
    /// Auth0.
    Auth0,
    /// Okta.
    Okta,
    /// Keycloak.
    Keycloak,
    /// Standard OIDC/OAuth claim names.
    #[default]
    Generic,
}

/// How to turn an issuer's claims into a principal. Unset fields come from the preset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsConfig {
    /// The preset.
    #[serde(default)]
    pub preset: Preset,
    /// The subject claim (the principal id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<ClaimPath>,
    /// The roles claim: an array of strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<ClaimPath>,
    /// The groups claim: an array of strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<ClaimPath>,
    /// The scopes claim: a space-delimited string or an array of strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<ClaimPath>,
    /// The OAuth client id claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClaimPath>,
    /// Extra principal attributes: attribute name → claim path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, ClaimPath>,
    /// `amr` values that mean multi-factor (default `mfa`, `otp`, `hwk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_amr: Option<Vec<String>>,
    /// `acr` values that mean multi-factor (default none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mfa_acr: Vec<String>,
    /// Rename IdP role values to Cedar role ids (`{"finance-analyst": "FinanceAnalyst"}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub role_map: BTreeMap<String, String>,
}

/// Bundle-wide settings (`bundle.json` in the authoring directory; all optional).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Validate policies against the schema on load (turn off only for raw Cedar test corpora).
    pub validate_policies: bool,
    /// Require an `@id("...")` annotation on every policy.
    pub require_policy_ids: bool,
    /// Entity type names the engine uses for principals.
    pub entity_types: EntityTypes,
    /// Token limits.
    pub tokens: TokenSettings,
    /// Authorization data: which entity types tenants store. Left out of the compiled form when
    /// nothing is stored, so that bundles compiled before it existed keep their revision.
    #[serde(skip_serializing_if = "DataSettings::is_default")]
    pub data: DataSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            validate_policies: true,
            require_policy_ids: true,
            entity_types: EntityTypes::default(),
            tokens: TokenSettings::default(),
            data: DataSettings::default(),
        }
    }
}

/// Authorization data (`"data"` in `bundle.json`): the entity types whose facts live in the
/// tenants' stores, never in requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSettings {
    /// Entity types tenants store (`["Report", "Department"]`). Their attributes and parents
    /// come from the store only: a request that gives attributes for one is refused.
    pub stored: Vec<String>,
    /// The most levels of parents a decision follows from the principal and from the resource
    /// (and the most a write may create), 1 to [`MAX_DATA_DEPTH`].
    pub max_depth: usize,
    /// How the decision service authorizes calls to a tenant's data: action `read` (get,
    /// list, export, sync) or `write` (put, patch, delete, import) on `resource::"<tenant>"`,
    /// decided by the bundle's policies from the caller's token.
    pub access: DataAccess,
}

/// The actions and resource type data calls are authorized as (`"data": {"access": …}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataAccess {
    /// The resource type: a call on tenant `acme`'s data is on `<resource>::"acme"`.
    pub resource: String,
    /// The action of reads.
    pub read: String,
    /// The action of writes.
    pub write: String,
}

impl Default for DataAccess {
    fn default() -> Self {
        Self {
            resource: "Tenant".into(),
            read: "data.read".into(),
            write: "data.write".into(),
        }
    }
}

/// The most parent levels a bundle may let stored entities have.
pub const MAX_DATA_DEPTH: usize = 32;

impl DataSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for DataSettings {
    fn default() -> Self {
        Self {
            stored: Vec::new(),
            max_depth: 8,
            access: DataAccess::default(),
        }
    }
}

/// Entity type names for token principals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EntityTypes {
    /// Human users.
    pub user: String,
    /// OAuth clients (client-credentials tokens).
    pub client: String,
    /// Roles (parents of users and clients).
    pub role: String,
    /// Groups (parents of users, when the schema declares the type).
    pub group: String,
}

impl Default for EntityTypes {
    fn default() -> Self {
        Self {
            user: "User".into(),
            client: "Client".into(),
            role: "Role".into(),
            group: "Group".into(),
        }
    }
}

/// Token limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    /// Largest accepted token, in bytes, checked before any decoding.
    pub max_bytes: usize,
    /// Default clock skew in seconds.
    pub clock_skew: u64,
    /// Most verified tokens kept in the cache. Each cached token also remembers the evaluations
    /// of its last few requests (a token sent again for the same request skips Cedar); `0`
    /// turns both off.
    pub cache_entries: usize,
    /// The longest a token may be valid, in seconds, counted from now and from its `iat`
    /// (default 36 hours: Entra ID's continuous-access tokens live up to 28). A token with `exp`
    /// further out is refused (`token_lifetime`) rather than trusted, and cached, until then.
    /// Left out of the compiled form at its default, so that bundles compiled before it existed
    /// keep their revision.
    #[serde(skip_serializing_if = "is_default_lifetime")]
    pub max_lifetime: u64,
}

fn is_default_lifetime(seconds: &u64) -> bool {
    *seconds == TokenSettings::default().max_lifetime
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            max_bytes: 16 * 1024,
            clock_skew: 60,
            cache_entries: 10_000,
            max_lifetime: 36 * 3600,
        }
    }
}

/// The most a bundle may set as a maximum token lifetime (30 days, Auth0's own maximum).
pub const MAX_TOKEN_LIFETIME: u64 = 30 * 24 * 3600;

/// The most clock skew a bundle may configure (5 minutes).
pub const MAX_CLOCK_SKEW: u64 = 300;
