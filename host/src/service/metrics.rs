//! Prometheus metrics. The fixed counters are atomics; the labelled ones (decisions by error
//! code, and by tenant when asked for) take a short lock, and allocate only for a label value
//! not seen before.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0,
];

/// Outcomes counted by `portcullis_decisions_total`.
pub const OUTCOMES: [&str; 4] = ["allow", "deny", "unauthenticated", "error"];

/// The service's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    decisions: [AtomicU64; 4],
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_nanos: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    tls_reloads_ok: AtomicU64,
    tls_reloads_failed: AtomicU64,
    key_fetches_ok: AtomicU64,
    key_fetches_failed: AtomicU64,
    audit_written: AtomicU64,
    audit_dropped: AtomicU64,
    audit_refused: AtomicU64,
    overloaded: AtomicU64,
    too_large: AtomicU64,
    /// The accept loops' counts (main and admin listeners together).
    pub connections: std::sync::Arc<super::listener::ConnectionStats>,
    /// Decisions with an error, by the first error's code (engine codes: a bounded set).
    errors: Mutex<BTreeMap<String, u64>>,
    /// Decisions by tenant, by outcome (in the order of [`OUTCOMES`]), when asked for
    /// (`--metrics-tenants`).
    tenants: Option<Mutex<BTreeMap<String, [u64; 4]>>>,
    /// The bundle served: revision, and when it was loaded (unix seconds).
    bundle: Mutex<Option<(String, i64)>>,
}

/// Distinct error codes or tenants counted at most; beyond, they are counted as `other` (a
/// label's values must stay few, whatever requests arrive).
const MAX_LABELS: usize = 1000;

/// The position of `outcome` in [`OUTCOMES`]; anything else counts as `error`.
fn outcome_index(outcome: &str) -> usize {
    OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(3)
}

/// Count under label value `key` (`other` once [`MAX_LABELS`] values are known).
fn count<V: Default>(map: &Mutex<BTreeMap<String, V>>, key: &str, bump: impl FnOnce(&mut V)) {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(value) = map.get_mut(key) {
        return bump(value);
    }
    let key = if map.len() >= MAX_LABELS {
        "other"
    } else {
        key
    };
    bump(map.entry(key.to_owned()).or_default());
}

impl Metrics {
    /// Metrics that also count decisions by tenant (`portcullis_tenant_decisions_total`): the
    /// bundle's tenants only, at most a thousand.
    pub fn with_tenants() -> Self {
        Self {
            tenants: Some(Mutex::default()),
            ..Self::default()
        }
    }

    /// Count what a decision says beyond its outcome: its first error's code, its tenant.
    pub fn decided(&self, outcome: &str, error: Option<&str>, tenant: Option<&str>) {
        if let Some(code) = error
            && code.len() <= 40
            && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            count(&self.errors, code, |n| *n += 1);
        }
        if let (Some(tenants), Some(tenant)) = (&self.tenants, tenant) {
            let index = outcome_index(outcome);
            count(tenants, tenant, |counts| {
                if let Some(n) = counts.get_mut(index) {
                    *n += 1;
                }
            });
        }
    }

    /// The bundle now served.
    pub fn bundle_loaded(&self, revision: &str, at: i64) {
        *self.bundle.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((revision.to_owned(), at));
    }

    /// Count a decision (`outcome`: `allow`, `deny`, `unauthenticated` or `error`) and how long
    /// it took.
    pub fn decision(&self, outcome: &str, elapsed: Duration) {
        let index = outcome_index(outcome);
        if let Some(counter) = self.decisions.get(index) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .and_then(|i| self.buckets.get(i))
        {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Count a bundle reload.
    pub fn reload(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a reload of a listener's TLS files.
    pub fn tls_reload(&self, ok: bool) {
        let counter = if ok {
            &self.tls_reloads_ok
        } else {
            &self.tls_reloads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a key fetch.
    pub fn key_fetch(&self, ok: bool) {
        let counter = if ok {
            &self.key_fetches_ok
        } else {
            &self.key_fetches_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Count an audit record written or dropped.
    pub fn audit(&self, written: bool) {
        let counter = if written {
            &self.audit_written
        } else {
            &self.audit_dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a request refused because the decision queues were full (503).
    pub fn overloaded(&self) {
        self.overloaded.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a request refused for its size (413).
    pub fn too_large(&self) {
        self.too_large.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a decision withheld because the audit log did not take its record in time.
    pub fn audit_withheld(&self) {
        self.audit_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Decisions withheld so far because the audit log did not take their record in time.
    pub fn audit_withheld_count(&self) -> u64 {
        self.audit_refused.load(Ordering::Relaxed)
    }

    /// Audit records dropped so far.
    pub fn audit_dropped(&self) -> u64 {
        self.audit_dropped.load(Ordering::Relaxed)
    }

    /// Failed reloads so far.
    pub fn reloads_failed(&self) -> u64 {
        self.reloads_failed.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        out.push_str("# HELP portcullis_decisions_total Decisions by outcome.\n");
        out.push_str("# TYPE portcullis_decisions_total counter\n");
        for (outcome, counter) in OUTCOMES.iter().zip(&self.decisions) {
            let _ = writeln!(
                out,
                "portcullis_decisions_total{{outcome=\"{outcome}\"}} {}",
                get(counter)
            );
        }
        out.push_str("# HELP portcullis_decision_seconds Time to decide, including the sandbox.\n");
        out.push_str("# TYPE portcullis_decision_seconds histogram\n");
        let mut cumulative = 0;
        for (bound, counter) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += get(counter);
            let _ = writeln!(
                out,
                "portcullis_decision_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = get(&self.latency_count);
        let _ = writeln!(
            out,
            "portcullis_decision_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        #[allow(clippy::cast_precision_loss)]
        let sum = get(&self.latency_sum_nanos) as f64 / 1e9;
        let _ = writeln!(out, "portcullis_decision_seconds_sum {sum}");
        let _ = writeln!(out, "portcullis_decision_seconds_count {count}");
        out.push_str("# HELP portcullis_decision_errors_total Decisions with an error, by the first error's code.\n");
        out.push_str("# TYPE portcullis_decision_errors_total counter\n");
        for (code, n) in self
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "portcullis_decision_errors_total{{code=\"{code}\"}} {n}"
            );
        }
        if let Some(tenants) = &self.tenants {
            out.push_str(
                "# HELP portcullis_tenant_decisions_total Decisions by tenant and outcome.\n",
            );
            out.push_str("# TYPE portcullis_tenant_decisions_total counter\n");
            for (tenant, counts) in tenants
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
            {
                for (outcome, n) in OUTCOMES.iter().zip(counts).filter(|(_, n)| **n > 0) {
                    let _ = writeln!(
                        out,
                        "portcullis_tenant_decisions_total{{tenant=\"{tenant}\",outcome=\"{outcome}\"}} {n}"
                    );
                }
            }
        }
        if let Some((revision, at)) = &*self.bundle.lock().unwrap_or_else(PoisonError::into_inner) {
            out.push_str("# HELP portcullis_bundle_info The bundle served.\n# TYPE portcullis_bundle_info gauge\n");
            let _ = writeln!(out, "portcullis_bundle_info{{revision=\"{revision}\"}} 1");
            out.push_str("# HELP portcullis_bundle_loaded_timestamp_seconds When the bundle served was loaded.\n# TYPE portcullis_bundle_loaded_timestamp_seconds gauge\n");
            let _ = writeln!(out, "portcullis_bundle_loaded_timestamp_seconds {at}");
        }
        let pairs = [
            (
                "portcullis_bundle_reloads_total",
                "Bundle reloads by result.",
                &self.reloads_ok,
                &self.reloads_failed,
                "result",
                "ok",
                "refused",
            ),
            (
                "portcullis_tls_reloads_total",
                "Reloads of a listener's TLS files (SIGHUP) by result.",
                &self.tls_reloads_ok,
                &self.tls_reloads_failed,
                "result",
                "ok",
                "refused",
            ),
            (
                "portcullis_key_fetches_total",
                "JWK set fetches by result.",
                &self.key_fetches_ok,
                &self.key_fetches_failed,
                "result",
                "ok",
                "failed",
            ),
        ];
        for (name, help, ok, failed, label, ok_value, failed_value) in pairs {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name}{{{label}=\"{ok_value}\"}} {}", get(ok));
            let _ = writeln!(out, "{name}{{{label}=\"{failed_value}\"}} {}", get(failed));
        }
        let _ = writeln!(
            out,
            "# HELP portcullis_audit_records_total Audit records written.\n# TYPE portcullis_audit_records_total counter"
        );
        let _ = writeln!(
            out,
            "portcullis_audit_records_total {}",
            get(&self.audit_written)
        );
        let _ = writeln!(
            out,
            "# HELP portcullis_audit_dropped_total Audit records dropped because the queue was full.\n# TYPE portcullis_audit_dropped_total counter"
        );
        let _ = writeln!(
            out,
            "portcullis_audit_dropped_total {}",
            get(&self.audit_dropped)
        );
        let _ = writeln!(
            out,
            "# HELP portcullis_audit_withheld_total Decisions answered 503 because the audit log (no-drop, committed) did not take their record in time.\n# TYPE portcullis_audit_withheld_total counter\nportcullis_audit_withheld_total {}",
            get(&self.audit_refused)
        );
        let c = &self.connections;
        let counters: [(&str, &str, &AtomicU64); 7] = [
            (
                "portcullis_requests_overloaded_total",
                "Requests answered 503 because the decision queues were full.",
                &self.overloaded,
            ),
            (
                "portcullis_requests_too_large_total",
                "Requests answered 413 (body, batch items or expanded size over the limit).",
                &self.too_large,
            ),
            (
                "portcullis_connections_closed_idle_total",
                "Connections closed for sitting idle, or to make room at the connection cap.",
                &c.closed_idle,
            ),
            (
                "portcullis_connections_closed_slow_total",
                "Connections closed because their headers, or their TLS handshake, did not arrive in time.",
                &c.closed_slow,
            ),
            (
                "portcullis_connections_refused_total",
                "Connections refused at the cap, every open one being busy.",
                &c.refused,
            ),
            (
                "portcullis_tls_handshake_failures_total",
                "TLS handshakes that failed: plain HTTP, a client certificate missing or refused, nothing in common.",
                &c.tls_failed,
            ),
            (
                "portcullis_connections_open",
                "Connections open now.",
                &c.open,
            ),
        ];
        for (name, help, counter) in counters {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                get(counter)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.decision("allow", Duration::from_micros(30));
        m.decision("deny", Duration::from_millis(3));
        m.decision("bogus", Duration::from_secs(5));
        let text = m.render();
        assert!(
            text.contains("portcullis_decisions_total{outcome=\"allow\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("portcullis_decisions_total{outcome=\"error\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("portcullis_decision_seconds_bucket{le=\"0.00005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("portcullis_decision_seconds_bucket{le=\"0.005\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("portcullis_decision_seconds_bucket{le=\"1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("portcullis_decision_seconds_bucket{le=\"+Inf\"} 3"),
            "{text}"
        );
    }
}
