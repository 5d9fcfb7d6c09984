//! Wycheproof JOSE vectors (C2SP/wycheproof `testvectors_v1/`) through [`verify_jws`] with the
//! default [`RustCryptoVerifier`].
//!
//! Every `invalid` vector must be rejected and every `valid` one accepted; `acceptable` ones are
//! printed with what we did. Vectors the engine deliberately treats otherwise (an algorithm it
//! does not implement, a key binding it enforces more strictly) are listed, with the reason, in
//! an exception list keyed by `tcId`. The test asserts that the list is *exactly* the set of
//! deviations: a new deviation fails, and so does an exception that no longer deviates (remove
//! it).

use portcullis_engine::{
    Algorithm, Bundle, CompiledBundle, IssuerConfig, RustCryptoVerifier, Settings, TenantConfig,
    verify_jws,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `json_web_signature_test.json` vectors the engine does not handle as Wycheproof expects, on
/// purpose (or where the vector itself is wrong).
const JWS_EXCEPTIONS: &[(u64, &str)] = &[
    // Valid JWS with an empty payload segment (`header..signature`). The engine refuses an empty
    // payload before any decoding (`token_malformed`, "empty header or payload"): every payload
    // it exists to verify is a JWT claims object, and an empty segment is also how a detached
    // payload (RFC 7515 appendix F, RFC 7797) looks, which it does not support. Fails closed.
    (259, "empty payload refused (RS256)"),
    (264, "empty payload refused (RS384)"),
    (268, "empty payload refused (RS512)"),
    (272, "empty payload refused (PS256)"),
    (320, "empty payload refused (PS384)"),
    (325, "empty payload refused (PS512)"),
    // RFC 7520 figure 20: a PS384 JWS verified with a JWK whose `alg` is PS256. The engine binds
    // a key to its JWK `alg` (RFC 7517 section 4.4, RFC 8725 section 3.1) and never lets the token
    // header pick another algorithm for it.
    (346, "JWK `alg` PS256 does not allow a PS384 signature"),
    (
        350,
        "JWK `alg` PS256 does not allow a PS384 signature (key_ops variant)",
    ),
    // RFC 7520 figure 27: ES512 over P-521 (the JWK even says `ES521`, not a registered name).
    // The engine implements ES256 and ES384 only.
    (347, "ES512 / P-521 is not supported"),
    (351, "ES512 / P-521 is not supported (key_ops variant)"),
    // Upstream data error: these two `jws` strings are byte-identical to tcId 357 (`ValidMac`,
    // result valid), a canonical, correctly MACed compact JWS, yet are labelled invalid
    // (C2SP/wycheproof issue #236). One input cannot be both; we accept it, as for 357.
    (
        367,
        "upstream label error: identical to valid tcId 357 (C2SP/wycheproof#236)",
    ),
    (
        370,
        "upstream label error: identical to valid tcId 357 (C2SP/wycheproof#236)",
    ),
    // Labelled valid although a `?` is inserted into the header / payload segment. `?` is not
    // base64url, and RFC 7515 section 5.2 (steps 2 and 6) requires decoding "following the
    // restriction that no line breaks, whitespace, or other additional characters have been
    // used"; the MAC (the one of tcId 357) only matches if a decoder silently drops the character
    // and re-encodes. Strict decoding rejects it (`token_malformed`).
    (
        372,
        "`?` inside the header segment is not base64url (RFC 7515 section 5.2)",
    ),
    (
        373,
        "`?` inside the payload segment is not base64url (RFC 7515 section 5.2)",
    ),
];

/// `json_web_key_test.json` vectors the engine does not handle as Wycheproof expects, on purpose.
const JWK_EXCEPTIONS: &[(u64, &str)] = &[
    // An RS256 signature by a 2049-bit ROCA-vulnerable key (CVE-2017-15361). The engine checks
    // RSA size and exponent, not the ROCA fingerprint of the modulus: the flaw is in how the key
    // was generated, and the key is trusted because the operator configured it.
    (7, "ROCA fingerprinting of RSA moduli is not implemented"),
];

/// JWK members that hold private key material (RFC 7518 §6.2.2, §6.3.2). `k` is not among them:
/// for `oct` keys the secret *is* the verification key.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Suite {
    #[allow(dead_code)]
    header: Value,
    #[allow(dead_code)]
    notes: Value,
    #[allow(dead_code)]
    schema: String,
    number_of_tests: usize,
    test_groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Group {
    #[serde(rename = "type")]
    kind: String,
    #[allow(dead_code)]
    source: Value,
    comment: String,
    /// A JWK (signature file) or a JWK set (key file).
    #[serde(default)]
    public: Option<Value>,
    #[serde(default)]
    private: Option<Value>,
    tests: Vec<Vector>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Vector {
    tc_id: u64,
    comment: String,
    /// A compact JWS string, or an object for the JSON serialization.
    jws: Value,
    result: Verdict,
    flags: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Valid,
    Invalid,
    Acceptable,
}

fn load_suite(name: &str) -> Suite {
    let path = super::conformance_dir().join("wycheproof").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read `{}`: {e}", path.display()));
    let suite: Suite = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("`{}` is not a Wycheproof suite: {e}", path.display()));
    let count: usize = suite.test_groups.iter().map(|g| g.tests.len()).sum();
    assert_eq!(
        count, suite.number_of_tests,
        "`{name}`: numberOfTests does not match the vectors"
    );
    suite
}

/// The public part of a JWK: private members removed (`k` of `oct` keys stays).
fn public_jwk(jwk: &Value) -> Value {
    let mut jwk = jwk.clone();
    if let Value::Object(members) = &mut jwk {
        for member in PRIVATE_MEMBERS {
            members.remove(member);
        }
    }
    jwk
}

/// The algorithms to allow for a key: its `alg` when it has one (none if we do not know that
/// name), else every algorithm of its key type.
fn allowed_for(jwk: &Value) -> Vec<Algorithm> {
    if let Some(alg) = jwk.get("alg") {
        return alg
            .as_str()
            .and_then(Algorithm::from_name)
            .into_iter()
            .collect();
    }
    use Algorithm::{
        ES256, ES384, EdDSA, HS256, HS384, HS512, PS256, PS384, PS512, RS256, RS384, RS512,
    };
    match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        Some("EC") => vec![ES256, ES384],
        Some("OKP") => vec![EdDSA],
        Some("oct") => vec![HS256, HS384, HS512],
        _ => Vec::new(),
    }
}

/// What `verify_jws` did with one vector: accepted, or rejected with this error code.
type Outcome = Result<(), &'static str>;

fn verify(jws: &Value, jwks: &Value, allowed: &[Algorithm]) -> Outcome {
    // The JSON serialization is not a compact JWS; hand it over as text, as a host would.
    let text = match jws {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    verify_jws(&text, jwks, allowed, &RustCryptoVerifier)
        .map(drop)
        .map_err(|e| e.code())
}

/// Tallies of one suite.
#[derive(Default)]
struct Tally {
    valid_accepted: usize,
    invalid_rejected: usize,
    acceptable: Vec<String>,
    /// tcId → description of how we deviate.
    deviations: BTreeMap<u64, String>,
}

impl Tally {
    fn record(&mut self, vector: &Vector, group: &Group, outcome: Outcome) {
        let what = |outcome: Outcome| match outcome {
            Ok(()) => "accepted".to_owned(),
            Err(code) => format!("rejected ({code})"),
        };
        let describe = || {
            format!(
                "tcId {} [{} / {}{}] expected {:?}, {}",
                vector.tc_id,
                group.comment,
                vector.comment,
                if vector.flags.is_empty() {
                    String::new()
                } else {
                    format!(" {:?}", vector.flags)
                },
                vector.result,
                what(outcome)
            )
        };
        match (vector.result, outcome) {
            (Verdict::Valid, Ok(())) => self.valid_accepted += 1,
            (Verdict::Invalid, Err(_)) => self.invalid_rejected += 1,
            (Verdict::Acceptable, _) => self.acceptable.push(describe()),
            (Verdict::Valid, Err(_)) | (Verdict::Invalid, Ok(())) => {
                self.deviations.insert(vector.tc_id, describe());
            }
        }
    }

    /// Print the summary and check the deviations against `exceptions`.
    fn finish(&self, label: &str, exceptions: &[(u64, &str)]) {
        println!(
            "{label}: {} valid accepted, {} invalid rejected, {} exceptions, {} acceptable",
            self.valid_accepted,
            self.invalid_rejected,
            exceptions.len(),
            self.acceptable.len()
        );
        for line in &self.acceptable {
            println!("  acceptable: {line}");
        }
        let listed: BTreeMap<u64, &str> = exceptions.iter().copied().collect();
        assert_eq!(
            listed.len(),
            exceptions.len(),
            "{label}: a tcId is listed twice in the exceptions"
        );
        for (tc_id, line) in &self.deviations {
            println!(
                "  exception: {line}: {}",
                listed.get(tc_id).copied().unwrap_or("NOT LISTED")
            );
        }
        let unlisted: Vec<&String> = self
            .deviations
            .iter()
            .filter(|(id, _)| !listed.contains_key(id))
            .map(|(_, d)| d)
            .collect();
        let stale: Vec<u64> = listed
            .keys()
            .copied()
            .filter(|id| !self.deviations.contains_key(id))
            .collect();
        assert!(
            unlisted.is_empty() && stale.is_empty(),
            "{label}: deviations differ from the exception list\n  new deviations (fix the engine, or list them with a reason):\n    {}\n  \
             exceptions that no longer deviate (remove them): {stale:?}",
            unlisted
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n    ")
        );
    }
}

#[test]
fn wycheproof_json_web_signature() {
    let suite = load_suite("json_web_signature_test.json");
    let mut tally = Tally::default();
    for group in &suite.test_groups {
        assert_eq!(group.kind, "JsonWebSignature");
        let jwk = group
            .public
            .as_ref()
            .or(group.private.as_ref())
            .unwrap_or_else(|| panic!("group `{}` has no key", group.comment));
        let jwk = public_jwk(jwk);
        let allowed = allowed_for(&jwk);
        let jwks = json!({ "keys": [jwk] });
        for vector in &group.tests {
            tally.record(vector, group, verify(&vector.jws, &jwks, &allowed));
        }
    }
    // The justification of exceptions 367 and 370: the very same input as valid tcId 357.
    let jws_of = |id: u64| {
        suite
            .test_groups
            .iter()
            .flat_map(|g| &g.tests)
            .find(|t| t.tc_id == id)
            .map(|t| &t.jws)
    };
    for id in [367, 370] {
        assert_eq!(
            jws_of(id),
            jws_of(357),
            "tcId {id} is no longer identical to tcId 357"
        );
    }
    tally.finish("wycheproof jws", JWS_EXCEPTIONS);
}

/// The key-set vectors are meaningful for us: each group is a JWK *set* (duplicate `kid`s,
/// encryption keys, weak RSA and HMAC keys, mismatched curves) and each vector a JWS to verify
/// with it, which is exactly what [`verify_jws`] does through the engine's `KeySet` parsing.
/// The set is used as the verifier would hold it: the `public` set when there is one, else the
/// `private` one (the HMAC groups, whose secret is the verification key) with any private
/// members removed. The allowlist is every algorithm some key of the set allows.
#[test]
fn wycheproof_json_web_key() {
    let suite = load_suite("json_web_key_test.json");
    let mut tally = Tally::default();
    for group in &suite.test_groups {
        assert_eq!(group.kind, "JsonWebKey");
        let set = group
            .public
            .as_ref()
            .or(group.private.as_ref())
            .unwrap_or_else(|| panic!("group `{}` has no key set", group.comment));
        let keys: Vec<Value> = set
            .get("keys")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("group `{}`: not a key set", group.comment))
            .iter()
            .map(public_jwk)
            .collect();
        let mut allowed: Vec<Algorithm> = keys.iter().flat_map(allowed_for).collect();
        allowed.sort();
        allowed.dedup();
        let jwks = json!({ "keys": keys });
        for vector in &group.tests {
            tally.record(vector, group, verify(&vector.jws, &jwks, &allowed));
        }
    }
    tally.finish("wycheproof jwk", JWK_EXCEPTIONS);
}

/// JWK vector 1 (a set mixing an HS256 secret and an ES256 key): `verify_jws` refuses the mixed
/// allowlist, and so does the bundle path.
#[test]
fn mixed_key_set_is_refused_by_bundles() {
    let suite = load_suite("json_web_key_test.json");
    let group = suite
        .test_groups
        .iter()
        .find(|g| g.tests.iter().any(|t| t.tc_id == 1))
        .unwrap_or_else(|| panic!("json_web_key_test.json has no tcId 1"));
    let jwks = group
        .private
        .clone()
        .unwrap_or_else(|| panic!("tcId 1's group has no key set"));
    let issuer = IssuerConfig {
        issuer: "https://issuer.example".into(),
        audiences: vec!["api".into()],
        algorithms: vec!["HS256".into(), "ES256".into()],
        jwks: Some(jwks),
        ..IssuerConfig::default()
    };
    let mut compiled = CompiledBundle::new(Settings::default(), None, Vec::new());
    compiled.tenants.insert(
        "acme".into(),
        TenantConfig {
            display_name: None,
            issuers: vec![issuer],
        },
    );
    let err = Bundle::load(compiled)
        .err()
        .unwrap_or_else(|| panic!("a bundle accepted an issuer mixing HS256 and ES256"));
    assert!(
        err.to_string()
            .contains("mixes HMAC and public-key algorithms"),
        "{err}"
    );
}
