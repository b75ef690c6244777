//! Real servers on loopback: TLS and QUIC that accept any SNI, a DNS responder, and an
//! SNI-filtering proxy that resets connections the way an in-path censor does.
//!
//! Each server runs until its handle is dropped.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::pki::{TestCa, server_config};

/// A background server; stops when dropped.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS server that completes a handshake for any SNI with a certificate from `ca`.
pub async fn tls_any_sni(ca: Arc<TestCa>) -> anyhow::Result<Running> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(ca, &[b"h2", b"http/1.1"])?));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(Ok(mut tls)) = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(stream)).await {
                    let mut buf = [0u8; 64];
                    let _ = tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf)).await;
                }
            });
        }
    });
    Ok(Running { addr, task })
}

/// A QUIC server (ALPN h3) that completes a handshake for any SNI.
pub async fn quic_any_sni(ca: Arc<TestCa>) -> anyhow::Result<Running> {
    let tls = server_config(ca, &[b"h3"])?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse()?)?;
    let addr = endpoint.local_addr()?;
    let task = tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
                }
            });
        }
    });
    Ok(Running { addr, task })
}

/// How the DNS responder behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsBehaviour {
    /// Answer from the zone; NXDOMAIN for other names.
    Honest,
    /// Race the honest answer with a forged one for `name`, like an on-path injector.
    Inject {
        /// The forged address.
        forged: Ipv4Addr,
    },
    /// SERVFAIL for every name.
    Servfail,
}

/// A UDP DNS responder for the A records in `zone`.
pub async fn dns(zone: HashMap<String, Ipv4Addr>, behaviour: DnsBehaviour) -> anyhow::Result<Running> {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let addr = socket.local_addr()?;
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..len]) else { continue };
            let Some(q) = query.queries.first().cloned() else { continue };
            let name = q.name().to_ascii().trim_end_matches('.').to_string();
            let reply = |rcode: ResponseCode, ip: Option<Ipv4Addr>| {
                let mut m = Message::error_msg(query.metadata.id, OpCode::Query, rcode);
                m.metadata.recursion_desired = true;
                m.metadata.recursion_available = true;
                m.add_query(q.clone());
                if let Some(ip) = ip.filter(|_| q.query_type() == RecordType::A) {
                    m.add_answer(Record::from_rdata(q.name().clone(), 300, RData::A(A(ip))));
                }
                m.to_vec().unwrap_or_default()
            };
            let honest = match (behaviour, zone.get(&name)) {
                (DnsBehaviour::Servfail, _) => reply(ResponseCode::ServFail, None),
                (_, Some(ip)) => reply(ResponseCode::NoError, Some(*ip)),
                (_, None) => reply(ResponseCode::NXDomain, None),
            };
            if let DnsBehaviour::Inject { forged } = behaviour {
                let _ = socket.send_to(&reply(ResponseCode::NoError, Some(forged)), from).await;
                let socket = socket.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    let _ = socket.send_to(&honest, from).await;
                });
            } else {
                let _ = socket.send_to(&honest, from).await;
            }
        }
    });
    Ok(Running { addr, task })
}

/// A TCP proxy in front of `upstream` that resets any connection whose ClientHello carries
/// `blocked_sni`, as an in-path SNI filter does (RST right after the ClientHello).
pub async fn sni_reset_proxy(upstream: SocketAddr, blocked_sni: &str) -> anyhow::Result<Running> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let needle = blocked_sni.as_bytes().to_vec();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let needle = needle.clone();
            tokio::spawn(async move {
                let _ = proxy_one(client, upstream, &needle).await;
            });
        }
    });
    Ok(Running { addr, task })
}

async fn proxy_one(mut client: TcpStream, upstream: SocketAddr, needle: &[u8]) -> std::io::Result<()> {
    let mut first = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut first)).await??;
    first.truncate(n);
    if first.windows(needle.len()).any(|w| w == needle) {
        // SO_LINGER 0 turns the close into a RST, which is what the censor injects.
        client.set_zero_linger()?;
        drop(client);
        return Ok(());
    }
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&first).await?;
    let _ = tokio::time::timeout(Duration::from_secs(10), tokio::io::copy_bidirectional(&mut client, &mut server)).await;
    Ok(())
}
