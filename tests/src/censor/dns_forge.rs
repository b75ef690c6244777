//! The pure half of the DNS injector: recognise a query for a listed name in a sniffed frame
//! and forge the reply an on-path injector would race against the real one.
//!
//! The forged reply copies the query's id and question bytes verbatim (so 0x20 case mixing
//! survives, as it does with real injectors), sets RD and RA, and carries either one A record
//! with a fixed RR TTL of 300 or an NXDOMAIN *without* an SOA in the authority section. Both
//! are fingerprints the probe can learn to see: a genuine NXDOMAIN carries the zone's SOA.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::NameList;
use super::packet::{FORGED_TTL, UdpSpec, build_udp_frame, parse_udp_frame};

/// RR TTL of forged A records.
pub const FORGED_RR_TTL: u32 = 300;
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const RCODE_NXDOMAIN: u8 = 3;

/// Why a DNS message is not a query we would answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Shorter than its header or question.
    #[error("truncated DNS message")]
    Truncated,
    /// A response, or an opcode other than QUERY.
    #[error("not a standard query")]
    NotQuery,
    /// Not exactly one question, or records in the answer or authority sections.
    #[error("unexpected section counts")]
    Counts,
    /// A compression pointer, an over-long label or name, or a label with a dot or
    /// non-printable bytes (which would make text matching ambiguous).
    #[error("unusable QNAME")]
    BadName,
}

/// A standard query with one question, borrowed from the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsQuery<'a> {
    /// Transaction id.
    pub id: u16,
    /// QNAME in dotted form as sent (case preserved), without the trailing dot.
    pub name: String,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
    /// The question section exactly as sent.
    question: &'a [u8],
}

/// Parse a DNS query. Additional records (EDNS) are allowed and ignored.
pub fn parse_query(msg: &[u8]) -> Result<DnsQuery<'_>, DnsError> {
    let header = msg.get(..12).ok_or(DnsError::Truncated)?;
    let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    if header[2] & 0x80 != 0 || (header[2] >> 3) & 0x0f != 0 {
        return Err(DnsError::NotQuery);
    }
    if count(4) != 1 || count(6) != 0 || count(8) != 0 {
        return Err(DnsError::Counts);
    }
    let mut pos = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = usize::from(*msg.get(pos).ok_or(DnsError::Truncated)?);
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return Err(DnsError::BadName); // also catches 0xc0 compression pointers
        }
        let label = msg.get(pos..pos + len).ok_or(DnsError::Truncated)?;
        if !label.iter().all(|b| b.is_ascii_graphic() && *b != b'.') {
            return Err(DnsError::BadName);
        }
        labels.push(label.iter().map(|&b| char::from(b)).collect());
        pos += len;
        if pos - 12 > 255 {
            return Err(DnsError::BadName);
        }
    }
    let fixed = msg.get(pos..pos + 4).ok_or(DnsError::Truncated)?;
    Ok(DnsQuery {
        id: count(0),
        name: labels.join("."),
        qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
        qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
        question: &msg[12..pos + 4],
    })
}

/// What the injector answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgedAnswer {
    /// An A record with this address for A queries; an empty NOERROR for any other type.
    A(Ipv4Addr),
    /// NXDOMAIN with no SOA, whatever the type.
    NxDomain,
}

impl std::str::FromStr for ForgedAnswer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("nxdomain") {
            return Ok(ForgedAnswer::NxDomain);
        }
        s.parse().map(ForgedAnswer::A).map_err(|_| format!("`{s}` is neither an IPv4 address nor `nxdomain`"))
    }
}

/// The DNS message an injector sends in reply to `query`.
pub fn forge_reply(query: &DnsQuery<'_>, answer: ForgedAnswer) -> Vec<u8> {
    let (rcode, a) = match answer {
        ForgedAnswer::NxDomain => (RCODE_NXDOMAIN, None),
        ForgedAnswer::A(ip) => (0, Some(ip).filter(|_| query.qtype == TYPE_A && query.qclass == CLASS_IN)),
    };
    let mut m = Vec::with_capacity(12 + query.question.len() + 16);
    m.extend_from_slice(&query.id.to_be_bytes());
    m.push(0x80 | 0x01); // QR, opcode QUERY, RD
    m.push(0x80 | rcode); // RA
    m.extend_from_slice(&[0, 1, 0, u8::from(a.is_some()), 0, 0, 0, 0]);
    m.extend_from_slice(query.question);
    if let Some(ip) = a {
        m.extend_from_slice(&[0xc0, 0x0c]); // pointer to the QNAME at offset 12
        m.extend_from_slice(&TYPE_A.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m.extend_from_slice(&FORGED_RR_TTL.to_be_bytes());
        m.extend_from_slice(&4u16.to_be_bytes());
        m.extend_from_slice(&ip.octets());
    }
    m
}

/// The injector's policy: which names, and what to answer.
#[derive(Debug, Clone)]
pub struct Injector {
    /// Names whose queries get a forged reply.
    pub names: NameList,
    /// The forged answer.
    pub answer: ForgedAnswer,
}

/// A forged reply, ready to send, and what it answers (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forged {
    /// The Ethernet frame to transmit.
    pub frame: Vec<u8>,
    /// The queried name.
    pub name: String,
    /// Who asked.
    pub client: SocketAddrV4,
    /// Whom they asked (the reply's spoofed source).
    pub server: Ipv4Addr,
}

impl Injector {
    /// The forged reply to `frame`, if it is an IPv4 UDP query to port 53 for a listed name.
    /// The reply goes back the way the query came: MACs swapped, from the queried server's
    /// address and port 53 to the client's address and port.
    pub fn forge(&self, frame: &[u8], ip_id: u16) -> Option<Forged> {
        let query_frame = parse_udp_frame(frame).ok()?;
        let udp = &query_frame.udp;
        if udp.dst_port != 53 {
            return None;
        }
        let query = parse_query(udp.payload).ok()?;
        if query.qclass != CLASS_IN || !self.names.matches(&query.name) {
            return None;
        }
        let spec = UdpSpec { src: udp.dst, dst: udp.src, src_port: 53, dst_port: udp.src_port, ip_id, ttl: FORGED_TTL };
        let frame = build_udp_frame(query_frame.src_mac, query_frame.dst_mac, &spec, &forge_reply(&query, self.answer))?;
        Some(Forged { frame, name: query.name, client: SocketAddrV4::new(udp.src, udp.src_port), server: udp.dst })
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RData, RecordType};

    use super::*;
    use crate::censor::packet::{checksums_ok, parse_udp_frame};

    const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
    const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xbb];

    fn query_bytes(name: &str, rtype: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0xbeef;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
        m.to_vec().expect("encodes")
    }

    fn query_frame(name: &str, rtype: RecordType, dst_port: u16) -> Vec<u8> {
        let spec = UdpSpec {
            src: Ipv4Addr::new(198, 51, 100, 2),
            dst: Ipv4Addr::new(203, 0, 113, 2),
            src_port: 40123,
            dst_port,
            ip_id: 7,
            ttl: 64,
        };
        build_udp_frame(ROUTER_MAC, CLIENT_MAC, &spec, &query_bytes(name, rtype)).expect("fits")
    }

    fn injector(answer: ForgedAnswer) -> Injector {
        Injector { names: NameList::new(["blocked.example"]), answer }
    }

    #[test]
    fn parses_a_query_keeping_the_case_as_sent() {
        let bytes = query_bytes("WwW.Blocked.Example.", RecordType::AAAA);
        let q = parse_query(&bytes).expect("query");
        assert_eq!((q.id, q.name.as_str(), q.qtype, q.qclass), (0xbeef, "WwW.Blocked.Example", 28, 1));
    }

    #[test]
    fn forges_an_a_answer_back_to_the_client_with_valid_checksums() {
        let forged = injector(ForgedAnswer::A(Ipv4Addr::new(192, 0, 2, 66)))
            .forge(&query_frame("www.blocked.example.", RecordType::A, 53), 0x4242)
            .expect("forged");
        assert_eq!(forged.client, "198.51.100.2:40123".parse().expect("addr"));
        assert_eq!(forged.server, Ipv4Addr::new(203, 0, 113, 2));
        let f = parse_udp_frame(&forged.frame).expect("frame");
        assert_eq!((f.dst_mac, f.src_mac), (CLIENT_MAC, ROUTER_MAC));
        assert_eq!((f.udp.src, f.udp.dst), (Ipv4Addr::new(203, 0, 113, 2), Ipv4Addr::new(198, 51, 100, 2)));
        assert_eq!((f.udp.src_port, f.udp.dst_port, f.udp.ttl), (53, 40123, 64));
        assert!(checksums_ok(&forged.frame[14..]));
        assert_eq!(u16::from_be_bytes([forged.frame[18], forged.frame[19]]), 0x4242, "IP id");

        let reply = Message::from_vec(f.udp.payload).expect("valid DNS");
        assert_eq!(reply.metadata.id, 0xbeef);
        assert!(reply.metadata.recursion_desired && reply.metadata.recursion_available);
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.queries.len(), 1);
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(reply.answers[0].ttl, FORGED_RR_TTL);
        assert_eq!(reply.answers[0].data, RData::A(Ipv4Addr::new(192, 0, 2, 66).into()));
        assert_eq!(reply.answers[0].name, Name::from_ascii("www.blocked.example.").expect("name"));
    }

    #[test]
    fn aaaa_gets_an_empty_noerror() {
        let forged = injector(ForgedAnswer::A(Ipv4Addr::new(192, 0, 2, 66)))
            .forge(&query_frame("blocked.example.", RecordType::AAAA, 53), 1)
            .expect("forged");
        let f = parse_udp_frame(&forged.frame).expect("frame");
        let reply = Message::from_vec(f.udp.payload).expect("valid DNS");
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.answers.is_empty() && reply.authorities.is_empty());
    }

    #[test]
    fn nxdomain_has_no_soa() {
        let forged =
            injector(ForgedAnswer::NxDomain).forge(&query_frame("blocked.example.", RecordType::A, 53), 1).expect("forged");
        let f = parse_udp_frame(&forged.frame).expect("frame");
        let reply = Message::from_vec(f.udp.payload).expect("valid DNS");
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        assert!(reply.answers.is_empty() && reply.authorities.is_empty() && reply.additionals.is_empty());
    }

    #[test]
    fn unlisted_names_other_ports_and_responses_are_left_alone() {
        let inj = injector(ForgedAnswer::NxDomain);
        assert!(inj.forge(&query_frame("example.org.", RecordType::A, 53), 1).is_none());
        assert!(inj.forge(&query_frame("notblocked.example.", RecordType::A, 53), 1).is_none());
        assert!(inj.forge(&query_frame("blocked.example.", RecordType::A, 5353), 1).is_none());
        let forged = inj.forge(&query_frame("blocked.example.", RecordType::A, 53), 1).expect("forged");
        assert!(inj.forge(&forged.frame, 1).is_none(), "never answers its own reply");
    }

    #[test]
    fn names_that_would_make_matching_ambiguous_are_refused() {
        let mut bytes = query_bytes("blocked.example.", RecordType::A);
        // Turn the first label length into a pointer.
        bytes[12] = 0xc0;
        assert_eq!(parse_query(&bytes), Err(DnsError::BadName));
        // One label "blocked.example" (a dot inside a label).
        let mut dotted = query_bytes("blockedxexample.", RecordType::A);
        dotted[12 + 1 + 7] = b'.';
        assert_eq!(parse_query(&dotted), Err(DnsError::BadName));
    }

    #[test]
    fn the_answer_flag_parses() {
        assert_eq!("NXDOMAIN".parse::<ForgedAnswer>(), Ok(ForgedAnswer::NxDomain));
        assert_eq!("192.0.2.1".parse::<ForgedAnswer>(), Ok(ForgedAnswer::A(Ipv4Addr::new(192, 0, 2, 1))));
        assert!("example.org".parse::<ForgedAnswer>().is_err());
    }

    #[test]
    fn truncations_mutations_and_noise_never_panic() {
        let inj = injector(ForgedAnswer::A(Ipv4Addr::new(192, 0, 2, 66)));
        let frame = query_frame("blocked.example.", RecordType::A, 53);
        for len in 0..frame.len() {
            assert!(inj.forge(&frame[..len], 1).is_none(), "truncated to {len}");
        }
        let query = query_bytes("blocked.example.", RecordType::A);
        let mut seed = 0x1234_5678;
        for _ in 0..5000 {
            let noise = crate::censor::noise(&mut seed, 64);
            let _ = parse_query(&noise);
            let _ = inj.forge(&noise, 1);
            let mut mutated = query.clone();
            for pair in noise.chunks(2).take(3) {
                if let [pos, value] = pair {
                    let i = usize::from(*pos) % mutated.len();
                    mutated[i] = *value;
                }
            }
            if let Ok(q) = parse_query(&mutated) {
                let _ = forge_reply(&q, inj.answer);
            }
        }
    }
}
