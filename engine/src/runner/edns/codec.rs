//! Encrypted-DNS framing: DoT's length prefix (RFC 7858 §3.3) and DoH's HTTP/1.1 exchange
//! (RFC 8484 §4.1, POST), plus the check that a reply answers our query. Pure: no sockets, no
//! clock; the bytes come from the async part in [`super`].
//!
//! HTTP/1.1 rather than HTTP/2: one request per connection needs no multiplexing, the request is a
//! few lines we can read in a measurement, and every resolver on the built-in list serves it. The
//! response parser reads a `Connection: close` reply to its end: status line, headers,
//! `Content-Length` or `chunked` body. Anything else is a [`HttpError`], never a panic.

use crate::runner::dns::QueryType;
use crate::runner::dns::codec::{self, ParsedReply};

/// The media type of RFC 8484.
pub const DNS_MESSAGE: &str = "application/dns-message";
/// The largest DNS message over TCP: the 2-byte length prefix caps it at 65,535 bytes.
pub const MAX_MESSAGE: usize = u16::MAX as usize;
/// The largest HTTP response read (headers and body): one DNS message plus room for headers.
pub const MAX_HTTP_RESPONSE: usize = MAX_MESSAGE + 16 * 1024;

/// A DoT message: the 2-byte big-endian length, then the DNS message (RFC 7858 §3.3, RFC 1035
/// §4.2.2). `None` for a message too long to frame.
pub fn dot_frame(message: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(message.len()).ok()?;
    let mut out = Vec::with_capacity(message.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    Some(out)
}

/// The length announced by a DoT prefix.
pub fn dot_length(prefix: [u8; 2]) -> usize {
    usize::from(u16::from_be_bytes(prefix))
}

/// An RFC 8484 POST of `message` to `path` on `host`, closing the connection after the reply.
pub fn doh_request(host: &str, path: &str, message: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vantage-probe\r\nAccept: {DNS_MESSAGE}\r\n\
         Content-Type: {DNS_MESSAGE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        message.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(message);
    out
}

/// Why an HTTP response can't be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// No complete header block (the connection ended first).
    #[error("incomplete_headers")]
    IncompleteHeaders,
    /// The status line is not `HTTP/1.x NNN …`.
    #[error("bad_status_line")]
    BadStatusLine,
    /// The body is shorter than announced, or its chunks are malformed.
    #[error("bad_body")]
    BadBody,
    /// The response is longer than [`MAX_HTTP_RESPONSE`].
    #[error("response_too_large")]
    TooLarge,
}

impl HttpError {
    /// The fixed name recorded as the raw code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IncompleteHeaders => "incomplete_headers",
            Self::BadStatusLine => "bad_status_line",
            Self::BadBody => "bad_body",
            Self::TooLarge => "response_too_large",
        }
    }
}

/// An HTTP response, reduced to what a DoH check needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`, lower-case, without parameters.
    pub content_type: Option<String>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Parse a whole HTTP/1.1 response (the server closed after it).
pub fn parse_http_response(bytes: &[u8]) -> Result<HttpResponse, HttpError> {
    if bytes.len() > MAX_HTTP_RESPONSE {
        return Err(HttpError::TooLarge);
    }
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").ok_or(HttpError::IncompleteHeaders)?;
    let head = std::str::from_utf8(&bytes[..end]).map_err(|_| HttpError::BadStatusLine)?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|s| (s.len() == 3).then_some(s)).and_then(|s| s.parse::<u16>().ok());
    let status = match status {
        Some(code) if version.starts_with("HTTP/1.") && (100..600).contains(&code) => code,
        _ => return Err(HttpError::BadStatusLine),
    };
    let (mut content_type, mut length, mut chunked) = (None, None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => {
                content_type = value.split(';').next().map(|v| v.trim().to_ascii_lowercase());
            }
            "content-length" => length = Some(value.parse::<usize>().map_err(|_| HttpError::BadBody)?),
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let rest = &bytes[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        match length {
            Some(n) if rest.len() < n => return Err(HttpError::BadBody),
            Some(n) => rest[..n].to_vec(),
            None => rest.to_vec(),
        }
    };
    Ok(HttpResponse { status, content_type, body })
}

/// Undo `Transfer-Encoding: chunked` (RFC 9112 §7.1); trailers are ignored.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or(HttpError::BadBody)?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| HttpError::BadBody)?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| HttpError::BadBody)?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        // Before any arithmetic on it: the size is the peer's, up to 16 hex digits.
        if size > MAX_MESSAGE {
            return Err(HttpError::TooLarge);
        }
        if rest.len() < size + 2 || &rest[size..size + 2] != b"\r\n" {
            return Err(HttpError::BadBody);
        }
        body.extend_from_slice(&rest[..size]);
        if body.len() > MAX_MESSAGE {
            return Err(HttpError::TooLarge);
        }
        rest = &rest[size + 2..];
    }
}

/// Why a reply is not an answer to our query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// Not a DNS message, or a query instead of a reply.
    #[error("malformed_reply")]
    Malformed,
    /// A reply with another query id.
    #[error("wrong_query_id")]
    WrongId,
    /// A reply to another question.
    #[error("question_mismatch")]
    QuestionMismatch,
    /// DoH: the HTTP status was not 2xx.
    #[error("http_status_{0}")]
    HttpStatus(u16),
    /// DoH: the body is not `application/dns-message` (a block page, a captive portal).
    #[error("wrong_content_type")]
    WrongContentType,
    /// DoH: the HTTP response itself could not be read.
    #[error("{0}")]
    Http(HttpError),
}

/// Is `bytes` a well-formed reply to our query (`id`, `name`, `qtype`)?
pub fn check_reply(bytes: &[u8], id: u16, name: &str, qtype: QueryType) -> Result<ParsedReply, AnswerError> {
    let reply = codec::parse_reply(bytes).map_err(|_| AnswerError::Malformed)?;
    if reply.id != id {
        return Err(AnswerError::WrongId);
    }
    if !reply.answers_query(id, name, qtype) {
        return Err(AnswerError::QuestionMismatch);
    }
    Ok(reply)
}

/// Is this HTTP response a DoH answer to our query? The status, the media type, then the DNS
/// message inside.
pub fn check_doh_response(bytes: &[u8], id: u16, name: &str, qtype: QueryType) -> Result<ParsedReply, AnswerError> {
    let resp = parse_http_response(bytes).map_err(AnswerError::Http)?;
    if !(200..300).contains(&resp.status) {
        return Err(AnswerError::HttpStatus(resp.status));
    }
    if resp.content_type.as_deref() != Some(DNS_MESSAGE) {
        return Err(AnswerError::WrongContentType);
    }
    check_reply(&resp.body, id, name, qtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::dns::codec::testing::reply_to;

    fn query(id: u16) -> Vec<u8> {
        codec::build_query(id, "example.org", QueryType::A).expect("query")
    }

    #[test]
    fn dot_frames_carry_a_big_endian_length() {
        let q = query(0x1234);
        let framed = dot_frame(&q).expect("fits");
        assert_eq!(dot_length([framed[0], framed[1]]), q.len());
        assert_eq!(&framed[2..], &q[..]);
        assert_eq!(dot_length([0x01, 0x00]), 256);
        assert!(dot_frame(&vec![0; MAX_MESSAGE + 1]).is_none());
    }

    #[test]
    fn the_doh_request_is_a_post_of_the_message() {
        let q = query(0);
        let req = doh_request("dns.example", "/dns-query", &q);
        let text = String::from_utf8_lossy(&req);
        assert!(text.starts_with("POST /dns-query HTTP/1.1\r\nHost: dns.example\r\n"), "{text}");
        assert!(text.contains("Content-Type: application/dns-message\r\n"));
        assert!(text.contains(&format!("Content-Length: {}\r\n", q.len())));
        assert!(req.ends_with(&q));
    }

    fn http(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {status}\r\n{headers}\r\n").into_bytes();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn a_doh_answer_with_content_length_or_chunks_is_accepted() {
        let q = query(0);
        let reply = reply_to(&q, 0, &["192.0.2.7".parse().expect("ip")], false);
        let plain =
            http("200 OK", &format!("Content-Type: application/dns-message\r\nContent-Length: {}\r\n", reply.len()), &reply);
        let parsed = check_doh_response(&plain, 0, "example.org", QueryType::A).expect("answer");
        assert_eq!(parsed.answers.len(), 1);
        let mut chunked = format!("{:x}\r\n", 5).into_bytes();
        chunked.extend_from_slice(&reply[..5]);
        chunked.extend_from_slice(format!("\r\n{:x};ext=1\r\n", reply.len() - 5).as_bytes());
        chunked.extend_from_slice(&reply[5..]);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        let chunked =
            http("200 OK", "content-type: Application/DNS-Message; charset=x\r\nTransfer-Encoding: chunked\r\n", &chunked);
        assert_eq!(check_doh_response(&chunked, 0, "example.org", QueryType::A), Ok(parsed));
    }

    #[test]
    fn pages_errors_and_garbage_are_not_answers() {
        let q = query(0);
        let reply = reply_to(&q, 0, &["192.0.2.7".parse().expect("ip")], false);
        let cases: Vec<(Vec<u8>, AnswerError)> = vec![
            (http("403 Forbidden", "Content-Length: 0\r\n", b""), AnswerError::HttpStatus(403)),
            (http("200 OK", "Content-Type: text/html\r\n", b"<html>blocked</html>"), AnswerError::WrongContentType),
            (http("200 OK", "Content-Type: application/dns-message\r\n", b"\x00\x01garbage"), AnswerError::Malformed),
            (
                http("200 OK", "Content-Type: application/dns-message\r\nContent-Length: 900\r\n", &reply),
                AnswerError::Http(HttpError::BadBody),
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Type: x".to_vec(), AnswerError::Http(HttpError::IncompleteHeaders)),
            (b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(), AnswerError::Http(HttpError::BadStatusLine)),
            (
                http("200 OK", "Content-Type: application/dns-message\r\nTransfer-Encoding: chunked\r\n", b"zz\r\n"),
                AnswerError::Http(HttpError::BadBody),
            ),
            (vec![b'x'; MAX_HTTP_RESPONSE + 1], AnswerError::Http(HttpError::TooLarge)),
            (
                http(
                    "200 OK",
                    "Content-Type: application/dns-message\r\nTransfer-Encoding: chunked\r\n",
                    b"ffffffffffffffff\r\n",
                ),
                AnswerError::Http(HttpError::TooLarge),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(check_doh_response(&bytes, 0, "example.org", QueryType::A), Err(want.clone()), "{want}");
        }
    }

    #[test]
    fn a_reply_must_echo_our_id_and_question() {
        let q = query(0x4242);
        let good = reply_to(&q, 0, &["192.0.2.7".parse().expect("ip")], false);
        assert!(check_reply(&good, 0x4242, "example.org", QueryType::A).is_ok());
        assert_eq!(check_reply(&good, 0x4243, "example.org", QueryType::A), Err(AnswerError::WrongId));
        assert_eq!(check_reply(&good, 0x4242, "example.net", QueryType::A), Err(AnswerError::QuestionMismatch));
        assert_eq!(check_reply(&q, 0x4242, "example.org", QueryType::A), Err(AnswerError::Malformed), "a query echoed back");
        assert_eq!(check_reply(b"\x42", 0x4242, "example.org", QueryType::A), Err(AnswerError::Malformed));
    }
}
