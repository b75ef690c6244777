//! Where the censor sits: the optional `verdict.localisation` block (issue 15).
//!
//! A `blocked` verdict of a `tls` or `dns` measurement may be followed up by repeating the
//! triggering packet with a limited IP TTL (see `docs/localisation.md`). The block says at which
//! hop the censor sits, at which hop the server is, how the block showed and whether the censor is
//! in the forwarding path; or, when no hop is reported, why. Hop numbers only: the addresses of
//! intermediate hops (the volunteer's own router and ISP) are never recorded.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

crate::closed_set! {
    /// How the block showed at the censor's hop.
    pub enum LocalisedHow {
        /// A TCP reset not from the server.
        Reset => "reset",
        /// A TLS alert (or other data) not from the server.
        Alert => "alert",
        /// The connection closed (FIN) with no answer.
        Close => "close",
        /// A DNS answer from an address that runs no DNS.
        DnsAnswer => "dns_answer",
        /// The triggering packet was dropped silently.
        Dropped => "dropped",
    }
}

crate::closed_set! {
    /// Whether the censor is in the forwarding path.
    pub enum Placement {
        /// In the path: the triggering packet stopped at the censor.
        InPath => "in_path",
        /// Beside the path: the triggering packet went on after the injection (a tap that only
        /// injects).
        OnPath => "on_path",
        /// The transport could not show whether the packet went on (a TCP reset closes the
        /// socket before later ICMP or the server's reply can be seen).
        Unknown => "unknown",
    }
}

crate::closed_set! {
    /// Why no hop is reported.
    pub enum NotLocalised {
        /// The control name never reached the server within the TTLs tried.
        ControlNeverArrived => "control_never_arrived",
        /// The control name drew an injection too: not a name-based block at this path.
        ControlInjected => "control_injected",
        /// One injection only: it could be a hop late, or noise.
        SingleInjection => "single_injection",
        /// The target drew the server's reply at some TTL: it is not being dropped.
        TargetReachedServer => "target_reached_server",
        /// The target went silent too close to the end of the path to tell a dropper from loss.
        TooFewConfirmations => "too_few_confirmations",
        /// The target went silent where the control went silent too: loss, not a censor.
        NoSilentDifference => "no_silent_difference",
        /// The block shows at the server's own hop: a censor beside the server can't be told from
        /// the server itself.
        AtServerHop => "at_server_hop",
        /// No TTL-limited attempt could run (the socket refused the options, the connect failed).
        NoRows => "no_rows",
        /// The platform can't set the TTL or read ICMP errors unprivileged (only Linux and
        /// Android can).
        Unsupported => "unsupported",
        /// The probe was asked to stop before the follow-up finished.
        Interrupted => "interrupted",
        /// The measurement lacks what the follow-up needs (no address; for DNS, no address
        /// without a DNS service configured).
        NotApplicable => "not_applicable",
    }
}

/// The follow-up of a `blocked` verdict that looks for the censor's hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Localisation {
    /// The smallest TTL whose packet reaches the censor; absent when not localised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub censor_hop: Option<u8>,
    /// The smallest TTL whose control packet reached the server, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_hop: Option<u8>,
    /// How the block showed at the censor's hop; absent when not localised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub how: Option<LocalisedHow>,
    /// In-path or on-path; absent when not localised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// Why no hop is reported; absent when localised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_localised: Option<NotLocalised>,
    /// TTL-limited attempts sent (control and target; at most 32).
    pub attempts: u32,
}

impl Localisation {
    /// A follow-up that reports no hop, and why.
    pub fn not_localised(reason: NotLocalised, attempts: u32) -> Localisation {
        Localisation { censor_hop: None, server_hop: None, how: None, placement: None, not_localised: Some(reason), attempts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::closed_set::tests::assert_closed_set;

    #[test]
    fn sets_are_closed() {
        assert_closed_set(LocalisedHow::ALL, |v| v.as_str(), LocalisedHow::parse);
        assert_closed_set(Placement::ALL, |v| v.as_str(), Placement::parse);
        assert_closed_set(NotLocalised::ALL, |v| v.as_str(), NotLocalised::parse);
    }

    #[test]
    fn a_localised_block_carries_hops_and_no_reason() {
        let block = Localisation {
            censor_hop: Some(3),
            server_hop: Some(5),
            how: Some(LocalisedHow::Dropped),
            placement: Some(Placement::InPath),
            not_localised: None,
            attempts: 10,
        };
        let json = serde_json::to_value(block).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"censor_hop": 3, "server_hop": 5, "how": "dropped", "placement": "in_path", "attempts": 10})
        );
        let back: Localisation = serde_json::from_value(json).expect("parse");
        assert_eq!(back, block);
        let none = serde_json::to_value(Localisation::not_localised(NotLocalised::Unsupported, 0)).expect("json");
        assert_eq!(none, serde_json::json!({"not_localised": "unsupported", "attempts": 0}));
    }
}
