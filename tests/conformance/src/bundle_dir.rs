//! Bundle directories, read by the host library (`portcullis::bundle_dir`), the same reader the
//! CLI uses.

use crate::Error;
use portcullis_engine::{Bundle, CompiledBundle};
use std::path::Path;

pub(crate) use portcullis::bundle_dir::read_relative;

/// Compile and load the bundle directory `dir`.
///
/// # Errors
/// An unreadable file or an invalid bundle.
pub fn load_bundle(dir: &Path) -> Result<(CompiledBundle, Bundle), Error> {
    portcullis::bundle_dir::load(dir)
        .map_err(|e| Error::new(format!("bundle `{}`: {e}", dir.display())))
}
