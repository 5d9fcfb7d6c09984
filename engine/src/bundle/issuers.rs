//! Tenants' issuers, resolved and validated: where each issuer's keys come from, which
//! algorithms and claims it is held to, and which `iss` spellings name it.

use super::locate::{Step, locate};
use super::{
    CompiledBundle, MAX_CLOCK_SKEW, MAX_TOKEN_LIFETIME, Preset, PrincipalTypes, SecretRef,
};
use crate::claims::ClaimMapping;
use crate::error::{BundleProblem, SourceLocation, sanitize};
use crate::keys::{Algorithm, KeySet};
use std::collections::{BTreeMap, HashMap};

/// Where a remote issuer's keys are: what a host fetches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyUrl {
    /// A JWK set URL.
    JwksUri(String),
    /// An OIDC discovery document URL (its `jwks_uri` has the keys).
    Discovery(String),
}

impl KeyUrl {
    /// The URL fetched first.
    pub fn url(&self) -> &str {
        match self {
            Self::JwksUri(url) | Self::Discovery(url) => url,
        }
    }
}

/// Where an issuer's keys come from: the bundle itself, or the host (a URL it fetches, or a
/// secret it reads from its own secret source).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// Keys are inline in the bundle.
    Inline,
    /// A JWK set URL.
    JwksUri(String),
    /// An OIDC discovery document URL.
    Discovery(String),
    /// An HMAC secret the host reads by name (never part of the bundle).
    Secret(SecretRef),
}

/// One issuer entry of one tenant, resolved and validated.
#[derive(Debug)]
pub(crate) struct IssuerEntry {
    pub tenant: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub inline_keys: Option<KeySet>,
    pub source: KeySource,
    pub mapping: ClaimMapping,
    pub match_claims: BTreeMap<String, String>,
    pub typ: Option<String>,
    pub max_token_age: Option<u64>,
    pub clock_skew: u64,
    /// The longest a token of this issuer may be valid, seconds.
    pub max_lifetime: i64,
    /// Cognito: an access token has no `aud`; its `client_id` is checked against the
    /// audiences instead.
    pub client_id_audience: bool,
}

/// `tenants.json` as it was written, to place a problem found in it at its line and column,
/// and the files its issuers' `jwks_file`s named (inlined by compilation), by tenant and
/// issuer index: a problem with those keys is in that file.
pub(crate) struct TenantsText<'a> {
    pub file: &'a str,
    pub text: Option<&'a str>,
    pub jwks_files: &'a BTreeMap<(String, usize), String>,
}

impl TenantsText<'_> {
    /// Where `field` (`algorithms.1`; empty: the entry itself) of the tenant's issuer `index` is.
    fn at(&self, tenant: &str, index: usize, field: &str) -> SourceLocation {
        if field == "jwks"
            && let Some(path) = self.jwks_files.get(&(tenant.to_owned(), index))
        {
            return SourceLocation::file(path);
        }
        let Some(text) = self.text else {
            return SourceLocation::file(self.file);
        };
        let mut path = vec![
            Step::Key("tenants"),
            Step::Key(tenant),
            Step::Key("issuers"),
            Step::Index(index),
        ];
        path.extend(
            field
                .split('.')
                .filter(|f| !f.is_empty())
                .map(|f| f.parse::<usize>().map_or(Step::Key(f), Step::Index)),
        );
        match locate(text, &path) {
            Some(offset) => SourceLocation::at_offset(self.file, text, offset),
            None => SourceLocation::file(self.file),
        }
    }
}

pub(super) fn resolve_issuers(
    compiled: &CompiledBundle,
    types: &PrincipalTypes,
    text: &TenantsText<'_>,
    problems: &mut Vec<BundleProblem>,
) -> HashMap<String, Vec<IssuerEntry>> {
    let tenants_file = text.file;
    let mut issuers: HashMap<String, Vec<IssuerEntry>> = HashMap::new();
    let default_skew = compiled.settings.tokens.clock_skew;
    for (tenant, config) in &compiled.tenants {
        for (index, issuer) in config.issuers.iter().enumerate() {
            let what = format!(
                "tenant `{tenant}` issuer {index} (`{}`)",
                sanitize(&issuer.issuer, 120)
            );
            let mut fail = |field: &str, message: String, help: Option<&str>| {
                let mut problem = BundleProblem::new("tenants", format!("{what}: {message}"))
                    .at(text.at(tenant, index, field));
                if let Some(help) = help {
                    problem = problem.help(help);
                }
                problems.push(problem);
            };
            if issuer.issuer.is_empty() {
                fail("issuer", "`issuer` is empty".into(), None);
                continue;
            }
            if issuer.audiences.is_empty() || issuer.audiences.iter().any(String::is_empty) {
                fail(
                    "audiences",
                    "`audiences` must list at least one non-empty audience".into(),
                    Some("tokens without an accepted `aud` are always refused"),
                );
                continue;
            }
            let mut algorithms = Vec::new();
            for (i, name) in issuer.algorithms.iter().enumerate() {
                match Algorithm::from_name(name) {
                    Some(alg) => algorithms.push(alg),
                    None => fail(
                        &format!("algorithms.{i}"),
                        format!("unsupported algorithm `{}`", sanitize(name, 20)),
                        Some(
                            "use RS256/384/512, PS256/384/512, ES256/384, EdDSA or, with a secret, HS256/384/512",
                        ),
                    ),
                }
            }
            if algorithms.is_empty() {
                // An unsupported name was reported: the list was not empty.
                if issuer.algorithms.is_empty() {
                    fail(
                        "algorithms",
                        "`algorithms` must list at least one algorithm".into(),
                        None,
                    );
                }
                continue;
            }
            if algorithms.iter().any(|a| a.is_symmetric())
                && algorithms.iter().any(|a| !a.is_symmetric())
            {
                fail(
                    "algorithms",
                    "mixes HMAC and public-key algorithms".into(),
                    Some(
                        "an issuer uses either a shared secret or public keys; mixing them enables key-confusion attacks",
                    ),
                );
                continue;
            }
            let sources = [
                issuer.jwks.is_some(),
                issuer.jwks_file.is_some(),
                issuer.jwks_uri.is_some(),
                issuer.discovery.is_some(),
                issuer.secret.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                fail(
                    "",
                    "needs exactly one of `jwks`, `jwks_file`, `jwks_uri`, `discovery` or `secret`"
                        .into(),
                    None,
                );
                continue;
            }
            let symmetric = algorithms.iter().any(|a| a.is_symmetric());
            if let Some(jwks) = &issuer.jwks
                && holds_secret(jwks)
            {
                fail(
                    "jwks",
                    "the JWK set holds an HMAC secret (an `oct` key): secrets never go in a bundle, which hosts distribute and serve".into(),
                    Some("name the secret with `\"secret\": \"<name>\"` and give it to each verifying host (`--secrets-dir` or `PORTCULLIS_SECRET_<NAME>`)"),
                );
                continue;
            }
            if let Some(secret) = &issuer.secret {
                if !symmetric {
                    fail(
                        "secret",
                        "`secret` is for HMAC (`HS*`) issuers; public-key issuers use `jwks`, `jwks_file`, `jwks_uri` or `discovery`".into(),
                        None,
                    );
                    continue;
                }
                if !secret.valid_name() {
                    fail(
                        "secret",
                        format!("invalid secret name `{}`", sanitize(&secret.name, 64)),
                        Some("use 1-64 letters, digits, `.`, `_` or `-`"),
                    );
                    continue;
                }
            } else if symmetric {
                fail(
                    "algorithms",
                    "HMAC (`HS*`) issuers name their shared secret with `secret`; the secret itself never goes in a bundle".into(),
                    Some("`\"secret\": \"<name>\"`, given to each verifying host with `--secrets-dir` or `PORTCULLIS_SECRET_<NAME>`"),
                );
                continue;
            }
            if issuer.jwks_file.is_some() {
                fail(
                    "jwks_file",
                    "`jwks_file` must be inlined by compilation".into(),
                    Some("build the bundle with `portcullis bundle`"),
                );
                continue;
            }
            let (inline_keys, source) = if let Some(jwks) = &issuer.jwks {
                match KeySet::from_jwks(jwks, &algorithms) {
                    Ok((keys, _notes)) => (Some(keys), KeySource::Inline),
                    Err(why) => {
                        fail("jwks", format!("invalid keys: {why}"), None);
                        continue;
                    }
                }
            } else if let Some(secret) = &issuer.secret {
                (None, KeySource::Secret(secret.clone()))
            } else {
                let (url, source, field) = match (&issuer.jwks_uri, &issuer.discovery) {
                    (Some(url), _) => (url, KeySource::JwksUri(url.clone()), "jwks_uri"),
                    (_, Some(url)) => (url, KeySource::Discovery(url.clone()), "discovery"),
                    _ => continue,
                };
                if !acceptable_key_url(url) {
                    fail(
                        field,
                        format!("key URL `{}` is not https", sanitize(url, 120)),
                        Some(
                            "keys must come over https (plain http only to a loopback host: localhost, 127.0.0.1, [::1])",
                        ),
                    );
                    continue;
                }
                (None, source)
            };
            let lifetime = issuer
                .max_token_lifetime
                .unwrap_or(compiled.settings.tokens.max_lifetime);
            if !(60..=MAX_TOKEN_LIFETIME).contains(&lifetime) {
                fail(
                    "max_token_lifetime",
                    format!(
                        "`max_token_lifetime` of {lifetime}s is outside 60..={MAX_TOKEN_LIFETIME}"
                    ),
                    None,
                );
                continue;
            }
            let skew = issuer.clock_skew.unwrap_or(default_skew);
            if skew > MAX_CLOCK_SKEW {
                fail(
                    "clock_skew",
                    format!("clock skew of {skew}s is over the maximum of {MAX_CLOCK_SKEW}s"),
                    None,
                );
                continue;
            }
            let mapping = match ClaimMapping::resolve(&issuer.claims, types, &issuer.audiences) {
                Ok(mapping) => mapping,
                Err(why) => {
                    fail(
                        "claims",
                        why,
                        Some(
                            "declare the attribute on the principal entity type in the schema, or remove the mapping",
                        ),
                    );
                    continue;
                }
            };
            let typ = match &issuer.typ {
                Some(t) if t.trim().is_empty() => {
                    fail("typ", "`typ` is empty".into(), None);
                    continue;
                }
                Some(t) => Some(normalize_typ(t)),
                None => None,
            };
            issuers
                .entry(issuer.issuer.clone())
                .or_default()
                .push(IssuerEntry {
                    tenant: tenant.clone(),
                    issuer: issuer.issuer.clone(),
                    audiences: issuer.audiences.clone(),
                    algorithms,
                    inline_keys,
                    source,
                    mapping,
                    match_claims: issuer.match_claims.clone(),
                    typ,
                    max_token_age: issuer.max_token_age,
                    clock_skew: skew,
                    max_lifetime: i64::try_from(lifetime).unwrap_or(i64::MAX),
                    client_id_audience: issuer.claims.preset == Preset::Cognito,
                });
        }
    }
    // An issuer shared by several entries needs distinguishing `match` claims.
    let mut shared: Vec<_> = issuers
        .iter()
        .filter(|(_, entries)| entries.len() > 1)
        .collect();
    shared.sort_by(|a, b| a.0.cmp(b.0));
    for (issuer, entries) in shared {
        for (i, a) in entries.iter().enumerate() {
            for b in entries.iter().skip(i + 1) {
                // Keys a host fetches or reads are held per issuer: entries sharing one must
                // share where its keys come from, or one tenant's keys (a secret it holds)
                // would verify the other's tokens.
                let inline = |e: &IssuerEntry| e.source == KeySource::Inline;
                if a.tenant != b.tenant
                    && (inline(a) != inline(b) || (!inline(a) && a.source != b.source))
                {
                    problems.push(
                        BundleProblem::new(
                            "tenants",
                            format!(
                                "issuer `{}` is shared by tenants `{}` and `{}` with different keys (`jwks_uri`, `discovery` or `secret`)",
                                sanitize(issuer, 120),
                                a.tenant,
                                b.tenant
                            ),
                        )
                        .at(SourceLocation::file(tenants_file))
                        .help("an issuer has one set of keys: give every entry of it the same key source"),
                    );
                    continue;
                }
                let distinct = a
                    .match_claims
                    .iter()
                    .any(|(k, v)| b.match_claims.get(k).is_some_and(|w| w != v));
                if !distinct {
                    let message = if a.tenant == b.tenant {
                        format!(
                            "tenant `{}` lists issuer `{}` twice",
                            a.tenant,
                            sanitize(issuer, 120)
                        )
                    } else {
                        format!(
                            "issuer `{}` is shared by tenants `{}` and `{}` without distinguishing `match` claims",
                            sanitize(issuer, 120),
                            a.tenant,
                            b.tenant
                        )
                    };
                    problems.push(
                        BundleProblem::new("tenants", message)
                            .at(SourceLocation::file(tenants_file))
                            .help("give each entry a `match` on a claim with different values, e.g. {\"hd\": \"acme.com\"}"),
                    );
                }
            }
        }
    }
    issuers
}

/// Google documents two `iss` forms for its ID tokens, `https://accounts.google.com` and
/// `accounts.google.com`: an issuer configured with the `google` preset under either accepts
/// both (unless the other is configured on its own).
pub(super) fn issuer_aliases(
    compiled: &CompiledBundle,
    issuers: &HashMap<String, Vec<IssuerEntry>>,
) -> HashMap<String, String> {
    const GOOGLE: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
    let google = compiled
        .tenants
        .values()
        .flat_map(|t| &t.issuers)
        .filter(|i| i.claims.preset == Preset::Google);
    let mut aliases = HashMap::new();
    for issuer in google {
        let Some(i) = GOOGLE.iter().position(|g| *g == issuer.issuer) else {
            continue;
        };
        let other = GOOGLE.get(1 - i).copied().unwrap_or_default();
        if !issuers.contains_key(other) && issuers.contains_key(&issuer.issuer) {
            aliases.insert(other.to_owned(), issuer.issuer.clone());
        }
    }
    aliases
}

/// Whether a JWK set holds an HMAC secret (a key of type `oct`).
fn holds_secret(jwks: &serde_json::Value) -> bool {
    jwks.get("keys")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|keys| {
            keys.iter()
                .any(|k| k.get("kty").and_then(serde_json::Value::as_str) == Some("oct"))
        })
}

/// Whether keys may be fetched from `url`: `https://`, or plain `http://` to a loopback host
/// (`localhost`, `127.0.0.1`, `[::1]`, with an optional port) for development and tests.
///
/// Hosts apply the same rule to a `jwks_uri` they learn from a discovery document. A URL with
/// userinfo (`http://127.0.0.1:80@evil.example/`) is refused: its host is not what it seems.
pub fn acceptable_key_url(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, rest)) => match rest.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return false,
            },
            None => return false,
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok
        && matches!(
            host.to_ascii_lowercase().as_str(),
            "localhost" | "127.0.0.1" | "::1"
        )
}

/// `typ` values compare case-insensitively with an optional `application/` prefix (RFC 7515 §4.1.9).
pub(crate) fn normalize_typ(typ: &str) -> String {
    let lower = typ.trim().to_ascii_lowercase();
    lower
        .strip_prefix("application/")
        .map_or(lower.clone(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_urls_are_https_or_plain_http_to_loopback_only() {
        for good in [
            "https://login.example/.well-known/openid-configuration",
            "http://127.0.0.1:4000/jwks",
            "http://localhost/jwks",
            "http://LOCALHOST:8080",
            "http://[::1]:4000/.well-known/openid-configuration",
            "http://127.0.0.1?x=1",
        ] {
            assert!(acceptable_key_url(good), "{good} should be acceptable");
        }
        for bad in [
            "http://idp.example/jwks",
            "http://127.0.0.1:80@evil.example/jwks",
            "http://localhost@evil.example/",
            "http://localhost.evil.example/",
            "http://127.0.0.1.evil.example/",
            "http://[::1/jwks",
            "http://[::2]:4000/",
            "http://127.0.0.1:/",
            "http://127.0.0.1:80x/",
            "ftp://127.0.0.1/",
            "",
        ] {
            assert!(!acceptable_key_url(bad), "{bad} should be refused");
        }
    }
}
