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
    /// The decision-log line (JSON), never containing the token; `None` when the decision log
    /// is off (it is not built then).
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
    let logging = plan.log_level != LogLevel::Off;
    let (Some(method), Some(path)) = (method, path) else {
        let log =
            logging.then(|| http_log(json!({"decision": "invalid_request"}), "", "", None, 400));
        return local(400, "invalid_request", None, log, Counter::Errors);
    };
    // The decision-log line, built only when the log is on: most requests never need it.
    let log = |record: &dyn Fn() -> Value, route: Option<&str>, status: u32| {
        logging.then(|| http_log(record(), &method, &loggable_path(&path), route, status))
    };
    // A local answer without a decision: its log line says which.
    let answer = |status: u32, error: &'static str, challenge, counter| {
        let line = log(&|| json!({ "decision": error }), None, status);
        local(status, error, challenge, line, counter)
    };
    if plan.cors_preflight
        && method == "OPTIONS"
        && headers.header("origin").is_some()
        && headers.header("access-control-request-method").is_some()
    {
        return Verdict {
            action: Action::Forward(Vec::new()),
            counter: None,
            log: log(&|| json!({"decision": "preflight"}), None, 0),
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
                    log: log(&|| json!({"decision": "no_route"}), None, 0),
                    keys_missing: false,
                },
                Unmatched::Deny => answer(403, "forbidden", None, Counter::Denied),
            };
        }
        Err(MapError::BadEncoding | MapError::BadHeader) => {
            return answer(400, "invalid_request", None, Counter::Errors);
        }
    };
    request.token = match find_token(&plan.token, headers) {
        Ok(token) => token,
        Err(TooManyTokens) => {
            let challenge = format!("{}, error=\"invalid_request\"", plan.challenge_missing);
            return answer(
                400,
                "invalid_request",
                Some(challenge),
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
    let record = || {
        let mut record = serde_json::to_value(decision.audit_record()).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut record {
            map.insert("dry_run".into(), Value::Bool(plan.dry_run));
        }
        record
    };
    let log = log(&record, Some(route.template()), status);
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

/// A local answer without a decision, with its log line (`None` when the log is off).
fn local(
    status: u32,
    error: &str,
    challenge: Option<String>,
    log: Option<String>,
    counter: Counter,
) -> Verdict {
    Verdict {
        action: respond(status, json!({ "error": error }), challenge),
        counter: Some(counter),
        log,
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

/// A token's bytes as text, trimmed, without another copy when they are UTF-8. A token that is
/// not UTF-8 is still a (bad) token: it must not read as "no token".
fn token_text(mut bytes: Vec<u8>) -> String {
    let end = bytes.trim_ascii_end().len();
    bytes.truncate(end);
    let start = end - bytes.trim_ascii_start().len();
    bytes.drain(..start);
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The token from the configured sources. RFC 6750 §2: a client must not send more than one.
fn find_token(
    sources: &[TokenSource],
    headers: &dyn Headers,
) -> Result<Option<String>, TooManyTokens> {
    let mut found: Option<String> = None;
    for source in sources {
        let token = match source {
            TokenSource::Header { name, prefix } => headers.header(name).and_then(|mut value| {
                let head = value.get(..prefix.len())?;
                head.eq_ignore_ascii_case(prefix.as_bytes()).then(|| {
                    value.drain(..prefix.len());
                    value
                })
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
        let Some(token) = token.map(token_text) else {
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
    fn token_text_is_trimmed_and_never_lost() {
        assert_eq!(token_text(b" \ta.b.c \r".to_vec()), "a.b.c");
        assert_eq!(token_text(b"a.b.c".to_vec()), "a.b.c");
        assert_eq!(token_text(b"  ".to_vec()), "");
        assert_eq!(token_text(b" \xffx\xfe ".to_vec()), "\u{fffd}x\u{fffd}");
        assert_eq!(
            token(vec![("authorization", b"Bearer   abc  ")])
                .ok()
                .flatten()
                .as_deref(),
            Some("abc")
        );
    }

    /// Answers without a decision (no route, a malformed request, a preflight) carry the same
    /// action and counter whatever the log level; their log line exists only when the log is
    /// on, and then says what happened without the query.
    #[test]
    fn answers_without_a_decision_log_only_when_the_log_is_on() {
        let get: Vec<(&'static str, &[u8])> =
            vec![(":method", b"GET"), (":path", b"/x?access_token=secret")];
        let preflight: Vec<(&'static str, &[u8])> = vec![
            (":method", b"OPTIONS"),
            (":path", b"/x"),
            ("origin", b"https://app.example"),
            ("access-control-request-method", b"GET"),
        ];
        let no_method: Vec<(&'static str, &[u8])> = vec![(":path", b"/x")];
        let cases = [
            ("pass", &get, "no_route", 0, None),
            ("deny", &get, "forbidden", 403, Some(Counter::Denied)),
            ("deny", &preflight, "preflight", 0, None),
            (
                "pass",
                &no_method,
                "invalid_request",
                400,
                Some(Counter::Errors),
            ),
        ];
        for (unmatched, headers, logged, status, counter) in cases {
            let verdicts = ["off", "info"].map(|level| {
                let config = json!({
                    "bundle": {"inline": crate::config::tests::compiled(None)},
                    "routes": [],
                    "unmatched": unmatched,
                    "log": {"level": level},
                });
                let (plan, engine) =
                    Plan::from_json(config.to_string().as_bytes(), |_| Default::default()).unwrap();
                handle(
                    &plan,
                    &engine.unwrap(),
                    &TestHeaders(headers.clone()),
                    1_800_000_000,
                )
            });
            let [off, on] = verdicts;
            assert_eq!(off.log, None, "{logged}");
            assert_eq!((&off.action, off.counter), (&on.action, on.counter));
            assert_eq!(off.counter, counter, "{logged}");
            let actual_status = match &off.action {
                Action::Respond { status, .. } => *status,
                Action::Forward(headers) => {
                    assert!(headers.is_empty());
                    0
                }
            };
            assert_eq!(actual_status, status, "{logged}");
            let line: Value = serde_json::from_str(on.log.as_deref().unwrap()).unwrap();
            assert_eq!(line["decision"], logged);
            assert_eq!(line["http"]["status"], status);
            assert!(!line.to_string().contains("secret"), "{line}");
        }
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
