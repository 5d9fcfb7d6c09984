//! Native signature verification and SHA-256 with `ring`: what the embedded component's
//! `crypto` import runs, and a [`SignatureVerifier`] for native engines (the benchmarks'
//! baseline).

use portcullis_engine::{Algorithm, Curve, KeyMaterial, SignatureVerifier, VerificationKey};
use ring::{hmac, signature};

/// SHA-256 of `data`.
#[must_use]
pub fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// Whether `sig` is a valid `alg` signature of `message` under `key`.
///
/// # Errors
/// When the key's type does not fit the algorithm (the engine never asks that) or an EC
/// coordinate is longer than its curve allows.
pub fn verify(
    alg: Algorithm,
    key: &KeyMaterial,
    message: &[u8],
    sig: &[u8],
) -> Result<bool, String> {
    use signature as s;
    let rsa = |params: &'static s::RsaParameters| match key {
        KeyMaterial::Rsa { n, e } => Ok(s::RsaPublicKeyComponents { n, e }
            .verify(params, message, sig)
            .is_ok()),
        _ => Err(mismatch(alg)),
    };
    let ec = |curve: Curve, size: usize, params: &'static s::EcdsaVerificationAlgorithm| match key {
        KeyMaterial::Ec { curve: c, x, y } if *c == curve => {
            let point = uncompressed_point(x, y, size)?;
            Ok(s::UnparsedPublicKey::new(params, point)
                .verify(message, sig)
                .is_ok())
        }
        _ => Err(mismatch(alg)),
    };
    let mac = |algorithm: hmac::Algorithm| match key {
        KeyMaterial::Hmac { secret } => {
            Ok(hmac::verify(&hmac::Key::new(algorithm, secret), message, sig).is_ok())
        }
        _ => Err(mismatch(alg)),
    };
    match alg {
        Algorithm::HS256 => mac(hmac::HMAC_SHA256),
        Algorithm::HS384 => mac(hmac::HMAC_SHA384),
        Algorithm::HS512 => mac(hmac::HMAC_SHA512),
        Algorithm::RS256 => rsa(&s::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => rsa(&s::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => rsa(&s::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => rsa(&s::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => rsa(&s::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => rsa(&s::RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => ec(Curve::P256, 32, &s::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => ec(Curve::P384, 48, &s::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => match key {
            KeyMaterial::Ed25519 { x } => Ok(s::UnparsedPublicKey::new(&s::ED25519, x)
                .verify(message, sig)
                .is_ok()),
            _ => Err(mismatch(alg)),
        },
    }
}

fn mismatch(alg: Algorithm) -> String {
    format!("the key does not fit `{alg}`")
}

/// `04 || x || y`, each coordinate left-padded to the curve size.
fn uncompressed_point(x: &[u8], y: &[u8], size: usize) -> Result<Vec<u8>, String> {
    if x.len() > size || y.len() > size {
        return Err("an EC coordinate is longer than its curve allows".to_owned());
    }
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(4);
    for coordinate in [x, y] {
        point.resize(point.len() + size - coordinate.len(), 0);
        point.extend_from_slice(coordinate);
    }
    Ok(point)
}

/// The engine's [`SignatureVerifier`] over [`verify`]: native crypto for native engines.
#[derive(Clone, Copy, Debug, Default)]
pub struct RingVerifier;

impl SignatureVerifier for RingVerifier {
    fn verify(
        &self,
        alg: Algorithm,
        key: &VerificationKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, String> {
        verify(alg, key.material(), message, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_sha256() {
        // FIPS 180-2, appendix B.1.
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let hex: String = sha256(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        assert_eq!(sha256(b"abc"), portcullis_engine::sha256(b"abc"));
    }

    #[test]
    fn hmac_verifies_and_rejects() {
        let secret = vec![7u8; 32];
        let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        let tag = hmac::sign(&key, b"msg");
        let material = KeyMaterial::Hmac { secret };
        assert_eq!(
            verify(Algorithm::HS256, &material, b"msg", tag.as_ref()),
            Ok(true)
        );
        assert_eq!(
            verify(Algorithm::HS256, &material, b"msh", tag.as_ref()),
            Ok(false)
        );
        assert!(verify(Algorithm::RS256, &material, b"msg", tag.as_ref()).is_err());
    }

    #[test]
    fn points_are_padded_and_bounded() {
        assert_eq!(
            uncompressed_point(&[1], &[2, 3], 3).unwrap(),
            [4, 0, 0, 1, 0, 2, 3]
        );
        assert!(uncompressed_point(&[1; 4], &[2], 3).is_err());
    }
}
