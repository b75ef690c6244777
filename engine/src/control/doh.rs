//! DNS-over-HTTPS control resolver (RFC 8484).
//!
//! DoH travels inside TLS to a public resolver, so an on-path DNS injector can't touch it: its
//! answer is what the name resolves to off the censored path. We POST the same wire query the UDP
//! runner sends (id 0, as RFC 8484 §4.1 recommends for caches), for A and AAAA in parallel, and
//! record one merged reply, like the system engine. Callers pass a context whose vantage is
//! [`Vantage::Doh`](vantage_measurement::Vantage::Doh); the resolver is recorded by host name only.

use std::io;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use tokio::time::Instant;
use vantage_measurement::{CodeSpace, Detail, DnsDetail, DnsEngine, DnsReply, Failure, Observation, Operation, RawCode, Role};

use crate::runner::dns::codec::{self, ParsedReply};
use crate::runner::dns::{QUERY_TYPE_BOTH, QueryType};
use crate::runner::{StepContext, io_failure, ms, timeout_failure};

/// The media type of RFC 8484.
const DNS_MESSAGE: &str = "application/dns-message";
/// The largest response body read: a DNS message can't be longer than 64 KiB.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// A DNS-over-HTTPS resolver used as a DNS control.
#[derive(Clone, Debug)]
pub struct DohClient {
    url: String,
    host: Option<String>,
    http: reqwest::Client,
}

/// One query's outcome: the reply, or why there is none.
type QueryResult = Result<ParsedReply, (Failure, RawCode)>;

impl DohClient {
    /// A client for the DoH endpoint `url` (e.g. `https://dns.google/dns-query`). An unparseable
    /// URL is not an error here: every lookup then fails with a fixed raw name.
    pub fn new(url: &str, http: reqwest::Client) -> Self {
        let host = reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string));
        DohClient { url: url.to_string(), host, http }
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Resolve `name` (A and AAAA) over DoH, under `ctx.timeout`, as one `resolve` observation
    /// with role `target`, engine `doh`, and the endpoint's host as `resolver`.
    pub async fn lookup(&self, ctx: &StepContext, name: &str) -> Observation {
        let step = ctx.step(Operation::Resolve, Role::Target);
        let mut detail = DnsDetail {
            engine: DnsEngine::Doh,
            resolver: self.host.clone(),
            query_name: name.to_string(),
            query_type: QUERY_TYPE_BOTH.to_string(),
            replies: Vec::new(),
        };
        let started = Instant::now();
        let both = async { tokio::join!(self.query(name, QueryType::A), self.query(name, QueryType::Aaaa)) };
        let outcome = match tokio::time::timeout(ctx.timeout, both).await {
            Err(_) => Err(timeout_failure(ctx.timeout)),
            Ok((a, aaaa)) => merge(a, aaaa, ms(started.elapsed()), &mut detail.replies),
        };
        step.finish(outcome, Some(Detail::Dns(detail)))
    }

    async fn query(&self, name: &str, qtype: QueryType) -> QueryResult {
        let body = codec::build_query(0, name, qtype).map_err(|_| fixed(Failure::UnknownFailure, "invalid_query_name"))?;
        if self.host.is_none() {
            return Err(fixed(Failure::UnknownFailure, "invalid_doh_url"));
        }
        let mut resp = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, DNS_MESSAGE)
            .header(ACCEPT, DNS_MESSAGE)
            .body(body)
            .send()
            .await
            .map_err(|e| http_failure(&e))?;
        let status = resp.status();
        if !status.is_success() {
            // Bounded: a status code is three digits.
            return Err(fixed(Failure::DnsServerMisbehaving, &format!("http_status_{}", status.as_u16())));
        }
        // A captive portal or a block page answers 200 text/html: that is not a DNS answer.
        let is_dns = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with(DNS_MESSAGE));
        if !is_dns {
            return Err(fixed(Failure::DnsServerMisbehaving, "wrong_content_type"));
        }
        if resp.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
            return Err(fixed(Failure::DnsServerMisbehaving, "response_too_large"));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| http_failure(&e))? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(fixed(Failure::DnsServerMisbehaving, "response_too_large"));
            }
            bytes.extend_from_slice(&chunk);
        }
        let reply = codec::parse_reply(&bytes).map_err(|_| fixed(Failure::DnsServerMisbehaving, "malformed_reply"))?;
        if reply.id != 0 {
            return Err(fixed(Failure::DnsReplyWithWrongQueryId, "wrong_query_id"));
        }
        if !reply.answers_query(0, name, qtype) {
            return Err(fixed(Failure::DnsServerMisbehaving, "question_mismatch"));
        }
        Ok(reply)
    }
}

/// Merge the A and AAAA outcomes into one reply: every address of either, NOERROR if any came;
/// otherwise the A reply's rcode (the AAAA one's if A got none). With no reply at all the step
/// fails like the A query did.
fn merge(a: QueryResult, aaaa: QueryResult, after_ms: f64, replies: &mut Vec<DnsReply>) -> Result<(), (Failure, RawCode)> {
    let parsed: Vec<&ParsedReply> = [&a, &aaaa].into_iter().filter_map(|r| r.as_ref().ok()).collect();
    let Some(primary) = parsed.first() else {
        return a.map(|_| ());
    };
    let answers: Vec<_> = parsed.iter().filter(|r| r.rcode == 0).flat_map(|r| r.answers.iter().cloned()).collect();
    let rcode = if answers.is_empty() { primary.rcode } else { 0 };
    let has_soa = parsed.iter().any(|r| r.has_soa);
    let outcome = crate::runner::dns::reply_outcome(rcode, !answers.is_empty());
    replies.push(DnsReply { after_ms, rcode: codec::rcode_name(rcode).to_string(), answers, has_soa, ip_ttl: None });
    outcome
}

/// A failure with a fixed raw name of ours (no rcode behind it).
fn fixed(failure: Failure, name: &str) -> (Failure, RawCode) {
    (failure, RawCode::named(CodeSpace::DnsRcode, None, name))
}

/// A reqwest error as failure + raw code. Its text can carry the URL or addresses, so only the
/// errno, the TLS error kind or a fixed name is kept.
fn http_failure(err: &reqwest::Error) -> (Failure, RawCode) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return tls_failure(tls);
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            // tokio-rustls wraps TLS errors in io::Error, whose `source` skips the inner error.
            if let Some(tls) = io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                return tls_failure(tls);
            }
            return io_failure(io);
        }
        source = e.source();
    }
    if err.is_timeout() {
        return (Failure::GenericTimeoutError, RawCode::named(CodeSpace::Timeout, None, "http_timeout"));
    }
    fixed(Failure::UnknownFailure, if err.is_connect() { "http_connect_error" } else { "http_error" })
}

fn tls_failure(err: &rustls::Error) -> (Failure, RawCode) {
    use rustls::CertificateError as C;
    let (failure, name) = match err {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => (Failure::SslUnknownAuthority, "unknown_issuer"),
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            (Failure::SslInvalidHostname, "not_valid_for_name")
        }
        rustls::Error::InvalidCertificate(_) => (Failure::SslInvalidCertificate, "invalid_certificate"),
        rustls::Error::AlertReceived(alert) => {
            let raw = RawCode::named(CodeSpace::TlsAlert, Some(u8::from(*alert).into()), &format!("{alert:?}"));
            return (Failure::SslFailedHandshake, raw);
        }
        _ => (Failure::SslFailedHandshake, "handshake_error"),
    };
    (failure, RawCode::named(CodeSpace::TlsError, None, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::dns::codec::testing::reply_to;
    use std::net::{IpAddr, SocketAddr};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use vantage_measurement::Vantage;

    #[derive(Clone, Copy)]
    enum Http {
        Answer,
        Nxdomain,
        Status500,
        Portal,
        Oversized,
        Silence,
    }

    /// A one-request-per-connection HTTP/1.1 server on 127.0.0.1:0.
    async fn serve(behaviour: Http) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(handle(stream, behaviour));
            }
        });
        (addr, task)
    }

    async fn handle(mut stream: TcpStream, behaviour: Http) {
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            let Ok(n) = stream.read(&mut buf).await else { return };
            if n == 0 || req.len() > 64 * 1024 {
                return;
            }
            req.extend_from_slice(&buf[..n]);
            if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&req[..head_end]).to_ascii_lowercase();
        assert!(head.starts_with("post "), "{head}");
        assert!(head.contains("content-type: application/dns-message"), "{head}");
        let len: usize =
            head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        while req.len() < head_end + len {
            let Ok(n) = stream.read(&mut buf).await else { return };
            if n == 0 {
                return;
            }
            req.extend_from_slice(&buf[..n]);
        }
        let query = &req[head_end..head_end + len];
        let ips: [IpAddr; 2] = ["192.0.2.10".parse().expect("ip"), "2001:db8::10".parse().expect("ip")];
        let is_aaaa = hickory_proto::op::Message::from_vec(query).ok().and_then(|m| m.queries.first().map(|q| q.query_type()))
            == Some(hickory_proto::rr::RecordType::AAAA);
        let family: Vec<IpAddr> = ips.into_iter().filter(|ip| ip.is_ipv6() == is_aaaa).collect();
        let (status, ctype, body) = match behaviour {
            Http::Answer => ("200 OK", DNS_MESSAGE, reply_to(query, 0, &family, false)),
            Http::Nxdomain => ("200 OK", DNS_MESSAGE, reply_to(query, 3, &[], true)),
            Http::Status500 => ("500 Internal Server Error", "text/plain", b"oops".to_vec()),
            Http::Portal => ("200 OK", "text/html", b"<html>please log in</html>".to_vec()),
            Http::Oversized => ("200 OK", DNS_MESSAGE, vec![0u8; MAX_RESPONSE_BYTES + 1]),
            Http::Silence => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
        };
        let head =
            format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(&body).await;
        let _ = stream.shutdown().await;
    }

    async fn lookup(behaviour: Http, timeout_ms: u64) -> Observation {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let (addr, server) = serve(behaviour).await;
        let client = DohClient::new(&format!("http://{addr}/dns-query"), http);
        let ctx = StepContext::new(Vantage::Doh, Duration::from_millis(timeout_ms));
        let obs = client.lookup(&ctx, "example.com").await;
        server.abort();
        obs
    }

    fn detail(obs: &Observation) -> &DnsDetail {
        match &obs.detail {
            Some(Detail::Dns(d)) => d,
            other => panic!("no dns detail: {other:?}"),
        }
    }

    fn raw_name(obs: &Observation) -> Option<&str> {
        obs.raw.as_ref().and_then(|r| r.name.as_deref())
    }

    #[tokio::test]
    async fn a_and_aaaa_are_merged_into_one_reply() {
        let obs = lookup(Http::Answer, 3000).await;
        assert!(obs.succeeded(), "{obs:?}");
        assert_eq!((obs.vantage, obs.role, obs.op), (Vantage::Doh, Role::Target, Operation::Resolve));
        let d = detail(&obs);
        assert_eq!((d.engine, d.resolver.as_deref(), d.query_type.as_str()), (DnsEngine::Doh, Some("127.0.0.1"), "A,AAAA"));
        assert_eq!(d.replies.len(), 1);
        let mut ips: Vec<String> = d.replies[0].answers.iter().map(|a| a.ip.to_string()).collect();
        ips.sort();
        assert_eq!(ips, ["192.0.2.10", "2001:db8::10"]);
    }

    #[tokio::test]
    async fn nxdomain_is_reported_with_its_soa() {
        let obs = lookup(Http::Nxdomain, 3000).await;
        assert_eq!(obs.failure, Some(Failure::DnsNxdomainError));
        let r = &detail(&obs).replies[0];
        assert_eq!((r.rcode.as_str(), r.has_soa), ("NXDOMAIN", true));
    }

    #[tokio::test]
    async fn http_errors_portals_and_oversized_bodies_are_not_answers() {
        let obs = lookup(Http::Status500, 3000).await;
        assert_eq!((obs.failure, raw_name(&obs)), (Some(Failure::DnsServerMisbehaving), Some("http_status_500")));
        let obs = lookup(Http::Portal, 3000).await;
        assert_eq!((obs.failure, raw_name(&obs)), (Some(Failure::DnsServerMisbehaving), Some("wrong_content_type")));
        let obs = lookup(Http::Oversized, 3000).await;
        assert_eq!((obs.failure, raw_name(&obs)), (Some(Failure::DnsServerMisbehaving), Some("response_too_large")));
        assert!(detail(&obs).replies.is_empty());
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let obs = lookup(Http::Silence, 400).await;
        assert_eq!(obs.failure, Some(Failure::GenericTimeoutError));
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let client = DohClient::new(&format!("http://127.0.0.1:{port}/dns-query"), http);
        let ctx = StepContext::new(Vantage::Doh, Duration::from_secs(2));
        let obs = client.lookup(&ctx, "example.com").await;
        assert_eq!(obs.failure, Some(Failure::ConnectionRefused), "{obs:?}");
        // The errno, not reqwest's text (which names the URL), is what is kept.
        assert_eq!(raw_name(&obs), Some("ECONNREFUSED"));
    }

    #[tokio::test]
    async fn an_unparseable_url_fails_every_lookup_cleanly() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let client = DohClient::new("not a url", http);
        let ctx = StepContext::new(Vantage::Doh, Duration::from_secs(1));
        let obs = client.lookup(&ctx, "example.com").await;
        assert_eq!((obs.failure, raw_name(&obs)), (Some(Failure::UnknownFailure), Some("invalid_doh_url")));
    }
}
