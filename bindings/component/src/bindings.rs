//! The glue `wit_bindgen` generates for `wit/portcullis.wit`, and the export of
//! [`crate::Component`] through it: the only unsafe code of the crate, all of it generated
//! (canonical-ABI lifting and lowering).
#![allow(unsafe_code, missing_docs)]

wit_bindgen::generate!({
    world: "portcullis",
    path: "wit",
    // Key material goes to the host borrowed, not cloned for each signature.
    ownership: Borrowing { duplicate_if_necessary: false },
});

// Exported only when built for Wasm: natively (`cargo build --workspace`, `cargo test
// --workspace`) the crate links as an ordinary library, and the canonical-ABI export names
// (`cabi_post_portcullis:engine/...`) are not valid symbols for a native linker.
#[cfg(target_arch = "wasm32")]
use crate::Component;

#[cfg(target_arch = "wasm32")]
export!(Component with_types_in crate::bindings);
