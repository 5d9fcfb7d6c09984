//! TLS on a listener: its certificate chain and private key from PEM files, TLS 1.2 and 1.3
//! only (rustls's defaults, with ring), ALPN `http/1.1`, and optionally mutual TLS: clients
//! must present a certificate that chains to one of the CAs of a PEM file.
//!
//! The files are read at start, where any problem is fatal (a listener that was asked for TLS
//! never starts in plain HTTP), and again on SIGHUP ([`Tls::reload`]): new files replace the
//! listener's configuration for the connections accepted from then on, and files that do not
//! load are refused whole, the previous configuration serving on. Errors name the file and the
//! problem, never what a key file holds.

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject as _, SectionKind};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The PEM files of a listener's TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain: the listener's own certificate first, then any intermediates.
    pub cert: PathBuf,
    /// The certificate's private key (PKCS #8, PKCS #1 RSA or SEC1 EC; unencrypted).
    pub key: PathBuf,
    /// CA certificates that clients' certificates must chain to (mutual TLS); none: no client
    /// certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

/// Why a listener's TLS files cannot be used. The messages name the file and never quote it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read `{}`: {source}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// The file is not well-formed PEM.
    #[error("`{}` is not valid PEM: {problem}", .path.display())]
    NotPem {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the file's content).
        problem: &'static str,
    },
    /// No `CERTIFICATE` section.
    #[error("`{}` holds no certificate (a `-----BEGIN CERTIFICATE-----` section)", .path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// No private key section.
    #[error(
        "`{}` holds no private key (a `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` section)",
        .path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is encrypted.
    #[error(
        "`{}` holds an encrypted private key: the service reads it unencrypted (protect the file instead)",
        .path.display()
    )]
    EncryptedKey {
        /// The file.
        path: PathBuf,
    },
    /// More than one private key.
    #[error("`{}` holds {count} private keys: give the certificate's key only", .path.display())]
    ManyKeys {
        /// The file.
        path: PathBuf,
        /// How many.
        count: usize,
    },
    /// A key TLS cannot sign with.
    #[error(
        "`{}` holds a private key TLS cannot use ({detail}): use RSA (2048 to 8192 bits), ECDSA P-256 or P-384, or Ed25519",
        .path.display()
    )]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
        /// The TLS library's reason (it names the key type, never the key).
        detail: String,
    },
    /// The key is not the key of the certificate.
    #[error(
        "the private key `{}` does not match the certificate `{}` (the certificate file must start with the listener's own certificate)",
        .key.display(),
        .cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A certificate cannot be parsed or used.
    #[error("`{}`: {detail}", .path.display())]
    BadCertificate {
        /// The certificate (or CA) file.
        path: PathBuf,
        /// What the TLS library says.
        detail: String,
    },
}

/// A listener's TLS configuration, replaceable while the listener runs.
pub struct Tls {
    files: TlsFiles,
    config: arc_swap::ArcSwap<ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Read and check `files`.
    ///
    /// # Errors
    /// A file cannot be read or holds no usable certificate or key, the key does not match the
    /// certificate, or a client CA cannot be used.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let config = server_config(&files)?;
        Ok(Self {
            files,
            config: arc_swap::ArcSwap::from_pointee(config),
        })
    }

    /// Read the files again; on success, connections accepted from now on use them.
    ///
    /// # Errors
    /// As [`Tls::load`]: the previous configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        self.config.store(Arc::new(config));
        Ok(())
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The files.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// An acceptor with the current configuration.
    pub(super) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }
}

fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = certified_key(&files.cert, &files.key, &provider)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::BadCertificate {
            path: files.cert.clone(),
            detail: e.to_string(),
        })?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|e| TlsError::BadCertificate {
                    path: ca.clone(),
                    detail: format!("a CA certificate cannot be used: {e}"),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::BadCertificate {
                    path: ca.clone(),
                    detail: format!("the client CAs cannot be used: {e}"),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The chain of `cert` with the key of `key`, once they are known to match.
fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert)?;
    let signing = provider
        .key_provider
        .load_private_key(private_key(key)?)
        .map_err(|e| TlsError::UnsupportedKey {
            path: key.to_path_buf(),
            detail: match e {
                rustls::Error::General(detail) => detail,
                other => other.to_string(),
            },
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        // ring's keys all know their public key, so an unknown answer is a mismatch too:
        // never serve a certificate whose key was not checked.
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }),
        Err(e) => Err(TlsError::BadCertificate {
            path: cert.to_path_buf(),
            detail: format!("the first certificate cannot be parsed: {e}"),
        }),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Unreadable {
        path: path.to_path_buf(),
        source,
    })
}

/// The PEM sections of `bytes`, or what is wrong with them (in the parser's words, never
/// quoting the file).
fn sections(path: &Path, bytes: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, TlsError> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NotPem {
            path: path.to_path_buf(),
            problem: match e {
                pem::Error::MissingSectionEnd { .. } => "a section has no `-----END` line",
                pem::Error::IllegalSectionStart { .. } => "a `-----BEGIN` line is malformed",
                pem::Error::Base64Decode(_) => "a section is not valid base64",
                pem::Error::SectionTooLarge => "a section is too large",
                _ => "it cannot be read as PEM",
            },
        })
}

/// The certificates of a PEM file, in order.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = sections(path, &read(path)?)?
        .into_iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der))
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The one private key of a PEM file.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    // PKCS #8 `ENCRYPTED PRIVATE KEY`, or OpenSSL's older encrypted PEM (`Proc-Type:
    // 4,ENCRYPTED` inside an `RSA PRIVATE KEY` or `EC PRIVATE KEY` section).
    if contains(&bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(&bytes, b"Proc-Type: 4,ENCRYPTED")
    {
        return Err(TlsError::EncryptedKey {
            path: path.to_path_buf(),
        });
    }
    let mut keys: Vec<PrivateKeyDer<'static>> = sections(path, &bytes)?
        .into_iter()
        .filter_map(|(kind, der)| match kind {
            SectionKind::PrivateKey => Some(PrivatePkcs8KeyDer::from(der).into()),
            SectionKind::RsaPrivateKey => Some(PrivatePkcs1KeyDer::from(der).into()),
            SectionKind::EcPrivateKey => Some(PrivateSec1KeyDer::from(der).into()),
            _ => None,
        })
        .collect();
    let path = path.to_path_buf();
    match (keys.pop(), keys.len()) {
        (Some(key), 0) => Ok(key),
        (Some(_), others) => Err(TlsError::ManyKeys {
            path,
            count: others + 1,
        }),
        (None, _) => Err(TlsError::NoKey { path }),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
