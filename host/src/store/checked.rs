//! The store as the engine sees it: a tenant's data read back and checked against the bundle,
//! and entities written only after the engine checked them. The decision service, `portcullis
//! data --store` and test harnesses go through here, so nothing reaches a store unchecked.

use super::{EntityKey, MAX_WRITES, Store, StoreError, Write};
use portcullis_engine::{Bundle, CheckedWrite, DataDocument, EntityWrite, TenantData};
use serde_json::Value;

/// Why a tenant's data could not be read or written through the engine's checks.
#[derive(Debug)]
pub enum CheckedError {
    /// The store cannot be read or written, or holds an entity that is not JSON.
    Store(String),
    /// The engine refused the data or the write: its stable code, and why.
    Refused {
        /// A `data_*` code.
        code: &'static str,
        /// The engine's message.
        message: String,
    },
}

impl std::fmt::Display for CheckedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Store(message) => f.write_str(message),
            Self::Refused { code, message } => write!(f, "{message} ({code})"),
        }
    }
}

impl From<portcullis_engine::DataError> for CheckedError {
    fn from(e: portcullis_engine::DataError) -> Self {
        Self::Refused {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

/// A tenant's data read from the store and checked against `bundle` (blocking).
///
/// # Errors
/// The store cannot be read, or what it holds is not JSON or is refused by the bundle.
pub fn read_tenant(
    store: &dyn Store,
    bundle: &Bundle,
    tenant: &str,
) -> Result<TenantData, CheckedError> {
    let snapshot = store
        .snapshot(tenant)
        .map_err(|e| CheckedError::Store(e.to_string()))?;
    let mut entities = Vec::with_capacity(snapshot.entities.len());
    for (key, text) in snapshot.entities {
        entities.push(
            serde_json::from_str(&text).map_err(|e| {
                CheckedError::Store(format!("stored entity `{key}` is not JSON: {e}"))
            })?,
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
    )?;
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
/// data the store holds (blocking); with `if_match`, only if the tenant is at that revision.
/// Returns the new revision and the checked writes (for audit records). For one writer at a
/// time (bootstrapping a store, tests): a concurrent commit makes this fail with a conflict
/// rather than retry.
///
/// # Errors
/// The store cannot be read or written, the tenant is not at `if_match` (`data_revision`), or
/// an entity is refused.
pub fn put_entities(
    store: &dyn Store,
    bundle: &Bundle,
    tenant: &str,
    entities: Vec<Value>,
    if_match: Option<u64>,
    actor: &str,
    time: i64,
) -> Result<(u64, Vec<CheckedWrite>), CheckedError> {
    let data = read_tenant(store, bundle, tenant)?;
    if let Some(expected) = if_match.filter(|expected| *expected != data.revision()) {
        return Err(CheckedError::Refused {
            code: "data_revision",
            message: format!(
                "tenant `{tenant}` is at revision {}, not {expected}",
                data.revision()
            ),
        });
    }
    let writes = entities.into_iter().map(EntityWrite::Put).collect();
    let checked = data.check_writes(bundle, writes)?;
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
        .map_err(|e: StoreError| CheckedError::Store(e.to_string()))?;
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
