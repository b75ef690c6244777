//! DNS wire codec: build a query, parse a reply. Pure: no sockets, no clock.
//!
//! The async runners ([`super::udp_lookup`], [`crate::control::DohClient`]) only move these bytes.
//! Replies come from hostile networks (injectors forge them), so parsing never panics: anything
//! hickory-proto can't decode becomes a [`DnsCodecError`], and the parsed form keeps only what the
//! measurement needs (id, rcode, addresses with TTLs, SOA presence, the question echoed back).

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use vantage_measurement::DnsAnswer;

use super::QueryType;

/// EDNS0 UDP payload size we advertise: the 2020 DNS flag day value, which avoids IP fragmentation.
pub const EDNS_PAYLOAD: u16 = 1232;

/// Why a query could not be built or a reply could not be read.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DnsCodecError {
    /// The name is not a valid DNS name (empty label, label over 63 bytes, …).
    #[error("`{0}` is not a valid DNS name")]
    InvalidName(String),
    /// hickory-proto refused to encode the query.
    #[error("could not encode the query: {0}")]
    Encode(String),
    /// The bytes are not a DNS message (truncated, bad label pointers, bad record data, …).
    #[error("malformed DNS message: {0}")]
    Malformed(String),
    /// The message is a query (QR bit clear), not a reply: a reflector, not a resolver.
    #[error("the message is a query, not a reply")]
    NotAReply,
}

/// What a reply said, reduced to what a measurement records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedReply {
    /// The reply's query id.
    pub id: u16,
    /// The full response code (header bits merged with the EDNS extension).
    pub rcode: u16,
    /// Every A and AAAA record of the answer section, in order. CNAMEs are not followed, their
    /// targets' addresses are simply collected: a resolver sends the chain with its addresses.
    pub answers: Vec<DnsAnswer>,
    /// Whether the authority section holds an SOA (genuine negative answers usually carry one).
    pub has_soa: bool,
    /// The TC bit: the resolver had more to say than fit in the datagram.
    pub truncated: bool,
    /// The first question echoed back, lower-case without the trailing dot, and its type.
    pub question: Option<(String, u16)>,
}

impl ParsedReply {
    /// The mnemonic of [`Self::rcode`] (`NOERROR`, `NXDOMAIN`, …).
    pub fn rcode_name(&self) -> &'static str {
        rcode_name(self.rcode)
    }

    /// Is this a reply to the query with `id` for `name`/`qtype`?
    ///
    /// The id must match. A reply without a question section is accepted (some injectors and
    /// minimal servers send none), but a question for another name or type is not ours.
    pub fn answers_query(&self, id: u16, name: &str, qtype: QueryType) -> bool {
        if self.id != id {
            return false;
        }
        match &self.question {
            None => true,
            Some((qname, qt)) => *qt == u16::from(record_type(qtype)) && Some(qname.as_str()) == normalise(name).as_deref(),
        }
    }
}

/// Build a recursive query (RD set) for `name`, advertising EDNS0 with [`EDNS_PAYLOAD`].
pub fn build_query(id: u16, name: &str, qtype: QueryType) -> Result<Vec<u8>, DnsCodecError> {
    build_query_with(id, name, qtype, Some(EDNS_PAYLOAD))
}

/// Build a recursive query; `edns_payload: None` sends a plain RFC 1035 query without an OPT record
/// (a few old middleboxes drop EDNS, and injectors may treat the two differently).
pub fn build_query_with(id: u16, name: &str, qtype: QueryType, edns_payload: Option<u16>) -> Result<Vec<u8>, DnsCodecError> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(to_name(name)?, record_type(qtype)));
    if let Some(payload) = edns_payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        msg.set_edns(edns);
    }
    msg.to_vec().map_err(|e| DnsCodecError::Encode(e.to_string()))
}

/// Parse a reply. Never panics, whatever the bytes.
pub fn parse_reply(bytes: &[u8]) -> Result<ParsedReply, DnsCodecError> {
    let msg = Message::from_vec(bytes).map_err(|e| DnsCodecError::Malformed(e.to_string()))?;
    if msg.metadata.message_type != MessageType::Response {
        return Err(DnsCodecError::NotAReply);
    }
    let answers = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(DnsAnswer { ip: IpAddr::V4(a.0), ttl: r.ttl }),
            RData::AAAA(a) => Some(DnsAnswer { ip: IpAddr::V6(a.0), ttl: r.ttl }),
            _ => None,
        })
        .collect();
    let has_soa = msg.authorities.iter().any(|r| r.record_type() == RecordType::SOA);
    let question = msg.queries.first().map(|q| (name_key(q.name()), u16::from(q.query_type())));
    Ok(ParsedReply {
        id: msg.metadata.id,
        rcode: u16::from(msg.metadata.response_code),
        answers,
        has_soa,
        truncated: msg.metadata.truncation,
        question,
    })
}

/// The mnemonic of a DNS response code (RFC 1035, 2136, 6891); `UNKNOWN` for unassigned codes.
pub fn rcode_name(rcode: u16) -> &'static str {
    // `ResponseCode::from` is hickory's (high, low) constructor; `into` is the u16 conversion.
    let code: ResponseCode = rcode.into();
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        ResponseCode::BADVERS | ResponseCode::BADSIG => "BADVERS",
        ResponseCode::BADKEY => "BADKEY",
        ResponseCode::BADTIME => "BADTIME",
        ResponseCode::BADMODE => "BADMODE",
        ResponseCode::BADNAME => "BADNAME",
        ResponseCode::BADALG => "BADALG",
        ResponseCode::BADTRUNC => "BADTRUNC",
        ResponseCode::BADCOOKIE => "BADCOOKIE",
        ResponseCode::Unknown(_) => "UNKNOWN",
    }
}

/// The record type asked for.
pub(crate) fn record_type(qtype: QueryType) -> RecordType {
    match qtype {
        QueryType::A => RecordType::A,
        QueryType::Aaaa => RecordType::AAAA,
    }
}

/// Parse a user-supplied name: ASCII as is, anything else through IDNA.
fn to_name(name: &str) -> Result<Name, DnsCodecError> {
    let parsed = if name.is_ascii() { Name::from_ascii(name) } else { Name::from_utf8(name) };
    let mut parsed = parsed.map_err(|_| DnsCodecError::InvalidName(name.to_string()))?;
    // On the wire every name is absolute; no search domains here.
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// Lower-case, no trailing dot: how names are compared (resolvers may randomise case, 0x20).
fn name_key(name: &Name) -> String {
    let mut s = name.to_ascii().to_ascii_lowercase();
    if s.len() > 1 && s.ends_with('.') {
        s.pop();
    }
    s
}

fn normalise(name: &str) -> Option<String> {
    to_name(name).ok().map(|n| name_key(&n))
}

/// Reply building for the in-test DNS servers of the runners and the DoH client.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::IpAddr;

    use hickory_proto::op::Message;
    use hickory_proto::rr::rdata::{A, AAAA, SOA};
    use hickory_proto::rr::{Name, RData, Record};

    /// A reply to `query` with `rcode`, `answers` (TTL 300) and optionally an SOA in authority.
    pub(crate) fn reply_to(query: &[u8], rcode: u16, answers: &[IpAddr], soa: bool) -> Vec<u8> {
        let query = Message::from_vec(query).expect("test query parses");
        let mut msg = Message::response(query.metadata.id, query.metadata.op_code);
        msg.metadata.recursion_desired = query.metadata.recursion_desired;
        msg.metadata.recursion_available = true;
        msg.metadata.response_code = rcode.into();
        let name = query.queries.first().map(|q| q.name().clone()).unwrap_or_default();
        msg.add_queries(query.queries.clone());
        for ip in answers {
            let data = match ip {
                IpAddr::V4(v4) => RData::A(A(*v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
            };
            msg.add_answer(Record::from_rdata(name.clone(), 300, data));
        }
        if soa {
            let zone = Name::from_ascii("example.").expect("static name");
            let data = SOA::new(zone.clone(), zone.clone(), 1, 3600, 600, 86400, 300);
            msg.add_authority(Record::from_rdata(zone, 300, RData::SOA(data)));
        }
        msg.to_vec().expect("test reply encodes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Header: id, flags, qd=1, an, ns=`ns`, ar=0.
    fn header(id: u16, flags: u16, an: u16, ns: u16) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [id, flags, 1, an, ns, 0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b
    }

    /// Question for example.com IN `qtype`, starting at offset 12 (so 0xc00c points to the name).
    fn question(qtype: u16) -> Vec<u8> {
        let mut b = b"\x07example\x03com\x00".to_vec();
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b
    }

    /// A record owned by the question name (compression pointer), type, ttl, rdata.
    fn rr(rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
        let mut b = vec![0xc0, 0x0c];
        b.extend_from_slice(&rtype.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&ttl.to_be_bytes());
        b.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        b.extend_from_slice(rdata);
        b
    }

    fn soa_rr() -> Vec<u8> {
        // mname = root, rname = root, then serial, refresh, retry, expire, minimum.
        let mut rdata = vec![0, 0];
        for v in [1u32, 3600, 600, 86400, 300] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        rr(6, 900, &rdata)
    }

    const QR_RD_RA: u16 = 0x8180;

    #[test]
    fn a_query_asks_recursively_for_the_name_with_edns() {
        let bytes = build_query(0x1234, "Example.com", QueryType::A).expect("build");
        assert_eq!(&bytes[0..2], &[0x12, 0x34]);
        assert_eq!(bytes[2] & 0x81, 0x01, "QR clear, RD set");
        assert_eq!(&bytes[4..6], &[0, 1], "one question");
        assert_eq!(&bytes[10..12], &[0, 1], "one additional: the OPT record");
        assert!(bytes.windows(8).any(|w| w.eq_ignore_ascii_case(b"\x07example")));
        let plain = build_query_with(1, "example.com", QueryType::Aaaa, None).expect("build");
        assert_eq!(&plain[10..12], &[0, 0], "no OPT without EDNS");
        assert_eq!(&plain[plain.len() - 4..], &[0, 28, 0, 1], "AAAA IN");
    }

    #[test]
    fn invalid_names_are_errors_not_panics() {
        let long_label = "a".repeat(64);
        for bad in [format!("{long_label}.com"), "a..b".to_string()] {
            assert!(matches!(build_query(1, &bad, QueryType::A), Err(DnsCodecError::InvalidName(_))), "{bad}");
        }
    }

    #[test]
    fn a_hand_built_reply_with_a_cname_chain_yields_every_address_and_ttl() {
        let mut b = header(0xbeef, QR_RD_RA, 3, 0);
        b.extend(question(1));
        b.extend(rr(5, 60, b"\x03www\xc0\x0c")); // CNAME www.example.com
        b.extend(rr(1, 300, &[93, 184, 216, 34]));
        b.extend(rr(28, 120, &Ipv6Addr::new(0x2606, 0x2800, 0, 0, 0, 0, 0, 1).octets()));
        let r = parse_reply(&b).expect("parse");
        assert_eq!(r.id, 0xbeef);
        assert_eq!(r.rcode_name(), "NOERROR");
        assert_eq!(
            r.answers,
            vec![
                DnsAnswer { ip: IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34)), ttl: 300 },
                DnsAnswer { ip: "2606:2800::1".parse().expect("ip"), ttl: 120 },
            ]
        );
        assert!(!r.has_soa);
        assert_eq!(r.question, Some(("example.com".to_string(), 1)));
        assert!(r.answers_query(0xbeef, "EXAMPLE.com.", QueryType::A));
        assert!(!r.answers_query(0xbeef, "example.com", QueryType::Aaaa), "other type");
        assert!(!r.answers_query(0xbeef, "example.org", QueryType::A), "other name");
    }

    #[test]
    fn a_reply_with_the_wrong_id_is_parsed_but_not_ours() {
        let mut b = header(7, QR_RD_RA, 1, 0);
        b.extend(question(1));
        b.extend(rr(1, 300, &[10, 10, 34, 34]));
        let r = parse_reply(&b).expect("parse");
        assert!(!r.answers_query(8, "example.com", QueryType::A));
        assert!(r.answers_query(7, "example.com", QueryType::A));
    }

    #[test]
    fn nxdomain_with_and_without_soa() {
        let mut genuine = header(1, QR_RD_RA | 3, 0, 1);
        genuine.extend(question(1));
        genuine.extend(soa_rr());
        let r = parse_reply(&genuine).expect("parse");
        assert_eq!((r.rcode, r.rcode_name(), r.has_soa), (3, "NXDOMAIN", true));
        assert!(r.answers.is_empty());

        let mut bare = header(1, QR_RD_RA | 3, 0, 0);
        bare.extend(question(1));
        let r = parse_reply(&bare).expect("parse");
        assert_eq!((r.rcode_name(), r.has_soa), ("NXDOMAIN", false));
    }

    #[test]
    fn servfail_refused_and_unknown_rcodes_have_names() {
        for (code, name) in [(2u16, "SERVFAIL"), (5, "REFUSED"), (12, "UNKNOWN")] {
            let mut b = header(1, QR_RD_RA | code, 0, 0);
            b.extend(question(1));
            assert_eq!(parse_reply(&b).expect("parse").rcode_name(), name);
        }
    }

    #[test]
    fn a_query_echoed_back_is_not_a_reply() {
        let q = build_query(9, "example.com", QueryType::A).expect("build");
        assert_eq!(parse_reply(&q), Err(DnsCodecError::NotAReply));
    }

    #[test]
    fn truncated_and_hostile_bytes_are_errors_not_panics() {
        let mut good = header(1, QR_RD_RA, 1, 0);
        good.extend(question(1));
        good.extend(rr(1, 300, &[1, 2, 3, 4]));
        // Every strict prefix of a valid reply is malformed.
        for cut in 0..good.len() {
            assert!(parse_reply(&good[..cut]).is_err(), "prefix of {cut} bytes parsed");
        }
        // A label pointer to itself, an A record with 3 bytes of rdata, a huge count.
        let mut looped = header(1, QR_RD_RA, 0, 0);
        looped.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        let mut short_a = header(1, QR_RD_RA, 1, 0);
        short_a.extend(question(1));
        short_a.extend(rr(1, 300, &[1, 2, 3]));
        let mut many = header(1, QR_RD_RA, 0xffff, 0);
        many.extend(question(1));
        for bytes in [looped, short_a, many, vec![0xff; 4096]] {
            assert!(parse_reply(&bytes).is_err());
        }
    }

    #[test]
    fn the_test_reply_builder_round_trips_through_the_parser() {
        let q = build_query(42, "example.com", QueryType::A).expect("build");
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let r = parse_reply(&testing::reply_to(&q, 3, &[ip], true)).expect("parse");
        assert_eq!((r.id, r.rcode, r.has_soa), (42, 3, true));
        assert_eq!(r.answers, vec![DnsAnswer { ip, ttl: 300 }]);
        assert!(r.answers_query(42, "example.com", QueryType::A));
    }
}
