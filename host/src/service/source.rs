//! Where the bundle comes from, and noticing when it changes: a directory or compiled file
//! (polled by a fingerprint of names, sizes and modification times), or a URL (polled with
//! `If-None-Match`). A changed bundle is compiled and validated here, natively, off the
//! request path; only a valid one is ever handed on.

use crate::bundle_dir;
use crate::crypto::RingVerifier;
use portcullis_engine::{Bundle, BundleTrust, MAX_BUNDLE_DOCUMENT};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Deepest directory level looked at for changes.
const MAX_DEPTH: usize = 8;

/// A bundle location, as given to `--bundle`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleSource {
    /// An authoring directory or a compiled JSON file.
    Path(PathBuf),
    /// A compiled JSON bundle served over HTTP(S).
    Url(String),
}

impl BundleSource {
    /// `http://` and `https://` locations are URLs; anything else is a path. Policy is as
    /// sensitive as keys, so a URL follows the bundle's rule for key URLs: `https://`, or plain
    /// `http://` to a loopback host only.
    ///
    /// # Errors
    /// A plain `http://` URL to any other host.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("https://") || text.starts_with("http://") {
            if !portcullis_engine::acceptable_key_url(text) {
                return Err(format!(
                    "bundle URL `{text}`: use https (plain http only to a loopback host)"
                ));
            }
            Ok(Self::Url(text.to_owned()))
        } else {
            Ok(Self::Path(PathBuf::from(text)))
        }
    }
}

/// A validated bundle.
pub struct Fetched {
    /// The compiled bundle, JSON (what the component loads and `GET /v1/bundle` serves).
    pub json: String,
    /// The bundle, loaded natively (validation, and the list of remote issuers).
    pub bundle: Bundle,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("revision", &self.bundle.revision())
            .finish_non_exhaustive()
    }
}

/// Watches one [`BundleSource`].
#[derive(Debug)]
pub struct Watcher {
    source: BundleSource,
    /// What was last looked at (fingerprint or ETag), whether it loaded or was refused: a bad
    /// bundle is reported once, not on every poll.
    seen: Option<String>,
    agent: ureq::Agent,
    /// When set, only bundles signed with one of these keys are accepted.
    trust: Option<BundleTrust>,
}

impl Watcher {
    /// A watcher that has seen nothing yet; with `trust`, it accepts signed bundles only.
    pub fn new(source: BundleSource, trust: Option<BundleTrust>) -> Self {
        Self {
            source,
            seen: None,
            agent: http_agent(Duration::from_secs(10)),
            trust,
        }
    }

    /// Fetch the bundle if it changed since the last poll (or unconditionally with `force`).
    ///
    /// # Errors
    /// The source cannot be read, or the bundle is invalid (every problem, one per line).
    pub fn poll(&mut self, force: bool) -> Result<Option<Fetched>, String> {
        let (marker, json) = match &self.source {
            BundleSource::Path(path) => {
                let marker = fingerprint(path);
                if !force && self.seen.as_ref() == Some(&marker) {
                    return Ok(None);
                }
                self.seen = Some(marker);
                let compiled = bundle_dir::compile(path).map_err(|e| e.to_string())?;
                (None, compiled.to_json())
            }
            BundleSource::Url(url) => {
                let mut request = self.agent.get(url);
                if let (false, Some(etag)) = (force, &self.seen) {
                    request = request.header("If-None-Match", etag);
                }
                let mut response = request
                    .call()
                    .map_err(|e| format!("cannot fetch the bundle: {e}"))?;
                match response.status().as_u16() {
                    304 => return Ok(None),
                    200 => {}
                    status @ 300..400 => {
                        return Err(format!(
                            "fetching the bundle answered a redirect (HTTP {status}), which is not followed: configure the URL it points to"
                        ));
                    }
                    status => return Err(format!("fetching the bundle answered HTTP {status}")),
                }
                let etag = response
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let json = response
                    .body_mut()
                    .with_config()
                    .limit(MAX_BUNDLE_DOCUMENT as u64)
                    .read_to_string()
                    .map_err(|e| format!("cannot read the bundle: {e}"))?;
                (etag, json)
            }
        };
        if let Some(etag) = marker {
            self.seen = Some(etag);
        }
        let bundle = Bundle::from_json(&json).map_err(|e| e.to_string())?;
        if let Some(trust) = &self.trust {
            trust
                .check(bundle.compiled(), &RingVerifier)
                .map_err(|e| e.to_string())?;
        }
        Ok(Some(Fetched { json, bundle }))
    }
}

/// An HTTP client with overall timeouts that reports every status as a response and follows
/// no redirect: a redirect could lead past the URL rule (https, or http to loopback only) to
/// anywhere, and keys and policy must come from where they were configured to.
pub(crate) fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// Names, sizes and modification times of everything under `path`, hashed.
fn fingerprint(path: &Path) -> String {
    let mut entries = Vec::new();
    collect(path, 0, &mut entries);
    entries.sort();
    let mut hasher = DefaultHasher::new();
    entries.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn collect(
    path: &Path,
    depth: usize,
    out: &mut Vec<(PathBuf, u64, Option<std::time::SystemTime>)>,
) {
    let Ok(meta) = std::fs::metadata(path) else {
        out.push((path.to_path_buf(), u64::MAX, None));
        return;
    };
    if meta.is_dir() {
        if depth >= MAX_DEPTH {
            return;
        }
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                collect(&entry.path(), depth + 1, out);
            }
        }
    } else {
        out.push((path.to_path_buf(), meta.len(), meta.modified().ok()));
    }
}

#[cfg(test)]
mod tests {
    use super::BundleSource;
    use std::path::PathBuf;

    #[test]
    fn bundle_urls_are_https_or_plain_http_to_loopback() {
        for url in [
            "https://bundles.example/techfin.json",
            "http://127.0.0.1:8080/bundle.json",
            "http://localhost/bundle.json",
        ] {
            assert_eq!(BundleSource::parse(url), Ok(BundleSource::Url(url.into())));
        }
        for url in [
            "http://bundles.example/techfin.json",
            "http://127.0.0.1:80@evil.example/bundle.json",
        ] {
            let err = BundleSource::parse(url).unwrap_err();
            assert!(err.contains("use https"), "{err}");
        }
        assert_eq!(
            BundleSource::parse("policies/techfin"),
            Ok(BundleSource::Path(PathBuf::from("policies/techfin")))
        );
    }
}
