//! The decision listener: `POST /v1/decide`, `POST /v1/decide/batch`, the AuthZEN and
//! ext_authz endpoints, `GET /v1/bundle/tenant` (a user's own tenant bundle) and the health
//! probes.

use super::workers::Priority;
use super::{
    Early, ErrorCode, Shared, admin, authzen, data, edge_error, ext_authz, json_response,
    read_body, ready,
};
use crate::component::{CallError, Decided};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{any, get, post};
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Batch items decided per job: a single decision waits for at most one such chunk.
const CHUNK: usize = 16;

/// The router of the decision listener.
pub(super) fn router(shared: Arc<Shared>, timeout: Duration) -> Router {
    Router::new()
        .route("/v1/decide", post(decide))
        .route("/v1/decide/batch", post(decide_batch))
        .route("/access/v1/evaluation", post(authzen::evaluation))
        .route("/access/v1/evaluations", post(authzen::evaluations))
        .route("/ext_authz", any(ext_authz::check))
        .route("/ext_authz/{*path}", any(ext_authz::check))
        .route("/v1/bundle/tenant", get(admin::own_tenant_bundle))
        .route("/v1/data/{tenant}", get(data::sync))
        .route("/v1/data/{tenant}/entities", get(data::list))
        .route(
            "/v1/data/{tenant}/entities/{entity_type}/{*id}",
            get(data::get_entity)
                .put(data::put)
                .patch(data::patch)
                .delete(data::delete),
        )
        .route("/v1/data/{tenant}/import", post(data::import))
        .route("/v1/data/{tenant}/export", get(data::export))
        .route("/v1/data/{tenant}/slice", get(data::slice))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are read with explicit limits (`read_body`), answering a stable error code.
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            access_log,
        ))
        .with_state(shared)
}

/// One access-log line per request: time, method, path (never the query, which may hold a
/// token), status and duration. Nothing else the client sent is written.
async fn access_log(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    if !shared.access.is_on() {
        return next.run(request).await;
    }
    let method = request.method().as_str().to_owned();
    // At most 256 characters: a path is the client's to choose.
    let path: String = request.uri().path().chars().take(256).collect();
    let start = Instant::now();
    let response = next.run(request).await;
    let line = serde_json::json!({
        "ts": crate::log::now_rfc3339(),
        "method": method,
        "path": path,
        "status": response.status().as_u16(),
        "micros": u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
    });
    let _ = shared.access.record_all(vec![line.to_string()]).await;
    response
}

pub(super) async fn not_found() -> Response {
    edge_error(ErrorCode::NotFound, "no such endpoint")
}

/// A known endpoint asked with another method: axum has set `Allow`; the body is the
/// documented `{code, message}`.
pub(super) async fn method_not_allowed() -> Response {
    edge_error(
        ErrorCode::MethodNotAllowed,
        "the endpoint does not take this method (see `Allow`)",
    )
}

async fn decide(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let bearer = match bearer_of(request.headers()) {
        Ok(bearer) => bearer,
        Err(response) => return *response,
    };
    let body = match read_body(&shared, request.into_body(), shared.input.max_body).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let now = shared.clock.now();
    let start = Instant::now();
    match shared
        .run(Priority::Interactive, move |i| {
            i.decide_with_bearer(&body, bearer.as_deref(), now)
        })
        .await
    {
        Ok(decided) => match shared.record(&decided, start.elapsed()).await {
            Ok(()) => json_response(StatusCode::OK, decided.decision_json),
            Err(withheld) => *withheld,
        },
        Err(response) => {
            shared.metrics.decision("error", start.elapsed());
            *response
        }
    }
}

/// The caller's bearer token from `Authorization` (RFC 6750 §2.1), if it sent one: the same
/// rule as the body's `token`, which it may not send too ([`portcullis_engine::apply_bearer`]).
fn bearer_of(headers: &axum::http::HeaderMap) -> Result<Option<String>, Early> {
    let values: Vec<&[u8]> = headers
        .get_all(axum::http::header::AUTHORIZATION)
        .iter()
        .map(axum::http::HeaderValue::as_bytes)
        .collect();
    portcullis_engine::bearer_token(&values).map_err(|info| {
        let mut response = edge_error(ErrorCode::RequestInvalid, &info.message);
        response.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static(
                "Bearer realm=\"portcullis\", error=\"invalid_request\"",
            ),
        );
        Box::new(response)
    })
}

/// `POST /v1/decide/batch`'s object form: one token for every request, as the JS SDK's
/// `decideMany(token, requests)` takes it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody<'a> {
    #[serde(default)]
    token: Option<String>,
    #[serde(borrow)]
    requests: &'a RawValue,
}

/// Decide a batch: a JSON array of requests, each with its token, or `{"token", "requests":
/// [...]}` (or an `Authorization: Bearer` header) with one token for all; answer
/// `{"decisions": [...]}` with, per element, the decision or `{"error": {"code", "message"}}`.
async fn decide_batch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let header = match bearer_of(request.headers()) {
        Ok(bearer) => bearer,
        Err(response) => return *response,
    };
    let body = match read_body(&shared, request.into_body(), shared.input.max_batch_body).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let (array, bearer) = if body.trim_start().starts_with('{') {
        match portcullis_engine::parse_request::<BatchBody>("batch", &body) {
            Ok(BatchBody { token, requests }) => {
                match portcullis_engine::one_token(header, token) {
                    Ok(token) => (requests.get(), token),
                    Err(info) => return edge_error(ErrorCode::RequestInvalid, &info.message),
                }
            }
            Err(info) => return edge_error(ErrorCode::RequestInvalid, &info.message),
        }
    } else {
        (body.as_str(), header)
    };
    let items = match split_array(array, shared.input.max_batch_items) {
        Ok(items) => items,
        Err(response) => return *response.into_response(&shared),
    };
    let texts: Vec<String> = items.iter().map(|i| i.get().to_owned()).collect();
    match batch(&shared, texts, bearer).await {
        Ok(results) => {
            let items: Vec<String> = results.into_iter().map(batch_item).collect();
            json_response(
                StatusCode::OK,
                format!("{{\"decisions\":[{}]}}", items.join(",")),
            )
        }
        Err(response) => *response,
    }
}

fn batch_item(result: Result<Decided, (String, String)>) -> String {
    match result {
        Ok(decided) => decided.decision_json,
        Err((code, message)) => {
            serde_json::json!({"error": {"code": code, "message": message}}).to_string()
        }
    }
}

/// Why a batch body was refused before any decision.
pub(super) enum SplitError {
    /// More items than allowed.
    TooMany(usize),
    /// Not a JSON array (the message never echoes the body).
    Invalid(String),
}

impl SplitError {
    pub(super) fn into_response(self, shared: &Shared) -> Early {
        Box::new(match self {
            Self::TooMany(limit) => {
                shared.metrics.too_large();
                edge_error(
                    ErrorCode::RequestTooLarge,
                    &format!("the batch has more than {limit} items"),
                )
            }
            Self::Invalid(why) => edge_error(ErrorCode::RequestInvalid, &why),
        })
    }
}

/// The elements of a JSON array, as raw text, without parsing them further and stopping as
/// soon as there are more than `max`.
pub(super) fn split_array(text: &str, max: usize) -> Result<Vec<&RawValue>, SplitError> {
    struct Items<'c> {
        max: usize,
        too_many: &'c std::cell::Cell<bool>,
    }
    impl<'de> Visitor<'de> for Items<'_> {
        type Value = Vec<&'de RawValue>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<&'de RawValue>()? {
                if out.len() == self.max {
                    // Stop reading here: the rest is not looked at.
                    self.too_many.set(true);
                    return Err(serde::de::Error::custom("too many items"));
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    let too_many = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = de
        .deserialize_seq(Items {
            max,
            too_many: &too_many,
        })
        .and_then(|items| de.end().map(|()| items));
    match parsed {
        Ok(items) => Ok(items),
        Err(_) if too_many.get() => Err(SplitError::TooMany(max)),
        Err(e) => Err(SplitError::Invalid(portcullis_engine::describe_json_error(
            "batch", &e,
        ))),
    }
}

/// Decide engine requests (JSON text each) in chunks on the bulk queue; one result per item,
/// in order. Every chunk is queued or none (a full queue refuses the whole batch).
pub(super) async fn batch(
    shared: &Arc<Shared>,
    items: Vec<String>,
    bearer: Option<String>,
) -> Result<Vec<Result<Decided, (String, String)>>, Early> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let now = shared.clock.now();
    let start = Instant::now();
    let count = items.len();
    let mut jobs = Vec::with_capacity(count.div_ceil(CHUNK));
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let chunk: Vec<String> = items.by_ref().take(CHUNK).collect();
        let body = format!("[{}]", chunk.join(","));
        let (shared, bearer) = (Arc::clone(shared), bearer.clone());
        jobs.push(move || {
            shared
                .pool
                .with(|i| i.decide_batch(&body, bearer.as_deref(), now))
        });
    }
    let receivers = shared
        .workers
        .submit_all(Priority::Bulk, jobs)
        .map_err(|_| shared.overloaded())?;
    let mut results = Vec::with_capacity(count);
    for receiver in receivers {
        match shared.outcome(receiver.await) {
            Ok(chunk) => results.extend(chunk),
            Err(response) => {
                shared.metrics.decision("error", start.elapsed());
                return Err(response);
            }
        }
    }
    let elapsed = start.elapsed() / u32::try_from(count).unwrap_or(u32::MAX).max(1);
    // Every record is handed over at once (a committed log syncs them together); one that is
    // not taken withholds the whole batch.
    shared
        .record_all(results.iter().filter_map(|r| r.as_ref().ok()), elapsed)
        .await?;
    Ok(results
        .into_iter()
        .map(|r| match r {
            Ok(decided) => Ok(decided),
            Err(CallError::Engine { code, message }) => {
                shared.metrics.decision("error", elapsed);
                Err((code, message))
            }
            Err(CallError::Sandbox(why)) => {
                shared.metrics.decision("error", elapsed);
                Err((ErrorCode::Unavailable.as_str().to_owned(), why))
            }
        })
        .collect())
}
