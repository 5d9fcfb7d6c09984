//! Remote issuers' keys: when to fetch, and how the workers share one fetch through Envoy's
//! shared data. Each Envoy worker runs its own VM with its own engine; the VMs coordinate with
//! two shared-data entries per issuer:
//!
//! - `portcullis/keys/<issuer>`: the last good JWK set, as `<fetched_at>\n<jwks json>`. Every
//!   VM loads it into its engine when its CAS version changes (checked on each tick).
//! - `portcullis/lease/<issuer>`: `<unix time>` until which one VM owns the fetch. A VM takes
//!   the lease with a compare-and-swap before fetching, so one fetch is in flight for all
//!   workers; after a failure the lease is extended by the retry delay, which backs every
//!   worker off. Failed fetches never touch the keys: the last good keys stay.
//!
//! A fetch is due when there are no keys yet, when they are older than the refresh period, or
//! when a token named an unknown `kid` and the keys are older than the cooldown.

use crate::config::KeysConfig;
use portcullis_engine::KeyUrl;

/// Largest discovery document or JWK set accepted, bytes.
pub const MAX_DOCUMENT: usize = 1 << 20;

/// Shared-data key of an issuer's keys.
pub fn keys_key(issuer: &str) -> String {
    format!("portcullis/keys/{issuer}")
}

/// Shared-data key of an issuer's fetch lease.
pub fn lease_key(issuer: &str) -> String {
    format!("portcullis/lease/{issuer}")
}

/// Encode a keys entry.
pub fn encode_keys(fetched_at: i64, jwks: &[u8]) -> Vec<u8> {
    let mut out = format!("{fetched_at}\n").into_bytes();
    out.extend_from_slice(jwks);
    out
}

/// Split a shared-data entry (`<header line>\n<body>`, keys' and bundles' alike) in two.
pub fn split_entry(entry: &[u8]) -> Option<(&[u8], &[u8])> {
    let newline = entry.iter().position(|&b| b == b'\n')?;
    let (header, rest) = entry.split_at(newline);
    Some((header, rest.get(1..)?))
}

/// Decode a keys entry into the fetch time and the JWK set.
pub fn decode_keys(entry: &[u8]) -> Option<(i64, serde_json::Value)> {
    let (time, jwks) = split_entry(entry)?;
    let fetched_at = std::str::from_utf8(time).ok()?.parse().ok()?;
    let jwks = serde_json::from_slice(jwks).ok()?;
    Some((fetched_at, jwks))
}

/// Decode a lease: the time until which it is held (0 when unreadable).
pub fn decode_lease(entry: Option<&[u8]>) -> i64 {
    entry
        .and_then(|e| std::str::from_utf8(e).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Whether an issuer's keys should be fetched now.
pub fn fetch_due(
    config: &KeysConfig,
    fetched_at: Option<i64>,
    unknown_kid: bool,
    now: i64,
) -> bool {
    let Some(fetched_at) = fetched_at else {
        return true;
    };
    let age = now.saturating_sub(fetched_at);
    age >= secs(config.refresh_seconds)
        || (unknown_kid && age >= secs(config.unknown_kid_cooldown_seconds))
}

/// Seconds as `i64`, saturating.
pub fn secs(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

/// The first URL to fetch for a key source.
pub fn first_url(source: &KeyUrl) -> &str {
    source.url()
}

/// The `jwks_uri` of `issuer`'s discovery document, if the document is that issuer's (its
/// `issuer` is the configured one, OpenID Connect Discovery 1.0 §4.3) and the URI one keys may
/// be fetched from.
pub fn jwks_uri(document: &[u8], issuer: &str) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(document).ok()?;
    if doc.get("issuer")?.as_str()? != issuer {
        return None;
    }
    let uri = doc.get("jwks_uri")?.as_str()?;
    portcullis_engine::acceptable_key_url(uri).then(|| uri.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config() -> KeysConfig {
        KeysConfig {
            clusters: BTreeMap::new(),
            refresh_seconds: 300,
            retry_seconds: 5,
            unknown_kid_cooldown_seconds: 30,
            timeout_ms: 1000,
        }
    }

    #[test]
    fn keys_entries_round_trip_and_garbage_is_none() {
        let entry = encode_keys(1234, br#"{"keys":[]}"#);
        assert_eq!(
            decode_keys(&entry),
            Some((1234, serde_json::json!({"keys": []})))
        );
        for bad in [&b""[..], b"12", b"x\n{}", b"12\n{", b"\n{}"] {
            assert_eq!(decode_keys(bad), None);
        }
        assert_eq!(decode_lease(Some(b"99")), 99);
        assert_eq!(decode_lease(Some(b"\xff")), 0);
        assert_eq!(decode_lease(None), 0);
    }

    #[test]
    fn fetches_are_due_when_missing_stale_or_after_an_unknown_kid_past_the_cooldown() {
        let c = config();
        assert!(fetch_due(&c, None, false, 0));
        assert!(!fetch_due(&c, Some(1000), false, 1299));
        assert!(fetch_due(&c, Some(1000), false, 1300));
        assert!(!fetch_due(&c, Some(1000), true, 1029));
        assert!(fetch_due(&c, Some(1000), true, 1030));
    }

    #[test]
    fn discovery_documents_yield_acceptable_jwks_uris_only() {
        let iss = "http://127.0.0.1:4000";
        assert_eq!(
            jwks_uri(
                br#"{"issuer":"http://127.0.0.1:4000","jwks_uri":"http://127.0.0.1:4000/jwks"}"#,
                iss
            )
            .as_deref(),
            Some("http://127.0.0.1:4000/jwks")
        );
        for bad in [
            &br#"{"issuer":"http://127.0.0.1:4000","jwks_uri":"http://evil.example/jwks"}"#[..],
            br#"{"issuer":"https://evil.example","jwks_uri":"http://127.0.0.1:4000/jwks"}"#,
            br#"{"jwks_uri":"http://127.0.0.1:4000/jwks"}"#,
            b"{}",
            b"[",
            br#"{"issuer":"http://127.0.0.1:4000","jwks_uri":1}"#,
        ] {
            assert_eq!(jwks_uri(bad, iss), None);
        }
    }
}
