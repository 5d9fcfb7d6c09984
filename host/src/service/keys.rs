//! Keys of `jwks_uri` and `discovery` issuers. When to fetch what, and what an answer means, is
//! the engine's [`KeySchedule`] (the same rules as in the Envoy filter and the JS SDK); this
//! module performs the GETs it asks for — with a timeout, a size limit and no redirect — and
//! hands the keys to the component instances once they validate natively. One task does all
//! fetching, one issuer at a time: there is never a stampede.

use super::{Shared, http};
use crate::crypto::RingVerifier;
use portcullis_engine::{
    DecisionIds, Engine, EngineOptions, FetchAnswer, IssuerKeyStatus, KeyEvent, KeyFetch,
    KeySchedule, KeyUrl, MAX_KEY_DOCUMENT, RefreshPolicy,
};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How remote issuers' keys are fetched and kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyOptions {
    /// How long keys are kept, retries, the unknown-`kid` cooldown.
    pub policy: RefreshPolicy,
    /// Timeout of each HTTP request.
    pub timeout: Duration,
}

impl Default for KeyOptions {
    fn default() -> Self {
        Self {
            policy: RefreshPolicy::default(),
            timeout: Duration::from_secs(5),
        }
    }
}

/// The remote issuers' keys the service holds, and their schedule.
pub(super) struct Keys {
    schedule: Mutex<KeySchedule>,
    /// JWK sets (JSON) that validated, by issuer: what every instance is given.
    jwks: Mutex<Vec<(String, Arc<str>)>>,
    wake: Notify,
    timeout: Duration,
}

impl Keys {
    pub(super) fn new(options: KeyOptions) -> Self {
        Self {
            schedule: Mutex::new(KeySchedule::new(options.policy)),
            jwks: Mutex::new(Vec::new()),
            wake: Notify::new(),
            timeout: options.timeout,
        }
    }

    fn schedule(&self) -> MutexGuard<'_, KeySchedule> {
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_jwks(&self) -> MutexGuard<'_, Vec<(String, Arc<str>)>> {
        self.jwks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follow a new bundle's remote issuers: keys of issuers it keeps stay, others go.
    pub(super) fn follow(&self, remote: &[(String, KeyUrl)]) {
        self.schedule().follow(remote.to_vec());
        self.lock_jwks()
            .retain(|(issuer, _)| remote.iter().any(|(i, _)| i == issuer));
        self.wake.notify_one();
    }

    /// The JWK sets every instance must hold.
    pub(super) fn current(&self) -> Vec<(String, Arc<str>)> {
        self.lock_jwks().clone()
    }

    /// Every remote issuer's keys, as the schedule sees them.
    pub(super) fn status(&self) -> Vec<IssuerKeyStatus> {
        self.schedule().status()
    }

    /// A decision lacked `issuer`'s keys: fetch them early (the schedule's cooldown applies).
    pub(super) fn wanted(&self, issuer: &str) {
        if self.schedule().wanted(issuer, now_ms()) {
            self.wake.notify_one();
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Fetch what the schedule says is due, until `stop`.
pub(super) async fn watch(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let agent = http::agent(shared.keys.timeout);
    loop {
        let due = shared.keys.schedule().due(now_ms());
        for fetch in due {
            fetch_issuer(&shared, &agent, fetch).await;
        }
        // Sleep until the next fetch is due (at most a second: a new bundle may bring
        // issuers), or until a decision wants keys.
        let wait = shared
            .keys
            .schedule()
            .next_due()
            .map_or(1000, |due| due.saturating_sub(now_ms()).clamp(0, 1000));
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())) => {}
            () = shared.keys.wake.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One issuer's fetch: discovery when it is due, then the JWK set.
async fn fetch_issuer(shared: &Arc<Shared>, agent: &ureq::Agent, mut fetch: KeyFetch) {
    loop {
        let (request_agent, url) = (agent.clone(), fetch.url.clone());
        let got = tokio::task::spawn_blocking(move || fetch_document(&request_agent, &url))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        let now = now_ms();
        let event = match &got {
            Ok(answer) => shared.keys.schedule().answer(
                &fetch,
                FetchAnswer {
                    status: answer.status,
                    cache_control: answer.header.as_deref(),
                    body: &answer.body,
                },
                now,
                |issuer, jwks| validate(shared, issuer, jwks),
            ),
            Err(reason) => {
                shared.keys.schedule().failed(&fetch, reason, now);
                Some(KeyEvent::Failed {
                    issuer: fetch.issuer.clone(),
                    reason: reason.clone(),
                })
            }
        };
        match (event, got) {
            (None, _) => return,
            (Some(KeyEvent::Fetch(next)), _) => fetch = next,
            (Some(KeyEvent::Keys { issuer, keys, .. }), Ok(answer)) => {
                shared.metrics.key_fetch(true);
                // The body parsed as JSON, so it is UTF-8.
                let jwks = String::from_utf8_lossy(&answer.body);
                return install(shared, issuer, &jwks, keys).await;
            }
            (Some(KeyEvent::Failed { issuer, reason }), _) => {
                return refused(shared, &issuer, &reason);
            }
            (Some(KeyEvent::Keys { .. }), Err(_)) => return,
        }
    }
}

fn refused(shared: &Shared, issuer: &str, reason: &str) {
    shared.metrics.key_fetch(false);
    crate::log::warn(&format!(
        "keys of `{issuer}` not refreshed, the last good keys stay: {reason}"
    ));
}

/// Load the keys into a native engine of the bundle being served before any instance sees
/// them: the number of usable keys.
fn validate(shared: &Shared, issuer: &str, jwks: &serde_json::Value) -> Result<usize, String> {
    let served = shared
        .served
        .load_full()
        .ok_or_else(|| "no bundle".to_owned())?;
    let engine = Engine::with_options(
        Arc::clone(&served.bundle),
        EngineOptions::new(Arc::new(RingVerifier), DecisionIds::Seed(0)),
    );
    engine
        .set_issuer_keys(issuer, jwks)
        .map_err(|e| e.to_string())
}

/// Hand validated keys to the instances, when they changed.
async fn install(shared: &Arc<Shared>, issuer: String, jwks: &str, count: usize) {
    let jwks: Arc<str> = Arc::from(jwks);
    let changed = {
        let mut held = shared.keys.lock_jwks();
        let old = held.iter().position(|(i, _)| *i == issuer);
        let changed = old
            .and_then(|i| held.get(i))
            .is_none_or(|(_, k)| **k != *jwks);
        if let Some(i) = old {
            held.remove(i);
        }
        held.push((issuer.clone(), jwks));
        changed
    };
    if !changed {
        crate::log::info(&format!(
            "keys of `{issuer}` fetched: {count} keys, unchanged"
        ));
    } else {
        crate::log::info(&format!("keys of `{issuer}` fetched: {count} keys, loaded"));
        shared.publish();
        let warm = Arc::clone(shared);
        let _ = tokio::task::spawn_blocking(move || warm.pool.refresh()).await;
    }
}

/// GET a key document (`Accept: application/json`, at most [`MAX_KEY_DOCUMENT`] bytes read).
///
/// # Errors
/// A network error, a timeout, a body over the limit.
pub(super) fn fetch_document(agent: &ureq::Agent, url: &str) -> Result<http::Answer, String> {
    let accept = [("accept", "application/json")];
    http::get(agent, url, &accept, "cache-control", MAX_KEY_DOCUMENT).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::header;
    use axum::routing::get;

    /// A real IdP-shaped HTTP server on loopback: discovery, a JWK set with `max-age`, and a
    /// failing endpoint.
    fn idp() -> (tokio::runtime::Runtime, String) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let discovery =
            serde_json::json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}).to_string();
        let foreign =
            serde_json::json!({"issuer": "https://evil.example", "jwks_uri": format!("{base}/jwks")})
                .to_string();
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { discovery }),
            )
            .route(
                "/jwks",
                get(|| async {
                    (
                        [(header::CACHE_CONTROL, "public, max-age=120")],
                        r#"{"keys": []}"#,
                    )
                }),
            )
            .route(
                "/short",
                get(|| async { ([(header::CACHE_CONTROL, "max-age=1")], r#"{"keys": []}"#) }),
            )
            .route(
                "/down",
                get(|| async { (axum::http::StatusCode::BAD_GATEWAY, "down") }),
            )
            .route("/html", get(|| async { "<html>" }))
            .route("/huge", get(|| async { " ".repeat(MAX_KEY_DOCUMENT + 1) }))
            .route("/foreign", get(move || async move { foreign }))
            .route(
                "/moved",
                get(|| async {
                    (
                        axum::http::StatusCode::FOUND,
                        [(header::LOCATION, "http://127.0.0.2:1/jwks")],
                    )
                }),
            );
        runtime.spawn(async move { axum::serve(listener, app).await });
        (runtime, base)
    }

    /// One issuer's fetch driven to its end with real GETs, as `fetch_issuer` drives it: the
    /// last event, and when the next fetch is due (ms after the start).
    fn fetch_once(agent: &ureq::Agent, issuer: &str, source: KeyUrl) -> (KeyEvent, i64) {
        let mut schedule = KeySchedule::new(RefreshPolicy::default());
        schedule.follow(vec![(issuer.to_owned(), source)]);
        let mut fetch = schedule.due(0).pop().unwrap();
        loop {
            let event = match fetch_document(agent, &fetch.url) {
                Ok(answer) => schedule
                    .answer(
                        &fetch,
                        FetchAnswer {
                            status: answer.status,
                            cache_control: answer.header.as_deref(),
                            body: &answer.body,
                        },
                        0,
                        |_, _| Ok(0),
                    )
                    .unwrap(),
                Err(reason) => {
                    schedule.failed(&fetch, &reason, 0);
                    KeyEvent::Failed {
                        issuer: issuer.to_owned(),
                        reason,
                    }
                }
            };
            match event {
                KeyEvent::Fetch(next) => fetch = next,
                event => return (event, schedule.next_due().unwrap()),
            }
        }
    }

    fn failure(event: KeyEvent) -> String {
        match event {
            KeyEvent::Failed { reason, .. } => reason,
            other => panic!("not a failure: {other:?}"),
        }
    }

    #[test]
    fn fetches_through_discovery_and_honours_bounds() {
        let (_runtime, base) = idp();
        let agent = super::http::agent(Duration::from_secs(5));
        let (event, due) = fetch_once(
            &agent,
            &base,
            KeyUrl::Discovery(format!("{base}/.well-known/openid-configuration")),
        );
        assert!(matches!(event, KeyEvent::Keys { .. }), "{event:?}");
        assert_eq!(due, 120_000, "the IdP's max-age");
        // Below the lower bound: clamped up.
        let (_, due) = fetch_once(&agent, &base, KeyUrl::JwksUri(format!("{base}/short")));
        assert_eq!(due, 60_000);
        // Failures (the last good keys stay; retried after the retry delay).
        for (path, expected) in [
            ("/down", "502"),
            ("/html", "not JSON"),
            ("/moved", "redirect (HTTP 302), which is not followed"),
        ] {
            let (event, due) = fetch_once(&agent, &base, KeyUrl::JwksUri(format!("{base}{path}")));
            let reason = failure(event);
            assert!(reason.contains(expected), "{path}: {reason}");
            assert_eq!(due, 10_000);
        }
        let (event, _) = fetch_once(
            &agent,
            &base,
            KeyUrl::JwksUri("http://127.0.0.1:1/jwks".into()),
        );
        assert!(failure(event).contains("cannot fetch"));
        // A discovery document of another issuer.
        let (event, _) = fetch_once(&agent, &base, KeyUrl::Discovery(format!("{base}/foreign")));
        let reason = failure(event);
        assert!(reason.contains("not that of issuer"), "{reason}");
        // A body over the limit is not read to its end.
        let (event, _) = fetch_once(&agent, &base, KeyUrl::JwksUri(format!("{base}/huge")));
        let reason = failure(event);
        assert!(reason.contains("cannot read"), "{reason}");
    }
}
