//! Signed bundles: a detached JWS (RFC 7515 appendix F) over the compiled bundle, carried in
//! its `signatures` field, verified against public keys the host trusts before the bundle is
//! accepted from any source.
//!
//! What is signed is the bundle's canonical form: the compiled document as this engine writes
//! it, without `signatures` (so one bundle can carry several, for key rotation) but with its
//! `revision`. Re-serialising a bundle (into an Envoy YAML file, through a proxy) keeps the
//! signature valid; changing any policy, tenant or setting breaks it. The JWS header carries
//! `typ: portcullis-bundle+jws`, so that no token signed with the same key can pass for a
//! bundle signature or the other way round.
//!
//! A host that is given trusted keys refuses every bundle that has no signature verifying with
//! one of them. There is no "keys configured but signature optional" mode: an unsigned bundle
//! is never accepted where signing is required, whatever else the configuration says.

use super::CompiledBundle;
use crate::crypto::SignatureVerifier;
use crate::error::{BundleError, BundleProblem, KeyError};
use crate::keys::{Algorithm, KeySet};
use crate::token::{parse_jws, select_key};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The JWS `typ` of bundle signatures.
pub const BUNDLE_SIGNATURE_TYPE: &str = "portcullis-bundle+jws";

/// Most signatures a bundle may carry.
const MAX_SIGNATURES: usize = 8;

/// The algorithms a bundle may be signed with: every public-key one.
fn signing_algorithms() -> Vec<Algorithm> {
    Algorithm::ALL
        .into_iter()
        .filter(|a| !a.is_symmetric())
        .collect()
}

/// The public keys a host accepts bundle signatures from.
#[derive(Clone, Debug)]
pub struct BundleTrust {
    keys: KeySet,
}

impl BundleTrust {
    /// Trust the public keys of a JWK set (RSA, EC or Ed25519; several for rotation).
    ///
    /// # Errors
    /// A set with no usable public key, private key material, or an HMAC secret (a secret every
    /// verifying host holds could sign bundles too).
    pub fn from_jwks(jwks: &serde_json::Value) -> Result<Self, KeyError> {
        let holds_secret = jwks
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|keys| {
                keys.iter()
                    .any(|k| k.get("kty").and_then(serde_json::Value::as_str) == Some("oct"))
            });
        if holds_secret {
            return Err(KeyError::InvalidJwks(
                "an HMAC secret (`oct` key) cannot verify bundle signatures: use public keys"
                    .into(),
            ));
        }
        let (keys, _notes) =
            KeySet::from_jwks(jwks, &signing_algorithms()).map_err(KeyError::InvalidJwks)?;
        Ok(Self { keys })
    }

    /// Number of trusted keys.
    pub fn key_count(&self) -> usize {
        self.keys.keys().len()
    }

    /// Whether `compiled` carries a signature that verifies with one of the trusted keys.
    ///
    /// # Errors
    /// No signature, or none that verifies (each reason listed).
    pub fn check(
        &self,
        compiled: &CompiledBundle,
        verifier: &dyn SignatureVerifier,
    ) -> Result<(), BundleError> {
        let refuse = |message: String, help: &str| {
            BundleError::one(BundleProblem::new("signature", message).help(help))
        };
        if compiled.signatures.is_empty() {
            return Err(refuse(
                "the bundle is not signed, and this host accepts only signed bundles".into(),
                "sign it with `portcullis bundle <dir> -o <file> --sign <key.pem>`",
            ));
        }
        if compiled.signatures.len() > MAX_SIGNATURES {
            return Err(refuse(
                format!(
                    "the bundle carries {} signatures, over the limit of {MAX_SIGNATURES}",
                    compiled.signatures.len()
                ),
                "keep one signature per signing key in use",
            ));
        }
        let payload = URL_SAFE_NO_PAD.encode(compiled.signing_payload());
        let mut reasons = Vec::new();
        for (i, detached) in compiled.signatures.iter().enumerate() {
            match self.verify_one(detached, &payload, verifier) {
                Ok(()) => return Ok(()),
                Err(why) => reasons.push(format!("signature {i}: {why}")),
            }
        }
        Err(refuse(
            format!(
                "no signature of the bundle verifies with the trusted keys ({})",
                reasons.join("; ")
            ),
            "sign the bundle with a key whose public half the host trusts (`--bundle-keys`)",
        ))
    }

    fn verify_one(
        &self,
        detached: &str,
        payload_b64: &str,
        verifier: &dyn SignatureVerifier,
    ) -> Result<(), String> {
        let (header, signature) = detached
            .split_once("..")
            .filter(|(h, s)| !h.contains('.') && !s.contains('.'))
            .ok_or("not a detached JWS (`header..signature`)")?;
        if header.len() > 4096 || signature.len() > 4096 {
            return Err("too large".into());
        }
        let jws = format!("{header}.{payload_b64}.{signature}");
        let parsed = parse_jws(&jws, jws.len()).map_err(|e| e.to_string())?;
        if parsed.typ.as_deref() != Some(BUNDLE_SIGNATURE_TYPE) {
            return Err(format!("`typ` is not `{BUNDLE_SIGNATURE_TYPE}`"));
        }
        if parsed.alg.is_symmetric() {
            return Err(format!("algorithm `{}` cannot sign bundles", parsed.alg));
        }
        let key =
            select_key(&self.keys, parsed.alg, parsed.kid.as_deref()).map_err(|e| e.to_string())?;
        match verifier.verify(
            parsed.alg,
            key,
            parsed.signing_input.as_bytes(),
            &parsed.signature,
        ) {
            Ok(true) => Ok(()),
            Ok(false) => Err("the signature does not verify".into()),
            Err(why) => Err(format!("the signature could not be checked: {why}")),
        }
    }
}

impl CompiledBundle {
    /// The bytes a bundle signature covers: the document without `signatures`, as this engine
    /// writes it.
    pub fn signing_payload(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signatures.clear();
        serde_json::to_vec(&unsigned).unwrap_or_default()
    }
}

#[cfg(test)]
#[cfg(feature = "mint")]
mod tests {
    use super::*;
    use crate::bundle::{PolicySource, Settings};
    use crate::crypto::RustCryptoVerifier;

    fn bundle() -> CompiledBundle {
        CompiledBundle::new(
            Settings::default(),
            None,
            vec![PolicySource {
                file: "p.cedar".into(),
                tenant: None,
                source: "@id(\"all\") permit(principal, action, resource);".into(),
            }],
        )
        .seal()
    }

    const PEM: &str = include_str!("../../../policies/techfin/dev-keys/globex-es256.pem");
    const JWKS: &str = include_str!("../../../policies/techfin/dev-keys/globex-es256.jwks.json");

    fn trust() -> BundleTrust {
        BundleTrust::from_jwks(&serde_json::from_str(JWKS).unwrap()).unwrap()
    }

    #[test]
    fn signed_bundles_verify_and_anything_else_is_refused() {
        let signed =
            crate::mint::sign_bundle(bundle(), Algorithm::ES256, PEM, Some("globex-es256"))
                .unwrap();
        assert_eq!(signed.signatures.len(), 1);
        assert!(signed.signatures[0].contains(".."));
        trust().check(&signed, &RustCryptoVerifier).unwrap();
        // The revision is that of the unsigned content: signing changes no decision.
        assert_eq!(signed.revision, bundle().revision);
        assert_eq!(signed.compute_revision(), signed.revision);
        // A round trip through JSON keeps it valid.
        let again: CompiledBundle = serde_json::from_str(&signed.to_json()).unwrap();
        trust().check(&again, &RustCryptoVerifier).unwrap();

        let err = trust().check(&bundle(), &RustCryptoVerifier).unwrap_err();
        assert!(err.to_string().contains("not signed"), "{err}");

        let mut tampered = signed.clone();
        tampered.policies[0].source = "@id(\"all\") forbid(principal, action, resource);".into();
        let err = trust().check(&tampered, &RustCryptoVerifier).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");

        // Signed by a key the host does not trust.
        let other = include_str!("../../../policies/techfin/dev-keys/acme-rs256.pem");
        let foreign =
            crate::mint::sign_bundle(bundle(), Algorithm::RS256, other, Some("acme-rs256"))
                .unwrap();
        assert!(trust().check(&foreign, &RustCryptoVerifier).is_err());

        // A token signed with the trusted key is not a bundle signature.
        let mut header = serde_json::Map::new();
        header.insert("alg".into(), "ES256".into());
        let token = crate::mint::sign_bytes(
            &serde_json::to_vec(&header).unwrap(),
            &signed.signing_payload(),
            Algorithm::ES256,
            PEM,
        )
        .unwrap();
        let mut parts = token.split('.');
        let (h, _, s) = (parts.next().unwrap(), parts.next(), parts.next().unwrap());
        let mut wrong_type = bundle();
        wrong_type.signatures = vec![format!("{h}..{s}")];
        let err = trust().check(&wrong_type, &RustCryptoVerifier).unwrap_err();
        assert!(err.to_string().contains("`typ`"), "{err}");
        // Rotation: the second of two signatures verifies.
        let mut rotated = foreign.clone();
        rotated.signatures.extend(signed.signatures.clone());
        trust().check(&rotated, &RustCryptoVerifier).unwrap();
    }

    #[test]
    fn secrets_are_not_trust_anchors() {
        let jwks = serde_json::json!({"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]});
        assert!(BundleTrust::from_jwks(&jwks).is_err());
    }
}
