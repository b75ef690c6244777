//! The PROXY protocol header, versions 1 (text) and 2 (binary), as HAProxy's specification
//! defines them (`doc/proxy-protocol.txt`): a load balancer that passes TCP through writes one
//! before the client's first byte to say who the client is.
//!
//! Decoding only, no sockets and no clock: [`decode`] takes the bytes received so far and says
//! whether they hold a complete header (and how long it is), need more bytes, or are not a PROXY
//! header at all (an HTTP request line, a TLS ClientHello). Whoever sent a header is not judged
//! here: the accept loop honours one only from a `--trusted-proxy` peer and refuses it from
//! anyone else. The encoders exist for tests and for the lab's balancer.
//!
//! Strict where the specification is strict (CRLF, single spaces, decimal ports without a sign,
//! the version nibble), lenient where it allows (v2 TLVs are skipped, `UNKNOWN` / `LOCAL` /
//! `UNSPEC` mean "use the connection's own addresses"), and bounded: a v1 line is at most 107
//! bytes, a v2 header at most [`V2_MAX_LEN`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What a v1 header starts with.
pub const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 line, CRLF included (the specification's bound).
pub const V1_MAX_LEN: usize = 107;
/// What a v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
/// The longest v2 header accepted, its 16 fixed bytes included. The specification allows 64 KiB
/// of TLVs; balancers send well under this (addresses, a VPC endpoint id, TLS details).
pub const V2_MAX_LEN: usize = 2048;
/// The fixed part of a v2 header: signature, version and command, family, length.
const V2_FIXED_LEN: usize = 16;

/// A complete header: who the client is, as the proxy says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// The proxy speaks for itself (a health check: v2 `LOCAL`), or does not know the client (v1
    /// `UNKNOWN`, v2 `UNSPEC`): use the connection's own peer.
    Local,
    /// A proxied TCP connection.
    Proxied {
        /// The client.
        source: SocketAddr,
        /// The address the client connected to (on the proxy).
        destination: SocketAddr,
    },
}

/// What the bytes received so far are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A complete header of `len` bytes; what follows is the client's.
    Complete {
        /// The header.
        header: Header,
        /// Its length in bytes.
        len: usize,
    },
    /// The start of a header (or too few bytes to tell): read more.
    Incomplete,
    /// Not a PROXY header: the connection's first bytes are the client's own.
    NotProxy,
}

/// Why bytes that start like a PROXY header are not a usable one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// No CRLF within the first 107 bytes.
    #[error("PROXY v1 line longer than {V1_MAX_LEN} bytes")]
    V1TooLong,
    /// The v1 line breaks the grammar; the field says where.
    #[error("PROXY v1 line: bad {0}")]
    V1Syntax(&'static str),
    /// A v2 version nibble other than 2.
    #[error("PROXY v2 header with version {0}")]
    V2Version(u8),
    /// A v2 command other than LOCAL (0) and PROXY (1).
    #[error("PROXY v2 header with command {0}")]
    V2Command(u8),
    /// A v2 address family and protocol other than TCP over IPv4 or IPv6 (UDP, UNIX sockets).
    #[error("PROXY v2 family and protocol {0:#04x}: only TCP over IPv4 or IPv6 is served")]
    V2Family(u8),
    /// A v2 header announcing more bytes than accepted.
    #[error("PROXY v2 header of {0} bytes; at most {V2_MAX_LEN} are accepted")]
    V2TooLong(usize),
    /// A v2 address block too short for its family.
    #[error("PROXY v2 address block of {len} bytes; the family needs {needed}")]
    V2Short {
        /// The announced length.
        len: usize,
        /// What the family needs.
        needed: usize,
    },
}

/// Decode the start of a connection.
pub fn decode(buf: &[u8]) -> Result<Decoded, ProxyError> {
    if starts_like(buf, &V2_SIGNATURE) {
        return if buf.len() < V2_SIGNATURE.len() { Ok(Decoded::Incomplete) } else { decode_v2(buf) };
    }
    if starts_like(buf, V1_PREFIX) {
        return if buf.len() < V1_PREFIX.len() { Ok(Decoded::Incomplete) } else { decode_v1(buf) };
    }
    Ok(Decoded::NotProxy)
}

/// Do `buf` and `signature` agree on their common length (an empty `buf` agrees with anything)?
fn starts_like(buf: &[u8], signature: &[u8]) -> bool {
    let n = buf.len().min(signature.len());
    buf[..n] == signature[..n]
}

fn decode_v1(buf: &[u8]) -> Result<Decoded, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(end) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX_LEN { Err(ProxyError::V1TooLong) } else { Ok(Decoded::Incomplete) };
    };
    let line = window[..end].strip_suffix(b"\r").ok_or(ProxyError::V1Syntax("line end (LF without CR)"))?;
    let line = std::str::from_utf8(line).map_err(|_| ProxyError::V1Syntax("characters"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    let header = match fields.as_slice() {
        // UNKNOWN may be followed by anything, which the receiver ignores.
        ["PROXY", "UNKNOWN", ..] => Header::Local,
        ["PROXY", family @ ("TCP4" | "TCP6"), source, destination, source_port, destination_port] => {
            let v6 = *family == "TCP6";
            let source = SocketAddr::new(v1_address(source, v6)?, v1_port(source_port)?);
            let destination = SocketAddr::new(v1_address(destination, v6)?, v1_port(destination_port)?);
            Header::Proxied { source, destination }
        }
        ["PROXY", "TCP4" | "TCP6", ..] => return Err(ProxyError::V1Syntax("field count")),
        _ => return Err(ProxyError::V1Syntax("protocol")),
    };
    Ok(Decoded::Complete { header, len: end + 1 })
}

fn v1_address(text: &str, v6: bool) -> Result<IpAddr, ProxyError> {
    let parsed = if v6 { text.parse::<Ipv6Addr>().map(IpAddr::V6) } else { text.parse::<Ipv4Addr>().map(IpAddr::V4) };
    parsed.map_err(|_| ProxyError::V1Syntax("address"))
}

/// A port: 1 to 5 decimal digits, no sign, at most 65535.
fn v1_port(text: &str) -> Result<u16, ProxyError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProxyError::V1Syntax("port"));
    }
    text.parse().map_err(|_| ProxyError::V1Syntax("port"))
}

fn decode_v2(buf: &[u8]) -> Result<Decoded, ProxyError> {
    let Some(fixed) = buf.get(..V2_FIXED_LEN) else { return Ok(Decoded::Incomplete) };
    let (version, command) = (fixed[12] >> 4, fixed[12] & 0x0F);
    if version != 2 {
        return Err(ProxyError::V2Version(version));
    }
    let family = fixed[13];
    let block_len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let len = V2_FIXED_LEN + block_len;
    if len > V2_MAX_LEN {
        return Err(ProxyError::V2TooLong(len));
    }
    let header = match command {
        // LOCAL: the proxy's own connection; its address block, if any, is to be ignored.
        0 => Header::Local,
        1 => match family {
            0x00 => Header::Local,
            0x11 | 0x21 => {
                let Some(block) = buf.get(V2_FIXED_LEN..len) else { return Ok(Decoded::Incomplete) };
                v2_addresses(family, block)?
            }
            other => return Err(ProxyError::V2Family(other)),
        },
        other => return Err(ProxyError::V2Command(other)),
    };
    if buf.len() < len {
        return Ok(Decoded::Incomplete);
    }
    Ok(Decoded::Complete { header, len })
}

/// The source and destination of a TCP4 (`0x11`) or TCP6 (`0x21`) block; TLVs after them are
/// skipped.
fn v2_addresses(family: u8, block: &[u8]) -> Result<Header, ProxyError> {
    let ip_len = if family == 0x11 { 4 } else { 16 };
    let needed = 2 * ip_len + 4;
    if block.len() < needed {
        return Err(ProxyError::V2Short { len: block.len(), needed });
    }
    let ip = |at: usize| -> IpAddr {
        if ip_len == 4 {
            let mut octets = [0; 4];
            octets.copy_from_slice(&block[at..at + 4]);
            IpAddr::from(octets)
        } else {
            let mut octets = [0; 16];
            octets.copy_from_slice(&block[at..at + 16]);
            IpAddr::from(octets)
        }
    };
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    let source = SocketAddr::new(ip(0), port(2 * ip_len));
    let destination = SocketAddr::new(ip(ip_len), port(2 * ip_len + 2));
    Ok(Header::Proxied { source, destination })
}

/// A v1 line for a proxied connection (both addresses of one family).
pub fn encode_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!("PROXY {family} {} {} {} {}\r\n", source.ip(), destination.ip(), source.port(), destination.port()).into_bytes()
}

/// A v2 header: `PROXY` with the addresses (both of one family) and `tlvs` appended raw, or
/// `LOCAL` for `None`.
pub fn encode_v2(addresses: Option<(SocketAddr, SocketAddr)>, tlvs: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    let (command, family) = match addresses {
        None => (0x20, 0x00),
        Some((source, destination)) => {
            let family = match (source.ip(), destination.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    block.extend_from_slice(&s.octets());
                    block.extend_from_slice(&d.octets());
                    0x11
                }
                (s, d) => {
                    block.extend_from_slice(&v6(s).octets());
                    block.extend_from_slice(&v6(d).octets());
                    0x21
                }
            };
            block.extend_from_slice(&source.port().to_be_bytes());
            block.extend_from_slice(&destination.port().to_be_bytes());
            (0x21, family)
        }
    };
    block.extend_from_slice(tlvs);
    let mut out = V2_SIGNATURE.to_vec();
    out.push(command);
    out.push(family);
    out.extend_from_slice(&u16::try_from(block.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&block);
    out
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn complete(buf: &[u8]) -> (Header, usize) {
        match decode(buf) {
            Ok(Decoded::Complete { header, len }) => (header, len),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    /// Every strict prefix of a valid header asks for more bytes, never errs or misreads.
    fn every_prefix_is_incomplete(header: &[u8]) {
        for n in 0..header.len() {
            assert_eq!(decode(&header[..n]), Ok(Decoded::Incomplete), "prefix of {n} bytes");
        }
    }

    #[test]
    fn v1_tcp4_and_tcp6_give_the_client_and_leave_what_follows() {
        let mut bytes = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n".to_vec();
        let (header, len) = complete(&bytes);
        assert_eq!(header, Header::Proxied { source: addr("192.0.2.7:56324"), destination: addr("198.51.100.1:443") });
        assert_eq!(&bytes[len..], b"GET / HTTP/1.1\r\n");
        bytes.truncate(len);
        every_prefix_is_incomplete(&bytes);

        let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n";
        let (header, len) = complete(line);
        assert_eq!(header, Header::Proxied { source: addr("[2001:db8::7]:65535"), destination: addr("[2001:db8::1]:0") });
        assert_eq!(len, line.len());
        assert_eq!(complete(b"PROXY UNKNOWN whatever follows\r\n").0, Header::Local);
        assert_eq!(complete(b"PROXY UNKNOWN\r\n").0, Header::Local);
    }

    #[test]
    fn v1_malformed_lines_are_errors_not_guesses() {
        for (line, why) in [
            (&b"PROXY TCP4 192.0.2.7 198.51.100.1 +80 443\r\n"[..], "signed port"),
            (b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n", "port out of range"),
            (b"PROXY TCP4 192.0.2.7 198.51.100.1 123456 443\r\n", "six digits"),
            (b"PROXY TCP4 192.0.2.7 198.51.100.1  443\r\n", "empty port"),
            (b"PROXY TCP4 2001:db8::7 198.51.100.1 1 443\r\n", "v6 address in TCP4"),
            (b"PROXY TCP6 192.0.2.7 2001:db8::1 1 443\r\n", "v4 address in TCP6"),
            (b"PROXY TCP4 192.0.2.7 198.51.100.1 1\r\n", "field missing"),
            (b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2 3\r\n", "field too many"),
            (b"PROXY  TCP4 192.0.2.7 198.51.100.1 1 2\r\n", "double space"),
            (b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n", "not TCP"),
            (b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n", "LF alone"),
            (b"PROXY TCP4 192.0.2.\xff 198.51.100.1 1 2\r\n", "not UTF-8"),
            (b"PROXY TCP4 300.0.2.7 198.51.100.1 1 2\r\n", "octet out of range"),
        ] {
            assert!(decode(line).is_err(), "{why}: {:?}", decode(line));
        }
        let endless = [b"PROXY ".as_slice(), &[b'A'; 200]].concat();
        assert_eq!(decode(&endless[..V1_MAX_LEN - 1]), Ok(Decoded::Incomplete));
        assert_eq!(decode(&endless), Err(ProxyError::V1TooLong));
        // A CRLF just past the bound does not make an over-long line acceptable.
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX_LEN, b'x');
        long.extend_from_slice(b"\r\n");
        assert_eq!(decode(&long), Err(ProxyError::V1TooLong));
    }

    #[test]
    fn v2_tcp4_tcp6_and_local_round_trip_with_tlvs_skipped() {
        let (source, destination) = (addr("203.0.113.9:40000"), addr("198.51.100.1:443"));
        // An AWS-style TLV (type 0xEA, length 5) after the addresses.
        let tlv = [0xEA, 0x00, 0x05, 1, 2, 3, 4, 5];
        let mut bytes = encode_v2(Some((source, destination)), &tlv);
        let header_len = bytes.len();
        every_prefix_is_incomplete(&bytes);
        bytes.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(complete(&bytes), (Header::Proxied { source, destination }, header_len));

        let (source, destination) = (addr("[2001:db8::9]:1"), addr("[2001:db8::1]:443"));
        let bytes = encode_v2(Some((source, destination)), &[]);
        assert_eq!(bytes.len(), 16 + 36);
        assert_eq!(complete(&bytes), (Header::Proxied { source, destination }, 52));

        let local = encode_v2(None, &[]);
        every_prefix_is_incomplete(&local);
        assert_eq!(complete(&local), (Header::Local, 16));
    }

    #[test]
    fn v2_malformed_headers_are_errors() {
        let good = encode_v2(Some((addr("203.0.113.9:1"), addr("198.51.100.1:443"))), &[]);
        let edited = |at: usize, value: u8| {
            let mut bytes = good.clone();
            bytes[at] = value;
            decode(&bytes)
        };
        assert_eq!(edited(12, 0x11), Err(ProxyError::V2Version(1)));
        assert_eq!(edited(12, 0x22), Err(ProxyError::V2Command(2)));
        assert_eq!(edited(13, 0x12), Err(ProxyError::V2Family(0x12)), "UDP over IPv4");
        assert_eq!(edited(13, 0x31), Err(ProxyError::V2Family(0x31)), "UNIX stream");
        assert_eq!(edited(15, 4), Err(ProxyError::V2Short { len: 4, needed: 12 }));
        // Announcing more than the bound is refused at once, without waiting for the bytes.
        let mut long = good[..16].to_vec();
        long[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(decode(&long), Err(ProxyError::V2TooLong(16 + 65535)));
        // A LOCAL header may carry an address block; it is skipped, not read.
        let mut local = good.clone();
        local[12] = 0x20;
        assert_eq!(complete(&local), (Header::Local, good.len()));
        // PROXY with UNSPEC: the proxy does not know the client.
        let mut unspec = encode_v2(None, &[]);
        unspec[12] = 0x21;
        assert_eq!(complete(&unspec), (Header::Local, 16));
    }

    #[test]
    fn a_clients_own_first_bytes_are_not_a_header() {
        for first in
            [&b"GET / HTTP/1.1\r\n"[..], b"POST /api/v1/measurements", b"\x16\x03\x01\x02\x00", b"PROXI", b"\r\n\r\n\x01"]
        {
            assert_eq!(decode(first), Ok(Decoded::NotProxy), "{first:?}");
        }
        for undecided in [&b""[..], b"P", b"PROX", b"\r\n\r\n\x00\r\nQUI"] {
            assert_eq!(decode(undecided), Ok(Decoded::Incomplete), "{undecided:?}");
        }
    }

    #[test]
    fn v1_encoding_round_trips() {
        for (source, destination) in
            [(addr("192.0.2.1:1"), addr("192.0.2.2:65535")), (addr("[2001:db8::1]:8080"), addr("[::1]:443"))]
        {
            assert_eq!(complete(&encode_v1(source, destination)).0, Header::Proxied { source, destination });
        }
    }
}
