//! The `portcullis` host: reading bundles from disk for the CLI, the decision service and the
//! test harnesses, the embedded engine component in wasmtime, and native crypto for it. The
//! engine itself does no I/O; this is where files are read.

pub mod bundle_dir;
pub mod component;
pub mod crypto;
pub mod data_file;
pub mod log;
pub mod secrets;
pub mod service;
pub mod store;
