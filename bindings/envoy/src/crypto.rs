//! Signatures checked by Envoy: the arguments of Envoy's `verify_signature` foreign function
//! (BoringSSL, native code) and its result, as protobuf messages
//! (`VerifySignatureArguments { hash_function = 1, public_key = 2 (SubjectPublicKeyInfo DER),
//! signature = 3, text = 4 }`, `VerifySignatureResult { result = 1, error = 2 }`).
//!
//! Envoy's function checks PKCS #1 v1.5 RSA and ECDSA signatures, so `RS256/384/512` and
//! `ES256/384` go to Envoy; `PS*` (it cannot set PSS padding), `EdDSA` (it always hashes first)
//! and `HS*` (no secret keys) stay in Wasm. The engine has already checked that the key may be
//! used with the algorithm; this module only re-encodes: RSA and EC keys as SubjectPublicKeyInfo
//! DER, JOSE's fixed-size ECDSA signatures (`r || s`) as DER `SEQUENCE { r, s }`.

use portcullis_engine::{Algorithm, Curve, KeyMaterial};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

/// How many signatures a worker checks in Wasm per second: `PS*` and `EdDSA`, which Envoy's
/// BoringSSL function cannot check, cost a worker about a millisecond each in Wasm, and a flood
/// of distinct forged tokens (each passes every cheap check: a public issuer, audience and
/// `kid`) would otherwise take the worker's whole CPU. Past the budget a check fails as a
/// provider failure — the request is answered 503 with `Retry-After`, never allowed — until the
/// next second. Tokens already verified are cached and never checked again, so the budget is
/// spent only by new tokens.
#[derive(Debug)]
pub struct WasmBudget {
    per_second: u32,
    // A VM is single-threaded; atomics only because verifiers must be `Sync`.
    second: AtomicI64,
    spent: AtomicU32,
}

impl WasmBudget {
    /// A budget of `per_second` checks (`0`: unlimited).
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            second: AtomicI64::new(i64::MIN),
            spent: AtomicU32::new(0),
        }
    }

    /// Whether one more check may run in second `now`.
    pub fn take(&self, now: i64) -> bool {
        if self.per_second == 0 {
            return true;
        }
        if self.second.swap(now, Ordering::Relaxed) != now {
            self.spent.store(0, Ordering::Relaxed);
        }
        self.spent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |spent| {
                (spent < self.per_second).then_some(spent + 1)
            })
            .is_ok()
    }
}

/// What to do with one signature check.
#[derive(Debug, PartialEq, Eq)]
pub enum Prepared {
    /// Ask Envoy's `verify_signature` with these encoded arguments.
    Envoy(Vec<u8>),
    /// Envoy cannot check this algorithm: check it in Wasm.
    InWasm,
    /// The signature cannot verify (an ECDSA signature of the wrong size, or a key that does
    /// not fit the algorithm).
    Invalid,
}

/// Prepare the check of `signature` over `message` with `alg` under `key`.
pub fn prepare(alg: Algorithm, key: &KeyMaterial, message: &[u8], signature: &[u8]) -> Prepared {
    let (hash, spki, signature) = match (alg, key) {
        (Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512, KeyMaterial::Rsa { n, e }) => {
            let hash = match alg {
                Algorithm::RS256 => "sha256",
                Algorithm::RS384 => "sha384",
                _ => "sha512",
            };
            (hash, rsa_spki(n, e), signature.to_vec())
        }
        (Algorithm::ES256 | Algorithm::ES384, KeyMaterial::Ec { curve, x, y }) => {
            let (hash, size, want) = match alg {
                Algorithm::ES256 => ("sha256", 32, Curve::P256),
                _ => ("sha384", 48, Curve::P384),
            };
            if *curve != want || signature.len() != 2 * size {
                return Prepared::Invalid;
            }
            let Some(spki) = ec_spki(want, x, y, size) else {
                return Prepared::Invalid;
            };
            let (r, s) = signature.split_at(size);
            let mut pair = der_integer(r);
            pair.extend(der_integer(s));
            (hash, spki, der(0x30, &pair))
        }
        (
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::ES256
            | Algorithm::ES384,
            _,
        ) => return Prepared::Invalid,
        _ => return Prepared::InWasm,
    };
    let mut out = Vec::with_capacity(spki.len() + signature.len() + message.len() + 32);
    field(&mut out, 1, hash.as_bytes());
    field(&mut out, 2, &spki);
    field(&mut out, 3, &signature);
    field(&mut out, 4, message);
    Prepared::Envoy(out)
}

/// The `result` of a `VerifySignatureResult` (proto3 leaves out a `false`); `None` for bytes
/// that are not such a message.
pub fn parse_result(mut bytes: &[u8]) -> Option<bool> {
    let mut result = false;
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        match key & 7 {
            0 => {
                let value = varint(&mut bytes)?;
                if key >> 3 == 1 {
                    result = value != 0;
                }
            }
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                bytes = bytes.get(len..)?;
            }
            _ => return None,
        }
    }
    Some(result)
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A length-delimited protobuf field.
fn field(out: &mut Vec<u8>, number: u8, value: &[u8]) {
    out.push(number << 3 | 2);
    let mut len = value.len();
    while len >= 0x80 {
        out.push((len & 0x7f) as u8 | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(value);
}

/// A DER element.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let digits = without_leading_zeros(&bytes);
        out.push(0x80 | digits.len() as u8);
        out.extend_from_slice(digits);
    }
    out.extend_from_slice(content);
    out
}

fn without_leading_zeros(mut bytes: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

/// A non-negative DER INTEGER from big-endian bytes.
fn der_integer(bytes: &[u8]) -> Vec<u8> {
    let digits = without_leading_zeros(bytes);
    let mut content = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|&b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(digits);
    der(0x02, &content)
}

/// `SubjectPublicKeyInfo` of an algorithm identifier and a key.
fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(key.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(key);
    let mut content = der(0x30, algorithm);
    content.extend(der(0x03, &bits));
    der(0x30, &content)
}

/// rsaEncryption (1.2.840.113549.1.1.1) with NULL parameters.
const RSA_ENCRYPTION: [u8; 13] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// id-ecPublicKey (1.2.840.10045.2.1).
const EC_PUBLIC_KEY: [u8; 9] = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (1.2.840.10045.3.1.7).
const P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1 (1.3.132.0.34).
const P384: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut key = der_integer(n);
    key.extend(der_integer(e));
    spki(&RSA_ENCRYPTION, &der(0x30, &key))
}

fn ec_spki(curve: Curve, x: &[u8], y: &[u8], size: usize) -> Option<Vec<u8>> {
    let mut algorithm = EC_PUBLIC_KEY.to_vec();
    algorithm.extend_from_slice(match curve {
        Curve::P256 => &P256[..],
        _ => &P384[..],
    });
    let mut point = vec![0x04];
    for coordinate in [x, y] {
        let padding = size.checked_sub(coordinate.len())?;
        point.resize(point.len() + padding, 0);
        point.extend_from_slice(coordinate);
    }
    Some(spki(&algorithm, &point))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wasm_budget_refills_every_second() {
        let budget = WasmBudget::new(2);
        assert!(budget.take(10) && budget.take(10));
        assert!(!budget.take(10), "spent");
        assert!(budget.take(11), "a new second");
        let unlimited = WasmBudget::new(0);
        assert!((0..10_000).all(|_| unlimited.take(5)));
    }

    #[test]
    fn der_integers_are_minimal_and_non_negative() {
        assert_eq!(der_integer(&[0, 0, 0x12]), [0x02, 0x01, 0x12]);
        assert_eq!(der_integer(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_integer(&[0, 0]), [0x02, 0x01, 0x00]);
        let long = der(0x04, &[7; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn ec_keys_become_subject_public_key_info() {
        // The P-256 SubjectPublicKeyInfo prefix every encoder produces for a 65-byte point.
        let spki = ec_spki(Curve::P256, &[1; 32], &[2; 31], 32).unwrap();
        let prefix = [
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
        ];
        assert_eq!(&spki[..prefix.len()], &prefix);
        assert_eq!(spki.len(), prefix.len() + 64);
        assert_eq!(
            spki[prefix.len() + 32],
            0,
            "a short coordinate is left-padded"
        );
        assert_eq!(ec_spki(Curve::P256, &[1; 33], &[2; 32], 32), None);
    }

    #[test]
    fn algorithms_envoy_cannot_check_stay_in_wasm_and_misfits_are_invalid() {
        let rsa = KeyMaterial::Rsa {
            n: vec![0xc5; 256],
            e: vec![1, 0, 1],
        };
        let ec = KeyMaterial::Ec {
            curve: Curve::P256,
            x: vec![1; 32],
            y: vec![2; 32],
        };
        assert_eq!(
            prepare(Algorithm::PS256, &rsa, b"m", b"s"),
            Prepared::InWasm
        );
        assert_eq!(
            prepare(
                Algorithm::EdDSA,
                &KeyMaterial::Ed25519 { x: vec![0; 32] },
                b"m",
                b"s"
            ),
            Prepared::InWasm
        );
        assert_eq!(
            prepare(Algorithm::ES256, &ec, b"m", &[1; 63]),
            Prepared::Invalid
        );
        assert_eq!(
            prepare(Algorithm::ES384, &ec, b"m", &[1; 96]),
            Prepared::Invalid
        );
        assert_eq!(
            prepare(Algorithm::RS256, &ec, b"m", b"s"),
            Prepared::Invalid
        );
        assert!(matches!(
            prepare(Algorithm::ES256, &ec, b"m", &[0x80; 64]),
            Prepared::Envoy(_)
        ));
    }

    #[test]
    fn arguments_are_the_four_protobuf_fields() {
        let rsa = KeyMaterial::Rsa {
            n: vec![0xc5; 256],
            e: vec![1, 0, 1],
        };
        let Prepared::Envoy(args) = prepare(Algorithm::RS384, &rsa, b"header.payload", &[9; 256])
        else {
            panic!("RS384 goes to Envoy");
        };
        assert_eq!(&args[..8], b"\x0a\x06sha384");
        let mut rest = &args[8..];
        let mut fields = Vec::new();
        while !rest.is_empty() {
            let key = varint(&mut rest).unwrap();
            let len = usize::try_from(varint(&mut rest).unwrap()).unwrap();
            fields.push((key, rest[..len].to_vec()));
            rest = &rest[len..];
        }
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[0].0, 0x12);
        assert_eq!(fields[0].1, rsa_spki(&[0xc5; 256], &[1, 0, 1]));
        assert_eq!(fields[1], (0x1a, vec![9; 256]));
        assert_eq!(fields[2], (0x22, b"header.payload".to_vec()));
    }

    #[test]
    fn results_are_read_strictly() {
        assert_eq!(parse_result(b"\x08\x01"), Some(true));
        assert_eq!(parse_result(b""), Some(false));
        assert_eq!(parse_result(b"\x12\x03bad"), Some(false));
        assert_eq!(parse_result(b"\x08\x01\x12\x00"), Some(true));
        assert_eq!(parse_result(b"\x12\x09short"), None);
        assert_eq!(parse_result(b"\x0d\x00\x00\x00\x00"), None);
        assert_eq!(parse_result(b"\x08"), None);
    }
}
