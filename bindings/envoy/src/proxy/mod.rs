//! The proxy-wasm glue: root context (configuration, metrics, and the GETs the engine's
//! [`Upkeep`] asks for: the bundle's polls, the remote issuers' keys and the tenants' stored
//! data, one fetch for all workers through Envoy's shared data) and HTTP contexts (one per
//! request, carrying out [`gate::handle`]). A request whose tenant's data is not held yet is
//! paused; the root context resumes it (deciding it again) when the data arrives — on the
//! answer to its own fetch, or on a tick when another worker fetched it — or answers it 503
//! after `data.wait_ms`. Every fetch is dispatched from the root context, so that it outlives
//! the request that wanted it. Header values are read as bytes: nothing here panics on what a client
//! sends. The request's headers come in one `get_map_bytes`, which needs header names to be
//! UTF-8: Envoy's codecs answer 400 to any name that is not a token before a filter sees it, as
//! the end-to-end tests check. The SDK's header calls panic on a status other than OK, which
//! Envoy returns only when the request has no header map; a panic traps the VM, and a filter
//! configured `fail_open: false` fails closed.

mod verifier;

use crate::config::{LogLevel, Plan};
use crate::gate::{self, Counter};
use portcullis_engine::{
    BundleOrigin, CompiledBundle, DataEvent, EdgeAction, Engine, ForwardHeaders, HeaderPairs,
    Headers, HttpTarget, Lookup, SharedBundle, SharedKeys, SharedStore, SharedTenantData, Upkeep,
    UpkeepAnswer, UpkeepEvent, UpkeepFetch,
};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(Root { id, ..Root::default() })
    });
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

/// The tick period without tenants' data: keys and bundles are due in seconds.
const TICK: Duration = Duration::from_secs(1);
/// The tick period with tenants' data: other workers' documents are loaded within this
/// (write to enforcement: a poll interval, a GET and this).
const DATA_TICK: Duration = Duration::from_millis(100);
/// The tick period while requests wait for data.
const WAIT_TICK: Duration = Duration::from_millis(20);
/// Most requests a worker holds while their tenants' data is fetched; past it, 503 at once.
const MAX_WAITING: usize = 1024;

/// A request held until its tenant's data arrives.
struct Waiter {
    tenant: String,
    /// Unix ms after which it is answered 503.
    deadline: i64,
    headers: RequestHeaders,
}

/// The requests this VM holds, by HTTP context id.
type Waiting = Rc<RefCell<BTreeMap<u32, Waiter>>>;

#[derive(Default)]
struct Root {
    /// This root context's id (the effective context to go back to after resuming requests).
    id: u32,
    plan: Option<Rc<Plan>>,
    /// The engine this VM decides with (built in `on_configure` from an inline bundle, or from
    /// each new remote bundle on a tick; none until a remote bundle first arrives) and what it
    /// fetches.
    upkeep: Rc<RefCell<Upkeep>>,
    metrics: Rc<Metrics>,
    /// GETs in flight, by `dispatch_http_call` token.
    in_flight: Vec<(u32, UpkeepFetch)>,
    /// Requests waiting for their tenant's data.
    waiting: Waiting,
    /// When the last full sync (bundle, keys, data) was, unix ms; ticks in between take in
    /// only data.
    synced_at: i64,
    /// The tick period set (by the root, or by a request that starts waiting).
    tick: Rc<Cell<Duration>>,
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
            UpkeepEvent::Data(DataEvent::Loaded { fetched: true, .. }) => {
                metrics.increment(Counter::DataUpdates);
            }
            UpkeepEvent::Data(
                DataEvent::Failed { refused: true, .. } | DataEvent::SharedRefused { .. },
            ) => metrics.increment(Counter::DataRefused),
            UpkeepEvent::Data(DataEvent::Evicted { .. }) => {
                metrics.increment(Counter::DataEvictions);
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
            UpkeepFetch::Data(data) => {
                let token = plan.data.as_ref().and_then(|(config, base)| {
                    let timeout = Duration::from_millis(config.timeout_ms);
                    // The engine builds the URL from the configured base: never elsewhere.
                    let target =
                        HttpTarget::parse(&data.url).filter(|t| t.origin == base.origin)?;
                    let etag = data.if_none_match.as_deref();
                    let authorization = plan.data_authorization.as_deref();
                    get(&config.cluster, &target, etag, authorization, timeout)
                });
                (token, "cannot dispatch the request to `data.cluster`")
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
        if matches!(fetch, UpkeepFetch::Data(_)) {
            self.settle(&plan, now);
        }
    }
}

impl Root {
    /// Set the tick period, if it changes.
    fn set_tick(&mut self, period: Duration) {
        set_tick(&self.tick, period);
    }

    /// The tick period when no request waits.
    fn idle_tick(plan: &Plan) -> Duration {
        if plan.data.is_some() { DATA_TICK } else { TICK }
    }

    /// Finish the requests whose tenant's data arrived (decided again, with it) or whose wait
    /// is over (decided again without it: 503), then go back to this root context.
    fn settle(&mut self, plan: &Plan, now: i64) {
        let ready: Vec<(u32, Waiter)> = {
            let upkeep = self.upkeep.borrow();
            let mut waiting = self.waiting.borrow_mut();
            let ids: Vec<u32> = waiting
                .iter()
                .filter(|(_, w)| !upkeep.data_pending(&w.tenant) || now >= w.deadline)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| waiting.remove(&id).map(|w| (id, w)))
                .collect()
        };
        if ready.is_empty() {
            if self.waiting.borrow().is_empty() {
                self.set_tick(Self::idle_tick(plan));
            }
            return;
        }
        for (id, waiter) in ready {
            // The request may have gone (the client left): nothing to do then.
            if hostcalls::set_effective_context(id).is_err() {
                continue;
            }
            let Some(engine) = self.upkeep.borrow().engine().cloned() else {
                self.metrics.increment(Counter::Errors);
                let _ = respond(EdgeAction::unavailable());
                continue;
            };
            let verdict = gate::handle(plan, &engine, &waiter.headers, now.div_euclid(1000));
            if verdict.data_wanted.is_some() {
                self.metrics.increment(Counter::DataWaitTimeouts);
            }
            if let Some(tenant) = &verdict.data_tenant {
                self.upkeep.borrow_mut().data_seen(tenant, now);
            }
            if carry_out(plan, &self.metrics, verdict, &waiter.headers) == Action::Continue {
                let _ = hostcalls::resume_http_request();
            }
        }
        let _ = hostcalls::set_effective_context(self.id);
        if self.waiting.borrow().is_empty() {
            self.set_tick(Self::idle_tick(plan));
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
                if let Some((data, _)) = &plan.data {
                    upkeep = upkeep.with_data(SharedTenantData::new(&data.url, data.policy()));
                }
                let events = match engine {
                    Some(engine) => upkeep.install(&SharedData, engine, BundleOrigin::Inline),
                    // Another worker may have fetched it already.
                    None => upkeep.sync(&SharedData, now_ms(), |c| build(&plan, c)),
                };
                report(&self.metrics, events);
                let fetches = upkeep.fetches();
                *self.upkeep.borrow_mut() = upkeep;
                self.in_flight.clear();
                if fetches {
                    self.set_tick(Self::idle_tick(&plan));
                }
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
        let full = now.saturating_sub(self.synced_at) >= ms(TICK);
        let mut upkeep = self.upkeep.borrow_mut();
        let events = if full {
            self.synced_at = now;
            upkeep.sync(&SharedData, now, |c| build(&plan, c))
        } else {
            upkeep.sync_data(&SharedData, now)
        };
        let due = upkeep.due(&SharedData, now);
        drop(upkeep);
        report(&self.metrics, events);
        for fetch in due {
            self.dispatch(&plan, fetch, now);
        }
        self.settle(&plan, now);
    }

    fn create_http_context(&self, id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            id,
            plan: self.plan.clone(),
            upkeep: Rc::clone(&self.upkeep),
            metrics: Rc::clone(&self.metrics),
            waiting: Rc::clone(&self.waiting),
            tick: Rc::clone(&self.tick),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Set the root context's tick period (from a request's context too: the period is its
/// root's), if it changes.
fn set_tick(tick: &Cell<Duration>, period: Duration) {
    if tick.get() != period {
        tick.set(period);
        let _ = hostcalls::set_tick_period(period);
    }
}

/// Milliseconds of a duration, as `i64`.
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

struct Filter {
    id: u32,
    plan: Option<Rc<Plan>>,
    upkeep: Rc<RefCell<Upkeep>>,
    metrics: Rc<Metrics>,
    waiting: Waiting,
    tick: Rc<Cell<Duration>>,
}

impl Context for Filter {}

impl Drop for Filter {
    /// A request that ends while it waits (the client left) waits no more.
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.waiting.try_borrow_mut() {
            waiting.remove(&self.id);
        }
    }
}

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
        let now_ms = now_ms();
        let now = now_ms.div_euclid(1000);
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
                upkeep.wanted(issuer, now_ms);
            }
        }
        if let Some(tenant) = verdict.data_wanted.take() {
            // The tenant of the verified token: its data is fetched (once for every worker),
            // or loaded from what another worker stored.
            let (followed, events) =
                self.upkeep
                    .borrow_mut()
                    .data_wanted(&SharedData, &tenant, now_ms);
            report(&self.metrics, events);
            match followed {
                Some(true) => verdict = gate::handle(plan, &engine, &headers, now),
                Some(false) if self.waiting.borrow().len() < MAX_WAITING => {
                    let wait = plan.data.as_ref().map_or(0, |(d, _)| d.wait_ms);
                    let deadline = now_ms.saturating_add(i64::try_from(wait).unwrap_or(0));
                    self.waiting.borrow_mut().insert(
                        self.id,
                        Waiter {
                            tenant,
                            deadline,
                            headers,
                        },
                    );
                    // The root dispatches the fetch on its next tick, and watches for the data.
                    set_tick(&self.tick, WAIT_TICK);
                    return Action::Pause;
                }
                // Too many requests waiting, or a tenant whose data is not fetched: answered
                // now (503).
                Some(false) | None => {}
            }
        }
        if let Some(tenant) = &verdict.data_tenant {
            self.upkeep.borrow_mut().data_seen(tenant, now_ms);
        }
        carry_out(plan, &self.metrics, verdict, &headers)
    }
}

/// Count, log and carry out a verdict on the request in context: forward it with its
/// identity headers (`Continue`) or answer it.
fn carry_out(
    plan: &Plan,
    metrics: &Metrics,
    mut verdict: gate::Verdict,
    headers: &RequestHeaders,
) -> Action {
    if let Some(counter) = verdict.counter {
        metrics.increment(counter);
    }
    if let Some(name) = verdict.route_stat.take() {
        metrics.increment_named(name);
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
