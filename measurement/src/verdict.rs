//! The verdict: what a measurement concluded and which rule said so.
//!
//! `mechanism` is a closed set of rule ids, not free text, because it becomes a Prometheus label
//! and a research filter: both need a bounded vocabulary that only grows by a code change.

use crate::localisation::Localisation;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

crate::closed_set! {
    /// The outcome of one measurement.
    pub enum Status {
        /// Reachable from the probe.
        Ok => "ok",
        /// Unreachable from the probe while the controls show it is up: interference.
        Blocked => "blocked",
        /// Unreachable for everyone: the controls failed too. Never evidence of censorship.
        Down => "down",
        /// The evidence does not support either conclusion (no control, lossy path, …).
        Inconclusive => "inconclusive",
    }
}

crate::closed_set! {
    /// The rule that decided a verdict, serialised as its dotted id (`tls.mitm_certificate`): a
    /// bounded set that becomes a metric label and a research filter.
    pub enum Mechanism {
        // --- DNS ---
        /// More than one reply to one query, disagreeing: an on-path injector raced the resolver.
        DnsInjected => "dns.injected",
        /// NXDOMAIN (or no data) for a name the control resolves.
        DnsNxdomainHijack => "dns.nxdomain_hijack",
        /// A bogon / sinkhole address the control does not return.
        DnsBogon => "dns.bogon",
        /// The resolver did not answer, while the control did.
        DnsTimeout => "dns.timeout",
        /// The resolver answered SERVFAIL or REFUSED, while the control resolved the name.
        DnsResolverError => "dns.resolver_error",
        /// Answers differ from the control's without other evidence (CDNs do this): not blocking.
        DnsAnswerMismatch => "dns.answer_mismatch",
        /// An answered address the control does not return is a known block page, or fails TLS
        /// for the name from the probe and the helper while the control's address serves it.
        DnsForgedAnswer => "dns.forged_answer",
        // --- TCP ---
        /// The SYN was answered with a RST while the helper connects.
        TcpRefused => "tcp.refused",
        /// The connection was reset while the helper connects.
        TcpReset => "tcp.reset",
        /// The SYN went unanswered while the helper connects.
        TcpTimeout => "tcp.timeout",
        /// ICMP unreachable while the helper connects.
        TcpUnreachable => "tcp.unreachable",
        // --- TLS ---
        /// RST right after the ClientHello with the target SNI; the control SNI completed.
        TlsResetAfterClientHello => "tls.reset_after_clienthello",
        /// The handshake with the target SNI timed out; the control SNI completed.
        TlsTimeoutSni => "tls.timeout_sni",
        /// The connection was closed after the ClientHello with the target SNI; control completed.
        TlsEofAfterClientHello => "tls.eof_after_clienthello",
        /// A TLS alert for the target SNI only, while the helper completes the same handshake.
        TlsAlertSni => "tls.alert_sni",
        /// Handshakes fail with every SNI on this endpoint, while the helper completes them.
        TlsHandshakeBlocked => "tls.handshake_blocked",
        /// The handshake completed, then data for the target SNI froze while the control's flowed.
        TlsDataStall => "tls.data_stall",
        /// Data for the target SNI flowed far slower than for the control SNI on the same path:
        /// `inconclusive` from the `tls` test (a third-party server may be busy), `blocked` from
        /// the `throttle` test (the same body from the project's reference endpoint, every pair).
        TlsThrottled => "tls.throttled",
        /// A certificate the helper does not see, from an issuer we do not trust: interception.
        TlsMitmCertificate => "tls.mitm_certificate",
        /// The certificate did not verify and there is no helper to compare with.
        TlsUntrustedCertificate => "tls.untrusted_certificate",
        /// A TLS 1.3 handshake offering ECH (GREASE or real) failed while the same handshake without
        /// it, to the same address with the same SNI, completed: the ECH extension is what's blocked.
        TlsEchBlocked => "tls.ech_blocked",
        // --- QUIC / UDP ---
        /// The QUIC Initial with the target SNI went unanswered; the control SNI completed.
        QuicSniBlocked => "quic.sni_blocked",
        /// No QUIC handshake completes with any SNI, while the helper completes it.
        UdpBlocked => "udp.blocked",
        /// QUIC fails with every SNI while plain UDP to the same address is echoed: QUIC is filtered.
        QuicBlocked => "quic.blocked",
        // --- VPN and circumvention ---
        /// No OpenVPN hard-reset reply while the helper reaches the endpoint; no random-bytes control.
        VpnOpenvpnNoResetReply => "vpn.openvpn.no_reset_reply",
        /// No WireGuard handshake response while the helper reaches the endpoint; no random-bytes control.
        VpnWireguardNoHandshakeResponse => "vpn.wireguard.no_handshake_response",
        /// No IKE reply while the helper reaches the endpoint; no random-bytes control.
        VpnIkev2NoReply => "vpn.ikev2.no_reply",
        /// The protocol got no answer while random bytes of equal length to the same port number
        /// were echoed and the helper reaches the endpoint: the protocol itself is recognised.
        VpnFingerprintBlocked => "vpn.fingerprint_blocked",
        /// The protocol and random bytes of equal length to the same port number both went
        /// unanswered while the helper reaches the endpoint: the port is blocked.
        VpnPortBlocked => "vpn.port_blocked",
        /// The handshake completed, then data through the tunnel stopped while the helper's flowed.
        VpnDataStall => "vpn.data_stall",
        /// A reply arrived that is not the endpoint's (wrong session, MAC or format) while the helper
        /// gets the real one: something on the path answered in the server's place.
        VpnForgedReply => "vpn.forged_reply",
        /// The TLS handshake to a Tor OR port failed while the helper completes it.
        TorHandshakeBlocked => "tor.handshake_blocked",
        /// TLS to a Tor OR port completed, then the link protocol (VERSIONS) got no answer while the
        /// helper's did.
        TorLinkBlocked => "tor.link_blocked",
        /// The obfs4 handshake got no valid answer from the bridge while a low-entropy payload to
        /// the same port number was echoed, or the helper completed the handshake.
        Obfs4HandshakeBlocked => "obfs4.handshake_blocked",
        /// The obfs4 handshake completed, then the flow died within the data phase (64 KiB
        /// through the tunnel) while a low-entropy payload of equal length was echoed: a cut of
        /// high-entropy flows after a volume threshold.
        Obfs4DataCut => "obfs4.data_cut",
        // --- encrypted DNS ---
        /// DoT: the TLS handshake with the resolver's name completed with its real certificate,
        /// then the query got something that is not a DNS reply to it (or no reply), while the
        /// helper's query was answered.
        DotBadAnswer => "dot.bad_answer",
        /// DoH: the TLS handshake with the resolver's name completed with its real certificate,
        /// then the POST got something that is not a DNS reply to the query (an HTTP error, a page,
        /// a garbled body, or nothing), while the helper's query was answered.
        DohBadAnswer => "doh.bad_answer",
        // --- general ---
        /// An earlier test in this run triggered a block on the same endpoint; censors keep blocking
        /// the (client, server, port) tuple for 90–180 s, which alone explains this failure.
        ResidualSuspected => "residual.suspected",
        /// The probe's own network is down: nothing could be measured.
        NetworkOffline => "network.offline",
        /// This network has no IPv6: a connect to the target's IPv6 address failed at once for want
        /// of a route or a source address, while its IPv4 measurement stands on its own. Status
        /// `inconclusive`, never `blocked`: a network without IPv6 is not censoring it.
        NetworkNoIpv6 => "network.no_ipv6",
        /// The target failed and no control was available to tell blocking from breakage.
        NoControl => "control.unavailable",
        /// The target and the control both failed (server or path down for everyone).
        ControlFailed => "control.failed",
        /// The control succeeded, the target failed, and no specific rule explains how.
        Other => "other",

    }
}

/// What one measurement concluded, which rule decided it, and the facts it rested on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Verdict {
    /// The outcome.
    pub status: Status,
    /// The rule that decided it; absent for a plain `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<Mechanism>,
    /// Short facts that fired the rule, in words a researcher can check against the observations
    /// (e.g. `target sni: connection_reset in tls_handshake after 3 ms`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// For repeated trials: in how many of how many the target failed while its control worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials: Option<Trials>,
    /// For a `blocked` `tls` or `dns` verdict: where the censor sits, from the TTL-limited
    /// follow-up (absent when it did not run: `--no-localise`, or another verdict or test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localisation: Option<Localisation>,
}

/// Counts over repeated trials of one measurement (probabilistic censors block some flows only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Trials {
    /// Trials in which the target was interfered with.
    pub blocked: u32,
    /// Trials run.
    pub total: u32,
}

impl Verdict {
    /// A plain success.
    pub fn ok() -> Self {
        Verdict { status: Status::Ok, mechanism: None, evidence: Vec::new(), trials: None, localisation: None }
    }

    /// A verdict with a rule and evidence.
    pub fn new(status: Status, mechanism: Mechanism, evidence: Vec<String>) -> Self {
        Verdict { status, mechanism: Some(mechanism), evidence, trials: None, localisation: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn mechanism_ids_are_unique_dotted_and_round_trip() {
        let mut seen = HashSet::new();
        for m in Mechanism::ALL {
            let id = m.as_str();
            assert!(seen.insert(id), "duplicate mechanism {id}");
            assert!(id.contains('.') || id == "other", "{id} has no layer prefix");
            let json = serde_json::to_string(m).expect("serialise");
            let back: Mechanism = serde_json::from_str(&json).expect("parse");
            assert_eq!(back, *m);
        }
    }

    #[test]
    fn an_unknown_mechanism_is_rejected_with_its_name() {
        let err = serde_json::from_str::<Mechanism>("\"dns.made_up\"").unwrap_err();
        assert!(err.to_string().contains("dns.made_up"));
    }

    #[test]
    fn status_parses_its_own_strings_only() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(*s));
        }
        assert_eq!(Status::parse("BLOCKED"), None);
    }
}
