//! What the filter does with one request, as a pure function of the [`Plan`], the engine, the
//! request headers and the time: forward (with identity headers) or answer locally, which
//! counter to bump, and the decision-log line. The proxy-wasm glue only carries this out.

use crate::config::{FailureMode, LogLevel, Plan, TokenSource, Unmatched};
use crate::routes::{Headers, MapError, map_request, percent_decode};
use portcullis_engine::{Decision, Engine, Outcome};
use serde_json::{Value, json};

/// The counters the filter exports as Envoy stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Allowed by policy.
    Allowed,
    /// Denied by policy (or no route, with `unmatched: deny`).
    Denied,
    /// No token or an invalid one.
    Unauthenticated,
    /// No decision could be made: a malformed request, no bundle yet or no keys for the
    /// token's issuer.
    Errors,
    /// A new bundle revision was fetched and accepted (counted once, by the worker that
    /// fetched it).
    BundleUpdates,
    /// A fetched bundle was refused (it does not load); the previous one keeps serving.
    BundleRefused,
}

impl Counter {
    /// Every counter, in the order the glue defines them.
    pub const ALL: [Self; 6] = [
        Self::Allowed,
        Self::Denied,
        Self::Unauthenticated,
        Self::Errors,
        Self::BundleUpdates,
        Self::BundleRefused,
    ];

    /// The stat name (Envoy shows it with a `wasmcustom.` prefix).
    pub fn name(self) -> &'static str {
        match self {
            Self::Allowed => "portcullis.allowed",
            Self::Denied => "portcullis.denied",
            Self::Unauthenticated => "portcullis.unauthenticated",
            Self::Errors => "portcullis.errors",
            Self::BundleUpdates => "portcullis.bundle_updates",
            Self::BundleRefused => "portcullis.bundle_refused",
        }
    }
}

/// What to do with the request.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Forward upstream with these headers set (after the configured identity headers were
    /// removed from the client's request).
    Forward(Vec<(String, String)>),
    /// Answer locally.
    Respond {
        /// HTTP status.
        status: u32,
        /// Response headers.
        headers: Vec<(&'static str, String)>,
        /// JSON body.
        body: String,
    },
}

/// The outcome of [`handle`].
#[derive(Debug)]
pub struct Verdict {
    /// Forward or respond.
    pub action: Action,
    /// The counter to increment, if any (preflights and unmatched passes count nothing).
    pub counter: Option<Counter>,
    /// The decision-log line (JSON), never containing the token; decisions skip building it
    /// when the decision log is off.
    pub log: Option<String>,
    /// The token's issuer has no keys yet, or the token named a key the engine does not have
    /// (the issuer's keys may have rotated): the glue looks for newer keys.
    pub keys_missing: bool,
}

const MAX_LOGGED_PATH: usize = 256;

/// Decide what to do with a request, with the VM's current engine.
pub fn handle(plan: &Plan, engine: &Engine, headers: &dyn Headers, now: i64) -> Verdict {
    let method = headers
        .header(":method")
        .and_then(|m| String::from_utf8(m).ok());
    let path = headers
        .header(":path")
        .and_then(|p| String::from_utf8(p).ok());
    let (Some(method), Some(path)) = (method, path) else {
        return local(400, "invalid_request", None, "", "", Counter::Errors);
    };
    let logged_path = loggable_path(&path);
    if plan.cors_preflight
        && method == "OPTIONS"
        && headers.header("origin").is_some()
        && headers.header("access-control-request-method").is_some()
    {
        return Verdict {
            action: Action::Forward(Vec::new()),
            counter: None,
            log: Some(http_log(
                json!({"decision": "preflight"}),
                &method,
                &logged_path,
                None,
                0,
            )),
            keys_missing: false,
        };
    }
    let (route, mut request) = match map_request(&plan.routes, &method, &path, headers) {
        Ok(Some(found)) => found,
        Ok(None) => {
            return match plan.unmatched {
                Unmatched::Pass => Verdict {
                    action: Action::Forward(Vec::new()),
                    counter: None,
                    log: Some(http_log(
                        json!({"decision": "no_route"}),
                        &method,
                        &logged_path,
                        None,
                        0,
                    )),
                    keys_missing: false,
                },
                Unmatched::Deny => local(
                    403,
                    "forbidden",
                    None,
                    &method,
                    &logged_path,
                    Counter::Denied,
                ),
            };
        }
        Err(MapError::BadEncoding | MapError::BadHeader) => {
            return local(
                400,
                "invalid_request",
                None,
                &method,
                &logged_path,
                Counter::Errors,
            );
        }
    };
    request.token = match find_token(&plan.token, headers) {
        Ok(token) => token,
        Err(TooManyTokens) => {
            let challenge = format!("{}, error=\"invalid_request\"", plan.challenge_missing);
            return local(
                400,
                "invalid_request",
                Some(challenge),
                &method,
                &logged_path,
                Counter::Unauthenticated,
            );
        }
    };
    let decision = engine.decide(&request, now);
    let has_error = |code: &str| decision.errors.iter().any(|e| e.code == code);
    let keys_missing = has_error("token_unknown_kid") || has_error("token_keys_unavailable");
    let (mut action, counter) = match decision.decision {
        Outcome::Allow => (Action::Forward(identity(plan, &decision)), Counter::Allowed),
        Outcome::Unauthenticated if has_error("token_keys_unavailable") => {
            match plan.failure_mode {
                FailureMode::Closed => (unavailable(), Counter::Errors),
                FailureMode::Open => (Action::Forward(Vec::new()), Counter::Errors),
            }
        }
        Outcome::Unauthenticated => {
            let challenge = if request.token.is_none() {
                plan.challenge_missing.clone()
            } else {
                plan.challenge_invalid.clone()
            };
            let body = json!({"error": "unauthenticated", "decision_id": decision.decision_id});
            (
                respond(401, body, Some(challenge)),
                Counter::Unauthenticated,
            )
        }
        Outcome::Deny => {
            let body = json!({"error": "forbidden", "decision_id": decision.decision_id});
            (respond(403, body, None), Counter::Denied)
        }
    };
    if plan.dry_run && matches!(action, Action::Respond { .. }) {
        action = Action::Forward(Vec::new());
    }
    let status = match &action {
        Action::Respond { status, .. } => *status,
        Action::Forward(_) => 0,
    };
    let log = (plan.log_level != LogLevel::Off).then(|| {
        let mut record = serde_json::to_value(decision.audit_record()).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut record {
            map.insert("dry_run".into(), Value::Bool(plan.dry_run));
        }
        http_log(
            record,
            &method,
            &logged_path,
            Some(route.template()),
            status,
        )
    });
    Verdict {
        log,
        action,
        counter: Some(counter),
        keys_missing,
    }
}

/// The 503 answer when the filter cannot decide yet.
pub fn unavailable() -> Action {
    Action::Respond {
        status: 503,
        headers: vec![
            ("content-type", "application/json".into()),
            ("retry-after", "5".into()),
        ],
        body: json!({"error": "unavailable"}).to_string(),
    }
}

fn respond(status: u32, body: Value, challenge: Option<String>) -> Action {
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if let Some(challenge) = challenge {
        headers.push(("www-authenticate", challenge));
    }
    Action::Respond {
        status,
        headers,
        body: body.to_string(),
    }
}

fn local(
    status: u32,
    error: &str,
    challenge: Option<String>,
    method: &str,
    path: &str,
    counter: Counter,
) -> Verdict {
    Verdict {
        action: respond(status, json!({ "error": error }), challenge),
        counter: Some(counter),
        log: Some(http_log(
            json!({"decision": error}),
            method,
            path,
            None,
            status,
        )),
        keys_missing: false,
    }
}

fn http_log(
    mut record: Value,
    method: &str,
    path: &str,
    route: Option<&str>,
    status: u32,
) -> String {
    if let Value::Object(map) = &mut record {
        map.insert(
            "http".into(),
            json!({"method": truncate(method, 16), "path": path, "route": route, "status": status}),
        );
    }
    record.to_string()
}

/// The path without its query (which may carry a token) and truncated.
fn loggable_path(path: &str) -> String {
    truncate(path.split(['?', '#']).next().unwrap_or(""), MAX_LOGGED_PATH)
}

fn truncate(text: &str, max: usize) -> String {
    text.char_indices()
        .nth(max)
        .map_or(text, |(i, _)| text.get(..i).unwrap_or(""))
        .to_owned()
}

/// The identity headers for an allowed request. A value that is not printable ASCII is left
/// out rather than forwarded mangled.
fn identity(plan: &Plan, decision: &Decision) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut push = |name: &Option<String>, value: String| {
        if let Some(name) = name
            && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            out.push((name.clone(), value));
        }
    };
    if let Some(p) = &decision.principal {
        push(&plan.forward.tenant, p.tenant.clone());
        push(&plan.forward.subject, p.id.clone());
        push(&plan.forward.roles, p.roles.join(","));
    }
    push(&plan.forward.decision_id, decision.decision_id.clone());
    out
}

struct TooManyTokens;

/// The token from the configured sources. RFC 6750 §2: a client must not send more than one.
fn find_token(
    sources: &[TokenSource],
    headers: &dyn Headers,
) -> Result<Option<String>, TooManyTokens> {
    let mut found: Option<String> = None;
    for source in sources {
        let token = match source {
            TokenSource::Header { name, prefix } => headers.header(name).and_then(|value| {
                let head = value.get(..prefix.len())?;
                head.eq_ignore_ascii_case(prefix.as_bytes())
                    .then(|| value.get(prefix.len()..).map(<[u8]>::to_vec))
                    .flatten()
            }),
            TokenSource::Cookie { name } => headers.header("cookie").and_then(|cookies| {
                cookies.split(|&b| b == b';').find_map(|pair| {
                    let pair = pair.trim_ascii_start();
                    let rest = pair.strip_prefix(name.as_bytes())?;
                    rest.strip_prefix(b"=").map(<[u8]>::to_vec)
                })
            }),
            TokenSource::Query { name } => headers.header(":path").and_then(|path| {
                let query = path.splitn(2, |&b| b == b'?').nth(1)?;
                let query = query.split(|&b| b == b'#').next()?;
                query.split(|&b| b == b'&').find_map(|pair| {
                    let rest = pair.strip_prefix(name.as_bytes())?;
                    let raw = std::str::from_utf8(rest.strip_prefix(b"=")?).ok()?;
                    percent_decode(raw).map(String::into_bytes)
                })
            }),
        };
        // A token that is not UTF-8 is still a (bad) token: it must not read as "no token".
        let Some(token) = token.map(|t| String::from_utf8_lossy(t.trim_ascii()).into_owned())
        else {
            continue;
        };
        if token.is_empty() {
            continue;
        }
        if found.is_some() {
            return Err(TooManyTokens);
        }
        found = Some(token);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::routes::test_headers::TestHeaders;

    fn sources() -> Vec<TokenSource> {
        vec![
            TokenSource::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into(),
            },
            TokenSource::Cookie { name: "at".into() },
            TokenSource::Query {
                name: "access_token".into(),
            },
        ]
    }

    fn token(headers: Vec<(&'static str, &[u8])>) -> Result<Option<String>, TooManyTokens> {
        find_token(&sources(), &TestHeaders(headers))
    }

    #[test]
    fn tokens_come_from_header_cookie_or_query_but_only_one() {
        let ok = |h| token(h).ok().flatten();
        assert_eq!(
            ok(vec![("authorization", b"bearer abc")]).as_deref(),
            Some("abc")
        );
        assert_eq!(ok(vec![("authorization", b"Basic abc")]), None);
        assert_eq!(ok(vec![("authorization", b"Bearer ")]), None);
        assert_eq!(ok(vec![("authorization", b"Bear")]), None);
        assert_eq!(
            ok(vec![("cookie", b"x=1; at=tok; y=2")]).as_deref(),
            Some("tok")
        );
        assert_eq!(ok(vec![("cookie", b"xat=tok")]), None);
        assert_eq!(
            ok(vec![(":path", b"/a?b=1&access_token=t%2Ek#f")]).as_deref(),
            Some("t.k")
        );
        assert_eq!(ok(vec![(":path", b"/a?access_tokens=t")]), None);
        // Not UTF-8: still a token (that will not verify), never "no token".
        assert!(ok(vec![("authorization", b"Bearer \xff\xfe")]).is_some());
        assert!(
            token(vec![
                ("authorization", b"Bearer a"),
                (":path", b"/?access_token=b")
            ])
            .is_err()
        );
    }

    #[test]
    fn logged_paths_lose_their_query_and_are_bounded() {
        assert_eq!(loggable_path("/a/b?access_token=secret"), "/a/b");
        assert_eq!(loggable_path("/x#frag"), "/x");
        assert_eq!(
            loggable_path(&"é".repeat(1000)).chars().count(),
            MAX_LOGGED_PATH
        );
    }
}
