//! Where the bundle comes from, and noticing when it changes: a directory or compiled file
//! (polled by a fingerprint of names, sizes and modification times), or a URL (polled on the
//! engine's [`BundlePoll`] schedule: `If-None-Match`, no redirect, a whole GET again after a
//! refusal). A changed bundle is compiled and validated here, natively, off the request path;
//! only a valid one is ever handed on.

use super::{InstallError, http};
use crate::bundle_dir::{self, ReadError};
use crate::crypto::RingVerifier;
use portcullis_engine::{
    Bundle, BundleError, BundleEvent, BundlePoll, BundleTrust, MAX_BUNDLE_DOCUMENT,
};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    pub fn parse(text: &str) -> Result<Self, InsecureUrl> {
        if text.starts_with("https://") || text.starts_with("http://") {
            if !portcullis_engine::acceptable_key_url(text) {
                return Err(InsecureUrl(text.to_owned()));
            }
            Ok(Self::Url(text.to_owned()))
        } else {
            Ok(Self::Path(PathBuf::from(text)))
        }
    }
}

/// A bundle URL that is neither `https://` nor plain `http://` to a loopback host.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("bundle URL `{0}`: use https (plain http only to a loopback host)")]
pub struct InsecureUrl(pub String);

/// Why a poll serves no new bundle: the one in use stays.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The directory or file cannot be read, or its bundle is invalid.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The URL cannot be fetched (transport, status, redirect, size), as the engine's
    /// [`BundlePoll`] judged the answer.
    #[error("{0}")]
    Fetch(String),
    /// The fetched bundle does not load, or is not signed as required.
    #[error(transparent)]
    Invalid(#[from] BundleError),
    /// The bundle is valid but cannot be served here.
    #[error(transparent)]
    Install(#[from] InstallError),
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

/// What a poll found.
#[derive(Debug)]
pub enum Polled {
    /// Nothing new: not due, not modified, or the revision already in use.
    Unchanged,
    /// A new bundle was installed; its revision.
    Installed(String),
    /// The source could not be read, or its bundle was refused: the one in use stays.
    Refused(Refusal),
}

/// What is watched, and what was last seen of it.
#[derive(Debug)]
enum Watched {
    /// A directory or file, and the fingerprint last looked at, whether it loaded or was
    /// refused (a bad bundle is reported once, not on every poll).
    Path { path: PathBuf, seen: Option<String> },
    /// A URL, on the engine's schedule (ETag, retries, a full GET after a refusal or a reload).
    Url(BundlePoll),
}

/// Watches one [`BundleSource`].
#[derive(Debug)]
pub struct Watcher {
    watched: Watched,
    interval: Duration,
    started: Instant,
    agent: ureq::Agent,
    /// When set, only bundles signed with one of these keys are accepted.
    trust: Option<BundleTrust>,
}

impl Watcher {
    /// A watcher that has seen nothing yet, polling every `interval` (and, for a URL, retrying
    /// as often after a failure); with `trust`, it accepts signed bundles only.
    pub fn new(source: BundleSource, trust: Option<BundleTrust>, interval: Duration) -> Self {
        let every = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        let watched = match source {
            BundleSource::Url(url) => Watched::Url(BundlePoll::new(url, every, every)),
            BundleSource::Path(path) => Watched::Path { path, seen: None },
        };
        Self {
            watched,
            interval,
            started: Instant::now(),
            agent: http::agent(Duration::from_secs(10)),
            trust,
        }
    }

    /// How long until the next poll is due.
    pub fn wait(&self) -> Duration {
        match &self.watched {
            Watched::Url(poll) => poll.next_due().map_or(self.interval, |due| {
                let left = due.saturating_sub(elapsed_ms(self.started));
                Duration::from_millis(u64::try_from(left).unwrap_or(0))
            }),
            Watched::Path { .. } => self.interval,
        }
    }

    /// Look at the source if a poll is due (at once, for the whole bundle, with `force`), and
    /// hand a changed, valid bundle to `install`, which answers whether it is new (`false`:
    /// that revision is already in use) or why it cannot be used.
    pub fn poll(
        &mut self,
        force: bool,
        install: impl FnOnce(Fetched) -> Result<bool, InstallError>,
    ) -> Polled {
        let started = self.started;
        let json = match &mut self.watched {
            Watched::Path { path, seen } => {
                let marker = fingerprint(path);
                if !force && seen.as_ref() == Some(&marker) {
                    return Polled::Unchanged;
                }
                *seen = Some(marker);
                match bundle_dir::compile(path) {
                    Ok(compiled) => compiled.to_json(),
                    Err(e) => return Polled::Refused(e.into()),
                }
            }
            Watched::Url(poll) => {
                if force {
                    poll.reload(elapsed_ms(started));
                }
                let Some(fetch) = poll.due(elapsed_ms(started)) else {
                    return Polled::Unchanged;
                };
                let etag = fetch.if_none_match.as_deref().map(|e| ("if-none-match", e));
                let got = http::get(
                    &self.agent,
                    &fetch.url,
                    etag.as_slice(),
                    "etag",
                    MAX_BUNDLE_DOCUMENT,
                );
                let (event, body) = match got {
                    Ok(answer) => {
                        let now = elapsed_ms(started);
                        let event = poll.answer(
                            answer.status,
                            answer.header.as_deref(),
                            answer.body.len(),
                            now,
                        );
                        (event, answer.body)
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        (poll.failed(&reason, elapsed_ms(started)), Vec::new())
                    }
                };
                match event {
                    BundleEvent::Unchanged => return Polled::Unchanged,
                    BundleEvent::Failed(reason) => return Polled::Refused(Refusal::Fetch(reason)),
                    BundleEvent::Candidate => match String::from_utf8(body) {
                        Ok(json) => json,
                        Err(_) => {
                            poll.refused(elapsed_ms(started));
                            return Polled::Refused(Refusal::Fetch(
                                "the bundle is not UTF-8 text".into(),
                            ));
                        }
                    },
                }
            }
        };
        let outcome = self.validate(json).and_then(|fetched| {
            let revision = fetched.bundle.revision().to_owned();
            Ok(if install(fetched).map_err(Refusal::Install)? {
                Polled::Installed(revision)
            } else {
                Polled::Unchanged
            })
        });
        if let Watched::Url(poll) = &mut self.watched {
            match outcome {
                Ok(_) => poll.accepted(elapsed_ms(started)),
                Err(_) => poll.refused(elapsed_ms(started)),
            }
        }
        outcome.unwrap_or_else(Polled::Refused)
    }

    /// Load `json` and check its signature when signatures are required.
    fn validate(&self, json: String) -> Result<Fetched, Refusal> {
        let name = match &self.watched {
            Watched::Path { path, .. } => path.display().to_string(),
            Watched::Url(poll) => poll.url().to_owned(),
        };
        let bundle = Bundle::from_json_named(&json, &name)?;
        if let Some(trust) = &self.trust {
            trust.check(bundle.compiled(), &RingVerifier)?;
        }
        Ok(Fetched { json, bundle })
    }
}

/// Milliseconds since `started`: the watcher's clock for its URL schedule.
fn elapsed_ms(started: Instant) -> i64 {
    i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)
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
            assert!(err.to_string().contains("use https"), "{err}");
        }
        assert_eq!(
            BundleSource::parse("policies/techfin"),
            Ok(BundleSource::Path(PathBuf::from("policies/techfin")))
        );
    }
}
