//! WireGuard codec: a real Noise_IKpsk2 handshake from a configured probe key, and transport
//! data messages once it completed.
//!
//! WireGuard answers nothing that is not a valid initiation from a configured peer (mac1 keyed
//! with the responder's public key, the static key decrypted and known), so the only honest
//! reachability test is the real handshake; random bytes get the same silence as a blocked port.
//! After the handshake a short data phase (see [`super::icmp`]) catches censors that let the
//! handshake through and kill the flow after a few packets (Russia 2023).
//!
//! Messages (`wireguard-go/device/noise-protocol.go`, the WireGuard paper §5.4):
//!
//! ```text
//! initiation 148  01 00 00 00 | sender[4] | ephemeral[32] | static[32+16] | timestamp[12+16] | mac1[16] | mac2[16]
//! response    92  02 00 00 00 | sender[4] | receiver[4] | ephemeral[32] | empty[0+16] | mac1[16] | mac2[16]
//! cookie      64  03 00 00 00 | receiver[4] | nonce[24] | cookie[16+16]
//! transport  32+  04 00 00 00 | receiver[4] | counter[8] | packet[n+16]
//! ```
//!
//! Pure: the ephemeral key, sender index and TAI64N timestamp are arguments.

use blake2::digest::{FixedOutput, KeyInit, Mac, Update};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::SimpleHmac;
use x25519_dalek::{PublicKey, StaticSecret};

const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
const LABEL_MAC1: &[u8] = b"mac1----";

/// Length of a handshake initiation.
pub const INITIATION_LEN: usize = 148;
/// Length of a handshake response.
pub const RESPONSE_LEN: usize = 92;
/// Length of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = 64;
/// Header of a transport data message (type, receiver, counter).
pub const TRANSPORT_HEADER_LEN: usize = 16;
/// Poly1305 tag length.
const TAG: usize = 16;

/// A 32-byte key whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub [u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// The probe's side of one WireGuard peering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerKeys {
    /// The probe's static private key (the endpoint lists its public key as a peer).
    pub private: Secret,
    /// The endpoint's public key.
    pub server_public: [u8; 32],
    /// The optional preshared key (all zeros when the peer has none, as in the protocol).
    pub preshared: Secret,
}

impl PeerKeys {
    /// The probe's public key.
    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&StaticSecret::from(self.private.0)).to_bytes()
    }
}

/// Why a message from the endpoint was refused. Numeric only, never bytes from the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not one of the four message types, or reserved bytes not zero.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// The length does not fit the type.
    #[error("message type {kind} is {len} bytes")]
    BadLength {
        /// Message type.
        kind: u8,
        /// Bytes present.
        len: usize,
    },
    /// Addressed to another handshake or session.
    #[error("receiver index {0:#x} is not ours")]
    WrongReceiver(u32),
    /// mac1 did not verify with our public key.
    #[error("bad mac1")]
    BadMac1,
    /// The AEAD did not open: a different key, or altered bytes.
    #[error("authentication failed")]
    BadAuthentication,
    /// A Diffie-Hellman result of all zeros (a low-order point).
    #[error("degenerate key exchange")]
    WeakKey,
    /// Our own message could not be encrypted (only a plaintext beyond the AEAD's limit can't).
    #[error("message too long to encrypt")]
    TooLong,
}

impl DecodeError {
    /// A fixed name for the measurement's `reply_error`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::UnknownType(_) => "unknown_type",
            Self::BadLength { .. } => "bad_length",
            Self::WrongReceiver(_) => "wrong_receiver",
            Self::BadMac1 => "bad_mac1",
            Self::BadAuthentication => "bad_authentication",
            Self::WeakKey => "weak_key",
            Self::TooLong => "too_long",
        }
    }
}

/// A message from the endpoint, split into fields but not yet authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A handshake response.
    Response {
        /// The responder's index (our receiver index from now on).
        sender: u32,
        /// Our initiation's sender index.
        receiver: u32,
        /// The whole message, for authentication.
        bytes: &'a [u8],
    },
    /// A cookie reply: the endpoint is under load and wants mac2.
    CookieReply {
        /// Our sender index.
        receiver: u32,
    },
    /// A transport data message.
    Transport {
        /// Our sender index.
        receiver: u32,
        /// The message counter (the AEAD nonce).
        counter: u64,
        /// The whole message.
        bytes: &'a [u8],
    },
    /// An initiation (only a peer that dials us sends one; the probe never accepts it).
    Initiation,
}

/// Split a datagram into a [`Message`], checking type and length only.
pub fn parse_message(packet: &[u8]) -> Result<Message<'_>, DecodeError> {
    let Some(header) = packet.get(..4) else { return Err(DecodeError::UnknownType(0)) };
    if header[1..] != [0, 0, 0] {
        return Err(DecodeError::UnknownType(header[0]));
    }
    let kind = header[0];
    let bad_len = DecodeError::BadLength { kind, len: packet.len() };
    let u32_at = |at: usize| u32::from_le_bytes([packet[at], packet[at + 1], packet[at + 2], packet[at + 3]]);
    match kind {
        1 if packet.len() == INITIATION_LEN => Ok(Message::Initiation),
        2 if packet.len() == RESPONSE_LEN => Ok(Message::Response { sender: u32_at(4), receiver: u32_at(8), bytes: packet }),
        3 if packet.len() == COOKIE_REPLY_LEN => Ok(Message::CookieReply { receiver: u32_at(4) }),
        4 if packet.len() >= TRANSPORT_HEADER_LEN + TAG && (packet.len() - TRANSPORT_HEADER_LEN).is_multiple_of(16) => {
            let mut counter = [0u8; 8];
            counter.copy_from_slice(&packet[8..16]);
            Ok(Message::Transport { receiver: u32_at(4), counter: u64::from_le_bytes(counter), bytes: packet })
        }
        1..=4 => Err(bad_len),
        other => Err(DecodeError::UnknownType(other)),
    }
}

/// TAI64N of a Unix time: 8 bytes of seconds since 1970 plus 2^62 + 10, 4 bytes of nanoseconds.
pub fn tai64n(unix_secs: u64, nanos: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&(0x4000_0000_0000_000a_u64.wrapping_add(unix_secs)).to_be_bytes());
    out[8..].copy_from_slice(&nanos.to_be_bytes());
    out
}

/// The initiator's state between sending the initiation and reading the response.
#[derive(Clone)]
pub struct Handshake {
    keys: PeerKeys,
    ephemeral: StaticSecret,
    sender: u32,
    chaining: [u8; 32],
    hash: [u8; 32],
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake").field("sender", &self.sender).finish_non_exhaustive()
    }
}

/// Build a handshake initiation. Returns the 148-byte message and the state to read the reply.
pub fn initiate(
    keys: &PeerKeys,
    ephemeral: [u8; 32],
    sender: u32,
    timestamp: [u8; 12],
) -> Result<(Vec<u8>, Handshake), DecodeError> {
    let ephemeral = StaticSecret::from(ephemeral);
    let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
    let static_secret = StaticSecret::from(keys.private.0);
    let server = PublicKey::from(keys.server_public);

    let mut c = hash(&[CONSTRUCTION]);
    let mut h = hash(&[&c, IDENTIFIER]);
    h = hash(&[&h, &keys.server_public]);
    c = kdf1(&c, &ephemeral_public);
    h = hash(&[&h, &ephemeral_public]);
    let [c1, k] = kdf2(&c, &dh(&ephemeral, &server)?);
    c = c1;
    let encrypted_static = aead_seal(&k, 0, &keys.public(), &h)?;
    h = hash(&[&h, &encrypted_static]);
    let [c2, k] = kdf2(&c, &dh(&static_secret, &server)?);
    c = c2;
    let encrypted_time = aead_seal(&k, 0, &timestamp, &h)?;
    h = hash(&[&h, &encrypted_time]);

    let mut msg = Vec::with_capacity(INITIATION_LEN);
    msg.extend_from_slice(&[1, 0, 0, 0]);
    msg.extend_from_slice(&sender.to_le_bytes());
    msg.extend_from_slice(&ephemeral_public);
    msg.extend_from_slice(&encrypted_static);
    msg.extend_from_slice(&encrypted_time);
    let mac1 = mac(&hash(&[LABEL_MAC1, &keys.server_public]), &msg);
    msg.extend_from_slice(&mac1);
    msg.extend_from_slice(&[0u8; 16]);
    Ok((msg, Handshake { keys: keys.clone(), ephemeral, sender, chaining: c, hash: h }))
}

impl Handshake {
    /// Our sender index: the endpoint's replies are addressed to it.
    pub fn sender(&self) -> u32 {
        self.sender
    }

    /// Authenticate the endpoint's response and derive the transport keys.
    pub fn consume_response(&self, packet: &[u8]) -> Result<Session, DecodeError> {
        let Message::Response { sender, receiver, bytes } = parse_message(packet)? else {
            return Err(DecodeError::UnknownType(packet.first().copied().unwrap_or(0)));
        };
        if receiver != self.sender {
            return Err(DecodeError::WrongReceiver(receiver));
        }
        let own_public = self.keys.public();
        if !constant_time_eq(&mac(&hash(&[LABEL_MAC1, &own_public]), &bytes[..60]), &bytes[60..76]) {
            return Err(DecodeError::BadMac1);
        }
        let mut responder_ephemeral = [0u8; 32];
        responder_ephemeral.copy_from_slice(&bytes[12..44]);
        let their = PublicKey::from(responder_ephemeral);
        let mut c = kdf1(&self.chaining, &responder_ephemeral);
        let mut h = hash(&[&self.hash, &responder_ephemeral]);
        c = kdf1(&c, &dh(&self.ephemeral, &their)?);
        c = kdf1(&c, &dh(&StaticSecret::from(self.keys.private.0), &their)?);
        let [c3, tau, k] = kdf3(&c, &self.keys.preshared.0);
        h = hash(&[&h, &tau]);
        let empty = &bytes[44..60];
        aead_open(&k, 0, empty, &h)?;
        let [send, recv] = kdf2(&c3, &[]);
        Ok(Session { send: Secret(send), recv: Secret(recv), our_index: self.sender, their_index: sender, send_counter: 0 })
    }
}

/// Transport keys after a completed handshake (initiator side).
#[derive(Clone, Debug)]
pub struct Session {
    send: Secret,
    recv: Secret,
    our_index: u32,
    their_index: u32,
    send_counter: u64,
}

impl Session {
    /// Encrypt one inner IP packet (padded to 16 bytes) into a transport message.
    pub fn seal(&mut self, inner: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let mut padded = inner.to_vec();
        padded.resize(inner.len().div_ceil(16) * 16, 0);
        let counter = self.send_counter;
        self.send_counter += 1;
        let mut msg = vec![4, 0, 0, 0];
        msg.extend_from_slice(&self.their_index.to_le_bytes());
        msg.extend_from_slice(&counter.to_le_bytes());
        msg.extend_from_slice(&aead_seal(&self.send.0, counter, &padded, &[])?);
        Ok(msg)
    }

    /// Decrypt a transport message addressed to us; returns the (padded) inner packet.
    pub fn open(&self, packet: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let Message::Transport { receiver, counter, bytes } = parse_message(packet)? else {
            return Err(DecodeError::UnknownType(packet.first().copied().unwrap_or(0)));
        };
        if receiver != self.our_index {
            return Err(DecodeError::WrongReceiver(receiver));
        }
        aead_open(&self.recv.0, counter, &bytes[TRANSPORT_HEADER_LEN..], &[])
    }
}

fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    parts.iter().for_each(|p| Digest::update(&mut h, p));
    h.finalize().into()
}

fn mac(key: &[u8; 32], data: &[u8]) -> [u8; 16] {
    let mut m = <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new(key.into());
    Update::update(&mut m, data);
    m.finalize_fixed().into()
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length, so `new_from_slice` can't fail; fall back to a zero MAC anyway.
    let Ok(mut m) = <SimpleHmac<Blake2s256> as KeyInit>::new_from_slice(key) else { return [0; 32] };
    parts.iter().for_each(|p| Mac::update(&mut m, p));
    m.finalize().into_bytes().into()
}

fn kdf1(c: &[u8; 32], input: &[u8]) -> [u8; 32] {
    let t0 = hmac(c, &[input]);
    hmac(&t0, &[&[1]])
}

fn kdf2(c: &[u8; 32], input: &[u8]) -> [[u8; 32]; 2] {
    let t0 = hmac(c, &[input]);
    let t1 = hmac(&t0, &[&[1]]);
    let t2 = hmac(&t0, &[&t1, &[2]]);
    [t1, t2]
}

fn kdf3(c: &[u8; 32], input: &[u8]) -> [[u8; 32]; 3] {
    let t0 = hmac(c, &[input]);
    let t1 = hmac(&t0, &[&[1]]);
    let t2 = hmac(&t0, &[&t1, &[2]]);
    let t3 = hmac(&t0, &[&t2, &[3]]);
    [t1, t2, t3]
}

fn dh(secret: &StaticSecret, public: &PublicKey) -> Result<[u8; 32], DecodeError> {
    let shared = secret.diffie_hellman(public).to_bytes();
    if shared == [0u8; 32] { Err(DecodeError::WeakKey) } else { Ok(shared) }
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    n.into()
}

fn aead_seal(key: &[u8; 32], counter: u64, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let cipher = ChaCha20Poly1305::new(key.into());
    cipher.encrypt(&nonce(counter), Payload { msg: plain, aad }).map_err(|_| DecodeError::TooLong)
}

fn aead_open(key: &[u8; 32], counter: u64, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let cipher = ChaCha20Poly1305::new(key.into());
    cipher.decrypt(&nonce(counter), Payload { msg: sealed, aad }).map_err(|_| DecodeError::BadAuthentication)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[path = "wireguard_tests.rs"]
mod tests;
