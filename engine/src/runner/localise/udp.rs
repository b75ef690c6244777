//! The TTL-limited repeat of a DNS query over UDP (Linux and Android), for
//! [`crate::classify::localise`].
//!
//! One attempt = one fresh UDP socket, connected to an address that runs no DNS (the probe's
//! `dns_blackhole`), its TTL (IPv6 hop limit) set to `ttl` and `IP_RECVERR` on. The query for the
//! blocked name goes out once; then the socket's replies and its **error queue** are read until
//! the wait ends, or until `linger` after the first answer or ICMP error: an on-path injector's
//! answer races the ICMP error the original query draws further on, in either order.
//!
//! What comes back, on UDP (unlike TCP, the error queue works here: `recvmsg(MSG_ERRQUEUE)` yields
//! a `sock_extended_err` with origin, ICMP type and code, and the offender's address):
//! - a DNS answer to our query: injected, since nothing at the destination answers DNS;
//! - ICMP Time Exceeded (v4 type 11, v6 type 3): the query died at hop `ttl`;
//! - ICMP port unreachable (v4 3/3, v6 1/4): the destination itself said no, i.e. the query
//!   reached the server's hop ([`Seen::Reply`]);
//! - any other ICMP error (host unreachable, admin prohibited): counted as an ICMP error, as TCP
//!   must (it can't tell them apart), and its type/code kept in [`DnsAttempt::icmp`].
//!
//! The offender's address is matched away with `_` where the control message is read: it is
//! never bound, stored or logged (the first hops are the volunteer's own network).

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};

use crate::classify::localise::{After, Injection, Seen};
use crate::runner::dns::QueryType;
use crate::runner::dns::codec;

/// `SO_EE_ORIGIN_ICMP` and `SO_EE_ORIGIN_ICMP6` (linux/errqueue.h): the error came in an ICMP
/// message; other origins (local errors, timestamps) are not about the path.
const ORIGIN_ICMP: u8 = 2;
const ORIGIN_ICMP6: u8 = 3;

/// One ICMP error for our query, as the path showed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Icmp {
    /// The TTL ran out at the hop we aimed at.
    TimeExceeded,
    /// The destination has no DNS service: the query reached it.
    PortUnreachable,
    /// Any other error (host or network unreachable, administratively prohibited), with its ICMP
    /// type and code.
    Other(u8, u8),
}

impl Icmp {
    /// Read an extended error's origin, type and code (`None`: not from ICMP).
    pub fn from_extended(origin: u8, kind: u8, code: u8) -> Option<Icmp> {
        match (origin, kind, code) {
            (ORIGIN_ICMP, 11, _) | (ORIGIN_ICMP6, 3, _) => Some(Icmp::TimeExceeded),
            (ORIGIN_ICMP, 3, 3) | (ORIGIN_ICMP6, 1, 4) => Some(Icmp::PortUnreachable),
            (ORIGIN_ICMP | ORIGIN_ICMP6, kind, code) => Some(Icmp::Other(kind, code)),
            _ => None,
        }
    }

    fn seen(self) -> Seen {
        match self {
            Icmp::PortUnreachable => Seen::Reply,
            Icmp::TimeExceeded | Icmp::Other(..) => Seen::IcmpError,
        }
    }
}

/// One thing the socket said after the query went out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A DNS answer to our query (any answer: the destination runs no DNS).
    Answer,
    /// An ICMP error for our query.
    Icmp(Icmp),
}

/// What one DNS attempt drew. Order doesn't matter: an on-path injector's answer races the
/// Time Exceeded (or port unreachable) of the original query it let through, and a userspace
/// injector often loses to the kernel of the router behind it; both mean "injected, and the query
/// went on".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsAttempt {
    answered: bool,
    first_icmp: Option<Icmp>,
    /// The first ICMP error's type and code when it was neither Time Exceeded nor port
    /// unreachable (a rejecting filter shows here; the classifier counts it as an ICMP error).
    pub icmp: Option<(u8, u8)>,
}

impl DnsAttempt {
    /// Take one event; returns whether more can be learnt from this socket.
    pub fn push(&mut self, event: Event) -> bool {
        match event {
            // More answers (Triplet Censors send up to three) say nothing new.
            Event::Answer => self.answered = true,
            Event::Icmp(icmp) => {
                if let Icmp::Other(kind, code) = icmp {
                    self.icmp.get_or_insert((kind, code));
                }
                self.first_icmp.get_or_insert(icmp);
            }
        }
        !(self.answered && self.first_icmp.is_some())
    }

    /// Whether anything came back yet.
    pub fn any(&self) -> bool {
        self.answered || self.first_icmp.is_some()
    }

    /// What the attempt drew, for the classifier.
    pub fn seen(&self) -> Seen {
        match (self.answered, self.first_icmp.map(Icmp::seen)) {
            (true, None) => Seen::Injected { kind: Injection::DnsAnswer, after: After::Nothing },
            (true, Some(Seen::Reply)) => Seen::Injected { kind: Injection::DnsAnswer, after: After::Reply },
            (true, Some(_)) => Seen::Injected { kind: Injection::DnsAnswer, after: After::IcmpError },
            (false, Some(seen)) => seen,
            (false, None) => Seen::Nothing,
        }
    }
}

/// Send a query for `name` to `addr` (a host that runs no DNS) with the TTL set to `ttl`, and
/// report what it drew within `wait`, listening `linger` past the first answer or ICMP error. An error means the
/// attempt could not run (the socket refused the options, the name can't be encoded); it is not
/// an observation.
pub async fn dns_attempt(addr: SocketAddr, name: &str, ttl: u8, wait: Duration, linger: Duration) -> io::Result<DnsAttempt> {
    let bind: SocketAddr = if addr.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(addr).await?;
    let hops = i32::from(ttl);
    let set = if addr.is_ipv4() {
        setsockopt(&socket, sockopt::Ipv4Ttl, &hops).and_then(|()| setsockopt(&socket, sockopt::Ipv4RecvErr, &true))
    } else {
        setsockopt(&socket, sockopt::Ipv6Ttl, &hops).and_then(|()| setsockopt(&socket, sockopt::Ipv6RecvErr, &true))
    };
    set.map_err(io::Error::from)?;
    let id: u16 = rand::random();
    let query =
        codec::build_query(id, name, QueryType::A).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    socket.send(&query).await?;
    let mut deadline = Instant::now() + wait;
    let mut attempt = DnsAttempt::default();
    let mut buf = [0u8; 4096];
    let mut more = true;
    while more {
        if timeout_at(deadline, socket.ready(Interest::READABLE | Interest::ERROR)).await.is_err() {
            break;
        }
        let mut progressed = false;
        // The error queue first: reading it also clears the pending error that `recv` would
        // otherwise return without type or code.
        while more {
            match socket.try_io(Interest::ERROR, || read_error_queue(&socket)) {
                Ok(icmp) => {
                    progressed = true;
                    if let Some(icmp) = icmp {
                        let first = !attempt.any();
                        more = attempt.push(Event::Icmp(icmp));
                        if first {
                            deadline = Instant::now() + linger;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        while more {
            match socket.try_recv(&mut buf) {
                Ok(len) => {
                    progressed = true;
                    let ours = codec::parse_reply(&buf[..len]).is_ok_and(|r| r.answers_query(id, name, QueryType::A));
                    if ours {
                        let first = !attempt.any();
                        more = attempt.push(Event::Answer);
                        if first {
                            deadline = Instant::now() + linger;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The pending error of an ICMP message whose detail is on the error queue.
                Err(_) => progressed = true,
            }
        }
        if !progressed {
            // Readiness without anything to read: don't spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(attempt)
}

/// One message from the error queue: the ICMP error it carries, if it came from ICMP. The
/// offender's address is never bound.
fn read_error_queue(socket: &UdpSocket) -> io::Result<Option<Icmp>> {
    let mut buf = [0u8; 512];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(nix::libc::sock_extended_err, nix::libc::sockaddr_in6);
    let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
    let msg = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), flags).map_err(io::Error::from)?;
    for control in msg.cmsgs().map_err(io::Error::from)? {
        let err = match control {
            ControlMessageOwned::Ipv4RecvErr(err, _) | ControlMessageOwned::Ipv6RecvErr(err, _) => err,
            _ => continue,
        };
        return Ok(Icmp::from_extended(err.ee_origin, err.ee_type, err.ee_code));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(events: &[Event]) -> DnsAttempt {
        let mut attempt = DnsAttempt::default();
        for event in events {
            if !attempt.push(*event) {
                break;
            }
        }
        attempt
    }

    #[test]
    fn extended_errors_map_to_what_the_path_showed() {
        let table = [
            ((ORIGIN_ICMP, 11, 0), Some(Icmp::TimeExceeded)),
            ((ORIGIN_ICMP6, 3, 0), Some(Icmp::TimeExceeded)),
            ((ORIGIN_ICMP, 3, 3), Some(Icmp::PortUnreachable)),
            ((ORIGIN_ICMP6, 1, 4), Some(Icmp::PortUnreachable)),
            ((ORIGIN_ICMP, 3, 13), Some(Icmp::Other(3, 13))),
            ((ORIGIN_ICMP, 3, 1), Some(Icmp::Other(3, 1))),
            // SO_EE_ORIGIN_LOCAL (1): e.g. a message too long for the route, not about the path.
            ((1, 0, 0), None),
        ];
        for ((origin, kind, code), expected) in table {
            assert_eq!(Icmp::from_extended(origin, kind, code), expected, "{origin}/{kind}/{code}");
        }
    }

    #[test]
    fn events_fold_into_what_the_classifier_reads() {
        let answer = |after| Seen::Injected { kind: Injection::DnsAnswer, after };
        let ex = Event::Icmp(Icmp::TimeExceeded);
        let port = Event::Icmp(Icmp::PortUnreachable);
        let table: &[(&[Event], Seen)] = &[
            (&[], Seen::Nothing),
            (&[ex], Seen::IcmpError),
            (&[port], Seen::Reply),
            (&[Event::Icmp(Icmp::Other(3, 13))], Seen::IcmpError),
            (&[Event::Answer], answer(After::Nothing)),
            (&[Event::Answer, Event::Answer], answer(After::Nothing)),
            (&[Event::Answer, ex], answer(After::IcmpError)),
            (&[Event::Answer, Event::Answer, port], answer(After::Reply)),
            // The injector's answer lost the race to the router's Time Exceeded: still injected.
            (&[ex, Event::Answer], answer(After::IcmpError)),
            (&[port, Event::Answer], answer(After::Reply)),
        ];
        for (events, expected) in table {
            assert_eq!(fold(events).seen(), *expected, "{events:?}");
        }
        assert_eq!(fold(&[Event::Icmp(Icmp::Other(3, 13))]).icmp, Some((3, 13)));
        assert_eq!(fold(&[ex]).icmp, None);
    }

    const WAIT: Duration = Duration::from_millis(500);

    #[tokio::test]
    async fn on_loopback_a_port_without_dns_reads_as_the_destination() {
        // Bind and drop to find a port nothing listens on; the kernel answers port unreachable,
        // read from the error queue (loopback never decrements the TTL, so TTL 1 arrives).
        let port = std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("port").port();
        let attempt = dns_attempt(SocketAddr::from(([127, 0, 0, 1], port)), "blocked.example", 1, WAIT, WAIT).await;
        assert_eq!(attempt.expect("attempt").seen(), Seen::Reply);
    }

    #[tokio::test]
    async fn on_loopback_an_answer_from_a_host_without_dns_reads_as_injected() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = server.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (len, from) = server.recv_from(&mut buf).await.expect("query");
            // Echo the query back with QR set and no answers: still an answer to our query.
            let mut reply = buf[..len].to_vec();
            reply[2] |= 0x80;
            server.send_to(&reply, from).await.expect("answer");
        });
        let attempt = dns_attempt(addr, "blocked.example", 1, WAIT, Duration::from_millis(200)).await;
        assert_eq!(attempt.expect("attempt").seen(), Seen::Injected { kind: Injection::DnsAnswer, after: After::Nothing });
    }
}
