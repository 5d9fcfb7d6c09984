//! The keys of remote issuers: when each is fetched, from where, and what an answer means.

use super::{acceptable_after, ms, redirect_message};
use crate::bundle::KeyUrl;
use crate::error::sanitize;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Largest discovery document or JWK set accepted, bytes.
pub const MAX_KEY_DOCUMENT: usize = 1 << 20;

/// How long fetched keys are kept, and how soon an IdP is asked again, in milliseconds. The
/// JSON form (in the Envoy filter's `keys`) is in seconds: `min_age_seconds`,
/// `max_age_seconds`, `default_age_seconds`, `retry_seconds`, `unknown_kid_cooldown_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "PolicySeconds")]
#[non_exhaustive]
pub struct RefreshPolicy {
    /// Keys are kept at least this long, whatever `Cache-Control` says (60 s).
    pub min_age: u64,
    /// And at most this long (24 h).
    pub max_age: u64,
    /// When the IdP sends no `max-age` (5 min).
    pub default_age: u64,
    /// After a failed fetch, wait this long before trying again; the last good keys stay (10 s).
    pub retry: u64,
    /// A decision lacking an issuer's keys brings its fetch forward at most once per this
    /// period (30 s): an IdP that rotated is asked at once, a stream of made-up `kid`s costs it
    /// one fetch per period.
    pub unknown_kid_cooldown: u64,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            min_age: 60_000,
            max_age: 24 * 3_600_000,
            default_age: 300_000,
            retry: 10_000,
            unknown_kid_cooldown: 30_000,
        }
    }
}

/// [`RefreshPolicy`] as configured, in seconds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PolicySeconds {
    min_age_seconds: u64,
    max_age_seconds: u64,
    default_age_seconds: u64,
    retry_seconds: u64,
    unknown_kid_cooldown_seconds: u64,
}

impl Default for PolicySeconds {
    fn default() -> Self {
        let p = RefreshPolicy::default();
        Self {
            min_age_seconds: p.min_age / 1000,
            max_age_seconds: p.max_age / 1000,
            default_age_seconds: p.default_age / 1000,
            retry_seconds: p.retry / 1000,
            unknown_kid_cooldown_seconds: p.unknown_kid_cooldown / 1000,
        }
    }
}

impl From<PolicySeconds> for RefreshPolicy {
    fn from(s: PolicySeconds) -> Self {
        let ms = |seconds: u64| seconds.saturating_mul(1000);
        Self::default()
            .with_ages(
                ms(s.min_age_seconds),
                ms(s.max_age_seconds),
                ms(s.default_age_seconds),
            )
            .with_retry(ms(s.retry_seconds), ms(s.unknown_kid_cooldown_seconds))
    }
}

impl RefreshPolicy {
    /// Set the bounds and the default age (milliseconds); `max` is raised to `min`, `default`
    /// brought within them.
    #[must_use]
    pub fn with_ages(mut self, min: u64, max: u64, default: u64) -> Self {
        self.min_age = min;
        self.max_age = max.max(min);
        self.default_age = default.clamp(min, self.max_age);
        self
    }

    /// Set the retry delay and the unknown-`kid` cooldown (milliseconds).
    #[must_use]
    pub fn with_retry(mut self, retry: u64, unknown_kid_cooldown: u64) -> Self {
        self.retry = retry;
        self.unknown_kid_cooldown = unknown_kid_cooldown;
        self
    }

    /// How long keys answered with `cache_control` are kept.
    fn age(&self, cache_control: Option<&str>) -> u64 {
        cache_control
            .and_then(parse_max_age)
            .unwrap_or(self.default_age)
            .clamp(self.min_age, self.max_age)
    }
}

/// Which document a fetch is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchStage {
    /// The OIDC discovery document (its `jwks_uri` names the keys).
    Discovery,
    /// The JWK set.
    Jwks,
}

/// One GET the host performs: `Accept: application/json`, no redirect followed, the body read
/// up to [`MAX_KEY_DOCUMENT`] bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFetch {
    /// The issuer the keys are for.
    pub issuer: String,
    /// The URL.
    pub url: String,
    /// What the document is.
    pub stage: FetchStage,
}

/// What came back from a GET.
#[derive(Clone, Copy, Debug)]
pub struct FetchAnswer<'a> {
    /// The HTTP status.
    pub status: u16,
    /// The `Cache-Control` header, if any.
    pub cache_control: Option<&'a str>,
    /// The body. A host that stopped reading past [`MAX_KEY_DOCUMENT`] reports
    /// [`KeySchedule::failed`] instead.
    pub body: &'a [u8],
}

/// What an answer means.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyEvent {
    /// GET this next (the JWK set a discovery document named).
    Fetch(KeyFetch),
    /// The issuer's new JWK set was loaded (by the `load` given to [`KeySchedule::answer`]).
    Keys {
        /// The issuer.
        issuer: String,
        /// How many usable keys it holds (what `load` said).
        keys: usize,
        /// When the keys are due to be fetched again (for hosts that share keys between
        /// workers: [`KeySchedule::loaded_elsewhere`]).
        fresh_until: i64,
    },
    /// The fetch failed: the last good keys stay, and it is retried after the retry delay.
    Failed {
        /// The issuer.
        issuer: String,
        /// Why, for the log (these are public documents: nothing secret).
        reason: String,
    },
}

#[derive(Clone, Debug)]
struct IssuerState {
    source: KeyUrl,
    /// The `jwks_uri` a discovery document named, until a fetch from it fails.
    resolved: Option<String>,
    loaded_at: Option<i64>,
    due_at: i64,
    /// When a decision last brought the fetch forward.
    early_at: Option<i64>,
    in_flight: Option<KeyFetch>,
    last_error: Option<String>,
}

/// One issuer's keys as the schedule sees them, for readiness probes and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerKeyStatus {
    /// The issuer.
    pub issuer: String,
    /// When its keys were last loaded, if ever.
    pub loaded_at: Option<i64>,
    /// When its next fetch is due.
    pub due_at: i64,
    /// Why the last fetch failed, when it did.
    pub last_error: Option<String>,
}

/// The fetch schedule of a bundle's remote issuers (see the [module docs](super)).
#[derive(Clone, Debug, Default)]
pub struct KeySchedule {
    policy: RefreshPolicy,
    issuers: BTreeMap<String, IssuerState>,
}

impl KeySchedule {
    /// An empty schedule; [`KeySchedule::follow`] gives it issuers.
    pub fn new(policy: RefreshPolicy) -> Self {
        Self {
            policy,
            issuers: BTreeMap::new(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> RefreshPolicy {
        self.policy
    }

    /// Follow a bundle's remote issuers (`Bundle::remote_issuers`): an issuer that keeps its
    /// URL keeps its state (the host keeps its keys in the new engine); a new one is due at
    /// once; a gone one is forgotten, and the answer to its fetch in flight ignored.
    pub fn follow(&mut self, issuers: Vec<(String, KeyUrl)>) {
        let mut old = std::mem::take(&mut self.issuers);
        for (issuer, source) in issuers {
            let state = match old.remove(&issuer) {
                Some(state) if state.source == source => state,
                _ => IssuerState {
                    source,
                    resolved: None,
                    loaded_at: None,
                    due_at: i64::MIN,
                    early_at: None,
                    in_flight: None,
                    last_error: None,
                },
            };
            self.issuers.insert(issuer, state);
        }
    }

    /// Every issuer, by name.
    pub fn status(&self) -> Vec<IssuerKeyStatus> {
        self.issuers
            .iter()
            .map(|(issuer, s)| IssuerKeyStatus {
                issuer: issuer.clone(),
                loaded_at: s.loaded_at,
                due_at: s.due_at,
                last_error: s.last_error.clone(),
            })
            .collect()
    }

    /// Whether every issuer has had keys loaded.
    pub fn all_loaded(&self) -> bool {
        self.issuers.values().all(|s| s.loaded_at.is_some())
    }

    /// When the next fetch is due (a host may sleep until then, or until a decision wants
    /// keys); `None` when nothing is waiting.
    pub fn next_due(&self) -> Option<i64> {
        self.issuers
            .values()
            .filter(|s| s.in_flight.is_none())
            .map(|s| s.due_at)
            .min()
    }

    /// The GETs due at `now`, each in flight until its answer or failure is reported.
    pub fn due(&mut self, now: i64) -> Vec<KeyFetch> {
        let mut out = Vec::new();
        for (issuer, state) in &mut self.issuers {
            if state.in_flight.is_some() || now < state.due_at {
                continue;
            }
            let (url, stage) = match (&state.source, &state.resolved) {
                (KeyUrl::JwksUri(url), _) | (KeyUrl::Discovery(_), Some(url)) => {
                    (url.clone(), FetchStage::Jwks)
                }
                (KeyUrl::Discovery(url), None) => (url.clone(), FetchStage::Discovery),
            };
            let fetch = KeyFetch {
                issuer: issuer.clone(),
                url,
                stage,
            };
            state.in_flight = Some(fetch.clone());
            out.push(fetch);
        }
        out
    }

    /// Make every issuer's fetch due at `now` (an operator or an application asked for fresh
    /// keys), except those in flight.
    pub fn expedite(&mut self, now: i64) {
        for state in self.issuers.values_mut() {
            if state.in_flight.is_none() {
                state.due_at = state.due_at.min(now);
            }
        }
    }

    /// A decision lacked `issuer`'s keys ([`crate::Decision::keys_wanted`]): when it has keys
    /// (the token names a `kid` they lack: the IdP may have rotated), bring its fetch forward,
    /// unless one is in flight or a fetch was brought forward within the cooldown. An issuer
    /// without keys yet is fetched on its own schedule (at once, then after each retry delay).
    /// Whether a fetch is now due.
    pub fn wanted(&mut self, issuer: &str, now: i64) -> bool {
        let cooldown = ms(self.policy.unknown_kid_cooldown);
        let Some(state) = self.issuers.get_mut(issuer) else {
            return false;
        };
        if state.in_flight.is_some() {
            return false;
        }
        if now >= state.due_at {
            return true;
        }
        if state.loaded_at.is_none()
            || state
                .early_at
                .is_some_and(|t| now.saturating_sub(t) < cooldown)
        {
            return false;
        }
        state.early_at = Some(now);
        state.due_at = now;
        true
    }

    /// The answer to `fetch` at `now`. A JWK set is handed to `load` (the host's
    /// `Engine::set_issuer_keys`, which answers the number of usable keys, or why it refused
    /// them); only keys it accepts count as loaded. `None` when the fetch is no longer the one
    /// in flight (its issuer was dropped or changed by [`KeySchedule::follow`]).
    pub fn answer(
        &mut self,
        fetch: &KeyFetch,
        answer: FetchAnswer<'_>,
        now: i64,
        load: impl FnOnce(&str, &Value) -> Result<usize, String>,
    ) -> Option<KeyEvent> {
        let state = self.issuers.get_mut(&fetch.issuer)?;
        if state.in_flight.as_ref() != Some(fetch) {
            return None;
        }
        let url = sanitize(&fetch.url, 200);
        let document = if (300..400).contains(&answer.status) {
            Err(redirect_message(&format!("`{url}`"), answer.status))
        } else if answer.status != 200 {
            Err(format!("`{url}` answered HTTP {}", answer.status))
        } else if answer.body.len() > MAX_KEY_DOCUMENT {
            Err(format!("`{url}` is larger than 1 MiB"))
        } else {
            serde_json::from_slice::<Value>(answer.body).map_err(|_| format!("`{url}` is not JSON"))
        };
        let event = match (document, fetch.stage) {
            (Err(reason), _) => Err(reason),
            (Ok(document), FetchStage::Discovery) => discovered(fetch, &document).map(|next| {
                state.resolved = Some(next.url.clone());
                state.in_flight = Some(next.clone());
                KeyEvent::Fetch(next)
            }),
            (Ok(jwks), FetchStage::Jwks) => load(&fetch.issuer, &jwks).map(|keys| {
                let fresh_until = now.saturating_add(ms(self.policy.age(answer.cache_control)));
                state.in_flight = None;
                state.loaded_at = Some(now);
                state.due_at = fresh_until;
                state.last_error = None;
                KeyEvent::Keys {
                    issuer: fetch.issuer.clone(),
                    keys,
                    fresh_until,
                }
            }),
        };
        Some(event.unwrap_or_else(|reason| {
            let retry = self.policy.retry;
            fail(state, fetch, &reason, now, retry);
            KeyEvent::Failed {
                issuer: fetch.issuer.clone(),
                reason,
            }
        }))
    }

    /// `fetch` could not be performed (a network error, a timeout, a body over
    /// [`MAX_KEY_DOCUMENT`]): the last good keys stay, and it is retried after the retry delay.
    pub fn failed(&mut self, fetch: &KeyFetch, reason: &str, now: i64) {
        let retry = self.policy.retry;
        if let Some(state) = self.issuers.get_mut(&fetch.issuer) {
            fail(state, fetch, reason, now, retry);
        }
    }

    /// Another worker holds `fetch` until `until` (hosts whose workers share one fetch): not
    /// in flight here, and not due before then.
    pub fn postpone(&mut self, fetch: &KeyFetch, until: i64) {
        if let Some(state) = self.issuers.get_mut(&fetch.issuer)
            && state.in_flight.as_ref() == Some(fetch)
        {
            state.in_flight = None;
            state.due_at = state.due_at.max(until);
        }
    }

    /// `issuer`'s keys were loaded by another worker at `loaded_at`, fresh until
    /// `fresh_until` (its [`KeyEvent::Keys`]): nothing is due here before then.
    pub fn loaded_elsewhere(&mut self, issuer: &str, loaded_at: i64, fresh_until: i64) {
        if let Some(state) = self.issuers.get_mut(issuer)
            && state.in_flight.is_none()
            && state.loaded_at.is_none_or(|t| t < loaded_at)
        {
            state.loaded_at = Some(loaded_at);
            state.due_at = fresh_until;
            state.last_error = None;
        }
    }
}

fn fail(state: &mut IssuerState, fetch: &KeyFetch, reason: &str, now: i64, retry: u64) {
    if state.in_flight.as_ref() != Some(fetch) {
        return;
    }
    state.in_flight = None;
    state.due_at = now.saturating_add(ms(retry));
    state.last_error = Some(reason.to_owned());
    // Keys that cannot be had where discovery pointed: ask discovery again next time.
    state.resolved = None;
}

/// The JWK set GET a discovery document leads to.
fn discovered(fetch: &KeyFetch, document: &Value) -> Result<KeyFetch, String> {
    let url = sanitize(&fetch.url, 200);
    if document.get("issuer").and_then(Value::as_str) != Some(fetch.issuer.as_str()) {
        return Err(format!(
            "the discovery document at `{url}` is not that of issuer `{}` (its `issuer` differs)",
            sanitize(&fetch.issuer, 200)
        ));
    }
    match document.get("jwks_uri").and_then(Value::as_str) {
        None => Err(format!(
            "the discovery document at `{url}` has no `jwks_uri`"
        )),
        Some(uri) if !acceptable_after(uri, &fetch.url) => Err(format!(
            "the discovery document at `{url}` names a `jwks_uri` that is neither https nor loopback, or leaves https"
        )),
        Some(uri) => Ok(KeyFetch {
            issuer: fetch.issuer.clone(),
            url: uri.to_owned(),
            stage: FetchStage::Jwks,
        }),
    }
}

/// `max-age` of a `Cache-Control` value, in milliseconds; `no-store` and `no-cache` mean zero
/// (the lower bound applies).
fn parse_max_age(header: &str) -> Option<u64> {
    let mut age = None;
    for directive in header.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(0);
        }
        if let Some(value) = lower.strip_prefix("max-age=") {
            age = value
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(|s| s.saturating_mul(1000));
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://idp.example";

    fn discovery() -> Vec<(String, KeyUrl)> {
        vec![(
            ISS.to_owned(),
            KeyUrl::Discovery(format!("{ISS}/.well-known/openid-configuration")),
        )]
    }

    /// Keys as the engine loads them: one per entry of `keys`, none refused.
    fn load(_: &str, jwks: &Value) -> Result<usize, String> {
        Ok(jwks
            .get("keys")
            .and_then(Value::as_array)
            .map_or(0, Vec::len))
    }

    fn ok<'a>(body: &'a str, cache_control: Option<&'a str>) -> FetchAnswer<'a> {
        FetchAnswer {
            status: 200,
            cache_control,
            body: body.as_bytes(),
        }
    }

    fn failed_reason(event: Option<KeyEvent>) -> String {
        match event {
            Some(KeyEvent::Failed { reason, .. }) => reason,
            other => panic!("not a failure: {other:?}"),
        }
    }

    /// Discovery, then the JWK set: returns the JWK fetch.
    fn discover(schedule: &mut KeySchedule, now: i64) -> KeyFetch {
        let [first] = <[KeyFetch; 1]>::try_from(schedule.due(now)).unwrap();
        assert_eq!(first.stage, FetchStage::Discovery);
        let doc = json!({"issuer": ISS, "jwks_uri": format!("{ISS}/keys")}).to_string();
        match schedule.answer(&first, ok(&doc, None), now, load) {
            Some(KeyEvent::Fetch(next)) => next,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn discovery_then_keys_kept_for_max_age_within_bounds() {
        let mut s = KeySchedule::new(RefreshPolicy::default());
        s.follow(discovery());
        assert!(!s.all_loaded());
        let jwks = discover(&mut s, 0);
        assert_eq!(jwks.url, format!("{ISS}/keys"));
        assert!(s.due(0).is_empty(), "one fetch in flight");
        let event = s.answer(
            &jwks,
            ok(r#"{"keys":[{}]}"#, Some("public, max-age=120")),
            5,
            load,
        );
        assert_eq!(
            event,
            Some(KeyEvent::Keys {
                issuer: ISS.into(),
                keys: 1,
                fresh_until: 120_005
            })
        );
        assert!(s.all_loaded());
        assert_eq!(s.next_due(), Some(120_005));
        assert!(s.due(120_004).is_empty());
        // Due again: straight to the JWK set discovery named.
        let again = s.due(120_005);
        assert_eq!(again, vec![jwks.clone()]);
        // Below the lower bound, above the upper, absent: clamped, or the default.
        for (cache, age) in [
            (Some("max-age=1"), 60_000),
            (Some("max-age=999999999"), 86_400_000),
            (Some("no-store"), 60_000),
            (None, 300_000),
        ] {
            let mut s = KeySchedule::new(RefreshPolicy::default());
            s.follow(discovery());
            let jwks = discover(&mut s, 0);
            s.answer(&jwks, ok("{}", cache), 0, load);
            assert_eq!(s.next_due(), Some(age), "{cache:?}");
        }
    }

    #[test]
    fn discovery_documents_must_be_the_issuers_and_point_at_acceptable_urls() {
        for (doc, expected) in [
            (
                json!({"issuer": "https://evil.example", "jwks_uri": format!("{ISS}/keys")}),
                "is not that of issuer",
            ),
            (json!({"issuer": ISS}), "has no `jwks_uri`"),
            (
                json!({"issuer": ISS, "jwks_uri": "http://evil.example/keys"}),
                "neither https nor loopback",
            ),
            // Loopback is acceptable on its own, but not after https.
            (
                json!({"issuer": ISS, "jwks_uri": "http://127.0.0.1/keys"}),
                "leaves https",
            ),
            (json!({"issuer": ISS, "jwks_uri": 7}), "has no `jwks_uri`"),
        ] {
            let mut s = KeySchedule::new(RefreshPolicy::default());
            s.follow(discovery());
            let [first] = <[KeyFetch; 1]>::try_from(s.due(0)).unwrap();
            let reason = failed_reason(s.answer(&first, ok(&doc.to_string(), None), 0, load));
            assert!(reason.contains(expected), "{reason}");
            assert_eq!(s.next_due(), Some(10_000), "retried after the retry delay");
            assert_eq!(s.status()[0].last_error.as_deref(), Some(reason.as_str()));
        }
    }

    #[test]
    fn failures_keep_keys_retry_later_and_go_back_through_discovery() {
        let mut s = KeySchedule::new(RefreshPolicy::default());
        s.follow(discovery());
        let jwks = discover(&mut s, 0);
        s.answer(&jwks, ok("{}", Some("max-age=60")), 0, load);
        let [again] = <[KeyFetch; 1]>::try_from(s.due(60_000)).unwrap();
        for (answer, expected) in [
            (
                FetchAnswer {
                    status: 302,
                    cache_control: None,
                    body: b"",
                },
                "redirect (HTTP 302), which is not followed",
            ),
            (
                FetchAnswer {
                    status: 502,
                    cache_control: None,
                    body: b"down",
                },
                "answered HTTP 502",
            ),
            (ok("<html>", None), "is not JSON"),
        ] {
            let mut s = s.clone();
            let reason = failed_reason(s.answer(&again, answer, 60_000, load));
            assert!(reason.contains(expected), "{reason}");
            assert!(s.all_loaded(), "the last good keys stay");
            let [retry] = <[KeyFetch; 1]>::try_from(s.due(70_000)).unwrap();
            assert_eq!(retry.stage, FetchStage::Discovery);
        }
        // Keys the engine refuses are not loaded.
        {
            let mut s = s.clone();
            let refuse = |_: &str, _: &Value| Err("no usable key".to_owned());
            let reason = failed_reason(s.answer(&again, ok("{}", None), 60_000, refuse));
            assert_eq!(reason, "no usable key");
            assert_eq!(s.status()[0].loaded_at, Some(0), "still the first load");
            assert_eq!(s.next_due(), Some(70_000));
        }
        // A failure the host saw (a timeout, an oversized body).
        s.failed(&again, "timed out", 60_000);
        assert_eq!(s.next_due(), Some(70_000));
        assert!(
            s.answer(&again, ok("{}", None), 60_001, load).is_none(),
            "a late answer to a settled fetch is ignored"
        );
    }

    #[test]
    fn wanted_keys_bring_the_fetch_forward_once_per_cooldown() {
        let policy = RefreshPolicy::default().with_retry(10_000, 30_000);
        let mut s = KeySchedule::new(policy);
        s.follow(vec![(ISS.into(), KeyUrl::JwksUri(format!("{ISS}/keys")))]);
        assert!(s.wanted(ISS, 0), "never fetched: due");
        let [f] = <[KeyFetch; 1]>::try_from(s.due(0)).unwrap();
        assert!(!s.wanted(ISS, 1), "in flight");
        // No keys yet and the IdP failed: the retry delay paces the fetches, not tokens.
        s.failed(&f, "down", 0);
        assert!(!s.wanted(ISS, 5_000));
        assert!(s.wanted(ISS, 10_000), "the retry is due");
        let [f] = <[KeyFetch; 1]>::try_from(s.due(10_000)).unwrap();
        s.answer(&f, ok("{}", Some("max-age=3600")), 0, load);
        s.answer(&f, ok("{}", Some("max-age=3600")), 0, load);
        // Keys just loaded: a rotated key is asked for at once.
        assert!(s.wanted(ISS, 1_000), "brought forward");
        assert!(s.wanted(ISS, 1_001), "still due, not yet taken");
        let [f] = <[KeyFetch; 1]>::try_from(s.due(1_001)).unwrap();
        s.answer(&f, ok("{}", Some("max-age=3600")), 1_002, load);
        assert!(
            !s.wanted(ISS, 30_999),
            "brought forward within the cooldown"
        );
        assert!(s.wanted(ISS, 31_000));
        let [f] = <[KeyFetch; 1]>::try_from(s.due(31_000)).unwrap();
        s.answer(&f, ok("{}", Some("max-age=3600")), 31_001, load);
        assert!(!s.wanted(ISS, 60_999));
        assert!(
            !s.wanted("https://other.example", 61_000),
            "not an issuer here"
        );
        s.expedite(61_002);
        assert_eq!(s.due(61_002).len(), 1, "expedited, whatever the cooldown");
    }

    #[test]
    fn workers_share_one_fetch() {
        let mut s = KeySchedule::new(RefreshPolicy::default());
        s.follow(vec![(ISS.into(), KeyUrl::JwksUri(format!("{ISS}/keys")))]);
        let [f] = <[KeyFetch; 1]>::try_from(s.due(0)).unwrap();
        s.postpone(&f, 5_000);
        assert!(s.due(4_999).is_empty());
        s.loaded_elsewhere(ISS, 4_000, 300_000);
        assert!(s.all_loaded());
        assert_eq!(s.next_due(), Some(300_000));
        // An older load elsewhere changes nothing.
        s.loaded_elsewhere(ISS, 3_000, 100);
        assert_eq!(s.next_due(), Some(300_000));
    }

    #[test]
    fn following_a_new_bundle_keeps_unchanged_issuers_and_drops_gone_ones() {
        let mut s = KeySchedule::new(RefreshPolicy::default());
        let other = "https://other.example".to_owned();
        s.follow(vec![
            (ISS.into(), KeyUrl::JwksUri(format!("{ISS}/keys"))),
            (other.clone(), KeyUrl::JwksUri(format!("{other}/keys"))),
        ]);
        let fetches = s.due(0);
        s.answer(&fetches[0], ok("{}", None), 0, load);
        // `other` changes URL while its fetch is in flight; `ISS` stays.
        s.follow(vec![
            (ISS.into(), KeyUrl::JwksUri(format!("{ISS}/keys"))),
            (other.clone(), KeyUrl::JwksUri(format!("{other}/v2/keys"))),
        ]);
        assert!(s.answer(&fetches[1], ok("{}", None), 1, load).is_none());
        let status = s.status();
        assert_eq!(status[0].issuer, ISS);
        assert_eq!(status[0].loaded_at, Some(0));
        assert_eq!(status[1].loaded_at, None);
        assert_eq!(s.due(1)[0].url, format!("{other}/v2/keys"));
        s.follow(Vec::new());
        assert!(s.status().is_empty() && s.all_loaded() && s.next_due().is_none());
    }

    #[test]
    fn policies_read_from_seconds_and_max_age_parsing() {
        let p: RefreshPolicy =
            serde_json::from_value(json!({"default_age_seconds": 1, "retry_seconds": 2})).unwrap();
        assert_eq!((p.min_age, p.default_age, p.retry), (60_000, 60_000, 2_000));
        assert!(serde_json::from_value::<RefreshPolicy>(json!({"retry": 2})).is_err());
        assert_eq!(
            parse_max_age("max-age=\"60\", must-revalidate"),
            Some(60_000)
        );
        assert_eq!(parse_max_age("public"), None);
        assert_eq!(parse_max_age("max-age=lots"), None);
    }
}
