//! Materialising token specs: development tokens signed with the bundle's dev keys, and the
//! forgeries adversarial cases need.

use crate::bundle_dir::read_relative;
use crate::format::{Forge, TokenSpec};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_engine::{Algorithm, CompiledBundle, DevIssuer, sign_with_pem};
use serde_json::{Map, Value};
use std::path::Path;

/// Longest `{"$pad": N}` string accepted (oversize-token cases need a few tens of KiB at most).
const MAX_PAD: u64 = 1024 * 1024;

/// What a token spec is materialised against.
pub(crate) struct TokenContext<'a> {
    pub compiled: &'a CompiledBundle,
    pub dir: &'a Path,
    pub now: i64,
}

impl TokenContext<'_> {
    fn dev_issuer(&self, tenant: &str, index: usize) -> Result<DevIssuer, String> {
        DevIssuer::for_tenant(self.compiled, tenant, index, &mut |p| {
            read_relative(self.dir, p)
        })
    }

    fn private_key(&self, kid: &str) -> Result<String, String> {
        read_relative(self.dir, &format!("dev-keys/{kid}.pem"))
            .map_err(|e| format!("no development key `dev-keys/{kid}.pem`: {e}"))
    }
}

/// Build the token a spec describes.
pub(crate) fn materialize(spec: &TokenSpec, ctx: &TokenContext<'_>) -> Result<String, String> {
    if let Some(raw) = &spec.raw {
        let others = spec.tenant.is_some()
            || spec.issuer != 0
            || !spec.claims.is_empty()
            || !spec.header.is_empty()
            || spec.alg.is_some()
            || spec.forge.is_some()
            || spec.key_tenant.is_some()
            || spec.tamper.is_some()
            || spec.header_suffix.is_some()
            || spec.payload_suffix.is_some();
        if others {
            return Err("`raw` excludes every other token field".into());
        }
        return Ok(raw.clone());
    }
    let tenant = spec
        .tenant
        .as_deref()
        .ok_or("a token spec needs `tenant` (or `raw`)")?;
    if spec.key_tenant.is_some() && spec.forge != Some(Forge::OtherTenantKey) {
        return Err("`key_tenant` only goes with `forge: other_tenant_key`".into());
    }
    if spec.tamper.is_some() && spec.forge != Some(Forge::TamperPayload) {
        return Err("`tamper` only goes with `forge: tamper_payload`".into());
    }
    let dev = ctx.dev_issuer(tenant, spec.issuer)?;

    let mut claims = dev.base_claims(ctx.now, 3600);
    merge(&mut claims, &spec.claims, ctx.now)?;

    let mut alg = match &spec.alg {
        Some(name) => {
            Algorithm::from_name(name).ok_or_else(|| format!("unknown algorithm `{name}`"))?
        }
        None => dev.algorithm,
    };
    if spec.forge == Some(Forge::HmacWithPublicKey) && !alg.is_symmetric() {
        alg = Algorithm::HS256;
    }

    // Conformance tenants sign with key pairs, which always have a `kid`.
    let kid = dev
        .kid
        .clone()
        .ok_or_else(|| format!("tenant `{tenant}` has no key id"))?;
    let mut header = Map::new();
    header.insert("alg".into(), alg.name().into());
    header.insert("kid".into(), kid.clone().into());
    header.insert(
        "typ".into(),
        dev.typ.clone().unwrap_or_else(|| "JWT".into()).into(),
    );
    match spec.forge {
        Some(Forge::None) => {
            header.insert("alg".into(), "none".into());
        }
        Some(Forge::WrongKid) => {
            header.insert("kid".into(), format!("{kid}-unknown").into());
        }
        _ => {}
    }
    merge(&mut header, &spec.header, ctx.now)?;

    let header_json = json_with_suffix(&header, spec.header_suffix.as_deref())?;
    let payload_json = json_with_suffix(&claims, spec.payload_suffix.as_deref())?;

    if spec.forge == Some(Forge::None) {
        return Ok(format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header_json),
            URL_SAFE_NO_PAD.encode(payload_json)
        ));
    }

    let key = match spec.forge {
        Some(Forge::HmacWithPublicKey) => public_jwk(ctx.compiled, tenant, spec.issuer, &kid)?,
        Some(Forge::OtherTenantKey) => {
            let other = match &spec.key_tenant {
                Some(other) => ctx.dev_issuer(other, 0)?,
                None => default_other_tenant(ctx, tenant, &dev, alg)?,
            };
            if other.kid == dev.kid {
                return Err(format!(
                    "tenant `{tenant}` and its `key_tenant` share the key `{kid}`"
                ));
            }
            ctx.private_key(other.kid.as_deref().unwrap_or_default())?
        }
        _ => ctx.private_key(&kid)?,
    };

    let signed = if spec.header_suffix.is_some() || spec.payload_suffix.is_some() {
        portcullis_engine::sign_bytes(&header_json, &payload_json, alg, &key)?
    } else {
        sign_with_pem(&header, &claims, alg, &key)?
    };

    match spec.forge {
        Some(Forge::StripSignature) => {
            let (input, _) = signed
                .rsplit_once('.')
                .ok_or("signed token has no signature part")?;
            Ok(format!("{input}."))
        }
        Some(Forge::TamperSignature) => map_signature(&signed, |signature| {
            if let Some(first) = signature.first_mut() {
                *first ^= 0x01;
            }
        }),
        Some(Forge::EcdsaZero) => map_signature(&signed, |signature| signature.fill(0)),
        Some(Forge::HighS) => {
            let mut result = Ok(());
            let token = map_signature(&signed, |signature| result = flip_s(signature, alg))?;
            result.map(|()| token)
        }
        Some(Forge::TamperPayload) => {
            let (header_part, rest) = signed
                .split_once('.')
                .ok_or("signed token has no payload")?;
            let (payload_part, signature_part) = rest
                .split_once('.')
                .ok_or("signed token has no signature part")?;
            let bytes = URL_SAFE_NO_PAD
                .decode(payload_part)
                .map_err(|e| e.to_string())?;
            let mut payload: Map<String, Value> =
                serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            let mut tamper = Map::new();
            tamper.insert("tampered".into(), Value::Bool(true));
            merge(
                &mut payload,
                spec.tamper.as_ref().unwrap_or(&tamper),
                ctx.now,
            )?;
            let payload = serde_json::to_vec(&payload).map_err(|e| e.to_string())?;
            Ok(format!(
                "{header_part}.{}.{signature_part}",
                URL_SAFE_NO_PAD.encode(payload)
            ))
        }
        _ => Ok(signed),
    }
}

/// Merge `overrides` into `target`: `null` removes a key, other values are expanded and set.
fn merge(
    target: &mut Map<String, Value>,
    overrides: &Map<String, Value>,
    now: i64,
) -> Result<(), String> {
    for (key, value) in overrides {
        if value.is_null() {
            target.remove(key);
        } else {
            target.insert(key.clone(), expand(value, now)?);
        }
    }
    Ok(())
}

/// Expand the helpers `{"$now": N}` (now + N) and `{"$pad": N}` (a string of N `x`).
fn expand(value: &Value, now: i64) -> Result<Value, String> {
    match value {
        Value::Object(map) => {
            let mut entries = map.iter();
            if let (Some((key, arg)), None) = (entries.next(), entries.next())
                && key.starts_with('$')
            {
                return match key.as_str() {
                    "$now" => {
                        let offset = arg
                            .as_i64()
                            .ok_or("`$now` takes an integer offset in seconds")?;
                        Ok(Value::from(now.saturating_add(offset)))
                    }
                    "$pad" => {
                        let len = arg
                            .as_u64()
                            .filter(|n| *n <= MAX_PAD)
                            .ok_or("`$pad` takes a length up to 1 MiB")?;
                        Ok(Value::String(
                            "x".repeat(usize::try_from(len).map_err(|e| e.to_string())?),
                        ))
                    }
                    other => Err(format!(
                        "unknown helper `{other}` (expected `$now` or `$pad`)"
                    )),
                };
            }
            let mut out = Map::new();
            for (key, item) in map {
                out.insert(key.clone(), expand(item, now)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .map(|item| expand(item, now))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// A JSON object, with raw members appended before its closing brace.
fn json_with_suffix(map: &Map<String, Value>, suffix: Option<&str>) -> Result<Vec<u8>, String> {
    let mut text = serde_json::to_string(map).map_err(|e| e.to_string())?;
    if let Some(suffix) = suffix {
        text.pop();
        if !map.is_empty() {
            text.push(',');
        }
        text.push_str(suffix);
        text.push('}');
    }
    Ok(text.into_bytes())
}

/// Decode the signature part, change it, re-encode it.
fn map_signature(token: &str, change: impl FnOnce(&mut Vec<u8>)) -> Result<String, String> {
    let (input, signature) = token
        .rsplit_once('.')
        .ok_or("signed token has no signature part")?;
    let mut bytes = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|e| e.to_string())?;
    change(&mut bytes);
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The issuer's public JWK (compact JSON), the secret of the RS/HS key-confusion attack.
fn public_jwk(
    compiled: &CompiledBundle,
    tenant: &str,
    index: usize,
    kid: &str,
) -> Result<String, String> {
    compiled
        .tenants
        .get(tenant)
        .and_then(|t| t.issuers.get(index))
        .and_then(|issuer| issuer.jwks.as_ref())
        .and_then(|jwks| jwks.get("keys"))
        .and_then(Value::as_array)
        .and_then(|keys| {
            keys.iter()
                .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        })
        .map(Value::to_string)
        .ok_or_else(|| format!("tenant `{tenant}` has no inline public key `{kid}`"))
}

/// Which key type an algorithm signs with.
fn key_family(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => "RSA",
        Algorithm::ES256 => "P-256",
        Algorithm::ES384 => "P-384",
        Algorithm::EdDSA => "Ed25519",
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => "HMAC",
    }
}

/// The first other tenant (by name) with a different development key that can sign `alg`.
fn default_other_tenant(
    ctx: &TokenContext<'_>,
    tenant: &str,
    dev: &DevIssuer,
    alg: Algorithm,
) -> Result<DevIssuer, String> {
    ctx.compiled
        .tenants
        .keys()
        .filter(|name| name.as_str() != tenant)
        .filter_map(|name| ctx.dev_issuer(name, 0).ok())
        .find(|other| other.kid != dev.kid && key_family(other.algorithm) == key_family(alg))
        .ok_or_else(|| format!("no other tenant has a development key for {alg}; set `key_tenant`"))
}

/// The signature's high-S form, `r || (n - s)` when `s` is low (test data; the engine's own
/// normalisation is independent of this).
fn flip_s(signature: &mut Vec<u8>, alg: Algorithm) -> Result<(), String> {
    let flipped = match alg {
        Algorithm::ES256 => {
            let sig = p256::ecdsa::Signature::from_slice(signature).map_err(|e| e.to_string())?;
            if sig.normalize_s().is_some() {
                return Ok(()); // already high
            }
            let (r, s) = sig.split_scalars();
            p256::ecdsa::Signature::from_scalars(r, -s)
                .map_err(|e| e.to_string())?
                .to_vec()
        }
        Algorithm::ES384 => {
            let sig = p384::ecdsa::Signature::from_slice(signature).map_err(|e| e.to_string())?;
            if sig.normalize_s().is_some() {
                return Ok(());
            }
            let (r, s) = sig.split_scalars();
            p384::ecdsa::Signature::from_scalars(r, -s)
                .map_err(|e| e.to_string())?
                .to_vec()
        }
        _ => return Err("`high_s` needs an ECDSA algorithm (ES256 or ES384)".into()),
    };
    *signature = flipped;
    Ok(())
}
