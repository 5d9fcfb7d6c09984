//! A bundle fetched over HTTP (`bundle.remote`): how the workers share one poll through
//! Envoy's shared data, as they share key fetches ([`crate::keys`]). Two entries per URL:
//!
//! - `portcullis/bundle/<url>`: the last accepted bundle, as `<etag>\n<compiled bundle json>`.
//!   Every VM builds a new engine from it when its CAS version changes (checked on each tick,
//!   never on the request path).
//! - `portcullis/bundle-lease/<url>`: `<unix time>` before which no VM polls. A VM takes it with
//!   a compare-and-swap, so one fetch is in flight for all workers; after the fetch it is set to
//!   the next poll (or, after a failure or a refused bundle, to the retry time).
//!
//! The fetch sends `If-None-Match` with the entry's ETag: `304` means nothing changed. A `200`
//! is accepted only when it builds an engine (the revision matches the content, the policies
//! compile, every remote issuer has a cluster); a bundle that does not is logged, counted and
//! never stored, and the previous one keeps serving.

/// Largest bundle accepted, bytes.
pub const MAX_BUNDLE: usize = 16 << 20;

/// Longest ETag kept (a longer one is ignored: the next poll fetches the whole bundle).
const MAX_ETAG: usize = 256;

/// Shared-data key of the bundle fetched from `url`.
pub fn entry_key(url: &str) -> String {
    format!("portcullis/bundle/{url}")
}

/// Shared-data key of the poll lease of `url`.
pub fn lease_key(url: &str) -> String {
    format!("portcullis/bundle-lease/{url}")
}

/// The ETag of a response, if it is one that can be sent back in `If-None-Match`.
pub fn usable_etag(value: Option<&[u8]>) -> Option<&str> {
    let value = std::str::from_utf8(value?).ok()?;
    (!value.is_empty()
        && value.len() <= MAX_ETAG
        && value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()))
    .then_some(value)
}

/// Encode a bundle entry.
pub fn encode(etag: Option<&str>, bundle: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bundle.len() + MAX_ETAG + 1);
    out.extend_from_slice(etag.unwrap_or("").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(bundle);
    out
}

/// Decode a bundle entry into its ETag (if any) and the bundle's bytes.
pub fn decode(entry: &[u8]) -> Option<(Option<&str>, &[u8])> {
    let (etag, bundle) = crate::keys::split_entry(entry)?;
    let etag = if etag.is_empty() {
        None
    } else {
        Some(usable_etag(Some(etag))?)
    };
    Some((etag, bundle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_garbage_is_none() {
        let entry = encode(Some("\"abc\""), b"{\"format\":1}");
        assert_eq!(
            decode(&entry),
            Some((Some("\"abc\""), &b"{\"format\":1}"[..]))
        );
        let entry = encode(None, b"{}");
        assert_eq!(decode(&entry), Some((None, &b"{}"[..])));
        assert_eq!(decode(b"no newline"), None);
        assert_eq!(decode(b"\x01bad\n{}"), None);
    }

    #[test]
    fn only_printable_short_etags_are_sent_back() {
        assert_eq!(usable_etag(Some(b"W/\"r1\"")), Some("W/\"r1\""));
        assert_eq!(usable_etag(Some(b"")), None);
        assert_eq!(usable_etag(Some(b"a\r\nx-injected: 1")), None);
        assert_eq!(usable_etag(Some(b"\xff")), None);
        assert_eq!(usable_etag(Some("e".repeat(MAX_ETAG + 1).as_bytes())), None);
        assert_eq!(usable_etag(None), None);
    }
}
