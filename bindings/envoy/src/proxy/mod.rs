//! The proxy-wasm glue: root context (configuration, metrics, and the GETs the engine's
//! [`Upkeep`] asks for: the bundle's polls and the remote issuers' keys, one fetch for all
//! workers through Envoy's shared data) and HTTP contexts (one per request, carrying out
//! [`gate::handle`]). Header values are read as bytes: nothing here panics on what a client
//! sends. The request's headers come in one `get_map_bytes`, which needs header names to be
//! UTF-8: Envoy's codecs answer 400 to any name that is not a token before a filter sees it, as
//! the end-to-end tests check. The SDK's header calls panic on a status other than OK, which
//! Envoy returns only when the request has no header map; a panic traps the VM, and a filter
//! configured `fail_open: false` fails closed.

mod verifier;

use crate::config::{LogLevel, Plan};
use crate::gate::{self, Counter};
use portcullis_engine::{
    BundleOrigin, CompiledBundle, EdgeAction, Engine, ForwardHeaders, HeaderPairs, Headers,
    HttpTarget, Lookup, SharedBundle, SharedKeys, SharedStore, Upkeep, UpkeepAnswer, UpkeepEvent,
    UpkeepFetch,
};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

fn log(level: proxy_wasm::types::LogLevel, message: &str) {
    // Logging is best effort: a host that refuses a log line must not fail a request.
    let _ = hostcalls::log(level, message);
}

/// Unix seconds, for decisions.
fn now() -> i64 {
    now_ms().div_euclid(1000)
}

/// Unix milliseconds, for the key and bundle schedules.
fn now_ms() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// The request's headers, read in one hostcall, without the identity headers the filter
/// forwards: a client's copies of those, under any spelling (`x_portcullis_tenant` too), are
/// never read (a route attribute taken from one sees none) and never forwarded.
///
/// Hostcalls are most of what a remembered decision costs in Envoy. Reading a header by name is
/// one, plus a call back into the VM to allocate its value, and a decision reads four or five;
/// one read of the whole map costs less, and tells whether the client sent identity headers, so
/// the common request (it sent none) needs no removal.
struct RequestHeaders {
    pairs: Vec<(String, Vec<u8>)>,
    /// The names, as the client spelled them, of the identity headers it sent.
    spoofed: Vec<String>,
}

impl RequestHeaders {
    /// Unreadable headers read as none: no token, so nothing is allowed.
    fn read(forward: &ForwardHeaders) -> Self {
        let mut pairs = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        let spoofed = forward.strip(&mut pairs);
        Self { pairs, spoofed }
    }

    /// Let the request go upstream with `identity` as its only identity headers.
    fn forward(&self, identity: &[(String, String)]) {
        // Removing a header removes every copy of it.
        for name in &self.spoofed {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
        }
        // None of them is left, so adding (cheaper than replacing) sets each once.
        for (name, value) in identity {
            let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value);
        }
    }
}

impl Headers for RequestHeaders {
    fn get(&self, name: &str) -> Lookup<'_> {
        HeaderPairs(&self.pairs).lookup(name)
    }
}

/// Metric ids, by [`Counter`] (none where Envoy refused to define one).
#[derive(Default)]
struct Metrics {
    totals: Vec<Option<u32>>,
    /// Per-route stats (`stats.routes`), defined on first use, by name.
    routes: RefCell<std::collections::HashMap<String, Option<u32>>>,
}

impl Metrics {
    fn define() -> Self {
        let define = |name| hostcalls::define_metric(MetricType::Counter, name).ok();
        Self {
            totals: Counter::NAMES.into_iter().map(define).collect(),
            routes: RefCell::default(),
        }
    }

    fn increment(&self, counter: Counter) {
        if let Some(Some(id)) = self.totals.get(counter as usize) {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }

    /// Increment a per-route stat (a bounded set of names: the bundle's routes by outcome).
    fn increment_named(&self, name: String) {
        let mut routes = self.routes.borrow_mut();
        let id = *routes
            .entry(name)
            .or_insert_with_key(|name| hostcalls::define_metric(MetricType::Counter, name).ok());
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}

#[derive(Default)]
struct Root {
    plan: Option<Rc<Plan>>,
    /// The engine this VM decides with (built in `on_configure` from an inline bundle, or from
    /// each new remote bundle on a tick; none until a remote bundle first arrives) and what it
    /// fetches.
    upkeep: Rc<RefCell<Upkeep>>,
    metrics: Rc<Metrics>,
    /// GETs in flight, by `dispatch_http_call` token.
    in_flight: Vec<(u32, UpkeepFetch)>,
}

/// Envoy's shared data, which the VMs of every worker see.
struct SharedData;

impl SharedStore for SharedData {
    fn get(&self, key: &str) -> Option<(Option<Vec<u8>>, Option<u32>)> {
        hostcalls::get_shared_data(key).ok()
    }

    fn set(&self, key: &str, value: &[u8], version: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), version).is_ok()
    }
}

/// `GET target` through `cluster`, with `If-None-Match` when an ETag is given.
fn get(
    cluster: &str,
    target: &HttpTarget,
    etag: Option<&str>,
    authorization: Option<&str>,
    timeout: Duration,
) -> Option<u32> {
    let mut headers = vec![
        (":method", "GET"),
        (":path", target.path.as_str()),
        (":authority", target.authority.as_str()),
        ("accept", "application/json"),
    ];
    if let Some(etag) = etag {
        headers.push(("if-none-match", etag));
    }
    if let Some(authorization) = authorization {
        headers.push(("authorization", authorization));
    }
    hostcalls::dispatch_http_call(cluster, headers, None, vec![], timeout).ok()
}

fn response_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
        .ok()
        .flatten()
}

/// The status of an HTTP call's response (0 when there is none to read).
fn response_status() -> u16 {
    response_header(":status")
        .and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok())
        .unwrap_or(0)
}

fn response_body(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Build the engine of a compiled bundle with this VM's options (see [`Plan::engine`]).
fn build(plan: &Plan, compiled: CompiledBundle) -> Result<Engine, String> {
    plan.engine(compiled, verifier::engine_options(plan))
        .map_err(|e| e.to_string())
}

/// Log and count what the upkeep did.
fn report(metrics: &Metrics, events: Vec<UpkeepEvent>) {
    use proxy_wasm::types::LogLevel::{Info, Warn};
    for event in events {
        match &event {
            UpkeepEvent::InUse {
                origin: BundleOrigin::Fetched { .. },
                ..
            } => metrics.increment(Counter::BundleUpdates),
            UpkeepEvent::BundleFailed { refused: true, .. } => {
                metrics.increment(Counter::BundleRefused);
            }
            _ => {}
        }
        let level = if event.is_failure() { Warn } else { Info };
        log(level, &format!("portcullis: {event}"));
    }
}

impl Root {
    /// Dispatch `fetch` through its cluster.
    fn dispatch(&mut self, plan: &Plan, fetch: UpkeepFetch, now: i64) {
        let (token, why) = match &fetch {
            UpkeepFetch::Keys(keys) => {
                let token = plan.keys.as_ref().and_then(|config| {
                    let timeout = Duration::from_millis(config.timeout_ms);
                    let (cluster, target) = config.cluster_for(&keys.url)?;
                    get(cluster, &target, None, None, timeout)
                });
                let why = "no cluster in `keys.clusters` for its origin, or the call could not be dispatched";
                (token, why)
            }
            UpkeepFetch::Bundle(bundle) => {
                let token = plan.remote_bundle.as_ref().and_then(|(remote, target)| {
                    let timeout = Duration::from_millis(remote.timeout_ms);
                    let etag = bundle.if_none_match.as_deref();
                    let authorization = plan.bundle_authorization.as_deref();
                    get(&remote.cluster, target, etag, authorization, timeout)
                });
                (token, "cannot dispatch the request")
            }
        };
        match token {
            Some(token) => self.in_flight.push((token, fetch)),
            None => {
                let event = self
                    .upkeep
                    .borrow_mut()
                    .failed(&SharedData, &fetch, why, now);
                report(&self.metrics, vec![event]);
            }
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, _: usize, body_size: usize, _: usize) {
        let (Some(plan), Some(index)) = (
            self.plan.clone(),
            self.in_flight.iter().position(|(t, _)| *t == token_id),
        ) else {
            return;
        };
        let (_, fetch) = self.in_flight.swap_remove(index);
        let header = |name| response_header(name).and_then(|v| String::from_utf8(v).ok());
        let (etag, cache_control) = (header("etag"), header("cache-control"));
        let answer = UpkeepAnswer {
            status: response_status(),
            etag: etag.as_deref(),
            cache_control: cache_control.as_deref(),
            body_len: body_size,
        };
        let now = now_ms();
        let body = || response_body(body_size);
        let (events, next) =
            self.upkeep
                .borrow_mut()
                .answer(&SharedData, &fetch, answer, body, now, |compiled| {
                    build(&plan, compiled)
                });
        report(&self.metrics, events);
        if let Some(next) = next {
            self.dispatch(&plan, next, now);
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
        match Plan::from_json(&bytes, verifier::engine_options) {
            Ok((plan, engine)) => {
                log(
                    proxy_wasm::types::LogLevel::Info,
                    &format!(
                        "portcullis: configured, bundle {}",
                        plan.remote_bundle
                            .as_ref()
                            .map_or("inline".to_owned(), |(r, _)| format!("from `{}`", r.url))
                    ),
                );
                let keys = plan.keys.as_ref().map_or_else(SharedKeys::default, |c| {
                    SharedKeys::new(c.refresh, c.timeout_ms)
                });
                let bundle = plan.remote_bundle.as_ref().map(|(r, _)| {
                    let ms = |seconds: u64| seconds.saturating_mul(1000);
                    SharedBundle::new(
                        &r.url,
                        ms(r.poll_seconds),
                        ms(r.retry_seconds),
                        r.timeout_ms,
                    )
                });
                let mut upkeep = Upkeep::new(keys, bundle);
                let events = match engine {
                    Some(engine) => upkeep.install(&SharedData, engine, BundleOrigin::Inline),
                    // Another worker may have fetched it already.
                    None => upkeep.sync(&SharedData, now_ms(), |c| build(&plan, c)),
                };
                report(&self.metrics, events);
                if upkeep.fetches() {
                    let _ = hostcalls::set_tick_period(Duration::from_secs(1));
                }
                *self.upkeep.borrow_mut() = upkeep;
                self.in_flight.clear();
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
        let Some(plan) = self.plan.clone() else {
            return;
        };
        let now = now_ms();
        let mut upkeep = self.upkeep.borrow_mut();
        let events = upkeep.sync(&SharedData, now, |c| build(&plan, c));
        let due = upkeep.due(&SharedData, now);
        drop(upkeep);
        report(&self.metrics, events);
        for fetch in due {
            self.dispatch(&plan, fetch, now);
        }
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            plan: self.plan.clone(),
            upkeep: Rc::clone(&self.upkeep),
            metrics: Rc::clone(&self.metrics),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    plan: Option<Rc<Plan>>,
    upkeep: Rc<RefCell<Upkeep>>,
    metrics: Rc<Metrics>,
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(plan) = &self.plan else {
            self.metrics.increment(Counter::Errors);
            return respond(EdgeAction::unavailable());
        };
        // No bundle yet (a remote one not fetched): no usable configuration, whatever
        // `failure_mode` says.
        let Some(engine) = self.upkeep.borrow().engine().cloned() else {
            self.metrics.increment(Counter::Errors);
            return respond(EdgeAction::unavailable());
        };
        let headers = RequestHeaders::read(&plan.edge.options().forward);
        let now = now();
        let mut verdict = gate::handle(plan, &engine, &headers, now);
        if verdict.keys_wanted.is_some() {
            // Another worker may have fetched the keys since this VM's last tick.
            let mut upkeep = self.upkeep.borrow_mut();
            let (changed, events) = upkeep.sync_keys(&SharedData);
            report(&self.metrics, events);
            if changed {
                verdict = gate::handle(plan, &engine, &headers, now);
            }
            if let Some(issuer) = &verdict.keys_wanted {
                upkeep.wanted(issuer, now_ms());
            }
        }
        if let Some(counter) = verdict.counter {
            self.metrics.increment(counter);
        }
        if let Some(name) = verdict.route_stat.take() {
            self.metrics.increment_named(name);
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
            EdgeAction::Forward(identity) => {
                headers.forward(&identity);
                Action::Continue
            }
            respond_action @ EdgeAction::Respond { .. } => respond(respond_action),
        }
    }
}

fn respond(action: EdgeAction) -> Action {
    match action {
        EdgeAction::Respond {
            status,
            headers,
            body,
        } => {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let _ =
                hostcalls::send_http_response(u32::from(status), headers, Some(body.as_bytes()));
            Action::Pause
        }
        EdgeAction::Forward(_) => Action::Continue,
    }
}
