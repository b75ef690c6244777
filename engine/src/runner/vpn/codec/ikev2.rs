//! IKEv2 codec: an IKE_SA_INIT request, and the recognition of any well-formed IKE reply.
//!
//! An IPsec responder answers IKE_SA_INIT with its own SA_INIT, or with a notify-only message
//! (NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD, COOKIE): every one of these proves an IKE daemon is
//! there, so all count as reachable. strongSwan's notify-only replies carry a *zero* responder SPI
//! (checked against charon 5.9), so the SPI is not required. We never send IKE_AUTH: the
//! responder's half-open SA simply times out.
//!
//! Request (RFC 7296 §3): header (28) | SA: one IKE proposal AES-CBC-256 / HMAC-SHA2-256 PRF /
//! HMAC-SHA2-256-128 / the key-exchange groups of [`KeGroup::OFFERED`] | KE (one of those groups)
//! | Nonce (32) | NAT_DETECTION_SOURCE_IP | NAT_DETECTION_DESTINATION_IP. On UDP 4500 every
//! message starts with the 4-byte non-ESP marker (RFC 3948). Pure: SPI, nonce and key share are
//! arguments.
//!
//! Responders differ in the groups they accept (strongSwan by its plugins and configured
//! proposals, Windows MODP-2048, most others ECP-256 or Curve25519), so we offer three. A
//! responder that picks another offered group than our KE's answers INVALID_KE_PAYLOAD with the
//! group it wants (RFC 7296 §1.2); [`Reply::requested_group`] reads it so the runner can retry.

use std::net::SocketAddr;

use num_bigint::BigUint;
use sha1::{Digest, Sha1};
use vantage_measurement::VpnReply;

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
/// Notify type INVALID_KE_PAYLOAD: its data is the group the responder wants.
const INVALID_KE_PAYLOAD: u16 = 17;

/// A key-exchange (Diffie-Hellman) group, by its IANA transform id (transform type 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeGroup {
    /// Curve25519 (31): the cheapest, and the first choice of current strongSwan and others.
    Curve25519,
    /// 256-bit random ECP (19).
    Ecp256,
    /// 2048-bit MODP (14): what Windows' built-in client proposes.
    Modp2048,
}

impl KeGroup {
    /// The groups our proposal offers, in our order of preference (the first one's key share goes
    /// in the first request).
    pub const OFFERED: [KeGroup; 3] = [KeGroup::Curve25519, KeGroup::Ecp256, KeGroup::Modp2048];

    /// The IANA transform id.
    pub fn id(self) -> u16 {
        match self {
            Self::Curve25519 => 31,
            Self::Ecp256 => 19,
            Self::Modp2048 => 14,
        }
    }

    /// The offered group with this id.
    pub fn from_id(id: u16) -> Option<Self> {
        Self::OFFERED.into_iter().find(|g| g.id() == id)
    }

    /// Bytes of a public value in a KE payload.
    pub fn public_len(self) -> usize {
        match self {
            Self::Curve25519 => 32,
            Self::Ecp256 => 64,
            Self::Modp2048 => 256,
        }
    }
}

/// Our public value for one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyShare {
    /// The group.
    pub group: KeGroup,
    /// The public value, [`KeGroup::public_len`] bytes (a real one: responders check it).
    pub public: Vec<u8>,
}

/// The RFC 3526 2048-bit MODP prime (group 14), big-endian.
const MODP2048_PRIME: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD",
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F",
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510",
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
);

fn modp2048_prime() -> Option<BigUint> {
    BigUint::parse_bytes(MODP2048_PRIME.as_bytes(), 16)
}

/// The MODP-2048 public value g^x mod p (g = 2) for the secret exponent `x`, left-padded to 256
/// bytes as RFC 7296 §3.4 requires.
pub fn modp2048_public(secret: &[u8; 32]) -> Option<Vec<u8>> {
    let x = BigUint::from_bytes_be(secret);
    let y = BigUint::from(2u8).modpow(&x, &modp2048_prime()?).to_bytes_be();
    let mut public = vec![0u8; KeGroup::Modp2048.public_len().checked_sub(y.len())?];
    public.extend_from_slice(&y);
    Some(public)
}
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
    /// Our public value for one of the offered groups.
    pub key_share: KeyShare,
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
    let mut ke = req.key_share.group.id().to_be_bytes().to_vec();
    ke.extend_from_slice(&[0, 0]);
    ke.extend_from_slice(&req.key_share.public);
    payload(&mut payloads, NONCE, &ke);
    payload(&mut payloads, NOTIFY, &req.nonce);
    let zero_spi = [0u8; 8];
    payload(&mut payloads, NOTIFY, &notify_body(NAT_DETECTION_SOURCE_IP, &nat_hash(&req.initiator_spi, &zero_spi, req.source)));
    payload(
        &mut payloads,
        0,
        &notify_body(NAT_DETECTION_DESTINATION_IP, &nat_hash(&req.initiator_spi, &zero_spi, req.destination)),
    );

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

/// One proposal (#1, IKE, no SPI): encryption, PRF, integrity, and every offered group.
fn sa_payload_body() -> Vec<u8> {
    // (type, id, key length attribute)
    let mut transforms: Vec<(u8, u16, Option<u16>)> = vec![(1, 12, Some(256)), (2, 5, None), (3, 12, None)];
    transforms.extend(KeGroup::OFFERED.iter().map(|g| (4, g.id(), None)));
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
    let count = u8::try_from(transforms.len()).unwrap_or(u8::MAX);
    proposal.extend_from_slice(&[1, 1, 0, count]); // proposal 1, protocol IKE, SPI size 0
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
    /// The group named by an INVALID_KE_PAYLOAD notify (any id, offered or not).
    pub requested_group: Option<u16>,
}

impl Reply {
    /// What the responder said: `sa_init_response` when it accepted the proposal, else its
    /// first notify.
    pub fn kind(&self) -> VpnReply {
        if self.payloads.contains(&SA) && self.payloads.contains(&KE) {
            return VpnReply::SaInitResponse;
        }
        self.notifies.first().map_or(VpnReply::Other, |n| notify_reply(*n))
    }
}

/// The reply name of a notify type (the ones a responder sends to IKE_SA_INIT by name).
pub fn notify_reply(kind: u16) -> VpnReply {
    match kind {
        7 => VpnReply::NotifyInvalidSyntax,
        14 => VpnReply::NotifyNoProposalChosen,
        INVALID_KE_PAYLOAD => VpnReply::NotifyInvalidKePayload,
        16390 => VpnReply::NotifyCookie,
        NAT_DETECTION_SOURCE_IP => VpnReply::NotifyNatDetectionSourceIp,
        NAT_DETECTION_DESTINATION_IP => VpnReply::NotifyNatDetectionDestinationIp,
        16404 => VpnReply::NotifyMultipleAuthSupported,
        16430 => VpnReply::NotifyFragmentationSupported,
        16431 => VpnReply::NotifySignatureHashAlgorithms,
        0..=16383 => VpnReply::NotifyError,
        _ => VpnReply::NotifyStatus,
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
    let mut reply = Reply { responder_spi, payloads: Vec::new(), notifies: Vec::new(), requested_group: None };
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
            let kind = u16::from_be_bytes([kind[0], kind[1]]);
            if kind == INVALID_KE_PAYLOAD {
                // Protocol id, SPI size, type, SPI, then the 2-byte group.
                let data = body.get(4 + usize::from(body[1])..).unwrap_or_default();
                reply.requested_group = data.get(..2).map(|g| u16::from_be_bytes([g[0], g[1]]));
            }
            reply.notifies.push(kind);
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
