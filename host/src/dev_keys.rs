//! Development keys of a policy pack (`dev-keys/`): generating them (`portcullis keygen`), and
//! the overlay that lets a pack whose tenants get their keys from their IdPs in production
//! (`jwks_uri`, `discovery`) still run its policy tests and mint development tokens.
//!
//! The overlay, `dev-keys/issuers.json`, names for each such tenant the development JWK set
//! each of its issuers verifies with, by issuer index: `{"acme": ["dev-keys/acme-rs256.jwks.json"]}`
//! (`null` for an issuer that keeps its own keys). Only `portcullis test` and `portcullis token`
//! read it; `bundle`, `validate`, `check` and `serve` use the pack as written.

use crate::signing;
use portcullis::bundle_dir::{ReadError, read_relative};
use portcullis_engine::{
    Bundle, BundleError, BundleProblem, CompiledBundle, SourceLocation, TenantsFile, json_message,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// The overlay file, relative to the pack.
pub const OVERLAY: &str = "dev-keys/issuers.json";

type Overlay = BTreeMap<String, Vec<Option<String>>>;

fn problem(message: String, at: SourceLocation) -> ReadError {
    ReadError::Invalid(BundleError {
        problems: vec![BundleProblem {
            code: "dev-keys",
            location: Some(at),
            message,
            help: None,
        }],
    })
}

/// The overlay of the pack at `dir`, if it has one.
///
/// # Errors
/// It cannot be read, or does not parse (at its line and column).
fn read_overlay(dir: &Path) -> Result<Option<Overlay>, ReadError> {
    let path = dir.join(OVERLAY);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ReadError::Io(format!("cannot read `{}`: {e}", path.display())))?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        problem(
            json_message(&e),
            SourceLocation {
                file: OVERLAY.to_owned(),
                line: Some(e.line()),
                column: Some(e.column()),
            },
        )
    })
}

/// `compiled` with the overlay of the pack at `dir` applied (unchanged without one), and
/// loaded.
///
/// # Errors
/// An overlay that does not parse, names an unknown tenant or issuer, an issuer with keys in
/// the bundle already, or a JWK set that cannot be read; the bundle it makes is invalid.
pub fn overlay(
    dir: &Path,
    mut compiled: CompiledBundle,
) -> Result<(CompiledBundle, Bundle), ReadError> {
    if let Some(overlay) = read_overlay(dir)? {
        let at = || SourceLocation::file(OVERLAY);
        for (tenant, files) in overlay {
            let Some(config) = compiled.tenants.get_mut(&tenant) else {
                return Err(problem(format!("unknown tenant `{tenant}`"), at()));
            };
            for (index, file) in files.into_iter().enumerate() {
                let Some(file) = file else { continue };
                let Some(issuer) = config.issuers.get_mut(index) else {
                    return Err(problem(
                        format!("tenant `{tenant}` has no issuer {index}"),
                        at(),
                    ));
                };
                if issuer.jwks_uri.is_none() && issuer.discovery.is_none() {
                    return Err(problem(
                        format!(
                            "tenant `{tenant}` issuer {index} has its keys in the bundle already; the overlay is for `jwks_uri` and `discovery` issuers"
                        ),
                        at(),
                    ));
                }
                let jwks: Value = read_relative(dir, &file)
                    .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
                    .map_err(|e| {
                        problem(
                            format!("tenant `{tenant}` issuer {index}: cannot read `{file}`: {e}"),
                            at(),
                        )
                    })?;
                issuer.jwks = Some(jwks);
                issuer.jwks_uri = None;
                issuer.discovery = None;
            }
        }
        compiled = compiled.seal();
    }
    let bundle = Bundle::load(compiled.clone())?;
    Ok((compiled, bundle))
}

/// What `portcullis keygen` wrote.
#[derive(Debug)]
pub struct Generated {
    /// Files written, relative to the pack.
    pub files: Vec<String>,
    /// What to do next, for the user.
    pub next: Vec<String>,
}

/// Generate a development key for `tenant`'s `index`-th issuer in the pack at `dir`, as the
/// pack expects it: `dev-keys/<kid>.pem` and `dev-keys/<kid>.jwks.json` (kid = file stem) for
/// a public-key issuer, `dev-keys/<name>.secret` for an HMAC one. The algorithm is `algorithm`
/// or the issuer's first. A `jwks_uri` or `discovery` issuer is added to the overlay.
///
/// # Errors
/// No such tenant or issuer in `tenants.json`, an algorithm it does not allow, a file that
/// exists already (nothing is overwritten), or a write failure.
pub fn keygen(
    dir: &Path,
    tenant: &str,
    index: usize,
    algorithm: Option<&str>,
) -> Result<Generated, String> {
    let tenants_path = dir.join("tenants.json");
    let text = std::fs::read_to_string(&tenants_path)
        .map_err(|e| format!("cannot read `{}`: {e}", tenants_path.display()))?;
    let tenants: TenantsFile = serde_json::from_str(&text).map_err(|e| {
        format!(
            "tenants.json:{}:{}: {}",
            e.line(),
            e.column(),
            json_message(&e)
        )
    })?;
    let issuer = portcullis_engine::tenant_issuer(&tenants.tenants, tenant, index)
        .map_err(|e| format!("tenants.json: {e}"))?;
    let algorithm = match algorithm {
        Some(a) if issuer.algorithms.iter().any(|b| b == a) => a.to_owned(),
        Some(a) => {
            return Err(format!(
                "tenant `{tenant}` issuer {index} does not allow `{a}` (it allows: {})",
                issuer.algorithms.join(", ")
            ));
        }
        None => issuer
            .algorithms
            .first()
            .cloned()
            .ok_or_else(|| format!("tenant `{tenant}` issuer {index} lists no algorithm"))?,
    };
    std::fs::create_dir_all(dir.join("dev-keys"))
        .map_err(|e| format!("cannot create `dev-keys/`: {e}"))?;
    let mut generated = Generated {
        files: Vec::new(),
        next: Vec::new(),
    };
    if let Some(secret) = &issuer.secret {
        let file = format!("dev-keys/{}.secret", secret.name);
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
        let value: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        signing::write_new(&dir.join(&file), format!("{value}\n").as_bytes(), 0o600)?;
        generated.files.push(file);
        return Ok(generated);
    }
    let kid = match &issuer.jwks_file {
        Some(file) => {
            let stem = file
                .strip_prefix("dev-keys/")
                .and_then(|f| f.strip_suffix(".jwks.json"))
                .filter(|stem| !stem.is_empty() && !stem.contains('/'))
                .ok_or_else(|| {
                    format!(
                        "tenant `{tenant}` issuer {index} reads `jwks_file` `{file}`; development keys are `dev-keys/<kid>.jwks.json` (with `dev-keys/<kid>.pem`)"
                    )
                })?;
            stem.to_owned()
        }
        None if index == 0 => format!("{tenant}-{}", algorithm.to_ascii_lowercase()),
        None => format!("{tenant}-{index}-{}", algorithm.to_ascii_lowercase()),
    };
    let (private, public) = (
        format!("dev-keys/{kid}.pem"),
        format!("dev-keys/{kid}.jwks.json"),
    );
    let remote = issuer.jwks_uri.is_some() || issuer.discovery.is_some();
    // Read before any key is written: an overlay that cannot be read or parsed is reported,
    // never replaced, and then nothing is written.
    let overlay = if remote {
        Some(
            read_overlay(dir)
                .map_err(|e| e.to_string())?
                .unwrap_or_default(),
        )
    } else {
        None
    };
    let exists = [&private, &public].map(|file| dir.join(file).exists());
    if remote && exists == [true, true] {
        // A tenant moved to its IdP's keys keeps testing with the development key it had.
        generated
            .next
            .push(format!("reusing the development key `{kid}`"));
    } else {
        if let Some(file) = [&private, &public]
            .into_iter()
            .zip(exists)
            .find_map(|(file, exists)| exists.then_some(file))
        {
            return Err(format!("`{file}` exists; not overwriting a key"));
        }
        let (pem, mut jwk) = signing::generate(&algorithm)?;
        if let Some(object) = jwk.as_object_mut() {
            object.insert("kid".into(), kid.clone().into());
        }
        let jwks = serde_json::to_string_pretty(&json!({"keys": [jwk]})).unwrap_or_default() + "\n";
        signing::write_new(&dir.join(&private), pem.as_bytes(), 0o600)?;
        signing::write_new(&dir.join(&public), jwks.as_bytes(), 0o644)?;
        generated.files.push(private);
        generated.files.push(public.clone());
    }
    if let Some(overlay) = overlay {
        add_to_overlay(dir, overlay, tenant, index, &public)?;
        generated.files.push(OVERLAY.to_owned());
        generated.next.push(format!(
            "`{tenant}` keeps its production keys (`jwks_uri`/`discovery`); `portcullis test` and `portcullis token` verify its tokens with `{public}` ({OVERLAY})"
        ));
    } else if issuer.jwks.is_some() {
        generated.next.push(format!(
            "tenants.json lists inline `jwks` for `{tenant}`: replace them with `\"jwks_file\": \"{public}\"`"
        ));
    }
    generated.next.push(format!(
        "mint a token: portcullis token --bundle {} --tenant {tenant} --claims '{{\"sub\": \"alice\"}}'",
        dir.display()
    ));
    Ok(generated)
}

/// Write `overlay` with `tenant`'s issuer `index` → `jwks` added.
fn add_to_overlay(
    dir: &Path,
    mut overlay: Overlay,
    tenant: &str,
    index: usize,
    jwks: &str,
) -> Result<(), String> {
    let files = overlay.entry(tenant.to_owned()).or_default();
    if files.len() <= index {
        files.resize(index + 1, None);
    }
    if let Some(slot) = files.get_mut(index) {
        *slot = Some(jwks.to_owned());
    }
    let text = serde_json::to_string_pretty(&overlay).unwrap_or_default() + "\n";
    std::fs::write(dir.join(OVERLAY), text).map_err(|e| format!("cannot write `{OVERLAY}`: {e}"))
}
