//! The admin listener (bundle, tenant bundles, metrics), its credential, and the one bundle
//! endpoint of the decision listener: a signed-in user's own tenant bundle.

use super::decide::{method_not_allowed, not_found};
use super::ready;
use super::workers::Priority;
use super::{ErrorCode, Served, Shared, edge_error};
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use std::time::Duration;

/// A bearer credential a listener or client must present, compared in constant time. Never
/// printed.
#[derive(Clone)]
pub struct Credential(Arc<[u8]>);

/// Why a credential is refused (never echoing it).
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Under 16 bytes.
    #[error("a credential needs at least 16 bytes")]
    Short,
    /// Spaces, control characters or non-ASCII bytes.
    #[error("a credential is printable ASCII without spaces")]
    NotPrintable,
    /// The file cannot be read.
    #[error("cannot read `{}`: {source}", .path.display())]
    Unreadable {
        /// The file.
        path: std::path::PathBuf,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// The file's credential is refused.
    #[error("`{}`: {problem}", .path.display())]
    InFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        problem: Box<CredentialError>,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential([redacted])")
    }
}

impl Credential {
    /// Read a credential from a file (one trailing newline removed).
    ///
    /// # Errors
    /// An unreadable, empty or short (under 16 bytes) file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, CredentialError> {
        let mut bytes = std::fs::read(path).map_err(|source| CredentialError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        Self::new(bytes).map_err(|e| CredentialError::InFile {
            path: path.to_path_buf(),
            problem: Box::new(e),
        })
    }

    /// A credential from its bytes.
    ///
    /// # Errors
    /// Fewer than 16 bytes, or bytes a header cannot carry.
    pub fn new(bytes: Vec<u8>) -> Result<Self, CredentialError> {
        if bytes.len() < 16 {
            return Err(CredentialError::Short);
        }
        if !bytes.iter().all(|b| b.is_ascii_graphic()) {
            return Err(CredentialError::NotPrintable);
        }
        Ok(Self(Arc::from(bytes)))
    }

    /// Whether the request's `Authorization: Bearer` is this credential (one header only).
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let bytes = value.as_bytes();
        let Some(presented) = bytes
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case(b"bearer "))
            .and_then(|_| bytes.get(7..))
        else {
            return false;
        };
        constant_time_eq(presented, &self.0)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // The length is not secret (it is in the documentation's minimum); the bytes are.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The router of the admin listener.
pub(super) fn router(shared: Arc<Shared>, timeout: Duration) -> Router {
    let protected = Router::new()
        .route("/v1/bundle", get(bundle))
        .route("/v1/bundle/tenants/{tenant}", get(tenant_bundle))
        .route("/metrics", get(metrics))
        .route("/v1/keys", get(ready::keys))
        .route("/v1/data/{tenant}", get(super::data::admin_sync))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            require_credential,
        ));
    Router::new()
        .merge(protected)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(shared)
}

async fn require_credential(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    match &shared.admin_token {
        Some(credential) if !credential.admits(request.headers()) => challenge(
            "the admin listener needs its bearer credential",
            "Bearer realm=\"portcullis-admin\"",
        ),
        _ => next.run(request).await,
    }
}

/// A 401 `unauthenticated` with its `WWW-Authenticate` challenge.
pub(super) fn challenge(message: &str, challenge: &'static str) -> Response {
    let mut response = edge_error(ErrorCode::Unauthenticated, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// Whether `If-None-Match` names `etag` (or is `*`).
pub(super) fn names_etag(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag.to_str().unwrap_or("") || tag.trim() == "*")
}

/// A JSON document with a strong ETag, or 304 when `If-None-Match` names it.
fn tagged(headers: &HeaderMap, etag: &HeaderValue, json: &str) -> Response {
    if names_etag(headers, etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag.clone())]).into_response();
    }
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag.clone()),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        json.to_owned(),
    )
        .into_response()
}

/// `GET /v1/bundle` (admin): the whole compiled bundle, as the Envoy filter's `bundle.remote`
/// polls it. It holds every tenant's configuration, never a secret.
async fn bundle(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some(served) = shared.served.load_full() else {
        return edge_error(ErrorCode::NotReady, "no bundle is loaded");
    };
    tagged(&headers, &served.etag, &served.json)
}

/// One tenant's distributable bundle, cut once per bundle revision.
fn tenant_slice(served: &Served, tenant: &str) -> Option<(HeaderValue, Arc<str>)> {
    let mut cache = served
        .tenants
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(found) = cache.get(tenant) {
        return Some(found.clone());
    }
    let slice = served.bundle.compiled().for_tenant(tenant)?;
    let etag = HeaderValue::from_str(&format!("\"{}\"", slice.revision)).ok()?;
    let entry = (etag, Arc::<str>::from(slice.to_json()));
    cache.insert(tenant.to_owned(), entry.clone());
    Some(entry)
}

/// `GET /v1/bundle/tenants/{tenant}` (admin): a tenant's distributable bundle.
async fn tenant_bundle(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(served) = shared.served.load_full() else {
        return edge_error(ErrorCode::NotReady, "no bundle is loaded");
    };
    match tenant_slice(&served, &tenant) {
        Some((etag, json)) => tagged(&headers, &etag, &json),
        None => edge_error(ErrorCode::NotFound, "no such tenant"),
    }
}

/// `GET /v1/bundle/tenant` (decision listener): the distributable bundle of the tenant whose
/// issuer verified the caller's bearer token — what a browser loads. Nobody gets another
/// tenant's configuration, and nobody without a valid token gets any.
/// The caller's one bearer token, by the engine's rule (RFC 6750: one `Authorization: Bearer`
/// header); `None` when there is none or it is not one.
pub(super) fn bearer(headers: &HeaderMap) -> Option<String> {
    let values: Vec<&[u8]> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    portcullis_engine::bearer_token(&values).ok().flatten()
}

pub(super) async fn own_tenant_bundle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    let unauthenticated = || {
        challenge(
            "a valid bearer token of the tenant is required",
            "Bearer realm=\"portcullis\"",
        )
    };
    let Some(token) = bearer(&headers) else {
        return unauthenticated();
    };
    let now = shared.clock.now();
    let principal = shared
        .run(Priority::Interactive, move |i| i.authenticate(&token, now))
        .await;
    let tenant = match principal {
        Ok(json) => serde_json::from_str::<serde_json::Value>(&json)
            .ok()
            .and_then(|p| p.get("tenant")?.as_str().map(str::to_owned)),
        Err(response) if response.status().is_server_error() => return *response,
        Err(_) => None,
    };
    let Some(tenant) = tenant else {
        return unauthenticated();
    };
    let Some(served) = shared.served.load_full() else {
        return edge_error(ErrorCode::NotReady, "no bundle is loaded");
    };
    match tenant_slice(&served, &tenant) {
        Some((etag, json)) => {
            let mut response = tagged(&headers, &etag, &json);
            response
                .headers_mut()
                .insert(header::VARY, HeaderValue::from_static("authorization"));
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache"),
            );
            response
        }
        None => unauthenticated(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        shared.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_admit_exactly_one_matching_bearer_header() {
        let credential = Credential::new(b"0123456789abcdef-admin".to_vec()).unwrap();
        let mut headers = HeaderMap::new();
        assert!(!credential.admits(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef-admin"),
        );
        assert!(credential.admits(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer 0123456789abcdef-admin"),
        );
        assert!(credential.admits(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef-admiN"),
        );
        assert!(!credential.admits(&headers));
        headers.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef-admin"),
        );
        assert!(!credential.admits(&headers), "two headers: which one?");
        assert!(Credential::new(b"short".to_vec()).is_err());
        assert!(format!("{credential:?}").contains("redacted"));
    }
}
