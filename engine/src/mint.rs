//! Development tokens: sign claims with a tenant issuer's development key.
//!
//! For tests, demos and the policy-test runner only (feature `mint`). Keys follow the
//! convention of `policies/techfin/dev-keys/`: the private key of the JWK with id `kid` is
//! `dev-keys/<kid>.pem` in the bundle directory. Production issuers have no such file.

use crate::bundle::{CompiledBundle, IssuerConfig, TenantConfig};
use crate::keys::Algorithm;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// "unknown tenant `x` (the bundle's tenants: a, b)": the message for a tenant name that is not
/// one of `tenants`, listing them.
pub fn unknown_tenant<'a>(tenant: &str, tenants: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = tenants.collect();
    format!(
        "unknown tenant `{}` (the bundle's tenants: {})",
        crate::error::sanitize(tenant, 64),
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    )
}

/// `tenant`'s `index`-th issuer entry among `tenants` (a `tenants.json`, or a compiled
/// bundle's).
///
/// # Errors
/// An unknown tenant ([`unknown_tenant`]) or issuer index.
pub fn tenant_issuer<'a>(
    tenants: &'a BTreeMap<String, TenantConfig>,
    tenant: &str,
    index: usize,
) -> Result<&'a IssuerConfig, String> {
    tenants
        .get(tenant)
        .ok_or_else(|| unknown_tenant(tenant, tenants.keys().map(String::as_str)))?
        .issuers
        .get(index)
        .ok_or_else(|| format!("tenant `{tenant}` has no issuer {index}"))
}

/// Everything needed to sign as one issuer entry of a tenant.
#[derive(Clone, Debug)]
pub struct DevIssuer {
    /// `iss`.
    pub issuer: String,
    /// The first configured audience.
    pub audience: String,
    /// The first configured algorithm.
    pub algorithm: Algorithm,
    /// The key id (none for an HMAC secret named without one).
    pub kid: Option<String>,
    /// Required `typ`, if the issuer has one.
    pub typ: Option<String>,
    /// `match` claims the token must carry to land in this tenant.
    pub match_claims: Map<String, Value>,
    /// The private key (PEM).
    pem: String,
}

impl DevIssuer {
    /// The development issuer of `tenant` (its `index`-th issuer entry); `read_file` reads the
    /// private key relative to the bundle directory.
    ///
    /// # Errors
    /// Unknown tenant or issuer, no inline keys, or no development key file.
    pub fn for_tenant(
        bundle: &CompiledBundle,
        tenant: &str,
        index: usize,
        read_file: &mut dyn FnMut(&str) -> Result<String, String>,
    ) -> Result<Self, String> {
        let entry = tenant_issuer(&bundle.tenants, tenant, index)?;
        let algorithm = entry
            .algorithms
            .first()
            .and_then(|a| Algorithm::from_name(a))
            .ok_or_else(|| "issuer has no usable algorithm".to_owned())?;
        let (kid, pem) = if let Some(secret) = &entry.secret {
            // An HMAC issuer: its development secret is `dev-keys/<name>.secret`.
            let file = format!("dev-keys/{}.secret", secret.name);
            let text = read_file(&file)
                .map_err(|e| format!("tenant `{tenant}`: no development secret `{file}`: {e}"))?;
            let text = text.strip_suffix('\n').unwrap_or(&text).to_owned();
            (secret.kid.clone(), text)
        } else {
            let kid = entry
                .jwks
                .as_ref()
                .and_then(|j| j.get("keys"))
                .and_then(Value::as_array)
                .and_then(|keys| keys.iter().find_map(|k| k.get("kid").and_then(Value::as_str)))
                .ok_or_else(|| format!("tenant `{tenant}`: only issuers with inline keys that have a `kid` have development keys (for a `jwks_uri` or `discovery` issuer: `portcullis keygen --tenant {tenant}` adds one to `dev-keys/issuers.json`)"))?
                .to_owned();
            let pem = read_file(&format!("dev-keys/{kid}.pem")).map_err(|e| {
                format!("tenant `{tenant}`: no development key `dev-keys/{kid}.pem`: {e}")
            })?;
            (Some(kid), pem)
        };
        Ok(Self {
            issuer: entry.issuer.clone(),
            audience: entry.audiences.first().cloned().unwrap_or_default(),
            algorithm,
            kid,
            typ: entry.typ.clone(),
            match_claims: entry
                .match_claims
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
            pem,
        })
    }

    /// The standard claims of a token issued at `now`, valid for `ttl` seconds: `iss`, `aud`,
    /// `iat`, `nbf`, `exp`, `auth_time`, `jti`, and the issuer's `match` claims.
    pub fn base_claims(&self, now: i64, ttl: i64) -> Map<String, Value> {
        let mut claims = self.match_claims.clone();
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("aud".into(), self.audience.clone().into());
        claims.insert("iat".into(), now.into());
        claims.insert("nbf".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(ttl).into());
        claims.insert("auth_time".into(), now.into());
        claims.insert("jti".into(), format!("dev-{now}-{}", claims.len()).into());
        claims
    }

    /// Sign `claims` as they are.
    ///
    /// # Errors
    /// A key that does not parse for the algorithm.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String, String> {
        let mut header = Map::new();
        header.insert("alg".into(), self.algorithm.name().into());
        if let Some(kid) = &self.kid {
            header.insert("kid".into(), kid.clone().into());
        }
        header.insert(
            "typ".into(),
            self.typ.clone().unwrap_or_else(|| "JWT".into()).into(),
        );
        sign_with_pem(&header, claims, self.algorithm, &self.pem)
    }
}

/// Sign a compiled bundle (sealed first): a detached JWS over its
/// [signing payload](CompiledBundle::signing_payload) is added to its `signatures`.
///
/// # Errors
/// A key that does not parse for `algorithm`, or an algorithm that cannot sign bundles.
pub fn sign_bundle(
    bundle: CompiledBundle,
    algorithm: Algorithm,
    pem: &str,
    kid: Option<&str>,
) -> Result<CompiledBundle, String> {
    if algorithm.is_symmetric() {
        return Err(
            "bundles are signed with a private key (RSA, EC or Ed25519), not a shared secret"
                .into(),
        );
    }
    let mut bundle = bundle.seal();
    let mut header = Map::new();
    header.insert("alg".into(), algorithm.name().into());
    if let Some(kid) = kid {
        header.insert("kid".into(), kid.into());
    }
    header.insert("typ".into(), crate::bundle::BUNDLE_SIGNATURE_TYPE.into());
    let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    let jws = sign_bytes(&header, &bundle.signing_payload(), algorithm, pem)?;
    let mut parts = jws.split('.');
    let (Some(h), Some(_), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("signing produced no compact JWS".into());
    };
    bundle.signatures.push(format!("{h}..{sig}"));
    Ok(bundle)
}

/// Sign an arbitrary header and claims with a PEM private key (or an HMAC secret's bytes).
/// The header's `alg` is written as given, which lets tests forge mismatches on purpose.
///
/// # Errors
/// A key that does not parse for `algorithm`.
pub fn sign_with_pem(
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
    algorithm: Algorithm,
    pem: &str,
) -> Result<String, String> {
    let header = serde_json::to_vec(header).map_err(|e| e.to_string())?;
    let claims = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
    sign_bytes(&header, &claims, algorithm, pem)
}

/// Sign exact header and payload bytes, for JSON a map cannot hold (duplicate keys, odd
/// escapes) in adversarial tests.
///
/// # Errors
/// A key that does not parse for `algorithm`.
pub fn sign_bytes(
    header: &[u8],
    payload: &[u8],
    algorithm: Algorithm,
    pem: &str,
) -> Result<String, String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::EncodingKey;
    let key = match algorithm {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            Ok(EncodingKey::from_secret(pem.as_bytes()))
        }
    }
    .map_err(|e| format!("cannot use the key: {e}"))?;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, algorithm.to_jsonwebtoken())
            .map_err(|e| format!("signing failed: {e}"))?;
    Ok(format!("{signing_input}.{signature}"))
}
