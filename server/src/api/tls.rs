//! HTTPS for the HTTP API (`server.http_tls_config`): a listener that
//! completes TLS handshakes concurrently (a slow client holds up no one
//! else) and hands each connection over with its peer — the address and the
//! common name of the client certificate it presented, which `auth.file`
//! can grant tenants to.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::pki_types::pem::{Error as PemError, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which client certificates the HTTPS API asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// `NoClientCert`.
    None,
    /// `VerifyClientCertIfGiven`: a certificate, if sent, must be signed by
    /// the client CA (the default with a `client_ca_file`).
    VerifyIfGiven,
    /// `RequireAndVerifyClientCert`.
    Require,
}

/// `server.http_tls_config`, read.
#[derive(Clone, Debug)]
pub struct HttpTls {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
    pub client_auth: ClientAuth,
}

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    /// The subject common name of the client's verified certificate.
    pub common_name: Option<String>,
}

/// Why the HTTP server's TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cert_file: {0}")]
    CertFile(PemError),
    #[error("cert_file: no certificate in it")]
    NoCertificate,
    #[error("key_file: {0}")]
    KeyFile(PemError),
    #[error("client_ca_file: {0}")]
    ClientCaFile(PemError),
    #[error("client_ca_file: {0}")]
    ClientCa(rustls::Error),
    #[error("client_ca_file: {0}")]
    ClientVerifier(rustls::server::VerifierBuilderError),
    #[error("cert_file/key_file: {0}")]
    CertAndKey(rustls::Error),
    #[error("{0}")]
    Protocols(rustls::Error),
}

/// Builds the TLS server configuration: our certificate and key, and the
/// client-certificate check `client_auth` asks for.
pub fn server_config(t: &HttpTls) -> Result<rustls::ServerConfig, TlsConfigError> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&t.cert).collect::<Result<_, _>>().map_err(TlsConfigError::CertFile)?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(&t.key).map_err(TlsConfigError::KeyFile)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Protocols)?;
    let builder = match (&t.client_ca, t.client_auth) {
        (Some(ca), ClientAuth::VerifyIfGiven | ClientAuth::Require) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                roots.add(c.map_err(TlsConfigError::ClientCaFile)?).map_err(TlsConfigError::ClientCa)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if t.client_auth == ClientAuth::Require { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(TlsConfigError::ClientVerifier)?)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(TlsConfigError::CertAndKey)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts TCP connections and yields them once their handshake is done.
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, PeerInfo)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp`; stops when the listener is dropped.
    pub fn new(tcp: TcpListener, config: rustls::ServerConfig) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (sock, addr) = tokio::select! {
                    r = tcp.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            // Out of file descriptors and the like: wait, go on.
                            tracing::warn!(error = %e, "HTTPS accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = tx.closed() => return,
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(tls)) => {
                            let common_name = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| common_name(c));
                            let _ = tx.send((tls, PeerInfo { addr, common_name })).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = PeerInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task only ends once this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(PeerInfo { addr: self.local, common_name: None })
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for PeerInfo {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// The first subject common name of a DER certificate.
fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}
