//! Turning an ingest request body into lines, with hard memory bounds.
//!
//! Everything here assumes a hostile sender. The body is read chunk by chunk against a cap (the
//! `Content-Length` header is a hint, not a promise). A gzip body is inflated through a reader that
//! stops one byte past the decompressed cap, so a 10 KiB "bomb" that would inflate to gigabytes
//! costs at most the cap. Buffers grow by doubling but never past their cap, so the cap is the
//! allocation bound, not half of it.
//!
//! Limits (the probe's uploader batches below them):
//! - compressed body: [`MAX_COMPRESSED_BYTES`];
//! - decompressed (or uncompressed) body: [`MAX_DECOMPRESSED_BYTES`];
//! - non-empty lines per batch: [`MAX_LINES`]; each line's own limit is `parse_line`'s.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use flate2::read::MultiGzDecoder;
use futures::StreamExt;

use crate::error::ApiError;

/// The largest gzip-compressed body accepted.
pub const MAX_COMPRESSED_BYTES: usize = 8 * 1024 * 1024;
/// The largest body after decompression (or an uncompressed body).
pub const MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;
/// The most non-empty lines in one batch.
pub const MAX_LINES: usize = 10_000;
/// After a body has proved too large, how much more of it is read and thrown away so that an
/// honest client, still sending, gets to read the 413 instead of a connection reset.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;
/// The longest the drain may take.
const DRAIN_TIME: Duration = Duration::from_secs(10);
/// The longest a whole body may take to arrive. A probe's batch is a few hundred KiB; this lets
/// even the largest accepted body through a slow link while a sender that trickles bytes can't
/// hold an ingest slot for ever.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(120);
/// The most memory reserved up front from a `Content-Length` header (the rest grows as bytes
/// actually arrive, so a header alone can't make the collector allocate the full cap).
const INITIAL_RESERVE: usize = 1024 * 1024;
/// Inflate in chunks of this size.
const INFLATE_CHUNK: usize = 64 * 1024;

/// How the body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Plain NDJSON.
    Identity,
    /// gzip (RFC 1952), possibly several members.
    Gzip,
}

impl Encoding {
    /// The most bytes of body accepted in this encoding.
    pub fn body_cap(self) -> usize {
        match self {
            Self::Identity => MAX_DECOMPRESSED_BYTES,
            Self::Gzip => MAX_COMPRESSED_BYTES,
        }
    }
}

vantage_measurement::closed_set! {
    /// The bounded reason a whole batch was refused: the `reason` of the error body and of
    /// `vantage_collector_rejected_total` (beside the per-line [`RejectionCode`]s).
    ///
    /// [`RejectionCode`]: vantage_measurement::RejectionCode
    pub enum BatchRejection {
        /// The body, or what it inflates to, is larger than allowed.
        BodyTooLarge => "body_too_large",
        /// More than [`MAX_LINES`] lines.
        TooManyLines => "too_many_lines",
        /// A `Content-Encoding` other than gzip or identity.
        UnsupportedEncoding => "unsupported_encoding",
        /// Damaged gzip, or not UTF-8.
        BadEncoding => "bad_encoding",
        /// The body did not arrive whole, or not in time.
        BodyUnreadable => "body_unreadable",
        /// The signature headers are half present, or the signature does not hold.
        BadSignature => "bad_signature",
    }
}

/// Why a whole batch was refused. Nothing of it is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// A `Content-Encoding` other than gzip or identity.
    #[error("Content-Encoding {0:?} is not supported; send gzip or no encoding")]
    UnsupportedEncoding(String),
    /// The body, as sent, is larger than allowed.
    #[error("the {what} is larger than {limit} bytes; send smaller batches")]
    TooLarge {
        /// Which size: `body` or `gzip body`.
        what: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
    /// The gzip body inflates beyond the limit.
    #[error("the gzip body inflates to more than {limit} bytes; send smaller batches")]
    InflatesTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The gzip stream is damaged.
    #[error("the body is not valid gzip: {0}")]
    BadGzip(String),
    /// The (decompressed) body is not UTF-8.
    #[error("the body is not UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// Too many lines.
    #[error("the batch has more than {MAX_LINES} lines; send smaller batches")]
    TooManyLines,
    /// The connection failed while the body was read.
    #[error("the body could not be read: {0}")]
    Unreadable(String),
    /// The body did not arrive within [`BODY_TIMEOUT`].
    #[error("the body did not arrive within {} seconds", BODY_TIMEOUT.as_secs())]
    TooSlow,
    /// The batch claims a signer but the signature does not hold.
    #[error("bad batch signature: {0}")]
    BadSignature(#[from] vantage_measurement::wire::SignatureError),
}

impl PayloadError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge { .. } | Self::InflatesTooLarge { .. } | Self::TooManyLines => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadGzip(_) | Self::NotUtf8 { .. } | Self::Unreadable(_) => StatusCode::BAD_REQUEST,
            Self::TooSlow => StatusCode::REQUEST_TIMEOUT,
            Self::BadSignature(_) => StatusCode::UNAUTHORIZED,
        }
    }

    /// The bounded reason code.
    pub fn code(&self) -> BatchRejection {
        match self {
            Self::UnsupportedEncoding(_) => BatchRejection::UnsupportedEncoding,
            Self::TooLarge { .. } | Self::InflatesTooLarge { .. } => BatchRejection::BodyTooLarge,
            Self::BadGzip(_) | Self::NotUtf8 { .. } => BatchRejection::BadEncoding,
            Self::TooManyLines => BatchRejection::TooManyLines,
            Self::Unreadable(_) | Self::TooSlow => BatchRejection::BodyUnreadable,
            Self::BadSignature(_) => BatchRejection::BadSignature,
        }
    }
}

/// A refused batch is always the client's fault: a 4xx with its bounded reason.
impl From<&PayloadError> for ApiError {
    fn from(e: &PayloadError) -> Self {
        ApiError::client(e.status(), Some(e.code().as_str()), e.to_string())
    }
}

/// The body's encoding from its `Content-Encoding` header.
pub fn encoding(headers: &HeaderMap) -> Result<Encoding, PayloadError> {
    let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
    let Some(value) = values.next() else { return Ok(Encoding::Identity) };
    if values.next().is_some() {
        return Err(PayloadError::UnsupportedEncoding("several encodings".into()));
    }
    let text = value.to_str().unwrap_or("").trim();
    match text.to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        "identity" | "" => Ok(Encoding::Identity),
        _ => Err(PayloadError::UnsupportedEncoding(text.chars().take(40).collect())),
    }
}

/// Read `body` into memory, refusing more than the encoding's cap or taking longer than
/// [`BODY_TIMEOUT`].
pub async fn read_capped(body: Body, headers: &HeaderMap, encoding: Encoding) -> Result<Vec<u8>, PayloadError> {
    tokio::time::timeout(BODY_TIMEOUT, read_capped_untimed(body, headers, encoding)).await.map_err(|_| PayloadError::TooSlow)?
}

async fn read_capped_untimed(body: Body, headers: &HeaderMap, encoding: Encoding) -> Result<Vec<u8>, PayloadError> {
    let cap = encoding.body_cap();
    let what = match encoding {
        Encoding::Identity => "body",
        Encoding::Gzip => "gzip body",
    };
    let too_large = PayloadError::TooLarge { what, limit: cap };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > (cap + DRAIN_BYTES) as u64) {
        // Hopeless: refuse before reading a byte.
        return Err(too_large);
    }
    let mut stream = body.into_data_stream();
    let reserve = declared.map_or(INFLATE_CHUNK, |len| usize::try_from(len).unwrap_or(cap));
    let mut buffer = Vec::with_capacity(reserve.min(cap).min(INITIAL_RESERVE));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| PayloadError::Unreadable(e.to_string()))?;
        if !append_capped(&mut buffer, &chunk, cap) {
            drop(buffer);
            let _ = tokio::time::timeout(DRAIN_TIME, drain(&mut stream, DRAIN_BYTES)).await;
            return Err(too_large);
        }
    }
    Ok(buffer)
}

/// Discard up to `limit` more bytes of the body.
async fn drain(stream: &mut axum::body::BodyDataStream, limit: usize) {
    let mut discarded = 0;
    while discarded < limit {
        match stream.next().await {
            Some(Ok(chunk)) => discarded += chunk.len(),
            _ => return,
        }
    }
}

/// Decompress (if gzip) and check UTF-8. CPU-bound: call from a blocking thread.
pub fn decode(raw: Vec<u8>, encoding: Encoding) -> Result<String, PayloadError> {
    let bytes = match encoding {
        Encoding::Identity => raw,
        Encoding::Gzip => inflate_capped(&raw, MAX_DECOMPRESSED_BYTES)?,
    };
    String::from_utf8(bytes).map_err(|e| PayloadError::NotUtf8 { offset: e.utf8_error().valid_up_to() })
}

/// The non-empty lines of `text` with their 1-based line numbers (a trailing `\r` is dropped).
pub fn lines(text: &str) -> Result<Vec<(usize, &str)>, PayloadError> {
    let mut out = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        if out.len() == MAX_LINES {
            return Err(PayloadError::TooManyLines);
        }
        out.push((index + 1, line));
    }
    Ok(out)
}

/// Inflate every gzip member of `compressed`, refusing more than `cap` bytes of output (without
/// allocating past it). [`decode`] calls it with [`MAX_DECOMPRESSED_BYTES`]; it is public so the
/// `ingest_payload` fuzz target can check the cap with a small one.
pub fn inflate_capped(compressed: &[u8], cap: usize) -> Result<Vec<u8>, PayloadError> {
    let mut decoder = MultiGzDecoder::new(compressed);
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(cap));
    let mut chunk = vec![0u8; INFLATE_CHUNK];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(PayloadError::BadGzip(e.to_string())),
        };
        if !append_capped(&mut out, &chunk[..n], cap) {
            return Err(PayloadError::InflatesTooLarge { limit: cap });
        }
    }
}

/// Append `data` unless that would pass `cap`; growth doubles but never allocates past `cap`.
fn append_capped(buffer: &mut Vec<u8>, data: &[u8], cap: usize) -> bool {
    let needed = buffer.len() + data.len();
    if needed > cap {
        return false;
    }
    if needed > buffer.capacity() {
        let target = buffer.capacity().saturating_mul(2).max(needed).min(cap);
        buffer.reserve_exact(target - buffer.len());
    }
    buffer.extend_from_slice(data);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(data).expect("compress");
        encoder.finish().expect("finish")
    }

    #[test]
    fn every_refusal_is_the_clients_fault_with_its_reason() {
        use vantage_measurement::wire::SignatureError;
        let refusals = [
            PayloadError::UnsupportedEncoding("br".into()),
            PayloadError::TooLarge { what: "body", limit: 1 },
            PayloadError::InflatesTooLarge { limit: 1 },
            PayloadError::BadGzip("damaged".into()),
            PayloadError::NotUtf8 { offset: 0 },
            PayloadError::TooManyLines,
            PayloadError::Unreadable("connection reset".into()),
            PayloadError::TooSlow,
            PayloadError::BadSignature(SignatureError::Mismatch),
        ];
        for e in refusals {
            let expected = ApiError::Client { status: e.status(), reason: Some(e.code().as_str()), message: e.to_string() };
            assert!(e.status().is_client_error(), "{e}");
            assert_eq!(ApiError::from(&e), expected);
        }
    }

    #[test]
    fn content_encoding_is_gzip_identity_or_refused() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_ENCODING, value.parse().expect("header"));
            encoding(&headers)
        };
        assert_eq!(encoding(&HeaderMap::new()), Ok(Encoding::Identity));
        assert_eq!(with("gzip"), Ok(Encoding::Gzip));
        assert_eq!(with("GZIP"), Ok(Encoding::Gzip));
        assert_eq!(with("identity"), Ok(Encoding::Identity));
        let refused = with("br").expect_err("brotli is not accepted");
        assert_eq!(refused.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn a_bomb_stops_at_the_cap_without_allocating_past_it() {
        let bomb = gzip(&vec![b'a'; 4 * 1024 * 1024]);
        assert!(bomb.len() < 16 * 1024, "the bomb is small: {}", bomb.len());
        let err = inflate_capped(&bomb, 1024 * 1024).expect_err("over the cap");
        assert_eq!(err, PayloadError::InflatesTooLarge { limit: 1024 * 1024 });
        assert_eq!(err.code(), BatchRejection::BodyTooLarge);
    }

    #[test]
    fn concatenated_gzip_members_all_inflate() {
        let mut two = gzip(b"one\n");
        two.extend(gzip(b"two\n"));
        assert_eq!(decode(two, Encoding::Gzip).expect("valid"), "one\ntwo\n");
    }

    #[test]
    fn damaged_gzip_and_non_utf8_are_bad_encoding() {
        let err = decode(b"not gzip at all".to_vec(), Encoding::Gzip).expect_err("damaged");
        assert!(matches!(err, PayloadError::BadGzip(_)));
        let err = decode(vec![b'{', 0xff, b'}'], Encoding::Identity).expect_err("not UTF-8");
        assert_eq!(err, PayloadError::NotUtf8 { offset: 1 });
        assert_eq!(err.code(), BatchRejection::BadEncoding);
    }

    #[test]
    fn append_capped_never_grows_past_the_cap() {
        let mut buffer = Vec::new();
        for _ in 0..10 {
            assert!(append_capped(&mut buffer, &[0; 100], 1000));
            assert!(buffer.capacity() <= 1000);
        }
        assert!(!append_capped(&mut buffer, &[0], 1000));
    }

    #[test]
    fn lines_skip_blanks_keep_physical_numbers_and_are_bounded() {
        let text = "a\n\n  \r\nb\r\nc";
        assert_eq!(lines(text).expect("few lines"), vec![(1, "a"), (4, "b"), (5, "c")]);
        let many = "x\n".repeat(MAX_LINES);
        assert_eq!(lines(&many).expect("exactly the limit").len(), MAX_LINES);
        let too_many = "x\n".repeat(MAX_LINES + 1);
        assert_eq!(lines(&too_many), Err(PayloadError::TooManyLines));
    }
}
