//! OpenVPN control-channel codec: the client's `P_CONTROL_HARD_RESET_CLIENT_V2` and the server's
//! `P_CONTROL_HARD_RESET_SERVER_V2`, plain, with tls-auth or with tls-crypt.
//!
//! The hard reset is the first packet of every OpenVPN session and the one DPI boxes match on
//! (opcode 7 in the top five bits of byte 0, OONI tq-023; Xue et al., USENIX Security 2022), so
//! it is the smallest exchange that proves "an OpenVPN server answers here". Endpoints that use a
//! static key stay silent unless the packet carries a valid HMAC (tls-auth) or is encrypted and
//! authenticated (tls-crypt); this module wraps and unwraps both. It stops at the server's reset:
//! no TLS, no credentials.
//!
//! Wire images (`ssl_pkt.h`, `tls_crypt.c` in OpenVPN 2.6):
//!
//! ```text
//! plain     op|kid  session_id[8]                                    ack_len acks… [remote_sid[8]] msg_pid[4] payload
//! tls-auth  op|kid  session_id[8]  hmac[n] replay_pid[4] time[4]     ack_len …
//! tls-crypt op|kid  session_id[8]  replay_pid[4] time[4] tag[32]     AES-256-CTR(ack_len …)
//! ```
//!
//! The tls-auth HMAC covers `replay_pid time op session_id rest`; the tls-crypt tag is
//! HMAC-SHA256 over `op session_id replay_pid time plaintext` and its first 16 bytes are the CTR IV.
//! Over TCP every packet is prefixed with its 16-bit big-endian length. Pure: no sockets, no
//! clock; the session id, packet id and time come from the caller.

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use vantage_measurement::VpnMode;

/// Opcode of the client's hard reset (version 2).
pub const HARD_RESET_CLIENT_V2: u8 = 7;
/// Opcode of the server's hard reset (version 2).
pub const HARD_RESET_SERVER_V2: u8 = 8;
/// Opcode of a control packet carrying TLS records.
pub const CONTROL_V1: u8 = 4;
/// Opcode of a bare acknowledgement.
pub const ACK_V1: u8 = 5;
/// The most acknowledgements one packet may carry (`RELIABLE_ACK_SIZE`).
const MAX_ACKS: u8 = 8;
/// Length of a tls-crypt tag (HMAC-SHA256).
const TLS_CRYPT_TAG: usize = 32;

/// Why a server packet was refused. Small and numeric: never bytes from the packet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The packet ends before a field does.
    #[error("truncated: {need} bytes needed, {have} present")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// More acknowledgements than OpenVPN ever sends.
    #[error("{0} acknowledgements (at most {MAX_ACKS})")]
    TooManyAcks(u8),
    /// The tls-auth HMAC or tls-crypt tag did not verify with the endpoint's key.
    #[error("authentication failed")]
    BadAuthentication,
    /// A key file that is not an OpenVPN static key.
    #[error("not an OpenVPN static key: {0}")]
    BadKey(&'static str),
}

impl DecodeError {
    /// A fixed name for the measurement's `reply_error`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => "truncated",
            Self::TooManyAcks(_) => "too_many_acks",
            Self::BadAuthentication => "bad_authentication",
            Self::BadKey(_) => "bad_key",
        }
    }
}

/// An OpenVPN static key (2048 bits: two slots of cipher key + HMAC key). Its `Debug` never
/// shows the bytes: keys must not reach logs.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticKey([u8; 256]);

impl std::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticKey(redacted)")
    }
}

impl StaticKey {
    /// Parse the text of an `openvpn --genkey secret` file.
    pub fn parse(text: &str) -> Result<StaticKey, DecodeError> {
        let begin = text.find("-----BEGIN OpenVPN Static key V1-----").ok_or(DecodeError::BadKey("no BEGIN line"))?;
        let body = &text[begin..];
        let end = body.find("-----END OpenVPN Static key V1-----").ok_or(DecodeError::BadKey("no END line"))?;
        let hex: Vec<u8> = body[..end].lines().skip(1).flat_map(|l| l.trim().bytes()).collect();
        if hex.len() != 512 {
            return Err(DecodeError::BadKey("the key is not 256 bytes"));
        }
        let mut key = [0u8; 256];
        for (i, pair) in hex.chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16).ok_or(DecodeError::BadKey("not hexadecimal"));
            key[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).map_err(|_| DecodeError::BadKey("not hexadecimal"))?;
        }
        Ok(StaticKey(key))
    }

    /// From raw bytes (tests and fuzzing).
    pub fn from_bytes(bytes: [u8; 256]) -> StaticKey {
        StaticKey(bytes)
    }

    fn cipher(&self, slot: usize) -> &[u8] {
        &self.0[slot * 128..slot * 128 + 64]
    }

    fn hmac(&self, slot: usize) -> &[u8] {
        &self.0[slot * 128 + 64..slot * 128 + 128]
    }
}

/// `--key-direction` of the client, which picks the key slots for each direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyDirection {
    /// No key-direction: both sides use slot 0 both ways.
    Bidirectional,
    /// `key-direction 0` (what servers usually set).
    Normal,
    /// `key-direction 1` (what clients of a `key-direction 0` server set).
    Inverse,
}

impl KeyDirection {
    /// (slot we send with, slot we receive with).
    fn slots(self) -> (usize, usize) {
        match self {
            Self::Bidirectional => (0, 0),
            Self::Normal => (0, 1),
            Self::Inverse => (1, 0),
        }
    }
}

/// The tls-auth HMAC digest (`--auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    /// SHA1, OpenVPN's historical default: 20-byte HMAC.
    Sha1,
    /// SHA256: 32-byte HMAC.
    Sha256,
    /// SHA512: 64-byte HMAC.
    Sha512,
}

impl Digest {
    /// HMAC length on the wire.
    pub fn mac_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    fn mac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable_key());
            parts.iter().for_each(|p| mac.update(p));
            mac.finalize().into_bytes().to_vec()
        }
        let key = &key[..self.mac_len()];
        match self {
            Self::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
            Self::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
            Self::Sha512 => run::<Hmac<sha2::Sha512>>(key, parts),
        }
    }
}

/// HMAC accepts keys of any length; this is never reached.
fn unreachable_key() -> ! {
    unreachable!("HMAC takes keys of any length")
}

/// How control packets are protected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wrap {
    /// No static key.
    Plain,
    /// `--tls-auth`: an HMAC with the static key.
    TlsAuth {
        /// The endpoint's static key.
        key: StaticKey,
        /// The client's key direction.
        direction: KeyDirection,
        /// The HMAC digest.
        digest: Digest,
    },
    /// `--tls-crypt`: AES-256-CTR and HMAC-SHA256 with the static key (client = key direction 1).
    TlsCrypt {
        /// The endpoint's static key.
        key: StaticKey,
    },
}

impl Wrap {
    /// The fixed name recorded as the measurement's `mode`.
    pub fn mode(&self) -> VpnMode {
        match self {
            Self::Plain => VpnMode::Plain,
            Self::TlsAuth { .. } => VpnMode::TlsAuth,
            Self::TlsCrypt { .. } => VpnMode::TlsCrypt,
        }
    }
}

/// The replay-protection id and time that tls-auth and tls-crypt put in every packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayId {
    /// Packet id, from 1.
    pub id: u32,
    /// Unix time, seconds.
    pub time: u32,
}

/// A control packet with its wrapping removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlPacket {
    /// Top five bits of byte 0.
    pub opcode: u8,
    /// Low three bits of byte 0.
    pub key_id: u8,
    /// The sender's session id.
    pub session_id: [u8; 8],
    /// Packet ids acknowledged.
    pub acks: Vec<u32>,
    /// Our session id, echoed when `acks` is not empty.
    pub remote_session_id: Option<[u8; 8]>,
    /// The message's own packet id (absent for `P_ACK_V1`).
    pub message_id: Option<u32>,
    /// Bytes after the header (TLS records, early-negotiation TLVs).
    pub payload_len: usize,
}

/// Which end of the control channel: it decides which key slot protects which direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The probe.
    Client,
    /// The endpoint (used by tests and fuzzing to forge replies).
    Server,
}

impl Side {
    /// (slot this side sends with, slot it receives with).
    fn slots(self, direction: KeyDirection) -> (usize, usize) {
        let (send, recv) = direction.slots();
        match self {
            Self::Client => (send, recv),
            Self::Server => (recv, send),
        }
    }
}

/// Build the client's hard reset: no acks, message id 0, no payload.
pub fn client_hard_reset(wrap: &Wrap, session_id: [u8; 8], replay: ReplayId) -> Vec<u8> {
    // ack_len 0, message packet id 0.
    seal(wrap, Side::Client, HARD_RESET_CLIENT_V2 << 3, session_id, replay, &[0, 0, 0, 0, 0])
}

/// Build the server's hard reset acknowledging `client_session`'s message 0 (tests, fuzzing).
pub fn server_hard_reset(wrap: &Wrap, session_id: [u8; 8], client_session: [u8; 8], replay: ReplayId) -> Vec<u8> {
    let mut rest = vec![1, 0, 0, 0, 0];
    rest.extend_from_slice(&client_session);
    rest.extend_from_slice(&[0, 0, 0, 0]);
    seal(wrap, Side::Server, HARD_RESET_SERVER_V2 << 3, session_id, replay, &rest)
}

fn seal(wrap: &Wrap, side: Side, op: u8, session_id: [u8; 8], replay: ReplayId, rest: &[u8]) -> Vec<u8> {
    let (pid, time) = (replay.id.to_be_bytes(), replay.time.to_be_bytes());
    let mut out = vec![op];
    out.extend_from_slice(&session_id);
    match wrap {
        Wrap::Plain => out.extend_from_slice(rest),
        Wrap::TlsAuth { key, direction, digest } => {
            let mac = digest.mac(key.hmac(side.slots(*direction).0), &[&pid, &time, &[op], &session_id, rest]);
            out.extend_from_slice(&mac);
            out.extend_from_slice(&pid);
            out.extend_from_slice(&time);
            out.extend_from_slice(rest);
        }
        Wrap::TlsCrypt { key } => {
            let (slot, _) = side.slots(KeyDirection::Inverse);
            let tag = Digest::Sha256.mac(key.hmac(slot), &[&[op], &session_id, &pid, &time, rest]);
            let mut body = rest.to_vec();
            ctr(key.cipher(slot), &tag, &mut body);
            out.extend_from_slice(&pid);
            out.extend_from_slice(&time);
            out.extend_from_slice(&tag);
            out.extend_from_slice(&body);
        }
    }
    out
}

fn ctr(key: &[u8], tag: &[u8], data: &mut [u8]) {
    type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;
    let mut cipher = Aes256Ctr::new(key[..32].into(), tag[..16].into());
    cipher.apply_keystream(data);
}

/// Unwrap and parse one control packet from the server.
pub fn parse_server_packet(wrap: &Wrap, packet: &[u8]) -> Result<ControlPacket, DecodeError> {
    parse_packet(wrap, Side::Client, packet)
}

/// Unwrap and parse one control packet as `receiver` (the server side is for tests and fuzzing).
pub fn parse_packet(wrap: &Wrap, receiver: Side, packet: &[u8]) -> Result<ControlPacket, DecodeError> {
    let need = |n: usize| if packet.len() < n { Err(DecodeError::Truncated { need: n, have: packet.len() }) } else { Ok(()) };
    need(9)?;
    let op = packet[0];
    let mut session_id = [0u8; 8];
    session_id.copy_from_slice(&packet[1..9]);
    let rest: Vec<u8> = match wrap {
        Wrap::Plain => packet[9..].to_vec(),
        Wrap::TlsAuth { key, direction, digest } => {
            let n = digest.mac_len();
            need(9 + n + 8)?;
            let (mac, tail) = packet[9..].split_at(n);
            let (ids, rest) = tail.split_at(8);
            let expected = digest.mac(key.hmac(receiver.slots(*direction).1), &[ids, &[op], &session_id, rest]);
            if !constant_time_eq(mac, &expected) {
                return Err(DecodeError::BadAuthentication);
            }
            rest.to_vec()
        }
        Wrap::TlsCrypt { key } => {
            need(9 + 8 + TLS_CRYPT_TAG)?;
            let ids = &packet[9..17];
            let tag = &packet[17..17 + TLS_CRYPT_TAG];
            let (_, slot) = receiver.slots(KeyDirection::Inverse);
            let mut plain = packet[17 + TLS_CRYPT_TAG..].to_vec();
            ctr(key.cipher(slot), tag, &mut plain);
            let expected = Digest::Sha256.mac(key.hmac(slot), &[&[op], &session_id, ids, &plain]);
            if !constant_time_eq(tag, &expected) {
                return Err(DecodeError::BadAuthentication);
            }
            plain
        }
    };
    parse_control_body(op, session_id, &rest)
}

fn parse_control_body(op: u8, session_id: [u8; 8], body: &[u8]) -> Result<ControlPacket, DecodeError> {
    let opcode = op >> 3;
    let mut r = Reader { buf: body, pos: 0 };
    let ack_len = r.u8()?;
    if ack_len > MAX_ACKS {
        return Err(DecodeError::TooManyAcks(ack_len));
    }
    let acks = (0..ack_len).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?;
    let remote_session_id = if ack_len > 0 { Some(r.array8()?) } else { None };
    let message_id = if opcode == ACK_V1 { None } else { Some(r.u32()?) };
    Ok(ControlPacket { opcode, key_id: op & 7, session_id, acks, remote_session_id, message_id, payload_len: body.len() - r.pos })
}

/// Why a well-formed packet is not the answer to our reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Another opcode than the server's hard reset.
    #[error("opcode {0}, not a server hard reset")]
    WrongOpcode(u8),
    /// It does not acknowledge our packet on our session.
    #[error("does not acknowledge our reset")]
    NotOurSession,
}

impl ReplyError {
    /// A fixed name for the measurement's `reply_error`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::WrongOpcode(_) => "wrong_opcode",
            Self::NotOurSession => "wrong_session",
        }
    }
}

/// Is `reply` the server's hard reset acknowledging our reset (message id 0 on `our_session`)?
pub fn check_server_reset(reply: &ControlPacket, our_session: [u8; 8]) -> Result<(), ReplyError> {
    if reply.opcode != HARD_RESET_SERVER_V2 {
        return Err(ReplyError::WrongOpcode(reply.opcode));
    }
    if reply.remote_session_id != Some(our_session) || !reply.acks.contains(&0) {
        return Err(ReplyError::NotOurSession);
    }
    Ok(())
}

/// Prefix a packet with its 16-bit length, for TCP.
pub fn frame_tcp(packet: &[u8]) -> Vec<u8> {
    let len = u16::try_from(packet.len()).unwrap_or(u16::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(&packet[..usize::from(len)]);
    out
}

/// Split the first length-prefixed packet off a TCP byte stream: `Ok(None)` until it is complete.
pub fn unframe_tcp(stream: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = usize::from(u16::from_be_bytes([*stream.first()?, *stream.get(1)?]));
    let end = 2 + len;
    (stream.len() >= end).then(|| (&stream[2..end], &stream[end..]))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.pos + n;
        let bytes = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated { need: end, have: self.buf.len() })?;
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn array8(&mut self) -> Result<[u8; 8], DecodeError> {
        let mut out = [0u8; 8];
        out.copy_from_slice(self.take(8)?);
        Ok(out)
    }
}

#[cfg(test)]
#[path = "openvpn_tests.rs"]
mod tests;
