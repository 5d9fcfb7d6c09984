//! What the filter does with one request: the engine's [`Edge`](portcullis_engine::Edge)
//! decides (routes, token, policy, identity headers); this adds what only Envoy has — which
//! counter to bump and the decision-log line. The proxy-wasm glue only carries it out.

use crate::config::{LogLevel, Plan};
use portcullis_engine::{EdgeAction, EdgeOutcome, Engine, Headers, HttpRequest, Lookup};

/// The counters the filter exports as Envoy stats, in the order of [`Counter::NAMES`].
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
    /// A tenant's data was fetched and loaded at a new revision (counted by the worker that
    /// fetched it).
    DataUpdates,
    /// A tenant's data document was refused (too large, malformed, another tenant's, entities
    /// the bundle refuses); the data held, if any, stays.
    DataRefused,
    /// A tenant's data was forgotten (the memory budget, or idle).
    DataEvictions,
    /// A request waited `data.wait_ms` for its tenant's data and was answered 503.
    DataWaitTimeouts,
}

impl Counter {
    /// The stat names, by counter (Envoy shows them with a `wasmcustom.` prefix).
    pub const NAMES: [&'static str; 10] = [
        "portcullis.allowed",
        "portcullis.denied",
        "portcullis.unauthenticated",
        "portcullis.errors",
        "portcullis.bundle_updates",
        "portcullis.bundle_refused",
        "portcullis.data_updates",
        "portcullis.data_refused",
        "portcullis.data_evictions",
        "portcullis.data_wait_timeouts",
    ];
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
    /// The issuer whose keys the decision lacked (none yet, or not the token's `kid`: they
    /// may have rotated): the glue looks for newer keys.
    pub keys_wanted: Option<String>,
    /// The per-route stat to increment (`portcullis.route.<route>.<outcome>`), with
    /// `stats.routes` on and a route matched.
    pub route_stat: Option<String>,
    /// The tenant whose stored data the decision lacked (the verified token's tenant): the
    /// glue has it fetched and holds the request meanwhile.
    pub data_wanted: Option<String>,
    /// The tenant decided for, for a bundle that stores data (it stays recently seen).
    pub data_tenant: Option<String>,
}

impl Counter {
    /// The outcome part of a stat name (`allowed`, ...: its total's name without
    /// `portcullis.`), for the outcome counters.
    fn outcome(self) -> Option<&'static str> {
        match self {
            Self::BundleUpdates
            | Self::BundleRefused
            | Self::DataUpdates
            | Self::DataRefused
            | Self::DataEvictions
            | Self::DataWaitTimeouts => None,
            Self::Allowed | Self::Denied | Self::Unauthenticated | Self::Errors => {
                Self::NAMES.get(self as usize)?.strip_prefix("portcullis.")
            }
        }
    }
}

/// `portcullis.route.<route>.<outcome>`: the template's letters, digits, `-` and `_`, each
/// other character a `_` (no `.`, Envoy's separator), braces dropped.
pub fn route_stat(template: &str, outcome: &str) -> String {
    let mut route = String::with_capacity(template.len());
    for c in template.trim_start_matches('/').chars() {
        match c {
            '{' | '}' => {}
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => route.push(c),
            _ => route.push('_'),
        }
    }
    if route.is_empty() {
        route.push_str("root");
    }
    format!("portcullis.route.{route}.{outcome}")
}

/// Decide what to do with a request, with the VM's current engine. `headers` include the
/// pseudo-headers `:method` and `:path`.
pub fn handle(plan: &Plan, engine: &Engine, headers: &dyn Headers, now: i64) -> Verdict {
    let text = |name| match headers.get(name) {
        Lookup::One(value) => std::str::from_utf8(value).ok(),
        Lookup::Absent | Lookup::Repeated => None,
    };
    let logging = plan.log_level != LogLevel::Off;
    let (Some(method), Some(path)) = (text(":method"), text(":path")) else {
        let verdict = plan.edge.unreadable("the request has no method or path");
        return Verdict {
            log: logging.then(|| verdict.log_line("", "", plan.edge.options().dry_run)),
            action: verdict.action,
            counter: Some(Counter::Errors),
            keys_wanted: None,
            route_stat: None,
            data_wanted: None,
            data_tenant: None,
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
    let log = logging.then(|| verdict.log_line(method, path, plan.edge.options().dry_run));
    let route_stat = match (
        plan.route_stats,
        verdict.route,
        counter.and_then(Counter::outcome),
    ) {
        (true, Some(template), Some(outcome)) => Some(route_stat(template, outcome)),
        _ => None,
    };
    let stores_data = engine.stores_data();
    Verdict {
        keys_wanted: verdict.keys_wanted().map(str::to_owned),
        data_wanted: verdict.data_wanted().map(str::to_owned),
        data_tenant: verdict.tenant().filter(|_| stores_data).map(str::to_owned),
        action: verdict.action,
        counter,
        log,
        route_stat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_stats_name_the_route_and_the_outcome() {
        assert_eq!(
            route_stat("/tenants/{tenant}/reports/{id}", "allowed"),
            "portcullis.route.tenants_tenant_reports_id.allowed"
        );
        assert_eq!(route_stat("/", "denied"), "portcullis.route.root.denied");
        let outcomes = [
            Counter::Allowed,
            Counter::Denied,
            Counter::Unauthenticated,
            Counter::Errors,
            Counter::BundleUpdates,
        ]
        .map(Counter::outcome);
        assert_eq!(
            outcomes,
            [
                Some("allowed"),
                Some("denied"),
                Some("unauthenticated"),
                Some("errors"),
                None
            ]
        );
        assert_eq!(
            route_stat("/v1.2/a b/{x}", "errors"),
            "portcullis.route.v1_2_a_b_x.errors"
        );
    }
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
                let config = serde_json::json!({
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
            let line: serde_json::Value = serde_json::from_str(on.log.as_deref().unwrap()).unwrap();
            assert_eq!(line["decision"], logged);
            assert_eq!(line["http"]["status"], status);
            assert!(!line.to_string().contains("secret"), "{line}");
        }
    }
}
