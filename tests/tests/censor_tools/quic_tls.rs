//! QUIC and TLS servers in C and clients in A, on sockets opened inside those namespaces.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::task::JoinHandle;
use vantage_tests::netns::Netns;
use vantage_tests::pki::{TestCa, server_config};

use super::SERVER;

/// A server task, aborted on drop.
pub struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A QUIC server (ALPN h3, any SNI) on SERVER:443 in `ns`.
pub async fn quic_server(ns: &Netns, ca: Arc<TestCa>) -> anyhow::Result<Task> {
    let socket = ns.enter(|| UdpSocket::bind((SERVER, 443)))?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_config(ca, &[b"h3"])?)?;
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(config), socket, Arc::new(quinn::TokioRuntime))?;
    Ok(Task(tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
                }
            });
        }
    })))
}

/// A QUIC handshake from `ns` to SERVER:443 with `sni`, trusting `ca`, from a fresh port; gives
/// up after 2 s of silence.
pub async fn quic_handshake(ns: &Netns, ca: &TestCa, sni: &str) -> anyhow::Result<()> {
    let socket = ns.enter(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))?;
    let endpoint = quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, Arc::new(quinn::TokioRuntime))?;
    let dir = tempfile::tempdir()?;
    let mut tls = client_config(roots(ca, dir.path(), "ca")?);
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let mut client = quinn::ClientConfig::new(Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(tls)?));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(quinn::VarInt::from_u32(2000).into()));
    client.transport_config(Arc::new(transport));
    let conn = endpoint.connect_with(client, SocketAddr::from((SERVER, 443)), sni)?.await?;
    conn.close(0u32.into(), b"done");
    Ok(())
}

/// A TLS server on SERVER:443 in `ns` that answers one line with `upstream saw <sni>: <line>`.
pub async fn tls_echo_server(ns: &Netns, ca: Arc<TestCa>) -> anyhow::Result<Task> {
    let listener = ns.enter(|| {
        let l = TcpListener::bind((SERVER, 443))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(ca, &[b"http/1.1"])?));
    Ok(Task(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(stream)).await else { return };
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                let mut tls = BufReader::new(tls);
                let mut line = String::new();
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), tls.read_line(&mut line)).await {
                    let reply = format!("upstream saw {sni}: {}\n", line.trim());
                    let _ = tls.get_mut().write_all(reply.as_bytes()).await;
                    let _ = tls.get_mut().shutdown().await;
                }
            });
        }
    })))
}

/// Connect from `ns` to SERVER:443 (DNATed to the MITM), handshake with `sni` trusting only
/// `roots`, send `ping` and return the line that comes back.
pub async fn tls_exchange(ns: &Netns, roots: rustls::RootCertStore, sni: &str) -> anyhow::Result<String> {
    let tcp = ns.enter(|| {
        let s = TcpStream::connect_timeout(&SocketAddr::from((SERVER, 443)), Duration::from_secs(3))?;
        s.set_nonblocking(true)?;
        Ok(s)
    })?;
    let tcp = tokio::net::TcpStream::from_std(tcp)?;
    let mut config = client_config(roots);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from(sni.to_string())?;
    let connect = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp);
    let mut tls = tokio::time::timeout(Duration::from_secs(5), connect).await.context("TLS handshake timed out")??;
    tls.write_all(b"ping\n").await?;
    let mut line = String::new();
    let mut reader = BufReader::new(tls);
    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await.context("no reply")??;
    Ok(line.trim().to_string())
}

/// A root store holding only `ca`.
pub fn roots(ca: &TestCa, dir: &Path, stem: &str) -> anyhow::Result<rustls::RootCertStore> {
    let path = dir.join(format!("{stem}-root.pem"));
    ca.write_pem(&path)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&path)? {
        roots.add(cert?)?;
    }
    Ok(roots)
}

fn client_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .expect("ring supports the default protocol versions")
}
