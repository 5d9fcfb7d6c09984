//! Wycheproof JOSE vectors (C2SP/wycheproof `testvectors_v1/`) through [`verify_jws`] with the
//! default [`RustCryptoVerifier`].
//!
//! Every `invalid` vector must be rejected and every `valid` one accepted; `acceptable` ones are
//! printed with what we did. Vectors the engine deliberately treats otherwise (an algorithm it
//! does not implement, a key binding it enforces more strictly) are listed, with the reason, in
//! an exception list keyed by `tcId`. The test asserts that the list is *exactly* the set of
//! deviations: a new deviation fails, and so does an exception that no longer deviates (remove
//! it).

use portcullis_engine::{Algorithm, RustCryptoVerifier, verify_jws};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `json_web_signature_test.json` vectors the engine does not handle as Wycheproof expects, on
/// purpose.
const JWS_EXCEPTIONS: &[(u64, &str)] = &[];

/// `json_web_key_test.json` vectors the engine does not handle as Wycheproof expects, on purpose.
const JWK_EXCEPTIONS: &[(u64, &str)] = &[];

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
    let path = super::cedar_corpus::conformance_dir().join("wycheproof").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read `{}`: {e}", path.display()));
    let suite: Suite = serde_json::from_str(&text).unwrap_or_else(|e| panic!("`{}` is not a Wycheproof suite: {e}", path.display()));
    let count: usize = suite.test_groups.iter().map(|g| g.tests.len()).sum();
    assert_eq!(count, suite.number_of_tests, "`{name}`: numberOfTests does not match the vectors");
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
        return alg.as_str().and_then(Algorithm::from_name).into_iter().collect();
    }
    use Algorithm::{ES256, ES384, EdDSA, HS256, HS384, HS512, PS256, PS384, PS512, RS256, RS384, RS512};
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
    verify_jws(&text, jwks, allowed, &RustCryptoVerifier).map(drop).map_err(|e| e.code())
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
                if vector.flags.is_empty() { String::new() } else { format!(" {:?}", vector.flags) },
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
        assert_eq!(listed.len(), exceptions.len(), "{label}: a tcId is listed twice in the exceptions");
        for (tc_id, line) in &self.deviations {
            println!("  exception: {line}: {}", listed.get(tc_id).copied().unwrap_or("NOT LISTED"));
        }
        let unlisted: Vec<&String> = self.deviations.iter().filter(|(id, _)| !listed.contains_key(id)).map(|(_, d)| d).collect();
        let stale: Vec<u64> = listed.keys().copied().filter(|id| !self.deviations.contains_key(id)).collect();
        assert!(
            unlisted.is_empty() && stale.is_empty(),
            "{label}: deviations differ from the exception list\n  new deviations (fix the engine, or list them with a reason):\n    {}\n  \
             exceptions that no longer deviate (remove them): {stale:?}",
            unlisted.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n    ")
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
