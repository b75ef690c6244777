//! A TLS-intercepting proxy, like the Kazakhstan 2019 interception: listed SNIs get a
//! certificate for that name signed by the censor's CA, everything else passes untouched.
//!
//! The harness DNATs the target's TCP port to this listener. Each connection's ClientHello is
//! *peeked* (left in the socket), so a connection we do not intercept is spliced to the
//! upstream byte for byte, ClientHello included. An intercepted one is terminated here; we
//! then open TLS to the upstream with the same SNI and ALPN offer (not verifying its
//! certificate: a censor has no reason to), answer the client with the ALPN the upstream
//! chose, and relay the plaintext. If the upstream is unreachable the client still completes
//! its handshake with the forged certificate, which is what the probe measures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::Acceptor;
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_rustls::{LazyConfigAcceptor, TlsConnector};

use super::NameList;
use super::tls_hello::{Sni, record_stream_sni};
use crate::pki::{AnySni, TestCa};

/// Most bytes peeked while waiting for a complete ClientHello.
pub const PEEK_LIMIT: usize = 16 * 1024;
/// Most connections handled at once; more are closed on arrival (memory stays bounded).
pub const MAX_CONNECTIONS: usize = 512;
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A relayed connection is cut after this long, whatever it is doing.
const RELAY_TIMEOUT: Duration = Duration::from_secs(300);

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum MitmError {
    /// The listen address is unusable.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A bound proxy, ready to [`run`](Mitm::run).
pub struct Mitm {
    listener: TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    slots: Arc<Semaphore>,
    upstream: SocketAddr,
    intercept: NameList,
    certs: Arc<AnySni>,
    provider: Arc<CryptoProvider>,
}

impl Mitm {
    /// Listen on `listen`; connections go to `upstream`; `intercept` SNIs get certificates
    /// from `ca`.
    pub async fn bind(listen: SocketAddr, upstream: SocketAddr, intercept: NameList, ca: TestCa) -> Result<Self, MitmError> {
        let listener = TcpListener::bind(listen).await.map_err(|source| MitmError::Listen { addr: listen, source })?;
        let shared = Shared {
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            upstream,
            intercept,
            certs: Arc::new(AnySni::new(Arc::new(ca))),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        };
        Ok(Mitm { listener, shared: Arc::new(shared) })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accept connections forever.
    pub async fn run(self) {
        loop {
            match self.listener.accept().await {
                Ok((client, peer)) => {
                    let Ok(slot) = self.shared.slots.clone().try_acquire_owned() else {
                        tracing::warn!("{peer}: {MAX_CONNECTIONS} connections open; closing this one");
                        continue;
                    };
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle(client, peer, &shared).await {
                            tracing::info!("{peer}: {e}");
                        }
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn handle(client: TcpStream, peer: SocketAddr, shared: &Shared) -> std::io::Result<()> {
    match peek_sni(&client).await {
        Some(sni) if shared.intercept.matches(&sni) => {
            tracing::info!("{peer}: intercepting TLS for {sni}");
            intercept(client, &sni, shared).await
        }
        sni => {
            tracing::info!("{peer}: splicing (sni {sni:?}) to {}", shared.upstream);
            splice(client, shared.upstream).await
        }
    }
}

/// The SNI of the ClientHello waiting in `stream`, without consuming it. `None` for no SNI,
/// not TLS, a hello over [`PEEK_LIMIT`], or no complete hello within the timeout.
async fn peek_sni(stream: &TcpStream) -> Option<String> {
    let mut buf = vec![0u8; PEEK_LIMIT];
    let wait = async {
        loop {
            let n = stream.peek(&mut buf).await.ok()?;
            match record_stream_sni(&buf[..n]) {
                Ok(Sni::Known(sni)) => return sni,
                Ok(Sni::NeedMore) if n > 0 && n < PEEK_LIMIT => {
                    // Peek returns at once while bytes are queued, so wait for more to arrive.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                _ => return None,
            }
        }
    };
    timeout(HELLO_TIMEOUT, wait).await.ok().flatten()
}

async fn splice(mut client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    let mut server = timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await.map_err(timed_out)??;
    let _ = timeout(RELAY_TIMEOUT, tokio::io::copy_bidirectional(&mut client, &mut server)).await;
    Ok(())
}

async fn intercept(client: TcpStream, sni: &str, shared: &Shared) -> std::io::Result<()> {
    let start = timeout(HANDSHAKE_TIMEOUT, LazyConfigAcceptor::new(Acceptor::default(), client)).await.map_err(timed_out)??;
    let offered: Vec<Vec<u8>> = start.client_hello().alpn().map(|a| a.map(<[u8]>::to_vec).collect()).unwrap_or_default();

    // Ask the upstream first, so the client gets the ALPN the real server would pick.
    let upstream = match connect_upstream(sni, &offered, shared).await {
        Ok(tls) => Some(tls),
        Err(e) => {
            tracing::info!("upstream {} for {sni}: {e}; completing the handshake anyway", shared.upstream);
            None
        }
    };
    let chosen = match &upstream {
        Some(tls) => tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec),
        None => offered.first().cloned(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(shared.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(shared.certs.clone());
    config.alpn_protocols = chosen.into_iter().collect();
    let mut tls = timeout(HANDSHAKE_TIMEOUT, start.into_stream(Arc::new(config))).await.map_err(timed_out)??;
    match upstream {
        Some(mut server) => {
            let _ = timeout(RELAY_TIMEOUT, tokio::io::copy_bidirectional(&mut tls, &mut server)).await;
        }
        None => {
            let _ = timeout(HANDSHAKE_TIMEOUT, tls.shutdown()).await;
        }
    }
    Ok(())
}

async fn connect_upstream(
    sni: &str,
    alpn: &[Vec<u8>],
    shared: &Shared,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut config = rustls::ClientConfig::builder_with_provider(shared.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(DangerUnverifiedUpstream(shared.provider.clone())))
        .with_no_client_auth();
    config.alpn_protocols = alpn.to_vec();
    let name = ServerName::try_from(sni.to_string()).map_err(std::io::Error::other)?;
    let tcp = timeout(CONNECT_TIMEOUT, TcpStream::connect(shared.upstream)).await.map_err(timed_out)??;
    timeout(HANDSHAKE_TIMEOUT, TlsConnector::from(Arc::new(config)).connect(name, tcp)).await.map_err(timed_out)?
}

fn timed_out(_: tokio::time::error::Elapsed) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")
}

/// Accepts any upstream certificate (signatures are still checked): the censor relays to
/// whatever answers, it does not protect anyone.
#[derive(Debug)]
struct DangerUnverifiedUpstream(Arc<CryptoProvider>);

impl ServerCertVerifier for DangerUnverifiedUpstream {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
