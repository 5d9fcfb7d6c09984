//! Integration tests of the engine (one binary, modules by topic).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod cedar_corpus;
mod wycheproof;
