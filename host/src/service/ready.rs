//! Readiness: `GET /readyz` on both listeners, and the remote issuers' key state on the admin
//! listener (`GET /v1/keys`, behind its credential).
//!
//! The service is ready once it serves a bundle and has tried every remote issuer's keys once
//! (loaded, or failed). An issuer without keys does not make it unready: its tenants' decisions
//! fail closed (`503 token_keys_unavailable`) while every other tenant is served — one client's
//! IdP must not take the service out of rotation for all of them. Which issuers lack keys, and
//! why, is in the bodies.

use super::Shared;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use portcullis_engine::IssuerKeyStatus;
use serde_json::{Value, json};
use std::sync::Arc;

/// One remote issuer's keys, as readiness reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyState {
    /// Not fetched yet.
    Pending,
    /// Loaded, and the last fetch succeeded.
    Loaded,
    /// Loaded once, but the last fetch failed: the last good keys serve.
    Stale,
    /// Never loaded: the issuer's tenants are not served.
    Missing,
}

impl KeyState {
    fn of(status: &IssuerKeyStatus) -> Self {
        match (status.loaded_at, &status.last_error) {
            (Some(_), None) => Self::Loaded,
            (Some(_), Some(_)) => Self::Stale,
            (None, Some(_)) => Self::Missing,
            (None, None) => Self::Pending,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Loaded => "loaded",
            Self::Stale => "stale",
            Self::Missing => "missing",
        }
    }
}

/// The service's readiness at one moment.
pub(super) struct Readiness {
    revision: Option<String>,
    issuers: Vec<(IssuerKeyStatus, KeyState, Vec<String>)>,
}

impl Readiness {
    pub(super) fn of(shared: &Shared) -> Self {
        let served = shared.served.load_full();
        let issuers = shared
            .keys
            .status()
            .into_iter()
            .map(|status| {
                let tenants = served
                    .as_ref()
                    .map(|s| s.bundle.issuer_tenants(&status.issuer))
                    .unwrap_or_default();
                let state = KeyState::of(&status);
                (status, state, tenants)
            })
            .collect();
        Self {
            revision: served.map(|s| s.bundle.revision().to_owned()),
            issuers,
        }
    }

    /// Ready: a bundle is served and no issuer's first fetch is still to come.
    pub(super) fn ready(&self) -> bool {
        self.revision.is_some() && self.count(KeyState::Pending) == 0
    }

    fn count(&self, state: KeyState) -> usize {
        self.issuers.iter().filter(|(_, s, _)| *s == state).count()
    }

    /// Why the service is not ready, or what limits it while ready.
    fn reason(&self) -> String {
        let (pending, missing) = (self.count(KeyState::Pending), self.count(KeyState::Missing));
        if self.revision.is_none() {
            "no bundle is loaded yet".to_owned()
        } else if pending > 0 {
            format!("fetching the keys of {pending} remote issuer(s) for the first time")
        } else if missing > 0 {
            format!(
                "serving; {missing} remote issuer(s) have no keys, their tenants' decisions fail \
                 closed (details: the admin listener's GET /v1/keys)"
            )
        } else {
            "serving".to_owned()
        }
    }

    /// The `/readyz` body: counts only, no tenant or issuer names (the decision listener is
    /// open to every caller, and the list of tenants is not theirs to read).
    pub(super) fn summary(&self) -> Value {
        json!({
            "ready": self.ready(),
            "reason": self.reason(),
            "revision": self.revision,
            "issuers": {
                "total": self.issuers.len(),
                "loaded": self.count(KeyState::Loaded),
                "stale": self.count(KeyState::Stale),
                "missing": self.count(KeyState::Missing),
                "pending": self.count(KeyState::Pending),
            },
        })
    }

    /// Every remote issuer's key state, with its tenants and last error (operators only).
    pub(super) fn detail(&self) -> Value {
        let issuers: Vec<Value> = self
            .issuers
            .iter()
            .map(|(status, state, tenants)| {
                json!({
                    "issuer": status.issuer,
                    "tenants": tenants,
                    "keys": state.as_str(),
                    "loaded_at": status.loaded_at.map(|ms| ms.div_euclid(1000)),
                    "next_fetch_at": (status.due_at != i64::MIN).then(|| status.due_at.div_euclid(1000)),
                    "last_error": status.last_error,
                })
            })
            .collect();
        let mut body = self.summary();
        if let Some(object) = body.as_object_mut() {
            object.insert("issuer_keys".to_owned(), Value::Array(issuers));
        }
        body
    }
}

/// `GET /readyz`: 200 when ready, else 503; the body says why.
pub(super) async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let readiness = Readiness::of(&shared);
    let status = if readiness.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(readiness.summary())).into_response()
}

/// `GET /v1/keys` (admin listener, credential required): every remote issuer's key state.
pub(super) async fn keys(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(Readiness::of(&shared).detail()).into_response()
}
