//! The TTL-limited repeat of a ClientHello over TCP, for [`crate::classify::localise`].
//!
//! One attempt = one TCP connection: the handshake at the normal TTL, then the TTL lowered to
//! `ttl` (IPv4 `IP_TTL`, IPv6 `IPV6_UNICAST_HOPS`), `IP_RECVERR` switched on, the ClientHello
//! sent, and whatever comes back within the wait turned into a [`Seen`].
//!
//! What Linux reports (kernel `tcp_v4_err`/`tcp_v6_err`, confirmed in namespaces; see
//! `issue15-hops.md`): on an established TCP socket an ICMP error is never queued on the error
//! queue; with `IP_RECVERR` it becomes a pending `EHOSTUNREACH` that wakes the reader at once,
//! without it a soft error that only `SO_ERROR` shows. We read with `IP_RECVERR` on and also ask
//! `SO_ERROR` at the end of the wait, because an ICMP that arrives while the socket is locked by
//! our own `send` is kept as the soft error. No address is ever read: the hop is `ttl`.
//!
//! The pure half, [`Outcome`], folds the socket's events into a [`Seen`] and is tested without
//! sockets; [`tcp_attempt`] is the thin I/O around it. On loopback nothing forwards, so the TTL is
//! never decremented and no Time Exceeded can be drawn there: its tests cover the server's reply,
//! an alert, a reset, a close and silence; Time Exceeded needs the lab's routers.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use crate::classify::localise::{After, Injection, Seen};

/// The TLS record type of a ServerHello; any other first byte is not the server's answer.
const RECORD_HANDSHAKE: u8 = 0x16;

/// One thing the socket said after the ClientHello went out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Bytes arrived; the first byte of the first read (a TLS record type).
    Data(u8),
    /// The peer closed (FIN).
    Eof,
    /// The connection was reset.
    Reset,
    /// An ICMP error was reported for our packets (`EHOSTUNREACH`, `ENETUNREACH`).
    IcmpError,
}

/// The events of one attempt, folded into what the classifier reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    first: Option<Seen>,
    after: Option<After>,
}

impl Outcome {
    /// Take one event; returns whether more can be learnt from this socket.
    pub fn push(&mut self, event: Event) -> bool {
        let Some(first) = self.first else {
            self.first = Some(match event {
                Event::Data(RECORD_HANDSHAKE) => Seen::Reply,
                Event::Data(_) => Seen::Injected { kind: Injection::Alert, after: After::Nothing },
                Event::Eof => Seen::Injected { kind: Injection::Close, after: After::Unobservable },
                Event::Reset => Seen::Injected { kind: Injection::Reset, after: After::Unobservable },
                Event::IcmpError => Seen::IcmpError,
            });
            // Only an injected alert leaves a socket that can still show whether the packet went
            // on; after a reply, an ICMP error, a reset or a close there is nothing more to learn.
            return matches!(self.first, Some(Seen::Injected { kind: Injection::Alert, .. }));
        };
        if !matches!(first, Seen::Injected { .. }) {
            return false;
        }
        match event {
            Event::IcmpError => self.after = Some(After::IcmpError),
            Event::Data(RECORD_HANDSHAKE) => self.after = Some(After::Reply),
            Event::Data(_) => return true,
            Event::Eof | Event::Reset => {}
        }
        false
    }

    /// What the attempt drew.
    pub fn seen(self) -> Seen {
        match (self.first, self.after) {
            (None, _) => Seen::Nothing,
            (Some(Seen::Injected { kind, after }), later) => Seen::Injected { kind, after: later.unwrap_or(after) },
            (Some(first), _) => first,
        }
    }
}

fn event_of(err: &io::Error) -> Option<Event> {
    match err.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Some(Event::Reset),
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => Some(Event::IcmpError),
        _ => None,
    }
}

/// Lower the TTL (hop limit) of an established stream and have ICMP errors reported at once.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn limit_hops(stream: &TcpStream, ttl: u8) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let hops = i32::from(ttl);
    let set = match stream.peer_addr()? {
        SocketAddr::V4(_) => {
            setsockopt(stream, sockopt::Ipv4Ttl, &hops).and_then(|()| setsockopt(stream, sockopt::Ipv4RecvErr, &true))
        }
        SocketAddr::V6(_) => {
            setsockopt(stream, sockopt::Ipv6Ttl, &hops).and_then(|()| setsockopt(stream, sockopt::Ipv6RecvErr, &true))
        }
    };
    set.map_err(io::Error::from)
}

/// Elsewhere only IPv4's TTL can be set, and ICMP errors show only through `SO_ERROR`.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn limit_hops(stream: &TcpStream, ttl: u8) -> io::Result<()> {
    match stream.peer_addr()? {
        SocketAddr::V4(_) => stream.set_ttl(u32::from(ttl)),
        SocketAddr::V6(_) => Err(io::Error::new(io::ErrorKind::Unsupported, "IPv6 hop limit on this OS")),
    }
}

/// Connect to `addr` at the normal TTL, then send `client_hello` with the TTL set to `ttl` and
/// report what it drew within `wait`. An error means the attempt could not run (the connect
/// failed, or the socket refused the options); it is not an observation.
pub async fn tcp_attempt(addr: SocketAddr, client_hello: &[u8], ttl: u8, wait: Duration) -> io::Result<Seen> {
    let stream = timeout(wait, TcpStream::connect(addr)).await.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    stream.set_nodelay(true)?;
    // Dropping aborts: a graceful close would retransmit the ClientHello and renew a penalty.
    stream.set_zero_linger()?;
    limit_hops(&stream, ttl)?;
    let deadline = Instant::now() + wait;
    let mut outcome = Outcome::default();
    let mut stream = stream;
    let mut more = true;
    if let Err(err) = stream.write_all(client_hello).await {
        more = outcome.push(event_of(&err).ok_or(err)?);
    }
    let mut buf = [0u8; 4096];
    while more {
        let event = match timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_elapsed) => break,
            Ok(Ok(0)) => Event::Eof,
            Ok(Ok(_)) => Event::Data(buf[0]),
            Ok(Err(err)) => match event_of(&err) {
                Some(event) => event,
                None => break,
            },
        };
        more = outcome.push(event);
    }
    // An ICMP error that arrived while our own send held the socket is kept as the soft error.
    if let Ok(Some(err)) = stream.take_error()
        && let Some(event @ Event::IcmpError) = event_of(&err)
    {
        outcome.push(event);
    }
    Ok(outcome.seen())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    const RECORD_ALERT: u8 = 0x15;

    fn fold(events: &[Event]) -> Seen {
        let mut outcome = Outcome::default();
        for event in events {
            if !outcome.push(*event) {
                break;
            }
        }
        outcome.seen()
    }

    #[test]
    fn events_fold_into_what_the_classifier_reads() {
        let alert = |after| Seen::Injected { kind: Injection::Alert, after };
        let table: &[(&[Event], Seen)] = &[
            (&[], Seen::Nothing),
            (&[Event::IcmpError], Seen::IcmpError),
            (&[Event::Data(RECORD_HANDSHAKE)], Seen::Reply),
            (&[Event::Reset], Seen::Injected { kind: Injection::Reset, after: After::Unobservable }),
            (&[Event::Eof], Seen::Injected { kind: Injection::Close, after: After::Unobservable }),
            (&[Event::Data(RECORD_ALERT)], alert(After::Nothing)),
            (&[Event::Data(RECORD_ALERT), Event::IcmpError], alert(After::IcmpError)),
            (&[Event::Data(RECORD_ALERT), Event::Data(RECORD_HANDSHAKE)], alert(After::Reply)),
            (&[Event::Data(RECORD_ALERT), Event::Eof], alert(After::Nothing)),
            (&[Event::Data(RECORD_HANDSHAKE), Event::IcmpError], Seen::Reply),
        ];
        for (events, expected) in table {
            assert_eq!(fold(events), *expected, "{events:?}");
        }
    }

    /// A loopback server that answers the first read with `answer` (None: stays silent; empty:
    /// resets).
    async fn server(answer: Option<&'static [u8]>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 512];
            let _ = conn.read(&mut buf).await;
            match answer {
                Some([]) => conn.set_zero_linger().expect("linger"),
                Some(bytes) => {
                    conn.write_all(bytes).await.expect("answer");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                None => tokio::time::sleep(Duration::from_secs(5)).await,
            }
        });
        addr
    }

    const HELLO: &[u8] = &[RECORD_HANDSHAKE, 3, 1, 0, 1, 1];
    const WAIT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn on_loopback_a_low_ttl_still_reaches_the_server_and_answers_are_read() {
        // TTL 1 is enough on loopback: nothing forwards, so nothing decrements it.
        let reply = tcp_attempt(server(Some(&[RECORD_HANDSHAKE, 3, 3, 0, 0])).await, HELLO, 1, WAIT).await;
        assert_eq!(reply.expect("attempt"), Seen::Reply);
        let alert = tcp_attempt(server(Some(&[RECORD_ALERT, 3, 3, 0, 2, 2, 40])).await, HELLO, 1, WAIT).await;
        assert_eq!(alert.expect("attempt"), Seen::Injected { kind: Injection::Alert, after: After::Nothing });
        let reset = tcp_attempt(server(Some(&[])).await, HELLO, 1, WAIT).await;
        assert_eq!(reset.expect("attempt"), Seen::Injected { kind: Injection::Reset, after: After::Unobservable });
        let silent = tcp_attempt(server(None).await, HELLO, 1, WAIT).await;
        assert_eq!(silent.expect("attempt"), Seen::Nothing);
    }
}
