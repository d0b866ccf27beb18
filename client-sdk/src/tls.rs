//! TLS for `wss://` and `https://`: which certificate authorities a client trusts.
//!
//! A branch usually runs its own CA, so a device (or a branch's link to head office) is given
//! that CA's certificate as a PEM file ([`ClientTls::from_ca_file`]); without one it trusts the
//! operating system's store ([`ClientTls::system`]). One [`ClientTls`] serves both the
//! WebSocket (tokio-tungstenite with `Connector::Rustls`) and the HTTP calls (reqwest, given
//! the same rustls config), so the two can never disagree about whom they trust.
//!
//! Only rustls, never OpenSSL. The crypto provider is aws-lc-rs, named explicitly here (no
//! process-level default is needed or installed): it is the one compiled in, because
//! reqwest 0.13's `rustls` feature brings it and its `rustls-no-provider` feature would make
//! every plain `reqwest::Client::new()` in the process panic until someone installed a
//! default.
//!
//! System roots come from `rustls-native-certs` (the files under `/etc/ssl/certs` on Debian)
//! rather than a compiled-in Mozilla list (`webpki-roots`): an administrator who installs the
//! company's CA into the system store (`update-ca-certificates`) is then trusted without a
//! CA file, and revocations of public CAs arrive with the distribution's updates rather than
//! with a rebuild of this app.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// Why a client's TLS settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The CA file cannot be read or holds no usable certificate.
    #[error("CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    /// The operating system's trust store gave no certificate (no `ca-certificates`?).
    #[error("no system root certificates: {0} (give a CA file instead)")]
    NoSystemRoots(String),
    /// The HTTP client could not be built over the TLS settings.
    #[error("HTTP client: {0}")]
    Http(String),
}

/// Whose certificates a client trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The operating system's trust store.
    System,
    /// Only the CA certificate(s) in this PEM file (e.g. the branch's own CA).
    CaFile(PathBuf),
    /// Only the CA certificate(s) an app supplied as PEM text.
    Pem,
}

impl fmt::Display for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roots::System => f.write_str("a CA in the system's trust store"),
            Roots::CaFile(path) => write!(f, "the CA in {}", path.display()),
            Roots::Pem => f.write_str("the CA the app supplied"),
        }
    }
}

/// The TLS side of a client: the rustls config for `wss://` and an HTTP client over the same
/// roots. Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    inner: Arc<Inner>,
}

struct Inner {
    roots: Roots,
    /// Built on first use for the system store (a `ws://` client never reads it), at once for
    /// a CA the caller named (so a bad file is reported where it was configured).
    loaded: OnceLock<Result<Loaded, TlsError>>,
}

struct Loaded {
    config: Arc<ClientConfig>,
    http: reqwest::Client,
    /// Why this config cannot make TLS connections (a system with no trust store): the dial
    /// says so, while plain HTTP through `http` still works.
    unusable: Option<TlsError>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("roots", &self.inner.roots)
            .finish_non_exhaustive()
    }
}

impl Default for ClientTls {
    fn default() -> Self {
        Self::system()
    }
}

impl ClientTls {
    /// Trusts the operating system's store, read once per process on first use.
    pub fn system() -> Self {
        static SYSTEM: OnceLock<ClientTls> = OnceLock::new();
        SYSTEM
            .get_or_init(|| Self::with_roots(Roots::System))
            .clone()
    }

    /// Trusts only the CA certificate(s) in the PEM file at `path`; fails at once, naming the
    /// file, if it cannot be read or holds no certificate.
    pub fn from_ca_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let path = path.as_ref().to_owned();
        let bad = |reason: String| TlsError::CaFile {
            path: path.clone(),
            reason,
        };
        let pem = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
        let store = roots_from_pem(&pem).map_err(bad)?;
        Self::with_store(Roots::CaFile(path), store)
    }

    /// Trusts only the CA certificate(s) in `pem` (an app that ships its branch's CA).
    pub fn from_ca_pem(pem: &[u8]) -> Result<Self, TlsError> {
        let store = roots_from_pem(pem).map_err(|reason| TlsError::CaFile {
            path: PathBuf::from("<pem>"),
            reason,
        })?;
        Self::with_store(Roots::Pem, store)
    }

    /// `from_ca_file` when a file is given, else the system store.
    pub fn from_optional_ca_file(path: Option<&Path>) -> Result<Self, TlsError> {
        match path {
            Some(path) => Self::from_ca_file(path),
            None => Ok(Self::system()),
        }
    }

    fn with_roots(roots: Roots) -> Self {
        Self {
            inner: Arc::new(Inner {
                roots,
                loaded: OnceLock::new(),
            }),
        }
    }

    fn with_store(roots: Roots, store: RootCertStore) -> Result<Self, TlsError> {
        let tls = Self::with_roots(roots);
        let loaded = load(store);
        let result = loaded.as_ref().map(|_| ()).map_err(Clone::clone);
        let _ = tls.inner.loaded.set(loaded);
        result.map(|()| tls)
    }

    /// Whose certificates this client trusts.
    pub fn roots(&self) -> &Roots {
        &self.inner.roots
    }

    fn loaded(&self) -> Result<&Loaded, TlsError> {
        self.inner
            .loaded
            .get_or_init(|| match system_store() {
                Ok(store) => load(store),
                Err(e) => load(RootCertStore::empty()).map(|loaded| Loaded {
                    unusable: Some(e),
                    ..loaded
                }),
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The rustls client config (for a caller's own connections).
    pub fn rustls_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let loaded = self.loaded()?;
        match &loaded.unusable {
            Some(e) => Err(e.clone()),
            None => Ok(Arc::clone(&loaded.config)),
        }
    }

    /// The connector tokio-tungstenite dials `wss://` with.
    pub fn connector(&self) -> Result<tokio_tungstenite::Connector, TlsError> {
        self.rustls_config()
            .map(tokio_tungstenite::Connector::Rustls)
    }

    /// An HTTP client that trusts the same roots (reqwest keeps a connection pool inside, so
    /// callers share this one). Unlike `reqwest::Client::new()`, it also works for plain
    /// `http://` on a machine without a trust store.
    pub fn http(&self) -> Result<reqwest::Client, TlsError> {
        self.loaded().map(|l| l.http.clone())
    }

    /// A person's account of why a TLS connection failed, if `error` (from a WebSocket dial)
    /// is a TLS failure: what is wrong with the server's certificate and whom this client
    /// trusts.
    pub fn explain(&self, error: &tokio_tungstenite::tungstenite::Error) -> Option<String> {
        tls_cause(error).map(|e| explain(e, self.roots()))
    }
}

/// The rustls error inside a WebSocket dial's error, if the TLS layer failed.
pub fn tls_cause(error: &tokio_tungstenite::tungstenite::Error) -> Option<&rustls::Error> {
    use tokio_tungstenite::tungstenite::{Error, error::TlsError as WsTlsError};
    match error {
        Error::Tls(WsTlsError::Rustls(e)) => Some(e),
        // tokio-rustls reports handshake failures as I/O errors wrapping the rustls error.
        Error::Io(e) => e.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

/// What went wrong, in words, with rustls's own name for it at the end.
fn explain(error: &rustls::Error, roots: &Roots) -> String {
    let what = match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                format!("the server's certificate is not signed by {roots}")
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "the server's certificate does not name the host in the URL".to_owned()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired (or this machine's clock is wrong)".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (or this machine's clock is wrong)"
                    .to_owned()
            }
            _ => "the server's certificate is not acceptable".to_owned(),
        },
        rustls::Error::InvalidMessage(_) => {
            "the server does not speak TLS on this port (a plain ws:// or http:// server?)"
                .to_owned()
        }
        _ => "the TLS handshake failed".to_owned(),
    };
    format!("{what}: {error}")
}

fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not a PEM certificate: {e}"))?;
        store
            .add(cert)
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
    }
    if store.is_empty() {
        return Err("holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----`)".into());
    }
    Ok(store)
}

fn system_store() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(TlsError::NoSystemRoots(if errors.is_empty() {
            "the store is empty".into()
        } else {
            errors.join("; ")
        }));
    }
    for error in &found.errors {
        tracing::debug!(%error, "skipped part of the system trust store");
    }
    Ok(store)
}

/// The one crypto provider (see the module docs).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn load(store: RootCertStore) -> Result<Loaded, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Http(format!("TLS versions: {e}")))?
        .with_root_certificates(store)
        .with_no_client_auth();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(config.clone())
        .build()
        .map_err(|e| TlsError::Http(e.to_string()))?;
    Ok(Loaded {
        config: Arc::new(config),
        http,
        unusable: None,
    })
}

/// Whether `url` asks for TLS (`wss://` or `https://`).
pub(crate) fn wants_tls(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("wss://") || lower.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_that_is_not_pem_is_refused_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("fieldsync-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        let e = ClientTls::from_ca_file(&path).expect_err("no certificate");
        assert!(e.to_string().contains("ca.pem"), "{e}");
        assert!(e.to_string().contains("no certificate"), "{e}");
        let e = ClientTls::from_ca_file(dir.join("missing.pem")).expect_err("missing");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unknown_issuer_names_the_roots_and_rustls_reason() {
        let text = explain(
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            &Roots::CaFile(PathBuf::from("/etc/fieldsync/branch-ca.pem")),
        );
        assert!(text.contains("/etc/fieldsync/branch-ca.pem"), "{text}");
        assert!(text.contains("UnknownIssuer"), "{text}");
    }

    #[test]
    fn tls_urls() {
        assert!(wants_tls("wss://edge.example/sync"));
        assert!(wants_tls("HTTPS://edge.example/"));
        assert!(!wants_tls("ws://127.0.0.1:3030/sync"));
    }
}
