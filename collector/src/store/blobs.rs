//! Large repeated values stored once: a measurement line split into a skeleton and
//! content-addressed blobs, and joined back byte for byte.
//!
//! Why: a TLS measurement carries the server's certificate chain (base64 DER, 2–6 KB) in each of
//! its handshakes, and thousands of probes measure the same hundred targets, so almost every stored
//! byte would be a copy of a chain already stored. [`split`] takes the canonical line
//! ([`Measurement::to_json_line`](vantage_measurement::Measurement::to_json_line)) and cuts out
//! every value long enough to be worth a reference:
//!
//! - a JSON string of at least [`MIN_BLOB_LEN`] bytes (quotes and escapes included), or
//! - a JSON array made only of strings, at least [`MIN_BLOB_LEN`] bytes long (a whole
//!   `peer_certificates` chain becomes one blob, not one per certificate).
//!
//! Each cut value's exact text is a [`Blob`] named by its SHA-256; the skeleton keeps the rest of
//! the text with a reference in its place. [`join`] splices the blobs back, so the line a reader
//! gets is the very text that was split: nothing is parsed or re-serialised, and the rule above
//! decides only what is *shared*, never what comes back. The backends store the skeleton in the
//! row and each blob once (SQLite: `store/sqlite/`; see `docs/collector.md` § Store).
//!
//! Skeleton formats (bytes, opaque to the backends), told apart by the first byte:
//!
//! - [`FORMAT_PLAIN`]: the line's text in which each cut value is replaced by [`MARKER`] (a NUL
//!   byte, which never occurs in JSON text: control characters inside strings are always escaped)
//!   followed by the blob's 32-byte hash.
//! - [`FORMAT_ZSTD`] (what [`split`] writes): the plain text's length (LEB128), then that text
//!   compressed with zstd against [`DICTIONARY`], a built-in sample of the measurement schema.
//!   What is left after the chains are cut is ~2 KB of JSON whose keys and closed-set values
//!   repeat in every row; with the dictionary a row pays mostly for what is its own (id, times,
//!   timings, hashes), about a fifth of the text, for a few microseconds of CPU per row. zstd
//!   checksums nothing here; SQLite and PostgreSQL already guard their pages.
//!
//! A format, and the dictionary of [`FORMAT_ZSTD`], never change once shipped: a new one gets a
//! new first byte, and old skeletons stay readable.
//!
//! Pure: no database, no I/O. The store hands [`join`] a [`BlobSource`] that looks hashes up.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::StoreError;

/// The shortest value (in bytes of JSON text) cut out into a blob. A reference costs 33 bytes in
/// the skeleton and a lookup on read, so only values well above that are worth sharing: whole
/// certificates and chains (> 1 KB), never ids, names or reasons.
pub const MIN_BLOB_LEN: usize = 256;
// `hash_of` keys its memory by the last 16 bytes.
const _: () = assert!(MIN_BLOB_LEN >= 16);
/// The first byte of a skeleton in the plain format.
pub const FORMAT_PLAIN: u8 = 0;
/// The first byte of a skeleton compressed with zstd against [`DICTIONARY`].
pub const FORMAT_ZSTD: u8 = 1;
/// zstd's level for skeletons: its fastest, the dictionary does the work.
const ZSTD_LEVEL: i32 = 1;
/// The longest plain skeleton a compressed one may claim (a damaged length can't ask for more).
const MAX_SKELETON_LEN: usize = 16 << 20;

/// The dictionary of [`FORMAT_ZSTD`]: the schema's keys in canonical order and the values every
/// row repeats, most frequent last (zstd finds near matches cheapest). Frozen: rows depend on it.
pub const DICTIONARY: &str = concat!(
    r#"{"op":"resolve","role":"target","vantage":"doh","failure":"dns_nxdomain_error","raw":{"space":"dns_rcode","code":3,"name":"NXDOMAIN"},"#,
    r#""detail":{"kind":"dns","engine":"udp","resolver":"","query_name":"","query_type":"A","replies":[{"after_ms":,"rcode":"NOERROR","answers":[{"ip":"","ttl":}],"has_soa":false,"ip_ttl":}]}},"#,
    r#""detail":{"kind":"vpn","protocol":"openvpn","mode":"tls_crypt","stage_reached":"handshake","packets_sent":,"packets_received":,"first_packet_len":,"reply":"hard_reset_server_v2"}},"#,
    r#""trials":{"blocked":0,"total":3}"evidence":["target sni: connection_reset in tls_handshake; control sni completed"]"#,
    r#""failure":"generic_timeout_error","failure":"eof_error","failure":"ssl_unknown_authority","verify_failure":"ssl_invalid_hostname","#,
    r#""raw":{"space":"errno","code":104,"name":"ECONNRESET"},"raw":{"space":"tls_alert","code":40,"name":"HandshakeFailure"},"#,
    r#""version":"TLSv1_2","cipher_suite":"TLS13_AES_256_GCM_SHA384","alpn":"h2","#,
    r#""verdict":{"status":"blocked","mechanism":"tls.reset_after_clienthello","evidence":[""]}}"#,
    r#"{"op":"data","role":"target","vantage":"probe","t_start_ms":,"duration_ms":,"peer":":443","sni":"","failure":null,"detail":{"kind":"data","bytes_sent":,"bytes_received":,"last_byte_ms":}},"#,
    r#"{"id":"0190a000-0000-7000-8000-000000000000","schema_version":1,"software":{"name":"vantage-probe","version":"0.1.0","platform":"linux-x86_64"},"#,
    r#""probe":{"cc":"","asn":,"network_type":"fixed","network_epoch":1},"started_at":"2025-01-01T00:00:00Z","runtime_ms":,"test":"tls","#,
    r#""target":{"name":"","domain":".com","address":"","port":443,"transport":"tcp","control_sni":".com"},"controls":["control_sni","helper"],"observations":["#,
    r#"{"op":"connect","role":"control","vantage":"probe","t_start_ms":,"duration_ms":,"peer":":443","failure":null},"#,
    r#"{"op":"tls_handshake","role":"control","vantage":"probe","t_start_ms":,"duration_ms":,"peer":":443","sni":"","failure":null,"#,
    r#""detail":{"kind":"tls","version":"TLSv1_3","alpn":"http/1.1","cipher_suite":"TLS13_AES_128_GCM_SHA256","peer_certificates":,"leaf_sha256":"","verified":true}},"#,
    r#"{"op":"connect","role":"target","vantage":"probe","t_start_ms":,"duration_ms":,"peer":":443","failure":null},"#,
    r#"{"op":"tls_handshake","role":"target","vantage":"helper","t_start_ms":,"duration_ms":,"peer":":443","sni":"","failure":null,"#,
    r#""detail":{"kind":"tls","version":"TLSv1_3","alpn":"http/1.1","cipher_suite":"TLS13_AES_128_GCM_SHA256","peer_certificates":,"leaf_sha256":"","verified":true}}],"#,
    r#""verdict":{"status":"ok"}}"#,
);

thread_local! {
    /// One zstd context per thread, each with the dictionary loaded once.
    static ZSTD: std::cell::RefCell<Option<(zstd::bulk::Compressor<'static>, zstd::bulk::Decompressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Run `f` with this thread's zstd contexts (made on first use).
fn with_zstd<T>(
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>, &mut zstd::bulk::Decompressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    ZSTD.with(|cell| {
        let mut contexts = cell.borrow_mut();
        if contexts.is_none() {
            let mut compressor = zstd::bulk::Compressor::with_dictionary(ZSTD_LEVEL, DICTIONARY.as_bytes())?;
            compressor.include_checksum(false)?;
            compressor.include_contentsize(false)?;
            compressor.include_dictid(false)?;
            *contexts = Some((compressor, zstd::bulk::Decompressor::with_dictionary(DICTIONARY.as_bytes())?));
        }
        let (compressor, decompressor) = contexts.as_mut().ok_or_else(|| std::io::Error::other("no zstd context"))?;
        f(compressor, decompressor)
    })
}
/// Starts a reference inside a skeleton: the marker, then the 32-byte SHA-256 of the blob.
pub const MARKER: u8 = 0;
/// Bytes of one reference in a skeleton.
const REFERENCE_LEN: usize = 1 + 32;

/// A SHA-256 hash naming a blob.
pub type Hash = [u8; 32];

/// One value cut out of a line: its exact JSON text, named by its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// SHA-256 of `bytes`.
    pub hash: Hash,
    /// The value's JSON text, quotes and brackets included.
    pub bytes: Vec<u8>,
}

/// A line as stored: the skeleton for the row, and the blobs it references (each hash once, in
/// order of first reference).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// The line with each cut value replaced by a reference (see the module doc).
    pub skeleton: Vec<u8>,
    /// The cut values, distinct by hash.
    pub blobs: Vec<Blob>,
}

/// Where [`join`] finds a blob by its hash: a map, or a database lookup with a cache.
pub trait BlobSource {
    /// The blob named `hash`, or `None` if there is none.
    fn blob(&mut self, hash: &Hash) -> Result<Option<&[u8]>, StoreError>;
}

impl BlobSource for HashMap<Hash, Vec<u8>> {
    fn blob(&mut self, hash: &Hash) -> Result<Option<&[u8]>, StoreError> {
        Ok(self.get(hash).map(Vec::as_slice))
    }
}

/// Split a canonical measurement line into its skeleton and blobs. Any text without a NUL byte
/// splits (JSON or not: what is not recognised stays in the skeleton); [`join`] gives it back.
pub fn split(line: &str) -> Result<Split, StoreError> {
    let text = line.as_bytes();
    if text.contains(&MARKER) {
        return Err(StoreError::Encode("a measurement line holds a NUL byte".into()));
    }
    let mut skeleton = Vec::with_capacity(text.len().min(1024) + 1);
    skeleton.push(FORMAT_PLAIN);
    let mut blobs: Vec<Blob> = Vec::new();
    let mut copied = 0;
    let mut at = 0;
    // Only a string or an array can be cut: jump from one opening to the next.
    while let Some(found) = memchr::memchr2(b'"', b'[', &text[at..]) {
        at += found;
        let value_end = match text[at] {
            b'"' => string_end(text, at),
            b'[' => string_array_end(text, at),
            _ => None,
        };
        match value_end {
            Some(end) if end - at >= MIN_BLOB_LEN => {
                let bytes = &text[at..end];
                let hash = hash_of(bytes);
                skeleton.extend_from_slice(&text[copied..at]);
                skeleton.push(MARKER);
                skeleton.extend_from_slice(&hash);
                if !blobs.iter().any(|b| b.hash == hash) {
                    blobs.push(Blob { hash, bytes: bytes.to_vec() });
                }
                copied = end;
                at = end;
            }
            // A short string is skipped whole (a `[` inside it is text, not an array).
            Some(end) if text[at] == b'"' => at = end,
            // An unterminated string runs to the end: nothing after it can be a value.
            None if text[at] == b'"' => at = text.len(),
            _ => at += 1,
        }
    }
    skeleton.extend_from_slice(&text[copied..]);
    Ok(Split { skeleton: compress(&skeleton[1..])?, blobs })
}

/// Hashes remembered per thread: a fleet sends the same few hundred chains all day, and
/// comparing bytes is a hundred times cheaper than SHA-256 over them.
const REMEMBERED_HASHES: usize = 512;

/// Recent blobs by (length, last 16 bytes), with their hash; a hit is checked byte for byte.
type Remembered = HashMap<(usize, [u8; 16]), (Vec<u8>, Hash)>;

thread_local! {
    static HASHES: std::cell::RefCell<Remembered> = std::cell::RefCell::new(HashMap::new());
}

/// The SHA-256 of `bytes` (at least 16 long), remembered for the next time the same bytes come.
fn hash_of(bytes: &[u8]) -> Hash {
    let mut tail = [0u8; 16];
    tail.copy_from_slice(&bytes[bytes.len() - 16..]);
    HASHES.with(|cell| {
        let mut remembered = cell.borrow_mut();
        if let Some((seen, hash)) = remembered.get(&(bytes.len(), tail))
            && seen.as_slice() == bytes
        {
            return *hash;
        }
        let hash: Hash = Sha256::digest(bytes).into();
        if remembered.len() >= REMEMBERED_HASHES {
            remembered.clear();
        }
        remembered.insert((bytes.len(), tail), (bytes.to_vec(), hash));
        hash
    })
}

/// A plain skeleton's text as a [`FORMAT_ZSTD`] skeleton.
fn compress(plain: &[u8]) -> Result<Vec<u8>, StoreError> {
    let packed = with_zstd(|compressor, _| compressor.compress(plain)).map_err(|e| StoreError::Encode(format!("zstd: {e}")))?;
    let mut skeleton = Vec::with_capacity(packed.len() + 5);
    skeleton.push(FORMAT_ZSTD);
    let mut len = plain.len();
    while len >= 0x80 {
        skeleton.push((len & 0x7f) as u8 | 0x80);
        len >>= 7;
    }
    skeleton.push(len as u8);
    skeleton.extend_from_slice(&packed);
    Ok(skeleton)
}

/// The plain text of a [`FORMAT_ZSTD`] skeleton's `rest` (what follows the format byte).
fn decompress(rest: &[u8]) -> Result<Vec<u8>, StoreError> {
    let (mut len, mut shift, mut at) = (0usize, 0u32, 0usize);
    loop {
        let byte = *rest.get(at).ok_or_else(|| StoreError::Corrupt("a stored skeleton ends inside its length".into()))?;
        len |= usize::from(byte & 0x7f) << shift;
        at += 1;
        if byte < 0x80 {
            break;
        }
        shift += 7;
        if shift > 28 {
            return Err(StoreError::Corrupt("a stored skeleton's length is too long".into()));
        }
    }
    if len > MAX_SKELETON_LEN {
        return Err(StoreError::Corrupt(format!("a stored skeleton claims {len} bytes")));
    }
    let plain = with_zstd(|_, decompressor| decompressor.decompress(&rest[at..], len))
        .map_err(|e| StoreError::Corrupt(format!("a stored skeleton does not decompress: {e}")))?;
    if plain.len() == len {
        Ok(plain)
    } else {
        Err(StoreError::Corrupt(format!("a stored skeleton decompressed to {} bytes, not {len}", plain.len())))
    }
}

/// The line `skeleton` was split from, with each reference replaced by its blob from `source`.
/// A missing blob, a truncated reference, an unknown format or text that is not UTF-8 is
/// [`StoreError::Corrupt`].
pub fn join(skeleton: &[u8], source: &mut impl BlobSource) -> Result<String, StoreError> {
    let plain = plain(skeleton)?;
    let mut line = Vec::with_capacity(plain.len() + 4096);
    for part in (Parts { rest: &plain }) {
        match part? {
            Part::Text(text) => line.extend_from_slice(text),
            Part::Reference(hash) => {
                let bytes = source
                    .blob(&hash)?
                    .ok_or_else(|| StoreError::Corrupt(format!("a row references blob {} which is not stored", hex(&hash))))?;
                line.extend_from_slice(bytes);
            }
        }
    }
    String::from_utf8(line).map_err(|_| StoreError::Corrupt("a joined row is not UTF-8".into()))
}

/// The distinct hashes `skeleton` references, in order of first reference (what a deleted row
/// releases).
pub fn references(skeleton: &[u8]) -> Result<Vec<Hash>, StoreError> {
    let mut hashes: Vec<Hash> = Vec::new();
    for part in (Parts { rest: &plain(skeleton)? }) {
        if let Part::Reference(hash) = part?
            && !hashes.contains(&hash)
        {
            hashes.push(hash);
        }
    }
    Ok(hashes)
}

/// A skeleton's pieces, in order.
enum Part<'a> {
    Text(&'a [u8]),
    Reference(Hash),
}

/// A skeleton's plain text (text and references), whatever its format.
fn plain(skeleton: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, StoreError> {
    match skeleton.split_first() {
        Some((&FORMAT_PLAIN, body)) => Ok(std::borrow::Cow::Borrowed(body)),
        Some((&FORMAT_ZSTD, rest)) => decompress(rest).map(std::borrow::Cow::Owned),
        Some((format, _)) => Err(StoreError::Corrupt(format!("a stored skeleton has unknown format {format}"))),
        None => Err(StoreError::Corrupt("a stored skeleton is empty".into())),
    }
}

/// The pieces of a plain skeleton's text, in order.
struct Parts<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Parts<'a> {
    type Item = Result<Part<'a>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match self.rest.iter().position(|&b| b == MARKER) {
            Some(0) => {
                let Some(hash) = self.rest.get(1..REFERENCE_LEN).and_then(|h| Hash::try_from(h).ok()) else {
                    self.rest = &[];
                    return Some(Err(StoreError::Corrupt("a stored skeleton ends inside a blob reference".into())));
                };
                self.rest = &self.rest[REFERENCE_LEN..];
                Some(Ok(Part::Reference(hash)))
            }
            Some(n) => {
                let (text, rest) = self.rest.split_at(n);
                self.rest = rest;
                Some(Ok(Part::Text(text)))
            }
            None => Some(Ok(Part::Text(std::mem::take(&mut self.rest)))),
        }
    }
}

/// The index just past the string literal starting at `start` (a `"`), or `None` if it never
/// ends.
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let mut at = start + 1;
    while at < text.len() {
        at += memchr::memchr2(b'\\', b'"', &text[at..])?;
        match text[at] {
            b'"' => return Some(at + 1),
            _ => at += 2,
        }
    }
    None
}

/// The index just past the array starting at `start` (a `[`) if it holds one or more strings and
/// nothing else (compact JSON: no whitespace).
fn string_array_end(text: &[u8], start: usize) -> Option<usize> {
    let mut at = start + 1;
    loop {
        if text.get(at) != Some(&b'"') {
            return None;
        }
        at = string_end(text, at)?;
        match text.get(at) {
            Some(b',') => at += 1,
            Some(b']') => return Some(at + 1),
            _ => return None,
        }
    }
}

/// A hash as lower-case hex, for messages.
pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vantage_measurement::{Detail, Measurement, example};

    /// Base64-looking text of `len` bytes, different per `seed`.
    fn certificate(seed: u8, len: usize) -> String {
        (0..len).map(|i| char::from(b'A' + ((i * 7 + usize::from(seed) * 13) % 26) as u8)).collect()
    }

    /// The example with a two-certificate chain on each handshake (the same chain twice).
    fn with_chains() -> Measurement {
        let mut m = example::tls_reset(chrono::Utc::now());
        for observation in &mut m.observations {
            if let Some(Detail::Tls(tls)) = &mut observation.detail {
                tls.peer_certificates = vec![certificate(1, 1800), certificate(2, 1400)];
            }
        }
        m
    }

    fn roundtrip(line: &str) -> Split {
        let split = split(line).expect("split");
        let mut source: HashMap<Hash, Vec<u8>> = split.blobs.iter().map(|b| (b.hash, b.bytes.clone())).collect();
        assert_eq!(join(&split.skeleton, &mut source).expect("join"), line);
        split
    }

    #[test]
    fn the_example_has_nothing_worth_sharing_and_comes_back_whole() {
        let line = example::tls_reset(chrono::Utc::now()).to_json_line().expect("line");
        let split = roundtrip(&line);
        assert!(split.blobs.is_empty());
        assert_eq!(&*plain(&split.skeleton).expect("plain"), line.as_bytes());
        assert!(split.skeleton.len() < line.len() / 2, "{} of {}", split.skeleton.len(), line.len());
    }

    #[test]
    fn a_chain_is_one_blob_stored_once_per_line() {
        let line = with_chains().to_json_line().expect("line");
        let split = roundtrip(&line);
        assert_eq!(split.blobs.len(), 1, "both handshakes share one chain");
        let chain = &split.blobs[0];
        assert_eq!(chain.hash, <Hash>::from(Sha256::digest(&chain.bytes)));
        assert!(chain.bytes.starts_with(b"[\"") && chain.bytes.ends_with(b"\"]"));
        assert_eq!(references(&split.skeleton).expect("refs"), vec![chain.hash]);
        let plain = plain(&split.skeleton).expect("plain");
        assert_eq!(plain.len(), line.len() - 2 * chain.bytes.len() + 2 * REFERENCE_LEN);
        // The old plain format reads too.
        let mut source: HashMap<Hash, Vec<u8>> = split.blobs.iter().map(|b| (b.hash, b.bytes.clone())).collect();
        assert_eq!(join(&[&[FORMAT_PLAIN][..], &plain].concat(), &mut source).expect("plain joins"), line);
    }

    #[test]
    fn a_long_string_outside_an_array_is_a_blob_and_short_ones_stay() {
        let long = "x".repeat(MIN_BLOB_LEN);
        let line = serde_json::json!({"a": long, "b": ["short", 1, long], "c": "[\"not an array\"]"}).to_string();
        let split = roundtrip(&line);
        assert_eq!(split.blobs.len(), 1, "{:?}", String::from_utf8_lossy(&split.skeleton));
        assert_eq!(references(&split.skeleton).expect("refs").len(), 1);
        let cut = MIN_BLOB_LEN + 2;
        assert_eq!(plain(&split.skeleton).expect("plain").len(), line.len() - 2 * cut + 2 * REFERENCE_LEN, "two references");
    }

    #[test]
    fn a_missing_blob_is_corrupt_and_names_it() {
        let split = split(&with_chains().to_json_line().expect("line")).expect("split");
        let err = join(&split.skeleton, &mut HashMap::new()).expect_err("missing");
        assert!(matches!(&err, StoreError::Corrupt(m) if m.contains(&hex(&split.blobs[0].hash))), "{err}");
    }

    #[test]
    fn a_damaged_skeleton_is_corrupt() {
        let split = split(&with_chains().to_json_line().expect("line")).expect("split");
        let mut source: HashMap<Hash, Vec<u8>> = split.blobs.iter().map(|b| (b.hash, b.bytes.clone())).collect();
        let plain = plain(&split.skeleton).expect("plain");
        let at = plain.iter().position(|&b| b == MARKER).expect("a reference");
        let cut_reference = [&[FORMAT_PLAIN][..], &plain[..at + 5]].concat();
        let cut_stream = &split.skeleton[..split.skeleton.len() - 3];
        let long_claim = [FORMAT_ZSTD, 0xff, 0xff, 0xff, 0xff, 0x7f, 0];
        let wrong_length = [&[FORMAT_ZSTD, 0x7f][..], &split.skeleton[3..]].concat();
        for damaged in [&cut_reference[..], cut_stream, &long_claim, &wrong_length, &[FORMAT_ZSTD][..], &[7, b'{', b'}'], &[]] {
            assert!(matches!(join(damaged, &mut source), Err(StoreError::Corrupt(_))), "{damaged:?}");
            assert!(matches!(references(damaged), Err(StoreError::Corrupt(_))));
        }
    }

    #[test]
    fn a_line_with_a_nul_byte_is_refused() {
        assert!(matches!(split("{\"a\":\"\0\"}"), Err(StoreError::Encode(_))));
    }

    proptest! {
        /// Any JSON built from strings (escapes, non-ASCII, quotes, brackets) and arrays of them,
        /// long and short, comes back byte for byte.
        #[test]
        fn json_of_any_strings_round_trips(values in prop::collection::vec(
            prop_oneof![
                any::<String>().prop_map(serde_json::Value::from),
                "[\\[\\]\"\\\\a-z]{0,400}".prop_map(serde_json::Value::from),
                prop::collection::vec("[a-zA-Z0-9+/=\"\\\\]{0,300}", 0..5).prop_map(serde_json::Value::from),
            ],
            0..8,
        )) {
            let line = serde_json::Value::from(values).to_string();
            prop_assume!(!line.contains('\0'));
            let split = split(&line).expect("split");
            let mut source: HashMap<Hash, Vec<u8>> = split.blobs.iter().map(|b| (b.hash, b.bytes.clone())).collect();
            prop_assert_eq!(join(&split.skeleton, &mut source).expect("join"), line);
        }

        /// Any text without a NUL byte, JSON or not, comes back.
        #[test]
        fn any_text_round_trips(line in "[^\u{0}]{0,600}") {
            let split = split(&line).expect("split");
            let mut source: HashMap<Hash, Vec<u8>> = split.blobs.iter().map(|b| (b.hash, b.bytes.clone())).collect();
            prop_assert_eq!(join(&split.skeleton, &mut source).expect("join"), line);
        }
    }
}
