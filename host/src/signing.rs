//! `portcullis bundle --sign` and `portcullis bundle-keygen`: bundle-signing keys and signing.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use portcullis_engine::{Algorithm, CompiledBundle, sign_bundle};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair as _,
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

/// A new private key (PEM) for `algorithm` and its public JWK (`kty`, the key's members,
/// `alg`, `use`; no `kid`): Ed25519 and EC keys in PKCS#8, RSA (2048 bits) in PKCS#1.
///
/// # Errors
/// An algorithm that has no key pair (`HS*`) or is unknown.
pub fn generate(algorithm: &str) -> Result<(String, serde_json::Value), String> {
    let rng = SystemRandom::new();
    let ec = |curve: &'static ring::signature::EcdsaSigningAlgorithm, crv: &str, size: usize| {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(curve, &rng)
            .map_err(|_| format!("cannot generate a {crv} key"))?;
        let pair = EcdsaKeyPair::from_pkcs8(curve, pkcs8.as_ref(), &rng)
            .map_err(|_| "cannot read the generated key".to_owned())?;
        let point = pair.public_key().as_ref();
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(point.get(1..=size).unwrap_or_default()),
            URL_SAFE_NO_PAD.encode(point.get(size + 1..).unwrap_or_default()),
        );
        Ok::<_, String>((
            pem_block("PRIVATE KEY", pkcs8.as_ref()),
            json!({"kty": "EC", "crv": crv, "x": x, "y": y}),
        ))
    };
    let (pem, mut jwk) = match algorithm {
        "EdDSA" | "Ed25519" => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| "cannot generate an Ed25519 key".to_owned())?;
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                .map_err(|_| "cannot read the generated key".to_owned())?;
            let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
            (
                pem_block("PRIVATE KEY", pkcs8.as_ref()),
                json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
            )
        }
        "ES256" => ec(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32)?,
        "ES384" => ec(&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48)?,
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => {
            use rsa::pkcs1::EncodeRsaPrivateKey as _;
            use rsa::traits::PublicKeyParts as _;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                .map_err(|e| format!("cannot generate an RSA key: {e}"))?;
            let der = key
                .to_pkcs1_der()
                .map_err(|e| format!("cannot encode the RSA key: {e}"))?;
            (
                pem_block("RSA PRIVATE KEY", der.as_bytes()),
                json!({
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                    "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
                }),
            )
        }
        other => {
            return Err(format!(
                "no key pair for algorithm `{other}`: use EdDSA, ES256, ES384, RS256/384/512 or PS256/384/512"
            ));
        }
    };
    let alg = if algorithm == "Ed25519" {
        "EdDSA"
    } else {
        algorithm
    };
    if let Some(object) = jwk.as_object_mut() {
        object.insert("alg".into(), alg.into());
        object.insert("use".into(), "sig".into());
    }
    Ok((pem, jwk))
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let mut pem = format!("-----BEGIN {label}-----\n");
    let body = STANDARD.encode(der);
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// The RFC 7638 thumbprint of a public JWK: SHA-256 of its required members in lexicographic
/// order, base64url.
fn thumbprint(jwk: &serde_json::Value) -> String {
    let members: &[&str] = match jwk.get("kty").and_then(serde_json::Value::as_str) {
        Some("RSA") => &["e", "kty", "n"],
        Some("EC") => &["crv", "kty", "x", "y"],
        _ => &["crv", "kty", "x"],
    };
    let canonical: serde_json::Map<String, serde_json::Value> = members
        .iter()
        .map(|m| ((*m).to_owned(), jwk.get(*m).cloned().unwrap_or_default()))
        .collect();
    kid_of(&serde_json::Value::Object(canonical).to_string())
}

/// Write a new bundle-signing key pair: `<output>.pem` (private, mode 0600) and
/// `<output>.jwks.json` (the public key, with its RFC 7638 thumbprint as `kid`). Existing files
/// are never overwritten.
///
/// # Errors
/// An algorithm other than `EdDSA` and `ES256`, an existing file, or a write failure.
pub fn keygen(output: &Path, algorithm: &str) -> Result<Vec<PathBuf>, String> {
    if !matches!(algorithm, "EdDSA" | "Ed25519" | "ES256") {
        return Err(format!(
            "unknown algorithm `{algorithm}`: use `EdDSA` (Ed25519) or `ES256`"
        ));
    }
    let (pem, mut jwk) = generate(algorithm)?;
    let kid = thumbprint(&jwk);
    if let Some(object) = jwk.as_object_mut() {
        object.insert("kid".into(), kid.clone().into());
    }
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
    write_new(&private, pem.as_bytes(), 0o600)?;
    let jwks = serde_json::to_string_pretty(&json!({"keys": [jwk]})).unwrap_or_default() + "\n";
    write_new(&public, jwks.as_bytes(), 0o644)?;
    eprintln!(
        "sign with: portcullis bundle <dir> -o <file> --sign {} --key-id {kid}\ntrust with: portcullis serve --bundle-keys {} ...",
        private.display(),
        public.display()
    );
    Ok(vec![private, public])
}

/// The RFC 7638 thumbprint of a JWK's required members (given in their canonical order).
fn kid_of(canonical: &str) -> String {
    URL_SAFE_NO_PAD.encode(portcullis_engine::sha256(canonical.as_bytes()))
}

/// Create `path` with `bytes` and permissions `mode`; an existing file is an error.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
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
