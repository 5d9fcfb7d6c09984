//! Signatures checked by Envoy: the arguments of Envoy's `verify_signature` foreign function
//! (BoringSSL, native code) and its result, as protobuf messages
//! (`VerifySignatureArguments { hash_function = 1, public_key = 2 (SubjectPublicKeyInfo DER),
//! signature = 3, text = 4 }`, `VerifySignatureResult { result = 1, error = 2 }`).
//!
//! Envoy's function checks PKCS #1 v1.5 RSA and ECDSA signatures, so `RS256/384/512` and
//! `ES256/384` go to Envoy; `PS*` (it cannot set PSS padding), `EdDSA` (it always hashes first)
//! and `HS*` (no secret keys) stay in Wasm. The engine has already checked that the key may be
//! used with the algorithm, and encodes keys and ECDSA signatures as X.509 libraries take them
//! ([`KeyMaterial::spki_der`], [`Algorithm::ecdsa_signature_der`]); this module only wraps
//! them in Envoy's protobuf messages.

use portcullis_engine::{Algorithm, Curve, KeyMaterial};

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
    use Algorithm::{ES256, ES384, RS256, RS384, RS512};
    let hash = match alg {
        RS256 | ES256 => "sha256",
        RS384 | ES384 => "sha384",
        RS512 => "sha512",
        _ => return Prepared::InWasm,
    };
    let signature = match (alg, key) {
        (RS256 | RS384 | RS512, KeyMaterial::Rsa { .. }) => Some(signature.to_vec()),
        (
            ES256,
            KeyMaterial::Ec {
                curve: Curve::P256, ..
            },
        )
        | (
            ES384,
            KeyMaterial::Ec {
                curve: Curve::P384, ..
            },
        ) => alg.ecdsa_signature_der(signature),
        _ => None,
    };
    let (Some(spki), Some(signature)) = (key.spki_der(), signature) else {
        return Prepared::Invalid;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(fields[0].1, rsa.spki_der().unwrap());
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
