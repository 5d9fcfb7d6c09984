//! Tenants' stored data for a host that keeps every tenant's (see [`SharedTenantData`]): which
//! tenant's document to fetch and when, what an answer means, which tenants to keep.

use super::shared::{lease_ms, set_lease, split, take_lease, version};
use super::{SharedStore, ms, redirect_message};
use crate::data::{DataDocument, DataError, MAX_DATA_DOCUMENT};
use crate::engine::Engine;
use crate::error::sanitize;
use std::collections::HashMap;
use std::fmt;

/// Longest tenant name put in a data URL, bytes.
const MAX_TENANT_NAME: usize = 256;

/// How tenants' data is fetched and kept, in milliseconds and bytes. The Envoy filter's
/// `data` configuration sets these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DataPolicy {
    /// A held tenant's data is polled for changes this often (500 ms: a write is enforced
    /// within about this long, plus the GET).
    pub poll: u64,
    /// The first retry after a failed fetch (1 s); each further failure doubles it, up to
    /// [`DataPolicy::max_retry`]. The last good data stays meanwhile.
    pub retry: u64,
    /// The longest wait between retries (10 s).
    pub max_retry: u64,
    /// The timeout of one GET (5 s): a fetch lease lasts twice this and a second.
    pub timeout: u64,
    /// The most bytes of data documents (snapshot JSON) a worker holds (16 MiB). Past it the
    /// tenants least recently seen are forgotten; a tenant whose own document is larger is
    /// refused.
    pub max_bytes: usize,
    /// A tenant no request was decided for in this long is forgotten (10 min).
    pub idle: u64,
}

impl Default for DataPolicy {
    fn default() -> Self {
        Self {
            poll: 500,
            retry: 1_000,
            max_retry: 10_000,
            timeout: 5_000,
            max_bytes: 16 << 20,
            idle: 600_000,
        }
    }
}

impl DataPolicy {
    /// Set the poll interval, the timeout of one GET, the byte budget and the idle expiry.
    #[must_use]
    pub fn with(mut self, poll: u64, timeout: u64, max_bytes: usize, idle: u64) -> Self {
        self.poll = poll;
        self.timeout = timeout;
        self.max_bytes = max_bytes;
        self.idle = idle;
        self
    }

    /// Set the first and the longest retry delay.
    #[must_use]
    pub fn with_retry(mut self, retry: u64, max_retry: u64) -> Self {
        self.retry = retry;
        self.max_retry = max_retry.max(retry);
        self
    }

    /// The largest document read: the budget, within the engine's own bound.
    fn max_document(&self) -> usize {
        self.max_bytes.min(MAX_DATA_DOCUMENT)
    }

    /// The wait after `failures` consecutive failures.
    fn backoff(&self, failures: u32) -> i64 {
        let doubled = self
            .retry
            .saturating_mul(1u64 << failures.saturating_sub(1).min(16));
        ms(doubled.min(self.max_retry))
    }
}

/// One GET of a tenant's data document: `Accept: application/json`, no redirect followed, the
/// body read up to the policy's byte budget. The host adds its own credential for the source
/// (the decision service's admin listener).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFetch {
    /// The tenant.
    pub tenant: String,
    /// The URL: `<base>/v1/data/<tenant>`, with `?since=<revision>` for changes. The tenant is
    /// percent-encoded: it is one path segment, whatever it holds.
    pub url: String,
    /// The revision the changes asked for start from (`None`: a snapshot).
    pub since: Option<u64>,
    /// `If-None-Match`: the ETag of the revision held.
    pub if_none_match: Option<String>,
}

/// What happened to a tenant's data, for the host's log (each event's `Display` is its line)
/// and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataEvent {
    /// A tenant's data was loaded into the engine.
    Loaded {
        /// The tenant.
        tenant: String,
        /// Its revision now.
        revision: u64,
        /// Its entities now.
        entities: usize,
        /// The size of its snapshot document, bytes.
        bytes: usize,
        /// Fetched by this worker (`false`: loaded from what another worker stored).
        fetched: bool,
    },
    /// A fetch failed or brought a document the engine refused: the data held, if any,
    /// stays, and the fetch is retried after `retry_ms`.
    Failed {
        /// The tenant.
        tenant: String,
        /// Why (no secret: URLs and status codes, the engine's reason).
        reason: String,
        /// A document came and was refused (too large, malformed, another tenant's, entities
        /// the bundle refuses).
        refused: bool,
        /// Whether data is still held for the tenant.
        held: bool,
        /// When the fetch is tried again, milliseconds from now.
        retry_ms: i64,
    },
    /// A tenant's data was forgotten: `idle` (no request for it within the idle expiry) or
    /// to stay within the byte budget. Its next request fetches it again.
    Evicted {
        /// The tenant.
        tenant: String,
        /// Forgotten for idleness rather than for the budget.
        idle: bool,
    },
    /// The document another worker stored does not load here.
    SharedRefused {
        /// The tenant.
        tenant: String,
        /// Why.
        reason: String,
    },
}

impl DataEvent {
    /// Whether something failed (a warning, in a host's log).
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Failed { .. } | Self::SharedRefused { .. })
    }
}

impl fmt::Display for DataEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Loaded {
                tenant,
                revision,
                entities,
                bytes,
                fetched,
            } => {
                let from = if *fetched {
                    "fetched"
                } else {
                    "shared by another worker"
                };
                write!(
                    f,
                    "data of tenant `{tenant}` at revision {revision} in use ({from}), {entities} entities, {bytes} bytes"
                )
            }
            Self::Failed {
                tenant,
                reason,
                refused,
                held,
                retry_ms,
            } => {
                let refused = if *refused { "refused: " } else { "" };
                let consequence = if *held {
                    "the last good data stays"
                } else {
                    "no data yet: its requests are answered 503"
                };
                write!(
                    f,
                    "fetching the data of tenant `{tenant}` failed ({refused}{reason}); {consequence}; next try in {retry_ms} ms"
                )
            }
            Self::Evicted { tenant, idle } => {
                let why = if *idle {
                    "no request for it within the idle expiry"
                } else {
                    "over the memory budget, least recently seen"
                };
                write!(f, "data of tenant `{tenant}` forgotten ({why})")
            }
            Self::SharedRefused { tenant, reason } => {
                write!(f, "shared data of tenant `{tenant}` refused: {reason}")
            }
        }
    }
}

/// A data document that came, and its body.
type Found = (DataDocument, Vec<u8>);

/// One tenant, as this worker sees it.
#[derive(Clone, Debug)]
struct TenantState {
    /// The revision this worker's engine holds.
    held: Option<u64>,
    /// The size of its snapshot document.
    bytes: usize,
    /// When a request last wanted or used it.
    seen: i64,
    due_at: i64,
    in_flight: Option<DataFetch>,
    /// Consecutive failures (for the backoff).
    failures: u32,
    /// The next fetch is a snapshot (changes were refused as not applying).
    full: bool,
    /// The version of the shared revision entry last looked at.
    shared: Option<u32>,
}

impl TenantState {
    fn new(now: i64) -> Self {
        Self {
            held: None,
            bytes: 0,
            seen: now,
            due_at: now,
            in_flight: None,
            failures: 0,
            full: false,
            shared: None,
        }
    }
}

/// The tenants' data of one worker's engine, fetched on first use and polled for changes, its
/// fetches shared with every other worker through a [`SharedStore`], for hosts that keep every
/// tenant's data (the Envoy filter):
///
/// - a decision that lacked tenant T's data ([`crate::Decision::data_wanted`]: the tenant of
///   the verified token, never one a client names) makes T wanted: its snapshot is due at once;
/// - one fetch per tenant is in flight for all workers (a lease in the store, as for keys);
///   the fetching worker stores the snapshot, `portcullis/data/<tenant>`
///   (`<revision>\n<snapshot JSON>`), and its revision, `portcullis/data-rev/<tenant>`, which
///   every worker looks at on [`SharedTenantData::sync`] and loads when it moves on;
/// - a held tenant is polled every [`DataPolicy::poll`] for the changes since its revision
///   (`?since=`, `If-None-Match`); a `304` changes nothing; changes that do not apply
///   (`data_revision`) bring a snapshot at once; a failure, a status other than 200/304, a
///   document over the budget, not JSON, another tenant's or refused by the engine keeps the
///   data held and is retried with a doubling delay;
/// - a worker holds at most [`DataPolicy::max_bytes`] of documents: past it, the tenants
///   least recently seen are forgotten (`Engine::forget_tenant_data`), and so is a tenant no
///   request was decided for within [`DataPolicy::idle`]; their next request fetches again.
#[derive(Clone, Debug)]
pub struct SharedTenantData {
    base: String,
    policy: DataPolicy,
    lease: i64,
    tenants: HashMap<String, TenantState>,
}

/// `tenant` as one URL path segment: unreserved characters (RFC 3986) as they are, every
/// other byte percent-encoded; `None` for a name that is empty, `.` or `..`, or too long.
pub(crate) fn tenant_segment(tenant: &str) -> Option<String> {
    if tenant.is_empty() || tenant == "." || tenant == ".." || tenant.len() > MAX_TENANT_NAME {
        return None;
    }
    let mut out = String::with_capacity(tenant.len());
    for &b in tenant.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Some(out)
}

fn doc_key(tenant: &str) -> String {
    format!("portcullis/data/{tenant}")
}

fn rev_key(tenant: &str) -> String {
    format!("portcullis/data-rev/{tenant}")
}

fn lease_key(tenant: &str) -> String {
    format!("portcullis/data-lease/{tenant}")
}

fn encode_doc(revision: u64, json: &[u8]) -> Vec<u8> {
    let mut out = format!("{revision}\n").into_bytes();
    out.extend_from_slice(json);
    out
}

/// A shared document: its revision and its JSON.
fn decode_doc(entry: &[u8]) -> Option<(u64, &[u8])> {
    let (revision, json) = split(entry)?;
    Some((std::str::from_utf8(revision).ok()?.parse().ok()?, json))
}

fn decode_rev(entry: Option<&[u8]>) -> Option<u64> {
    std::str::from_utf8(entry?).ok()?.parse().ok()
}

/// Parse a data document for `tenant`: JSON of the right shape, naming `tenant`.
fn parse_for(tenant: &str, body: &[u8]) -> Result<DataDocument, String> {
    let document: DataDocument = serde_json::from_slice(body)
        .map_err(|e| format!("not a data document: {}", crate::error::json_message(&e)))?;
    if document.tenant != tenant {
        return Err(format!(
            "the document is tenant `{}`'s, not `{}`'s",
            sanitize(&document.tenant, 64),
            sanitize(tenant, 64)
        ));
    }
    Ok(document)
}

impl SharedTenantData {
    /// Fetch from `base` (the decision service's admin listener, `http://127.0.0.1:9901`:
    /// `GET <base>/v1/data/<tenant>`), as `policy` says.
    pub fn new(base: &str, policy: DataPolicy) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            policy,
            lease: lease_ms(policy.timeout),
            tenants: HashMap::new(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> DataPolicy {
        self.policy
    }

    /// The tenants followed (held, being fetched or failing), by name.
    pub fn tenants(&self) -> Vec<(String, Option<u64>)> {
        let mut out: Vec<_> = self
            .tenants
            .iter()
            .map(|(t, s)| (t.clone(), s.held))
            .collect();
        out.sort();
        out
    }

    /// Whether `tenant` is followed.
    pub fn follows(&self, tenant: &str) -> bool {
        self.tenants.contains_key(tenant)
    }

    /// The bytes of documents held.
    pub fn held_bytes(&self) -> usize {
        self.tenants
            .values()
            .filter(|s| s.held.is_some())
            .map(|s| s.bytes)
            .sum()
    }

    /// When the next fetch is due; `None` when nothing is followed.
    pub fn next_due(&self) -> Option<i64> {
        self.tenants
            .values()
            .filter(|s| s.in_flight.is_none())
            .map(|s| s.due_at)
            .min()
    }

    /// A decision lacked `tenant`'s data: follow it (its snapshot is due at once) unless it
    /// is followed already — a fetch in flight or waiting for its retry is not brought
    /// forward, so requests cannot make the source busier. A tenant that cannot be put in a
    /// URL is never followed. Whether it is followed.
    pub fn wanted(&mut self, engine: &Engine, tenant: &str, now: i64) -> bool {
        if tenant_segment(tenant).is_none()
            || !engine.bundle().compiled().tenants.contains_key(tenant)
        {
            return false;
        }
        let state = self
            .tenants
            .entry(tenant.to_owned())
            .or_insert_with(|| TenantState::new(now));
        state.seen = now;
        if state.held.is_some() && engine.tenant_data_revision(tenant).is_none() {
            // The engine lost it (a new engine not yet given it): fetch again.
            state.held = None;
            state.shared = None;
            state.due_at = state.due_at.min(now);
        }
        true
    }

    /// A request was decided with `tenant`'s data (it stays "recently seen").
    pub fn seen(&mut self, tenant: &str, now: i64) {
        if let Some(state) = self.tenants.get_mut(tenant) {
            state.seen = now;
        }
    }

    /// A new engine is in use: it holds nothing yet; the next [`SharedTenantData::sync`] (or a
    /// request's [`SharedTenantData::sync_tenant`]) loads what the store holds, and tenants it
    /// lacks are fetched.
    pub fn reset(&mut self, now: i64) {
        for state in self.tenants.values_mut() {
            state.held = None;
            state.bytes = 0;
            state.shared = None;
            state.full = false;
            if state.in_flight.is_none() {
                state.due_at = state.due_at.min(now);
            }
        }
    }

    /// Forget the tenants not seen within the idle expiry, and load into `engine` the
    /// documents other workers stored since this one last looked.
    pub fn sync(&mut self, store: &dyn SharedStore, engine: &Engine, now: i64) -> Vec<DataEvent> {
        let mut events = self.expire(store, engine, now);
        let tenants: Vec<String> = self.tenants.keys().cloned().collect();
        for tenant in tenants {
            events.extend(self.sync_tenant(store, engine, &tenant, now));
        }
        events
    }

    /// Load `tenant`'s document into `engine` if another worker stored a revision newer than
    /// the one held (a request wanted it: it may be there already).
    pub fn sync_tenant(
        &mut self,
        store: &dyn SharedStore,
        engine: &Engine,
        tenant: &str,
        now: i64,
    ) -> Vec<DataEvent> {
        let Some(state) = self.tenants.get_mut(tenant) else {
            return Vec::new();
        };
        let Some((entry, Some(rev_version))) = store.get(&rev_key(tenant)) else {
            return Vec::new();
        };
        if state.shared == Some(rev_version) {
            return Vec::new();
        }
        state.shared = Some(rev_version);
        let Some(revision) = decode_rev(entry.as_deref()) else {
            return Vec::new();
        };
        if state.held.is_some_and(|held| held >= revision) {
            return Vec::new();
        }
        let Some((Some(entry), _)) = store.get(&doc_key(tenant)) else {
            return Vec::new();
        };
        let loaded = decode_doc(&entry)
            .ok_or_else(|| "not a stored document".to_owned())
            .and_then(|(_, json)| {
                let document = parse_for(tenant, json)?;
                if document.since.is_some() {
                    return Err("not a snapshot".to_owned());
                }
                let loaded = engine
                    .apply_tenant_data(document)
                    .map_err(|e| format!("{e} ({})", e.code()))?;
                Ok((loaded, json.len()))
            });
        match loaded {
            Ok((loaded, bytes)) => {
                state.held = Some(loaded.revision);
                state.bytes = bytes;
                state.failures = 0;
                state.full = false;
                if state.in_flight.is_none() {
                    state.due_at = state.due_at.max(now.saturating_add(ms(self.policy.poll)));
                }
                let mut events = vec![DataEvent::Loaded {
                    tenant: tenant.to_owned(),
                    revision: loaded.revision,
                    entities: loaded.entities,
                    bytes,
                    fetched: false,
                }];
                events.extend(self.within_budget(store, engine, tenant));
                events
            }
            Err(reason) => vec![DataEvent::SharedRefused {
                tenant: tenant.to_owned(),
                reason,
            }],
        }
    }

    /// The GETs due at `now` whose lease this worker took; the others are postponed until
    /// the worker holding their lease is done.
    pub fn due(&mut self, store: &dyn SharedStore, now: i64) -> Vec<DataFetch> {
        let mut out = Vec::new();
        for (tenant, state) in &mut self.tenants {
            if state.in_flight.is_some() || now < state.due_at {
                continue;
            }
            let Some(segment) = tenant_segment(tenant) else {
                continue;
            };
            let until = now.saturating_add(self.lease);
            if let Err(held_until) = take_lease(store, &lease_key(tenant), now, until) {
                state.due_at = state.due_at.max(held_until);
                continue;
            }
            let since = state.held.filter(|_| !state.full);
            let url = match since {
                Some(since) => format!("{}/v1/data/{segment}?since={since}", self.base),
                None => format!("{}/v1/data/{segment}", self.base),
            };
            let fetch = DataFetch {
                tenant: tenant.clone(),
                url,
                since,
                if_none_match: since.map(|r| format!("\"{r}\"")),
            };
            state.in_flight = Some(fetch.clone());
            out.push(fetch);
        }
        out
    }

    /// `fetch` could not be performed (no answer, a timeout, the call could not be made): the
    /// data held stays; every worker waits for the retry delay.
    pub fn failed(
        &mut self,
        store: &dyn SharedStore,
        fetch: &DataFetch,
        reason: &str,
        now: i64,
    ) -> Option<DataEvent> {
        self.fail(store, fetch, reason.to_owned(), false, now)
    }

    fn fail(
        &mut self,
        store: &dyn SharedStore,
        fetch: &DataFetch,
        reason: String,
        refused: bool,
        now: i64,
    ) -> Option<DataEvent> {
        let state = self.tenants.get_mut(&fetch.tenant)?;
        if state.in_flight.as_ref() != Some(fetch) {
            return None;
        }
        state.in_flight = None;
        state.failures = state.failures.saturating_add(1);
        let retry_ms = self.policy.backoff(state.failures);
        state.due_at = now.saturating_add(retry_ms);
        set_lease(store, &lease_key(&fetch.tenant), state.due_at);
        Some(DataEvent::Failed {
            tenant: fetch.tenant.clone(),
            reason,
            refused,
            held: state.held.is_some(),
            retry_ms,
        })
    }

    /// The answer to `fetch` at `now`: its status and body length; `body` reads the body
    /// when it is needed. What happened, and the GET to perform next (a snapshot, when the
    /// changes did not apply). `None` for an answer to a fetch no longer in flight.
    pub fn answer(
        &mut self,
        store: &dyn SharedStore,
        engine: &Engine,
        fetch: &DataFetch,
        (status, body_len): (u16, usize),
        body: impl FnOnce() -> Vec<u8>,
        now: i64,
    ) -> (Vec<DataEvent>, Option<DataFetch>) {
        let poll = ms(self.policy.poll);
        let Some(state) = self.tenants.get_mut(&fetch.tenant) else {
            return (Vec::new(), None);
        };
        if state.in_flight.as_ref() != Some(fetch) {
            return (Vec::new(), None);
        }
        let url = sanitize(&fetch.url, 200);
        let refuse = |reason: String| (reason, true);
        let outcome: Result<Option<Found>, (String, bool)> = match status {
            304 if fetch.if_none_match.is_some() && state.held.is_some() => Ok(None),
            200 if body_len > self.policy.max_document() => Err(refuse(format!(
                "`{url}` is {body_len} bytes, over the budget of {} (`max_bytes`)",
                self.policy.max_document()
            ))),
            200 => {
                let body = body();
                parse_for(&fetch.tenant, &body)
                    .map(|doc| Some((doc, body)))
                    .map_err(refuse)
            }
            300..400 => Err((redirect_message(&format!("`{url}`"), status), false)),
            0 => Err((format!("`{url}` did not answer"), false)),
            _ => Err((format!("`{url}` answered HTTP {status}"), false)),
        };
        let (document, body) = match outcome {
            Err((reason, refused)) => {
                let event = self.fail(store, fetch, reason, refused, now);
                return (event.into_iter().collect(), None);
            }
            Ok(None) => {
                state.in_flight = None;
                state.failures = 0;
                state.due_at = now.saturating_add(poll);
                set_lease(store, &lease_key(&fetch.tenant), state.due_at);
                return (Vec::new(), None);
            }
            Ok(Some(found)) => found,
        };
        let snapshot = document.since.is_none();
        // Changes since the revision held that bring none, or a snapshot of it (a source
        // that ignores `since`): nothing to load.
        let same = state.held == Some(document.revision) && !state.full;
        if same && (snapshot || document.since == Some(document.revision)) {
            state.in_flight = None;
            state.failures = 0;
            state.due_at = now.saturating_add(poll);
            set_lease(store, &lease_key(&fetch.tenant), state.due_at);
            return (Vec::new(), None);
        }
        let loaded = match engine.apply_tenant_data(document) {
            Ok(loaded) => loaded,
            Err(DataError::Revision { .. }) if !snapshot => {
                // The changes do not start where this engine is: a snapshot, at once.
                state.in_flight = None;
                state.full = true;
                state.due_at = now;
                set_lease(store, &lease_key(&fetch.tenant), 0);
                return (Vec::new(), self.due(store, now).into_iter().next());
            }
            Err(e) => {
                let reason = format!("{} ({})", e, e.code());
                let event = self.fail(store, fetch, reason, true, now);
                return (event.into_iter().collect(), None);
            }
        };
        state.in_flight = None;
        state.failures = 0;
        state.full = false;
        state.due_at = now.saturating_add(poll);
        set_lease(store, &lease_key(&fetch.tenant), state.due_at);
        // What every worker loads: the snapshot as it came, or the engine's own after changes.
        let json = if snapshot {
            body
        } else {
            engine
                .tenant_data(&fetch.tenant)
                .and_then(|d| serde_json::to_vec(&d.document()).ok())
                .unwrap_or_default()
        };
        state.held = Some(loaded.revision);
        state.bytes = json.len();
        if json.len() > self.policy.max_bytes {
            let reason = format!(
                "its data is {} bytes, over the budget of {} (`max_bytes`)",
                json.len(),
                self.policy.max_bytes
            );
            engine.forget_tenant_data(&fetch.tenant);
            state.held = None;
            state.failures = state.failures.saturating_add(1);
            let retry_ms = self.policy.backoff(state.failures);
            state.due_at = now.saturating_add(retry_ms);
            set_lease(store, &lease_key(&fetch.tenant), state.due_at);
            let event = DataEvent::Failed {
                tenant: fetch.tenant.clone(),
                reason,
                refused: true,
                held: false,
                retry_ms,
            };
            return (vec![event], None);
        }
        let doc = doc_key(&fetch.tenant);
        let rev = rev_key(&fetch.tenant);
        if store.set(&doc, &encode_doc(loaded.revision, &json), None)
            && store.set(&rev, loaded.revision.to_string().as_bytes(), None)
        {
            state.shared = version(store, &rev);
        }
        let mut events = vec![DataEvent::Loaded {
            tenant: fetch.tenant.clone(),
            revision: loaded.revision,
            entities: loaded.entities,
            bytes: json.len(),
            fetched: true,
        }];
        events.extend(self.within_budget(store, engine, &fetch.tenant));
        (events, None)
    }

    /// Forget the tenants least recently seen, other than `keep`, until the documents held fit
    /// the budget.
    fn within_budget(
        &mut self,
        store: &dyn SharedStore,
        engine: &Engine,
        keep: &str,
    ) -> Vec<DataEvent> {
        let mut events = Vec::new();
        while self.held_bytes() > self.policy.max_bytes {
            let Some(oldest) = self
                .tenants
                .iter()
                .filter(|(t, s)| s.held.is_some() && t.as_str() != keep)
                .min_by_key(|(_, s)| s.seen)
                .map(|(t, _)| t.clone())
            else {
                break;
            };
            self.evict(store, engine, &oldest);
            events.push(DataEvent::Evicted {
                tenant: oldest,
                idle: false,
            });
        }
        events
    }

    /// Forget the tenants not seen within the idle expiry.
    fn expire(&mut self, store: &dyn SharedStore, engine: &Engine, now: i64) -> Vec<DataEvent> {
        let idle = ms(self.policy.idle);
        let expired: Vec<String> = self
            .tenants
            .iter()
            .filter(|(_, s)| now.saturating_sub(s.seen) >= idle && s.in_flight.is_none())
            .map(|(t, _)| t.clone())
            .collect();
        let mut events = Vec::new();
        for tenant in expired {
            let held = self.tenants.get(&tenant).is_some_and(|s| s.held.is_some());
            self.evict(store, engine, &tenant);
            if held {
                events.push(DataEvent::Evicted { tenant, idle: true });
            }
        }
        events
    }

    /// Forget `tenant` here, and clear what the store holds of it (the other workers that hold
    /// it keep it, and store their next revision again).
    fn evict(&mut self, store: &dyn SharedStore, engine: &Engine, tenant: &str) {
        engine.forget_tenant_data(tenant);
        self.tenants.remove(tenant);
        store.set(&doc_key(tenant), b"", None);
        store.set(&rev_key(tenant), b"", None);
    }
}

#[cfg(test)]
#[cfg(feature = "rust-crypto")]
mod tests {
    use super::*;
    use crate::bundle::{Bundle, BundleSources, PolicySource};
    use crate::lifecycle::shared::tests::Store;
    use serde_json::{Value, json};

    const BASE: &str = "http://127.0.0.1:9901";

    const JWKS: &str = include_str!("../../../policies/techfin/dev-keys/acme-rs256.jwks.json");

    /// A bundle storing `Report` for tenants `acme`, `globex` and `x.y_z-1`.
    fn engine() -> Engine {
        let jwks: Value = serde_json::from_str(JWKS).unwrap();
        let tenant = |n: &str| {
            json!({"issuers": [{"issuer": format!("https://{}.example", n.replace([' ', '/'], "-")),
                                "audiences": ["api"], "algorithms": ["RS256"], "jwks": jwks}]})
        };
        let tenants = json!({"tenants": {"acme": tenant("acme"), "globex": tenant("globex"), "x.y_z-1": tenant("xyz")}});
        let sources = BundleSources {
            schema: Some((
                "schema.cedarschema".into(),
                concat!(
                    "entity Report { tenant: String, department?: String };\n",
                    "entity Tenant;\n",
                    "action \"data.read\", \"data.write\" appliesTo { principal: Report, resource: Tenant };\n",
                )
                .into(),
            )),
            policies: vec![PolicySource {
                file: "p.cedar".into(),
                tenant: None,
                source: "@id(\"all\")\npermit(principal, action, resource);".into(),
            }],
            tenants: Some(("tenants.json".into(), tenants.to_string())),
            settings: Some((
                "bundle.json".into(),
                json!({"data": {"stored": ["Report"]}}).to_string(),
            )),
            ..BundleSources::default()
        };
        let compiled = sources.compile(&mut |_| Err("no files".into())).unwrap();
        Engine::new(Bundle::load(compiled).unwrap())
    }

    fn report(tenant: &str, id: &str, department: &str) -> Value {
        json!({"uid": {"type": "Report", "id": format!("{tenant}/{id}")},
               "attrs": {"tenant": tenant, "department": department}, "parents": []})
    }

    fn snapshot(tenant: &str, revision: u64, entities: &[Value]) -> Vec<u8> {
        json!({"tenant": tenant, "revision": revision, "entities": entities})
            .to_string()
            .into_bytes()
    }

    fn changes(tenant: &str, since: u64, revision: u64, entity: &Value) -> Vec<u8> {
        json!({"tenant": tenant, "since": since, "revision": revision, "changes": [
            {"revision": revision, "type": "Report", "id": entity["uid"]["id"], "entity": entity}
        ]})
        .to_string()
        .into_bytes()
    }

    fn worker() -> SharedTenantData {
        SharedTenantData::new(&format!("{BASE}/"), DataPolicy::default())
    }

    fn ok(body: &[u8]) -> (u16, usize) {
        (200, body.len())
    }

    fn department(engine: &Engine, tenant: &str, id: &str) -> Option<Value> {
        let data = engine.tenant_data(tenant)?;
        data.get("Report", &format!("{tenant}/{id}"))
            .map(|e| e["attrs"]["department"].clone())
    }

    #[test]
    fn tenant_names_are_one_encoded_path_segment() {
        assert_eq!(tenant_segment("acme").as_deref(), Some("acme"));
        assert_eq!(tenant_segment("a b/c").as_deref(), Some("a%20b%2Fc"));
        assert_eq!(
            tenant_segment("x?since=1#y").as_deref(),
            Some("x%3Fsince%3D1%23y")
        );
        assert_eq!(tenant_segment("é").as_deref(), Some("%C3%A9"));
        for bad in ["", ".", "..", &"a".repeat(MAX_TENANT_NAME + 1)] {
            assert_eq!(tenant_segment(bad), None, "{bad}");
        }
        let engine = engine();
        let mut w = worker();
        let store = Store::default();
        assert!(w.wanted(&engine, "x.y_z-1", 0));
        let [fetch] = <[DataFetch; 1]>::try_from(w.due(&store, 0)).unwrap();
        assert_eq!(fetch.url, "http://127.0.0.1:9901/v1/data/x.y_z-1");
        // A tenant the bundle does not have is never fetched.
        assert!(!w.wanted(&engine, "initech", 0));
        assert!(!w.wanted(&engine, "..", 0));
        assert!(w.due(&store, 0).is_empty());
    }

    #[test]
    fn a_wanted_tenant_is_fetched_once_for_every_worker_then_polled() {
        let (engine_a, engine_b, store) = (engine(), engine(), Store::default());
        let (mut a, mut b) = (worker(), worker());
        assert!(a.wanted(&engine_a, "acme", 0));
        assert!(b.wanted(&engine_b, "acme", 0));
        let [fetch] = <[DataFetch; 1]>::try_from(a.due(&store, 0)).unwrap();
        assert_eq!(
            fetch,
            DataFetch {
                tenant: "acme".into(),
                url: format!("{BASE}/v1/data/acme"),
                since: None,
                if_none_match: None
            }
        );
        assert!(b.due(&store, 1).is_empty(), "the lease is a's");
        assert!(a.due(&store, 1).is_empty(), "in flight");
        assert_eq!(b.next_due(), Some(11_000));

        let body = snapshot("acme", 3, &[report("acme", "q3", "risk")]);
        let (events, next) = a.answer(&store, &engine_a, &fetch, ok(&body), || body.clone(), 10);
        assert_eq!(next, None);
        assert_eq!(
            events,
            [DataEvent::Loaded {
                tenant: "acme".into(),
                revision: 3,
                entities: 1,
                bytes: body.len(),
                fetched: true
            }]
        );
        assert_eq!(department(&engine_a, "acme", "q3"), Some(json!("risk")));
        assert_eq!(store.text("portcullis/data-rev/acme").as_deref(), Some("3"));
        assert_eq!(
            store.text("portcullis/data-lease/acme").as_deref(),
            Some("510"),
            "every worker waits for the next poll"
        );
        assert!(a.sync(&store, &engine_a, 11).is_empty(), "a holds it");

        // b loads what a stored, without fetching.
        let events = b.sync_tenant(&store, &engine_b, "acme", 20);
        assert!(
            matches!(
                &events[..],
                [DataEvent::Loaded {
                    revision: 3,
                    fetched: false,
                    ..
                }]
            ),
            "{events:?}"
        );
        assert_eq!(department(&engine_b, "acme", "q3"), Some(json!("risk")));
        assert!(b.sync(&store, &engine_b, 21).is_empty(), "loaded once");

        // The poll: changes since the revision held, 304 when there are none.
        assert!(a.due(&store, 509).is_empty());
        let [poll] = <[DataFetch; 1]>::try_from(a.due(&store, 510)).unwrap();
        assert_eq!(poll.url, format!("{BASE}/v1/data/acme?since=3"));
        assert_eq!(poll.if_none_match.as_deref(), Some("\"3\""));
        assert!(b.due(&store, 520).is_empty(), "a polls for both");
        let (events, _) = a.answer(&store, &engine_a, &poll, (304, 0), || panic!("read"), 515);
        assert!(events.is_empty());
        assert_eq!(a.next_due(), Some(1_015));

        // A change: a applies it, stores the new snapshot, b loads it.
        let [poll] = <[DataFetch; 1]>::try_from(a.due(&store, 1_015)).unwrap();
        let body = changes("acme", 3, 4, &report("acme", "q3", "finance"));
        let (events, _) = a.answer(&store, &engine_a, &poll, ok(&body), || body.clone(), 1_020);
        assert!(
            matches!(
                &events[..],
                [DataEvent::Loaded {
                    revision: 4,
                    fetched: true,
                    ..
                }]
            ),
            "{events:?}"
        );
        assert_eq!(department(&engine_a, "acme", "q3"), Some(json!("finance")));
        let events = b.sync(&store, &engine_b, 1_030);
        assert!(
            matches!(
                &events[..],
                [DataEvent::Loaded {
                    revision: 4,
                    fetched: false,
                    ..
                }]
            ),
            "{events:?}"
        );
        assert_eq!(department(&engine_b, "acme", "q3"), Some(json!("finance")));
        assert_eq!(engine_b.tenant_data_revision("acme"), Some(4));
    }

    #[test]
    fn refused_answers_keep_the_data_and_back_off() {
        let (engine, store) = (engine(), Store::default());
        let mut a = worker();
        a.wanted(&engine, "acme", 0);
        // The source is down: no data yet, retried after 1 s, then 2 s.
        let [fetch] = <[DataFetch; 1]>::try_from(a.due(&store, 0)).unwrap();
        let event = a.failed(&store, &fetch, "no healthy upstream", 0).unwrap();
        assert_eq!(
            event,
            DataEvent::Failed {
                tenant: "acme".into(),
                reason: "no healthy upstream".into(),
                refused: false,
                held: false,
                retry_ms: 1_000
            }
        );
        assert_eq!(
            event.to_string(),
            "fetching the data of tenant `acme` failed (no healthy upstream); no data yet: its requests are answered 503; next try in 1000 ms"
        );
        assert!(
            a.wanted(&engine, "acme", 10),
            "followed, not brought forward"
        );
        assert!(a.due(&store, 999).is_empty());
        let [fetch] = <[DataFetch; 1]>::try_from(a.due(&store, 1_000)).unwrap();
        let (events, _) = a.answer(&store, &engine, &fetch, (503, 0), Vec::new, 1_000);
        assert!(
            matches!(
                &events[..],
                [DataEvent::Failed {
                    retry_ms: 2_000,
                    refused: false,
                    ..
                }]
            ),
            "{events:?}"
        );
        assert_eq!(
            store.text("portcullis/data-lease/acme").as_deref(),
            Some("3000")
        );
        let [fetch] = <[DataFetch; 1]>::try_from(a.due(&store, 3_000)).unwrap();
        let body = snapshot("acme", 1, &[report("acme", "q3", "risk")]);
        a.answer(&store, &engine, &fetch, ok(&body), || body.clone(), 3_000);
        assert_eq!(engine.tenant_data_revision("acme"), Some(1));

        // Each of these is refused or failed, and the data held stays.
        let other = snapshot("globex", 9, &[]);
        let bad_entity = snapshot("acme", 2, &[report("globex", "q3", "risk")]);
        let cases: [(u16, &[u8], &str, bool); 6] = [
            (200, b"{not json", "not a data document", true),
            (200, &other, "tenant `globex`'s, not `acme`'s", true),
            (200, &bad_entity, "(data_other_tenant)", true),
            (
                302,
                b"",
                "redirect (HTTP 302), which is not followed",
                false,
            ),
            (401, b"", "answered HTTP 401", false),
            (0, b"", "did not answer", false),
        ];
        let mut now = 3_000;
        for (status, body, expected, refused) in cases {
            now += 60_000;
            let [fetch] = <[DataFetch; 1]>::try_from(a.due(&store, now)).unwrap();
            let (events, _) = a.answer(
                &store,
                &engine,
                &fetch,
                (status, body.len()),
                || body.to_vec(),
                now,
            );
            let [
                DataEvent::Failed {
                    reason,
                    refused: r,
                    held: true,
                    ..
                },
            ] = &events[..]
            else {
                panic!("{events:?}")
            };
            assert!(reason.contains(expected), "{reason}");
            assert_eq!(*r, refused, "{reason}");
            assert_eq!(engine.tenant_data_revision("acme"), Some(1));
            assert_eq!(department(&engine, "acme", "q3"), Some(json!("risk")));
        }
        // Over the budget: refused without reading the body.
        let mut small =
            SharedTenantData::new(BASE, DataPolicy::default().with(500, 5_000, 100, 600_000));
        small.wanted(&engine, "globex", 0);
        let [fetch] = <[DataFetch; 1]>::try_from(small.due(&store, 0)).unwrap();
        let (events, _) = small.answer(&store, &engine, &fetch, (200, 101), || panic!("read"), 0);
        assert!(
            matches!(&events[..], [DataEvent::Failed { refused: true, held: false, reason, .. }] if reason.contains("over the budget")),
            "{events:?}"
        );
        // A late answer to a settled fetch is ignored.
        assert_eq!(
            small.answer(&store, &engine, &fetch, (200, 2), || b"{}".to_vec(), 1),
            (Vec::new(), None)
        );
    }

    #[test]
    fn changes_that_do_not_apply_bring_a_snapshot() {
        let (engine, store) = (engine(), Store::default());
        let mut a = worker();
        a.wanted(&engine, "acme", 0);
        let [fetch] = <[DataFetch; 1]>::try_from(a.due(&store, 0)).unwrap();
        let body = snapshot("acme", 2, &[]);
        a.answer(&store, &engine, &fetch, ok(&body), || body.clone(), 0);
        let [poll] = <[DataFetch; 1]>::try_from(a.due(&store, 500)).unwrap();
        let body = changes("acme", 5, 6, &report("acme", "q3", "risk"));
        let (events, next) = a.answer(&store, &engine, &poll, ok(&body), || body.clone(), 500);
        assert!(events.is_empty());
        let next = next.unwrap();
        assert_eq!(
            (next.url.as_str(), next.since),
            ("http://127.0.0.1:9901/v1/data/acme", None)
        );
        let body = snapshot("acme", 6, &[report("acme", "q3", "risk")]);
        let (events, _) = a.answer(&store, &engine, &next, ok(&body), || body.clone(), 501);
        assert!(matches!(
            &events[..],
            [DataEvent::Loaded { revision: 6, .. }]
        ));
        // Changes since the revision held that bring nothing new.
        let [poll] = <[DataFetch; 1]>::try_from(a.due(&store, 1_001)).unwrap();
        let body = json!({"tenant": "acme", "since": 6, "revision": 6})
            .to_string()
            .into_bytes();
        let (events, _) = a.answer(&store, &engine, &poll, ok(&body), || body.clone(), 1_001);
        assert!(events.is_empty(), "{events:?}");
        // A source that ignores `since`: the snapshot of the revision held changes nothing.
        let [poll] = <[DataFetch; 1]>::try_from(a.due(&store, 1_501)).unwrap();
        let body = snapshot("acme", 6, &[]);
        let (events, _) = a.answer(&store, &engine, &poll, ok(&body), || body.clone(), 1_501);
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(engine.tenant_data("acme").unwrap().len(), 1);
    }

    #[test]
    fn the_budget_evicts_the_tenants_least_recently_seen_and_idle_ones_expire() {
        let (engine, store) = (engine(), Store::default());
        let acme = snapshot("acme", 1, &[report("acme", "q3", "risk")]);
        let globex = snapshot("globex", 1, &[report("globex", "q3", "risk")]);
        let budget = acme.len() + globex.len() / 2;
        let mut a =
            SharedTenantData::new(BASE, DataPolicy::default().with(500, 5_000, budget, 60_000));
        let load = |a: &mut SharedTenantData, tenant: &str, body: &[u8], now| {
            assert!(a.wanted(&engine, tenant, now));
            let due = a.due(&store, now);
            let fetch = due.into_iter().find(|f| f.tenant == tenant).unwrap();
            a.answer(&store, &engine, &fetch, ok(body), || body.to_vec(), now)
                .0
        };
        load(&mut a, "acme", &acme, 0);
        assert_eq!(a.held_bytes(), acme.len());
        let events = load(&mut a, "globex", &globex, 10);
        assert_eq!(
            events[1..],
            [DataEvent::Evicted {
                tenant: "acme".into(),
                idle: false
            }]
        );
        assert_eq!(
            events[1].to_string(),
            "data of tenant `acme` forgotten (over the memory budget, least recently seen)"
        );
        assert_eq!(engine.tenant_data_revision("acme"), None);
        assert_eq!(
            store.text("portcullis/data/acme").as_deref(),
            Some(""),
            "cleared"
        );
        assert_eq!(a.tenants(), [("globex".to_owned(), Some(1))]);
        // Acme's next request fetches it again, once the last poll's hold is over (and globex
        // goes).
        let events = load(&mut a, "acme", &acme, 600);
        assert!(
            matches!(
                &events[..],
                [
                    DataEvent::Loaded { .. },
                    DataEvent::Evicted { idle: false, .. }
                ]
            ),
            "{events:?}"
        );
        // Seen recently, acme stays; idle, it goes.
        a.seen("acme", 30_000);
        assert!(a.sync(&store, &engine, 60_019).is_empty());
        let events = a.sync(&store, &engine, 90_000);
        assert_eq!(
            events,
            [DataEvent::Evicted {
                tenant: "acme".into(),
                idle: true
            }]
        );
        assert!(a.tenants().is_empty());
        assert_eq!(engine.tenant_data_revision("acme"), None);
    }

    #[test]
    fn a_new_engine_loads_the_shared_documents_and_refuses_what_does_not_load() {
        let (engine, store) = (engine(), Store::default());
        let mut a = worker();
        a.wanted(&engine, "acme", 0);
        let [fetch] = <[DataFetch; 1]>::try_from(a.due(&store, 0)).unwrap();
        let body = snapshot("acme", 1, &[report("acme", "q3", "risk")]);
        a.answer(&store, &engine, &fetch, ok(&body), || body.clone(), 0);
        let fresh = self::engine();
        a.reset(5);
        assert!(a.wanted(&fresh, "acme", 5));
        let events = a.sync(&store, &fresh, 6);
        assert!(
            matches!(&events[..], [DataEvent::Loaded { fetched: false, .. }]),
            "{events:?}"
        );
        assert_eq!(fresh.tenant_data_revision("acme"), Some(1));

        // A stored document of another tenant, or not a document: refused, not retried.
        let mut b = worker();
        let other = self::engine();
        b.wanted(&other, "globex", 0);
        store.set("portcullis/data/globex", &encode_doc(1, &body), None);
        store.set("portcullis/data-rev/globex", b"1", None);
        let events = b.sync(&store, &other, 1);
        assert!(
            matches!(&events[..], [DataEvent::SharedRefused { reason, .. }] if reason.contains("`acme`'s, not `globex`'s")),
            "{events:?}"
        );
        assert!(b.sync(&store, &other, 2).is_empty(), "looked at once");
        assert_eq!(other.tenant_data_revision("globex"), None);
    }
}
