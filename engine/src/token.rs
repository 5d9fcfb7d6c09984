//! Hardened compact-JWS parsing and claim validation (RFC 7519, RFC 8725).
//!
//! The order matters: size limit before any decoding; strict base64url; JSON objects without
//! duplicate keys; header parameters that would let the token choose its own key (`jwk`, `jku`,
//! `x5u`, `x5c`) or change how it is processed (`crit`, `b64`, `zip`) are refused; the
//! algorithm must be a known name (never `none`) and in the issuer's allowlist; the key is chosen
//! only among the issuer's own keys. Signature checking itself is the crypto provider's job.

use crate::bundle::{IssuerEntry, normalize_typ};
use crate::error::{TokenError, sanitize};
use crate::keys::{Algorithm, KeySet, VerificationKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Deepest JSON nesting accepted in a token (serde_json's own limit is 128).
const MAX_DEPTH: usize = 32;

/// A compact JWS split and decoded, not yet trusted.
pub(crate) struct ParsedToken<'a> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub claims: Map<String, Value>,
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
    /// The token with its ECDSA signature in low-S form, when it was sent in high-S form.
    pub canonical: Option<String>,
}

fn b64(part: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part.as_bytes())
        .map_err(|_| TokenError::Malformed("a part is not base64url without padding"))
}

/// A compact JWS with a checked header; the payload is still raw bytes.
pub(crate) struct ParsedJws<'a> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub payload: Vec<u8>,
    pub signing_input: &'a str,
    /// The signature; an ECDSA one always in low-S form (see [`low_s`]).
    pub signature: Vec<u8>,
    /// The whole JWS with the low-S signature, when the one sent was high-S.
    pub canonical: Option<String>,
}

/// The order of P-256, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];
/// The order of P-384, big-endian.
const P384_ORDER: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// ECDSA signatures are malleable: if `(r, s)` verifies, so does `(r, n - s)`, and a second
/// valid form of a token is a second fingerprint, a second cache entry, a second audit
/// identity for one token. Signers pick either form (BoringSSL and OpenSSL do not normalise),
/// so refusing the high form would refuse half of the legitimate tokens; instead a high-S
/// `r || s` is rewritten to its low-S twin, which verifies exactly when the original does.
/// Returns whether it was rewritten. Signatures of the wrong length are left alone (they do
/// not verify).
fn low_s(signature: &mut [u8], order: &[u8]) -> bool {
    let half = signature.len() / 2;
    if signature.len() != order.len() * 2 {
        return false;
    }
    let Some(s) = signature.get_mut(half..) else {
        return false;
    };
    // `s > n / 2` ⇔ `2s > n`, compared without big integers: `s > n - s` when `s < n`.
    if s.iter().all(|b| *b == 0) || s.iter().cmp(order.iter()) != std::cmp::Ordering::Less {
        return false;
    }
    let mut twin = vec![0u8; s.len()];
    let mut borrow = 0i16;
    for i in (0..s.len()).rev() {
        let (Some(n), Some(v), Some(out)) = (order.get(i), s.get(i), twin.get_mut(i)) else {
            return false;
        };
        let mut d = i16::from(*n) - i16::from(*v) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        *out = u8::try_from(d).unwrap_or(0);
    }
    if s.iter().cmp(twin.iter()) != std::cmp::Ordering::Greater {
        return false;
    }
    s.copy_from_slice(&twin);
    true
}

/// Split, decode and sanity-check a token. No key or issuer is involved yet.
pub(crate) fn parse(token: &str, max_bytes: usize) -> Result<ParsedToken<'_>, TokenError> {
    let jws = parse_jws(token, max_bytes)?;
    let claims =
        strict_object(&jws.payload).ok_or(TokenError::Malformed("payload is not a JSON object"))?;
    Ok(ParsedToken {
        alg: jws.alg,
        kid: jws.kid,
        typ: jws.typ,
        claims,
        signing_input: jws.signing_input,
        signature: jws.signature,
        canonical: jws.canonical,
    })
}

/// Split a compact JWS and check its header; the payload may be any non-empty bytes (a JWT's
/// always is: it is a JSON object).
pub(crate) fn parse_jws(token: &str, max_bytes: usize) -> Result<ParsedJws<'_>, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    if token.len() > max_bytes {
        return Err(TokenError::TooLarge {
            size: token.len(),
            limit: max_bytes,
        });
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(if token.split('.').count() == 5 {
            "encrypted tokens (JWE) are not accepted"
        } else {
            "expected three dot-separated parts"
        }));
    };
    if header.is_empty() || payload.is_empty() {
        return Err(TokenError::Malformed("empty header or payload"));
    }
    let header =
        strict_object(&b64(header)?).ok_or(TokenError::Malformed("header is not a JSON object"))?;
    for forbidden in ["crit", "jwk", "jku", "x5u", "x5c", "b64", "zip"] {
        if header.contains_key(forbidden) {
            return Err(TokenError::ForbiddenHeader(forbidden));
        }
    }
    if header.contains_key("enc") {
        return Err(TokenError::Malformed(
            "encrypted tokens (JWE) are not accepted",
        ));
    }
    let alg = match header.get("alg") {
        Some(Value::String(name)) => match Algorithm::from_name(name) {
            Some(alg) => alg,
            None => return Err(TokenError::UnsupportedAlgorithm(sanitize(name, 16))),
        },
        _ => return Err(TokenError::Malformed("header has no `alg` string")),
    };
    // After the header checks, so that an unsecured JWS (`alg: none`, empty signature) is
    // reported as the unsupported algorithm it is.
    if signature.is_empty() {
        return Err(TokenError::BadSignature);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(TokenError::Malformed("`kid` is not a string")),
    };
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(typ)) => Some(typ.clone()),
        Some(_) => return Err(TokenError::Malformed("`typ` is not a string")),
    };
    let payload = b64(payload)?;
    let mut signature = b64(signature)?;
    let signing_len = token.len() - signature_len(token);
    let signing_input = token
        .get(..signing_len)
        .ok_or(TokenError::Malformed("bad part boundaries"))?;
    let rewritten = match alg {
        Algorithm::ES256 => low_s(&mut signature, &P256_ORDER),
        Algorithm::ES384 => low_s(&mut signature, &P384_ORDER),
        _ => false,
    };
    let canonical =
        rewritten.then(|| format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&signature)));
    Ok(ParsedJws {
        alg,
        kid,
        typ,
        payload,
        signing_input,
        signature,
        canonical,
    })
}

/// Verify a compact JWS against a JWK set outside any bundle: the same header rules, key
/// selection and crypto as token verification, without claim checks. Returns the payload.
///
/// # Errors
/// Why the JWS is not accepted.
pub fn verify_jws(
    jws: &str,
    jwks: &Value,
    allowed: &[Algorithm],
    verifier: &dyn crate::crypto::SignatureVerifier,
) -> Result<Vec<u8>, TokenError> {
    let parsed = parse_jws(jws, 64 * 1024)?;
    // As for bundle issuers: a shared secret and public keys never verify for the same party,
    // or a public key could be used as an HMAC secret.
    let mixed =
        allowed.iter().any(|a| a.is_symmetric()) && allowed.iter().any(|a| !a.is_symmetric());
    if mixed || !allowed.contains(&parsed.alg) {
        return Err(TokenError::AlgorithmNotAllowed(
            parsed.alg.name().to_owned(),
        ));
    }
    let (keys, _) = KeySet::from_jwks(jwks, allowed).map_err(|_| TokenError::UnknownKey)?;
    let key = select_key(&keys, parsed.alg, parsed.kid.as_deref())?;
    if verifier
        .verify(
            parsed.alg,
            key,
            parsed.signing_input.as_bytes(),
            &parsed.signature,
        )
        .map_err(TokenError::Crypto)?
    {
        Ok(parsed.payload)
    } else {
        Err(TokenError::BadSignature)
    }
}

fn signature_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |dot| token.len() - dot)
}

/// Pick the tenant entry of a (possibly shared) issuer whose `match` claims all agree.
pub(crate) fn select_entry<'e>(
    entries: &'e [IssuerEntry],
    claims: &Map<String, Value>,
) -> Result<&'e IssuerEntry, TokenError> {
    let mut matching = entries.iter().filter(|entry| {
        entry
            .match_claims
            .iter()
            .all(|(claim, value)| claims.get(claim).and_then(Value::as_str) == Some(value.as_str()))
    });
    match (matching.next(), matching.next()) {
        (Some(entry), None) => Ok(entry),
        _ => Err(TokenError::NoTenant),
    }
}

/// Header checks that depend on the issuer: `typ` and the algorithm allowlist.
pub(crate) fn check_header(
    parsed: &ParsedToken<'_>,
    entry: &IssuerEntry,
) -> Result<(), TokenError> {
    if let Some(expected) = &entry.typ {
        let found = parsed.typ.as_deref().map(normalize_typ);
        if found.as_deref() != Some(expected.as_str()) {
            return Err(TokenError::WrongType {
                found: sanitize(parsed.typ.as_deref().unwrap_or("(none)"), 40),
                expected: expected.clone(),
            });
        }
    }
    if !entry.algorithms.contains(&parsed.alg) {
        return Err(TokenError::AlgorithmNotAllowed(
            parsed.alg.name().to_owned(),
        ));
    }
    Ok(())
}

/// A NumericDate claim: absent, or a finite JSON number (fractions are truncated).
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.is_finite() && f.abs() < 1e15 =>
            {
                #[allow(clippy::cast_possible_truncation)]
                Ok(Some(f.trunc() as i64))
            }
            _ => Err(TokenError::BadClaim(name)),
        },
        Some(_) => Err(TokenError::BadClaim(name)),
    }
}

/// Times the engine keeps for a verified token, to re-check on every cached use.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TokenTimes {
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    pub skew: i64,
    pub max_age: Option<i64>,
}

impl TokenTimes {
    /// Whether the token is usable at `now`.
    pub fn check(&self, now: i64) -> Result<(), TokenError> {
        if now >= self.exp.saturating_add(self.skew) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = self.nbf
            && now.saturating_add(self.skew) < nbf
        {
            return Err(TokenError::NotYetValid);
        }
        if let Some(iat) = self.iat {
            if iat > now.saturating_add(self.skew) {
                return Err(TokenError::IssuedAt);
            }
            if let Some(max_age) = self.max_age
                && now.saturating_sub(iat) > max_age.saturating_add(self.skew)
            {
                return Err(TokenError::IssuedAt);
            }
        }
        Ok(())
    }
}

/// Validate the registered claims against the issuer entry at time `now`.
pub(crate) fn check_claims(
    claims: &Map<String, Value>,
    entry: &IssuerEntry,
    now: i64,
) -> Result<TokenTimes, TokenError> {
    let exp = numeric_date(claims, "exp")?.ok_or(TokenError::BadClaim("exp"))?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;
    let max_age = entry
        .max_token_age
        .map(|a| i64::try_from(a).unwrap_or(i64::MAX));
    if max_age.is_some() && iat.is_none() {
        return Err(TokenError::BadClaim("iat"));
    }
    // A token valid for longer than the issuer's lifetime cap (from now, and from its issue
    // time) is refused: `exp` far in the future would otherwise live in the cache until then.
    let skew = i64::try_from(entry.clock_skew).unwrap_or(0);
    let limit = entry.max_lifetime.saturating_add(skew);
    if exp.saturating_sub(now) > limit || iat.is_some_and(|iat| exp.saturating_sub(iat) > limit) {
        return Err(TokenError::Lifetime {
            limit: entry.max_lifetime,
        });
    }
    let times = TokenTimes {
        exp,
        nbf,
        iat,
        skew,
        max_age,
    };
    times.check(now)?;
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => entry.audiences.iter().any(|a| a == aud),
        Some(Value::Array(auds)) => {
            if !auds.iter().all(Value::is_string) {
                return Err(TokenError::BadClaim("aud"));
            }
            auds.iter()
                .filter_map(Value::as_str)
                .any(|aud| entry.audiences.iter().any(|a| a == aud))
        }
        Some(_) => return Err(TokenError::BadClaim("aud")),
        // Cognito access tokens carry no `aud`: the app client they were issued to is
        // `client_id`, which AWS says to check instead.
        None if entry.client_id_audience
            && claims.get("token_use").and_then(Value::as_str) == Some("access") =>
        {
            match claims.get("client_id") {
                Some(Value::String(client)) => entry.audiences.iter().any(|a| a == client),
                _ => return Err(TokenError::BadClaim("client_id")),
            }
        }
        None => return Err(TokenError::BadClaim("aud")),
    };
    if !audience_ok {
        return Err(TokenError::WrongAudience);
    }
    for name in ["sub", "jti"] {
        if claims.get(name).is_some_and(|v| !v.is_string()) {
            return Err(TokenError::BadClaim(if name == "sub" {
                "sub"
            } else {
                "jti"
            }));
        }
    }
    Ok(times)
}

/// Choose the verification key: by `kid` among the issuer's keys, or the only candidate.
pub(crate) fn select_key<'k>(
    keys: &'k KeySet,
    alg: Algorithm,
    kid: Option<&str>,
) -> Result<&'k VerificationKey, TokenError> {
    let mut candidates = keys.keys().iter().filter(|k| k.allows(alg));
    match kid {
        Some(kid) => candidates
            .find(|k| k.kid() == Some(kid))
            .ok_or(TokenError::UnknownKey),
        None => match (candidates.next(), candidates.next()) {
            (Some(key), None) => Ok(key),
            (None, _) => Err(TokenError::UnknownKey),
            (Some(_), Some(_)) => Err(TokenError::AmbiguousKey),
        },
    }
}

/// Parse JSON into an object, refusing duplicate keys at any depth and deep nesting.
pub(crate) fn strict_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize_at(&mut de, 0).ok()?;
    de.end().ok()?;
    match value {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

struct StrictValue(usize);

impl StrictValue {
    fn deserialize_at<'de, D: Deserializer<'de>>(
        deserializer: D,
        depth: usize,
    ) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictValue(depth))
    }
}

struct Seed(usize);

impl<'de> de::DeserializeSeed<'de> for Seed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        StrictValue::deserialize_at(deserializer, self.0)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.0 >= MAX_DEPTH {
            return Err(de::Error::custom("nested too deeply"));
        }
        let mut out = Vec::new();
        while let Some(value) = seq.next_element_seed(Seed(self.0 + 1))? {
            out.push(value);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        if self.0 >= MAX_DEPTH {
            return Err(de::Error::custom("nested too deeply"));
        }
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Seed(self.0 + 1))?;
            match out.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(_) => {
                    return Err(de::Error::custom("duplicate key"));
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_object_refuses_duplicates_and_non_objects() {
        assert!(strict_object(br#"{"a":1,"b":{"c":[1,2]}}"#).is_some());
        assert!(strict_object(br#"{"a":1,"a":2}"#).is_none());
        assert!(strict_object(br#"{"a":{"b":1,"b":1}}"#).is_none());
        assert!(strict_object(b"[1]").is_none());
        assert!(strict_object(b"{} x").is_none());
        let deep = "[".repeat(40) + &"]".repeat(40);
        assert!(strict_object(format!(r#"{{"a":{deep}}}"#).as_bytes()).is_none());
    }

    fn enc(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn parse_refuses_bad_shapes() {
        let p = enc(r#"{"iss":"x"}"#);
        let tok = |h: &str| format!("{}.{p}.c2ln", enc(h));
        assert!(matches!(
            parse(&tok(r#"{"alg":"none"}"#), 10).err(),
            Some(TokenError::TooLarge { .. })
        ));
        assert!(matches!(
            parse(&tok(r#"{"alg":"none"}"#), 4096).err(),
            Some(TokenError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            parse(&tok(r#"{"alg":"RS256","crit":["x"]}"#), 4096).err(),
            Some(TokenError::ForbiddenHeader("crit"))
        ));
        assert!(matches!(
            parse(&tok(r#"{"alg":"RS256","jku":"http://x"}"#), 4096).err(),
            Some(TokenError::ForbiddenHeader("jku"))
        ));
        assert!(matches!(
            parse(&tok(r#"{"alg":"RS256","kid":1}"#), 4096).err(),
            Some(TokenError::Malformed(_))
        ));
        assert!(parse(&tok(r#"{"alg":"RS256","kid":"k"}"#), 4096).is_ok());
        assert!(matches!(
            parse(&format!("{}.{p}.", enc(r#"{"alg":"RS256"}"#)), 4096).err(),
            Some(TokenError::BadSignature)
        ));
        assert!(matches!(
            parse(&format!("{}.{p}=.c2ln", enc(r#"{"alg":"RS256"}"#)), 4096).err(),
            Some(TokenError::Malformed(_))
        ));
        assert!(matches!(
            parse("a.b.c.d.e", 4096).err(),
            Some(TokenError::Malformed(_))
        ));
        assert!(matches!(parse("", 4096).err(), Some(TokenError::Missing)));
    }

    #[test]
    fn high_s_ecdsa_signatures_become_their_low_s_twin() {
        let n = num(&P256_ORDER);
        let mut high = [0u8; 64];
        high[0] = 7;
        // s = n - 5: high; its twin is 5.
        let s = &n - 5u8;
        high[32..].copy_from_slice(&s);
        let mut sig = high;
        assert!(low_s(&mut sig, &P256_ORDER));
        assert_eq!(sig[0], 7, "r is untouched");
        assert_eq!(&sig[32..63], &[0u8; 31]);
        assert_eq!(sig[63], 5);
        // Already low, zero, or not below the order: left alone.
        assert!(!low_s(&mut sig, &P256_ORDER));
        let mut zero = [0u8; 64];
        assert!(!low_s(&mut zero, &P256_ORDER));
        let mut at_order = [0u8; 64];
        at_order[32..].copy_from_slice(&P256_ORDER);
        assert!(!low_s(&mut at_order, &P256_ORDER));
        let mut short = [0xffu8; 63];
        assert!(!low_s(&mut short, &P256_ORDER));
        // The boundary: n/2 rounded down is low, one more is high.
        let half: Vec<u8> = half_of(&P256_ORDER);
        let mut at_half = [0u8; 64];
        at_half[32..].copy_from_slice(&half);
        assert!(!low_s(&mut at_half, &P256_ORDER));
        let mut above = at_half;
        above[63] += 1;
        assert!(low_s(&mut above, &P256_ORDER));
        assert_eq!(&above[32..], &half[..], "n - (n/2 + 1) = n/2 for odd n");
        let mut p384 = [0u8; 96];
        p384[48..].copy_from_slice(&(&num(&P384_ORDER) - 1u8));
        assert!(low_s(&mut p384, &P384_ORDER));
        assert_eq!(p384[95], 1);
    }

    /// `n - k` for a small `k`, big-endian (test helper).
    struct Num(Vec<u8>);
    fn num(bytes: &[u8]) -> Num {
        Num(bytes.to_vec())
    }
    impl std::ops::Sub<u8> for &Num {
        type Output = Vec<u8>;
        fn sub(self, k: u8) -> Vec<u8> {
            let mut out = self.0.clone();
            let mut borrow = u16::from(k);
            for b in out.iter_mut().rev() {
                let v = u16::from(*b);
                if v >= borrow {
                    *b = (v - borrow) as u8;
                    borrow = 0;
                } else {
                    *b = (v + 256 - borrow) as u8;
                    borrow = 1;
                }
            }
            out
        }
    }
    fn half_of(n: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(n.len());
        let mut carry = 0u16;
        for b in n {
            let v = (carry << 8) | u16::from(*b);
            out.push((v / 2) as u8);
            carry = v % 2;
        }
        out
    }

    #[test]
    fn signing_input_is_header_dot_payload() {
        let t = format!("{}.{}.c2ln", enc(r#"{"alg":"ES256"}"#), enc("{}"));
        let parsed = parse(&t, 4096).unwrap();
        assert_eq!(parsed.signing_input, t.rsplit_once('.').unwrap().0);
        assert_eq!(parsed.signature, b"sig");
    }
}
