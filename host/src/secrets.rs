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

/// Why a secret cannot be read. Names the secret and where it was looked for, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// In neither place.
    #[error(
        "secret `{name}` not found: {}no environment variable `{var}`",
        .file.as_ref().map_or(String::new(), |f| format!("no file `{}`, and ", f.display()))
    )]
    NotFound {
        /// The secret.
        name: String,
        /// The file looked for, when there is a secrets directory.
        file: Option<PathBuf>,
        /// The environment variable looked for.
        var: String,
    },
    /// Found, but empty (a file, or an environment variable).
    #[error("secret `{name}`: `{place}` is empty")]
    Empty {
        /// The secret.
        name: String,
        /// The file or variable.
        place: String,
    },
    /// Not a regular file of at most 4096 bytes.
    #[error("secret `{name}`: `{}` is not a file of at most {MAX_SECRET_BYTES} bytes", .path.display())]
    NotAFile {
        /// The secret.
        name: String,
        /// The file.
        path: PathBuf,
    },
    /// The file cannot be read.
    #[error("secret `{name}`: cannot read `{}`: {source}", .path.display())]
    Unreadable {
        /// The secret.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
}

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
    pub fn resolve(&self, bundle: &Bundle) -> Result<Secrets, SecretError> {
        bundle
            .secrets()
            .into_iter()
            .map(|secret| Ok((secret.name.clone(), Arc::from(self.read(secret)?))))
            .collect()
    }

    fn read(&self, secret: &SecretRef) -> Result<Vec<u8>, SecretError> {
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
                    return Err(SecretError::Empty {
                        name: secret.name.clone(),
                        place: var,
                    });
                }
                Ok(bytes)
            }
            None => Err(SecretError::NotFound {
                name: secret.name.clone(),
                file: self.dir.as_ref().map(|d| d.join(&secret.name)),
                var,
            }),
        }
    }
}

fn read_file(path: &Path, name: &str) -> Result<Vec<u8>, SecretError> {
    let unreadable = |source| SecretError::Unreadable {
        name: name.to_owned(),
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() || meta.len() > MAX_SECRET_BYTES {
        return Err(SecretError::NotAFile {
            name: name.to_owned(),
            path: path.to_path_buf(),
        });
    }
    let mut bytes = std::fs::read(path).map_err(unreadable)?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(SecretError::Empty {
            name: name.to_owned(),
            place: path.display().to_string(),
        });
    }
    Ok(bytes)
}
