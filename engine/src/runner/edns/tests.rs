//! The runners against loopback DoT and DoH servers with a throwaway CA.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use vantage_measurement::{Detail, DnsEngine, Failure, Observation, Operation, Role, Vantage};

use super::*;
use crate::runner::dns::codec::testing::reply_to;

const NAME: &str = "dns.test";

/// What the test server does after the handshake.
#[derive(Clone, Copy)]
enum Serve {
    Answer,
    WrongId,
    Silence,
    Page,
}

struct Lab {
    ca_pem: tempfile::NamedTempFile,
    acceptor: TlsAcceptor,
}

fn lab() -> Lab {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec![NAME.to_string()]).expect("params").signed_by(&leaf_key, &issuer).expect("leaf");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(leaf.der().to_vec())], key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let ca_pem = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(ca_pem.path(), ca_cert.pem()).expect("write");
    Lab { ca_pem, acceptor: TlsAcceptor::from(Arc::new(config)) }
}

fn answer(query: &[u8], serve: Serve) -> Vec<u8> {
    let ip: IpAddr = "192.0.2.53".parse().expect("ip");
    let mut reply = reply_to(query, 0, &[ip], false);
    if matches!(serve, Serve::WrongId) {
        reply[0] ^= 0xff;
    }
    reply
}

async fn serve_dot(lab: &Lab, serve: Serve) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = lab.acceptor.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(mut tls) = acceptor.accept(tcp).await else { continue };
            let mut prefix = [0u8; 2];
            if tls.read_exact(&mut prefix).await.is_err() {
                continue;
            }
            let mut query = vec![0u8; codec::dot_length(prefix)];
            if tls.read_exact(&mut query).await.is_err() || matches!(serve, Serve::Silence) {
                tokio::time::sleep(Duration::from_secs(30)).await;
                continue;
            }
            let framed = codec::dot_frame(&answer(&query, serve)).expect("frame");
            let _ = tls.write_all(&framed).await;
            let _ = tls.shutdown().await;
        }
    });
    addr
}

async fn serve_doh(lab: &Lab, serve: Serve) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = lab.acceptor.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(mut tls) = acceptor.accept(tcp).await else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            let head_end = loop {
                let Ok(n) = tls.read(&mut buf).await else { break None };
                req.extend_from_slice(&buf[..n]);
                if n == 0 {
                    break None;
                }
                if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&req[..head_end]).to_ascii_lowercase();
            assert!(head.starts_with("post /dns-query http/1.1\r\n"), "{head}");
            let len: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            while req.len() < head_end + len {
                let Ok(n) = tls.read(&mut buf).await else { break };
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let (ctype, body) = match serve {
                Serve::Page => ("text/html", b"<html>blocked</html>".to_vec()),
                Serve::Silence => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    continue;
                }
                _ => (codec::DNS_MESSAGE, answer(&req[head_end..head_end + len], serve)),
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = tls.write_all(head.as_bytes()).await;
            let _ = tls.write_all(&body).await;
            let _ = tls.shutdown().await;
        }
    });
    addr
}

fn anchors(lab: &Lab) -> TrustAnchors {
    TrustAnchors::empty().with_pem_file(lab.ca_pem.path()).expect("anchors")
}

fn ctx(ms: u64) -> StepContext {
    StepContext::new(Vantage::Probe, Duration::from_millis(ms))
}

fn query_step(obs: &[Observation]) -> &Observation {
    let q = obs.last().expect("steps");
    assert_eq!(q.op, Operation::Resolve, "{obs:?}");
    q
}

fn raw_name(o: &Observation) -> Option<&str> {
    o.raw.as_ref().and_then(|r| r.name.as_deref())
}

#[tokio::test]
async fn dot_connects_handshakes_and_gets_an_answer() {
    let lab = lab();
    let addr = serve_dot(&lab, Serve::Answer).await;
    let obs = dot(&ctx(3000), Role::Target, addr, NAME, DEFAULT_QUERY, &anchors(&lab)).await;
    let ops: Vec<_> = obs.iter().map(|o| o.op).collect();
    assert_eq!(ops, [Operation::Connect, Operation::TlsHandshake, Operation::Resolve]);
    assert!(obs.iter().all(Observation::succeeded), "{obs:?}");
    let Some(Detail::Dns(d)) = &query_step(&obs).detail else { panic!("no dns detail") };
    assert_eq!((d.engine, d.resolver.as_deref(), d.query_name.as_str()), (DnsEngine::Dot, Some(NAME), DEFAULT_QUERY));
    assert_eq!(d.replies[0].answers[0].ip.to_string(), "192.0.2.53");
}

#[tokio::test]
async fn dot_refuses_a_reply_to_another_id_and_times_out_on_silence() {
    let lab = lab();
    let addr = serve_dot(&lab, Serve::WrongId).await;
    let obs = dot(&ctx(3000), Role::Target, addr, NAME, DEFAULT_QUERY, &anchors(&lab)).await;
    let q = query_step(&obs);
    assert_eq!((q.failure, raw_name(q)), (Some(Failure::DnsReplyWithWrongQueryId), Some("wrong_query_id")));
    let addr = serve_dot(&lab, Serve::Silence).await;
    let obs = dot(&ctx(400), Role::Target, addr, NAME, DEFAULT_QUERY, &anchors(&lab)).await;
    assert_eq!(query_step(&obs).failure, Some(Failure::GenericTimeoutError));
}

#[tokio::test]
async fn no_query_goes_to_a_resolver_whose_certificate_does_not_verify() {
    let lab = lab();
    let addr = serve_dot(&lab, Serve::Answer).await;
    let obs = dot(&ctx(3000), Role::Target, addr, "other.test", DEFAULT_QUERY, &anchors(&lab)).await;
    assert_eq!(obs.len(), 2, "connect and handshake only: {obs:?}");
    let Some(Detail::Tls(tls)) = &obs[1].detail else { panic!("no tls detail") };
    assert_eq!(tls.verified, Some(false));
}

#[tokio::test]
async fn doh_posts_and_checks_the_media_type() {
    let lab = lab();
    let query = DohQuery { path: DEFAULT_DOH_PATH, name: DEFAULT_QUERY };
    let addr = serve_doh(&lab, Serve::Answer).await;
    let obs = doh(&ctx(3000), Role::Target, addr, NAME, query, &anchors(&lab)).await;
    assert!(obs.iter().all(Observation::succeeded), "{obs:?}");
    let Some(Detail::Tls(tls)) = &obs[1].detail else { panic!("no tls detail") };
    assert_eq!(tls.alpn.as_deref(), Some("http/1.1"));
    let Some(Detail::Dns(d)) = &query_step(&obs).detail else { panic!("no dns detail") };
    assert_eq!(d.engine, DnsEngine::Doh);
    let addr = serve_doh(&lab, Serve::Page).await;
    let obs = doh(&ctx(3000), Role::Target, addr, NAME, query, &anchors(&lab)).await;
    let q = query_step(&obs);
    assert_eq!((q.failure, raw_name(q)), (Some(Failure::DnsServerMisbehaving), Some("wrong_content_type")));
}

#[tokio::test]
async fn a_closed_port_stops_at_the_connect() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let obs = dot(&ctx(2000), Role::Target, addr, NAME, DEFAULT_QUERY, &TrustAnchors::empty()).await;
    assert_eq!(obs.len(), 1);
    assert_eq!(obs[0].failure, Some(Failure::ConnectionRefused));
}
