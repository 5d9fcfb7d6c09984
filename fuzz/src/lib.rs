//! Shared setup of the fuzz targets: the TechFin bundle of `policies/techfin`, read once.
//!
//! Files are read at start-up only; during fuzzing, `jwks_file` references resolve against an
//! in-memory copy of `dev-keys/*.jwks.json`, so an input can never make the target read an
//! arbitrary path (`/dev/zero`, a FIFO) and hang.

use portcullis_engine::{Bundle, BundleSources, CompiledBundle, Engine, PolicySource};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The decision time of every fuzzed decision; the seed tokens are valid then.
pub const NOW: i64 = 1_760_000_000;

fn techfin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/techfin")
}

fn read(relative: &str) -> String {
    let path = techfin_dir().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read `{}`: {e}", path.display()))
}

/// `*.cedar` files of a directory relative to the TechFin directory, sorted.
fn cedar_files(relative: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(techfin_dir().join(relative))
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    files.retain(|name| name.ends_with(".cedar"));
    files.sort();
    files
        .into_iter()
        .map(|name| format!("{relative}/{name}"))
        .collect()
}

/// The TechFin authoring sources (schema, shared and per-tenant policies, `tenants.json`,
/// `routes.json`).
pub fn techfin_sources() -> &'static BundleSources {
    static SOURCES: OnceLock<BundleSources> = OnceLock::new();
    SOURCES.get_or_init(|| {
        let mut policies = Vec::new();
        for file in cedar_files("policies") {
            policies.push(PolicySource {
                source: read(&file),
                file,
                tenant: None,
            });
        }
        let tenants = std::fs::read_dir(techfin_dir().join("policies/tenants"))
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for tenant in tenants {
            for file in cedar_files(&format!("policies/tenants/{tenant}")) {
                policies.push(PolicySource {
                    source: read(&file),
                    file,
                    tenant: Some(tenant.clone()),
                });
            }
        }
        BundleSources {
            schema: Some(("schema.cedarschema".into(), read("schema.cedarschema"))),
            tenants: Some(("tenants.json".into(), read("tenants.json"))),
            routes: Some(("routes.json".into(), read("routes.json"))),
            policies,
            ..BundleSources::default()
        }
    })
}

/// Reads `dev-keys/*.jwks.json` from memory; every other path is "not found".
pub fn read_key_file(relative: &str) -> Result<String, String> {
    static KEYS: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let dir = techfin_dir().join("dev-keys");
        std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|name| name.ends_with(".jwks.json"))
                    .map(|name| {
                        (
                            format!("dev-keys/{name}"),
                            read(&format!("dev-keys/{name}")),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    });
    keys.get(relative)
        .cloned()
        .ok_or_else(|| format!("`{relative}`: no such file"))
}

fn techfin_compiled() -> CompiledBundle {
    techfin_sources()
        .clone()
        .compile(&mut read_key_file)
        .expect("the TechFin bundle compiles")
}

/// The engine over the compiled TechFin bundle, built once.
pub fn techfin_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new(Bundle::load(techfin_compiled()).expect("the TechFin bundle loads"))
    })
}

/// The same engine without a token cache, for `begin_token`/`finish_token`: a token
/// "verified" by the fuzz target must not be cached, or later runs would depend on earlier
/// inputs and crashes would not replay.
pub fn uncached_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut compiled = techfin_compiled();
        compiled.settings.tokens.cache_entries = 0;
        Engine::new(Bundle::load(compiled.seal()).expect("the TechFin bundle loads"))
    })
}
