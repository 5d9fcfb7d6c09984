//! A bundle polled from a URL: when to GET it, with which `If-None-Match`, and what an answer
//! means. Loading a candidate (and checking its signature) is the host's, with the engine's
//! `Bundle::from_json` and `BundleTrust::check`; it reports the outcome back.

use super::{ms, redirect_message};
use crate::error::sanitize;

/// Largest compiled bundle accepted, bytes.
pub const MAX_BUNDLE_DOCUMENT: usize = 32 << 20;

/// Longest ETag sent back (a longer one is dropped: the next poll fetches the whole bundle).
const MAX_ETAG: usize = 256;

/// A GET of the bundle: no redirect followed, the body read up to [`MAX_BUNDLE_DOCUMENT`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleFetch {
    /// The URL.
    pub url: String,
    /// `If-None-Match`: the ETag of the bundle in use, if the server sent a usable one.
    pub if_none_match: Option<String>,
}

/// What an answer means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleEvent {
    /// `304 Not Modified`: the bundle in use is current.
    Unchanged,
    /// A new document: load it and check its signature, then report
    /// [`BundlePoll::accepted`] or [`BundlePoll::refused`].
    Candidate,
    /// The fetch failed: the bundle in use stays, and it is retried after the retry delay.
    Failed(String),
}

/// The poll of one bundle URL (see the [module docs](super)).
#[derive(Clone, Debug)]
pub struct BundlePoll {
    url: String,
    interval: i64,
    retry: i64,
    due_at: i64,
    in_flight: bool,
    /// The next poll asks for the whole document (a reload was asked for).
    full: bool,
    /// The poll in flight sent `If-None-Match` (only then is a `304` an answer).
    conditional: bool,
    /// The ETag of the bundle in use.
    etag: Option<String>,
    /// The ETag of the candidate being loaded.
    pending: Option<String>,
}

impl BundlePoll {
    /// Poll `url` every `interval_ms`, `retry_ms` after a failure or a refused bundle; the
    /// first poll is due at once.
    pub fn new(url: impl Into<String>, interval_ms: u64, retry_ms: u64) -> Self {
        Self {
            url: url.into(),
            interval: ms(interval_ms),
            retry: ms(retry_ms),
            due_at: i64::MIN,
            in_flight: false,
            full: false,
            conditional: false,
            etag: None,
            pending: None,
        }
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// When the next poll is due; `None` while one is in flight.
    pub fn next_due(&self) -> Option<i64> {
        (!self.in_flight).then_some(self.due_at)
    }

    /// The GET due at `now`, if one is; in flight until its answer or failure is reported.
    pub fn due(&mut self, now: i64) -> Option<BundleFetch> {
        if self.in_flight || now < self.due_at {
            return None;
        }
        self.in_flight = true;
        let if_none_match = if std::mem::take(&mut self.full) {
            None
        } else {
            self.etag.clone()
        };
        self.conditional = if_none_match.is_some();
        Some(BundleFetch {
            url: self.url.clone(),
            if_none_match,
        })
    }

    /// Poll at once, for the whole document (an operator asked for a reload), unless a poll is
    /// in flight.
    pub fn reload(&mut self, now: i64) {
        if !self.in_flight {
            self.due_at = now;
            self.full = true;
        }
    }

    /// The answer to the poll in flight: its status and `ETag` header.
    pub fn answer(
        &mut self,
        status: u16,
        etag: Option<&str>,
        body_len: usize,
        now: i64,
    ) -> BundleEvent {
        if !self.in_flight {
            return BundleEvent::Failed("no bundle poll was in flight".to_owned());
        }
        match status {
            304 if self.conditional => {
                self.settle(now, self.interval);
                BundleEvent::Unchanged
            }
            200 if body_len > MAX_BUNDLE_DOCUMENT => {
                self.fail("the bundle is larger than 32 MiB", now)
            }
            200 => {
                self.pending = etag.filter(|e| usable_etag(e)).map(str::to_owned);
                BundleEvent::Candidate
            }
            300..400 => self.fail(
                &redirect_message(&format!("`{}`", sanitize(&self.url, 200)), status),
                now,
            ),
            _ => self.fail(
                &format!("`{}` answered HTTP {status}", sanitize(&self.url, 200)),
                now,
            ),
        }
    }

    /// The GET could not be performed (a network error, a timeout, a body over the limit).
    pub fn failed(&mut self, reason: &str, now: i64) -> BundleEvent {
        self.fail(reason, now)
    }

    fn fail(&mut self, reason: &str, now: i64) -> BundleEvent {
        self.pending = None;
        self.settle(now, self.retry);
        BundleEvent::Failed(reason.to_owned())
    }

    fn settle(&mut self, now: i64, after: i64) {
        self.in_flight = false;
        self.due_at = now.saturating_add(after);
    }

    /// The candidate loaded and is in use: its ETag goes in `If-None-Match` from now on.
    pub fn accepted(&mut self, now: i64) {
        self.etag = self.pending.take();
        self.settle(now, self.interval);
    }

    /// The candidate was refused (it does not load, or is not signed as required): the bundle
    /// in use stays; the next poll, after the retry delay, asks for the whole document again.
    pub fn refused(&mut self, now: i64) {
        self.pending = None;
        self.etag = None;
        self.settle(now, self.retry);
    }

    /// Another worker polls until `until` (hosts whose workers share one poll): not in
    /// flight here, and not due before then.
    pub fn postpone(&mut self, until: i64) {
        self.in_flight = false;
        self.due_at = self.due_at.max(until);
    }

    /// A bundle another worker fetched (with `etag`) is in use here from `now`.
    pub fn adopted(&mut self, etag: Option<&str>, now: i64) {
        self.etag = etag.filter(|e| usable_etag(e)).map(str::to_owned);
        if !self.in_flight {
            self.due_at = self.due_at.max(now.saturating_add(self.interval));
        }
    }
}

/// Whether an ETag can be sent back in `If-None-Match`: short, printable, no line break.
fn usable_etag(etag: &str) -> bool {
    !etag.is_empty()
        && etag.len() <= MAX_ETAG
        && etag.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://bundles.example/techfin.json";

    #[test]
    fn polls_with_the_etag_of_the_bundle_in_use() {
        let mut p = BundlePoll::new(URL, 30_000, 5_000);
        let first = p.due(0).unwrap();
        assert_eq!(first.if_none_match, None);
        assert_eq!(p.due(0), None, "one poll in flight");
        assert_eq!(p.answer(200, Some("\"r1\""), 10, 1), BundleEvent::Candidate);
        p.accepted(2);
        assert_eq!(p.next_due(), Some(30_002));
        assert_eq!(p.due(30_001), None);
        let second = p.due(30_002).unwrap();
        assert_eq!(second.if_none_match.as_deref(), Some("\"r1\""));
        assert_eq!(p.answer(304, None, 0, 30_003), BundleEvent::Unchanged);
        assert_eq!(p.next_due(), Some(60_003));
        // A reload asks for the whole document.
        p.reload(40_000);
        assert_eq!(p.due(40_000).unwrap().if_none_match, None);
        assert!(
            matches!(p.answer(304, None, 0, 40_000), BundleEvent::Failed(_)),
            "a 304 to an unconditional GET"
        );
    }

    #[test]
    fn failures_and_refusals_keep_the_bundle_in_use_and_retry() {
        let mut p = BundlePoll::new(URL, 30_000, 5_000);
        p.due(0);
        p.answer(200, Some("\"r1\""), 10, 0);
        p.accepted(0);
        for (status, expected) in [
            (302, "redirect (HTTP 302), which is not followed"),
            (500, "answered HTTP 500"),
        ] {
            let mut p = p.clone();
            p.due(30_000);
            match p.answer(status, None, 0, 30_000) {
                BundleEvent::Failed(reason) => assert!(reason.contains(expected), "{reason}"),
                other => panic!("{other:?}"),
            }
            assert_eq!(p.next_due(), Some(35_000));
            assert_eq!(
                p.due(35_000).unwrap().if_none_match.as_deref(),
                Some("\"r1\"")
            );
        }
        // A refused candidate: the next poll is a full one.
        p.due(30_000);
        assert_eq!(
            p.answer(200, Some("\"bad\""), 10, 30_000),
            BundleEvent::Candidate
        );
        p.refused(30_000);
        assert_eq!(p.due(35_000).unwrap().if_none_match, None);
        assert!(matches!(
            p.answer(200, None, MAX_BUNDLE_DOCUMENT + 1, 35_000),
            BundleEvent::Failed(_)
        ));
        // A 304 when no ETag was sent is not an answer to trust.
        p.due(40_000);
        assert!(matches!(
            p.answer(304, None, 0, 40_000),
            BundleEvent::Failed(_)
        ));
        assert!(
            matches!(p.answer(200, None, 1, 40_000), BundleEvent::Failed(_)),
            "nothing in flight"
        );
    }

    #[test]
    fn shared_polls_and_unusable_etags() {
        let mut p = BundlePoll::new(URL, 30_000, 5_000);
        p.due(0);
        p.postpone(10_000);
        assert_eq!(p.due(9_999), None);
        p.adopted(Some("\"r9\""), 9_000);
        assert_eq!(p.next_due(), Some(39_000));
        assert_eq!(
            p.due(39_000).unwrap().if_none_match.as_deref(),
            Some("\"r9\"")
        );
        for bad in ["", "a\r\nx-injected: 1", &"e".repeat(MAX_ETAG + 1)] {
            assert!(!usable_etag(bad), "{bad:?}");
        }
        assert!(usable_etag("W/\"r1\""));
    }
}
