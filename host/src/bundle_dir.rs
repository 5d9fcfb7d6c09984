//! Reading a bundle from disk: an authoring directory or a compiled JSON file.

use portcullis_engine::{
    Bundle, BundleError, BundleSources, CompiledBundle, DevIssuer, PolicySource,
};
use serde_json::{Map, Value};
use std::fs;
use std::path::{Component, Path, PathBuf};

/// Why a bundle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file could not be read (the message names it).
    #[error("{0}")]
    Io(String),
    /// The bundle is invalid.
    #[error(transparent)]
    Invalid(#[from] BundleError),
}

/// Read a file of the bundle directory, refusing paths that leave it.
pub fn read_relative(dir: &Path, relative: &str) -> Result<String, String> {
    let rel = Path::new(relative);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!(
            "`{relative}` must be a relative path inside the bundle directory"
        ));
    }
    fs::read_to_string(dir.join(rel)).map_err(|e| e.to_string())
}

fn read_optional(dir: &Path, name: &str) -> Result<Option<(String, String)>, ReadError> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(None);
    }
    fs::read_to_string(&path)
        .map(|text| Some((name.to_owned(), text)))
        .map_err(|e| ReadError::Io(format!("cannot read `{}`: {e}", path.display())))
}

fn cedar_files(dir: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir)
        .map_err(|e| ReadError::Io(format!("cannot read `{}`: {e}", dir.display())))?;
    for entry in entries {
        let path = entry.map_err(|e| ReadError::Io(e.to_string()))?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "cedar") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Read an authoring directory into sources: `schema.cedarschema` (or `schema.cedarschema.json`),
/// `policies/*.cedar` (shared), `policies/tenants/<tenant>/*.cedar`, `tenants.json`,
/// `entities.json`, `bundle.json`, `routes.json`.
pub fn read_sources(dir: &Path) -> Result<BundleSources, ReadError> {
    let mut sources = BundleSources {
        schema: match read_optional(dir, "schema.cedarschema")? {
            Some(schema) => Some(schema),
            None => read_optional(dir, "schema.cedarschema.json")?,
        },
        tenants: read_optional(dir, "tenants.json")?,
        entities: read_optional(dir, "entities.json")?,
        settings: read_optional(dir, "bundle.json")?,
        routes: read_optional(dir, "routes.json")?,
        policies: Vec::new(),
    };
    let policy_dir = dir.join("policies");
    if !policy_dir.is_dir() {
        return Err(ReadError::Io(format!(
            "`{}` has no `policies/` directory",
            dir.display()
        )));
    }
    let mut add = |path: &Path, tenant: Option<String>| -> Result<(), ReadError> {
        let source = fs::read_to_string(path)
            .map_err(|e| ReadError::Io(format!("cannot read `{}`: {e}", path.display())))?;
        let file = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        sources.policies.push(PolicySource {
            file,
            tenant,
            source,
        });
        Ok(())
    };
    for path in cedar_files(&policy_dir)? {
        add(&path, None)?;
    }
    // A directory the compiler does not read would silently drop its policies (a `forbid` among
    // them would never apply): refused, naming it.
    let mut others: Vec<String> = fs::read_dir(&policy_dir)
        .map_err(|e| ReadError::Io(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "tenants"))
        .map(|p| p.strip_prefix(dir).unwrap_or(&p).display().to_string())
        .collect();
    others.sort();
    if let Some(other) = others.first() {
        return Err(ReadError::Io(format!(
            "`{other}/` is not read: policies go in `policies/*.cedar` (every tenant) or `policies/tenants/<tenant>/*.cedar` (one tenant)"
        )));
    }
    let tenants_dir = policy_dir.join("tenants");
    if tenants_dir.is_dir() {
        let mut tenants: Vec<PathBuf> = fs::read_dir(&tenants_dir)
            .map_err(|e| ReadError::Io(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        tenants.sort();
        for tenant_dir in tenants {
            let tenant = tenant_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for path in cedar_files(&tenant_dir)? {
                add(&path, Some(tenant.clone()))?;
            }
        }
    }
    Ok(sources)
}

/// Compile a directory, or read a compiled JSON file.
pub fn compile(path: &Path) -> Result<CompiledBundle, ReadError> {
    if path.is_dir() {
        let sources = read_sources(path)?;
        sources
            .compile(&mut |relative| read_relative(path, relative))
            .map_err(ReadError::Invalid)
    } else {
        let text = fs::read_to_string(path)
            .map_err(|e| ReadError::Io(format!("cannot read `{}`: {e}", path.display())))?;
        Bundle::from_json_named(&text, &path.display().to_string())
            .map(|b| b.compiled().clone())
            .map_err(ReadError::Invalid)
    }
}

/// Compile and load.
pub fn load(path: &Path) -> Result<(CompiledBundle, Bundle), ReadError> {
    let compiled = compile(path)?;
    let bundle = Bundle::load(compiled.clone()).map_err(ReadError::Invalid)?;
    Ok((compiled, bundle))
}

/// The development secrets of the HMAC issuers a bundle names: `dev-keys/<name>.secret` in the
/// bundle directory (one trailing newline removed), for policy tests and demos. Production
/// hosts read secrets from their own source (`portcullis::secrets`).
///
/// # Errors
/// A named secret without its development file.
pub fn dev_secrets(dir: &Path, bundle: &Bundle) -> Result<Vec<(String, Vec<u8>)>, String> {
    bundle
        .secrets()
        .into_iter()
        .map(|secret| {
            let file = format!("dev-keys/{}.secret", secret.name);
            let text = read_relative(dir, &file).map_err(|e| {
                format!(
                    "secret `{}`: no development secret `{file}`: {e}",
                    secret.name
                )
            })?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            Ok((secret.name.clone(), text.as_bytes().to_vec()))
        })
        .collect()
}

/// A development token of `tenant`'s `issuer`-th issuer, signed with its key in the bundle
/// directory (`dev-keys/`), with `overrides` over the standard claims (`null` removes one).
///
/// # Errors
/// The tenant, issuer or its development key is missing.
pub fn dev_token(
    compiled: &CompiledBundle,
    dir: &Path,
    tenant: &str,
    issuer: usize,
    overrides: &Map<String, Value>,
    now: i64,
) -> Result<String, String> {
    let dev = DevIssuer::for_tenant(compiled, tenant, issuer, &mut |p| read_relative(dir, p))?;
    let mut claims = dev.base_claims(now, 3600);
    for (key, value) in overrides {
        if value.is_null() {
            claims.remove(key);
        } else {
            claims.insert(key.clone(), value.clone());
        }
    }
    dev.sign(&claims)
}
