//! How the workers share one key fetch and one bundle poll. Each Envoy worker runs its own VM
//! with its own engine and its own [`KeySchedule`](portcullis_engine::KeySchedule) and
//! [`BundlePoll`](portcullis_engine::BundlePoll) — the engine decides when and what to fetch —
//! and the VMs coordinate through Envoy's shared data, with these entries:
//!
//! - `portcullis/keys/<issuer>`: the last good JWK set, `<loaded at> <fresh until>\n<jwks>`
//!   (unix ms). Every VM loads it into its engine when its CAS version changes, and its
//!   schedule learns that nothing is due before `fresh until`.
//! - `portcullis/bundle/<url>`: the last accepted bundle, `<etag>\n<compiled bundle>`, built
//!   into a new engine by every VM when its CAS version changes (on a tick, never on the
//!   request path).
//! - `portcullis/lease/<issuer>` and `portcullis/bundle-lease/<url>`: `<unix ms>` until which
//!   one VM owns the fetch. A VM takes a lease with a compare-and-swap before fetching, so one
//!   fetch is in flight for all workers; the others postpone theirs to the lease's end. After
//!   a failure the lease is extended by the retry delay, which backs every worker off.

/// Shared-data key of an issuer's keys.
pub fn keys_key(issuer: &str) -> String {
    format!("portcullis/keys/{issuer}")
}

/// Shared-data key of an issuer's fetch lease.
pub fn keys_lease(issuer: &str) -> String {
    format!("portcullis/lease/{issuer}")
}

/// Shared-data key of the bundle fetched from `url`.
pub fn bundle_key(url: &str) -> String {
    format!("portcullis/bundle/{url}")
}

/// Shared-data key of the poll lease of `url`.
pub fn bundle_lease(url: &str) -> String {
    format!("portcullis/bundle-lease/{url}")
}

/// Keys as shared: when they were loaded and until when they are fresh (unix ms), the JWK set.
#[derive(Debug, PartialEq)]
pub struct SharedKeys {
    /// When the worker that fetched them loaded them.
    pub loaded_at: i64,
    /// When they are due to be fetched again.
    pub fresh_until: i64,
    /// The JWK set.
    pub jwks: serde_json::Value,
}

/// Encode a keys entry.
pub fn encode_keys(loaded_at: i64, fresh_until: i64, jwks: &[u8]) -> Vec<u8> {
    let mut out = format!("{loaded_at} {fresh_until}\n").into_bytes();
    out.extend_from_slice(jwks);
    out
}

/// Decode a keys entry; `None` for anything else.
pub fn decode_keys(entry: &[u8]) -> Option<SharedKeys> {
    let (times, jwks) = split(entry)?;
    let (loaded_at, fresh_until) = std::str::from_utf8(times).ok()?.split_once(' ')?;
    Some(SharedKeys {
        loaded_at: loaded_at.parse().ok()?,
        fresh_until: fresh_until.parse().ok()?,
        jwks: serde_json::from_slice(jwks).ok()?,
    })
}

/// Encode a bundle entry.
pub fn encode_bundle(etag: Option<&str>, bundle: &[u8]) -> Vec<u8> {
    let etag = etag.filter(|e| !e.contains('\n')).unwrap_or("");
    let mut out = Vec::with_capacity(etag.len() + 1 + bundle.len());
    out.extend_from_slice(etag.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(bundle);
    out
}

/// Decode a bundle entry into its ETag (if any) and the bundle's bytes.
pub fn decode_bundle(entry: &[u8]) -> Option<(Option<&str>, &[u8])> {
    let (etag, bundle) = split(entry)?;
    let etag = std::str::from_utf8(etag).ok()?;
    Some(((!etag.is_empty()).then_some(etag), bundle))
}

/// Decode a lease: the time until which it is held (0 when absent or unreadable).
pub fn decode_lease(entry: Option<&[u8]>) -> i64 {
    entry
        .and_then(|e| std::str::from_utf8(e).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// How long a fetch lease is held: twice the timeout and a second, so that a VM that never
/// hears back does not hold the others off for long.
pub fn lease_ms(timeout_ms: u64) -> i64 {
    i64::try_from(timeout_ms.saturating_mul(2).saturating_add(1000)).unwrap_or(i64::MAX)
}

/// `<header line>\n<body>`.
fn split(entry: &[u8]) -> Option<(&[u8], &[u8])> {
    let newline = entry.iter().position(|&b| b == b'\n')?;
    let (header, rest) = entry.split_at(newline);
    Some((header, rest.get(1..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_entries_round_trip_and_garbage_is_none() {
        let entry = encode_keys(1234, 5678, br#"{"keys":[]}"#);
        assert_eq!(
            decode_keys(&entry),
            Some(SharedKeys {
                loaded_at: 1234,
                fresh_until: 5678,
                jwks: serde_json::json!({"keys": []})
            })
        );
        for bad in [&b""[..], b"12", b"12\n{}", b"x 1\n{}", b"1 2\n{", b"\n{}"] {
            assert_eq!(decode_keys(bad), None, "{bad:?}");
        }
        assert_eq!(decode_lease(Some(b"99")), 99);
        assert_eq!(decode_lease(Some(b"\xff")), 0);
        assert_eq!(decode_lease(None), 0);
        assert_eq!(lease_ms(5000), 11_000);
    }

    #[test]
    fn bundle_entries_round_trip_and_garbage_is_none() {
        let entry = encode_bundle(Some("\"abc\""), b"{\"format\":1}");
        assert_eq!(
            decode_bundle(&entry),
            Some((Some("\"abc\""), &b"{\"format\":1}"[..]))
        );
        assert_eq!(
            decode_bundle(&encode_bundle(None, b"{}")),
            Some((None, &b"{}"[..]))
        );
        assert_eq!(
            decode_bundle(&encode_bundle(Some("a\nb"), b"{}")),
            Some((None, &b"{}"[..]))
        );
        assert_eq!(decode_bundle(b"no newline"), None);
        assert_eq!(decode_bundle(b"\xff\n{}"), None);
    }
}
