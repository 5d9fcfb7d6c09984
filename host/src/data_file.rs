//! `--data <file>`: stored entities for a CLI decision or a policy test, where there is no
//! store — `{"tenants": {"acme": [entity, …]}}` (a [`DataSet`]).

use portcullis_engine::{DataSet, Engine, MAX_DATA_DOCUMENT, json_message};
use std::io::Read as _;
use std::path::Path;

/// Read a data file: JSON errors at their line and column.
///
/// # Errors
/// The file cannot be read, is too large, or is not a data set.
pub fn read(path: &Path) -> Result<DataSet, String> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read `{shown}`: {e}"))?;
    let mut text = String::new();
    file.take(MAX_DATA_DOCUMENT as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read `{shown}`: {e}"))?;
    if text.len() > MAX_DATA_DOCUMENT {
        return Err(format!(
            "`{shown}` is over the limit of {MAX_DATA_DOCUMENT} bytes"
        ));
    }
    serde_json::from_str(&text)
        .map_err(|e| format!("{shown}:{}:{}: {}", e.line(), e.column(), json_message(&e)))
}

/// Hand `engine` the data file at `path`, or, for a bundle that stores data, no stored
/// entities for every tenant (so that decisions are made on no facts, not refused for want of
/// them).
///
/// # Errors
/// The file cannot be read, or an entity in it is refused.
pub fn load(engine: &Engine, path: Option<&Path>) -> Result<(), String> {
    let set = match path {
        Some(path) => read(path)?,
        None if engine.stores_data() => DataSet::default(),
        None => return Ok(()),
    };
    let shown = path.map_or_else(String::new, |p| format!("{}: ", p.display()));
    engine
        .load_data_set(&set)
        .map_err(|e| format!("{shown}{} ({})", e, e.code()))
}
