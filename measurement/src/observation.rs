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

crate::closed_set! {
    /// The operation of a step, following OONI's `failed_operation` names.
    pub enum Operation {
        /// A DNS lookup.
        Resolve => "resolve",
        /// A TCP connect.
        Connect => "connect",
        /// A TLS handshake over TCP.
        TlsHandshake => "tls_handshake",
        /// A QUIC handshake.
        QuicHandshake => "quic_handshake",
        /// A VPN protocol handshake.
        VpnHandshake => "vpn_handshake",
        /// Data exchanged after a handshake.
        Data => "data",
    }
}

crate::closed_set! {
    /// Which side of the target/control pair a step belongs to.
    pub enum Role {
        /// The thing under test (target name, target SNI).
        Target => "target",
        /// A control on the same path (control SNI, control resolver).
        Control => "control",
    }
}

crate::closed_set! {
    /// Where a step ran.
    pub enum Vantage {
        /// On the volunteer's probe.
        Probe => "probe",
        /// On the collector's test helper, outside the censored network.
        Helper => "helper",
        /// Through a DNS-over-HTTPS resolver (its traffic is encrypted end to end).
        Doh => "doh",
    }
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
    /// The protocol spoken, or `random` for the random-bytes control.
    pub protocol: VpnProtocol,
    /// Protocol options that change the wire image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<VpnMode>,
    /// How far the exchange got.
    pub stage_reached: VpnStage,
    /// Datagrams or framed packets sent, retransmits included.
    pub packets_sent: u32,
    /// Datagrams or framed packets received, valid or not.
    pub packets_received: u32,
    /// Length of the first packet sent (the random-bytes control matches it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_packet_len: Option<u32>,
    /// What the reply was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<VpnReply>,
    /// Why a reply was not accepted, as a fixed name (`bad_hmac`, `wrong_session`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_error: Option<String>,
    /// Bytes written by this step (obfs4: handshake, frames; its control: the payload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
}

crate::closed_set! {
    /// The protocol of a VPN step.
    #[default = Random]
    pub enum VpnProtocol {
        /// OpenVPN (UDP or TCP).
        Openvpn => "openvpn",
        /// WireGuard.
        Wireguard => "wireguard",
        /// IKEv2.
        Ikev2 => "ikev2",
        /// Tor's link protocol on an OR port.
        Tor => "tor",
        /// obfs4 to a Tor bridge.
        Obfs4 => "obfs4",
        /// The obfs4 test's control: printable text as long as the obfs4 flow.
        LowEntropy => "low_entropy",
        /// The random-bytes control: bytes of the protocol's first packet's length, no protocol.
        Random => "random",
    }
}

crate::closed_set! {
    /// A protocol option that changes the wire image of a VPN step.
    pub enum VpnMode {
        /// OpenVPN without a static key.
        Plain => "plain",
        /// OpenVPN `--tls-auth` (HMAC on the control channel).
        TlsAuth => "tls_auth",
        /// OpenVPN `--tls-crypt` (encrypted control channel).
        TlsCrypt => "tls_crypt",
        /// IKEv2 on UDP 4500 with the non-ESP marker.
        NatT => "nat_t",
    }
}

crate::closed_set! {
    /// What a VPN endpoint (or the echo of the random-bytes control) answered.
    pub enum VpnReply {
        /// OpenVPN `P_CONTROL_HARD_RESET_SERVER_V2`.
        HardResetServerV2 => "hard_reset_server_v2",
        /// WireGuard handshake response (message type 2), authenticated.
        HandshakeResponse => "handshake_response",
        /// An ICMP echo reply through a WireGuard tunnel.
        EchoReply => "echo_reply",
        /// Tor `VERSIONS` cell.
        Versions => "versions",
        /// The obfs4 bridge's handshake response, its MAC and ntor AUTH verified.
        ServerHandshake => "server_handshake",
        /// Data from the bridge's upstream came back through the obfs4 tunnel.
        TunnelData => "tunnel_data",
        /// The random bytes came back from the echo service.
        Echo => "echo",
        /// IKEv2 IKE_SA_INIT response with SA and KE: the responder accepted our proposal.
        SaInitResponse => "sa_init_response",
        /// IKEv2 notify INVALID_SYNTAX.
        NotifyInvalidSyntax => "notify:INVALID_SYNTAX",
        /// IKEv2 notify NO_PROPOSAL_CHOSEN: a responder that accepts none of our algorithms.
        NotifyNoProposalChosen => "notify:NO_PROPOSAL_CHOSEN",
        /// IKEv2 notify INVALID_KE_PAYLOAD: the responder wants another offered group.
        NotifyInvalidKePayload => "notify:INVALID_KE_PAYLOAD",
        /// IKEv2 notify COOKIE (a responder under load asks for a cookie round trip).
        NotifyCookie => "notify:COOKIE",
        /// IKEv2 notify NAT_DETECTION_SOURCE_IP first.
        NotifyNatDetectionSourceIp => "notify:NAT_DETECTION_SOURCE_IP",
        /// IKEv2 notify NAT_DETECTION_DESTINATION_IP first.
        NotifyNatDetectionDestinationIp => "notify:NAT_DETECTION_DESTINATION_IP",
        /// IKEv2 notify MULTIPLE_AUTH_SUPPORTED first.
        NotifyMultipleAuthSupported => "notify:MULTIPLE_AUTH_SUPPORTED",
        /// IKEv2 notify IKEV2_FRAGMENTATION_SUPPORTED first.
        NotifyFragmentationSupported => "notify:IKEV2_FRAGMENTATION_SUPPORTED",
        /// IKEv2 notify SIGNATURE_HASH_ALGORITHMS first.
        NotifySignatureHashAlgorithms => "notify:SIGNATURE_HASH_ALGORITHMS",
        /// Another IKEv2 error notify (types below 16384).
        NotifyError => "notify:error",
        /// Another IKEv2 status notify (types from 16384).
        NotifyStatus => "notify:status",
        /// A well-formed IKEv2 reply with neither SA+KE nor a notify.
        Other => "other",
    }
}

crate::closed_set! {
    /// How far a VPN exchange got, in order.
    #[default = None]
    pub enum VpnStage {
        /// Nothing was sent (no socket, no route).
        None => "none",
        /// The TCP connection is up (TCP transports only).
        Connected => "connected",
        /// The first packet left.
        Sent => "sent",
        /// Bytes came back, but not a valid answer to what was sent.
        Reply => "reply",
        /// The server's handshake answer parsed and verified (HMAC, AEAD, session, SPI).
        Handshake => "handshake",
        /// Data made the round trip through the tunnel, or the link protocol answered.
        Data => "data",
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
    /// Body bytes received after the HTTP response head (the `throttle` test's downloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<u64>,
    /// Milliseconds after the step's start when the first body byte arrived (`throttle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_ms: Option<f64>,
    /// Goodput in bytes per second: `body_bytes` over the time from the request to the last body
    /// byte, or to the deadline when the body did not complete (`throttle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput_bytes_per_s: Option<u64>,
}

/// What a DNS lookup saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DnsDetail {
    /// Which resolver engine asked.
    pub engine: DnsEngine,
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

crate::closed_set! {
    /// Which resolver engine a DNS step used (the step's `vantage` says where it ran).
    #[default = System]
    pub enum DnsEngine {
        /// The operating system's resolver configuration (via hickory-resolver).
        System => "system",
        /// One UDP query to a named resolver, recording every reply that arrives.
        Udp => "udp",
        /// DNS over HTTPS to a trusted resolver.
        Doh => "doh",
        /// One UDP query to an address that runs no DNS service: any answer is injected.
        Blackhole => "blackhole",
        /// DNS over TLS (RFC 7858) to a resolver: the `dot` test's query.
        Dot => "dot",
    }
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
    /// The `ech` test only: whether this ClientHello offered Encrypted Client Hello. Absent for
    /// every other test's handshakes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ech: Option<EchOffer>,
}

crate::closed_set! {
    /// What a ClientHello of the `ech` test offered (both sides of the pair are TLS 1.3 only).
    pub enum EchOffer {
        /// No ECH extension: the control of the pair.
        None => "none",
        /// A GREASE ECH extension (0xfe0d) with random contents and no configuration behind it.
        /// (Real ECH, with a configuration from the target's DNS HTTPS record, is not built yet:
        /// it will be a third value.)
        Grease => "grease",
    }
}
