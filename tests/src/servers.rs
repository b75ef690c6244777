//! Real servers on loopback: TLS and QUIC that accept any SNI, a DNS responder, and SNI- and
//! ECH-filtering proxies that reset connections the way an in-path censor does.
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

use crate::censor::tls_hello::{Extensions, MAX_HELLO, record_stream_extensions};
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
    let blocked = first.windows(needle.len()).any(|w| w == needle);
    reset_or_forward(client, upstream, first, blocked).await
}

/// The TLS extension type ECH censors key on (`encrypted_client_hello`, RFC 9849).
const ECH_EXTENSION: u16 = 0xfe0d;

/// A TCP proxy in front of `upstream` that resets any connection whose ClientHello carries the
/// ECH extension (0xfe0d), whatever the SNI, as the censors that block ECH do; other hellos pass.
/// Unlike the SNI filter it must see the whole hello: the extension may come last.
pub async fn ech_reset_proxy(upstream: SocketAddr) -> anyhow::Result<Running> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = ech_proxy_one(client, upstream).await;
            });
        }
    });
    Ok(Running { addr, task })
}

async fn ech_proxy_one(mut client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    let types = loop {
        match record_stream_extensions(&first) {
            // The parser bounds a hello by its declared length; this bounds the buffer regardless.
            Ok(Extensions::NeedMore) if first.len() <= 2 * MAX_HELLO => {}
            Ok(Extensions::Known(types)) => break types,
            // Not a hello we can read: not ours to judge, pass it on.
            _ => break Vec::new(),
        }
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf)).await??;
        if n == 0 {
            return Ok(());
        }
        first.extend_from_slice(&buf[..n]);
    };
    reset_or_forward(client, upstream, first, types.contains(&ECH_EXTENSION)).await
}

/// Reset the client (when `blocked`), or forward `first` and then both directions to `upstream`.
async fn reset_or_forward(mut client: TcpStream, upstream: SocketAddr, first: Vec<u8>, blocked: bool) -> std::io::Result<()> {
    if blocked {
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

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_engine::runner::ech::Ech;
    use vantage_engine::runner::tls::{DataPhase, handshake_offering};
    use vantage_engine::runner::{StepContext, verify::TrustAnchors};
    use vantage_measurement::{Failure, Role, Vantage};

    /// The engine's TLS runner against `addr`: the handshake's failure, if any.
    async fn handshake(addr: SocketAddr, ech: Ech) -> Option<Failure> {
        let ctx = StepContext::new(Vantage::Probe, Duration::from_secs(5));
        let anchors = TrustAnchors::empty(); // the recording verifier completes untrusted handshakes
        let obs = handshake_offering(&ctx, Role::Target, addr, "blocked.example", &anchors, DataPhase::Skip, ech).await;
        assert_eq!(obs.len(), 2, "{ech:?}: connect and handshake");
        obs[1].failure
    }

    #[tokio::test]
    async fn the_ech_censor_resets_grease_ech_and_passes_hellos_without_it() {
        let ca = Arc::new(TestCa::new("ech lab").expect("ca"));
        let server = tls_any_sni(ca).await.expect("server");
        // Benign: the server ignores the extension it cannot use, so GREASE ECH completes.
        assert_eq!(handshake(server.addr, Ech::Grease).await, None);
        assert_eq!(handshake(server.addr, Ech::Control).await, None);
        let censor = ech_reset_proxy(server.addr).await.expect("censor");
        assert_eq!(handshake(censor.addr, Ech::Grease).await, Some(Failure::ConnectionReset));
        assert_eq!(handshake(censor.addr, Ech::Control).await, None);
        assert_eq!(handshake(censor.addr, Ech::Off).await, None);
    }
}
