//! Integration tests of the engine (one binary, modules by topic).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

// Signs tokens with the development keys.
#[cfg(feature = "mint")]
mod key_rotation;
// Signs tokens with the development keys.
#[cfg(feature = "mint")]
mod data;
// A user's slice: signs tokens with the development keys too.
#[cfg(feature = "mint")]
mod slice;
mod trusted;
// Checks the built-in pure-Rust crypto.
#[cfg(feature = "rust-crypto")]
mod wycheproof;

#[cfg(feature = "rust-crypto")]
/// The conformance data folder (`PORTCULLIS_CONFORMANCE_DIR`, default `shared/conformance`
/// beside the repository). Missing data fails the test, never passes it silently.
pub(crate) fn conformance_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("PORTCULLIS_CONFORMANCE_DIR").map_or_else(
        || concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance").into(),
        std::path::PathBuf::from,
    );
    assert!(
        dir.is_dir(),
        "conformance data folder `{}` not found: set PORTCULLIS_CONFORMANCE_DIR",
        dir.display()
    );
    dir
}
