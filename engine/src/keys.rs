//! Signing algorithms and verification keys (JWK sets), parsed strictly.
//!
//! A key is usable only for the algorithms its type, curve and size allow, and only for the
//! issuer it was configured for. JWKs carrying private material are refused: a public key set
//! that contains `d` is a leaked private key, not something to verify with.

use crate::der;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;

/// Minimum RSA modulus size accepted, in bits (RFC 7518 §3.3 requires 2048).
pub const MIN_RSA_BITS: usize = 2048;
/// Maximum RSA modulus size accepted, in bits (bounds verification cost).
pub const MAX_RSA_BITS: usize = 8192;
/// Most keys accepted in one JWK set.
pub const MAX_KEYS_PER_SET: usize = 64;

/// A JWS signing algorithm the engine can verify. `none` is not one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// HMAC SHA-256 (shared secret; only with an explicitly configured secret).
    HS256,
    /// HMAC SHA-384.
    HS384,
    /// HMAC SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 SHA-512.
    RS512,
    /// RSASSA-PSS SHA-256.
    PS256,
    /// RSASSA-PSS SHA-384.
    PS384,
    /// RSASSA-PSS SHA-512.
    PS512,
    /// ECDSA P-256 SHA-256.
    ES256,
    /// ECDSA P-384 SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 12] = [
        Self::HS256,
        Self::HS384,
        Self::HS512,
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
    ];

    /// The JOSE name (`RS256`).
    pub fn name(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    /// Parse an exact, case-sensitive JOSE name. `none` (any casing) is never an algorithm.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether this is a shared-secret (HMAC) algorithm.
    pub fn is_symmetric(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }

    /// Minimum HMAC secret length in bytes (the hash output size, RFC 7518 §3.2).
    fn min_secret_len(self) -> usize {
        match self {
            Self::HS384 => 48,
            Self::HS512 => 64,
            _ => 32,
        }
    }

    // Only the built-in `rust-crypto` verifier reads it; hosts with their own crypto read `material`.
    #[cfg(feature = "rust-crypto")]
    pub(crate) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as J;
        match self {
            Self::HS256 => J::HS256,
            Self::HS384 => J::HS384,
            Self::HS512 => J::HS512,
            Self::RS256 => J::RS256,
            Self::RS384 => J::RS384,
            Self::RS512 => J::RS512,
            Self::PS256 => J::PS256,
            Self::PS384 => J::PS384,
            Self::PS512 => J::PS512,
            Self::ES256 => J::ES256,
            Self::ES384 => J::ES384,
            Self::EdDSA => J::EdDSA,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Algorithm {
    /// An ECDSA signature as JOSE writes it (`r || s`, each the curve's size, RFC 7518 §3.4)
    /// re-encoded as the DER `SEQUENCE { r, s }` that X.509 crypto libraries verify
    /// (BoringSSL, OpenSSL); `None` for an algorithm other than `ES256` and `ES384`, or a
    /// signature of the wrong size (which cannot verify).
    pub fn ecdsa_signature_der(self, signature: &[u8]) -> Option<Vec<u8>> {
        match self {
            Self::ES256 => der::ecdsa_signature(signature, 32),
            Self::ES384 => der::ecdsa_signature(signature, 48),
            _ => None,
        }
    }
}

/// An elliptic curve of an EC or OKP key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
    /// Ed25519.
    Ed25519,
}

/// The public material of a verification key, decoded. Hosts that plug in their own crypto
/// read it from here; it never contains private key material except HMAC secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// RSA modulus and exponent, big-endian, no leading zeros.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// An EC point (uncompressed coordinates).
    Ec {
        /// Curve.
        curve: Curve,
        /// X coordinate.
        x: Vec<u8>,
        /// Y coordinate.
        y: Vec<u8>,
    },
    /// An Ed25519 public key.
    Ed25519 {
        /// The 32-byte public key.
        x: Vec<u8>,
    },
    /// An HMAC secret.
    Hmac {
        /// The secret bytes.
        secret: Vec<u8>,
    },
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa { n, .. } => write!(f, "Rsa({} bits)", n.len() * 8),
            Self::Ec { curve, .. } => write!(f, "Ec({curve:?})"),
            Self::Ed25519 { .. } => f.write_str("Ed25519"),
            Self::Hmac { .. } => f.write_str("Hmac([redacted])"),
        }
    }
}

impl KeyMaterial {
    /// The public key as DER `SubjectPublicKeyInfo` (RFC 5280), the form X.509 crypto
    /// libraries take (BoringSSL, OpenSSL, WebCrypto's `spki` import); `None` for an HMAC
    /// secret, or an EC key whose curve or coordinates do not fit together.
    pub fn spki_der(&self) -> Option<Vec<u8>> {
        match self {
            Self::Rsa { n, e } => Some(der::rsa_spki(n, e)),
            Self::Ec {
                curve: Curve::P256,
                x,
                y,
            } => der::ec_spki(false, x, y),
            Self::Ec {
                curve: Curve::P384,
                x,
                y,
            } => der::ec_spki(true, x, y),
            Self::Ed25519 { x } => Some(der::ed25519_spki(x)),
            Self::Ec {
                curve: Curve::Ed25519,
                ..
            }
            | Self::Hmac { .. } => None,
        }
    }
}

/// A verification key of one issuer: its `kid`, the algorithms it may verify, its material.
///
/// Cloning is cheap (the key is shared), so a token waiting for its signature check can hold
/// its own handle on the key.
#[derive(Clone)]
pub struct VerificationKey(Arc<KeyInner>);

struct KeyInner {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    material: KeyMaterial,
    // Only the built-in `rust-crypto` verifier reads it; hosts with their own crypto read `material`.
    #[cfg(feature = "rust-crypto")]
    decoding: jsonwebtoken::DecodingKey,
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.0.kid)
            .field("algorithms", &self.0.algorithms)
            .field("material", &self.0.material)
            .finish()
    }
}

impl VerificationKey {
    /// The key id, if the JWK has one.
    pub fn kid(&self) -> Option<&str> {
        self.0.kid.as_deref()
    }

    /// The algorithms this key may verify (already intersected with the JWK's `alg`).
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.0.algorithms
    }

    /// The decoded key material.
    pub fn material(&self) -> &KeyMaterial {
        &self.0.material
    }

    /// Whether this key may verify `alg`.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.0.algorithms.contains(&alg)
    }

    // Only the built-in `rust-crypto` verifier reads it; hosts with their own crypto read `material`.
    #[cfg(feature = "rust-crypto")]
    pub(crate) fn decoding_key(&self) -> &jsonwebtoken::DecodingKey {
        &self.0.decoding
    }
}

/// The keys of one issuer, shared cheaply between the engine and its token cache.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Arc<Vec<VerificationKey>>,
}

impl KeySet {
    /// The keys.
    pub fn keys(&self) -> &[VerificationKey] {
        &self.keys
    }

    /// The key set of one HMAC secret, usable with the `allowed` HMAC algorithms its length
    /// permits (a secret at least as long as the hash output, RFC 7518 §3.2).
    ///
    /// # Errors
    /// A secret too short for every allowed algorithm.
    pub fn from_secret(
        secret: &[u8],
        kid: Option<&str>,
        allowed: &[Algorithm],
    ) -> Result<Self, String> {
        let algorithms: Vec<Algorithm> = allowed
            .iter()
            .copied()
            .filter(|a| a.is_symmetric() && secret.len() >= a.min_secret_len())
            .collect();
        if algorithms.is_empty() {
            return Err(format!(
                "the secret is {} bytes, shorter than the hash output of every allowed algorithm (32 bytes for HS256)",
                secret.len()
            ));
        }
        let material = KeyMaterial::Hmac {
            secret: secret.to_vec(),
        };
        Ok(Self {
            keys: Arc::new(vec![VerificationKey(Arc::new(KeyInner {
                kid: kid.map(str::to_owned),
                algorithms,
                #[cfg(feature = "rust-crypto")]
                decoding: decoding_key(&material),
                material,
            }))]),
        })
    }

    /// Parse a JWK set (`{"keys": [...]}`), keeping keys usable with `allowed` algorithms.
    ///
    /// Keys for other purposes (`use: enc`), of unsupported types, or whose `alg` is outside
    /// `allowed` are skipped with a note; structurally broken or weak keys and private key
    /// material are errors. A set with no usable key is an error.
    pub fn from_jwks(
        jwks: &serde_json::Value,
        allowed: &[Algorithm],
    ) -> Result<(Self, Vec<String>), String> {
        let keys = jwks
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| "expected an object with a `keys` array".to_owned())?;
        if keys.len() > MAX_KEYS_PER_SET {
            return Err(format!(
                "{} keys, more than the limit of {MAX_KEYS_PER_SET}",
                keys.len()
            ));
        }
        let mut out = Vec::new();
        let mut notes = Vec::new();
        for (index, value) in keys.iter().enumerate() {
            match parse_jwk(value, allowed) {
                Ok(Some(key)) => {
                    if let Some(kid) = key.kid()
                        && out.iter().any(|k: &VerificationKey| k.kid() == Some(kid))
                    {
                        return Err(format!(
                            "two keys have the kid `{}`",
                            crate::error::sanitize(kid, 64)
                        ));
                    }
                    out.push(key);
                }
                Ok(None) => notes.push(format!(
                    "key {index} skipped: not a signature key for an allowed algorithm"
                )),
                Err(why) => return Err(format!("key {index}: {why}")),
            }
        }
        if out.is_empty() {
            return Err("no key usable for the issuer's algorithms".to_owned());
        }
        Ok((
            Self {
                keys: Arc::new(out),
            },
            notes,
        ))
    }
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    k: Option<String>,
    #[serde(default)]
    d: Option<serde_json::Value>,
    #[serde(default)]
    p: Option<serde_json::Value>,
}

fn b64(field: &str, value: Option<&String>) -> Result<Vec<u8>, String> {
    let value = value.ok_or_else(|| format!("missing `{field}`"))?;
    URL_SAFE_NO_PAD
        .decode(value.as_bytes())
        .map_err(|_| format!("`{field}` is not base64url without padding"))
}

fn strip_leading_zeros(bytes: Vec<u8>) -> Vec<u8> {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).map(<[u8]>::to_vec).unwrap_or_default()
}

fn bit_len(bytes: &[u8]) -> usize {
    match bytes.first() {
        Some(first) => (bytes.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

/// Parse one JWK. `Ok(None)` means "not for us" (encryption key, other algorithm).
pub(crate) fn parse_jwk(
    value: &serde_json::Value,
    allowed: &[Algorithm],
) -> Result<Option<VerificationKey>, String> {
    let raw: RawJwk =
        serde_json::from_value(value.clone()).map_err(|e| format!("not a JWK: {e}"))?;
    if raw.d.is_some() || raw.p.is_some() {
        return Err("contains private key material (`d`); publish only public keys".to_owned());
    }
    if let Some(use_) = &raw.use_
        && use_ != "sig"
    {
        return Ok(None);
    }
    if let Some(ops) = &raw.key_ops
        && !ops.iter().any(|op| op == "verify")
    {
        return Ok(None);
    }
    let jwk_alg = match &raw.alg {
        Some(name) => match Algorithm::from_name(name) {
            Some(alg) => Some(alg),
            None => return Ok(None),
        },
        None => None,
    };
    let (material, family): (KeyMaterial, &[Algorithm]) = match raw.kty.as_str() {
        "RSA" => {
            let n = strip_leading_zeros(b64("n", raw.n.as_ref())?);
            let e = strip_leading_zeros(b64("e", raw.e.as_ref())?);
            let bits = bit_len(&n);
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "RSA modulus of {bits} bits is below the minimum of {MIN_RSA_BITS}"
                ));
            }
            if bits > MAX_RSA_BITS {
                return Err(format!(
                    "RSA modulus of {bits} bits is above the maximum of {MAX_RSA_BITS}"
                ));
            }
            if e.is_empty() || e.len() > 4 || e.last().is_some_and(|b| b & 1 == 0) || e == [1] {
                return Err("RSA exponent is not a small odd number above 1".to_owned());
            }
            (
                KeyMaterial::Rsa { n, e },
                &[
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
            )
        }
        "EC" => {
            let (curve, len, alg) = match raw.crv.as_deref() {
                Some("P-256") => (Curve::P256, 32, Algorithm::ES256),
                Some("P-384") => (Curve::P384, 48, Algorithm::ES384),
                _ => return Ok(None),
            };
            let x = b64("x", raw.x.as_ref())?;
            let y = b64("y", raw.y.as_ref())?;
            if x.len() != len || y.len() != len {
                return Err(format!("EC coordinates must be {len} bytes for this curve"));
            }
            let family: &[Algorithm] = if alg == Algorithm::ES256 {
                &[Algorithm::ES256]
            } else {
                &[Algorithm::ES384]
            };
            (KeyMaterial::Ec { curve, x, y }, family)
        }
        "OKP" => {
            if raw.crv.as_deref() != Some("Ed25519") {
                return Ok(None);
            }
            let x = b64("x", raw.x.as_ref())?;
            if x.len() != 32 {
                return Err("Ed25519 key must be 32 bytes".to_owned());
            }
            (KeyMaterial::Ed25519 { x }, &[Algorithm::EdDSA])
        }
        "oct" => {
            let secret = b64("k", raw.k.as_ref())?;
            (
                KeyMaterial::Hmac { secret },
                &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            )
        }
        _ => return Ok(None),
    };
    let algorithms: Vec<Algorithm> = family
        .iter()
        .copied()
        .filter(|a| allowed.contains(a) && jwk_alg.is_none_or(|j| j == *a))
        .filter(|a| match &material {
            KeyMaterial::Hmac { secret } => secret.len() >= a.min_secret_len(),
            _ => true,
        })
        .collect();
    if algorithms.is_empty() {
        if let KeyMaterial::Hmac { secret } = &material
            && family.iter().any(|a| allowed.contains(a))
        {
            return Err(format!(
                "HMAC secret of {} bytes is shorter than the hash output of every allowed algorithm (32 bytes for HS256)",
                secret.len()
            ));
        }
        return Ok(None);
    }
    Ok(Some(VerificationKey(Arc::new(KeyInner {
        kid: raw.kid,
        algorithms,
        #[cfg(feature = "rust-crypto")]
        decoding: decoding_key(&material),
        material,
    }))))
}

/// The key in the form the built-in verifier (`jsonwebtoken`'s RustCrypto provider) takes.
#[cfg(feature = "rust-crypto")]
fn decoding_key(material: &KeyMaterial) -> jsonwebtoken::DecodingKey {
    match material {
        KeyMaterial::Rsa { n, e } => jsonwebtoken::DecodingKey::from_rsa_raw_components(n, e),
        KeyMaterial::Ec { x, y, .. } => {
            let mut point = Vec::with_capacity(1 + x.len() + y.len());
            point.push(0x04);
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            jsonwebtoken::DecodingKey::from_ec_der(&point)
        }
        KeyMaterial::Ed25519 { x } => jsonwebtoken::DecodingKey::from_ed_der(x),
        KeyMaterial::Hmac { secret } => jsonwebtoken::DecodingKey::from_secret(secret),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const N2048: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    #[test]
    fn rsa_key_parses_with_allowlist() {
        let jwks =
            json!({"keys": [{"kty": "RSA", "kid": "k1", "n": N2048, "e": "AQAB", "use": "sig"}]});
        let (set, notes) = KeySet::from_jwks(&jwks, &[Algorithm::RS256]).unwrap();
        assert!(notes.is_empty());
        assert_eq!(set.keys()[0].algorithms(), &[Algorithm::RS256]);
        assert_eq!(set.keys()[0].kid(), Some("k1"));
    }

    #[test]
    fn private_material_is_refused() {
        let jwks = json!({"keys": [{"kty": "RSA", "n": N2048, "e": "AQAB", "d": "AQAB"}]});
        let err = KeySet::from_jwks(&jwks, &[Algorithm::RS256]).unwrap_err();
        assert!(err.contains("private"), "{err}");
    }

    #[test]
    fn weak_rsa_is_refused() {
        let jwks = json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]});
        assert!(
            KeySet::from_jwks(&jwks, &[Algorithm::RS256])
                .unwrap_err()
                .contains("below the minimum")
        );
    }

    #[test]
    fn short_hmac_secret_is_refused() {
        let jwks = json!({"keys": [{"kty": "oct", "k": URL_SAFE_NO_PAD.encode([7u8; 16])}]});
        assert!(
            KeySet::from_jwks(&jwks, &[Algorithm::HS256])
                .unwrap_err()
                .contains("shorter")
        );
        let jwks = json!({"keys": [{"kty": "oct", "k": URL_SAFE_NO_PAD.encode([7u8; 32])}]});
        let (set, _) = KeySet::from_jwks(&jwks, &[Algorithm::HS256, Algorithm::HS512]).unwrap();
        assert_eq!(set.keys()[0].algorithms(), &[Algorithm::HS256]);
    }

    #[test]
    fn enc_keys_and_foreign_algs_are_skipped() {
        let jwks = json!({"keys": [
            {"kty": "RSA", "n": N2048, "e": "AQAB", "use": "enc"},
            {"kty": "RSA", "kid": "a", "n": N2048, "e": "AQAB", "alg": "PS256"},
        ]});
        let err = KeySet::from_jwks(&jwks, &[Algorithm::RS256]).unwrap_err();
        assert!(err.contains("no key usable"));
    }

    #[test]
    fn duplicate_kid_is_refused() {
        let key = json!({"kty": "RSA", "kid": "a", "n": N2048, "e": "AQAB"});
        let jwks = json!({"keys": [key.clone(), key]});
        assert!(
            KeySet::from_jwks(&jwks, &[Algorithm::RS256])
                .unwrap_err()
                .contains("two keys")
        );
    }

    #[test]
    fn keys_and_ecdsa_signatures_in_the_forms_x509_libraries_take() {
        let ec = |curve, len| KeyMaterial::Ec {
            curve,
            x: vec![1; len],
            y: vec![2; len],
        };
        // Lengths of the SubjectPublicKeyInfo of each key type (its prefix is tested in `der`).
        let rsa = KeyMaterial::Rsa {
            n: vec![0xc5; 256],
            e: vec![1, 0, 1],
        };
        assert_eq!(rsa.spki_der().map(|d| d.len()), Some(294));
        assert_eq!(ec(Curve::P256, 32).spki_der().map(|d| d.len()), Some(91));
        assert_eq!(ec(Curve::P384, 48).spki_der().map(|d| d.len()), Some(120));
        let ed = KeyMaterial::Ed25519 { x: vec![0; 32] };
        assert_eq!(ed.spki_der().map(|d| d.len()), Some(44));
        assert_eq!(ec(Curve::P256, 48).spki_der(), None, "coordinates too long");
        assert_eq!(ec(Curve::Ed25519, 32).spki_der(), None);
        assert_eq!(
            KeyMaterial::Hmac {
                secret: vec![7; 32]
            }
            .spki_der(),
            None
        );

        let der = Algorithm::ES256.ecdsa_signature_der(&[0x80; 64]).unwrap();
        assert_eq!(&der[..5], &[0x30, 0x46, 0x02, 0x21, 0x00]);
        assert_eq!(
            Algorithm::ES384
                .ecdsa_signature_der(&[1; 96])
                .map(|d| d.len()),
            Some(102)
        );
        assert_eq!(Algorithm::ES384.ecdsa_signature_der(&[1; 64]), None);
        assert_eq!(Algorithm::RS256.ecdsa_signature_der(&[1; 64]), None);
    }

    #[test]
    fn none_is_not_an_algorithm() {
        for name in ["none", "None", "NONE", "nOnE", "rs256"] {
            assert_eq!(Algorithm::from_name(name), None);
        }
    }
}
