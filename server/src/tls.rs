//! TLS for the server's listener (HTTPS and `wss://` on every route) and for the branch's link
//! to head office (issue 13). rustls only, never OpenSSL; the crypto provider is the client
//! SDK's (`fieldsync_client::tls::provider`, aws-lc-rs), named explicitly.
//!
//! Serving: `[tls] cert` and `key` (PEM files) give a rustls server config, loaded when the
//! server starts so a bad file stops it with the file's name. [`TlsListener`] is an
//! `axum::serve::Listener`, so axum's graceful shutdown works as over plain TCP: a task
//! accepts TCP connections (TCP_NODELAY on each, as over plain TCP) and runs each handshake in
//! its own task under a time limit, so a client that fails or stalls its handshake costs
//! nobody else anything; finished handshakes are handed to axum. A client that sends plain
//! HTTP to the TLS port (a `ws://` URL for a `wss://` server) gets a 400 whose JSON says to use
//! `wss://` or `https://`, rather than a bare reset.
//!
//! Without `[tls]`, a server listening on anything but loopback warns at start that its
//! traffic is in clear ([`clear_text_warning`]).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fieldsync_client::tls::ClientTls;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite;

pub use crate::config::TlsFiles;

/// Why the TLS settings cannot be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("certificate file {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("certificate {cert} and key {key} cannot be used together: {reason}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("upstream ca_file: {0}")]
    UpstreamCa(#[from] fieldsync_client::tls::TlsError),
    #[error("[tls] needs both cert and key; {0} is not set")]
    Incomplete(&'static str),
}

/// How long a client has to complete its TLS handshake.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Reads the certificate chain and key into the server's rustls config.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    if files.cert.as_os_str().is_empty() {
        return Err(TlsError::Incomplete("cert"));
    }
    if files.key.as_os_str().is_empty() {
        return Err(TlsError::Incomplete("key"));
    }
    let read = |what: &'static str, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read("certificate", &files.cert)?;
    let bad_cert = |reason: String| TlsError::Cert {
        path: files.cert.clone(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(format!("not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad_cert(
            "holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----`)".into(),
        ));
    }
    let key_pem = read("key", &files.key)?;
    warn_if_others_can_read(&files.key);
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no private key (expected PEM `-----BEGIN PRIVATE KEY-----`)".into()
            }
            other => format!("not a PEM private key: {other}"),
        },
    })?;
    let pair = |reason: String| TlsError::Pair {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason,
    };
    let mut config = ServerConfig::builder_with_provider(fieldsync_client::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| pair(e.to_string()))?
        .with_no_client_auth()
        // Also checks that the key is the certificate's.
        .with_single_cert(chain, key)
        .map_err(|e| pair(e.to_string()))?;
    // The router speaks HTTP/1.1 (WebSocket upgrades need it).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Checks the TLS files a config names (the server's and the upstream CA), so that a bad
/// one stops the server at start with its name rather than failing every handshake or dial.
pub fn check(config: &crate::config::Config) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    if let Some(upstream) = &config.upstream
        && let Some(ca_file) = &upstream.ca_file
    {
        ClientTls::from_ca_file(ca_file)?;
    }
    config.tls.as_ref().map(server_config).transpose()
}

#[cfg(unix)]
fn warn_if_others_can_read(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the TLS private key is readable by every user of this machine; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_others_can_read(_path: &Path) {}

/// The warning a server without TLS gives when it listens on `addr`, if any: none on
/// loopback (only this machine can reach it, e.g. behind a reverse proxy).
pub fn clear_text_warning(addr: SocketAddr) -> Option<String> {
    if addr.ip().is_loopback() {
        return None;
    }
    Some(format!(
        "listening on {addr} without TLS: device tokens, customer names, addresses and \
         signatures cross the network in clear (R33). Set [tls] cert and key in the config \
         (or FIELDSYNC_TLS_CERT and FIELDSYNC_TLS_KEY), or listen on 127.0.0.1 behind a \
         reverse proxy that terminates TLS (README, \"TLS\")"
    ))
}

/// A listener that hands axum TLS connections whose handshake has completed.
#[derive(Debug)]
pub struct TlsListener {
    addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let (ready_tx, ready) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), ready_tx));
        Ok(Self {
            addr,
            ready,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Axum drops the listener when it stops accepting (graceful shutdown): so do we, and
        // handshakes under way end with the task.
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task ended (it does not, short of a panic): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

async fn accept_loop(
    mut listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            // Axum's own accept: it retries and logs accept errors (e.g. out of descriptors).
            (tcp, peer) = axum::serve::Listener::accept(&mut listener) => {
                // As over plain TCP (`app::serve`): no delayed-ACK wait on every round trip.
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "set TCP_NODELAY");
                }
                let acceptor = acceptor.clone();
                let ready = ready.clone();
                handshakes.spawn(async move {
                    if let Some(tls) = handshake(&acceptor, tcp, peer).await {
                        let _ = ready.send((tls, peer)).await;
                    }
                });
            }
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            () = ready.closed() => return,
        }
    }
}

/// The first byte of a TLS connection: a handshake record (the ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_LIMIT, tcp.peek(&mut first)).await {
        Ok(Ok(0)) => return None,
        Ok(Ok(_)) if first[0] != TLS_HANDSHAKE_RECORD => {
            tracing::debug!(%peer, "plain HTTP on the TLS port; answered 400");
            answer_plain_http(tcp).await;
            return None;
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "connection failed before its TLS handshake");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "no TLS handshake within {HANDSHAKE_LIMIT:?}; closed");
            return None;
        }
    }
    match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            // A TLS-level failure (most often a client that does not trust this certificate,
            // which says so with an alert) is worth an operator's attention; a connection
            // that just went away is not.
            let tls_failure = e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>());
            if tls_failure {
                tracing::warn!(%peer, error = %e, "TLS handshake failed");
            } else {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
            }
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake not completed within {HANDSHAKE_LIMIT:?}; closed");
            None
        }
    }
}

/// Reads the plain HTTP request's head (so closing does not reset the connection under the
/// client before it read the answer) and answers 400 in the server's JSON error form.
async fn answer_plain_http(mut tcp: TcpStream) {
    const MAX_HEAD: usize = 16 * 1024;
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    let read_head = async {
        while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    };
    if tokio::time::timeout(HANDSHAKE_LIMIT, read_head)
        .await
        .is_err()
    {
        return;
    }
    let body = serde_json::json!({
        "code": "tls_required",
        "message": "this port serves TLS only: use a wss:// or https:// URL",
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        tcp.write_all(response.as_bytes()).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(HANDSHAKE_LIMIT, write).await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Dials head office for the branch link: `wss://` trusts the CA in `ca_file` (read at every
/// dial, like the token file, so a renewed CA needs no restart) or else the system's store. A
/// TLS failure comes back as an I/O error whose text says what is wrong with the certificate
/// and whom the branch trusts.
pub async fn dial_upstream(
    request: tungstenite::handshake::client::Request,
    config: tungstenite::protocol::WebSocketConfig,
    ca_file: Option<&Path>,
) -> Result<(Socket, tungstenite::handshake::client::Response), tungstenite::Error> {
    let as_io = |message: String| {
        tungstenite::Error::Io(io::Error::new(io::ErrorKind::InvalidData, message))
    };
    let tls = ClientTls::from_optional_ca_file(ca_file).map_err(|e| as_io(format!("TLS: {e}")))?;
    let connector = if request.uri().scheme_str() == Some("wss") {
        Some(tls.connector().map_err(|e| as_io(format!("TLS: {e}")))?)
    } else {
        None
    };
    tokio_tungstenite::connect_async_tls_with_config(request, Some(config), false, connector)
        .await
        .map_err(|e| match tls.explain(&e) {
            Some(reason) => as_io(format!("TLS: {reason}")),
            None => e,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_non_loopback_address_without_tls_is_warned_about() {
        assert!(clear_text_warning("127.0.0.1:3030".parse().expect("addr")).is_none());
        assert!(clear_text_warning("[::1]:3030".parse().expect("addr")).is_none());
        let warning = clear_text_warning("0.0.0.0:3040".parse().expect("addr")).expect("warned");
        assert!(warning.contains("in clear"), "{warning}");
        assert!(warning.contains("[tls]"), "{warning}");
        assert!(warning.contains("reverse proxy"), "{warning}");
    }

    #[test]
    fn a_missing_or_empty_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        };
        let e = server_config(&files).expect_err("missing");
        assert!(e.to_string().contains("cert.pem"), "{e}");
        std::fs::write(&cert, "hello").expect("write");
        let e = server_config(&files).expect_err("not a certificate");
        assert!(e.to_string().contains("cert.pem"), "{e}");
        assert!(e.to_string().contains("no certificate"), "{e}");
    }
}
