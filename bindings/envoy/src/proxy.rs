//! The proxy-wasm glue: root context (configuration, metrics, key fetching) and HTTP contexts
//! (one per request, carrying out [`gate::handle`]). Only hostcalls that report errors as
//! values are used, and headers are read as bytes: nothing here panics on what a client sends.

use crate::config::{LogLevel, Plan};
use crate::gate::{self, Action as GateAction, Counter};
use crate::keys;
use crate::routes::Headers;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType};
use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

fn log(level: proxy_wasm::types::LogLevel, message: &str) {
    // Logging is best effort: a host that refuses a log line must not fail a request.
    let _ = hostcalls::log(level, message);
}

fn now() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// Random bytes for decision ids: std's `RandomState` is seeded from WASI `random_get`.
fn random_seed() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

struct HostHeaders;

impl Headers for HostHeaders {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }
}

/// Metric ids, in [`Counter::ALL`] order.
#[derive(Default)]
struct Metrics(Vec<u32>);

impl Metrics {
    fn define() -> Self {
        Self(
            Counter::ALL
                .iter()
                .filter_map(|c| hostcalls::define_metric(MetricType::Counter, c.name()).ok())
                .collect(),
        )
    }

    fn increment(&self, counter: Counter) {
        let index = Counter::ALL.iter().position(|c| *c == counter);
        if let Some(id) = index.and_then(|i| self.0.get(i)) {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Discovery,
    Jwks,
}

struct IssuerState {
    issuer: String,
    first_url: String,
    loaded_cas: Option<u32>,
    fetched_at: Option<i64>,
    in_flight: Option<(u32, Stage)>,
}

/// This VM's view of the remote issuers' keys, shared by the root context (timer, fetches)
/// and the HTTP contexts (which sync at once when a token's keys are missing).
#[derive(Default)]
struct Keys {
    issuers: Vec<IssuerState>,
    /// A token named an unknown `kid` since the last tick.
    unknown_kid: bool,
}

#[derive(Default)]
struct Root {
    plan: Option<Rc<Plan>>,
    metrics: Rc<Metrics>,
    keys: Rc<RefCell<Keys>>,
}

impl Keys {
    /// Load keys other workers fetched into this VM's engine. Whether anything changed.
    fn sync(&mut self, plan: &Plan) -> bool {
        let mut changed = false;
        for state in &mut self.issuers {
            let Ok((Some(entry), cas)) = hostcalls::get_shared_data(&keys::keys_key(&state.issuer))
            else {
                continue;
            };
            if cas.is_some() && cas == state.loaded_cas {
                continue;
            }
            match keys::decode_keys(&entry) {
                Some((fetched_at, jwks)) => match plan.engine.set_issuer_keys(&state.issuer, &jwks)
                {
                    Ok(_) => {
                        state.loaded_cas = cas;
                        state.fetched_at = Some(fetched_at);
                        changed = true;
                    }
                    Err(e) => log(
                        proxy_wasm::types::LogLevel::Warn,
                        &format!(
                            "portcullis: shared keys of `{}` refused: {}",
                            state.issuer,
                            e.info().message
                        ),
                    ),
                },
                None => state.loaded_cas = cas,
            }
        }
        changed
    }

    fn start_fetches(&mut self, plan: &Plan, now: i64) {
        let Some(config) = &plan.keys else {
            return;
        };
        let unknown_kid = std::mem::take(&mut self.unknown_kid);
        let timeout = Duration::from_millis(config.timeout_ms);
        let lease_for = keys::secs(
            config
                .timeout_ms
                .div_ceil(1000)
                .saturating_mul(2)
                .saturating_add(1),
        );
        for state in &mut self.issuers {
            if state.in_flight.is_some()
                || !keys::fetch_due(config, state.fetched_at, unknown_kid, now)
            {
                continue;
            }
            if !take_lease(&state.issuer, now, now.saturating_add(lease_for)) {
                continue;
            }
            let stage = match plan.remote.iter().find(|(i, _)| *i == state.issuer) {
                Some((_, portcullis_engine::KeySource::Discovery(_))) => Stage::Discovery,
                _ => Stage::Jwks,
            };
            match dispatch(config, &state.first_url, timeout) {
                Some(token) => state.in_flight = Some((token, stage)),
                None => fetch_failed(config, &state.issuer, now, "cannot dispatch the request"),
            }
        }
    }
}

/// Try to take the fetch lease of `issuer` until `until`.
fn take_lease(issuer: &str, now: i64, until: i64) -> bool {
    let key = keys::lease_key(issuer);
    let Ok((current, cas)) = hostcalls::get_shared_data(&key) else {
        return false;
    };
    if keys::decode_lease(current.as_deref()) > now {
        return false;
    }
    hostcalls::set_shared_data(&key, Some(until.to_string().as_bytes()), cas).is_ok()
}

fn set_lease(issuer: &str, until: i64) {
    let _ = hostcalls::set_shared_data(
        &keys::lease_key(issuer),
        Some(until.to_string().as_bytes()),
        None,
    );
}

fn fetch_failed(config: &crate::config::KeysConfig, issuer: &str, now: i64, why: &str) {
    log(
        proxy_wasm::types::LogLevel::Warn,
        &format!(
            "portcullis: fetching the keys of `{issuer}` failed ({why}); keeping the last good keys"
        ),
    );
    set_lease(issuer, now.saturating_add(keys::secs(config.retry_seconds)));
}

fn dispatch(config: &crate::config::KeysConfig, url: &str, timeout: Duration) -> Option<u32> {
    let (cluster, target) = config.cluster_for(url)?;
    hostcalls::dispatch_http_call(
        cluster,
        vec![
            (":method", "GET"),
            (":path", &target.path),
            (":authority", &target.authority),
            ("accept", "application/json"),
        ],
        None,
        vec![],
        timeout,
    )
    .ok()
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, _: usize, body_size: usize, _: usize) {
        let Some(plan) = self.plan.clone() else {
            return;
        };
        let Some(config) = &plan.keys else {
            return;
        };
        let mut keys = self.keys.borrow_mut();
        let Some(state) = keys
            .issuers
            .iter_mut()
            .find(|s| s.in_flight.is_some_and(|(t, _)| t == token_id))
        else {
            return;
        };
        let stage = state.in_flight.take().map(|(_, stage)| stage);
        let now = now();
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten();
        if status.as_deref() != Some(b"200") {
            return fetch_failed(config, &state.issuer, now, "no 200 answer");
        }
        if body_size > keys::MAX_DOCUMENT {
            return fetch_failed(config, &state.issuer, now, "document too large");
        }
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        match stage {
            Some(Stage::Discovery) => {
                let next = keys::jwks_uri(&body).and_then(|uri| {
                    dispatch(config, &uri, Duration::from_millis(config.timeout_ms))
                });
                match next {
                    Some(token) => state.in_flight = Some((token, Stage::Jwks)),
                    None => fetch_failed(
                        config,
                        &state.issuer,
                        now,
                        "no usable `jwks_uri` with a cluster",
                    ),
                }
            }
            Some(Stage::Jwks) => {
                let parsed = serde_json::from_slice::<serde_json::Value>(&body);
                let loaded = parsed.map_err(|e| e.to_string()).and_then(|jwks| {
                    plan.engine
                        .set_issuer_keys(&state.issuer, &jwks)
                        .map_err(|e| e.info().message)
                });
                match loaded {
                    Ok(count) => {
                        let key = keys::keys_key(&state.issuer);
                        let _ = hostcalls::set_shared_data(
                            &key,
                            Some(&keys::encode_keys(now, &body)),
                            None,
                        );
                        state.loaded_cas = hostcalls::get_shared_data(&key)
                            .ok()
                            .and_then(|(_, cas)| cas);
                        state.fetched_at = Some(now);
                        set_lease(&state.issuer, 0);
                        log(
                            proxy_wasm::types::LogLevel::Info,
                            &format!("portcullis: loaded {count} keys of `{}`", state.issuer),
                        );
                    }
                    Err(why) => fetch_failed(config, &state.issuer, now, &why),
                }
            }
            None => {}
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _: usize) -> bool {
        self.metrics = Rc::new(Metrics::define());
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let Ok(Some(bytes)) = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        else {
            log(
                proxy_wasm::types::LogLevel::Error,
                "portcullis: no plugin configuration",
            );
            return false;
        };
        match Plan::from_json(&bytes, random_seed()) {
            Ok(plan) => {
                let mut keys = self.keys.borrow_mut();
                keys.issuers = plan
                    .remote
                    .iter()
                    .filter_map(|(issuer, source)| {
                        Some(IssuerState {
                            issuer: issuer.clone(),
                            first_url: keys::first_url(source)?.to_owned(),
                            loaded_cas: None,
                            fetched_at: None,
                            in_flight: None,
                        })
                    })
                    .collect();
                if !keys.issuers.is_empty() {
                    let _ = hostcalls::set_tick_period(Duration::from_secs(1));
                }
                log(
                    proxy_wasm::types::LogLevel::Info,
                    &format!(
                        "portcullis: configured, bundle revision {}, {} routes, {} remote issuers",
                        plan.engine.revision(),
                        plan.routes.len(),
                        keys.issuers.len()
                    ),
                );
                drop(keys);
                self.plan = Some(Rc::new(plan));
                true
            }
            Err(e) => {
                log(
                    proxy_wasm::types::LogLevel::Error,
                    &format!("portcullis: {e}"),
                );
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(plan) = &self.plan {
            let mut keys = self.keys.borrow_mut();
            keys.sync(plan);
            keys.start_fetches(plan, now());
        }
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            plan: self.plan.clone(),
            metrics: Rc::clone(&self.metrics),
            keys: Rc::clone(&self.keys),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    plan: Option<Rc<Plan>>,
    metrics: Rc<Metrics>,
    keys: Rc<RefCell<Keys>>,
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(plan) = &self.plan else {
            self.metrics.increment(Counter::Errors);
            return respond(gate::unavailable());
        };
        for name in plan.forward.names() {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
        }
        let now = now();
        let mut verdict = gate::handle(plan, &HostHeaders, now);
        if verdict.keys_missing {
            // Another worker may have fetched the keys since this VM's last tick.
            let mut keys = self.keys.borrow_mut();
            if keys.sync(plan) {
                verdict = gate::handle(plan, &HostHeaders, now);
            }
            keys.unknown_kid |= verdict.keys_missing;
        }
        if let Some(counter) = verdict.counter {
            self.metrics.increment(counter);
        }
        let level = match plan.log_level {
            LogLevel::Off => None,
            LogLevel::Debug => Some(proxy_wasm::types::LogLevel::Debug),
            LogLevel::Info => Some(proxy_wasm::types::LogLevel::Info),
            LogLevel::Warn => Some(proxy_wasm::types::LogLevel::Warn),
        };
        if let (Some(level), Some(line)) = (level, &verdict.log) {
            log(level, line);
        }
        match verdict.action {
            GateAction::Forward(headers) => {
                for (name, value) in &headers {
                    let _ =
                        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
                }
                Action::Continue
            }
            respond_action @ GateAction::Respond { .. } => respond(respond_action),
        }
    }
}

fn respond(action: GateAction) -> Action {
    match action {
        GateAction::Respond {
            status,
            headers,
            body,
        } => {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let _ = hostcalls::send_http_response(status, headers, Some(body.as_bytes()));
            Action::Pause
        }
        GateAction::Forward(_) => Action::Continue,
    }
}
