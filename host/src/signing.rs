//! `portcullis bundle --sign` and `portcullis bundle-keygen`: bundle-signing keys and signing.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use portcullis_engine::{Algorithm, CompiledBundle, sign_bundle};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use serde_json::json;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Sign `compiled` with the PEM private key at `key`; the algorithm follows the key (EC
/// P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA, RSA → RS256).
///
/// # Errors
/// An unreadable key, or one of no supported kind.
pub fn sign(
    compiled: CompiledBundle,
    key: &Path,
    kid: Option<&str>,
) -> Result<CompiledBundle, String> {
    let pem = std::fs::read_to_string(key)
        .map_err(|e| format!("cannot read the signing key `{}`: {e}", key.display()))?;
    let mut last = String::new();
    for algorithm in [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::RS256,
    ] {
        match sign_bundle(compiled.clone(), algorithm, &pem, kid) {
            Ok(signed) => return Ok(signed),
            Err(e) => last = e,
        }
    }
    Err(format!(
        "`{}` is not an RSA, EC (P-256, P-384) or Ed25519 private key in PEM ({last})",
        key.display()
    ))
}

/// Write a new key pair: `<output>.pem` (private, mode 0600) and `<output>.jwks.json` (the
/// public key, with its RFC 7638 thumbprint as `kid`). Existing files are never overwritten.
///
/// # Errors
/// An unknown algorithm, an existing file, or a write failure.
pub fn keygen(output: &Path, algorithm: &str) -> Result<Vec<PathBuf>, String> {
    let rng = SystemRandom::new();
    let (pkcs8, jwk) = match algorithm {
        "EdDSA" | "Ed25519" => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| "cannot generate an Ed25519 key".to_owned())?;
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                .map_err(|_| "cannot read the generated key".to_owned())?;
            let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
            let thumbprint = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
            (
                pkcs8.as_ref().to_vec(),
                json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "use": "sig", "kid": kid_of(&thumbprint)}),
            )
        }
        "ES256" => {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| "cannot generate a P-256 key".to_owned())?;
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .map_err(|_| "cannot read the generated key".to_owned())?;
            let point = pair.public_key().as_ref();
            let (x, y) = (
                URL_SAFE_NO_PAD.encode(point.get(1..33).unwrap_or_default()),
                URL_SAFE_NO_PAD.encode(point.get(33..65).unwrap_or_default()),
            );
            let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
            (
                pkcs8.as_ref().to_vec(),
                json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "alg": "ES256", "use": "sig", "kid": kid_of(&thumbprint)}),
            )
        }
        other => {
            return Err(format!(
                "unknown algorithm `{other}`: use `EdDSA` (Ed25519) or `ES256`"
            ));
        }
    };
    // Appended, not `with_extension`: `keys/signing.v2` must give `keys/signing.v2.pem`.
    let suffixed = |suffix: &str| {
        let mut name = output.as_os_str().to_owned();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    let private = suffixed(".pem");
    let public = suffixed(".jwks.json");
    for file in [&private, &public] {
        if file.exists() {
            return Err(format!(
                "`{}` exists; not overwriting a key",
                file.display()
            ));
        }
    }
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    let body = STANDARD.encode(pkcs8);
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    write_new(&private, pem.as_bytes(), 0o600)?;
    let jwks = serde_json::to_string_pretty(&json!({"keys": [jwk]})).unwrap_or_default() + "\n";
    write_new(&public, jwks.as_bytes(), 0o644)?;
    eprintln!(
        "sign with: portcullis bundle <dir> -o <file> --sign {} --key-id {}\ntrust with: portcullis serve --bundle-keys {} ...",
        private.display(),
        jwk.get("kid").and_then(|k| k.as_str()).unwrap_or_default(),
        public.display()
    );
    Ok(vec![private, public])
}

/// The RFC 7638 thumbprint of a JWK's required members (given in their canonical order).
fn kid_of(canonical: &str) -> String {
    URL_SAFE_NO_PAD.encode(portcullis_engine::sha256(canonical.as_bytes()))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot create `{}`: {e}", path.display()))?;
    file.write_all(bytes)
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}
