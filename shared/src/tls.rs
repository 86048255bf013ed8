//! TLS material for the broker (`amqps://`) and Redis (`rediss://`) connections, named by
//! file paths only: a secret never travels on a command line (where `ps` shows it), only the
//! path of a file that holds it.
//!
//! The server's certificate is always verified: against the system's trust store plus the CA
//! bundle given here. There is no "insecure" switch, and a `amqp://`/`redis://` URL is never
//! turned into TLS (nor a TLS URL into plain TCP).

use std::path::{Path, PathBuf};

/// Certificate files for one service's TLS connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM bundle of CA certificates to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presenting this client (mutual TLS); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM (PKCS#8, PKCS#1 or SEC1) private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the {what} file {path} holds no PEM {expected}")]
    NoPem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("a client certificate needs its key, and a key its certificate: give both files")]
    HalfIdentity,
    #[error("{0} is set, but the URL is not a TLS one ({1}); use {2}")]
    NotTlsUrl(&'static str, String, &'static str),
}

/// The PEM blocks read from a [`TlsFiles`].
#[derive(Clone, Default)]
pub struct TlsMaterial {
    /// CA certificates (PEM text), if a bundle was given.
    pub ca_pem: Option<String>,
    /// Client certificate chain and key (PEM text), if given.
    pub identity: Option<(String, String)>,
}

// Key material must never reach a log line through `{:?}`.
impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("identity", &self.identity.as_ref().map(|_| "<pem>"))
            .finish()
    }
}

impl TlsFiles {
    /// Whether any file is set.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    /// Reads the files (each time it is called, so a rotated certificate is picked up on the
    /// next connection).
    pub fn load(&self) -> Result<TlsMaterial, TlsError> {
        let ca_pem = match &self.ca_file {
            Some(path) => Some(read_pem(path, "CA", "CERTIFICATE")?),
            None => None,
        };
        let identity = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some((
                read_pem(cert, "client certificate", "CERTIFICATE")?,
                read_pem(key, "client key", "PRIVATE KEY")?,
            )),
            (None, None) => None,
            _ => return Err(TlsError::HalfIdentity),
        };
        Ok(TlsMaterial { ca_pem, identity })
    }
}

/// Makes ring rustls's process-wide crypto provider unless one is set already. Needed by
/// libraries that build their TLS config with `rustls::ClientConfig::builder()` (the redis
/// crate): with more than one provider compiled in, rustls cannot pick one by itself.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Whether `e` (or an error in its chain) is a failed TLS handshake: a certificate that does
/// not verify, or a server that does not speak TLS. rustls reports those as
/// [`rustls::Error`], which clients wrap in an [`std::io::Error`] of kind `InvalidData`.
/// Trying again cannot help.
pub fn is_handshake_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    fn io_is_tls(io: &std::io::Error) -> bool {
        io.kind() == std::io::ErrorKind::InvalidData
            || io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
    }
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if e.downcast_ref::<std::io::Error>().is_some_and(io_is_tls) {
            return true;
        }
        cause = e.source();
    }
    false
}

fn read_pem(path: &Path, what: &'static str, expected: &'static str) -> Result<String, TlsError> {
    let text = std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    // "PRIVATE KEY" also matches "RSA PRIVATE KEY" and "EC PRIVATE KEY".
    if !text.contains("-----BEGIN ") || !text.contains(expected) {
        return Err(TlsError::NoPem {
            what,
            path: path.to_path_buf(),
            expected,
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_checked_and_never_shown() {
        let dir = std::env::temp_dir().join(format!("mapfleet-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let key = dir.join("key.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let files = TlsFiles {
            ca_file: Some(ca.clone()),
            ..Default::default()
        };
        assert!(files.load().unwrap().ca_pem.is_some());
        let half = TlsFiles {
            key_file: Some(key.clone()),
            ..Default::default()
        };
        assert!(matches!(half.load(), Err(TlsError::HalfIdentity)));
        let both = TlsFiles {
            ca_file: None,
            cert_file: Some(ca.clone()),
            key_file: Some(key.clone()),
        };
        let shown = format!("{:?}", both.load().unwrap());
        assert!(!shown.contains("secret"), "{shown}");
        let wrong = TlsFiles {
            ca_file: Some(key),
            ..Default::default()
        };
        assert!(matches!(wrong.load(), Err(TlsError::NoPem { .. })));
        let missing = TlsFiles {
            ca_file: Some(dir.join("absent.pem")),
            ..Default::default()
        };
        let e = missing.load().unwrap_err().to_string();
        assert!(e.contains("absent.pem"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
