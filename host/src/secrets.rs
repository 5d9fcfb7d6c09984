//! Where the host reads the HMAC secrets a bundle names (`"secret": "<name>"` on an issuer):
//! a file `<dir>/<name>` of the secrets directory (`--secrets-dir`, the layout of Kubernetes
//! secret volumes), else the environment variable `PORTCULLIS_SECRET_<NAME>`. A secret is its
//! bytes as written, less one trailing newline. Secrets are never logged, echoed or served:
//! errors name the secret and where it was looked for, never its value.

use portcullis_engine::{Bundle, SecretRef};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Longest secret read (an HMAC key longer than the hash's block is hashed anyway).
const MAX_SECRET_BYTES: u64 = 4096;

/// Secrets by name, as read (never printed).
pub type Secrets = Vec<(String, Arc<[u8]>)>;

/// Where secrets are read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretSource {
    /// A directory of one file per secret, by name.
    pub dir: Option<PathBuf>,
}

impl SecretSource {
    /// Every secret `bundle` names, read.
    ///
    /// # Errors
    /// A secret that is in neither place, or a file that cannot be read.
    pub fn resolve(&self, bundle: &Bundle) -> Result<Secrets, String> {
        bundle
            .secrets()
            .into_iter()
            .map(|secret| Ok((secret.name.clone(), Arc::from(self.read(secret)?))))
            .collect()
    }

    fn read(&self, secret: &SecretRef) -> Result<Vec<u8>, String> {
        if let Some(dir) = &self.dir {
            let path = dir.join(&secret.name);
            if path.exists() {
                return read_file(&path, &secret.name);
            }
        }
        let var = secret.env_var();
        match std::env::var_os(&var) {
            Some(value) => {
                let bytes = value.into_encoded_bytes();
                if bytes.is_empty() {
                    return Err(format!("secret `{}`: `{var}` is empty", secret.name));
                }
                Ok(bytes)
            }
            None => Err(format!(
                "secret `{}` not found: {}no environment variable `{var}`",
                secret.name,
                self.dir.as_ref().map_or(String::new(), |d| format!(
                    "no file `{}`, and ",
                    d.join(&secret.name).display()
                ))
            )),
        }
    }
}

fn read_file(path: &Path, name: &str) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("secret `{name}`: cannot read `{}`: {e}", path.display()))?;
    if !meta.is_file() || meta.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "secret `{name}`: `{}` is not a file of at most {MAX_SECRET_BYTES} bytes",
            path.display()
        ));
    }
    let mut bytes = std::fs::read(path)
        .map_err(|e| format!("secret `{name}`: cannot read `{}`: {e}", path.display()))?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(format!("secret `{name}`: `{}` is empty", path.display()));
    }
    Ok(bytes)
}
