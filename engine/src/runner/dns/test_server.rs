//! A tiny DNS server on 127.0.0.1:0 for the runner tests, with scripted misbehaviour.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::codec::testing::reply_to;

/// How the server treats each query.
#[derive(Clone, Debug)]
pub(crate) enum Behaviour {
    /// NOERROR with the addresses of the asked family (TTL 300).
    Answer { ips: Vec<IpAddr> },
    /// An on-path injector: a forged reply first, the real one `gap` later.
    Injected { forged: IpAddr, real: IpAddr, gap: Duration },
    /// An error rcode, optionally with an SOA in authority.
    Rcode { rcode: u16, soa: bool },
    /// No reply at all.
    Silence,
    /// Lose the first `drop` queries (a lossy link), then answer.
    DropFirst { drop: usize, ips: Vec<IpAddr> },
    /// Answer with the query id flipped.
    WrongId,
    /// A reply from another port first (someone else's datagram), then the real one.
    OtherSourceFirst { ip: IpAddr },
    /// The same reply `copies` times.
    Flood { copies: usize },
}

impl Behaviour {
    pub(crate) fn answer(ips: &[&str]) -> Self {
        Behaviour::Answer { ips: ips.iter().map(|s| s.parse().expect("test ip")).collect() }
    }
}

/// A running server; stops when dropped.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TestServer {
    pub(crate) async fn spawn(behaviour: Behaviour) -> TestServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind test dns server");
        let addr = socket.local_addr().expect("local addr");
        let queries = Arc::new(AtomicUsize::new(0));
        let counter = queries.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else { return };
                let seen = counter.fetch_add(1, Ordering::SeqCst) + 1;
                serve(&socket, &behaviour, &buf[..n], from, seen).await;
            }
        });
        TestServer { addr, queries, task }
    }

    /// Queries received so far.
    pub(crate) fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Addresses of the family the query asked for.
fn for_query(query: &[u8], ips: &[IpAddr]) -> Vec<IpAddr> {
    let qtype = Message::from_vec(query).ok().and_then(|m| m.queries.first().map(|q| q.query_type()));
    ips.iter()
        .copied()
        .filter(|ip| match qtype {
            Some(RecordType::AAAA) => ip.is_ipv6(),
            _ => ip.is_ipv4(),
        })
        .collect()
}

async fn serve(socket: &UdpSocket, behaviour: &Behaviour, query: &[u8], from: SocketAddr, seen: usize) {
    let send = |bytes: Vec<u8>| async move {
        let _ = socket.send_to(&bytes, from).await;
    };
    match behaviour {
        Behaviour::Answer { ips } => send(reply_to(query, 0, &for_query(query, ips), false)).await,
        Behaviour::Injected { forged, real, gap } => {
            send(reply_to(query, 0, &[*forged], false)).await;
            tokio::time::sleep(*gap).await;
            send(reply_to(query, 0, &[*real], false)).await;
        }
        Behaviour::Rcode { rcode, soa } => send(reply_to(query, *rcode, &[], *soa)).await,
        Behaviour::Silence => {}
        Behaviour::DropFirst { drop, ips } => {
            if seen > *drop {
                send(reply_to(query, 0, &for_query(query, ips), false)).await;
            }
        }
        Behaviour::WrongId => {
            let mut reply = reply_to(query, 0, &["192.0.2.99".parse().expect("ip")], false);
            reply[0] ^= 0xff;
            send(reply).await;
        }
        Behaviour::OtherSourceFirst { ip } => {
            let other = UdpSocket::bind("127.0.0.1:0").await.expect("bind other");
            let _ = other.send_to(&reply_to(query, 0, &["10.0.0.1".parse().expect("ip")], false), from).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            send(reply_to(query, 0, &[*ip], false)).await;
        }
        Behaviour::Flood { copies } => {
            let reply = reply_to(query, 0, &["192.0.2.10".parse().expect("ip")], false);
            for _ in 0..*copies {
                let _ = socket.send_to(&reply, from).await;
            }
        }
    }
}
