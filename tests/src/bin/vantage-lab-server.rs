//! The lab's servers in the `internet` namespace: TLS and QUIC that accept any SNI with
//! certificates from the lab CA, UDP echo, and an encrypted-DNS resolver (DoT, DoH).
//!
//! It also plays the servers a lying resolver points at (run by a scenario in the `censor`
//! namespace): a block-page server (`--http` with a block page, `--tls-fixed` presenting its
//! own name's certificate, from the untrusted censor CA with `--ca-name censor-ca`), or an
//! unrelated company's server (`--tls-fixed` with the lab CA: trusted, but for another name).
//!
//! TLS answers the first bytes a client sends after the handshake with an HTTP response of
//! 64 KiB and closes: the probe's data phase reads it, so a censor that freezes or throttles a
//! flow after the handshake has something to freeze or throttle. Prints `vantage-lab-server
//! ready` on stdout once every socket is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use vantage_tests::edns_server;
use vantage_tests::pki::{AnySni, TestCa, server_config};

/// What a client gets after the handshake: enough to tell a freeze at 16 KB from a full read.
const BODY_BYTES: usize = 64 * 1024;
/// The longest a connection may sit idle before the server drops it.
const IDLE: Duration = Duration::from_secs(15);

/// TLS, QUIC and UDP echo servers for the censorship lab.
#[derive(Debug, Parser)]
#[command(name = "vantage-lab-server", version)]
struct Args {
    /// Directory holding the lab CA saved as `lab-ca.pem` and `lab-ca.key`.
    #[arg(long, value_name = "DIR")]
    ca_dir: PathBuf,
    /// The CA's file stem in --ca-dir (`censor-ca` for certificates the probe does not trust).
    #[arg(long, value_name = "STEM", default_value = "lab-ca")]
    ca_name: String,
    /// Serve TLS (any SNI, then 64 KiB of data) on this address. Repeatable.
    #[arg(long, value_name = "IP:PORT")]
    tls: Vec<SocketAddr>,
    /// Serve TLS for one name only on this address (`IP:PORT/NAME`): other SNIs get an alert,
    /// as servers that refuse unknown names do. Repeatable.
    #[arg(long, value_name = "IP:PORT/NAME", value_parser = parse_strict)]
    tls_strict: Vec<(SocketAddr, String)>,
    /// Serve TLS with the certificate for NAME whatever the SNI (`IP:PORT/NAME`), as a server
    /// for another name does: a client asking for its own name gets a certificate for NAME.
    /// Repeatable.
    #[arg(long, value_name = "IP:PORT/NAME", value_parser = parse_strict)]
    tls_fixed: Vec<(SocketAddr, String)>,
    /// Serve plain HTTP with a block page ("403 Forbidden") on this address. Repeatable.
    #[arg(long, value_name = "IP:PORT")]
    http: Vec<SocketAddr>,
    /// Serve QUIC (ALPN h3, any SNI) on this address. Repeatable.
    #[arg(long, value_name = "IP:PORT")]
    quic: Vec<SocketAddr>,
    /// Echo UDP datagrams on this address. Repeatable.
    #[arg(long, value_name = "IP:PORT")]
    echo: Vec<SocketAddr>,
    /// Serve DNS over TLS (any SNI, every A query answered) on this address. Repeatable.
    #[arg(long, value_name = "IP:PORT")]
    dot: Vec<SocketAddr>,
    /// Serve DNS over HTTPS (any SNI, POST over HTTP/1.1) on this address. Repeatable.
    #[arg(long, value_name = "IP:PORT")]
    doh: Vec<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = Arc::new(TestCa::load(&args.ca_dir, &args.ca_name).with_context(|| format!("loading the CA {}", args.ca_name))?);
    let mut tasks = tokio::task::JoinSet::new();
    for addr in &args.tls {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding TLS on {addr}"))?;
        let config = server_config(ca.clone(), &[b"http/1.1", b"h2"])?;
        tasks.spawn(serve_tls(listener, tokio_rustls::TlsAcceptor::from(Arc::new(config))));
    }
    for (addr, name) in &args.tls_strict {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding TLS on {addr}"))?;
        let resolver = Arc::new(OnlyName { any: AnySni::new(ca.clone()), name: name.to_ascii_lowercase() });
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"http/1.1".to_vec(), b"h2".to_vec()];
        tasks.spawn(serve_tls(listener, tokio_rustls::TlsAcceptor::from(Arc::new(config))));
    }
    for (addr, name) in &args.tls_fixed {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding TLS on {addr}"))?;
        let resolver = Arc::new(FixedName { any: AnySni::new(ca.clone()), name: name.to_ascii_lowercase() });
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tasks.spawn(serve_tls(listener, tokio_rustls::TlsAcceptor::from(Arc::new(config))));
    }
    for addr in &args.http {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding HTTP on {addr}"))?;
        tasks.spawn(serve_block_page(listener));
    }
    for addr in &args.quic {
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_config(ca.clone(), &[b"h3"])?)?;
        let endpoint = quinn::Endpoint::server(quinn::ServerConfig::with_crypto(Arc::new(crypto)), *addr)
            .with_context(|| format!("binding QUIC on {addr}"))?;
        tasks.spawn(serve_quic(endpoint));
    }
    for addr in &args.echo {
        let socket = UdpSocket::bind(addr).await.with_context(|| format!("binding UDP echo on {addr}"))?;
        tasks.spawn(serve_echo(socket));
    }
    for (addr, doh) in args.dot.iter().map(|a| (a, false)).chain(args.doh.iter().map(|a| (a, true))) {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding encrypted DNS on {addr}"))?;
        let acceptor =
            tokio_rustls::TlsAcceptor::from(Arc::new(server_config(ca.clone(), if doh { &[b"http/1.1"] } else { &[] })?));
        if doh {
            tasks.spawn(edns_server::serve_doh(listener, acceptor));
        } else {
            tasks.spawn(edns_server::serve_dot(listener, acceptor));
        }
    }
    println!("vantage-lab-server ready");
    if tasks.join_next().await.is_none() {
        // Nothing to serve: stay up anyway, so "server stopped" scenarios look the same to the harness.
        std::future::pending::<()>().await;
    }
    Ok(())
}

/// Certificates for one name; no certificate (so a handshake failure alert) for any other.
#[derive(Debug)]
struct OnlyName {
    any: AnySni,
    name: String,
}

impl ResolvesServerCert for OnlyName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let asked = hello.server_name()?.to_ascii_lowercase();
        if asked == self.name { self.any.resolve(hello) } else { None }
    }
}

/// The certificate for one name, whatever the client asked for.
#[derive(Debug)]
struct FixedName {
    any: AnySni,
    name: String,
}

impl ResolvesServerCert for FixedName {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.any.certified_for(&self.name)
    }
}

fn parse_strict(text: &str) -> Result<(SocketAddr, String), String> {
    let (addr, name) = text.split_once('/').ok_or("expected IP:PORT/NAME")?;
    Ok((addr.parse().map_err(|e| format!("{addr}: {e}"))?, name.to_string()))
}

async fn serve_tls(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor) {
    while let Ok((stream, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(Ok(mut tls)) = tokio::time::timeout(IDLE, acceptor.accept(stream)).await else { return };
            let mut buf = [0u8; 4096];
            if let Ok(Ok(n)) = tokio::time::timeout(IDLE, tls.read(&mut buf)).await
                && n > 0
            {
                let mut response =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY_BYTES}\r\nConnection: close\r\n\r\n").into_bytes();
                response.resize(response.len() + BODY_BYTES, b'v');
                let _ = tokio::time::timeout(IDLE, async {
                    tls.write_all(&response).await?;
                    tls.shutdown().await
                })
                .await;
            }
        });
    }
}

/// A block page over plain HTTP: read the request, answer 403 with a short page, close.
async fn serve_block_page(listener: TcpListener) {
    const PAGE: &str = "<html><title>Blocked</title><body>Access to this site is restricted.</body></html>";
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            if let Ok(Ok(n)) = tokio::time::timeout(IDLE, stream.read(&mut buf)).await
                && n > 0
            {
                let response = format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = tokio::time::timeout(IDLE, stream.write_all(response.as_bytes())).await;
            }
        });
    }
}

async fn serve_quic(endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            if let Ok(conn) = incoming.await {
                let _ = tokio::time::timeout(IDLE, conn.closed()).await;
            }
        });
    }
}

async fn serve_echo(socket: UdpSocket) {
    let mut buf = vec![0u8; 65536];
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        let _ = socket.send_to(&buf[..n], from).await;
    }
}
