//! Arbitrary bytes as bundle input must never panic: as a compiled-bundle document through
//! `Bundle::from_json`, and as the text of `tenants.json` through `BundleSources::compile`
//! (with the TechFin schema and policies).

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_engine::{Bundle, BundleSources};
use portcullis_fuzz::{read_key_file, techfin_sources};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Bundle::from_json(&text);

    // Compiling re-validates the (fixed) schema and policies, which costs milliseconds; text
    // that is not JSON only adds one parse problem to that, so it is not worth the time.
    if serde_json::from_str::<serde_json::Value>(&text).is_ok() {
        let sources = BundleSources {
            tenants: Some(("tenants.json".into(), text.into_owned())),
            ..techfin_sources().clone()
        };
        let _ = sources.compile(&mut read_key_file);
    }
});
