//! One query over UDP to a chosen resolver, recording every reply for a while after the first.
//!
//! Why it is shaped like this:
//! - An on-path injector answers faster than the resolver, so the first reply may be forged and
//!   the genuine one arrives later; we keep listening `linger` after the first reply (tq-002).
//! - A lossy link must not look like blocking, so silence is met with up to two resends. Each resend
//!   uses a fresh socket (new source port: ECMP may have broken one 5-tuple, tq-007) and a fresh id,
//!   and only replies to the attempt that answered first are recorded: two answers from two
//!   queries are not injection, even when a load-balanced resolver rotates its addresses.
//! - Sockets are connected, so the kernel drops datagrams from any other source, and an ICMP
//!   port-unreachable surfaces as `connection_refused` (a host that runs no DNS).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use vantage_measurement::{Detail, DnsDetail, DnsEngine, DnsReply, Failure, Observation, Operation, RawCode, Role};

use super::codec::{self, DnsCodecError};
use super::{QueryType, dns_failure, reply_outcome};
use crate::runner::connected_udp;
use crate::runner::{StepContext, io_failure, ms, timeout_failure};

/// At most this many replies to one query are recorded (a flood must not grow the measurement).
pub const MAX_REPLIES: usize = 16;
/// Receive buffer: larger than any EDNS payload we advertise.
pub const MAX_DATAGRAM_BYTES: usize = 4096;
/// Queries sent at most (the first plus two resends).
const MAX_ATTEMPTS: usize = 3;
/// Datagrams looked at per lookup, ours or not, before giving up on the noise.
const MAX_DATAGRAMS: usize = 256;

/// Ask `resolver` for `name` over UDP and record every reply that arrives within `linger` after the
/// first one (the design uses about 2 s).
///
/// The observation's failure follows the first reply (NXDOMAIN → `dns_nxdomain_error`, SERVFAIL,
/// REFUSED, no address → `dns_no_answer`); with no reply it is `generic_timeout_error`, or
/// `dns_reply_with_wrong_query_id` / `dns_server_misbehaving` when only foreign or malformed
/// datagrams came. Waits at most `ctx.timeout` for the first reply, then `linger`.
pub async fn udp_lookup(
    ctx: &StepContext,
    role: Role,
    resolver: SocketAddr,
    name: &str,
    qtype: QueryType,
    linger: Duration,
) -> Observation {
    let step = ctx.step(Operation::Resolve, role).peer(resolver);
    let mut detail = DnsDetail {
        engine: DnsEngine::Udp,
        resolver: Some(resolver.to_string()),
        query_name: name.to_string(),
        query_type: qtype.as_str().to_string(),
        replies: Vec::new(),
    };
    let outcome = exchange(ctx.timeout, resolver, name, qtype, linger, &mut detail.replies).await;
    step.finish(outcome, Some(Detail::Dns(detail)))
}

/// One datagram (or receive error) from attempt `attempt`.
struct Datagram {
    attempt: usize,
    at: Instant,
    bytes: std::io::Result<Vec<u8>>,
}

/// The query/listen loop. Fills `replies` and returns the step outcome.
async fn exchange(
    timeout: Duration,
    resolver: SocketAddr,
    name: &str,
    qtype: QueryType,
    linger: Duration,
    replies: &mut Vec<DnsReply>,
) -> Result<(), (Failure, RawCode)> {
    let (tx, mut rx) = mpsc::channel::<Datagram>(32);
    // Listener tasks are aborted when `listeners` drops, on every return path.
    let mut listeners = JoinSet::new();
    let mut tally = Tally::default();

    let sent_at = Instant::now();
    let deadline = sent_at + timeout;
    let resend_every = timeout / MAX_ATTEMPTS as u32;
    let mut next_resend = sent_at + resend_every;
    send_attempt(resolver, name, qtype, &mut tally.attempts, &mut listeners, &tx).await?;

    loop {
        let wake = match tally.answered {
            Some((_, first_at)) => first_at + linger,
            None if tally.attempts.len() < MAX_ATTEMPTS => next_resend.min(deadline),
            None => deadline,
        };
        let datagram = match tokio::time::timeout_at(wake, rx.recv()).await {
            Ok(Some(d)) => d,
            // Can't happen while `tx` lives here; ends the loop rather than spin if it ever does.
            Ok(None) => break,
            Err(_) if tally.answered.is_some() || Instant::now() >= deadline => break,
            Err(_) => {
                // Silence for a third of the timeout: resend rather than call it blocking.
                send_attempt(resolver, name, qtype, &mut tally.attempts, &mut listeners, &tx).await?;
                next_resend += resend_every;
                continue;
            }
        };
        if tally.take(datagram, name, qtype, replies)? == Listen::Stop {
            break;
        }
    }
    tally.outcome(timeout)
}

/// What the datagrams of one lookup amounted to so far.
#[derive(Default)]
struct Tally {
    /// Per attempt: its query id and when it was sent.
    attempts: Vec<(u16, Instant)>,
    /// Which attempt answered first, and when (the linger window runs from there).
    answered: Option<(usize, Instant)>,
    /// The step outcome the first reply decided.
    first_outcome: Option<Result<(), (Failure, RawCode)>>,
    /// Replies that answer something else (wrong id or question, or another attempt).
    foreign: usize,
    /// Datagrams that are no DNS message.
    malformed: usize,
    /// Datagrams seen at all.
    seen: usize,
}

/// Whether to keep listening.
#[derive(Debug, PartialEq, Eq)]
enum Listen {
    On,
    Stop,
}

impl Tally {
    /// Judge one datagram: record a reply to our query in `replies`, count the rest. A receive
    /// error before any reply (ICMP refused, unreachable) is the step's answer.
    fn take(
        &mut self,
        datagram: Datagram,
        name: &str,
        qtype: QueryType,
        replies: &mut Vec<DnsReply>,
    ) -> Result<Listen, (Failure, RawCode)> {
        self.seen += 1;
        if self.seen > MAX_DATAGRAMS {
            return Ok(Listen::Stop);
        }
        let bytes = match datagram.bytes {
            Ok(bytes) => bytes,
            Err(e) if self.answered.is_none() => return Err(io_failure(&e)),
            // After a reply, the linger is simply over for that socket.
            Err(_) => return Ok(Listen::On),
        };
        let Ok(parsed) = codec::parse_reply(&bytes) else {
            self.malformed += 1;
            return Ok(Listen::On);
        };
        let Some(&(our_id, query_sent)) = self.attempts.get(datagram.attempt) else { return Ok(Listen::On) };
        let attempt_ok = self.answered.is_none_or(|(a, _)| a == datagram.attempt);
        if !attempt_ok || !parsed.answers_query(our_id, name, qtype) {
            self.foreign += 1;
            return Ok(Listen::On);
        }
        if self.answered.is_none() {
            self.answered = Some((datagram.attempt, datagram.at));
            self.first_outcome = Some(reply_outcome(parsed.rcode, !parsed.answers.is_empty()));
        }
        replies.push(DnsReply {
            // From the query this reply answers (a resend, maybe), so latency stays honest.
            after_ms: ms(datagram.at.saturating_duration_since(query_sent)),
            rcode: parsed.rcode_name().to_string(),
            answers: parsed.answers,
            has_soa: parsed.has_soa,
            ip_ttl: None,
        });
        Ok(if replies.len() >= MAX_REPLIES { Listen::Stop } else { Listen::On })
    }

    /// The step's outcome once listening ended.
    fn outcome(self, timeout: Duration) -> Result<(), (Failure, RawCode)> {
        match self.first_outcome {
            Some(outcome) => outcome,
            None if self.foreign > 0 => Err((Failure::DnsReplyWithWrongQueryId, timeout_failure(timeout).1)),
            None if self.malformed > 0 => Err(dns_failure(Failure::DnsServerMisbehaving, "malformed_reply")),
            None => Err(timeout_failure(timeout)),
        }
    }
}

/// Open a fresh socket, send the query with a fresh random id, and listen on it in a task.
async fn send_attempt(
    resolver: SocketAddr,
    name: &str,
    qtype: QueryType,
    attempts: &mut Vec<(u16, Instant)>,
    listeners: &mut JoinSet<()>,
    tx: &mpsc::Sender<Datagram>,
) -> Result<(), (Failure, RawCode)> {
    let id: u16 = rand::random();
    let query = codec::build_query(id, name, qtype).map_err(|e| match e {
        // Our input, not the network, is at fault: no OONI string fits.
        DnsCodecError::InvalidName(_) => dns_failure(Failure::UnknownFailure, "invalid_query_name"),
        _ => dns_failure(Failure::UnknownFailure, "query_encoding_failed"),
    })?;
    // A fresh ephemeral port per attempt: the kernel picks a random one.
    let socket = connected_udp(resolver).await?;
    socket.send(&query).await.map_err(|e| io_failure(&e))?;
    let attempt = attempts.len();
    attempts.push((id, Instant::now()));
    let tx = tx.clone();
    listeners.spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];
        loop {
            let bytes = socket.recv(&mut buf).await.map(|n| buf[..n].to_vec());
            let stop = bytes.is_err();
            let datagram = Datagram { attempt, at: Instant::now(), bytes };
            if tx.send(datagram).await.is_err() || stop {
                return;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_server::{Behaviour, TestServer};
    use super::*;
    use vantage_measurement::{CodeSpace, Vantage};

    fn ctx(timeout_ms: u64) -> StepContext {
        StepContext::new(Vantage::Probe, Duration::from_millis(timeout_ms))
    }

    fn replies(obs: &Observation) -> &[DnsReply] {
        match &obs.detail {
            Some(Detail::Dns(d)) => &d.replies,
            other => panic!("no dns detail: {other:?}"),
        }
    }

    fn ips(reply: &DnsReply) -> Vec<String> {
        reply.answers.iter().map(|a| a.ip.to_string()).collect()
    }

    const LINGER: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn a_normal_answer_is_one_reply_with_addresses() {
        let server = TestServer::spawn(Behaviour::answer(&["192.0.2.10"])).await;
        let obs = udp_lookup(&ctx(2000), Role::Target, server.addr, "example.com", QueryType::A, LINGER).await;
        assert!(obs.succeeded(), "{obs:?}");
        assert_eq!(obs.peer, Some(server.addr));
        let Some(Detail::Dns(d)) = &obs.detail else { panic!("detail") };
        assert_eq!((d.engine, d.query_type.as_str()), (DnsEngine::Udp, "A"));
        assert_eq!(d.resolver.as_deref(), Some(server.addr.to_string().as_str()));
        assert_eq!(d.replies.len(), 1);
        assert_eq!(ips(&d.replies[0]), ["192.0.2.10"]);
        assert_eq!(d.replies[0].answers[0].ttl, 300);
    }

    #[tokio::test]
    async fn an_injected_reply_and_the_real_one_are_both_recorded_in_order() {
        let server = TestServer::spawn(Behaviour::Injected {
            forged: "10.10.34.34".parse().expect("ip"),
            real: "192.0.2.10".parse().expect("ip"),
            gap: Duration::from_millis(50),
        })
        .await;
        let obs = udp_lookup(&ctx(2000), Role::Target, server.addr, "example.com", QueryType::A, LINGER).await;
        // The outcome follows the first (forged) reply, which does resolve.
        assert!(obs.succeeded(), "{obs:?}");
        let r = replies(&obs);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(ips(&r[0]), ["10.10.34.34"]);
        assert_eq!(ips(&r[1]), ["192.0.2.10"]);
        assert!(r[0].after_ms <= r[1].after_ms);
    }

    #[tokio::test]
    async fn nxdomain_is_a_failure_with_the_rcode_and_soa_flag() {
        let server = TestServer::spawn(Behaviour::Rcode { rcode: 3, soa: true }).await;
        let obs = udp_lookup(&ctx(2000), Role::Target, server.addr, "nope.example", QueryType::A, LINGER).await;
        assert_eq!(obs.failure, Some(Failure::DnsNxdomainError));
        let raw = obs.raw.clone().expect("raw");
        assert_eq!((raw.space, raw.code, raw.name.as_deref()), (CodeSpace::DnsRcode, Some(3), Some("NXDOMAIN")));
        let r = replies(&obs);
        assert_eq!((r.len(), r[0].rcode.as_str(), r[0].has_soa), (1, "NXDOMAIN", true));
    }

    #[tokio::test]
    async fn servfail_and_empty_answers_map_to_their_failures() {
        let server = TestServer::spawn(Behaviour::Rcode { rcode: 2, soa: false }).await;
        let obs = udp_lookup(&ctx(2000), Role::Target, server.addr, "example.com", QueryType::A, LINGER).await;
        assert_eq!(obs.failure, Some(Failure::DnsServfailError));

        let server = TestServer::spawn(Behaviour::answer(&["192.0.2.10"])).await;
        let obs = udp_lookup(&ctx(2000), Role::Target, server.addr, "example.com", QueryType::Aaaa, LINGER).await;
        assert_eq!(obs.failure, Some(Failure::DnsNoAnswer), "no AAAA configured");
        assert_eq!(replies(&obs)[0].rcode, "NOERROR");
    }

    #[tokio::test]
    async fn silence_is_a_timeout_after_two_resends() {
        let server = TestServer::spawn(Behaviour::Silence).await;
        let obs = udp_lookup(&ctx(600), Role::Target, server.addr, "example.com", QueryType::A, LINGER).await;
        assert_eq!(obs.failure, Some(Failure::GenericTimeoutError));
        assert_eq!(obs.raw.as_ref().map(|r| r.space), Some(CodeSpace::Timeout));
        assert!(replies(&obs).is_empty());
        assert_eq!(server.queries(), 3, "the first query and two resends");
    }

    #[tokio::test]
    async fn a_lost_first_query_is_recovered_by_a_resend() {
        let server = TestServer::spawn(Behaviour::DropFirst { drop: 1, ips: vec!["192.0.2.10".parse().expect("ip")] }).await;
        let obs = udp_lookup(&ctx(900), Role::Target, server.addr, "example.com", QueryType::A, LINGER).await;
        assert!(obs.succeeded(), "{obs:?}");
        assert_eq!(replies(&obs).len(), 1);
        assert!(server.queries() >= 2);
    }

    #[tokio::test]
    async fn replies_with_the_wrong_id_are_skipped_and_named_when_alone() {
        let server = TestServer::spawn(Behaviour::WrongId).await;
        let obs = udp_lookup(&ctx(600), Role::Target, server.addr, "example.com", QueryType::A, LINGER).await;
        assert_eq!(obs.failure, Some(Failure::DnsReplyWithWrongQueryId));
        assert!(replies(&obs).is_empty());
    }

    #[tokio::test]
    async fn datagrams_from_another_source_are_ignored() {
        let server = TestServer::spawn(Behaviour::OtherSourceFirst { ip: "192.0.2.10".parse().expect("ip") }).await;
        let obs = udp_lookup(&ctx(2000), Role::Target, server.addr, "example.com", QueryType::A, LINGER).await;
        assert!(obs.succeeded(), "{obs:?}");
        let r = replies(&obs);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(ips(&r[0]), ["192.0.2.10"]);
    }

    #[tokio::test]
    async fn a_flood_of_replies_is_capped() {
        let server = TestServer::spawn(Behaviour::Flood { copies: 40 }).await;
        let obs = udp_lookup(&ctx(2000), Role::Target, server.addr, "example.com", QueryType::A, LINGER).await;
        assert_eq!(replies(&obs).len(), MAX_REPLIES);
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_without_waiting_for_the_timeout() {
        let addr = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.local_addr().expect("addr")
        };
        let obs = udp_lookup(&ctx(5000), Role::Target, addr, "example.com", QueryType::A, LINGER).await;
        assert_eq!(obs.failure, Some(Failure::ConnectionRefused), "{obs:?}");
    }

    #[tokio::test]
    async fn an_invalid_name_is_a_failure_not_a_panic() {
        let server = TestServer::spawn(Behaviour::Silence).await;
        let bad = format!("{}.com", "a".repeat(64));
        let obs = udp_lookup(&ctx(500), Role::Target, server.addr, &bad, QueryType::A, LINGER).await;
        assert_eq!(obs.failure, Some(Failure::UnknownFailure));
        assert_eq!(obs.raw.and_then(|r| r.name).as_deref(), Some("invalid_query_name"));
        assert_eq!(server.queries(), 0);
    }
}
