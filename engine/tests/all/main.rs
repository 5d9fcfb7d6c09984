//! Integration tests of the engine (one binary, modules by topic).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod cedar_corpus;
// Signs tokens with the development keys.
#[cfg(feature = "mint")]
mod key_rotation;
mod trusted;
mod wycheproof;
