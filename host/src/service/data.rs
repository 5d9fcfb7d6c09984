//! The tenants' stored data: the write API, the sync endpoint, and what keeps every engine
//! instance on the store's latest revision.
//!
//! The store ([`crate::store`]) is the source of truth. The service holds each tenant's data
//! natively too ([`TenantData`], in the pool's [`DataState`](crate::component::DataState)): a
//! write is checked by the engine against it (schema, tenant, parents, cycles, depth), then
//! committed to the store as a compare-and-swap on the tenant's revision, then published to
//! every instance before it is acknowledged. Another replica's commit makes the swap fail: the
//! tenant is re-read from the store and the write checked again. Replicas also poll the store
//! for each other's commits.
//!
//! Every call is authorized by the engine itself, from the caller's bearer token: the
//! principal must be of the tenant named in the path, and the bundle's policies must allow the
//! bundle's read or write action on `<resource>::"<tenant>"` (`settings.data.access`). Every
//! change is an audit line (actor, tenant, entity, before → after, revision) next to the
//! decision that allowed it.

use super::workers::Priority;
use super::{Early, ErrorCode, Shared, admin, edge_error, error_response, read_body};
use crate::component::{Decided, TenantDocs};
use crate::store::{self, EntityKey, Store, StoreError};
use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_engine::{
    Bundle, CheckedWrite, DataChange, DataDocument, DataError, EntityWrite, TenantData,
};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The largest body of one entity write.
const MAX_ENTITY_BODY: usize = store::MAX_ENTITY_BYTES + 1024;

/// The most entities one page of a listing holds.
const MAX_PAGE: usize = 1000;

/// How the service keeps its data.
#[derive(Clone, Debug)]
pub struct DataOptions {
    /// The store: `sqlite:PATH` (or a path) or `postgres://…`.
    pub store: String,
    /// How often the store is checked for other replicas' commits.
    pub poll_interval: Duration,
    /// The largest import body, bytes.
    pub max_import: usize,
}

impl Default for DataOptions {
    fn default() -> Self {
        Self {
            store: "sqlite:portcullis-data.db".into(),
            poll_interval: Duration::from_secs(1),
            max_import: 64 * 1024 * 1024,
        }
    }
}

/// The store and the per-tenant write locks.
pub(super) struct Data {
    store: Arc<dyn Store>,
    writing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub(super) options: DataOptions,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Data").finish_non_exhaustive()
    }
}

impl Data {
    /// Open the store.
    ///
    /// # Errors
    /// The store cannot be opened.
    pub(super) fn open(options: DataOptions) -> Result<Self, StoreError> {
        Ok(Self {
            store: Arc::from(store::open(&options.store)?),
            writing: Mutex::new(HashMap::new()),
            options,
        })
    }

    fn lock_for(&self, tenant: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(
            self.writing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(tenant.to_owned())
                .or_default(),
        )
    }
}

/// The changes of the store after `since`, as a data document (blocking). `None` when the
/// store no longer keeps them.
fn read_changes(
    store: &dyn Store,
    tenant: &str,
    since: u64,
) -> Result<Option<DataDocument>, StoreError> {
    let changes = match store.changes_since(tenant, since, store::MAX_WRITES) {
        Ok(changes) => changes,
        Err(StoreError::TooOld { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let revision = changes.last().map_or(since, |c| c.revision);
    let mut out = Vec::with_capacity(changes.len());
    for change in changes {
        let entity = match change.after {
            Some(text) => Some(
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("entity `{}`: {e}", change.key)))?,
            ),
            None => None,
        };
        out.push(DataChange {
            revision: change.revision,
            entity_type: change.key.entity_type,
            id: change.key.id,
            entity,
        });
    }
    Ok(Some(DataDocument {
        tenant: tenant.to_owned(),
        revision,
        since: Some(since),
        changes: out,
        ..DataDocument::default()
    }))
}

impl Shared {
    /// Read every tenant of `bundle` from the store and make it what instances decide with
    /// (blocking). A tenant whose stored data the bundle refuses is left without data: its
    /// decisions are refused (`data_unavailable`) rather than made on part of its facts.
    pub(super) fn load_all_data(&self, bundle: &Bundle) {
        let Some(data) = self.data.get() else { return };
        if bundle.compiled().settings.data.stored.is_empty() {
            return;
        }
        let mut published = Vec::new();
        for tenant in bundle.tenants() {
            match store::checked::read_tenant(data.store.as_ref(), bundle, tenant) {
                Ok(held) => {
                    published.push((
                        tenant.to_owned(),
                        Some(Arc::new(TenantDocs::new(Arc::new(held), None))),
                    ));
                }
                Err(why) => {
                    crate::log::error(&format!(
                        "tenant `{tenant}`'s stored data is not used: {why}"
                    ));
                    published.push((tenant.to_owned(), None));
                }
            }
        }
        self.pool.publish_data(published);
    }

    /// Bring tenants the store has moved on (another replica's commits) to its revision
    /// (blocking).
    pub(super) fn poll_data(&self, bundle: &Bundle) -> Result<usize, StoreError> {
        let Some(data) = self.data.get() else {
            return Ok(0);
        };
        if bundle.compiled().settings.data.stored.is_empty() {
            return Ok(0);
        }
        let state = self.pool.data();
        let mut published = Vec::new();
        for (tenant, revision) in data.store.tenants()? {
            if !bundle.compiled().tenants.contains_key(&tenant) {
                continue;
            }
            let held = state.tenants.get(&tenant);
            if held.is_some_and(|docs| docs.revision() >= revision) {
                continue;
            }
            let docs = match held {
                Some(docs) => match read_changes(data.store.as_ref(), &tenant, docs.revision())? {
                    Some(changes) => {
                        let step = (docs.revision(), Arc::from(json_text(&changes)));
                        let mut next = TenantData::clone(&docs.data);
                        match next.apply(bundle, changes) {
                            Ok(()) => Some(TenantDocs::new(Arc::new(next), Some(step))),
                            Err(_) => None,
                        }
                    }
                    None => None,
                },
                None => None,
            };
            let docs = match docs {
                Some(docs) => docs,
                None => match store::checked::read_tenant(data.store.as_ref(), bundle, &tenant) {
                    Ok(fresh) => TenantDocs::new(Arc::new(fresh), None),
                    Err(why) => {
                        crate::log::error(&format!(
                            "tenant `{tenant}`'s stored data is not used: {why}"
                        ));
                        continue;
                    }
                },
            };
            published.push((tenant, Some(Arc::new(docs))));
        }
        let count = published.len();
        if count > 0 {
            self.pool.publish_data(published);
        }
        Ok(count)
    }
}

fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The status of a refused data call.
fn data_status(error: &DataError) -> StatusCode {
    match error.code() {
        "data_other_tenant" | "data_parent_tenant" | "data_static" => StatusCode::FORBIDDEN,
        "data_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "data_cycle" | "data_depth" | "data_revision" => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn data_error(error: &DataError) -> Early {
    Box::new(error_response(
        data_status(error),
        error.code(),
        &error.to_string(),
    ))
}

fn store_error(error: &StoreError) -> Early {
    crate::log::error(&format!("data store: {error}"));
    let (status, code) = match error {
        StoreError::Conflict { .. } => (StatusCode::CONFLICT, "data_conflict"),
        StoreError::EntityTooLarge { .. }
        | StoreError::TooManyWrites { .. }
        | StoreError::CommitTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "data_too_large"),
        StoreError::Invalid { .. }
        | StoreError::EmptyCommit
        | StoreError::DuplicateWrite { .. } => (StatusCode::BAD_REQUEST, "data_malformed"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "data_store_unavailable"),
    };
    Box::new(error_response(status, code, &error.to_string()))
}

/// `f` on tokio's blocking pool (the store blocks); a task that died is a 503.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, Early> {
    tokio::task::spawn_blocking(f).await.map_err(|_| {
        refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the store failed",
        )
    })
}

/// A request body as JSON, or `400 data_malformed` saying where it is not.
fn parse_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, Early> {
    serde_json::from_str(text).map_err(|e| {
        refused(
            StatusCode::BAD_REQUEST,
            "data_malformed",
            &portcullis_engine::describe_json_error(what, &e),
        )
    })
}

fn not_found() -> Early {
    refused(StatusCode::NOT_FOUND, "data_not_found", "no such entity")
}

fn refused(status: StatusCode, code: &str, message: &str) -> Early {
    Box::new(error_response(status, code, message))
}

/// Who a call is by: the principal the engine verified, and the decision that allowed it.
struct Actor {
    principal: String,
    decision_id: String,
}

/// The bundle, the data layer, and the tenant named in the path, which must be the bundle's.
fn context(shared: &Shared, tenant: &str) -> Result<(Arc<Bundle>, Arc<Data>), Early> {
    let Some(served) = shared.served.load_full() else {
        return Err(Box::new(edge_error(
            ErrorCode::NotReady,
            "no bundle is loaded",
        )));
    };
    let bundle = Arc::clone(&served.bundle);
    let Some(data) = shared.data.get().cloned() else {
        return Err(refused(
            StatusCode::NOT_FOUND,
            "data_off",
            "this service keeps no data (the bundle stores no entity types)",
        ));
    };
    if bundle.compiled().settings.data.stored.is_empty() {
        return Err(refused(
            StatusCode::NOT_FOUND,
            "data_off",
            "the bundle stores no entity types",
        ));
    }
    if !bundle.compiled().tenants.contains_key(tenant) {
        return Err(refused(
            StatusCode::NOT_FOUND,
            "data_tenant",
            &format!(
                "unknown tenant `{}`",
                tenant.chars().take(64).collect::<String>()
            ),
        ));
    }
    Ok((bundle, data))
}

/// Authorize a call on `tenant`'s data with the caller's token: the engine decides the
/// bundle's read or write action on `<resource>::"<tenant>"`, and the principal must be that
/// tenant's. The decision is audited whatever it is.
async fn authorize(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    bundle: &Bundle,
    tenant: &str,
    write: bool,
) -> Result<Actor, Early> {
    let unauthenticated = || {
        Box::new(admin::challenge(
            "a valid bearer token of the tenant is required",
            "Bearer realm=\"portcullis\"",
        ))
    };
    let token = admin::bearer(headers).ok_or_else(unauthenticated)?;
    let (action, resource) = bundle.data_access(tenant, write);
    let request = json!({
        "action": action,
        "resource": {"type": resource.entity_type, "id": resource.id, "attrs": resource.attrs},
    })
    .to_string();
    let now = shared.clock.now();
    let start = std::time::Instant::now();
    let decided: Decided = shared
        .run(Priority::Interactive, move |i| {
            i.decide_with_bearer(&request, Some(&token), now)
        })
        .await?;
    // Recorded as every decision is (metrics, key refetch, audit): who was let at the data, or
    // turned away. A record the audit log does not take withholds the call.
    shared.record(&decided, start.elapsed()).await?;
    if decided.outcome == "unauthenticated" {
        return Err(unauthenticated());
    }
    if decided.tenant.as_deref() != Some(tenant) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "data_other_tenant",
            "the token is not of this tenant",
        ));
    }
    if decided.outcome != "allow" {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the bundle's policies do not allow this call on the tenant's data",
        ));
    }
    let decision: Value = serde_json::from_str(&decided.decision_json).unwrap_or(Value::Null);
    Ok(Actor {
        principal: decision
            .pointer("/principal/entity")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        decision_id: decision
            .get("decision_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    })
}

/// The held documents of `tenant`, or 503 when its data is not loaded.
fn held(shared: &Shared, tenant: &str) -> Result<Arc<TenantDocs>, Early> {
    shared
        .pool
        .data()
        .tenants
        .get(tenant)
        .cloned()
        .ok_or_else(|| {
            refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "data_unavailable",
                "the tenant's data is not loaded",
            )
        })
}

/// `If-Match: "<revision>"`: the revision a client's write is based on.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, Early> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().trim_matches('"').parse().ok())
        .map(Some)
        .ok_or_else(|| {
            refused(
                StatusCode::BAD_REQUEST,
                "request_invalid",
                "`If-Match` must be a revision, as the `ETag` of the tenant's data",
            )
        })
}

fn etag(revision: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{revision}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// Check, commit, publish and audit `writes` to `tenant`; the answer: the new revision, the
/// number of writes and, for one write, the entity as stored.
async fn commit(
    shared: &Arc<Shared>,
    bundle: &Arc<Bundle>,
    data: &Arc<Data>,
    tenant: &str,
    writes: Vec<EntityWrite>,
    actor: &Actor,
    expected: Option<u64>,
) -> Result<Response, Early> {
    let lock = data.lock_for(tenant);
    let _one_writer = lock.lock().await;
    // Another replica's commit between the check and the swap: catch up and check again.
    for _ in 0..3 {
        let docs = held(shared, tenant)?;
        let base = docs.revision();
        if expected.is_some_and(|e| e != base) {
            return Err(refused(
                StatusCode::PRECONDITION_FAILED,
                "data_revision",
                &format!("the tenant's data is at revision {base}"),
            ));
        }
        let checked = docs
            .data
            .check_writes(bundle, writes.clone())
            .map_err(|e| data_error(&e))?;
        let store_writes = store::checked::store_writes(&checked);
        let now = shared.clock.now();
        let store = Arc::clone(&data.store);
        let (tenant_owned, principal) = (tenant.to_owned(), actor.principal.clone());
        let committed =
            blocking(move || store.commit(&tenant_owned, base, &store_writes, &principal, now))
                .await?;
        let revision = match committed {
            Ok(revision) => revision,
            Err(StoreError::Conflict { .. }) => {
                let (shared, bundle) = (Arc::clone(shared), Arc::clone(bundle));
                blocking(move || shared.poll_data(&bundle))
                    .await?
                    .map_err(|e| store_error(&e))?;
                continue;
            }
            Err(e) => return Err(store_error(&e)),
        };
        let changes: Vec<DataChange> = checked
            .iter()
            .map(|w| DataChange {
                revision,
                entity_type: w.entity_type.clone(),
                id: w.id.clone(),
                entity: w.after.clone(),
            })
            .collect();
        let step = DataDocument {
            tenant: tenant.to_owned(),
            revision,
            since: Some(base),
            changes,
            ..DataDocument::default()
        };
        let step_text: Arc<str> = Arc::from(json_text(&step));
        let mut next = TenantData::clone(&docs.data);
        if next.apply(bundle, step).is_ok() {
            shared.pool.publish_data(vec![(
                tenant.to_owned(),
                Some(Arc::new(TenantDocs::new(
                    Arc::new(next),
                    Some((base, step_text)),
                ))),
            )]);
        } else {
            // Checked a moment ago against the same data, so not expected: read the tenants
            // again from the store rather than serve a revision the instances do not have.
            let (shared, bundle) = (Arc::clone(shared), Arc::clone(bundle));
            let _ = blocking(move || shared.load_all_data(&bundle)).await;
        }
        let lines = checked
            .iter()
            .map(|w| {
                json!({
                    "kind": "data_change",
                    "time": now,
                    "tenant": tenant,
                    "actor": actor.principal,
                    "decision_id": actor.decision_id,
                    "entity": format!("{}", EntityKey::new(&w.entity_type, &w.id)),
                    "before": w.before,
                    "after": w.after,
                    "revision": revision,
                })
                .to_string()
            })
            .collect();
        if shared.audit.record_all(lines).await.is_err() {
            crate::log::error(&format!(
                "the audit records of tenant `{tenant}`'s revision {revision} were not written"
            ));
        }
        return Ok(written(revision, &checked));
    }
    Err(refused(
        StatusCode::CONFLICT,
        "data_conflict",
        "the tenant's data kept changing under this write; retry",
    ))
}

fn written(revision: u64, checked: &[CheckedWrite]) -> Response {
    let mut response = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json!({
            "revision": revision,
            "written": checked.len(),
            "entity": match checked { [one] => one.after.clone(), _ => None },
        })
        .to_string(),
    )
        .into_response();
    response.headers_mut().insert(header::ETAG, etag(revision));
    response
}

fn either(result: Result<Response, Early>) -> Response {
    result.unwrap_or_else(|early| *early)
}

/// `PUT /v1/data/{tenant}/entities/{type}/{id}`: store an entity (Cedar entity JSON; its
/// `uid`, if given, must be the path's). Ids in paths are relative to the tenant:
/// `…/acme/entities/Report/q3` is `Report::"acme/q3"`.
pub(super) async fn put(
    State(shared): State<Arc<Shared>>,
    Path((tenant, entity_type, rest)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = format!("{tenant}/{rest}");
    either(
        async {
            let (bundle, data) = context(&shared, &tenant)?;
            let actor = authorize(&shared, &headers, &bundle, &tenant, true).await?;
            let text = read_body(&shared, body, MAX_ENTITY_BODY).await?;
            let mut entity: Value = parse_json("entity", &text)?;
            let Some(object) = entity.as_object_mut() else {
                return Err(refused(
                    StatusCode::BAD_REQUEST,
                    "data_malformed",
                    "an entity is a JSON object",
                ));
            };
            let uid = json!({"type": entity_type, "id": id});
            match object.get("uid") {
                None => {
                    object.insert("uid".into(), uid);
                }
                Some(given) if *given == uid => {}
                Some(_) => {
                    return Err(refused(
                        StatusCode::BAD_REQUEST,
                        "data_malformed",
                        "the entity's `uid` is not the one in the path",
                    ));
                }
            }
            commit(
                &shared,
                &bundle,
                &data,
                &tenant,
                vec![EntityWrite::Put(entity)],
                &actor,
                if_match(&headers)?,
            )
            .await
        }
        .await,
    )
}

/// `PATCH /v1/data/{tenant}/entities/{type}/{id}`: `{"attrs": {name: value | null}, "parents":
/// [...]}` — attributes set (`null` removes one), parents replaced when given.
pub(super) async fn patch(
    State(shared): State<Arc<Shared>>,
    Path((tenant, entity_type, rest)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = format!("{tenant}/{rest}");
    either(
        async {
            let (bundle, data) = context(&shared, &tenant)?;
            let actor = authorize(&shared, &headers, &bundle, &tenant, true).await?;
            let text = read_body(&shared, body, MAX_ENTITY_BODY).await?;
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Patch {
                #[serde(default)]
                attrs: Map<String, Value>,
                #[serde(default)]
                parents: Option<Vec<Value>>,
            }
            let patch: Patch = parse_json("patch", &text)?;
            let docs = held(&shared, &tenant)?;
            let Some(mut entity) = docs.data.get(&entity_type, &id) else {
                return Err(not_found());
            };
            if let Some(attrs) = entity.get_mut("attrs").and_then(Value::as_object_mut) {
                for (name, value) in patch.attrs {
                    if value.is_null() {
                        attrs.remove(&name);
                    } else {
                        attrs.insert(name, value);
                    }
                }
            }
            if let Some(parents) = patch.parents
                && let Some(object) = entity.as_object_mut()
            {
                object.insert("parents".into(), Value::Array(parents));
            }
            // Based on the revision it was read at: a concurrent change is a conflict, not lost.
            let expected = if_match(&headers)?.or(Some(docs.revision()));
            commit(
                &shared,
                &bundle,
                &data,
                &tenant,
                vec![EntityWrite::Put(entity)],
                &actor,
                expected,
            )
            .await
        }
        .await,
    )
}

/// `DELETE /v1/data/{tenant}/entities/{type}/{id}`.
pub(super) async fn delete(
    State(shared): State<Arc<Shared>>,
    Path((tenant, entity_type, rest)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let id = format!("{tenant}/{rest}");
    either(
        async {
            let (bundle, data) = context(&shared, &tenant)?;
            let actor = authorize(&shared, &headers, &bundle, &tenant, true).await?;
            if held(&shared, &tenant)?
                .data
                .get(&entity_type, &id)
                .is_none()
            {
                return Err(not_found());
            }
            commit(
                &shared,
                &bundle,
                &data,
                &tenant,
                vec![EntityWrite::Delete { entity_type, id }],
                &actor,
                if_match(&headers)?,
            )
            .await
        }
        .await,
    )
}

/// `GET /v1/data/{tenant}/entities/{type}/{id}`.
pub(super) async fn get_entity(
    State(shared): State<Arc<Shared>>,
    Path((tenant, entity_type, rest)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let id = format!("{tenant}/{rest}");
    either(
        async {
            let (bundle, _) = context(&shared, &tenant)?;
            authorize(&shared, &headers, &bundle, &tenant, false).await?;
            let docs = held(&shared, &tenant)?;
            let entity = docs.data.get(&entity_type, &id).ok_or_else(not_found)?;
            let mut response = super::json_response(StatusCode::OK, json_text(&entity));
            response
                .headers_mut()
                .insert(header::ETAG, etag(docs.revision()));
            Ok(response)
        }
        .await,
    )
}

/// The query of a listing.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    #[serde(rename = "type")]
    entity_type: Option<String>,
    /// The last key of the previous page, `Type::"id"`.
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/data/{tenant}/entities?type=&after=&limit=`: a page of entities ordered by type
/// and id, and the `next` page's `after`.
pub(super) async fn list(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    either(
        async {
            let Ok(Query(query)) = query else {
                return Err(refused(
                    StatusCode::BAD_REQUEST,
                    "request_invalid",
                    "the query takes `type`, `after` and `limit`",
                ));
            };
            let (bundle, data) = context(&shared, &tenant)?;
            authorize(&shared, &headers, &bundle, &tenant, false).await?;
            let limit = query.limit.unwrap_or(100).clamp(1, MAX_PAGE);
            let after = match &query.after {
                Some(text) => Some(
                    portcullis_engine::parse_entity_uid_text(text)
                        .map(|(t, i)| EntityKey::new(t, i))
                        .ok_or_else(|| {
                            refused(
                                StatusCode::BAD_REQUEST,
                                "request_invalid",
                                "`after` is an entity, `Type::\"id\"`",
                            )
                        })?,
                ),
                None => None,
            };
            let store = Arc::clone(&data.store);
            let page = blocking(move || {
                store.list(&tenant, query.entity_type.as_deref(), after.as_ref(), limit)
            })
            .await?
            .map_err(|e| store_error(&e))?;
            let next = (page.len() == limit)
                .then(|| page.last().map(|(key, _)| key.to_string()))
                .flatten();
            let mut entities = Vec::with_capacity(page.len());
            for (_, text) in page {
                entities.push(serde_json::from_str::<Value>(&text).unwrap_or(Value::Null));
            }
            Ok(super::json_response(
                StatusCode::OK,
                json!({ "entities": entities, "next": next }).to_string(),
            ))
        }
        .await,
    )
}

/// `POST /v1/data/{tenant}/import`: NDJSON, one entity per line, stored as one commit.
pub(super) async fn import(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    either(
        async {
            let (bundle, data) = context(&shared, &tenant)?;
            let actor = authorize(&shared, &headers, &bundle, &tenant, true).await?;
            let text = read_body(&shared, body, data.options.max_import).await?;
            let writes = store::checked::parse_ndjson(&text)
                .map_err(|e| {
                    let status = match e {
                        store::checked::NdjsonError::TooMany => StatusCode::PAYLOAD_TOO_LARGE,
                        store::checked::NdjsonError::Malformed(_) => StatusCode::BAD_REQUEST,
                    };
                    refused(status, e.code(), &e.to_string())
                })?
                .into_iter()
                .map(EntityWrite::Put)
                .collect();
            commit(
                &shared,
                &bundle,
                &data,
                &tenant,
                writes,
                &actor,
                if_match(&headers)?,
            )
            .await
        }
        .await,
    )
}

/// `GET /v1/data/{tenant}/export`: NDJSON, one entity per line, at one revision (`ETag`).
pub(super) async fn export(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    either(
        async {
            let (bundle, _) = context(&shared, &tenant)?;
            authorize(&shared, &headers, &bundle, &tenant, false).await?;
            let docs = held(&shared, &tenant)?;
            let mut out = String::new();
            for entity in docs.data.document().entities {
                out.push_str(&json_text(&entity));
                out.push('\n');
            }
            let mut response = (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-ndjson"),
                )],
                out,
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::ETAG, etag(docs.revision()));
            Ok(response)
        }
        .await,
    )
}

/// The tenant's data document: its snapshot, or with `?since=N` its changes since revision N
/// (a snapshot when they are no longer kept); 304 when `If-None-Match` names the revision.
async fn document(
    shared: &Arc<Shared>,
    data: &Data,
    tenant: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, Early> {
    let docs = held(shared, tenant)?;
    let revision = docs.revision();
    let tag = etag(revision);
    if admin::names_etag(headers, &tag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    let since = match query {
        None | Some("") => None,
        Some(query) => match query.strip_prefix("since=").map(str::parse::<u64>) {
            Some(Ok(since)) => Some(since),
            _ => {
                return Err(refused(
                    StatusCode::BAD_REQUEST,
                    "request_invalid",
                    "the query takes `since=<revision>` only",
                ));
            }
        },
    };
    let body: Arc<str> = match since {
        Some(since) if since == revision => Arc::from(json_text(&DataDocument {
            tenant: tenant.to_owned(),
            revision,
            since: Some(since),
            ..DataDocument::default()
        })),
        Some(since) if since < revision => {
            let store = Arc::clone(&data.store);
            let owned = tenant.to_owned();
            let changes = blocking(move || read_changes(store.as_ref(), &owned, since))
                .await?
                .map_err(|e| store_error(&e))?;
            match changes {
                Some(changes) => Arc::from(json_text(&changes)),
                None => docs.snapshot(),
            }
        }
        // A revision the service has not reached (or another store's): the whole snapshot.
        _ => docs.snapshot(),
    };
    let mut response = super::json_response(StatusCode::OK, body.to_string());
    response.headers_mut().insert(header::ETAG, tag);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    Ok(response)
}

/// `GET /v1/data/{tenant}` on the decision listener: authorized by the caller's token (the
/// bundle's read action on the tenant).
pub(super) async fn sync(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    either(
        async {
            let (bundle, data) = context(&shared, &tenant)?;
            authorize(&shared, &headers, &bundle, &tenant, false).await?;
            document(&shared, &data, &tenant, query.as_deref(), &headers).await
        }
        .await,
    )
}

/// `GET /v1/data/{tenant}` on the admin listener (its credential, or mutual TLS, already
/// checked): for Envoy filters and other hosts that keep every tenant's data.
pub(super) async fn admin_sync(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    either(
        async {
            let (_, data) = context(&shared, &tenant)?;
            document(&shared, &data, &tenant, query.as_deref(), &headers).await
        }
        .await,
    )
}

/// `GET /v1/data/{tenant}/slice?resource=<Type>/<id>&…` on the decision listener: the slice
/// of the tenant's data that the caller's own bearer token may have in a browser — their
/// stored entity and its ancestors, and each resource asked for (ids relative to the
/// tenant), with its ancestors, that they may do at least one action on. The engine decides
/// what goes in; no data permission is needed, since a user gets only the facts their own
/// decisions rest on. The answer is private to the token (`Cache-Control: private,
/// no-store`, `Vary: Authorization`); its `ETag` is the revision and a digest of the slice.
pub(super) async fn slice(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    either(
        async {
            context(&shared, &tenant)?;
            let unauthenticated =
                |message: &str| Box::new(admin::challenge(message, "Bearer realm=\"portcullis\""));
            let token = admin::bearer(&headers)
                .ok_or_else(|| unauthenticated("a valid bearer token of the tenant is required"))?;
            let query = query.unwrap_or_default();
            let now = shared.clock.now();
            let asked = tenant.clone();
            let answer = shared
                .run(Priority::Interactive, move |i| {
                    i.data_slice(&asked, &query, &token, now)
                })
                .await?;
            let sliced = match answer {
                Ok(sliced) => sliced,
                Err(refusal) => {
                    if let Some(issuer) = &refusal.keys_wanted {
                        shared.keys.wanted(issuer);
                    }
                    if refusal.status == 401 {
                        // The token's own code, in the message: the body's code is the one
                        // every endpoint gives a token it does not accept.
                        return Err(unauthenticated(&format!(
                            "the bearer token is not accepted ({}): {}",
                            refusal.code, refusal.message
                        )));
                    }
                    let status = StatusCode::from_u16(refusal.status)
                        .ok()
                        .filter(|s| s.is_client_error() || s.is_server_error())
                        .unwrap_or(StatusCode::FORBIDDEN);
                    return Err(refused(status, &refusal.code, &refusal.message));
                }
            };
            // Who was given which facts: withheld when the audit log does not take it.
            shared
                .audit
                .record_all(vec![sliced.audit_json])
                .await
                .map_err(|_| shared.audit_withheld())?;
            let digest = crate::crypto::sha256(sliced.document_json.as_bytes());
            let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
            let tag = HeaderValue::from_str(&format!("\"{}-{hex}\"", sliced.revision))
                .unwrap_or(HeaderValue::from_static("\"\""));
            let mut response = if admin::names_etag(&headers, &tag) {
                StatusCode::NOT_MODIFIED.into_response()
            } else {
                super::json_response(StatusCode::OK, sliced.document_json)
            };
            let out = response.headers_mut();
            out.insert(header::ETAG, tag);
            out.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            );
            out.insert(header::VARY, HeaderValue::from_static("authorization"));
            Ok(response)
        }
        .await,
    )
}
