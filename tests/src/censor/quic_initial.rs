//! QUIC v1 client Initial packets, opened the way an on-path censor opens them.
//!
//! Initial packets are encrypted, but with keys anyone can derive from the Destination
//! Connection ID in the clear (RFC 9001 §5.2), which is how the GFW and Russia's TSPU read the
//! SNI out of QUIC. This module does the same, self-contained over `ring`, with no QUIC stack:
//!
//! 1. [`InitialSecrets::client_v1`]: HKDF-Extract with the v1 salt over the DCID, then
//!    HKDF-Expand-Label "client in", "quic key", "quic iv", "quic hp";
//! 2. [`decrypt_client_initial`]: remove header protection (AES-128 mask over a 16-byte sample),
//!    recover the packet number, open AES-128-GCM with the unprotected header as AAD;
//! 3. [`crypto_frames`]: walk the frames an Initial may carry and return the CRYPTO data;
//! 4. [`CryptoAssembler`]: put CRYPTO data back together from offset 0, within a bound.
//!
//! Every input is hostile: all reads are bounds-checked and errors are values, never panics.
//! Only the client direction is handled (server Initials use keys derived from a DCID the
//! server never sends back).

use ring::aead::quic::{AES_128, HeaderProtectionKey};
use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

/// The version number of QUIC v1 (RFC 9000).
pub const QUIC_V1: u32 = 0x0000_0001;
/// The salt for v1 Initial secrets (RFC 9001 §5.2).
pub const INITIAL_SALT_V1: [u8; 20] =
    [0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a];
/// Longest connection ID in QUIC v1.
pub const MAX_CID_LEN: usize = 20;
const SAMPLE_LEN: usize = 16;

/// Why a datagram is not a client Initial we can open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuicError {
    /// A short-header packet (or not QUIC at all).
    #[error("not a long-header packet")]
    NotLongHeader,
    /// A version other than v1 (including version negotiation, version 0).
    #[error("QUIC version {0:#010x} is not v1")]
    UnsupportedVersion(u32),
    /// A long-header packet other than Initial (0-RTT, Handshake, Retry).
    #[error("not an Initial packet")]
    NotInitial,
    /// Shorter than a field it claims.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A connection ID longer than v1 allows.
    #[error("connection ID of {0} bytes")]
    ConnectionIdTooLong(usize),
    /// Authentication failed: not protected with the client keys of this DCID.
    #[error("decryption failed")]
    Decrypt,
    /// Reserved header bits were set after header protection was removed.
    #[error("reserved bits set")]
    ReservedBits,
    /// A frame type that may not appear in an Initial packet.
    #[error("frame type {0:#x} not allowed in Initial")]
    UnexpectedFrame(u64),
    /// CRYPTO data beyond what we are willing to buffer.
    #[error("CRYPTO data beyond {0} bytes")]
    CryptoOverflow(usize),
}

/// The client's Initial key, IV and header-protection key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialSecrets {
    /// AES-128-GCM key.
    pub key: [u8; 16],
    /// AEAD IV, XORed with the packet number to form the nonce.
    pub iv: [u8; 12],
    /// AES-128 header-protection key.
    pub hp: [u8; 16],
}

impl InitialSecrets {
    /// The client secrets of a QUIC v1 connection whose first DCID is `dcid`.
    pub fn client_v1(dcid: &[u8]) -> Self {
        let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, &INITIAL_SALT_V1).extract(dcid);
        let client: [u8; 32] = expand_label(&initial, b"client in");
        let client = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &client);
        InitialSecrets {
            key: expand_label(&client, b"quic key"),
            iv: expand_label(&client, b"quic iv"),
            hp: expand_label(&client, b"quic hp"),
        }
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, into an `N`-byte array.
fn expand_label<const N: usize>(prk: &hkdf::Prk, label: &[u8]) -> [u8; N] {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let mut out = [0u8; N];
    // Labels here are short constants and N ≤ 32, so these casts cannot truncate.
    let length = (N as u16).to_be_bytes();
    let label_len = [(b"tls13 ".len() + label.len()) as u8];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
    // Expansion fails only when asking for more than 255 hash lengths; N ≤ 32 never does.
    if let Ok(okm) = prk.expand(&info, Len(N)) {
        let _ = okm.fill(&mut out);
    }
    out
}

/// The invariant part of a long header (RFC 8999), readable without keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongHeader<'a> {
    /// First byte, still header-protected in its low four bits.
    pub first: u8,
    /// Version.
    pub version: u32,
    /// Destination Connection ID.
    pub dcid: &'a [u8],
    /// Source Connection ID.
    pub scid: &'a [u8],
}

impl LongHeader<'_> {
    /// Whether this is a v1 Initial (type bits 00).
    pub fn is_v1_initial(&self) -> bool {
        self.version == QUIC_V1 && (self.first >> 4) & 0x03 == 0
    }
}

/// Read the long header at the start of `datagram`.
pub fn long_header(datagram: &[u8]) -> Result<LongHeader<'_>, QuicError> {
    let mut r = Cursor::new(datagram);
    let first = r.u8("first byte")?;
    if first & 0x80 == 0 {
        return Err(QuicError::NotLongHeader);
    }
    let v = r.take(4, "version")?;
    let version = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    let dcid = r.cid("DCID")?;
    let scid = r.cid("SCID")?;
    Ok(LongHeader { first, version, dcid, scid })
}

/// A decrypted client Initial packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInitial {
    /// Destination Connection ID (the one the keys came from).
    pub dcid: Vec<u8>,
    /// Source Connection ID.
    pub scid: Vec<u8>,
    /// The full packet number (Initials start at 0, so the truncated one is taken as is).
    pub packet_number: u64,
    /// The header with protection removed (the AEAD's associated data).
    pub header: Vec<u8>,
    /// The decrypted frames.
    pub payload: Vec<u8>,
    /// Bytes of the datagram this packet used (more packets may be coalesced after it).
    pub packet_len: usize,
}

/// Open the client Initial packet at the start of `datagram`.
pub fn decrypt_client_initial(datagram: &[u8]) -> Result<ClientInitial, QuicError> {
    let lh = long_header(datagram)?;
    if lh.version != QUIC_V1 {
        return Err(QuicError::UnsupportedVersion(lh.version));
    }
    if !lh.is_v1_initial() {
        return Err(QuicError::NotInitial);
    }
    let mut r = Cursor::new(datagram);
    r.pos = 1 + 4 + 1 + lh.dcid.len() + 1 + lh.scid.len();
    let token_len = r.varint("token length")?;
    r.take(usize::try_from(token_len).map_err(|_| QuicError::Truncated("token"))?, "token")?;
    let length = usize::try_from(r.varint("length")?).map_err(|_| QuicError::Truncated("packet"))?;
    let pn_offset = r.pos;
    let end = pn_offset.checked_add(length).filter(|&e| e <= datagram.len()).ok_or(QuicError::Truncated("packet"))?;
    if length < 4 + SAMPLE_LEN {
        return Err(QuicError::Truncated("sample"));
    }

    let secrets = InitialSecrets::client_v1(lh.dcid);
    let hp = HeaderProtectionKey::new(&AES_128, &secrets.hp).map_err(|_| QuicError::Decrypt)?;
    let sample = &datagram[pn_offset + 4..pn_offset + 4 + SAMPLE_LEN];
    let mask = hp.new_mask(sample).map_err(|_| QuicError::Decrypt)?;
    let first = datagram[0] ^ (mask[0] & 0x0f);
    let pn_len = usize::from(first & 0x03) + 1;
    let mut header = datagram[..pn_offset + pn_len].to_vec();
    header[0] = first;
    let mut packet_number = 0u64;
    for i in 0..pn_len {
        header[pn_offset + i] ^= mask[1 + i];
        packet_number = packet_number << 8 | u64::from(header[pn_offset + i]);
    }

    let mut nonce = secrets.iv;
    for (n, p) in nonce[4..].iter_mut().zip(packet_number.to_be_bytes()) {
        *n ^= p;
    }
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &secrets.key).map_err(|_| QuicError::Decrypt)?);
    let mut payload = datagram[pn_offset + pn_len..end].to_vec();
    let plain_len = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&header), &mut payload)
        .map_err(|_| QuicError::Decrypt)?
        .len();
    payload.truncate(plain_len);
    if first & 0x0c != 0 {
        return Err(QuicError::ReservedBits);
    }
    Ok(ClientInitial { dcid: lh.dcid.to_vec(), scid: lh.scid.to_vec(), packet_number, header, payload, packet_len: end })
}

/// A CRYPTO frame's data at its stream offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoFrame<'a> {
    /// Offset in the Initial crypto stream.
    pub offset: u64,
    /// The bytes.
    pub data: &'a [u8],
}

/// The CRYPTO frames of a decrypted Initial payload. PADDING, PING, ACK and CONNECTION_CLOSE
/// are skipped; any other frame type is an error (RFC 9000 §12.4 forbids it in Initials).
pub fn crypto_frames(payload: &[u8]) -> Result<Vec<CryptoFrame<'_>>, QuicError> {
    let mut r = Cursor::new(payload);
    let mut frames = Vec::new();
    while !r.done() {
        match r.varint("frame type")? {
            0x00 | 0x01 => {} // PADDING, PING
            t @ (0x02 | 0x03) => {
                r.varint("ACK largest")?;
                r.varint("ACK delay")?;
                let ranges = r.varint("ACK range count")?;
                r.varint("ACK first range")?;
                for _ in 0..ranges {
                    r.varint("ACK gap")?;
                    r.varint("ACK range")?;
                }
                if t == 0x03 {
                    for _ in 0..3 {
                        r.varint("ECN count")?;
                    }
                }
            }
            0x06 => {
                let offset = r.varint("CRYPTO offset")?;
                let len = r.varint("CRYPTO length")?;
                let data = r.take(usize::try_from(len).map_err(|_| QuicError::Truncated("CRYPTO data"))?, "CRYPTO data")?;
                frames.push(CryptoFrame { offset, data });
            }
            0x1c => {
                r.varint("close error code")?;
                r.varint("close frame type")?;
                let len = r.varint("close reason length")?;
                r.take(usize::try_from(len).map_err(|_| QuicError::Truncated("close reason"))?, "close reason")?;
            }
            other => return Err(QuicError::UnexpectedFrame(other)),
        }
    }
    Ok(frames)
}

/// Reassembles the crypto stream from offset 0, buffering at most `limit` bytes of stream.
#[derive(Debug, Clone, Default)]
pub struct CryptoAssembler {
    contiguous: Vec<u8>,
    pending: Vec<(usize, Vec<u8>)>,
    limit: usize,
}

impl CryptoAssembler {
    /// An empty stream that refuses data past `limit` bytes.
    pub fn new(limit: usize) -> Self {
        CryptoAssembler { contiguous: Vec::new(), pending: Vec::new(), limit }
    }

    /// Add one frame's data. Overlaps are fine (retransmissions); the first copy wins.
    pub fn insert(&mut self, frame: &CryptoFrame<'_>) -> Result<(), QuicError> {
        let offset = usize::try_from(frame.offset).map_err(|_| QuicError::CryptoOverflow(self.limit))?;
        if offset.saturating_add(frame.data.len()) > self.limit {
            return Err(QuicError::CryptoOverflow(self.limit));
        }
        let pending_bytes: usize = self.pending.iter().map(|(_, d)| d.len()).sum();
        if pending_bytes + frame.data.len() > self.limit {
            return Err(QuicError::CryptoOverflow(self.limit));
        }
        self.pending.push((offset, frame.data.to_vec()));
        // Merge everything that now touches the contiguous prefix; the rest waits for the gap.
        while let Some(i) = self.pending.iter().position(|(o, _)| *o <= self.contiguous.len()) {
            let (o, data) = self.pending.swap_remove(i);
            let have = self.contiguous.len() - o;
            if let Some(new) = data.get(have..) {
                self.contiguous.extend_from_slice(new);
            }
        }
        Ok(())
    }

    /// The stream from offset 0 up to the first gap.
    pub fn contiguous(&self) -> &[u8] {
        &self.contiguous
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], QuicError> {
        let end = self.pos.checked_add(n).ok_or(QuicError::Truncated(what))?;
        let bytes = self.buf.get(self.pos..end).ok_or(QuicError::Truncated(what))?;
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, QuicError> {
        Ok(self.take(1, what)?[0])
    }

    fn cid(&mut self, what: &'static str) -> Result<&'a [u8], QuicError> {
        let len = usize::from(self.u8(what)?);
        if len > MAX_CID_LEN {
            return Err(QuicError::ConnectionIdTooLong(len));
        }
        self.take(len, what)
    }

    /// A variable-length integer (RFC 9000 §16).
    fn varint(&mut self, what: &'static str) -> Result<u64, QuicError> {
        let first = self.u8(what)?;
        let extra = (1usize << (first >> 6)) - 1;
        let rest = self.take(extra, what)?;
        Ok(rest.iter().fold(u64::from(first & 0x3f), |v, &b| v << 8 | u64::from(b)))
    }
}

#[cfg(test)]
#[path = "quic_initial_tests.rs"]
pub(crate) mod tests;
