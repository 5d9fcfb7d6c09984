//! Route configuration and request matching must never panic. The input is two parts split at
//! the first NUL byte:
//!
//! - the text of `routes.json` (lossy UTF-8): compiled with the TechFin schema and policies,
//!   which validates every route against the schema's actions and entity types; when it
//!   compiles, the request below is decided with it too;
//! - an HTTP request, `METHOD PATH` on the first line and `name: value` headers on the next
//!   ones (values as bytes): decided by the engine's edge on the TechFin bundle and its shipped
//!   routes — canonical-path rules, percent-decoding, templates, token location.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_engine::{
    Bundle, BundleSources, Edge, Engine, HeaderPairs, HttpRequest,
};
use portcullis_fuzz::{NOW, read_key_file, techfin_engine, techfin_sources};

/// `METHOD PATH\nname: value\n...` as a method, a path and header pairs (names lowercased,
/// as Envoy gives them).
fn request(bytes: &[u8]) -> (String, String, Vec<(String, Vec<u8>)>) {
    let mut lines = bytes.split(|&b| b == b'\n');
    let first = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let (method, path) = first.split_once(' ').unwrap_or((&first, "/"));
    let headers = lines
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = line.split_at(colon);
            let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
            let value = value.get(1..).unwrap_or_default().trim_ascii().to_vec();
            Some((name, value))
        })
        .collect();
    (method.to_owned(), path.to_owned(), headers)
}

fn decide(engine: &Engine, bytes: &[u8]) {
    let (method, path, headers) = request(bytes);
    let edge = Edge::default();
    let pairs = HeaderPairs(&headers);
    let verdict = edge.decide(
        engine,
        &HttpRequest {
            method: &method,
            path: &path,
            headers: &pairs,
        },
        NOW,
    );
    let _ = verdict.log_line(&method, &path, false);
}

fuzz_target!(|data: &[u8]| {
    let (routes, http) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (&data[..0], data),
    };
    decide(techfin_engine(), http);
    if routes.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(routes);
    // Compiling re-validates the (fixed) schema and policies, which costs milliseconds: only
    // JSON is worth it (anything else is one parse problem).
    if serde_json::from_str::<serde_json::Value>(&text).is_err() {
        return;
    }
    let sources = BundleSources {
        routes: Some(("routes.json".into(), text.into_owned())),
        ..techfin_sources().clone()
    };
    if let Ok(compiled) = sources.compile(&mut read_key_file)
        && let Ok(bundle) = Bundle::load(compiled)
    {
        decide(&Engine::new(bundle), http);
    }
});
