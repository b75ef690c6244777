//! Read the SNI out of a TLS ClientHello, from bytes that may still be arriving.
//!
//! A censor decides on the first flight, often before it has all of it: a ClientHello can span
//! several TCP segments or QUIC Initials. So every parser here answers one of three things:
//! the SNI is known ([`Sni::Known`], including "this hello has none"), more bytes are needed
//! ([`Sni::NeedMore`]), or the bytes can never become a ClientHello ([`TlsError`]). The two
//! "not yet" and "never" cases are kept apart by checking every inner length against the
//! *declared* length of its enclosing structure, not against the bytes at hand.
//!
//! Used by the TLS MITM (over the TCP record stream) and the QUIC filter (over CRYPTO data).

/// Largest ClientHello we accept (a censor must bound what it buffers).
pub const MAX_HELLO: usize = 1 << 16;
const HANDSHAKE_RECORD: u8 = 0x16;
const CLIENT_HELLO: u8 = 0x01;
const EXT_SERVER_NAME: usize = 0x0000;
const MAX_RECORD: usize = 16384 + 2048;

/// What is known about the SNI so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sni {
    /// Decided: the host name, or `None` if the ClientHello has none.
    Known(Option<String>),
    /// The bytes so far are a valid prefix; the SNI is not in them yet.
    NeedMore,
}

/// Why bytes can never be a ClientHello we can read an SNI from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The stream does not start with a TLS handshake record.
    #[error("not a TLS handshake record")]
    NotHandshake,
    /// The first handshake message is not a ClientHello.
    #[error("handshake message type {0}, not ClientHello")]
    NotClientHello(u8),
    /// An inner length overruns its container, or there are trailing bytes.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    /// Larger than [`MAX_HELLO`].
    #[error("ClientHello larger than {MAX_HELLO} bytes")]
    TooLarge,
    /// The host name is not a plausible DNS name.
    #[error("server_name is not a host name")]
    BadServerName,
}

/// What is known about a ClientHello's extension types so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extensions {
    /// Decided: every extension type, in the order sent (empty if the hello has none).
    Known(Vec<u16>),
    /// The bytes so far are a valid prefix of a ClientHello not yet complete.
    NeedMore,
}

/// The SNI from a TLS record stream (what a TCP client sends first).
pub fn record_stream_sni(stream: &[u8]) -> Result<Sni, TlsError> {
    client_hello_sni(&record_payloads(stream)?)
}

/// The extension types from a TLS record stream: unlike the SNI, known only once the whole
/// ClientHello has arrived (an ECH censor keys on 0xfe0d, which may sit anywhere).
pub fn record_stream_extensions(stream: &[u8]) -> Result<Extensions, TlsError> {
    match read_extension_types(&record_payloads(stream)?) {
        Ok(types) => Ok(Extensions::Known(types)),
        Err(Short::NeedMore) => Ok(Extensions::NeedMore),
        Err(Short::Fail(e)) => Err(e),
    }
}

/// The handshake-layer bytes carried by the TLS records at hand.
fn record_payloads(stream: &[u8]) -> Result<Vec<u8>, TlsError> {
    let mut handshake = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        if rest[0] != HANDSHAKE_RECORD {
            return Err(if handshake.is_empty() { TlsError::NotHandshake } else { TlsError::Malformed("record type") });
        }
        let Some(header) = rest.get(..5) else { break };
        if header[1] != 0x03 {
            return Err(TlsError::NotHandshake);
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > MAX_RECORD {
            return Err(TlsError::Malformed("record length"));
        }
        let body = &rest[5..];
        let available = len.min(body.len());
        handshake.extend_from_slice(&body[..available]);
        rest = &body[available..];
    }
    Ok(handshake)
}

/// The SNI from the handshake-layer bytes (a QUIC CRYPTO stream, or TLS records' payloads).
pub fn client_hello_sni(handshake: &[u8]) -> Result<Sni, TlsError> {
    match read_hello(handshake) {
        Ok(sni) => Ok(Sni::Known(sni)),
        Err(Short::NeedMore) => Ok(Sni::NeedMore),
        Err(Short::Fail(e)) => Err(e),
    }
}

fn read_hello(buf: &[u8]) -> Result<Option<String>, Short> {
    let Some(mut exts) = hello_extensions(buf)? else {
        return Ok(None); // TLS 1.2 allows a hello without extensions
    };
    while !exts.done() {
        let ext_type = exts.u16("extension type")?;
        let len = exts.u16("extension length")?;
        let body = exts.sub(len, "extension")?;
        if ext_type == EXT_SERVER_NAME {
            return server_name(body);
        }
    }
    exts.require_all()?;
    Ok(None)
}

fn read_extension_types(buf: &[u8]) -> Result<Vec<u16>, Short> {
    let mut types = Vec::new();
    let Some(mut exts) = hello_extensions(buf)? else { return Ok(types) };
    while !exts.done() {
        let ext_type = exts.u16("extension type")?;
        let len = exts.u16("extension length")?;
        exts.sub(len, "extension")?;
        types.push(u16::try_from(ext_type).map_err(|_| Short::Fail(TlsError::Malformed("extension type")))?);
    }
    exts.require_all()?;
    Ok(types)
}

/// The ClientHello's extensions block, or `None` if it has none.
fn hello_extensions(buf: &[u8]) -> Result<Option<Reader<'_>>, Short> {
    let mut top = Reader { buf, pos: 0, limit: usize::MAX };
    let msg_type = top.u8("handshake type")?;
    if msg_type != CLIENT_HELLO {
        return Err(Short::Fail(TlsError::NotClientHello(msg_type)));
    }
    let len = top.u24("handshake length")?;
    if len > MAX_HELLO {
        return Err(Short::Fail(TlsError::TooLarge));
    }
    let mut hello = top.sub(len, "ClientHello")?;
    hello.skip(2 + 32, "version and random")?;
    let session_id = hello.u8("session id length")?;
    if session_id > 32 {
        return Err(Short::Fail(TlsError::Malformed("session id length")));
    }
    hello.skip(usize::from(session_id), "session id")?;
    let suites = hello.u16("cipher suites length")?;
    hello.skip(suites, "cipher suites")?;
    let compression = hello.u8("compression length")?;
    hello.skip(usize::from(compression), "compression methods")?;
    if hello.done() {
        return Ok(None);
    }
    let ext_len = hello.u16("extensions length")?;
    let exts = hello.sub(ext_len, "extensions")?;
    if !hello.done() {
        return Err(Short::Fail(TlsError::Malformed("bytes after extensions")));
    }
    Ok(Some(exts))
}

fn server_name(mut ext: Reader<'_>) -> Result<Option<String>, Short> {
    let list_len = ext.u16("server name list length")?;
    let mut list = ext.sub(list_len, "server name list")?;
    while !list.done() {
        let name_type = list.u8("name type")?;
        let len = list.u16("name length")?;
        let name = list.take(len, "host name")?;
        if name_type == 0 {
            return host_name(name).map(Some).ok_or(Short::Fail(TlsError::BadServerName));
        }
    }
    Ok(None)
}

fn host_name(bytes: &[u8]) -> Option<String> {
    let plausible = !bytes.is_empty()
        && bytes.len() <= 255
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    plausible.then(|| bytes.iter().map(|&b| char::from(b)).collect())
}

/// Why a read stopped: not enough bytes *yet*, or never.
enum Short {
    NeedMore,
    Fail(TlsError),
}

/// A cursor over the bytes at hand (`buf`) inside a structure declared to end at `limit`,
/// which may lie beyond them.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    limit: usize,
}

impl<'a> Reader<'a> {
    fn advance(&mut self, n: usize, what: &'static str) -> Result<usize, Short> {
        let start = self.pos;
        let end = start.checked_add(n).filter(|&end| end <= self.limit).ok_or(Short::Fail(TlsError::Malformed(what)))?;
        self.pos = end;
        Ok(start)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Short> {
        let start = self.advance(n, what)?;
        self.buf.get(start..self.pos).ok_or(Short::NeedMore)
    }

    fn skip(&mut self, n: usize, what: &'static str) -> Result<(), Short> {
        self.advance(n, what).map(|_| ())
    }

    /// The next `n` bytes as a nested structure; they need not have arrived yet.
    fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, Short> {
        let start = self.advance(n, what)?;
        Ok(Reader { buf: self.buf, pos: start, limit: self.pos })
    }

    fn done(&self) -> bool {
        self.pos >= self.limit
    }

    /// Every byte up to the limit has arrived.
    fn require_all(&self) -> Result<(), Short> {
        if self.limit <= self.buf.len() { Ok(()) } else { Err(Short::NeedMore) }
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Short> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<usize, Short> {
        let b = self.take(2, what)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u24(&mut self, what: &'static str) -> Result<usize, Short> {
        let b = self.take(3, what)?;
        Ok(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ClientHello handshake message with `sni` (if any) and a padding extension of
    /// `padding` bytes *before* it, so that the SNI can sit late in the message.
    pub(crate) fn client_hello(sni: Option<&str>, padding: usize) -> Vec<u8> {
        let mut exts = Vec::new();
        exts.extend_from_slice(&[0x00, 0x15]);
        exts.extend_from_slice(&(padding as u16).to_be_bytes());
        exts.extend(std::iter::repeat_n(0u8, padding));
        if let Some(name) = sni {
            let n = name.len() as u16;
            exts.extend_from_slice(&[0x00, 0x00]);
            exts.extend_from_slice(&(n + 5).to_be_bytes());
            exts.extend_from_slice(&(n + 3).to_be_bytes());
            exts.push(0);
            exts.extend_from_slice(&n.to_be_bytes());
            exts.extend_from_slice(name.as_bytes());
        }
        exts.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]); // supported_versions
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0x11; 32]);
        body.extend_from_slice(&[0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut msg = vec![CLIENT_HELLO];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        msg
    }

    pub(crate) fn records(handshake: &[u8], record_size: usize) -> Vec<u8> {
        handshake
            .chunks(record_size)
            .flat_map(|chunk| {
                let mut r = vec![HANDSHAKE_RECORD, 0x03, 0x01];
                r.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
                r.extend_from_slice(chunk);
                r
            })
            .collect()
    }

    #[test]
    fn finds_the_sni_in_a_hello_and_in_records() {
        let hello = client_hello(Some("Blocked.Example"), 10);
        assert_eq!(client_hello_sni(&hello), Ok(Sni::Known(Some("Blocked.Example".into()))));
        assert_eq!(record_stream_sni(&records(&hello, 16384)), Ok(Sni::Known(Some("Blocked.Example".into()))));
        assert_eq!(record_stream_sni(&records(&hello, 7)), Ok(Sni::Known(Some("Blocked.Example".into()))));
    }

    #[test]
    fn a_hello_without_sni_is_known_only_once_complete() {
        let hello = client_hello(None, 50);
        assert_eq!(client_hello_sni(&hello), Ok(Sni::Known(None)));
        for len in 0..hello.len() {
            assert_eq!(client_hello_sni(&hello[..len]), Ok(Sni::NeedMore), "prefix {len}");
        }
    }

    #[test]
    fn every_prefix_before_the_sni_needs_more_and_after_it_is_known() {
        let hello = client_hello(Some("a.example"), 300);
        let sni_end = hello.windows(9).position(|w| w == b"a.example").expect("sni") + 9;
        for len in 0..hello.len() {
            let want = if len < sni_end { Sni::NeedMore } else { Sni::Known(Some("a.example".into())) };
            assert_eq!(client_hello_sni(&hello[..len]), Ok(want.clone()), "prefix {len}");
            assert_eq!(record_stream_sni(&records(&hello[..len], 100)), Ok(want), "records prefix {len}");
        }
    }

    #[test]
    fn other_protocols_and_lies_are_errors() {
        assert_eq!(record_stream_sni(b"GET / HTTP/1.1\r\n"), Err(TlsError::NotHandshake));
        assert_eq!(record_stream_sni(b"\x16\x03"), Ok(Sni::NeedMore));
        let mut server_hello = client_hello(Some("x.example"), 0);
        server_hello[0] = 0x02;
        assert_eq!(client_hello_sni(&server_hello), Err(TlsError::NotClientHello(2)));
        // A server_name extension longer than the extensions block.
        let mut lying = client_hello(Some("x.example"), 0);
        let pos = lying.windows(2).rposition(|w| w == [0x00, 0x0e]).expect("sni ext len");
        lying[pos] = 0x40;
        assert!(matches!(client_hello_sni(&lying), Err(TlsError::Malformed(_))));
        assert_eq!(client_hello_sni(&client_hello(Some("bad name"), 0)), Err(TlsError::BadServerName));
        assert_eq!(client_hello_sni(&[0x01, 0xff, 0xff, 0xff]), Err(TlsError::TooLarge));
    }

    #[test]
    fn extension_types_are_known_only_once_the_hello_is_whole() {
        let hello = client_hello(Some("x.example"), 7);
        let want = Extensions::Known(vec![0x0015, 0x0000, 0x002b]);
        assert_eq!(record_stream_extensions(&records(&hello, 30)), Ok(want));
        for len in [0, 5, 60, hello.len() - 1] {
            assert_eq!(record_stream_extensions(&records(&hello[..len], 30)), Ok(Extensions::NeedMore), "prefix {len}");
        }
        let mut bare = client_hello(None, 0);
        bare.truncate(bare.len() - 2 - 11); // drop the extensions block: padding(4) + versions(7)
        let body_len = bare.len() - 4;
        bare[1..4].copy_from_slice(&(body_len as u32).to_be_bytes()[1..]);
        assert_eq!(record_stream_extensions(&records(&bare, 100)), Ok(Extensions::Known(vec![])));
    }

    /// What the engine's TLS runner writes first, captured by a loopback server that reads one
    /// whole ClientHello and hangs up.
    async fn first_flight(ech: vantage_engine::runner::ech::Ech) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        use vantage_engine::runner::tls::{DataPhase, handshake_offering};
        use vantage_engine::runner::{StepContext, verify::TrustAnchors};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while matches!(record_stream_extensions(&seen), Ok(Extensions::NeedMore)) {
                let n = conn.read(&mut buf).await.expect("read");
                assert!(n > 0, "client closed before a whole ClientHello");
                seen.extend_from_slice(&buf[..n]);
            }
            seen
        });
        let ctx = StepContext::new(vantage_measurement::Vantage::Probe, std::time::Duration::from_secs(5));
        let role = vantage_measurement::Role::Target;
        let obs = handshake_offering(&ctx, role, addr, "blocked.example", &TrustAnchors::empty(), DataPhase::Skip, ech).await;
        assert_eq!(obs.len(), 2, "connect and handshake observations");
        assert!(obs[1].failure.is_some(), "the server hung up: the handshake cannot complete");
        server.await.expect("server")
    }

    #[tokio::test]
    async fn the_tls_runner_sends_grease_ech_on_the_wire_and_the_control_does_not() {
        use vantage_engine::runner::ech::{ECH_EXTENSION, Ech};
        for (ech, want) in [(Ech::Grease, true), (Ech::Control, false), (Ech::Off, false)] {
            let wire = first_flight(ech).await;
            assert_eq!(record_stream_sni(&wire), Ok(Sni::Known(Some("blocked.example".into()))), "{ech:?}");
            let Ok(Extensions::Known(types)) = record_stream_extensions(&wire) else { panic!("{ech:?}: no whole hello") };
            assert_eq!(types.contains(&ECH_EXTENSION), want, "{ech:?}: {types:04x?}");
        }
    }

    #[test]
    fn mutations_and_noise_never_panic() {
        let hello = records(&client_hello(Some("blocked.example"), 40), 64);
        let mut seed = 0x0bad_cafe;
        for _ in 0..5000 {
            let noise = crate::censor::noise(&mut seed, 200);
            let _ = record_stream_sni(&noise);
            let _ = record_stream_extensions(&noise);
            let _ = client_hello_sni(&noise);
            let mut mutated = hello.clone();
            for pair in noise.chunks(2).take(4) {
                if let [pos, value] = pair {
                    let i = usize::from(*pos) % mutated.len();
                    mutated[i] = *value;
                }
            }
            let _ = record_stream_sni(&mutated);
            let _ = record_stream_extensions(&mutated);
            let _ = client_hello_sni(&mutated[5..]);
        }
    }
}
