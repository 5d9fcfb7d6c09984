//! Envoy ext_authz, HTTP service mode (`/ext_authz` + the original path, as Envoy's
//! `path_prefix` sends it). The request is decided by the engine's edge — the bundle's routes
//! on the request's own method and path, its bearer token, the same rules as the Envoy filter —
//! never by headers a client could set. 200 allows and carries the identity headers for
//! Envoy's `allowed_upstream_headers`; anything else is
//! the denial Envoy passes to the client (401 with `WWW-Authenticate`, 403, 400, 503).
//!
//! An allow sets the identity headers through Envoy's `allowed_upstream_headers` (which
//! replaces a client's copy), and names every identity header it does not set (an unmatched
//! route passed, a dry run, `failure_mode: open`) in `x-envoy-auth-headers-to-remove`, so that
//! a client's copy never reaches the upstream; underscore spellings are refused by the
//! listener (`headers_with_underscores_action: REJECT_REQUEST`, as the example configuration
//! has it).

use super::Shared;
use super::workers::Priority;
use crate::component::{EdgeAction, HttpCheck};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;

/// The path prefix Envoy is configured to send (`http_service.path_prefix`).
const PREFIX: &str = "/ext_authz";

/// The response header of an allow naming request headers Envoy removes before the request
/// goes upstream.
const REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");

pub(super) async fn check(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().as_str().to_owned();
    let full = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let path = full.strip_prefix(PREFIX).unwrap_or(full);
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let check = HttpCheck {
        method,
        path,
        headers,
    };
    let now = shared.clock.now();
    let start = Instant::now();
    let verdict = match shared
        .run(Priority::Interactive, move |i| i.decide_http(&check, now))
        .await
    {
        Ok(verdict) => verdict,
        // A failure on the way to a decision is a denial Envoy passes on (fail closed).
        Err(response) => return *response,
    };
    match &verdict.decided {
        Some(decided) => {
            if let Err(withheld) = shared.record(decided, start.elapsed()).await {
                return *withheld;
            }
        }
        None => shared.metrics.decision(
            if verdict.outcome == "denied" {
                "deny"
            } else {
                "error"
            },
            start.elapsed(),
        ),
    }
    match verdict.action {
        EdgeAction::Forward(identity) => {
            let mut response = StatusCode::OK.into_response();
            let headers = response.headers_mut();
            let unset: Vec<&str> = shared
                .identity_headers
                .iter()
                .filter(|name| !identity.iter().any(|(n, _)| n == *name))
                .map(String::as_str)
                .collect();
            if let Ok(value) = HeaderValue::from_str(&unset.join(","))
                && !unset.is_empty()
            {
                headers.insert(REMOVE, value);
            }
            for (name, value) in identity {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    headers.insert(name, value);
                }
            }
            response
        }
        EdgeAction::Respond {
            status,
            headers,
            body,
        } => {
            let mut response = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
                body,
            )
                .into_response();
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    response.headers_mut().insert(name, value);
                }
            }
            response
        }
    }
}
