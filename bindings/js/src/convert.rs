//! Conversions between the engine's values and what crosses into JavaScript.
//!
//! Values cross as JSON text (parsed on the other side by `JSON.parse`, which is faster than
//! walking JS objects field by field from Wasm), with the keys of the engine's own structs in
//! camelCase. Keys of user data (claim-mapped `attributes`, resource `attrs`, `context`) are
//! never renamed.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_engine::{
    Algorithm, BundleError, Curve, Decision, ErrorInfo, KeyCase, KeyMaterial, Principal, TokenError,
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use wasm_bindgen::JsValue;

/// `decision_id` → `decisionId`.
pub(crate) fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Rename the keys of one object (not of the objects inside it).
fn camel_keys(value: &mut Value) {
    if let Value::Object(map) = value
        && map.keys().any(|k| k.contains('_'))
    {
        let old = std::mem::take(map);
        *map = old.into_iter().map(|(k, v)| (camel(&k), v)).collect();
    }
}

/// One decision, as JSON text with camelCase keys (and `keysWanted` for the key fetcher).
pub(crate) fn decision(decision: &Decision) -> String {
    decision.to_json_as(KeyCase::Camel)
}

/// Several decisions, as a JSON array.
pub(crate) fn decisions(decisions: &[Decision]) -> String {
    let mut out = String::from("[");
    for (i, d) in decisions.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&decision(d));
    }
    out.push(']');
    out
}

/// A mapped principal: its own keys in camelCase; `attributes` (claim data) as they are.
pub(crate) fn principal(principal: &Principal) -> String {
    let mut value = serde_json::to_value(principal).unwrap_or(Value::Null);
    camel_keys(&mut value);
    value.to_string()
}

/// Serialise for the JS side, which turns it into a `PortcullisError`.
fn thrown(value: &impl Serialize) -> JsValue {
    JsValue::from_str(&serde_json::to_string(value).unwrap_or_default())
}

/// An engine error, thrown into JS.
pub(crate) fn error(info: &ErrorInfo) -> JsValue {
    thrown(info)
}

/// A token error, thrown into JS.
pub(crate) fn token_error(err: &TokenError) -> JsValue {
    error(&err.info())
}

/// A bundle load error with every problem, thrown into JS.
pub(crate) fn bundle_error(err: &BundleError) -> JsValue {
    let info = err.info();
    let problems: Vec<Value> = err
        .problems
        .iter()
        .map(|p| {
            let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
            camel_keys(&mut v);
            v
        })
        .collect();
    thrown(&json!({
        "code": info.code,
        "message": info.message,
        "help": info.help,
        "problems": problems,
    }))
}

/// A malformed argument from JS (not an engine error: the binding's own code).
pub(crate) fn invalid(code: &'static str, message: String) -> JsValue {
    error(&ErrorInfo {
        code,
        message,
        help: None,
    })
}

fn b64(bytes: &[u8]) -> Value {
    Value::String(URL_SAFE_NO_PAD.encode(bytes))
}

fn curve_name(curve: Curve) -> &'static str {
    match curve {
        Curve::P256 => "P-256",
        Curve::P384 => "P-384",
        Curve::Ed25519 => "Ed25519",
    }
}

/// The public JWK WebCrypto imports for `material` (HMAC: the secret as an `oct` key).
pub(crate) fn jwk(material: &KeyMaterial) -> String {
    let mut map = Map::new();
    match material {
        KeyMaterial::Rsa { n, e } => {
            map.insert("kty".into(), "RSA".into());
            map.insert("n".into(), b64(n));
            map.insert("e".into(), b64(e));
        }
        KeyMaterial::Ec { curve, x, y } => {
            map.insert("kty".into(), "EC".into());
            map.insert("crv".into(), curve_name(*curve).into());
            map.insert("x".into(), b64(x));
            map.insert("y".into(), b64(y));
        }
        KeyMaterial::Ed25519 { x } => {
            map.insert("kty".into(), "OKP".into());
            map.insert("crv".into(), "Ed25519".into());
            map.insert("x".into(), b64(x));
        }
        KeyMaterial::Hmac { secret } => {
            map.insert("kty".into(), "oct".into());
            map.insert("k".into(), b64(secret));
        }
    }
    Value::Object(map).to_string()
}

/// A name for (algorithm, key material), under which the JS side caches the imported
/// `CryptoKey`: a replaced key under the same `kid` gets a new name, never a stale key.
pub(crate) fn key_handle(alg: Algorithm, material: &KeyMaterial) -> String {
    let mut hash = Sha256::new();
    let mut part = |tag: &[u8], bytes: &[u8]| {
        hash.update(tag);
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    };
    part(b"alg", alg.name().as_bytes());
    match material {
        KeyMaterial::Rsa { n, e } => {
            part(b"rsa-n", n);
            part(b"rsa-e", e);
        }
        KeyMaterial::Ec { curve, x, y } => {
            part(b"ec", curve_name(*curve).as_bytes());
            part(b"x", x);
            part(b"y", y);
        }
        KeyMaterial::Ed25519 { x } => part(b"ed25519", x),
        KeyMaterial::Hmac { secret } => part(b"hmac", secret),
    }
    hash.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_keys() {
        assert_eq!(camel("decision_id"), "decisionId");
        assert_eq!(camel("ignored_claims"), "ignoredClaims");
        assert_eq!(camel("revision"), "revision");
    }

    #[test]
    fn user_keys_stay() {
        let mut v = json!({"auth_time": 1, "attributes": {"cost_center": "x"}});
        camel_keys(&mut v);
        assert_eq!(
            v,
            json!({"authTime": 1, "attributes": {"cost_center": "x"}})
        );
    }

    /// Every key of a serialised decision (decisions have no user-keyed maps), recursively.
    fn keys(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    out.push(k.clone());
                    keys(v, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }

    #[test]
    fn decision_keys_are_known() {
        use portcullis_engine::{
            Bundle, CompiledBundle, Engine, EngineOptions, PolicySource, ResourceRef, Settings,
            TrustedRequest,
        };
        let policies = vec![PolicySource {
            file: "p.cedar".into(),
            tenant: None,
            source: r#"@id("p") permit(principal, action, resource) when { resource.missing };"#
                .into(),
        }];
        let settings = Settings {
            validate_policies: false,
            ..Settings::default()
        };
        let bundle = Bundle::load(CompiledBundle::new(settings, None, policies)).unwrap();
        let options = EngineOptions::new(
            std::sync::Arc::new(crate::verifier::HostVerifier::default()),
            portcullis_engine::DecisionIds::Seed(7),
        );
        let engine = Engine::with_options(std::sync::Arc::new(bundle), options);
        let request = TrustedRequest {
            principal: ResourceRef::new("User", "a\"decision_id\":b"),
            action: "view".into(),
            resource: ResourceRef::new("Report", "q3"),
            ..Default::default()
        };
        let decision = engine.decide_trusted(&request, 0);
        assert!(
            !decision.errors.is_empty(),
            "an erroring policy fills every field"
        );
        let text = super::decision(&decision);
        let value: Value = serde_json::from_str(&text).unwrap();
        let mut all = Vec::new();
        keys(&value, &mut all);
        let snake: Vec<&String> = all.iter().filter(|k| k.contains('_')).collect();
        assert!(
            snake.is_empty(),
            "keys the binding does not rename yet: {snake:?}"
        );
        assert!(value["decisionId"].is_string());
        assert_eq!(value["principal"]["id"], "a\"decision_id\":b");
        let two = super::decisions(&[decision.clone(), decision]);
        assert_eq!(
            serde_json::from_str::<Value>(&two)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn handles_differ_by_algorithm_and_material() {
        let a = KeyMaterial::Hmac {
            secret: vec![1; 32],
        };
        let b = KeyMaterial::Hmac {
            secret: vec![2; 32],
        };
        assert_ne!(
            key_handle(Algorithm::HS256, &a),
            key_handle(Algorithm::HS384, &a)
        );
        assert_ne!(
            key_handle(Algorithm::HS256, &a),
            key_handle(Algorithm::HS256, &b)
        );
        assert_eq!(key_handle(Algorithm::HS256, &a).len(), 32);
    }

    #[test]
    fn jwk_shapes() {
        let v: Value = serde_json::from_str(&jwk(&KeyMaterial::Ec {
            curve: Curve::P256,
            x: vec![0; 32],
            y: vec![1; 32],
        }))
        .unwrap();
        assert_eq!(v["kty"], "EC");
        assert_eq!(v["crv"], "P-256");
    }
}
