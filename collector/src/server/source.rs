//! Who a request comes from: [`ClientSource`], the one address handlers use (GeoIP, the lines
//! that must not contain it, rate limits).
//!
//! The rule, in one place ([`resolve`]): a request's source is the address that sent it (the TCP
//! peer, or the client a trusted proxy's PROXY header names). Only if that address is a
//! `--trusted-proxy` is its forwarded-for header read, right to left, past every address that is
//! itself a trusted proxy; the first one that is not is the client. So a client can write any
//! forwarded-for header it likes: the trusted proxy appends the address it really saw to the
//! right of it, and the walk stops there. A direct client's header is never read.
//!
//! Only the header the operator names (`--forwarded-header`) is read, never both: a proxy that
//! appends to `X-Forwarded-For` passes a client's own `Forwarded` header through untouched, so
//! reading "either" would let the client choose.

use std::net::{IpAddr, SocketAddr};

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

use crate::error::{ApiError, ServerFault};

/// The real client address of a request, as [`resolve`] decided it. The accept loop inserts it
/// into every request's extensions; handlers take it as an extractor. Never log, store or label it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSource(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientSource {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<ClientSource>().copied().ok_or_else(|| {
            // Only a router called outside the collector's accept loop gets here.
            tracing::error!("a request without a ClientSource: the router is not served by crate::server");
            ApiError::server(ServerFault::Internal, "the client address is unknown").into_response()
        })
    }
}

vantage_measurement::closed_set! {
    /// The header a trusted proxy names the client in (`--forwarded-header`).
    #[default = XForwardedFor]
    pub enum ForwardedHeader {
        /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, most cloud balancers).
        XForwardedFor => "x-forwarded-for",
        /// RFC 7239 `Forwarded: for=client, for=proxy1` (Envoy, some CDNs).
        Forwarded => "forwarded",
    }
}

impl ForwardedHeader {
    /// Parse a flag value (clap).
    pub fn from_flag(value: &str) -> Result<Self, String> {
        Self::parse(&value.to_ascii_lowercase()).ok_or_else(|| {
            format!("{value:?} is not one of: {}", Self::ALL.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", "))
        })
    }
}

/// The `--trusted-proxy` blocks: the only peers whose PROXY header or forwarded-for header is
/// believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trust these blocks.
    pub fn new(blocks: Vec<IpNet>) -> Self {
        TrustedProxies(blocks)
    }

    /// Is `ip` (a v4-mapped IPv6 address as its IPv4 address) in a trusted block?
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|block| block.contains(&ip))
    }

    /// Is nothing trusted?
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The blocks.
    pub fn blocks(&self) -> &[IpNet] {
        &self.0
    }
}

/// Parse one `--trusted-proxy` value: a CIDR block (`10.0.0.0/8`, `2001:db8::/32`) or a single
/// address. Host bits below the prefix are refused: `10.0.0.1/8` is a typo for something.
pub fn parse_trusted_proxy(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    let block = match value.parse::<IpNet>() {
        Ok(block) => block,
        Err(_) => value.parse::<IpAddr>().map(IpNet::from).map_err(|_| format!("{value:?} is not an address or CIDR block"))?,
    };
    if block.trunc() != block {
        return Err(format!("{value:?} has host bits set below its prefix; did you mean {}?", block.trunc()));
    }
    Ok(block)
}

/// The client address of a request that `hop` sent, with `headers`.
pub fn resolve(hop: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies, header: ForwardedHeader) -> IpAddr {
    let mut client = hop.to_canonical();
    if !trusted.contains(client) {
        return client;
    }
    let name = header.as_str();
    let lines: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    // Several header lines are one list, in order (RFC 9110 §5.3).
    for entry in lines.iter().rev().flat_map(|line| line.rsplit(',')) {
        if !trusted.contains(client) {
            break;
        }
        let parsed = match header {
            ForwardedHeader::XForwardedFor => xff_address(entry),
            ForwardedHeader::Forwarded => forwarded_for(entry),
        };
        // Garbage where an address should be: stop at the last proxy we trust rather than guess.
        let Some(next) = parsed else { break };
        client = next.to_canonical();
    }
    client
}

/// One `X-Forwarded-For` entry: an address, or an address with a port (some balancers add it).
fn xff_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The `for=` of one RFC 7239 element: `for=192.0.2.1`, `for="[2001:db8::1]:4711"`; `unknown`
/// and obfuscated identifiers (`_hidden`) are not addresses.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then_some(value.trim())
    })?;
    let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
    if let Some(bracketed) = value.strip_prefix('[') {
        let (ip, _port) = bracketed.split_once(']')?;
        return ip.parse().ok();
    }
    value.parse::<IpAddr>().ok().or_else(|| value.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn trusted(blocks: &[&str]) -> TrustedProxies {
        TrustedProxies::new(blocks.iter().map(|b| parse_trusted_proxy(b).expect("block")).collect())
    }

    fn headers(name: &str, lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(line).expect("value"),
            );
        }
        map
    }

    #[test]
    fn a_direct_clients_forwarded_for_is_never_read() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let spoof = headers("x-forwarded-for", &["10.1.1.1", "198.51.100.7"]);
        assert_eq!(resolve(ip("203.0.113.5"), &spoof, &proxies, ForwardedHeader::XForwardedFor), ip("203.0.113.5"));
        assert_eq!(
            resolve(ip("203.0.113.5"), &spoof, &TrustedProxies::default(), ForwardedHeader::XForwardedFor),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn the_right_most_address_that_is_not_a_trusted_proxy_is_the_client() {
        let proxies = trusted(&["10.0.0.0/8", "192.0.2.10"]);
        let xff = ForwardedHeader::XForwardedFor;
        let cases: &[(&[&str], &str)] = &[
            (&["198.51.100.7"], "198.51.100.7"),
            // The client's own claim (1.2.3.4) sits left of what the proxies appended.
            (&["1.2.3.4, 198.51.100.7, 10.0.0.3"], "198.51.100.7"),
            (&["1.2.3.4", "198.51.100.7", "192.0.2.10"], "198.51.100.7"),
            (&["2001:db8::7"], "2001:db8::7"),
            (&["[2001:db8::7]:4711"], "2001:db8::7"),
            (&["198.51.100.7:5000"], "198.51.100.7"),
            (&["::ffff:198.51.100.7"], "198.51.100.7"),
            // Every hop is a trusted proxy: the furthest one.
            (&["10.0.0.9, 10.0.0.3"], "10.0.0.9"),
            // Nothing forwarded: the proxy itself.
            (&[], "10.0.0.1"),
            // Garbage right of the client: stop at the last trusted proxy, never guess.
            (&["198.51.100.7, unknown"], "10.0.0.1"),
            (&["198.51.100.7, not-an-ip, 10.0.0.3"], "10.0.0.3"),
            (&["garbage, 198.51.100.7"], "198.51.100.7"),
        ];
        for (lines, want) in cases {
            assert_eq!(resolve(ip("10.0.0.1"), &headers("x-forwarded-for", lines), &proxies, xff), ip(want), "{lines:?}");
        }
        // A v4-mapped peer is the trusted proxy it maps to.
        assert_eq!(
            resolve(ip("::ffff:10.0.0.1"), &headers("x-forwarded-for", &["198.51.100.7"]), &proxies, xff),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn only_the_named_header_is_read() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let mut both = headers("x-forwarded-for", &["198.51.100.7"]);
        both.append("forwarded", HeaderValue::from_static("for=203.0.113.99"));
        assert_eq!(resolve(ip("10.0.0.1"), &both, &proxies, ForwardedHeader::XForwardedFor), ip("198.51.100.7"));
        assert_eq!(resolve(ip("10.0.0.1"), &both, &proxies, ForwardedHeader::Forwarded), ip("203.0.113.99"));
    }

    #[test]
    fn rfc_7239_elements_are_read_for_their_for() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let fwd = ForwardedHeader::Forwarded;
        let cases: &[(&str, &str)] = &[
            ("for=198.51.100.7;proto=https;by=10.0.0.1", "198.51.100.7"),
            ("For=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("for=\"198.51.100.7:47011\"", "198.51.100.7"),
            ("for=1.2.3.4, for=198.51.100.7, for=10.0.0.2", "198.51.100.7"),
            ("proto=https;for=198.51.100.7", "198.51.100.7"),
            ("for=unknown", "10.0.0.1"),
            ("for=_hidden", "10.0.0.1"),
            ("by=10.0.0.1", "10.0.0.1"),
            ("for=\"[2001:db8::1\"", "10.0.0.1"),
        ];
        for (line, want) in cases {
            assert_eq!(resolve(ip("10.0.0.1"), &headers("forwarded", &[line]), &proxies, fwd), ip(want), "{line}");
        }
    }

    #[test]
    fn trusted_proxy_values_are_blocks_or_addresses_without_stray_host_bits() {
        assert_eq!(parse_trusted_proxy("10.0.0.0/8").expect("block").to_string(), "10.0.0.0/8");
        assert_eq!(parse_trusted_proxy("192.0.2.1").expect("address").to_string(), "192.0.2.1/32");
        assert_eq!(parse_trusted_proxy(" 2001:db8::/32 ").expect("v6").to_string(), "2001:db8::/32");
        assert!(parse_trusted_proxy("10.0.0.1/8").expect_err("host bits").contains("10.0.0.0/8"));
        assert!(parse_trusted_proxy("10.0.0.0/33").is_err());
        assert!(parse_trusted_proxy("proxy.example").is_err());
        assert!(trusted(&["10.0.0.0/8"]).contains(ip("::ffff:10.1.2.3")));
        assert!(!trusted(&["10.0.0.0/8"]).contains(ip("11.0.0.1")));
    }

    #[test]
    fn the_header_flag_names_one_of_the_closed_set() {
        assert_eq!(ForwardedHeader::from_flag("X-Forwarded-For"), Ok(ForwardedHeader::XForwardedFor));
        assert_eq!(ForwardedHeader::from_flag("forwarded"), Ok(ForwardedHeader::Forwarded));
        assert!(ForwardedHeader::from_flag("x-real-ip").is_err());
        assert_eq!(ForwardedHeader::default(), ForwardedHeader::XForwardedFor);
    }
}
