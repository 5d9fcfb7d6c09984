//! The `portcullis` host: reading bundles from disk for the CLI, the decision service and the
//! test harnesses. The engine itself does no I/O; this is where files are read.

pub mod bundle_dir;
