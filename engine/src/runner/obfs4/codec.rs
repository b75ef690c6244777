//! obfs4's client side as a pure codec: the bridge line's `cert`, the ntor handshake with
//! Elligator 2 representatives, and the framing. No sockets, no clock, no randomness of its own:
//! callers pass the secret key, tweak, padding and epoch hour, so tests replay real exchanges.
//!
//! Follows obfs4proxy 0.0.14 (`transports/obfs4/handshake_ntor.go`, `common/ntor/ntor.go`,
//! `transports/obfs4/framing/framing.go`, `common/drbg/hash_drbg.go`, `packet.go`) where it
//! differs from `doc/obfs4-spec.txt`:
//!
//! - the client's padding is 77–8128 bytes (the spec says 87–1384), so that the request is
//!   never shorter than the server's minimum response plus its inline seed frame;
//! - the ntor transcript's suffix is `B | B | X | Y | PROTOID | NODEID` (the spec's ntor has
//!   `NODEID | B | X | Y | PROTOID`);
//! - the KDF yields 144 bytes, 72 a direction: secretbox key (32), nonce prefix (16), SipHash
//!   key (16) and the length DRBG's IV (8); the client encodes with the first 72;
//! - the length mask is SipHash-2-4 in OFB mode *without reset*: block n hashes IV | block 1 |
//!   … | block n-1, and the mask is the first two bytes of its little-endian digest, read big
//!   endian.
//!
//! Public keys go on the wire as Elligator 2 representatives with a low-order component and
//! random top bits (obfs4proxy 0.0.12 onwards, curve25519-elligator2's `Randomized`), so they
//! are indistinguishable from random bytes.

use crypto_secretbox::aead::{AeadInPlace, KeyInit};
use crypto_secretbox::{Nonce, Tag, XSalsa20Poly1305};
use curve25519_elligator2::{MapToPointVariant, MontgomeryPoint, Randomized};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use siphasher::sip::SipHasher24;
use std::hash::Hasher;

type HmacSha256 = Hmac<Sha256>;

/// Length of the bridge's node id.
pub const NODE_ID_LEN: usize = 20;
/// Length of mark and MAC (HMAC-SHA256 truncated to 128 bits).
const MARK_LEN: usize = 16;
/// The largest handshake either side may send.
pub const MAX_HANDSHAKE_LEN: usize = 8192;
const CLIENT_MIN_HANDSHAKE: usize = 32 + MARK_LEN + MARK_LEN;
const SERVER_MIN_HANDSHAKE: usize = 32 + 32 + MARK_LEN + MARK_LEN;
/// Frame overhead: obfuscated length and Poly1305 tag.
pub const FRAME_OVERHEAD: usize = 2 + 16;
/// Packet overhead inside a frame: type and payload length.
pub const PACKET_OVERHEAD: usize = 3;
const INLINE_SEED_FRAME: usize = FRAME_OVERHEAD + PACKET_OVERHEAD + 24;
/// Shortest client padding (obfs4proxy's `clientMinPadLength`).
pub const CLIENT_MIN_PAD: usize = SERVER_MIN_HANDSHAKE + INLINE_SEED_FRAME - CLIENT_MIN_HANDSHAKE;
/// Longest client padding (obfs4proxy's `clientMaxPadLength`).
pub const CLIENT_MAX_PAD: usize = MAX_HANDSHAKE_LEN - CLIENT_MIN_HANDSHAKE;
/// Largest frame on the wire (a 1500-byte MTU less IPv6 and TCP headers).
pub const MAX_SEGMENT: usize = 1500 - (40 + 12);
/// Largest payload plus padding in one packet.
pub const MAX_PACKET_BODY: usize = MAX_SEGMENT - FRAME_OVERHEAD - PACKET_OVERHEAD;
const MAX_BOX: usize = MAX_SEGMENT - 2;
const MIN_BOX: usize = 16;
const KEY_MATERIAL: usize = 32 + 16 + 16 + 8;

const PROTO_ID: &[u8] = b"ntor-curve25519-sha256-1";
const T_MAC: &[u8] = b"ntor-curve25519-sha256-1:mac";
const T_KEY: &[u8] = b"ntor-curve25519-sha256-1:key_extract";
const T_VERIFY: &[u8] = b"ntor-curve25519-sha256-1:key_verify";
const M_EXPAND: &[u8] = b"ntor-curve25519-sha256-1:key_expand";

/// Packet type of application data (payload, then ignored padding).
pub const PACKET_PAYLOAD: u8 = 0;
/// Packet type of the server's length-distribution seed.
pub const PACKET_PRNG_SEED: u8 = 1;

/// Why a handshake or frame was refused; [`CodecError::name`] is the fixed name recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// More bytes are needed.
    #[error("incomplete")]
    Incomplete,
    /// The bridge's mark did not appear within the largest handshake.
    #[error("server mark not found")]
    MarkNotFound,
    /// The mark was there but the MAC over the response was wrong.
    #[error("server MAC mismatch")]
    BadMac,
    /// The ntor AUTH did not match: not the bridge of this cert.
    #[error("ntor AUTH mismatch")]
    BadAuth,
    /// A Diffie-Hellman result was all zeros (a low-order point).
    #[error("degenerate key")]
    DegenerateKey,
    /// A frame length outside obfs4's bounds.
    #[error("bad frame length")]
    BadFrameLength,
    /// A frame that did not authenticate.
    #[error("frame tag mismatch")]
    BadTag,
    /// A packet whose payload length exceeds the frame.
    #[error("bad packet")]
    BadPacket,
    /// Payload and padding too long for one frame.
    #[error("packet too long")]
    TooLong,
}

impl CodecError {
    /// The name recorded in `reply_error`.
    pub fn name(self) -> &'static str {
        match self {
            CodecError::Incomplete => "incomplete",
            CodecError::MarkNotFound => "mark_not_found",
            CodecError::BadMac => "bad_mac",
            CodecError::BadAuth => "bad_auth",
            CodecError::DegenerateKey => "degenerate_key",
            CodecError::BadFrameLength => "bad_frame_length",
            CodecError::BadTag => "bad_tag",
            CodecError::BadPacket => "bad_packet",
            CodecError::TooLong => "too_long",
        }
    }
}

/// The bridge's identity from the bridge line's `cert=`: node id and Curve25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct BridgeCert {
    node_id: [u8; NODE_ID_LEN],
    public_key: [u8; 32],
}

impl std::fmt::Debug for BridgeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BridgeCert(redacted)")
    }
}

/// Why a `cert=` value was refused (never quoting it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Not base64.
    #[error("cert is not base64")]
    NotBase64,
    /// Not 52 bytes (20-byte node id and 32-byte key).
    #[error("cert decodes to {0} bytes, not 52")]
    Length(usize),
}

impl BridgeCert {
    /// Parse `cert` (base64 of node id | public key, with or without the `==` padding).
    pub fn parse(cert: &str) -> Result<Self, CertError> {
        use base64::Engine as _;
        let trimmed = cert.trim().trim_end_matches('=');
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed).map_err(|_| CertError::NotBase64)?;
        if raw.len() != NODE_ID_LEN + 32 {
            return Err(CertError::Length(raw.len()));
        }
        let mut node_id = [0u8; NODE_ID_LEN];
        node_id.copy_from_slice(&raw[..NODE_ID_LEN]);
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(&raw[NODE_ID_LEN..]);
        Ok(BridgeCert { node_id, public_key })
    }

    /// The cert as a bridge line writes it (base64 without padding): for the helper's request.
    pub fn to_base64(&self) -> String {
        use base64::Engine as _;
        let mut raw = self.node_id.to_vec();
        raw.extend_from_slice(&self.public_key);
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(raw)
    }

    fn mac(&self) -> HmacSha256 {
        let mut key = [0u8; 32 + NODE_ID_LEN];
        key[..32].copy_from_slice(&self.public_key);
        key[32..].copy_from_slice(&self.node_id);
        hmac(&key)
    }

    fn mac128(&self, parts: &[&[u8]]) -> [u8; MARK_LEN] {
        let mut mac = self.mac();
        for part in parts {
            mac.update(part);
        }
        let mut out = [0u8; MARK_LEN];
        out.copy_from_slice(&mac.finalize().into_bytes()[..MARK_LEN]);
        out
    }
}

fn hmac(key: &[u8]) -> HmacSha256 {
    match <HmacSha256 as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length.
        Err(_) => unreachable!("HMAC accepts every key length"),
    }
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = hmac(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The client's ephemeral key: secret, the public point the bridge will see, its representative.
pub struct ClientKey {
    secret: [u8; 32],
    public: [u8; 32],
    representative: [u8; 32],
}

impl ClientKey {
    /// The key for `secret` and `tweak`, if its public point has a representative (about half do:
    /// draw again otherwise).
    pub fn new(secret: [u8; 32], tweak: u8) -> Option<Self> {
        let representative: [u8; 32] = Option::from(Randomized::to_representative(&secret, tweak))?;
        // The public key as the bridge derives it from the representative.
        let public = MontgomeryPoint::from_representative::<Randomized>(&representative)?.to_bytes();
        Some(ClientKey { secret, public, representative })
    }
}

/// The client's side of one handshake.
pub struct ClientHandshake {
    cert: BridgeCert,
    key: ClientKey,
    epoch_hour: String,
}

/// What a completed handshake yields.
pub struct Established {
    /// Bytes of the server's response consumed (frames may follow in the same buffer).
    pub consumed: usize,
    /// Frame encoder for client to server.
    pub encoder: Encoder,
    /// Frame decoder for server to client.
    pub decoder: Decoder,
}

impl ClientHandshake {
    /// A handshake to the bridge of `cert` with `key`, at `epoch_hour` (Unix seconds / 3600).
    pub fn new(cert: BridgeCert, key: ClientKey, epoch_hour: u64) -> Self {
        ClientHandshake { cert, key, epoch_hour: epoch_hour.to_string() }
    }

    /// The client request `X' | P_C | M_C | MAC_C` with padding `pad` (its length should be
    /// in [`CLIENT_MIN_PAD`]..=[`CLIENT_MAX_PAD`]).
    pub fn request(&self, pad: &[u8]) -> Vec<u8> {
        let mark = self.cert.mac128(&[&self.key.representative]);
        let mut out = Vec::with_capacity(CLIENT_MIN_HANDSHAKE + pad.len());
        out.extend_from_slice(&self.key.representative);
        out.extend_from_slice(pad);
        out.extend_from_slice(&mark);
        let mac = self.cert.mac128(&[&out, self.epoch_hour.as_bytes()]);
        out.extend_from_slice(&mac);
        out
    }

    /// Judge the server's response so far: [`CodecError::Incomplete`] until the mark and MAC
    /// are in, then the session's framing if everything verifies.
    pub fn finish(&self, resp: &[u8]) -> Result<Established, CodecError> {
        if resp.len() < SERVER_MIN_HANDSHAKE {
            return Err(CodecError::Incomplete);
        }
        let mut representative = [0u8; 32];
        representative.copy_from_slice(&resp[..32]);
        let auth = &resp[32..64];
        let mark = self.cert.mac128(&[&representative]);
        let end = resp.len().min(MAX_HANDSHAKE_LEN);
        let pos = match find(&resp[64..end], &mark) {
            Some(p) if 64 + p + 2 * MARK_LEN <= end => 64 + p,
            _ if resp.len() >= MAX_HANDSHAKE_LEN => return Err(CodecError::MarkNotFound),
            _ => return Err(CodecError::Incomplete),
        };
        let mac = self.cert.mac128(&[&resp[..pos + MARK_LEN], self.epoch_hour.as_bytes()]);
        if !ct_eq(&mac, &resp[pos + MARK_LEN..pos + 2 * MARK_LEN]) {
            return Err(CodecError::BadMac);
        }
        let server =
            MontgomeryPoint::from_representative::<Randomized>(&representative).ok_or(CodecError::DegenerateKey)?.to_bytes();
        let (seed, expected) = self.ntor(&server)?;
        if !ct_eq(&expected, auth) {
            return Err(CodecError::BadAuth);
        }
        let okm = kdf(&seed);
        Ok(Established {
            consumed: pos + 2 * MARK_LEN,
            encoder: Encoder(FrameKeys::new(&okm[..KEY_MATERIAL])),
            decoder: Decoder { keys: FrameKeys::new(&okm[KEY_MATERIAL..]), next_len: None },
        })
    }

    /// KEY_SEED and the AUTH the server must have sent.
    fn ntor(&self, server: &[u8; 32]) -> Result<([u8; 32], [u8; 32]), CodecError> {
        let exp_y = x25519_dalek::x25519(self.key.secret, *server);
        let exp_b = x25519_dalek::x25519(self.key.secret, self.cert.public_key);
        if exp_y == [0; 32] || exp_b == [0; 32] {
            return Err(CodecError::DegenerateKey);
        }
        let b = &self.cert.public_key;
        let suffix: [&[u8]; 6] = [b, b, &self.key.public, server, PROTO_ID, &self.cert.node_id];
        let secret_input: Vec<&[u8]> = [&exp_y[..], &exp_b[..]].into_iter().chain(suffix).collect();
        let seed = hmac256(T_KEY, &secret_input);
        let verify = hmac256(T_VERIFY, &secret_input);
        let auth_input: Vec<&[u8]> = std::iter::once(&verify[..]).chain(suffix).chain([&b"Server"[..]]).collect();
        Ok((seed, hmac256(T_MAC, &auth_input)))
    }
}

/// HKDF-SHA256 (salt `t_key`, info `m_expand`) of KEY_SEED to 144 bytes.
fn kdf(seed: &[u8; 32]) -> Vec<u8> {
    let prk = hmac256(T_KEY, &[seed]);
    let mut okm = Vec::with_capacity(2 * KEY_MATERIAL + 32);
    let mut block: Vec<u8> = Vec::new();
    let mut counter = 1u8;
    while okm.len() < 2 * KEY_MATERIAL {
        block = hmac256(&prk, &[&block, M_EXPAND, &[counter]]).to_vec();
        okm.extend_from_slice(&block);
        counter += 1;
    }
    okm.truncate(2 * KEY_MATERIAL);
    okm
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One direction's frame keys: secretbox key, nonce prefix and counter, length-mask DRBG.
struct FrameKeys {
    cipher: XSalsa20Poly1305,
    prefix: [u8; 16],
    counter: u64,
    sip: SipHasher24,
    ofb: [u8; 8],
}

impl FrameKeys {
    fn new(material: &[u8]) -> Self {
        let mut key = [0u8; 32];
        key.copy_from_slice(&material[..32]);
        let mut prefix = [0u8; 16];
        prefix.copy_from_slice(&material[32..48]);
        let mut sip_key = [0u8; 16];
        sip_key.copy_from_slice(&material[48..64]);
        let mut ofb = [0u8; 8];
        ofb.copy_from_slice(&material[64..72]);
        FrameKeys {
            cipher: XSalsa20Poly1305::new(&key.into()),
            prefix,
            counter: 1,
            sip: SipHasher24::new_with_key(&sip_key),
            ofb,
        }
    }

    fn next_nonce(&mut self) -> Nonce {
        let mut nonce = [0u8; 24];
        nonce[..16].copy_from_slice(&self.prefix);
        nonce[16..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter += 1;
        nonce.into()
    }

    fn next_mask(&mut self) -> u16 {
        self.sip.write(&self.ofb);
        self.ofb = self.sip.finish().to_le_bytes();
        u16::from_be_bytes([self.ofb[0], self.ofb[1]])
    }
}

/// Client-to-server frames.
pub struct Encoder(FrameKeys);

impl Encoder {
    /// One frame: a packet of `kind` carrying `payload`, then `pad` zero bytes of padding.
    pub fn frame(&mut self, kind: u8, payload: &[u8], pad: usize) -> Result<Vec<u8>, CodecError> {
        if payload.len() + pad > MAX_PACKET_BODY {
            return Err(CodecError::TooLong);
        }
        let payload_len = u16::try_from(payload.len()).map_err(|_| CodecError::TooLong)?;
        let mut packet = Vec::with_capacity(PACKET_OVERHEAD + payload.len() + pad);
        packet.push(kind);
        packet.extend_from_slice(&payload_len.to_be_bytes());
        packet.extend_from_slice(payload);
        packet.resize(PACKET_OVERHEAD + payload.len() + pad, 0);
        let nonce = self.0.next_nonce();
        let tag = self.0.cipher.encrypt_in_place_detached(&nonce, &[], &mut packet).map_err(|_| CodecError::TooLong)?;
        let box_len = u16::try_from(16 + packet.len()).map_err(|_| CodecError::TooLong)?;
        let mut frame = Vec::with_capacity(2 + box_len as usize);
        frame.extend_from_slice(&(box_len ^ self.0.next_mask()).to_be_bytes());
        frame.extend_from_slice(&tag);
        frame.extend_from_slice(&packet);
        Ok(frame)
    }
}

/// Server-to-client frames.
pub struct Decoder {
    keys: FrameKeys,
    next_len: Option<(usize, Nonce)>,
}

/// One decoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Packet type ([`PACKET_PAYLOAD`], [`PACKET_PRNG_SEED`], or unknown).
    pub kind: u8,
    /// The payload, without padding.
    pub payload: Vec<u8>,
}

impl Decoder {
    /// Take one packet from the front of `buf` (draining what it used), or
    /// [`CodecError::Incomplete`].
    pub fn packet(&mut self, buf: &mut Vec<u8>) -> Result<Packet, CodecError> {
        let (len, nonce) = match self.next_len {
            Some(next) => next,
            None => {
                if buf.len() < 2 {
                    return Err(CodecError::Incomplete);
                }
                let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]) ^ self.keys.next_mask());
                if !(MIN_BOX..=MAX_BOX).contains(&len) {
                    return Err(CodecError::BadFrameLength);
                }
                buf.drain(..2);
                let next = (len, self.keys.next_nonce());
                self.next_len = Some(next);
                next
            }
        };
        if buf.len() < len {
            return Err(CodecError::Incomplete);
        }
        let sealed: Vec<u8> = buf.drain(..len).collect();
        self.next_len = None;
        let tag = Tag::clone_from_slice(&sealed[..16]);
        let mut plain = sealed[16..].to_vec();
        self.keys.cipher.decrypt_in_place_detached(&nonce, &[], &mut plain, &tag).map_err(|_| CodecError::BadTag)?;
        if plain.len() < PACKET_OVERHEAD {
            return Err(CodecError::BadPacket);
        }
        let payload_len = usize::from(u16::from_be_bytes([plain[1], plain[2]]));
        let payload = plain.get(PACKET_OVERHEAD..PACKET_OVERHEAD + payload_len).ok_or(CodecError::BadPacket)?;
        Ok(Packet { kind: plain[0], payload: payload.to_vec() })
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
