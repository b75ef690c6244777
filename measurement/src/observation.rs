//! Observations: the ordered steps of a measurement, each with timings, failure and detail.

use std::net::{IpAddr, SocketAddr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::failure::{Failure, RawCode};

/// One step of a measurement: what was tried, by whom, when, and what came of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Observation {
    /// The operation this step performed.
    pub op: Operation,
    /// Whether this step tested the target or one of its controls.
    pub role: Role,
    /// Where the step ran: on the probe, or on the test helper off the censored path.
    pub vantage: Vantage,
    /// Milliseconds from the measurement's start to the start of this step.
    pub t_start_ms: f64,
    /// Milliseconds the step took.
    pub duration_ms: f64,
    /// The server-side address contacted (never the probe's own address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<SocketAddr>,
    /// The TLS/QUIC server name sent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// `null` when the step succeeded; otherwise why it failed.
    pub failure: Option<Failure>,
    /// The raw code the failure was derived from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawCode>,
    /// Protocol-specific detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
    /// Which trial this step belongs to, when the test was repeated (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<u32>,
}

impl Observation {
    /// Did this step succeed?
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }
}

/// The operation of a step, following OONI's `failed_operation` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// A DNS lookup.
    Resolve,
    /// A TCP connect.
    Connect,
    /// A TLS handshake over TCP.
    TlsHandshake,
    /// A QUIC handshake.
    QuicHandshake,
    /// A VPN protocol handshake.
    VpnHandshake,
    /// Data exchanged after a handshake.
    Data,
}

impl Operation {
    /// The stable string used as the `phase` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resolve => "resolve",
            Self::Connect => "connect",
            Self::TlsHandshake => "tls_handshake",
            Self::QuicHandshake => "quic_handshake",
            Self::VpnHandshake => "vpn_handshake",
            Self::Data => "data",
        }
    }
}

/// Which side of the target/control pair a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The thing under test (target name, target SNI).
    Target,
    /// A control on the same path (control SNI, control resolver).
    Control,
}

/// Where a step ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Vantage {
    /// On the volunteer's probe.
    Probe,
    /// On the collector's test helper, outside the censored network.
    Helper,
    /// Through a DNS-over-HTTPS resolver (its traffic is encrypted end to end).
    Doh,
}

/// Protocol-specific detail of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Detail {
    /// A DNS lookup.
    Dns(DnsDetail),
    /// A TLS or QUIC handshake.
    Tls(TlsDetail),
    /// Bytes exchanged (a data phase after a handshake, or a UDP echo).
    Data(DataDetail),
    /// A VPN or Tor handshake, its data phase, or its random-bytes control.
    Vpn(VpnDetail),
}

/// What a VPN step saw. Never carries keys, session ids or the probe's tunnel address: only
/// what a researcher needs to see how far the protocol got.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VpnDetail {
    /// `openvpn`, `wireguard`, `ikev2`, `tor`, or `random` for the random-bytes control.
    pub protocol: String,
    /// Protocol options that change the wire image: `plain`, `tls_auth`, `tls_crypt`
    /// (OpenVPN), `nat_t` (IKEv2 on 4500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// How far the exchange got.
    pub stage_reached: VpnStage,
    /// Datagrams or framed packets sent, retransmits included.
    pub packets_sent: u32,
    /// Datagrams or framed packets received, valid or not.
    pub packets_received: u32,
    /// Length of the first packet sent (the random-bytes control matches it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_packet_len: Option<u32>,
    /// What the reply was, as a fixed name (`hard_reset_server_v2`, `handshake_response`,
    /// `ike_sa_init_response`, `notify:INVALID_KE_PAYLOAD`, `versions`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// Why a reply was not accepted, as a fixed name (`bad_hmac`, `wrong_session`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_error: Option<String>,
}

/// How far a VPN exchange got, in order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VpnStage {
    /// Nothing was sent (no socket, no route).
    #[default]
    None,
    /// The TCP connection is up (TCP transports only).
    Connected,
    /// The first packet left.
    Sent,
    /// Bytes came back, but not a valid answer to what was sent.
    Reply,
    /// The server's handshake answer parsed and verified (HMAC, AEAD, session, SPI).
    Handshake,
    /// Data made the round trip through the tunnel, or the link protocol answered.
    Data,
}

impl VpnStage {
    /// The stable string used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Connected => "connected",
            Self::Sent => "sent",
            Self::Reply => "reply",
            Self::Handshake => "handshake",
            Self::Data => "data",
        }
    }
}

/// What a data exchange moved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DataDetail {
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Milliseconds after the step's start when the last byte arrived (stall vs slow trickle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_byte_ms: Option<f64>,
}

/// What a DNS lookup saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DnsDetail {
    /// Which resolver engine: `system`, `udp`, `doh`, `helper`.
    pub engine: String,
    /// The resolver's address for `udp` (a public resolver's, never the LAN's: see the probe docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<String>,
    /// The name asked for.
    pub query_name: String,
    /// The record type asked for (`A`, `AAAA`).
    pub query_type: String,
    /// Every reply received, in arrival order. More than one is injection evidence.
    pub replies: Vec<DnsReply>,
}

/// One DNS reply.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DnsReply {
    /// Milliseconds after the query was sent.
    pub after_ms: f64,
    /// Response code name (`NOERROR`, `NXDOMAIN`, `SERVFAIL`, …).
    pub rcode: String,
    /// Address answers.
    pub answers: Vec<DnsAnswer>,
    /// Whether the reply carried an SOA in its authority section (genuine NXDOMAINs usually do).
    #[serde(default)]
    pub has_soa: bool,
    /// IP TTL of the reply packet, when the platform reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_ttl: Option<u8>,
}

/// One address answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DnsAnswer {
    /// The address.
    pub ip: IpAddr,
    /// The record TTL in seconds.
    pub ttl: u32,
}

/// What a TLS or QUIC handshake saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TlsDetail {
    /// Negotiated version (`TLSv1_3`, `TLSv1_2`), once the handshake got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Negotiated ALPN protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    /// Negotiated cipher suite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_suite: Option<String>,
    /// The certificate chain as sent by the server, leaf first (base64 DER). Kept even when
    /// verification fails: an interception certificate is the evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_certificates: Vec<String>,
    /// SHA-256 of the leaf certificate (hex), to compare with the helper without the whole chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_sha256: Option<String>,
    /// Whether the chain verified for the SNI against the trust anchors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// Why verification failed, in OONI's words, while the handshake itself went on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_failure: Option<Failure>,
}
