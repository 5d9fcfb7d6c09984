//! This VM's side of the remote issuers' keys: the engine's [`KeySchedule`] says what to
//! fetch and when; this carries it out through Envoy clusters, one fetch for all workers
//! (see [`crate::shared`]).

use super::{
    get, log, now_ms, response_body, response_header, response_status, set_lease, take_lease,
};
use crate::config::KeysConfig;
use crate::shared;
use portcullis_engine::{Engine, FetchAnswer, KeyEvent, KeyFetch, KeySchedule, MAX_KEY_DOCUMENT};
use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;
use std::collections::HashMap;
use std::time::Duration;

/// The keys this VM's engine holds and the fetches it has in flight.
#[derive(Default)]
pub(super) struct VmKeys {
    schedule: KeySchedule,
    /// CAS version of each issuer's shared entry the engine holds.
    loaded: HashMap<String, u32>,
    /// Fetches in flight, by `dispatch_http_call` token.
    in_flight: Vec<(u32, KeyFetch)>,
}

impl VmKeys {
    pub(super) fn new(config: Option<&KeysConfig>) -> Self {
        Self {
            schedule: KeySchedule::new(config.map(|c| c.refresh).unwrap_or_default()),
            ..Self::default()
        }
    }

    /// Follow the remote issuers of a new engine; the next [`VmKeys::sync`] loads every
    /// issuer's shared keys into it.
    pub(super) fn follow(&mut self, engine: &Engine) {
        self.schedule.follow(engine.bundle().remote_issuers());
        self.loaded.clear();
    }

    /// How many remote issuers there are.
    pub(super) fn issuers(&self) -> usize {
        self.schedule.status().len()
    }

    /// Load keys other workers fetched into this VM's engine. Whether anything changed.
    pub(super) fn sync(&mut self, engine: &Engine) -> bool {
        let mut changed = false;
        for status in self.schedule.status() {
            let issuer = status.issuer;
            let Ok((Some(entry), Some(cas))) =
                hostcalls::get_shared_data(&shared::keys_key(&issuer))
            else {
                continue;
            };
            if self.loaded.get(&issuer) == Some(&cas) {
                continue;
            }
            self.loaded.insert(issuer.clone(), cas);
            let Some(keys) = shared::decode_keys(&entry) else {
                continue;
            };
            match engine.set_issuer_keys(&issuer, &keys.jwks) {
                Ok(_) => {
                    self.schedule
                        .loaded_elsewhere(&issuer, keys.loaded_at, keys.fresh_until);
                    changed = true;
                }
                Err(e) => log(
                    LogLevel::Warn,
                    &format!(
                        "portcullis: shared keys of `{issuer}` refused: {}",
                        e.info().message
                    ),
                ),
            }
        }
        changed
    }

    /// A decision lacked `issuer`'s keys: bring its fetch forward (the cooldown applies).
    pub(super) fn wanted(&mut self, issuer: &str) {
        self.schedule.wanted(issuer, now_ms());
    }

    /// Start the fetches that are due, each under its lease.
    pub(super) fn start(&mut self, config: &KeysConfig, now: i64) {
        for fetch in self.schedule.due(now) {
            let lease = shared::keys_lease(&fetch.issuer);
            match take_lease(
                &lease,
                now,
                now.saturating_add(shared::lease_ms(config.timeout_ms)),
            ) {
                Ok(()) => self.dispatch(config, fetch, now),
                Err(held_until) => self.schedule.postpone(&fetch, held_until),
            }
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
                self.fetch_failed(config, &fetch, why, now);
            }
        }
    }

    /// `fetch` could not be performed: the schedule retries it, and every worker waits.
    fn fetch_failed(&mut self, config: &KeysConfig, fetch: &KeyFetch, why: &str, now: i64) {
        self.schedule.failed(fetch, why, now);
        self.failed(config, &fetch.issuer, why, now);
    }

    /// Log a failure and hold every worker off for the retry delay; the last good keys stay.
    fn failed(&self, config: &KeysConfig, issuer: &str, why: &str, now: i64) {
        log(
            LogLevel::Warn,
            &format!(
                "portcullis: fetching the keys of `{issuer}` failed ({why}); keeping the last good keys"
            ),
        );
        let retry = i64::try_from(config.refresh.retry).unwrap_or(i64::MAX);
        set_lease(&shared::keys_lease(issuer), now.saturating_add(retry));
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
            self.fetch_failed(config, &fetch, "the document is larger than 1 MiB", now);
            return true;
        }
        let status = response_status();
        let cache_control =
            response_header("cache-control").and_then(|v| String::from_utf8(v).ok());
        let body = response_body(body_size);
        let answer = FetchAnswer {
            status,
            cache_control: cache_control.as_deref(),
            body: &body,
        };
        let load = |issuer: &str, jwks: &serde_json::Value| {
            engine
                .set_issuer_keys(issuer, jwks)
                .map_err(|e| e.info().message)
        };
        match self.schedule.answer(&fetch, answer, now, load) {
            None => {}
            Some(KeyEvent::Fetch(next)) => self.dispatch(config, next, now),
            Some(KeyEvent::Keys {
                issuer,
                keys,
                fresh_until,
            }) => {
                let key = shared::keys_key(&issuer);
                let entry = shared::encode_keys(now, fresh_until, &body);
                if hostcalls::set_shared_data(&key, Some(&entry), None).is_ok()
                    && let Ok((_, Some(cas))) = hostcalls::get_shared_data(&key)
                {
                    self.loaded.insert(issuer.clone(), cas);
                }
                set_lease(&shared::keys_lease(&issuer), 0);
                log(
                    LogLevel::Info,
                    &format!("portcullis: loaded {keys} keys of `{issuer}`"),
                );
            }
            Some(KeyEvent::Failed { issuer, reason }) => self.failed(config, &issuer, &reason, now),
        }
        true
    }
}
