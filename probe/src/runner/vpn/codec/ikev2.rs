//! IKEv2 codec: an IKE_SA_INIT request, and the recognition of any well-formed IKE reply.
//!
//! An IPsec responder answers IKE_SA_INIT with its own SA_INIT, or with a notify-only message
//! (NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD, COOKIE): every one of these proves an IKE daemon is
//! there, so all count as reachable. strongSwan's notify-only replies carry a *zero* responder SPI
//! (checked against charon 5.9), so the SPI is not required. We never send IKE_AUTH: the
//! responder's half-open SA simply times out.
//!
//! Request (RFC 7296 §3): header (28) | SA: one IKE proposal AES-CBC-256 / HMAC-SHA2-256 PRF /
//! HMAC-SHA2-256-128 / ECP-256 (group 19) | KE (group 19, 64 bytes) | Nonce (32) |
//! NAT_DETECTION_SOURCE_IP | NAT_DETECTION_DESTINATION_IP. On UDP 4500 every message starts with
//! the 4-byte non-ESP marker (RFC 3948). Pure: SPI, nonce and key share are arguments.

use std::net::SocketAddr;

use sha1::{Digest, Sha1};

/// Exchange type IKE_SA_INIT.
pub const IKE_SA_INIT: u8 = 34;
/// Header flag: the sender is the original initiator.
const FLAG_INITIATOR: u8 = 0x08;
/// Header flag: this message is a response.
const FLAG_RESPONSE: u8 = 0x20;
/// Payload types.
const SA: u8 = 33;
const KE: u8 = 34;
const NONCE: u8 = 40;
const NOTIFY: u8 = 41;
/// Notify types.
const NAT_DETECTION_SOURCE_IP: u16 = 16388;
const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
/// The DH group we offer: 256-bit random ECP.
pub const GROUP_ECP256: u16 = 19;
/// Bytes of an ECP-256 public value in a KE payload (x ‖ y).
pub const ECP256_KE_LEN: usize = 64;
/// The most payloads we walk in one reply.
const MAX_PAYLOADS: usize = 32;

/// Why a datagram is not an IKE reply to our request. Numbers only, never packet bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than a header or than a declared length.
    #[error("truncated: {need} bytes needed, {have} present")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The NAT-T non-ESP marker is missing on port 4500.
    #[error("no non-ESP marker")]
    NoNonEspMarker,
    /// Not IKE version 2.
    #[error("IKE version {0:#x}")]
    Version(u8),
    /// The header's length disagrees with the datagram.
    #[error("header says {declared} bytes, datagram has {actual}")]
    LengthMismatch {
        /// Declared.
        declared: usize,
        /// Actual.
        actual: usize,
    },
    /// The initiator SPI is not ours.
    #[error("initiator SPI is not ours")]
    WrongSpi,
    /// Not a response to IKE_SA_INIT (exchange type, flags or message id).
    #[error("exchange {exchange}, flags {flags:#x}, message id {message_id}")]
    NotSaInitResponse {
        /// Exchange type.
        exchange: u8,
        /// Flags.
        flags: u8,
        /// Message id.
        message_id: u32,
    },
    /// A payload header with a length below 4 or past the end.
    #[error("payload {index} is malformed")]
    BadPayload {
        /// Index in the chain.
        index: usize,
    },
    /// More payloads than any IKE_SA_INIT reply has.
    #[error("more than {MAX_PAYLOADS} payloads")]
    TooManyPayloads,
}

impl DecodeError {
    /// A fixed name for the measurement's `reply_error`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => "truncated",
            Self::NoNonEspMarker => "no_non_esp_marker",
            Self::Version(_) => "version",
            Self::LengthMismatch { .. } => "length_mismatch",
            Self::WrongSpi => "wrong_spi",
            Self::NotSaInitResponse { .. } => "not_sa_init_response",
            Self::BadPayload { .. } => "bad_payload",
            Self::TooManyPayloads => "too_many_payloads",
        }
    }
}

/// What the request needs from the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaInit {
    /// Our SPI (random, non-zero).
    pub initiator_spi: [u8; 8],
    /// Our nonce (random, 32 bytes).
    pub nonce: [u8; 32],
    /// Our ECP-256 public value, x ‖ y (a real point: responders check it).
    pub key_share: [u8; ECP256_KE_LEN],
    /// Our address as the socket sees it (only hashed into NAT_DETECTION_SOURCE_IP, never kept).
    pub source: SocketAddr,
    /// The responder's address.
    pub destination: SocketAddr,
    /// Prefix the non-ESP marker (UDP 4500).
    pub nat_t: bool,
}

/// Build the IKE_SA_INIT request.
pub fn sa_init_request(req: &SaInit) -> Vec<u8> {
    let mut payloads = Vec::new();
    payload(&mut payloads, KE, &sa_payload_body());
    let mut ke = GROUP_ECP256.to_be_bytes().to_vec();
    ke.extend_from_slice(&[0, 0]);
    ke.extend_from_slice(&req.key_share);
    payload(&mut payloads, NONCE, &ke);
    payload(&mut payloads, NOTIFY, &req.nonce);
    let zero_spi = [0u8; 8];
    payload(&mut payloads, NOTIFY, &notify_body(NAT_DETECTION_SOURCE_IP, &nat_hash(&req.initiator_spi, &zero_spi, req.source)));
    payload(&mut payloads, 0, &notify_body(NAT_DETECTION_DESTINATION_IP, &nat_hash(&req.initiator_spi, &zero_spi, req.destination)));

    let mut msg = if req.nat_t { vec![0, 0, 0, 0] } else { Vec::new() };
    msg.extend_from_slice(&req.initiator_spi);
    msg.extend_from_slice(&zero_spi);
    msg.extend_from_slice(&[SA, 0x20, IKE_SA_INIT, FLAG_INITIATOR, 0, 0, 0, 0]);
    let len = u32::try_from(28 + payloads.len()).unwrap_or(u32::MAX);
    msg.extend_from_slice(&len.to_be_bytes());
    msg.extend_from_slice(&payloads);
    msg
}

/// Append a payload: generic header (next payload, flags, length) and body.
fn payload(out: &mut Vec<u8>, next: u8, body: &[u8]) {
    out.push(next);
    out.push(0);
    out.extend_from_slice(&u16::try_from(4 + body.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(body);
}

/// One proposal (#1, IKE, no SPI) with four transforms.
fn sa_payload_body() -> Vec<u8> {
    // (type, id, key length attribute)
    let transforms: [(u8, u16, Option<u16>); 4] = [(1, 12, Some(256)), (2, 5, None), (3, 12, None), (4, GROUP_ECP256, None)];
    let mut body = Vec::new();
    for (i, (kind, id, key_len)) in transforms.iter().enumerate() {
        let last = i + 1 == transforms.len();
        let len: u16 = if key_len.is_some() { 12 } else { 8 };
        body.extend_from_slice(&[if last { 0 } else { 3 }, 0]);
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(&[*kind, 0]);
        body.extend_from_slice(&id.to_be_bytes());
        if let Some(bits) = key_len {
            body.extend_from_slice(&(0x8000u16 | 14).to_be_bytes());
            body.extend_from_slice(&bits.to_be_bytes());
        }
    }
    let mut proposal = vec![0, 0];
    proposal.extend_from_slice(&u16::try_from(8 + body.len()).unwrap_or(u16::MAX).to_be_bytes());
    proposal.extend_from_slice(&[1, 1, 0, 4]); // proposal 1, protocol IKE, SPI size 0, 4 transforms
    proposal.extend_from_slice(&body);
    proposal
}

fn notify_body(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0]; // protocol id 0, SPI size 0
    body.extend_from_slice(&kind.to_be_bytes());
    body.extend_from_slice(data);
    body
}

/// SHA1(SPIi ‖ SPIr ‖ IP ‖ port), RFC 7296 §2.23.
fn nat_hash(spi_i: &[u8; 8], spi_r: &[u8; 8], addr: SocketAddr) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(spi_i);
    h.update(spi_r);
    match addr {
        SocketAddr::V4(a) => h.update(a.ip().octets()),
        SocketAddr::V6(a) => h.update(a.ip().octets()),
    }
    h.update(addr.port().to_be_bytes());
    h.finalize().into()
}

/// A well-formed IKE reply to our IKE_SA_INIT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The responder's SPI (zero in notify-only replies from strongSwan).
    pub responder_spi: [u8; 8],
    /// Payload types in order.
    pub payloads: Vec<u8>,
    /// Notify message types in order.
    pub notifies: Vec<u16>,
}

impl Reply {
    /// A fixed name for what the responder said: `sa_init_response` when it accepted the
    /// proposal, else `notify:<first notify>`.
    pub fn kind(&self) -> String {
        if self.payloads.contains(&SA) && self.payloads.contains(&KE) {
            return "sa_init_response".into();
        }
        match self.notifies.first() {
            Some(n) => format!("notify:{}", notify_name(*n)),
            None => "other".into(),
        }
    }
}

/// A short fixed name for a notify type (the error ones a responder sends to IKE_SA_INIT).
pub fn notify_name(kind: u16) -> &'static str {
    match kind {
        7 => "INVALID_SYNTAX",
        14 => "NO_PROPOSAL_CHOSEN",
        17 => "INVALID_KE_PAYLOAD",
        16390 => "COOKIE",
        16388 => "NAT_DETECTION_SOURCE_IP",
        16389 => "NAT_DETECTION_DESTINATION_IP",
        16404 => "MULTIPLE_AUTH_SUPPORTED",
        16430 => "IKEV2_FRAGMENTATION_SUPPORTED",
        16431 => "SIGNATURE_HASH_ALGORITHMS",
        0..=16383 => "error",
        _ => "status",
    }
}

/// Parse a datagram as a reply to our IKE_SA_INIT (`nat_t`: expect the non-ESP marker).
pub fn parse_reply(datagram: &[u8], initiator_spi: &[u8; 8], nat_t: bool) -> Result<Reply, DecodeError> {
    let msg = if nat_t {
        match datagram.get(..4) {
            Some([0, 0, 0, 0]) => &datagram[4..],
            Some(_) => return Err(DecodeError::NoNonEspMarker),
            None => return Err(DecodeError::Truncated { need: 4, have: datagram.len() }),
        }
    } else {
        datagram
    };
    if msg.len() < 28 {
        return Err(DecodeError::Truncated { need: 28, have: msg.len() });
    }
    if msg[17] >> 4 != 2 {
        return Err(DecodeError::Version(msg[17]));
    }
    let declared = usize::try_from(u32::from_be_bytes([msg[24], msg[25], msg[26], msg[27]])).unwrap_or(usize::MAX);
    if declared != msg.len() {
        return Err(DecodeError::LengthMismatch { declared, actual: msg.len() });
    }
    if &msg[..8] != initiator_spi {
        return Err(DecodeError::WrongSpi);
    }
    let (exchange, flags) = (msg[18], msg[19]);
    let message_id = u32::from_be_bytes([msg[20], msg[21], msg[22], msg[23]]);
    if exchange != IKE_SA_INIT || flags & FLAG_RESPONSE == 0 || flags & FLAG_INITIATOR != 0 || message_id != 0 {
        return Err(DecodeError::NotSaInitResponse { exchange, flags, message_id });
    }
    let mut responder_spi = [0u8; 8];
    responder_spi.copy_from_slice(&msg[8..16]);
    let mut reply = Reply { responder_spi, payloads: Vec::new(), notifies: Vec::new() };
    let (mut next, mut at) = (msg[16], 28);
    while next != 0 {
        let index = reply.payloads.len();
        if index == MAX_PAYLOADS {
            return Err(DecodeError::TooManyPayloads);
        }
        let header = msg.get(at..at + 4).ok_or(DecodeError::BadPayload { index })?;
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let body = msg.get(at + 4..at + len).filter(|_| len >= 4).ok_or(DecodeError::BadPayload { index })?;
        reply.payloads.push(next);
        if next == NOTIFY {
            let kind = body.get(2..4).ok_or(DecodeError::BadPayload { index })?;
            reply.notifies.push(u16::from_be_bytes([kind[0], kind[1]]));
        }
        next = header[0];
        at += len;
    }
    if at != msg.len() {
        return Err(DecodeError::BadPayload { index: reply.payloads.len() });
    }
    Ok(reply)
}

#[cfg(test)]
#[path = "ikev2_tests.rs"]
mod tests;
