//! The glue `wit_bindgen` generates for `wit/portcullis.wit`, and the export of
//! [`crate::Component`] through it: the only unsafe code of the crate, all of it generated
//! (canonical-ABI lifting and lowering).
#![allow(unsafe_code, missing_docs)]

wit_bindgen::generate!({
    world: "portcullis",
    path: "wit",
});

use crate::Component;

export!(Component with_types_in crate::bindings);
