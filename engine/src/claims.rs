//! Claim mapping: verified token claims → a tenant-scoped [`Principal`].
//!
//! Each identity provider puts roles, groups, scopes, MFA and the client id somewhere else;
//! a [`Preset`] knows where, and the issuer's `claims` configuration overrides or extends it.
//! Malformed claims (a string where an array is expected, wrong types) are dropped with a note
//! and never grant anything.

use crate::bundle::{AttrType, ClaimPath, ClaimsConfig, Preset, PrincipalTypes};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Most values kept from one multi-valued claim (roles, groups, scopes).
const MAX_VALUES: usize = 256;
/// Longest single value kept.
const MAX_VALUE_LEN: usize = 256;

/// Whether the principal is a person or an OAuth client acting for itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// A signed-in user.
    User,
    /// A client-credentials token (partner API client).
    Client,
}

impl PrincipalKind {
    /// `user` or `client`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Client => "client",
        }
    }
}

/// The caller, as the engine understands it from verified claims.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Principal {
    /// The tenant whose issuer entry verified the token (never a claim's say-so).
    pub tenant: String,
    /// User or client.
    pub kind: PrincipalKind,
    /// The subject (users) or client id (clients).
    pub id: String,
    /// The Cedar entity, `User::"acme/alice"`: ids are tenant-qualified.
    pub entity: String,
    /// The issuer.
    pub issuer: String,
    /// Roles (after `role_map`).
    pub roles: Vec<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// OAuth scopes.
    pub scopes: Vec<String>,
    /// Mapped attributes (department, ...).
    pub attributes: BTreeMap<String, Value>,
    /// Whether the session used multi-factor authentication.
    pub mfa: bool,
    /// `auth_time`, when the token has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The OAuth client the token was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Claims that were present but malformed, and therefore ignored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_claims: Vec<String>,
}

/// How each IdP marks a token an OAuth client obtained for itself (client credentials), as
/// its documentation describes the token.
#[derive(Clone, Copy, Debug)]
enum ClientRule {
    Never,
    /// Entra ID: `idtyp` is `app` (an optional claim the API can ask for); without `idtyp`,
    /// an app-only token has no `scp` and its `oid` is its `sub` (the service principal).
    EntraApp,
    /// `token_use` == `access` and no `username` (Cognito client credentials).
    CognitoNoUser,
    /// Auth0: `sub` is `<client id>@clients` (both token profiles); `gty` is
    /// `client-credentials` in the `auth0` profile.
    Auth0Clients,
    /// Okta: `sub` is the client id (`cid`) and there is no `uid` (Okta: "isn't included if
    /// there is no user").
    OktaNoUser,
    /// `sub` equals the client id, or `sub` is absent (generic).
    SubIsClient,
    /// Keycloak: a `client_id` (`clientId` before Keycloak 20) claim, or a
    /// `preferred_username` of `service-account-<client>`.
    KeycloakServiceAccount,
}

/// A resolved mapping for one issuer entry.
#[derive(Clone, Debug)]
pub(crate) struct ClaimMapping {
    subject: Vec<ClaimPath>,
    roles: Option<ClaimPath>,
    groups: Option<ClaimPath>,
    scopes: Vec<ClaimPath>,
    client_id: Vec<ClaimPath>,
    attributes: Vec<(String, ClaimPath, AttrType)>,
    mfa_amr: Vec<String>,
    mfa_acr: Vec<String>,
    role_map: BTreeMap<String, String>,
    client_rule: ClientRule,
    /// Keycloak: clients whose roles (`resource_access.<client>.roles`) join the realm roles
    /// (the issuer's audiences, when `roles` is the preset's).
    client_roles: Vec<String>,
}

/// Where an identity provider puts things, in order of preference.
struct PresetDefaults {
    subject: &'static [&'static str],
    roles: Option<&'static str>,
    groups: Option<&'static str>,
    scopes: &'static [&'static str],
    client_id: &'static [&'static str],
    client_rule: ClientRule,
}

impl PresetDefaults {
    const fn of(preset: Preset) -> Self {
        match preset {
            Preset::Entra => Self {
                subject: &["oid", "sub"],
                roles: Some("roles"),
                groups: Some("groups"),
                scopes: &["scp"],
                client_id: &["azp", "appid"],
                client_rule: ClientRule::EntraApp,
            },
            Preset::Google => Self {
                subject: &["sub"],
                roles: None,
                groups: Some("groups"),
                scopes: &["scope"],
                client_id: &["azp"],
                client_rule: ClientRule::Never,
            },
            Preset::Cognito => Self {
                subject: &["sub"],
                roles: Some("cognito:groups"),
                groups: Some("cognito:groups"),
                scopes: &["scope"],
                client_id: &["client_id", "aud"],
                client_rule: ClientRule::CognitoNoUser,
            },
            Preset::Auth0 => Self {
                subject: &["sub"],
                roles: None,
                groups: None,
                scopes: &["scope"],
                client_id: &["azp", "client_id"],
                client_rule: ClientRule::Auth0Clients,
            },
            Preset::Okta => Self {
                subject: &["sub"],
                roles: None,
                groups: Some("groups"),
                scopes: &["scp"],
                client_id: &["cid"],
                client_rule: ClientRule::OktaNoUser,
            },
            Preset::Keycloak => Self {
                subject: &["sub"],
                roles: Some("realm_access.roles"),
                groups: Some("groups"),
                scopes: &["scope"],
                client_id: &["client_id", "clientId", "azp"],
                client_rule: ClientRule::KeycloakServiceAccount,
            },
            Preset::Generic => Self {
                subject: &["sub"],
                roles: Some("roles"),
                groups: Some("groups"),
                scopes: &["scope", "scp"],
                client_id: &["client_id", "azp"],
                client_rule: ClientRule::SubIsClient,
            },
        }
    }
}

fn paths(list: &[&str]) -> Vec<ClaimPath> {
    list.iter().map(|p| ClaimPath::from(*p)).collect()
}

impl ClaimMapping {
    /// Combine a preset with explicit overrides; checks attribute names against the schema.
    /// `audiences` are the issuer's (Keycloak's client roles are those of these clients).
    pub(crate) fn resolve(
        config: &ClaimsConfig,
        types: &PrincipalTypes,
        audiences: &[String],
    ) -> Result<Self, String> {
        let d = PresetDefaults::of(config.preset);
        let mut attributes = Vec::new();
        for (name, path) in &config.attributes {
            if name == "tenant" {
                return Err(
                    "attribute `tenant` is reserved: it is always the verifying tenant".into(),
                );
            }
            if !path.is_valid() {
                return Err(format!("claim path for attribute `{name}` is empty"));
            }
            let ty = match &types.user_attrs {
                Some(declared) => match declared.get(name) {
                    Some((AttrType::Other, _)) => {
                        return Err(format!(
                            "attribute `{name}` has a type claims cannot fill; declare it as String, Long, Bool or Set<String>"
                        ));
                    }
                    Some((ty, _)) => *ty,
                    None => {
                        return Err(format!(
                            "unknown claim mapping: attribute `{name}` is not declared on entity type `{}`",
                            types.user
                        ));
                    }
                },
                None => AttrType::Other,
            };
            attributes.push((name.clone(), path.clone(), ty));
        }
        for (what, path) in [
            ("subject", &config.subject),
            ("roles", &config.roles),
            ("groups", &config.groups),
            ("scopes", &config.scopes),
            ("client_id", &config.client_id),
        ] {
            if path.as_ref().is_some_and(|p| !p.is_valid()) {
                return Err(format!("claim path for `{what}` is empty"));
            }
        }
        Ok(Self {
            subject: config
                .subject
                .clone()
                .map_or_else(|| paths(d.subject), |p| vec![p]),
            roles: config
                .roles
                .clone()
                .or_else(|| d.roles.map(ClaimPath::from)),
            groups: config
                .groups
                .clone()
                .or_else(|| d.groups.map(ClaimPath::from)),
            scopes: config
                .scopes
                .clone()
                .map_or_else(|| paths(d.scopes), |p| vec![p]),
            client_id: config
                .client_id
                .clone()
                .map_or_else(|| paths(d.client_id), |p| vec![p]),
            attributes,
            mfa_amr: config
                .mfa_amr
                .clone()
                .unwrap_or_else(|| vec!["mfa".into(), "otp".into(), "hwk".into()]),
            mfa_acr: config.mfa_acr.clone(),
            role_map: config.role_map.clone(),
            client_rule: d.client_rule,
            client_roles: if config.preset == Preset::Keycloak && config.roles.is_none() {
                audiences.to_vec()
            } else {
                Vec::new()
            },
        })
    }

    /// Map verified claims to a principal. `Err` names the missing identity claim.
    pub(crate) fn map(
        &self,
        claims: &Map<String, Value>,
        tenant: &str,
        issuer: &str,
        user_type: &str,
        client_type: &str,
        latest_auth_time: i64,
    ) -> Result<Principal, &'static str> {
        let mut ignored = Vec::new();
        let first_string = |list: &[ClaimPath]| {
            list.iter()
                .find_map(|p| p.lookup(claims).and_then(Value::as_str))
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let subject = first_string(&self.subject);
        let mut client_id = first_string(&self.client_id);
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let kind = match self.client_rule {
            ClientRule::Never => PrincipalKind::User,
            ClientRule::EntraApp => match text("idtyp") {
                Some("app") => PrincipalKind::Client,
                Some(_) => PrincipalKind::User,
                None => kind_if(
                    !claims.contains_key("scp")
                        && text("oid").is_some_and(|oid| Some(oid) == text("sub")),
                ),
            },
            ClientRule::CognitoNoUser => {
                kind_if(text("token_use") == Some("access") && !claims.contains_key("username"))
            }
            ClientRule::Auth0Clients => {
                let own = text("sub").and_then(|s| s.strip_suffix("@clients"));
                if client_id.is_none() {
                    client_id = own.filter(|c| !c.is_empty()).map(str::to_owned);
                }
                kind_if(own.is_some() || text("gty") == Some("client-credentials"))
            }
            ClientRule::OktaNoUser => {
                kind_if(client_id.is_some() && subject == client_id && !claims.contains_key("uid"))
            }
            ClientRule::SubIsClient => {
                kind_if(client_id.is_some() && (subject.is_none() || subject == client_id))
            }
            ClientRule::KeycloakServiceAccount => kind_if(
                text("client_id").is_some()
                    || text("clientId").is_some()
                    || text("preferred_username")
                        .is_some_and(|u| u.starts_with("service-account-")),
            ),
        };
        // An identity longer than any IdP issues is refused, not cut: it names the principal.
        let id = match kind {
            PrincipalKind::User => subject.filter(|s| bounded(s)).ok_or("sub")?,
            PrincipalKind::Client => client_id
                .clone()
                .filter(|c| bounded(c))
                .ok_or("client_id")?,
        };
        let mut roles = self
            .roles
            .as_ref()
            .map(|p| string_array(claims, p, "roles", &mut ignored))
            .unwrap_or_default();
        for client in &self.client_roles {
            let path = ClaimPath::Keys(vec![
                "resource_access".into(),
                client.clone(),
                "roles".into(),
            ]);
            roles.extend(string_array(claims, &path, "roles", &mut ignored));
        }
        if roles.len() > MAX_VALUES {
            ignored.push("roles".into());
            roles.clear();
        }
        for role in &mut roles {
            if let Some(mapped) = self.role_map.get(role) {
                role.clone_from(mapped);
            }
        }
        roles.sort();
        roles.dedup();
        let groups = self
            .groups
            .as_ref()
            .map(|p| string_array(claims, p, "groups", &mut ignored))
            .unwrap_or_default();
        let scopes = self
            .scopes
            .iter()
            .find(|p| p.lookup(claims).is_some())
            .map(|p| scope_list(claims, p, &mut ignored))
            .unwrap_or_default();
        let mut attributes = BTreeMap::new();
        for (name, path, ty) in &self.attributes {
            let Some(value) = path.lookup(claims) else {
                continue;
            };
            if conforms(value, *ty) {
                attributes.insert(name.clone(), value.clone());
            } else {
                ignored.push(format!("attribute `{name}`"));
            }
        }
        let amr_mfa = match claims.get("amr") {
            Some(Value::Array(values)) => values
                .iter()
                .filter_map(Value::as_str)
                .any(|v| self.mfa_amr.iter().any(|m| m == v)),
            Some(_) => {
                ignored.push("amr".into());
                false
            }
            None => false,
        };
        let acr_mfa = claims
            .get("acr")
            .and_then(Value::as_str)
            .is_some_and(|acr| self.mfa_acr.iter().any(|m| m == acr));
        let auth_time = match claims.get("auth_time") {
            Some(value) => match value.as_i64() {
                // A sign-in in the future (beyond the clock skew) is as malformed as a string:
                // it would otherwise make every session look fresh.
                Some(t) if t <= latest_auth_time => Some(t),
                _ => {
                    ignored.push("auth_time".into());
                    None
                }
            },
            None => None,
        };
        let ty = match kind {
            PrincipalKind::User => user_type,
            PrincipalKind::Client => client_type,
        };
        let entity = format!("{ty}::{}", Value::String(format!("{tenant}/{id}")));
        Ok(Principal {
            tenant: tenant.to_owned(),
            kind,
            id,
            entity,
            issuer: issuer.to_owned(),
            roles,
            groups,
            scopes,
            attributes,
            mfa: amr_mfa || acr_mfa,
            auth_time,
            client_id,
            ignored_claims: ignored,
        })
    }
}

fn kind_if(client: bool) -> PrincipalKind {
    if client {
        PrincipalKind::Client
    } else {
        PrincipalKind::User
    }
}

fn bounded(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_VALUE_LEN
}

/// An array of strings, or nothing (with a note) if the claim is anything else.
fn string_array(
    claims: &Map<String, Value>,
    path: &ClaimPath,
    what: &str,
    ignored: &mut Vec<String>,
) -> Vec<String> {
    match path.lookup(claims) {
        None => Vec::new(),
        Some(Value::Array(values))
            if values.len() <= MAX_VALUES
                && values.iter().all(|v| v.as_str().is_some_and(bounded)) =>
        {
            values
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        }
        Some(_) => {
            ignored.push(what.to_owned());
            Vec::new()
        }
    }
}

/// Scopes: a space-delimited string (RFC 8693 `scope`) or an array of strings (`scp`).
fn scope_list(
    claims: &Map<String, Value>,
    path: &ClaimPath,
    ignored: &mut Vec<String>,
) -> Vec<String> {
    match path.lookup(claims) {
        Some(Value::String(text)) => {
            let scopes: Vec<String> = text
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if scopes.len() <= MAX_VALUES && scopes.iter().all(|s| bounded(s)) {
                scopes
            } else {
                ignored.push("scopes".into());
                Vec::new()
            }
        }
        _ => string_array(claims, path, "scopes", ignored),
    }
}

fn conforms(value: &Value, ty: AttrType) -> bool {
    match ty {
        AttrType::String => value.as_str().is_some_and(|s| s.len() <= MAX_VALUE_LEN),
        AttrType::Long => value.is_i64(),
        AttrType::Bool => value.is_boolean(),
        AttrType::StringSet => value.as_array().is_some_and(|a| {
            a.len() <= MAX_VALUES && a.iter().all(|v| v.as_str().is_some_and(bounded))
        }),
        // Without a schema, only simple values; with one, types the engine cannot build are refused at load.
        AttrType::Other => matches!(value, Value::String(_) | Value::Bool(_)) || value.is_i64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::EntityTypeName;
    use serde_json::json;
    use std::str::FromStr;

    fn types() -> PrincipalTypes {
        let ty = |n: &str| EntityTypeName::from_str(n).unwrap();
        let mut attrs = BTreeMap::new();
        attrs.insert("department".to_owned(), (AttrType::String, false));
        PrincipalTypes {
            user: ty("User"),
            client: ty("Client"),
            role: ty("Role"),
            group: Some(ty("Group")),
            user_attrs: Some(attrs),
            client_attrs: None,
        }
    }

    fn map(config: ClaimsConfig, claims: Value) -> Result<Principal, &'static str> {
        let mapping = ClaimMapping::resolve(&config, &types(), &["techfin-api".into()]).unwrap();
        mapping.map(
            claims.as_object().unwrap(),
            "t",
            "https://iss",
            "User",
            "Client",
            i64::MAX,
        )
    }

    fn preset(preset: Preset) -> ClaimsConfig {
        ClaimsConfig {
            preset,
            ..Default::default()
        }
    }

    #[test]
    fn cognito_groups_scopes_and_client_credentials() {
        let user = map(
            preset(Preset::Cognito),
            json!({"sub": "u1", "username": "ann", "token_use": "access", "cognito:groups": ["Auditor"], "scope": "a b"}),
        )
        .unwrap();
        assert_eq!(
            (user.kind, user.roles.clone(), user.scopes.clone()),
            (
                PrincipalKind::User,
                vec!["Auditor".to_owned()],
                vec!["a".to_owned(), "b".to_owned()]
            )
        );
        let client = map(
            preset(Preset::Cognito),
            json!({"sub": "c1", "client_id": "c1", "token_use": "access", "scope": "x"}),
        )
        .unwrap();
        assert_eq!(
            (client.kind, client.id.as_str()),
            (PrincipalKind::Client, "c1")
        );
        assert_eq!(client.entity, "Client::\"t/c1\"");
    }

    #[test]
    fn entra_uses_oid_and_detects_app_tokens() {
        let user = map(
            preset(Preset::Entra),
            json!({"sub": "pairwise", "oid": "obj-1", "scp": "User.Read", "amr": ["mfa"]}),
        )
        .unwrap();
        assert_eq!((user.id.as_str(), user.mfa), ("obj-1", true));
        let app = map(
            preset(Preset::Entra),
            json!({"oid": "sp-1", "azp": "app-1", "idtyp": "app", "roles": ["Partner"]}),
        )
        .unwrap();
        assert_eq!(
            (app.kind, app.id.as_str(), app.roles.clone()),
            (PrincipalKind::Client, "app-1", vec!["Partner".to_owned()])
        );
    }

    #[test]
    fn google_has_no_roles_by_default() {
        let user = map(
            preset(Preset::Google),
            json!({"sub": "1234", "hd": "acme.com", "roles": ["TenantAdmin"]}),
        )
        .unwrap();
        assert!(
            user.roles.is_empty(),
            "google tokens carry no role claim; `roles` must be configured explicitly"
        );
    }

    #[test]
    fn malformed_claims_are_ignored_and_noted() {
        let user = map(
            preset(Preset::Generic),
            json!({"sub": "u", "roles": "Admin", "groups": [1], "amr": "mfa", "auth_time": "yesterday", "department": 7}),
        );
        let user = user.unwrap();
        assert!(
            user.roles.is_empty()
                && user.groups.is_empty()
                && !user.mfa
                && user.auth_time.is_none()
        );
        assert_eq!(user.ignored_claims, ["roles", "groups", "amr", "auth_time"]);
    }

    #[test]
    fn overrides_and_role_map() {
        let mut config = preset(Preset::Auth0);
        config.roles = Some(ClaimPath::Keys(vec!["https://x.example/roles".into()]));
        config
            .attributes
            .insert("department".into(), ClaimPath::Dotted("org.dept".into()));
        config
            .role_map
            .insert("finance-analyst".into(), "FinanceAnalyst".into());
        let user = map(config, json!({"sub": "auth0|1", "https://x.example/roles": ["finance-analyst"], "org": {"dept": "fin"}})).unwrap();
        assert_eq!(user.roles, ["FinanceAnalyst"]);
        assert_eq!(user.attributes["department"], json!("fin"));
    }

    #[test]
    fn unknown_or_reserved_attributes_are_load_errors() {
        let mut config = preset(Preset::Generic);
        config.attributes.insert("salary".into(), "salary".into());
        assert!(
            ClaimMapping::resolve(&config, &types(), &[])
                .unwrap_err()
                .contains("unknown claim mapping")
        );
        let mut config = preset(Preset::Generic);
        config.attributes.insert("tenant".into(), "tid".into());
        assert!(
            ClaimMapping::resolve(&config, &types(), &[])
                .unwrap_err()
                .contains("reserved")
        );
    }

    #[test]
    fn user_without_subject_is_refused() {
        assert_eq!(
            map(preset(Preset::Keycloak), json!({"azp": "web"})).unwrap_err(),
            "sub"
        );
    }

    #[test]
    fn future_auth_time_is_ignored() {
        let mapping = ClaimMapping::resolve(&preset(Preset::Generic), &types(), &[]).unwrap();
        let claims = json!({"sub": "u", "auth_time": 1000});
        let at = |latest| {
            mapping
                .map(
                    claims.as_object().unwrap(),
                    "t",
                    "i",
                    "User",
                    "Client",
                    latest,
                )
                .unwrap()
        };
        assert_eq!(at(1000).auth_time, Some(1000));
        assert_eq!(at(999).auth_time, None);
        assert_eq!(at(999).ignored_claims, ["auth_time"]);
    }
}
