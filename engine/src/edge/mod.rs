//! The HTTP edge, sans I/O: what a gateway does with one request — map its method and path to
//! an action and a resource with the bundle's routes, find its bearer token (RFC 6750), ask the
//! engine, and answer: forward with the caller's identity headers, or respond 400/401/403/503.
//!
//! The Envoy filter and the decision service's ext_authz both call [`Edge::decide`], so they
//! cannot disagree on a request. Hosts only read the request and carry out the
//! [`EdgeVerdict`].
//!
//! Rules every host gets:
//! - paths are checked before routing (see [`routes`]): a parameter that decodes to `/`, `\`,
//!   NUL, `.` or `..` is a 400, never a resource id;
//! - a token in more than one configured place is a 400 (RFC 6750 §2); the same input header
//!   sent twice (two `Authorization` headers, two values of a header a route reads) is a 403;
//! - method-override headers (`X-HTTP-Method-Override` and kin) are refused (400): the decision
//!   is made on the method the upstream is sent, never on one it might switch to;
//! - a CORS preflight passes without a token only when a route matches the method it asks
//!   about and its path;
//! - identity headers are set only on allowed requests; the client's copies of them, under any
//!   spelling (`x_portcullis_tenant` included), are never read and never forwarded
//!   ([`ForwardHeaders::is_identity`]).

pub mod routes;
mod token;

pub use routes::{ResourceSpec, RouteSpec, RoutesFile, ValueSpec};
pub use token::TokenSource;

use crate::bundle::Bundle;
use crate::decision::{Decision, Outcome};
use crate::engine::Engine;
use crate::json_text::{push_int, push_opt_string, push_string};
use routes::MapError;
use serde::{Deserialize, Serialize};

/// The value of a header in a request, as an edge needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Not sent.
    Absent,
    /// Sent once, with this value.
    One(&'a [u8]),
    /// Sent more than once.
    Repeated,
}

/// A request's headers. Names are lowercase, as HTTP/2 and Envoy have them.
pub trait Headers {
    /// The header `name`.
    fn get(&self, name: &str) -> Lookup<'_>;
}

/// Headers as `(name, value)` pairs, names lowercase, every value of a repeated header its
/// own pair (what ext_authz and the CLI hand over).
#[derive(Clone, Copy, Debug)]
pub struct HeaderPairs<'a>(pub &'a [(String, Vec<u8>)]);

impl Headers for HeaderPairs<'_> {
    fn get(&self, name: &str) -> Lookup<'_> {
        self.lookup(name)
    }
}

impl<'a> HeaderPairs<'a> {
    /// [`Headers::get`], borrowing from the pairs rather than from this view of them (for a
    /// host's own header type that holds the pairs).
    pub fn lookup(self, name: &str) -> Lookup<'a> {
        let mut found = self.0.iter().filter(|(n, _)| n == name);
        match (found.next(), found.next()) {
            (None, _) => Lookup::Absent,
            (Some((_, value)), None) => Lookup::One(value),
            (Some(_), Some(_)) => Lookup::Repeated,
        }
    }
}

/// One HTTP request as an edge sees it.
#[derive(Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The method (`GET`).
    pub method: &'a str,
    /// The path with its query (`/tenants/acme/reports/q3?x=1`), as the upstream will get it.
    pub path: &'a str,
    /// The headers.
    pub headers: &'a dyn Headers,
}

/// What happens to a request that no route matches.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// Answer 403 (the default).
    #[default]
    Deny,
    /// Forward without a decision (identity headers are still stripped). Safe only when the
    /// upstream routes exactly like the bundle's routes.
    Pass,
}

/// What to do when no decision can be made because the token's issuer has no keys yet.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Answer 503 (the default).
    #[default]
    Closed,
    /// Forward the request without identity headers.
    Open,
}

/// Identity headers set on allowed requests. A client's copies of them are never read and
/// never forwarded, whatever the decision.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ForwardHeaders {
    /// The principal's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The principal's id (subject or client id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The principal's roles: comma-separated, each percent-encoded (`%`, `,`, and anything
    /// outside printable ASCII), so a role containing `,` stays one role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<String>,
    /// The decision id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
}

impl Default for ForwardHeaders {
    fn default() -> Self {
        Self {
            tenant: Some("x-portcullis-tenant".into()),
            subject: Some("x-portcullis-subject".into()),
            roles: Some("x-portcullis-roles".into()),
            decision_id: Some("x-portcullis-decision-id".into()),
        }
    }
}

impl ForwardHeaders {
    /// Every configured header name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        [&self.tenant, &self.subject, &self.roles, &self.decision_id]
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Whether a request header `name` (any case, `_` or `-`) is one of the identity headers:
    /// WSGI, Rack and CGI upstreams read `x_portcullis_tenant` as `x-portcullis-tenant`.
    pub fn is_identity(&self, name: &str) -> bool {
        self.names().any(|identity| same_header(identity, name))
    }

    /// Remove a client's copies of the identity headers, under any spelling, from a request's
    /// `headers`: the names of those it sent, as it spelled them, each once (what a host
    /// removes from the request before it goes upstream).
    pub fn strip(&self, headers: &mut Vec<(String, Vec<u8>)>) -> Vec<String> {
        let mut spoofed: Vec<String> = Vec::new();
        headers.retain(|(name, _)| {
            let identity = self.is_identity(name);
            if identity && !spoofed.contains(name) {
                spoofed.push(name.clone());
            }
            !identity
        });
        spoofed
    }
}

/// Header names equal up to case and `_`/`-`.
fn same_header(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let fold = |c: u8| {
                if c == b'_' {
                    b'-'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            fold(x) == fold(y)
        })
}

/// Edge options: how a gateway treats requests around the decision. The routes themselves are
/// in the bundle.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EdgeOptions {
    /// What happens to a request no route matches (`deny`).
    #[serde(default)]
    pub unmatched: Unmatched,
    /// Where the bearer token is read from, in order (the `authorization` header with the
    /// `Bearer ` prefix).
    #[serde(default = "default_token_sources")]
    pub token: Vec<TokenSource>,
    /// Identity headers set on allowed requests.
    #[serde(default)]
    pub forward: ForwardHeaders,
    /// Decide and log, but always forward (`false`).
    #[serde(default)]
    pub dry_run: bool,
    /// Let CORS preflights of routed requests through without a token (`true`).
    #[serde(default = "yes")]
    pub cors_preflight: bool,
    /// When the token's issuer has no keys yet (`closed`).
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// The `realm` of `WWW-Authenticate` challenges (`api`).
    #[serde(default = "default_realm")]
    pub realm: String,
}

impl Default for EdgeOptions {
    fn default() -> Self {
        Self {
            unmatched: Unmatched::Deny,
            token: default_token_sources(),
            forward: ForwardHeaders::default(),
            dry_run: false,
            cors_preflight: true,
            failure_mode: FailureMode::Closed,
            realm: default_realm(),
        }
    }
}

fn default_token_sources() -> Vec<TokenSource> {
    vec![TokenSource::Header {
        name: "authorization".into(),
        prefix: "Bearer ".into(),
    }]
}

fn yes() -> bool {
    true
}

fn default_realm() -> String {
    "api".into()
}

/// Edge options that do not hold together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EdgeConfigError(pub String);

/// Validated edge options.
#[derive(Clone, Debug)]
pub struct Edge {
    options: EdgeOptions,
    challenge_missing: String,
    challenge_invalid: String,
    challenge_request: String,
}

/// Request headers that ask an upstream to act as if the method were another.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// How an edge request ended, for counters and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeOutcome {
    /// Allowed by policy (forwarded with identity).
    Allowed,
    /// Denied by policy, or no route with `unmatched: deny`.
    Denied,
    /// No token, or one that does not verify.
    Unauthenticated,
    /// The request cannot be mapped (bad path, repeated input, two tokens, method override).
    Invalid,
    /// No decision could be made (no keys for the token's issuer yet, no stored data for its
    /// tenant yet).
    Unavailable,
    /// A CORS preflight of a routed request, forwarded without a decision.
    Preflight,
    /// No route matched and `unmatched: pass` forwarded it without a decision.
    NoRoute,
}

impl EdgeOutcome {
    /// The outcome's name: `allowed`, `denied`, `unauthenticated`, `invalid`, `unavailable`,
    /// `preflight` or `no-route`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Unauthenticated => "unauthenticated",
            Self::Invalid => "invalid",
            Self::Unavailable => "unavailable",
            Self::Preflight => "preflight",
            Self::NoRoute => "no-route",
        }
    }
}

/// What the host does with the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EdgeAction {
    /// Forward upstream with these identity headers (after every client copy of an identity
    /// header was removed).
    Forward(Vec<(String, String)>),
    /// Answer locally.
    Respond {
        /// HTTP status.
        status: u16,
        /// Response headers.
        headers: Vec<(&'static str, String)>,
        /// JSON body `{code, message, decision_id?}`.
        body: String,
    },
}

/// The edge's answer to one request.
#[derive(Debug)]
pub struct EdgeVerdict<'e> {
    /// Forward or respond.
    pub action: EdgeAction,
    /// How it ended.
    pub outcome: EdgeOutcome,
    /// The decision, when one was made.
    pub decision: Option<Decision>,
    /// The template of the route that matched, when one did.
    pub route: Option<&'e str>,
}

/// Longest request path a decision-log line holds, in characters.
pub const MAX_LOGGED_PATH: usize = 256;

impl EdgeVerdict<'_> {
    /// The issuer whose keys the decision lacked ([`Decision::keys_wanted`]).
    pub fn keys_wanted(&self) -> Option<&str> {
        self.decision.as_ref()?.keys_wanted()
    }

    /// The tenant whose stored data the decision lacked ([`Decision::data_wanted`]: the
    /// tenant of the verified token).
    pub fn data_wanted(&self) -> Option<&str> {
        self.decision.as_ref()?.data_wanted()
    }

    /// The tenant the decision was made for (the verified token's), when there was one.
    pub fn tenant(&self) -> Option<&str> {
        Some(self.decision.as_ref()?.principal.as_ref()?.tenant.as_str())
    }

    /// The decision-log line of this verdict, JSON: the decision's audit record (no token:
    /// its fingerprint and `jti`) with `dry_run`, or `{"decision": "no_route" | "preflight" |
    /// "forbidden" | "invalid_request"}` when no decision was made; and `http`: the method (at
    /// most 16 characters), the path without its query (which may hold a token) and at most
    /// [`MAX_LOGGED_PATH`] characters, the route template, and the status of a local answer
    /// (`0`: forwarded).
    pub fn log_line(&self, method: &str, path: &str, dry_run: bool) -> String {
        let mut out = match &self.decision {
            Some(decision) => {
                let mut record = decision.audit_record().to_json();
                record.pop();
                record.push_str(if dry_run {
                    ",\"dry_run\":true"
                } else {
                    ",\"dry_run\":false"
                });
                record
            }
            None => {
                let mut record = String::from("{\"decision\":");
                push_string(
                    &mut record,
                    match self.outcome {
                        EdgeOutcome::Preflight => "preflight",
                        EdgeOutcome::NoRoute => "no_route",
                        EdgeOutcome::Denied => "forbidden",
                        _ => "invalid_request",
                    },
                );
                record
            }
        };
        out.push_str(",\"http\":{\"method\":");
        push_string(&mut out, truncate(method, 16));
        out.push_str(",\"path\":");
        push_string(
            &mut out,
            truncate(path.split(['?', '#']).next().unwrap_or(""), MAX_LOGGED_PATH),
        );
        out.push_str(",\"route\":");
        push_opt_string(&mut out, self.route);
        out.push_str(",\"status\":");
        push_int(
            &mut out,
            match &self.action {
                EdgeAction::Respond { status, .. } => *status,
                EdgeAction::Forward(_) => 0,
            },
        );
        out.push_str("}}");
        out
    }
}

impl EdgeVerdict<'_> {
    /// The verdict as JSON, for hosts that carry it out in another language (the JS SDK):
    /// `{"outcome", "forward": true, "identity": {name: value}, "route", "decision"}` for a
    /// request to forward, `{"outcome", "forward": false, "status", "headers": {name: value},
    /// "body": {code, message, decision_id?}, "route", "decision"}` for one to answer.
    /// `decision` is the decision in `case` (or `null`); `route` the matched template (or
    /// `null`).
    pub fn to_json(&self, case: crate::wire::KeyCase) -> String {
        fn object<'a>(out: &mut String, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
            out.push('{');
            for (i, (name, value)) in pairs.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, name);
                out.push(':');
                push_string(out, value);
            }
            out.push('}');
        }
        let mut out = String::with_capacity(256);
        out.push_str("{\"outcome\":");
        push_string(&mut out, self.outcome.as_str());
        match &self.action {
            EdgeAction::Forward(identity) => {
                out.push_str(",\"forward\":true,\"identity\":");
                object(
                    &mut out,
                    identity.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                );
            }
            EdgeAction::Respond {
                status,
                headers,
                body,
            } => {
                out.push_str(",\"forward\":false,\"status\":");
                push_int(&mut out, *status);
                out.push_str(",\"headers\":");
                object(&mut out, headers.iter().map(|(n, v)| (*n, v.as_str())));
                out.push_str(",\"body\":");
                out.push_str(body);
            }
        }
        out.push_str(",\"route\":");
        push_opt_string(&mut out, self.route);
        out.push_str(",\"decision\":");
        match &self.decision {
            Some(decision) => out.push_str(&decision.to_json_as(case)),
            None => out.push_str("null"),
        }
        out.push('}');
        out
    }
}

/// At most `max` characters of `text`.
fn truncate(text: &str, max: usize) -> &str {
    text.char_indices()
        .nth(max)
        .map_or(text, |(i, _)| text.get(..i).unwrap_or(""))
}

/// A request [`Edge::map`] mapped to its route: what [`Edge::decide_mapped`] decides.
pub struct Mapped<'e> {
    engine: &'e Engine,
    route: &'e routes::Route,
    request: crate::engine::DecisionRequest,
}

impl Mapped<'_> {
    /// The bearer token the request carries (from the edge's token sources), if any.
    pub fn token(&self) -> Option<&str> {
        self.request.token.as_deref()
    }
}

impl Default for Edge {
    /// The default options (valid by construction).
    fn default() -> Self {
        Self::build(EdgeOptions::default())
    }
}

impl Edge {
    fn build(options: EdgeOptions) -> Self {
        let realm = &options.realm;
        Self {
            challenge_missing: format!("Bearer realm=\"{realm}\""),
            challenge_invalid: format!("Bearer realm=\"{realm}\", error=\"invalid_token\""),
            challenge_request: format!("Bearer realm=\"{realm}\", error=\"invalid_request\""),
            options,
        }
    }

    /// Validate edge options.
    ///
    /// # Errors
    /// A token source, identity header or realm that cannot work.
    pub fn new(options: EdgeOptions) -> Result<Self, EdgeConfigError> {
        token::validate_sources(&options.token)?;
        for name in options.forward.names() {
            if !routes::valid_header_name(name) {
                return Err(EdgeConfigError(format!(
                    "invalid header name `{name}` in `forward`: use lowercase letters, digits and the marks - _ . ! # $ % & ' * + ^ ` | ~"
                )));
            }
        }
        let realm = &options.realm;
        if realm.contains(['"', '\\']) || !realm.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
        {
            return Err(EdgeConfigError(
                "`realm` must be printable ASCII without quotes".into(),
            ));
        }
        Ok(Self::build(options))
    }

    /// The options.
    pub fn options(&self) -> &EdgeOptions {
        &self.options
    }

    /// Check that the bundle's routes can be used with these options: a route may not read an
    /// identity header (the client's copy is never read, so the value would always be absent).
    ///
    /// # Errors
    /// The first route value taken from an identity header.
    pub fn check_bundle(&self, bundle: &Bundle) -> Result<(), EdgeConfigError> {
        for route in bundle.routes() {
            for header in route.client_headers() {
                if self.options.forward.is_identity(header) {
                    return Err(EdgeConfigError(format!(
                        "route `{}` reads `{header}`, an identity header the edge sets itself",
                        route.template()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Map `request` to its route and decision request, for a host that must see the token
    /// before deciding (the JS SDK checks signatures asynchronously):
    /// [`Mapped::token`] is the bearer token [`Edge::decide_mapped`] decides with. `Err` is the
    /// verdict of a request answered without a decision (no route, a refused path, two
    /// tokens, a CORS preflight). [`Edge::decide`] is `map` then `decide_mapped`.
    ///
    /// # Errors
    /// The verdict to answer with.
    pub fn map<'e>(
        &self,
        engine: &'e Engine,
        request: &HttpRequest<'_>,
    ) -> Result<Mapped<'e>, Box<EdgeVerdict<'e>>> {
        let (route, request) = self.map_route(engine, request)?;
        Ok(Mapped {
            engine,
            route,
            request,
        })
    }

    /// Map a request to its route and decision request (token included), or the verdict of a
    /// request answered without a decision.
    fn map_route<'e>(
        &self,
        engine: &'e Engine,
        request: &HttpRequest<'_>,
    ) -> Result<(&'e routes::Route, crate::engine::DecisionRequest), Box<EdgeVerdict<'e>>> {
        let routes = engine.bundle().routes();
        let headers = request.headers;
        for name in METHOD_OVERRIDES {
            if headers.get(name) != Lookup::Absent {
                return Err(Box::new(self.invalid(
                    400,
                    "method-override headers are not accepted",
                    None,
                )));
            }
        }
        if self.options.cors_preflight
            && request.method.eq_ignore_ascii_case("OPTIONS")
            && headers.get("origin") != Lookup::Absent
            && let Lookup::One(asked) = headers.get("access-control-request-method")
            && let Ok(asked) = std::str::from_utf8(asked)
            && routes::any_route(routes, asked.trim(), request.path)
        {
            return Err(Box::new(EdgeVerdict {
                action: EdgeAction::Forward(Vec::new()),
                outcome: EdgeOutcome::Preflight,
                decision: None,
                route: None,
            }));
        }
        let (route, mut decision_request) =
            match routes::map_request(routes, request.method, request.path, headers) {
                Ok(Some(found)) => found,
                Ok(None) => {
                    return Err(Box::new(match self.options.unmatched {
                        Unmatched::Pass => EdgeVerdict {
                            action: EdgeAction::Forward(Vec::new()),
                            outcome: EdgeOutcome::NoRoute,
                            decision: None,
                            route: None,
                        },
                        Unmatched::Deny => EdgeVerdict {
                            action: respond(
                                403,
                                "forbidden",
                                "no route matches the request",
                                None,
                                None,
                            ),
                            outcome: EdgeOutcome::Denied,
                            decision: None,
                            route: None,
                        },
                    }));
                }
                Err(MapError::Path(why)) => return Err(Box::new(self.invalid(400, why, None))),
                Err(MapError::BadHeader) => {
                    return Err(Box::new(self.invalid(
                        400,
                        "a header the route reads is not UTF-8",
                        None,
                    )));
                }
                Err(MapError::RepeatedHeader) => {
                    return Err(Box::new(self.invalid(
                        403,
                        "a header the route reads is sent more than once",
                        None,
                    )));
                }
            };
        decision_request.token = match token::find_token(&self.options.token, headers, request.path)
        {
            Ok(token) => token,
            Err(token::TokenProblem::SeveralSources) => {
                return Err(Box::new(self.invalid(
                    400,
                    "the token is sent in more than one way (RFC 6750 §2)",
                    Some(self.challenge_request.clone()),
                )));
            }
            Err(token::TokenProblem::Repeated) => {
                return Err(Box::new(self.invalid(
                    403,
                    "the token header is sent more than once",
                    None,
                )));
            }
        };
        Ok((route, decision_request))
    }

    /// Decide what to do with one request at unix time `now`.
    pub fn decide<'e>(
        &self,
        engine: &'e Engine,
        request: &HttpRequest<'_>,
        now: i64,
    ) -> EdgeVerdict<'e> {
        match self.map(engine, request) {
            Ok(mapped) => self.decide_mapped(mapped, now),
            Err(verdict) => *verdict,
        }
    }

    /// Decide a request [`Edge::map`] mapped, with the engine it was mapped with, at unix time
    /// `now`.
    pub fn decide_mapped<'e>(&self, mapped: Mapped<'e>, now: i64) -> EdgeVerdict<'e> {
        let Mapped {
            engine,
            route,
            request: decision_request,
        } = mapped;
        let decision = engine.decide(&decision_request, now);
        let has_error = |code: &str| decision.errors.iter().any(|e| e.code == code);
        let (mut action, outcome) = match decision.decision {
            Outcome::Allow => (
                EdgeAction::Forward(self.identity(&decision)),
                EdgeOutcome::Allowed,
            ),
            // No keys yet, or the crypto provider could not check the signature (not the
            // client's fault, and not a verdict on the token): unavailable, not a 401.
            Outcome::Unauthenticated
                if has_error("token_keys_unavailable") || has_error("token_crypto") =>
            {
                match self.options.failure_mode {
                    FailureMode::Closed => (EdgeAction::unavailable(), EdgeOutcome::Unavailable),
                    FailureMode::Open => {
                        (EdgeAction::Forward(Vec::new()), EdgeOutcome::Unavailable)
                    }
                }
            }
            // The tenant's stored data is not loaded (yet): no decision on its facts could be
            // made. Unavailable whatever `failure_mode` says — the request is never forwarded
            // on no facts (except in a dry run, which forwards every decision).
            Outcome::Deny if has_error("data_unavailable") => {
                (EdgeAction::unavailable(), EdgeOutcome::Unavailable)
            }
            Outcome::Unauthenticated => {
                let challenge = if decision_request.token.is_none() {
                    self.challenge_missing.clone()
                } else {
                    self.challenge_invalid.clone()
                };
                (
                    respond(
                        401,
                        "unauthenticated",
                        "a valid bearer token is required",
                        Some(&decision.decision_id),
                        Some(challenge),
                    ),
                    EdgeOutcome::Unauthenticated,
                )
            }
            Outcome::Deny => (
                respond(
                    403,
                    "forbidden",
                    "the request is denied",
                    Some(&decision.decision_id),
                    None,
                ),
                EdgeOutcome::Denied,
            ),
        };
        if self.options.dry_run && matches!(action, EdgeAction::Respond { .. }) {
            action = EdgeAction::Forward(Vec::new());
        }
        EdgeVerdict {
            action,
            outcome,
            decision: Some(decision),
            route: Some(route.template()),
        }
    }

    /// A request the host cannot even hand to [`Edge::decide`] (Envoy: no `:method` or
    /// `:path`): `400 request_invalid` saying `why`, as the edge answers requests it cannot map.
    pub fn unreadable(&self, why: &str) -> EdgeVerdict<'static> {
        self.invalid(400, why, None)
    }

    fn invalid<'e>(&self, status: u16, why: &str, challenge: Option<String>) -> EdgeVerdict<'e> {
        // Not a policy decision, so not subject to `dry_run`: a request that cannot be mapped
        // is never forwarded.
        EdgeVerdict {
            action: respond(status, "request_invalid", why, None, challenge),
            outcome: EdgeOutcome::Invalid,
            decision: None,
            route: None,
        }
    }

    /// The identity headers of an allowed request.
    fn identity(&self, decision: &Decision) -> Vec<(String, String)> {
        let forward = &self.options.forward;
        let mut out = Vec::with_capacity(4);
        let mut push = |name: &Option<String>, value: String| {
            if let Some(name) = name {
                out.push((name.clone(), value));
            }
        };
        if let Some(p) = &decision.principal {
            push(&forward.tenant, header_value(&p.tenant, false));
            push(&forward.subject, header_value(&p.id, false));
            let mut roles = String::new();
            for (i, role) in p.roles.iter().enumerate() {
                if i > 0 {
                    roles.push(',');
                }
                roles.push_str(&header_value(role, true));
            }
            push(&forward.roles, roles);
        }
        push(&forward.decision_id, decision.decision_id.clone());
        out
    }
}

/// A value as a header carries it: printable ASCII as is, `%` and everything else
/// percent-encoded (and `,` too in list items), so that no value is lost or merged.
fn header_value(value: &str, list_item: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' && !(list_item && b == b',') {
            out.push(char::from(b));
        } else {
            let digit = |nibble: u8| {
                char::from_digit(u32::from(nibble), 16).map_or('0', |c| c.to_ascii_uppercase())
            };
            out.push('%');
            out.push(digit(b >> 4));
            out.push(digit(b & 0x0f));
        }
    }
    out
}

impl EdgeAction {
    /// The 503 answer when the edge cannot decide (yet): no bundle, or no keys for the
    /// token's issuer.
    pub fn unavailable() -> Self {
        let mut action = respond(
            503,
            "unavailable",
            "the decision cannot be made yet; retry shortly",
            None,
            None,
        );
        if let Self::Respond { headers, .. } = &mut action {
            headers.push(("retry-after", "5".into()));
        }
        action
    }
}

fn respond(
    status: u16,
    code: &str,
    message: &str,
    decision_id: Option<&str>,
    challenge: Option<String>,
) -> EdgeAction {
    let mut body = String::with_capacity(96);
    body.push_str("{\"code\":");
    push_string(&mut body, code);
    body.push_str(",\"message\":");
    push_string(&mut body, message);
    if let Some(id) = decision_id {
        body.push_str(",\"decision_id\":");
        push_string(&mut body, id);
    }
    body.push('}');
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if let Some(challenge) = challenge {
        headers.push(("www-authenticate", challenge));
    }
    EdgeAction::Respond {
        status,
        headers,
        body,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `(name, value)` pairs.
    pub(crate) struct TestHeaders<'a>(pub Vec<(&'a str, &'a [u8])>);

    impl<'a> TestHeaders<'a> {
        pub(crate) fn new(pairs: &[(&'a str, &'a [u8])]) -> Self {
            Self(pairs.to_vec())
        }
    }

    impl Headers for TestHeaders<'_> {
        fn get(&self, name: &str) -> Lookup<'_> {
            let mut found = self.0.iter().filter(|(n, _)| *n == name);
            match (found.next(), found.next()) {
                (None, _) => Lookup::Absent,
                (Some((_, v)), None) => Lookup::One(v),
                (Some(_), Some(_)) => Lookup::Repeated,
            }
        }
    }

    #[cfg(feature = "rust-crypto")]
    fn engine() -> Engine {
        engine_with(
            r#"{"routes": [{"methods": ["GET"], "path": "/t/{tenant}/reports/{id}", "action": "view",
                "resource": {"type": "Report", "id": "{tenant}/{id}", "attrs": {"tenant": "{tenant}"}}}]}"#,
        )
    }

    #[cfg(feature = "rust-crypto")]
    fn engine_with(routes: &str) -> Engine {
        let sources = crate::BundleSources {
            schema: Some((
                "schema.cedarschema".into(),
                "entity User { tenant: String }; entity Report { tenant: String };\n\
                 action view appliesTo { principal: User, resource: Report };"
                    .into(),
            )),
            policies: vec![crate::PolicySource {
                file: "p.cedar".into(),
                tenant: None,
                source: "@id(\"all\") permit(principal, action, resource);".into(),
            }],
            routes: Some(("routes.json".into(), routes.into())),
            ..Default::default()
        };
        let compiled = sources.compile(&mut |_| Err("no files".into())).unwrap();
        Engine::new(crate::Bundle::load(compiled).unwrap())
    }

    #[cfg(feature = "rust-crypto")]
    #[test]
    fn routes_may_not_read_an_identity_header() {
        let engine = engine_with(
            r#"{"routes": [{"methods": ["GET"], "path": "/t/{tenant}/reports/{id}", "action": "view",
                "resource": {"type": "Report", "id": "{tenant}/{id}",
                             "attrs": {"tenant": {"client_header": "x-org"}}}}]}"#,
        );
        Edge::default().check_bundle(engine.bundle()).unwrap();
        let options: EdgeOptions =
            serde_json::from_str(r#"{"forward": {"tenant": "x-org"}}"#).unwrap();
        let err = Edge::new(options)
            .unwrap()
            .check_bundle(engine.bundle())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("route `/t/{tenant}/reports/{id}` reads `x-org`, an identity header"),
            "{err}"
        );
    }

    #[cfg(feature = "rust-crypto")]
    fn decide(
        edge: &Edge,
        engine: &Engine,
        method: &str,
        path: &str,
        headers: &[(&str, &[u8])],
    ) -> (EdgeOutcome, u16, String) {
        let headers = TestHeaders::new(headers);
        let verdict = edge.decide(
            engine,
            &HttpRequest {
                method,
                path,
                headers: &headers,
            },
            1_800_000_000,
        );
        match verdict.action {
            EdgeAction::Forward(_) => (verdict.outcome, 0, String::new()),
            EdgeAction::Respond {
                status,
                headers,
                body,
            } => {
                let challenge = headers
                    .iter()
                    .find(|(n, _)| *n == "www-authenticate")
                    .map(|(_, v)| v.clone());
                (
                    verdict.outcome,
                    status,
                    format!("{body} {}", challenge.unwrap_or_default()),
                )
            }
        }
    }

    #[test]
    #[cfg(feature = "rust-crypto")]
    fn requests_are_mapped_refused_or_challenged_before_any_policy() {
        let engine = engine();
        let edge = Edge::new(EdgeOptions::default()).unwrap();
        let get =
            |path: &str, headers: &[(&str, &[u8])]| decide(&edge, &engine, "GET", path, headers);
        let (outcome, status, body) = get("/t/acme/reports/q3", &[]);
        assert_eq!((outcome, status), (EdgeOutcome::Unauthenticated, 401));
        assert!(
            body.contains("\"code\":\"unauthenticated\"") && body.ends_with("Bearer realm=\"api\""),
            "{body}"
        );
        let (outcome, status, body) =
            get("/t/acme/reports/q3", &[("authorization", b"Bearer x.y.z")]);
        assert_eq!((outcome, status), (EdgeOutcome::Unauthenticated, 401));
        assert!(body.ends_with("error=\"invalid_token\""), "{body}");
        for path in [
            "/t/acme/reports/..%2F..%2Fglobex%2Freports%2Fq3",
            "/t/acme/reports/q3%00",
            "/t//acme/reports/q3",
        ] {
            assert_eq!(get(path, &[]).1, 400, "{path}");
        }
        assert_eq!(
            get(
                "/t/acme/reports/q3",
                &[("x-http-method-override", b"DELETE")]
            )
            .1,
            400
        );
        assert_eq!(get("/admin", &[]).0, EdgeOutcome::Denied);
        assert_eq!(get("/admin", &[]).1, 403);
        let twice: &[(&str, &[u8])] = &[
            ("authorization", b"Bearer a"),
            ("authorization", b"Bearer b"),
        ];
        assert_eq!(get("/t/acme/reports/q3", twice).1, 403);
        // Envoy's ext_authz joins a repeated header with `,`, which no bearer token contains.
        assert_eq!(
            get(
                "/t/acme/reports/q3",
                &[("authorization", b"Bearer a,Bearer b")]
            )
            .1,
            403
        );
        let (_, status, body) = get(
            "/t/acme/reports/q3?access_token=a",
            &[("authorization", b"Bearer b")],
        );
        assert_eq!(
            status, 401,
            "the query is not a configured source: one token, which fails"
        );
        assert!(!body.contains("invalid_request"));
    }

    #[test]
    #[cfg(feature = "rust-crypto")]
    fn the_mapped_token_is_the_one_decide_uses_and_verdicts_have_a_json_form() {
        let engine = engine();
        let edge = Edge::new(EdgeOptions::default()).unwrap();
        let bearer = |path: &str, headers: &[(&str, &[u8])]| {
            let headers = TestHeaders::new(headers);
            let request = HttpRequest {
                method: "GET",
                path,
                headers: &headers,
            };
            (
                edge.map(&engine, &request)
                    .ok()
                    .and_then(|mapped| mapped.token().map(str::to_owned)),
                edge.decide(&engine, &request, 1_800_000_000)
                    .to_json(crate::KeyCase::Camel),
            )
        };
        let (token, json) = bearer("/t/acme/reports/q3", &[("authorization", b"Bearer a.b.c")]);
        assert_eq!(token.as_deref(), Some("a.b.c"));
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["outcome"], "unauthenticated");
        assert_eq!(json["forward"], false);
        assert_eq!(json["status"], 401);
        assert_eq!(
            json["headers"]["www-authenticate"],
            "Bearer realm=\"api\", error=\"invalid_token\""
        );
        assert_eq!(json["body"]["code"], "unauthenticated");
        assert_eq!(json["route"], "/t/{tenant}/reports/{id}");
        assert_eq!(json["decision"]["decision"], "unauthenticated");
        assert_eq!(json["decision"]["decisionId"], json["body"]["decision_id"]);
        // Answered without a decision: no token to check.
        for (path, headers) in [
            ("/admin", &[("authorization", &b"Bearer a.b.c"[..])][..]),
            (
                "/t/acme/reports/%2e%2e",
                &[("authorization", b"Bearer a.b.c")],
            ),
            (
                "/t/acme/reports/q3",
                &[
                    ("authorization", b"Bearer a"),
                    ("authorization", b"Bearer b"),
                ],
            ),
        ] {
            let (token, json) = bearer(path, headers);
            assert_eq!(token, None, "{path}");
            let json: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(json["decision"], serde_json::Value::Null, "{path}");
            assert_eq!(json["route"], serde_json::Value::Null, "{path}");
        }
    }

    #[test]
    #[cfg(feature = "rust-crypto")]
    fn preflights_pass_only_for_routed_requests() {
        let engine = engine();
        let edge = Edge::new(EdgeOptions::default()).unwrap();
        let preflight = |path: &str, asked: &'static [u8]| {
            decide(
                &edge,
                &engine,
                "OPTIONS",
                path,
                &[
                    ("origin", b"https://app.example"),
                    ("access-control-request-method", asked),
                ],
            )
        };
        assert_eq!(
            preflight("/t/acme/reports/q3", b"GET").0,
            EdgeOutcome::Preflight
        );
        assert_eq!(
            preflight("/admin", b"GET").1,
            403,
            "an unmatched route is not a preflight"
        );
        assert_eq!(
            preflight("/t/acme/reports/q3", b"DELETE").1,
            403,
            "nor is a method no route has"
        );
        let pass = Edge::new(EdgeOptions {
            unmatched: Unmatched::Pass,
            ..EdgeOptions::default()
        })
        .unwrap();
        assert_eq!(
            decide(&pass, &engine, "GET", "/admin", &[]).0,
            EdgeOutcome::NoRoute
        );
        assert_eq!(
            decide(&pass, &engine, "GET", "/t//acme/reports/q3", &[]).1,
            400,
            "pass never forwards a path it cannot read"
        );
    }

    #[test]
    fn identity_names_match_every_spelling() {
        let forward = ForwardHeaders::default();
        for name in [
            "x-portcullis-tenant",
            "x_portcullis_tenant",
            "X-Portcullis-Tenant",
            "x-portcullis_roles",
        ] {
            assert!(forward.is_identity(name), "{name}");
        }
        for name in ["x-portcullis-tenants", "x-portcullis", "tenant"] {
            assert!(!forward.is_identity(name), "{name}");
        }
        let mut headers: Vec<(String, Vec<u8>)> = [
            ("x_portcullis_tenant", "a"),
            ("accept", "*/*"),
            ("x-portcullis-tenant", "b"),
            ("x_portcullis_tenant", "c"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
        .collect();
        assert_eq!(
            forward.strip(&mut headers),
            ["x_portcullis_tenant", "x-portcullis-tenant"]
        );
        assert_eq!(headers, [("accept".to_owned(), b"*/*".to_vec())]);
    }

    #[test]
    fn forward_names_the_identity_headers_and_an_empty_object_none() {
        let names = |json: &str| {
            let options: EdgeOptions = serde_json::from_str(json).unwrap();
            let edge = Edge::new(options).unwrap();
            let names: Vec<String> = edge.options().forward.names().map(str::to_owned).collect();
            names
        };
        assert_eq!(
            names("{}"),
            [
                "x-portcullis-tenant",
                "x-portcullis-subject",
                "x-portcullis-roles",
                "x-portcullis-decision-id"
            ]
        );
        assert!(names(r#"{"forward": {}}"#).is_empty());
        assert_eq!(names(r#"{"forward": {"subject": "x-user"}}"#), ["x-user"]);
    }

    #[test]
    fn header_values_keep_every_role_apart() {
        assert_eq!(header_value("FinanceAnalyst", true), "FinanceAnalyst");
        assert_eq!(header_value("a,b", true), "a%2Cb");
        assert_eq!(header_value("a,b", false), "a,b");
        assert_eq!(header_value("50%", false), "50%25");
        assert_eq!(header_value("é\n", false), "%C3%A9%0A");
    }

    #[test]
    fn options_that_cannot_work_are_refused() {
        let mut options = EdgeOptions::default();
        options.forward.tenant = Some("X-Tenant".into());
        // Envoy's header names are lowercase, and edges compare them as they are.
        let err = Edge::new(options).unwrap_err().0;
        assert!(err.contains("invalid header name `X-Tenant`"), "{err}");
        let options = EdgeOptions {
            realm: "a\"b".into(),
            ..EdgeOptions::default()
        };
        assert!(Edge::new(options).is_err());
        let options = EdgeOptions {
            token: Vec::new(),
            ..EdgeOptions::default()
        };
        assert!(Edge::new(options).is_err());
        assert!(Edge::new(EdgeOptions::default()).is_ok());
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn log_lines_without_a_decision_lose_the_query_and_are_bounded() {
        let verdict = EdgeVerdict {
            action: EdgeAction::Forward(Vec::new()),
            outcome: EdgeOutcome::NoRoute,
            decision: None,
            route: None,
        };
        let line: serde_json::Value =
            serde_json::from_str(&verdict.log_line("GET", "/a/b?access_token=secret#x", false))
                .unwrap();
        assert_eq!(
            line,
            serde_json::json!({"decision": "no_route",
                "http": {"method": "GET", "path": "/a/b", "route": null, "status": 0}})
        );
        let long = verdict.log_line(&"M".repeat(100), &"é".repeat(1000), false);
        let line: serde_json::Value = serde_json::from_str(&long).unwrap();
        assert_eq!(
            line["http"]["path"].as_str().unwrap().chars().count(),
            MAX_LOGGED_PATH
        );
        assert_eq!(line["http"]["method"].as_str().unwrap().len(), 16);
        assert_eq!(truncate("ab", 5), "ab");
    }
}
