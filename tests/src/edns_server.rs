//! The lab's encrypted-DNS resolver: DNS over TLS (RFC 7858) and DNS over HTTPS (RFC 8484, POST,
//! HTTP/1.1) with certificates for any SNI from the lab CA, answering every A query with
//! [`ANSWER`]. Run by `vantage-lab-server --dot` / `--doh` in the `internet` namespace.
//!
//! It speaks the wire formats with the engine's own framing (`vantage_engine::runner::edns::codec`)
//! and builds replies with hickory-proto, so a probe bug in the framing would show as a failed
//! exchange here rather than be mirrored.

use std::net::Ipv4Addr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use vantage_engine::runner::edns::codec;

/// What every A query is answered with (a documentation address).
pub const ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
/// The longest a connection may sit idle.
const IDLE: Duration = Duration::from_secs(15);
/// The largest request read.
const MAX_REQUEST: usize = 16 * 1024;

/// The reply to a DNS query: the A record for any name, NOERROR without answers for other types.
/// `None` for bytes that are not a query.
pub fn answer(query: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    if query.metadata.message_type != MessageType::Query {
        return None;
    }
    let q = query.queries.first()?.clone();
    let mut m = Message::error_msg(query.metadata.id, OpCode::Query, ResponseCode::NoError);
    m.metadata.message_type = MessageType::Response;
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.add_query(q.clone());
    if q.query_type() == RecordType::A {
        m.add_answer(Record::from_rdata(q.name().clone(), 300, RData::A(A(ANSWER))));
    }
    m.to_vec().ok()
}

/// Serve DoT: per connection, answer length-prefixed queries until the client closes.
pub async fn serve_dot(listener: TcpListener, acceptor: TlsAcceptor) {
    while let Ok((stream, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(Ok(mut tls)) = tokio::time::timeout(IDLE, acceptor.accept(stream)).await else { return };
            loop {
                let mut prefix = [0u8; 2];
                let Ok(Ok(_)) = tokio::time::timeout(IDLE, tls.read_exact(&mut prefix)).await else { break };
                let mut query = vec![0u8; codec::dot_length(prefix)];
                let Ok(Ok(_)) = tokio::time::timeout(IDLE, tls.read_exact(&mut query)).await else { break };
                let Some(framed) = answer(&query).and_then(|r| codec::dot_frame(&r)) else { break };
                if tls.write_all(&framed).await.is_err() {
                    break;
                }
            }
            let _ = tokio::time::timeout(IDLE, tls.shutdown()).await;
        });
    }
}

/// Serve DoH: one POST per connection, answered with `application/dns-message`; anything else
/// gets a 400.
pub async fn serve_doh(listener: TcpListener, acceptor: TlsAcceptor) {
    while let Ok((stream, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(Ok(mut tls)) = tokio::time::timeout(IDLE, acceptor.accept(stream)).await else { return };
            let Ok(request) = tokio::time::timeout(IDLE, read_request(&mut tls)).await else { return };
            let response = match request.as_deref().and_then(answer) {
                Some(body) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        codec::DNS_MESSAGE,
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body);
                    r
                }
                None => b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
            };
            let _ = tokio::time::timeout(IDLE, async {
                tls.write_all(&response).await?;
                tls.shutdown().await
            })
            .await;
        });
    }
}

/// The body of a `POST` with a `Content-Length`; `None` for anything else.
async fn read_request<S: AsyncReadExt + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut buf).await.ok().filter(|n| *n > 0)?;
        req.extend_from_slice(&buf[..n]);
        if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if req.len() > MAX_REQUEST {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&req[..head_end]).to_ascii_lowercase();
    if !head.starts_with("post ") {
        return None;
    }
    let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok())?;
    if len > MAX_REQUEST {
        return None;
    }
    while req.len() < head_end + len {
        let n = stream.read(&mut buf).await.ok().filter(|n| *n > 0)?;
        req.extend_from_slice(&buf[..n]);
    }
    Some(req[head_end..head_end + len].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_engine::runner::dns::QueryType;

    #[test]
    fn every_a_query_gets_the_lab_answer_with_its_id() {
        let query = vantage_engine::runner::dns::codec::build_query(0x5151, "example.org", QueryType::A).expect("query");
        let reply = answer(&query).expect("a reply");
        let parsed = codec::check_reply(&reply, 0x5151, "example.org", QueryType::A).expect("answers our query");
        assert_eq!(parsed.answers[0].ip, std::net::IpAddr::V4(ANSWER));
        assert!(answer(&reply).is_none(), "a reply is not a query");
        assert!(answer(b"junk").is_none());
    }

    #[tokio::test]
    async fn a_post_body_is_read_and_anything_else_refused() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        client.write_all(b"POST /dns-query HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").await.expect("write");
        assert_eq!(read_request(&mut server).await.as_deref(), Some(&b"abc"[..]));
        let (mut client, mut server) = tokio::io::duplex(4096);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
        assert_eq!(read_request(&mut server).await, None);
    }
}
