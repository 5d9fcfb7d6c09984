//! Keys handed over by the host (`set_issuer_keys`) and the two-phase verification used by
//! hosts with asynchronous crypto: a signature checked against keys that were replaced in the
//! meantime must not be trusted or cached.

use portcullis_engine::{
    Algorithm, Bundle, BundleSources, DecisionRequest, Engine, EngineOptions, PolicySource,
    ResourceRef, RustCryptoVerifier, SignatureVerifier, TokenError, TokenStep, VerificationKey,
    sign_with_pem,
};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const ISSUER: &str = "https://id.rotating.example";
const NOW: i64 = 1_767_225_600;

fn dev_key(name: &str) -> (String, Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/techfin/dev-keys");
    let pem = std::fs::read_to_string(dir.join(format!("{name}.pem"))).unwrap();
    let jwks = std::fs::read_to_string(dir.join(format!("{name}.jwks.json"))).unwrap();
    (pem, serde_json::from_str(&jwks).unwrap())
}

fn engine() -> Engine {
    engine_with(EngineOptions::default())
}

fn engine_with(options: EngineOptions) -> Engine {
    let tenants = json!({ "tenants": { "rotating": { "issuers": [{
        "issuer": ISSUER,
        "audiences": ["api://techfin"],
        "algorithms": ["RS256"],
        "jwks_uri": "https://id.rotating.example/jwks",
        "claims": { "preset": "generic" }
    }]}}});
    let sources = BundleSources {
        schema: None,
        policies: vec![PolicySource {
            file: "policies/view.cedar".into(),
            tenant: None,
            source: r#"@id("anyone-views") permit(principal, action == Action::"view", resource);"#
                .into(),
        }],
        tenants: Some(("tenants.json".into(), tenants.to_string())),
        routes: None,
        entities: None,
        settings: None,
    };
    let bundle = sources
        .compile(&mut |path| Err(format!("no file {path}")))
        .unwrap();
    Engine::with_options(Arc::new(Bundle::load(bundle).unwrap()), options)
}

fn token(pem: &str, kid: &str) -> String {
    token_from(pem, kid, ISSUER)
}

fn token_from(pem: &str, kid: &str, issuer: &str) -> String {
    let header: Map<String, Value> =
        serde_json::from_value(json!({"alg": "RS256", "typ": "JWT", "kid": kid})).unwrap();
    let claims: Map<String, Value> = serde_json::from_value(json!({
        "iss": issuer, "aud": "api://techfin", "sub": "alice",
        "iat": NOW - 10, "exp": NOW + 600
    }))
    .unwrap();
    sign_with_pem(&header, &claims, Algorithm::RS256, pem).unwrap()
}

fn kid(jwks: &Value) -> String {
    jwks["keys"][0]["kid"].as_str().unwrap().to_owned()
}

fn request(token: &str) -> DecisionRequest {
    DecisionRequest {
        token: Some(token.to_owned()),
        action: "view".into(),
        resource: ResourceRef::new("Report", "q3"),
        ..Default::default()
    }
}

#[test]
fn remote_keys_are_required_then_used_and_replacing_them_forgets_cached_tokens() {
    let engine = engine();
    let (pem, jwks) = dev_key("acme-rs256");
    let old = token(&pem, &kid(&jwks));
    let before = engine.decide(&request(&old), NOW);
    assert_eq!(before.errors[0].code, "token_keys_unavailable");

    assert_eq!(engine.set_issuer_keys(ISSUER, &jwks).unwrap(), 1);
    assert!(engine.decide(&request(&old), NOW).is_allowed());
    assert_eq!(engine.cached_tokens(), 1);

    // Rotation: the old key is gone, and so is every token it verified.
    let (new_pem, new_jwks) = dev_key("auth0-rs256");
    engine.set_issuer_keys(ISSUER, &new_jwks).unwrap();
    assert_eq!(engine.cached_tokens(), 0);
    let after = engine.decide(&request(&old), NOW);
    assert_eq!(after.errors[0].code, "token_unknown_kid");
    // The audit record names the configured issuer, so a host knows whose keys to refetch...
    assert_eq!(after.audit_record().issuer, Some(ISSUER));
    // ...but never an issuer the bundle does not trust.
    let stranger = engine.decide(
        &request(&token_from(
            &new_pem,
            &kid(&new_jwks),
            "https://evil.example",
        )),
        NOW,
    );
    assert_eq!(stranger.errors[0].code, "token_issuer");
    assert_eq!(stranger.audit_record().issuer, None);
    assert!(
        engine
            .decide(&request(&token(&new_pem, &kid(&new_jwks))), NOW)
            .is_allowed()
    );
    assert!(
        engine
            .set_issuer_keys("https://other.example", &new_jwks)
            .is_err()
    );
}

#[test]
fn a_signature_checked_against_replaced_keys_is_not_trusted_or_cached() {
    let engine = engine();
    let (pem, jwks) = dev_key("acme-rs256");
    engine.set_issuer_keys(ISSUER, &jwks).unwrap();
    let old = token(&pem, &kid(&jwks));
    let TokenStep::NeedsSignature(pending) = engine.begin_token(&old, NOW).unwrap() else {
        panic!("not cached yet");
    };
    // The keys change while the host checks the signature (asynchronously) with the old key.
    let (_, new_jwks) = dev_key("auth0-rs256");
    engine.set_issuer_keys(ISSUER, &new_jwks).unwrap();
    let verdict = engine.finish_token(*pending, true, NOW);
    assert_eq!(verdict.unwrap_err(), TokenError::KeysChanged);
    assert_eq!(TokenError::KeysChanged.code(), "token_keys_changed");
    assert_eq!(
        engine.cached_tokens(),
        0,
        "nothing cached under the removed key"
    );
    // Starting over uses the current keys, which do not include the token's key.
    assert_eq!(
        engine.decide(&request(&old), NOW).errors[0].code,
        "token_unknown_kid"
    );

    // Without a key change in between, the same two steps verify and cache.
    let (new_pem, _) = dev_key("auth0-rs256");
    let fresh = token(&new_pem, &kid(&new_jwks));
    let TokenStep::NeedsSignature(pending) = engine.begin_token(&fresh, NOW).unwrap() else {
        panic!("not cached yet");
    };
    assert_eq!(
        engine.finish_token(*pending, true, NOW).unwrap().id,
        "alice"
    );
    assert_eq!(engine.cached_tokens(), 1);
    assert!(matches!(
        engine.begin_token(&fresh, NOW),
        Ok(TokenStep::Cached)
    ));
}

/// The default verifier, counting its calls.
#[derive(Default)]
struct Counting(AtomicUsize);

impl SignatureVerifier for Counting {
    fn verify(
        &self,
        alg: Algorithm,
        key: &VerificationKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        RustCryptoVerifier.verify(alg, key, message, signature)
    }
}

#[test]
fn a_forged_token_sent_again_costs_no_second_signature_check() {
    let counting = Arc::new(Counting::default());
    let engine = engine_with(EngineOptions::new(
        Arc::clone(&counting) as Arc<dyn SignatureVerifier>,
        portcullis_engine::DecisionIds::default(),
    ));
    let (_, jwks) = dev_key("acme-rs256");
    engine.set_issuer_keys(ISSUER, &jwks).unwrap();
    // Signed with another key under the issuer's `kid`.
    let (other_pem, _) = dev_key("auth0-rs256");
    let forged = token(&other_pem, &kid(&jwks));
    let audit = |decision: &portcullis_engine::Decision| {
        let mut record = serde_json::to_value(decision.audit_record()).unwrap();
        record.as_object_mut().unwrap().remove("decision_id");
        record
    };
    let first = engine.decide(&request(&forged), NOW);
    assert_eq!(first.errors[0].code, "token_signature");
    for _ in 0..2 {
        // Answered from memory, before any decoding, with the same record.
        let again = engine.decide(&request(&forged), NOW);
        assert_eq!(again.errors, first.errors);
        assert_eq!(audit(&again), audit(&first));
    }
    assert_eq!(
        counting.0.load(Ordering::SeqCst),
        1,
        "one check for three attempts"
    );
    assert_eq!(engine.cached_tokens(), 0);
    // A remembered rejection ends with the token's own expiry...
    let later = engine.decide(&request(&forged), NOW + 601 + 60);
    assert_eq!(later.errors[0].code, "token_expired");
    // ...and with the keys it was checked against.
    engine.set_issuer_keys(ISSUER, &jwks).unwrap();
    assert_eq!(
        engine.decide(&request(&forged), NOW).errors[0].code,
        "token_signature"
    );
    assert_eq!(counting.0.load(Ordering::SeqCst), 2);
    // A genuine token is unaffected.
    let (pem, _) = dev_key("acme-rs256");
    assert!(
        engine
            .decide(&request(&token(&pem, &kid(&jwks))), NOW)
            .is_allowed()
    );
}
