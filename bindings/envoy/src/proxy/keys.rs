//! This VM's side of the remote issuers' keys: the engine's [`SharedKeys`] says what to fetch
//! and when, one fetch for all workers through Envoy's shared data; this carries it out
//! through Envoy clusters.

use super::{SharedData, get, log, now_ms, response_body, response_header, response_status};
use crate::config::KeysConfig;
use portcullis_engine::{
    Engine, FetchAnswer, KeyEvent, KeyFetch, MAX_KEY_DOCUMENT, RefreshPolicy, SharedKeys,
};
use proxy_wasm::types::LogLevel;
use std::time::Duration;

/// The keys this VM's engine holds and the fetches it has in flight.
pub(super) struct VmKeys {
    shared: SharedKeys,
    /// Fetches in flight, by `dispatch_http_call` token.
    in_flight: Vec<(u32, KeyFetch)>,
}

/// `engine`'s `set_issuer_keys`, as the schedule loads keys.
fn load(engine: &Engine) -> impl FnMut(&str, &serde_json::Value) -> Result<usize, String> {
    |issuer, jwks| {
        engine
            .set_issuer_keys(issuer, jwks)
            .map_err(|e| e.info().message)
    }
}

/// A fetch failed: the last good keys stay (every worker waits for the retry delay).
fn log_failure(issuer: &str, why: &str) {
    log(
        LogLevel::Warn,
        &format!(
            "portcullis: fetching the keys of `{issuer}` failed ({why}); keeping the last good keys"
        ),
    );
}

impl Default for VmKeys {
    fn default() -> Self {
        Self::new(None)
    }
}

impl VmKeys {
    pub(super) fn new(config: Option<&KeysConfig>) -> Self {
        let (refresh, timeout_ms) =
            config.map_or((RefreshPolicy::default(), 0), |c| (c.refresh, c.timeout_ms));
        Self {
            shared: SharedKeys::new(refresh, timeout_ms),
            in_flight: Vec::new(),
        }
    }

    /// Follow the remote issuers of a new engine; the next [`VmKeys::sync`] loads every
    /// issuer's shared keys into it.
    pub(super) fn follow(&mut self, engine: &Engine) {
        self.shared.follow(engine.bundle().remote_issuers());
    }

    /// How many remote issuers there are.
    pub(super) fn issuers(&self) -> usize {
        self.shared.schedule().status().len()
    }

    /// Load keys other workers fetched into this VM's engine. Whether anything changed.
    pub(super) fn sync(&mut self, engine: &Engine) -> bool {
        let mut changed = false;
        for (issuer, loaded) in self.shared.sync(&SharedData, load(engine)) {
            match loaded {
                Ok(_) => changed = true,
                Err(why) => log(
                    LogLevel::Warn,
                    &format!("portcullis: shared keys of `{issuer}` refused: {why}"),
                ),
            }
        }
        changed
    }

    /// A decision lacked `issuer`'s keys: bring its fetch forward (the cooldown applies).
    pub(super) fn wanted(&mut self, issuer: &str) {
        self.shared.wanted(issuer, now_ms());
    }

    /// Start the fetches that are due (and whose lease this VM took).
    pub(super) fn start(&mut self, config: &KeysConfig, now: i64) {
        for fetch in self.shared.due(&SharedData, now) {
            self.dispatch(config, fetch, now);
        }
    }

    fn dispatch(&mut self, config: &KeysConfig, fetch: KeyFetch, now: i64) {
        let timeout = Duration::from_millis(config.timeout_ms);
        let token = config
            .cluster_for(&fetch.url)
            .and_then(|(cluster, target)| get(cluster, &target, None, None, timeout));
        match token {
            Some(token) => self.in_flight.push((token, fetch)),
            None => {
                let why = "no cluster in `keys.clusters` for its origin, or the call could not be dispatched";
                self.failed(&fetch, why, now);
            }
        }
    }

    fn failed(&mut self, fetch: &KeyFetch, why: &str, now: i64) {
        self.shared.failed(&SharedData, fetch, why, now);
        log_failure(&fetch.issuer, why);
    }

    /// Handle the answer to `token`, if it is one of this VM's key fetches (whether it was).
    pub(super) fn on_response(
        &mut self,
        config: &KeysConfig,
        engine: &Engine,
        token: u32,
        body_size: usize,
    ) -> bool {
        let Some(index) = self.in_flight.iter().position(|(t, _)| *t == token) else {
            return false;
        };
        let (_, fetch) = self.in_flight.swap_remove(index);
        let now = now_ms();
        if body_size > MAX_KEY_DOCUMENT {
            self.failed(&fetch, "the document is larger than 1 MiB", now);
            return true;
        }
        let cache_control =
            response_header("cache-control").and_then(|v| String::from_utf8(v).ok());
        let body = response_body(body_size);
        let answer = FetchAnswer {
            status: response_status(),
            cache_control: cache_control.as_deref(),
            body: &body,
        };
        match self
            .shared
            .answer(&SharedData, &fetch, answer, now, load(engine))
        {
            None => {}
            Some(KeyEvent::Fetch(next)) => self.dispatch(config, next, now),
            Some(KeyEvent::Keys { issuer, keys, .. }) => log(
                LogLevel::Info,
                &format!("portcullis: loaded {keys} keys of `{issuer}`"),
            ),
            Some(KeyEvent::Failed { issuer, reason }) => log_failure(&issuer, &reason),
        }
        true
    }
}
