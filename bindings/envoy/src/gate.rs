//! What the filter does with one request: the engine's [`Edge`](portcullis_engine::Edge)
//! decides (routes, token, policy, identity headers); this adds what only Envoy has — which
//! counter to bump and the decision-log line. The proxy-wasm glue only carries it out.

use crate::config::{LogLevel, Plan};
use portcullis_engine::{EdgeAction, EdgeOutcome, Engine, Headers, HttpRequest, Lookup};
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

/// The outcome of [`handle`].
#[derive(Debug)]
pub struct Verdict {
    /// Forward (with these identity headers) or respond.
    pub action: EdgeAction,
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

/// Decide what to do with a request, with the VM's current engine. `headers` include the
/// pseudo-headers `:method` and `:path`.
pub fn handle(plan: &Plan, engine: &Engine, headers: &dyn Headers, now: i64) -> Verdict {
    let text = |name| match headers.get(name) {
        Lookup::One(value) => std::str::from_utf8(value).ok(),
        Lookup::Absent | Lookup::Repeated => None,
    };
    let logging = plan.log_level != LogLevel::Off;
    let (Some(method), Some(path)) = (text(":method"), text(":path")) else {
        let log =
            logging.then(|| http_log(json!({"decision": "invalid_request"}), "", "", None, 400));
        return Verdict {
            action: portcullis_engine::EdgeAction::Respond {
                status: 400,
                headers: vec![("content-type", "application/json".into())],
                body: json!({"code": "request_invalid", "message": "the request has no method or path"})
                    .to_string(),
            },
            counter: Some(Counter::Errors),
            log,
            keys_missing: false,
        };
    };
    let verdict = plan.edge.decide(
        engine,
        &HttpRequest {
            method,
            path,
            headers,
        },
        now,
    );
    let counter = match verdict.outcome {
        EdgeOutcome::Allowed => Some(Counter::Allowed),
        EdgeOutcome::Denied => Some(Counter::Denied),
        EdgeOutcome::Unauthenticated => Some(Counter::Unauthenticated),
        EdgeOutcome::Invalid | EdgeOutcome::Unavailable => Some(Counter::Errors),
        EdgeOutcome::Preflight | EdgeOutcome::NoRoute => None,
    };
    let status = match &verdict.action {
        EdgeAction::Respond { status, .. } => *status,
        EdgeAction::Forward(_) => 0,
    };
    let log = logging.then(|| {
        let record = match (&verdict.decision, verdict.outcome) {
            (Some(decision), _) => {
                let mut record =
                    serde_json::to_value(decision.audit_record()).unwrap_or(Value::Null);
                if let Value::Object(map) = &mut record {
                    map.insert("dry_run".into(), Value::Bool(plan.edge.options().dry_run));
                }
                record
            }
            (None, outcome) => json!({"decision": match outcome {
                EdgeOutcome::Preflight => "preflight",
                EdgeOutcome::NoRoute => "no_route",
                EdgeOutcome::Denied => "forbidden",
                _ => "invalid_request",
            }}),
        };
        http_log(record, method, &loggable_path(path), verdict.route, status)
    });
    Verdict {
        keys_missing: verdict.keys_missing,
        action: verdict.action,
        counter,
        log,
    }
}

fn http_log(
    mut record: Value,
    method: &str,
    path: &str,
    route: Option<&str>,
    status: u16,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Plan;
    use portcullis_engine::HeaderPairs;

    /// Answers without a decision (no route, a malformed request) carry the same action and
    /// counter whatever the log level; their log line exists only when the log is on, and then
    /// says what happened without the query.
    #[test]
    fn answers_without_a_decision_log_only_when_the_log_is_on() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, Vec<u8>)> {
            list.iter()
                .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
                .collect()
        };
        let get = pairs(&[(":method", "GET"), (":path", "/x?access_token=secret")]);
        let no_method = pairs(&[(":path", "/x")]);
        let cases = [
            ("pass", &get, "no_route", 0, None),
            ("deny", &get, "forbidden", 403, Some(Counter::Denied)),
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
                    "edge": {"unmatched": unmatched},
                    "log": {"level": level},
                });
                let (plan, engine) =
                    Plan::from_json(config.to_string().as_bytes(), |_| Default::default()).unwrap();
                handle(
                    &plan,
                    &engine.unwrap(),
                    &HeaderPairs(headers),
                    1_800_000_000,
                )
            });
            let [off, on] = verdicts;
            assert_eq!(off.log, None, "{logged}");
            assert_eq!((&off.action, off.counter), (&on.action, on.counter));
            assert_eq!(off.counter, counter, "{logged}");
            let actual_status = match &off.action {
                EdgeAction::Respond { status, .. } => *status,
                EdgeAction::Forward(headers) => {
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
