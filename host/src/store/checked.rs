//! The store as the engine sees it: a tenant's data read back and checked against the bundle,
//! and entities written only after the engine checked them. The decision service, `portcullis
//! data --store` and test harnesses go through here, so nothing reaches a store unchecked.

use super::{EntityKey, MAX_WRITES, Store, StoreError, Write};
use portcullis_engine::{Bundle, CheckedWrite, DataDocument, EntityWrite, TenantData};
use serde_json::Value;

/// A tenant's data read from the store and checked against `bundle` (blocking).
///
/// # Errors
/// The store cannot be read, or what it holds is not JSON or is refused by the bundle.
pub fn read_tenant(store: &dyn Store, bundle: &Bundle, tenant: &str) -> Result<TenantData, String> {
    let snapshot = store.snapshot(tenant).map_err(|e| e.to_string())?;
    let mut entities = Vec::with_capacity(snapshot.entities.len());
    for (key, text) in snapshot.entities {
        entities.push(
            serde_json::from_str(&text)
                .map_err(|e| format!("stored entity `{key}` is not JSON: {e}"))?,
        );
    }
    let mut data = TenantData::new(tenant);
    data.apply(
        bundle,
        DataDocument {
            tenant: tenant.to_owned(),
            revision: snapshot.revision,
            entities,
            ..DataDocument::default()
        },
    )
    .map_err(|e| format!("{e} ({})", e.code()))?;
    Ok(data)
}

/// The store's writes for writes the engine checked.
pub fn store_writes(checked: &[CheckedWrite]) -> Vec<Write> {
    checked
        .iter()
        .map(|w| Write {
            key: EntityKey::new(&w.entity_type, &w.id),
            after: w.after.as_ref().map(Value::to_string),
        })
        .collect()
}

/// Put `entities` in `tenant`'s data as one commit, after the engine checked them against the
/// data the store holds (blocking). Returns the new revision and the checked writes (for audit
/// records). For one writer at a time (bootstrapping a store, tests): a concurrent commit makes
/// this fail with a conflict rather than retry.
///
/// # Errors
/// The store cannot be read or written, or an entity is refused (`data_*` code in the message).
pub fn put_entities(
    store: &dyn Store,
    bundle: &Bundle,
    tenant: &str,
    entities: Vec<Value>,
    actor: &str,
    time: i64,
) -> Result<(u64, Vec<CheckedWrite>), String> {
    let data = read_tenant(store, bundle, tenant)?;
    let writes = entities.into_iter().map(EntityWrite::Put).collect();
    let checked = data
        .check_writes(bundle, writes)
        .map_err(|e| format!("{e} ({})", e.code()))?;
    if checked.is_empty() {
        return Ok((data.revision(), checked));
    }
    let revision = store
        .commit(
            tenant,
            data.revision(),
            &store_writes(&checked),
            actor,
            time,
        )
        .map_err(|e: StoreError| e.to_string())?;
    Ok((revision, checked))
}

/// Why an NDJSON import was refused before any of its entities was checked.
#[derive(Debug)]
pub enum NdjsonError {
    /// More than [`MAX_WRITES`] entities (`data_too_large`).
    TooMany,
    /// A line is not JSON, or there is no entity at all (`data_malformed`).
    Malformed(String),
}

impl NdjsonError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooMany => "data_too_large",
            Self::Malformed(_) => "data_malformed",
        }
    }
}

impl std::fmt::Display for NdjsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooMany => write!(f, "an import holds at most {MAX_WRITES} entities"),
            Self::Malformed(message) => f.write_str(message),
        }
    }
}

/// The entities of an NDJSON import: one JSON entity a line, blank lines skipped, at least one
/// and at most [`MAX_WRITES`]. The entities themselves are the engine's to check.
///
/// # Errors
/// See [`NdjsonError`].
pub fn parse_ndjson(text: &str) -> Result<Vec<Value>, NdjsonError> {
    let mut entities = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if entities.len() == MAX_WRITES {
            return Err(NdjsonError::TooMany);
        }
        let entity = serde_json::from_str(line).map_err(|e| {
            NdjsonError::Malformed(format!(
                "line {}: {}",
                index + 1,
                portcullis_engine::describe_json_error("entity", &e)
            ))
        })?;
        entities.push(entity);
    }
    if entities.is_empty() {
        return Err(NdjsonError::Malformed("the import holds no entity".into()));
    }
    Ok(entities)
}
