//! Where the censor sits: the hop distance of a block, from TTL-limited repeats of the triggering
//! packet (issue 15; the method of Censored Planet's CenTrace and OONI's `tlsmiddlebox`).
//!
//! After a `blocked` verdict, the runner repeats the triggering packet (the ClientHello after a
//! handshake at the normal TTL, or the DNS query) with IP TTL 1, 2, …, N, once with the target
//! name and once with the control name, and records what each TTL drew as a [`Seen`]. This module
//! turns those rows into a [`Localisation`]. No I/O, no clock, no addresses: the hop *is* the TTL
//! that was sent, and intermediate hops' addresses (the volunteer's own router and ISP) are never
//! in the input.
//!
//! # Hop numbering
//!
//! A packet sent with TTL t expires at hop t, whose router answers with ICMP Time Exceeded. A
//! censor between router k and router k+1 is reported as hop k+1: "the smallest TTL whose packet
//! reaches it", for injectors and droppers alike.
//!
//! # Rules, and the false positives they avoid
//!
//! - **Injector**: the smallest TTL that draws an injection (reset, alert, forged DNS answer) for
//!   the target while the control at that TTL draws none. Loss can't forge an injection, but it
//!   can hide the one at the censor's own TTL and make us a hop late, so a second injection at a
//!   higher TTL is required before a hop is reported.
//! - **Silent dropper**: the control draws ICMP errors up to the server and a reply from it; the
//!   target draws them only up to the censor. The hop is one past the target's *last sign of
//!   life*. Loss only makes holes: a hole cannot move the last sign of life beyond the true one,
//!   and a target that ever drew the server's reply is not being dropped. At least
//!   [`MIN_SILENT_CONFIRMATIONS`] TTLs past the hop must show the control answered while the
//!   target stayed silent, so a run of lost ICMP at the end of the path is not read as a censor.
//! - **Placement**: a dropper is in-path by definition. An injector is **on-path** when the
//!   injected packet's original went on (a later ICMP error or the server's reply on the same
//!   socket) and **in-path** when, at [`MIN_SILENT_CONFIRMATIONS`] TTLs or more, nothing came
//!   after the injection where the control's packet drew an answer. Where the transport can't
//!   tell (a TCP reset closes the socket, so later ICMP and the server's reply are never seen
//!   unprivileged), placement is [`Placement::Unknown`].
//!
//! On TCP, Linux reports an ICMP error on an established socket only as `EHOSTUNREACH` (no type,
//! no code), which Time Exceeded shares with Host Unreachable and Admin Prohibited: that is why
//! the input says [`Seen::IcmpError`], not "Time Exceeded". A censor that *rejects* with ICMP
//! looks like a path that goes on, and is never located by the dropper rule.

/// How many TTLs at or past a suspected hop must show the control answered while the target
/// stayed silent (see the module docs). Three, so that two lost answers in a row at the end of a
/// lossy path are not a censor; the runner should try TTLs up to the server hop + 2, so that a
/// censor right before the server still gets three.
pub const MIN_SILENT_CONFIRMATIONS: usize = 3;

/// What one TTL-limited packet drew first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Nothing within the wait: lost, dropped, or an ICMP error that was not reported.
    Nothing,
    /// An ICMP error for this packet (Time Exceeded from the hop where the TTL ran out; on TCP any
    /// error the kernel reports as `EHOSTUNREACH`). Never carries the sender's address.
    IcmpError,
    /// Something not from the server answered: a reset, an alert, a DNS answer from an address
    /// that runs no DNS. `after` is what the same packet drew later, if anything.
    Injected {
        /// What was injected.
        kind: Injection,
        /// What followed the injection on the same socket.
        after: After,
    },
    /// The server itself answered (ServerHello, or for DNS to a non-resolver address the
    /// destination's own ICMP port unreachable): the packet reached the server.
    Reply,
}

/// What was injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// A TCP reset.
    Reset,
    /// A TLS alert (or other data) not from the server.
    Alert,
    /// A FIN: the connection closed with no answer (a censor closing both ends).
    Close,
    /// A DNS answer from an address that runs no DNS.
    DnsAnswer,
}

/// What the injected packet's original drew after the injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// The socket stayed open and nothing came until the end of the wait.
    Nothing,
    /// An ICMP error: the original packet went on past the injector.
    IcmpError,
    /// The server's reply: the original packet reached the server.
    Reply,
    /// The transport can't tell (a reset closed the socket).
    Unobservable,
}

/// One TTL's outcome for the target name and for the control name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// The IP TTL (IPv6 hop limit) the packet was sent with, from 1.
    pub ttl: u8,
    /// What the packet with the target name drew.
    pub target: Seen,
    /// What the packet with the control name drew.
    pub control: Seen,
}

/// How the block showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// The censor answered in the server's place.
    Injected(Injection),
    /// The censor dropped the packet silently.
    Dropped,
}

/// Whether the censor is in the forwarding path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In the path: the triggering packet stopped at the censor.
    InPath,
    /// Beside the path: the triggering packet went on after the injection.
    OnPath,
    /// The transport could not show whether the packet went on.
    Unknown,
}

impl Placement {
    /// The stable label, for JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::InPath => "in_path",
            Placement::OnPath => "on_path",
            Placement::Unknown => "unknown",
        }
    }
}

/// A located censor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    /// The smallest TTL whose packet reaches the censor.
    pub censor_hop: u8,
    /// The smallest TTL whose control packet reached the server, if any did.
    pub server_hop: Option<u8>,
    /// How the block showed.
    pub how: How,
    /// In-path or on-path.
    pub placement: Placement,
}

/// Why no hop is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// No TTL was tried.
    NoRows,
    /// The control name never reached the server within the TTLs tried: no path to compare with.
    ControlNeverArrived,
    /// The control name drew an injection too: not a name-based block, or the server is blocked.
    ControlInjected,
    /// One injection only: it could be a hop late (the one at the censor's TTL lost), or noise.
    SingleInjection,
    /// The target drew the server's reply at some TTL: its packets are not being dropped.
    TargetReachedServer,
    /// The target went silent too close to the end of the path to tell a dropper from loss.
    TooFewConfirmations,
    /// The target went silent where the control went silent too: loss, not a censor.
    NoSilentDifference,
    /// The block shows at the server's own hop: a censor beside the server can't be told from the
    /// server itself (which may refuse the name with an alert of its own).
    AtServerHop,
}

impl Reason {
    /// The stable label, for JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoRows => "no_rows",
            Reason::ControlNeverArrived => "control_never_arrived",
            Reason::ControlInjected => "control_injected",
            Reason::SingleInjection => "single_injection",
            Reason::TargetReachedServer => "target_reached_server",
            Reason::TooFewConfirmations => "too_few_confirmations",
            Reason::NoSilentDifference => "no_silent_difference",
            Reason::AtServerHop => "at_server_hop",
        }
    }
}

/// The outcome of a localisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Localisation {
    /// The censor's hop was found.
    Localised(Located),
    /// No hop is reported, and why.
    NotLocalised(Reason),
}

/// Locate the censor from the per-TTL rows (any order; one row per TTL).
pub fn localise(rows: &[Row]) -> Localisation {
    let server_hop = rows.iter().filter(|r| r.control == Seen::Reply).map(|r| r.ttl).min();
    localise_within(rows, server_hop)
}

/// [`localise`] when the server's hop is known from control attempts beyond the rows (a sweep that
/// has tried the target at the lower TTLs only, and asks whether more could change the answer).
pub fn localise_within(rows: &[Row], server_hop: Option<u8>) -> Localisation {
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| r.ttl);
    if rows.is_empty() {
        return Localisation::NotLocalised(Reason::NoRows);
    }
    if rows.iter().any(|r| matches!(r.control, Seen::Injected { .. })) {
        return Localisation::NotLocalised(Reason::ControlInjected);
    }
    let Some(server_hop) = server_hop else {
        return Localisation::NotLocalised(Reason::ControlNeverArrived);
    };
    let injections: Vec<(u8, Injection)> = rows
        .iter()
        .filter_map(|r| match r.target {
            Seen::Injected { kind, .. } => Some((r.ttl, kind)),
            _ => None,
        })
        .collect();
    let outcome = match injections.as_slice() {
        [] => dropped(&rows),
        [_] => Err(Reason::SingleInjection),
        [(ttl, kind), ..] => Ok(injected_at(&rows, *ttl, *kind)),
    };
    match outcome {
        Ok((censor_hop, ..)) if censor_hop >= server_hop => Localisation::NotLocalised(Reason::AtServerHop),
        Ok((censor_hop, how, placement)) => {
            Localisation::Localised(Located { censor_hop, server_hop: Some(server_hop), how, placement })
        }
        Err(reason) => Localisation::NotLocalised(reason),
    }
}

fn answered(seen: Seen) -> bool {
    matches!(seen, Seen::IcmpError | Seen::Reply)
}

/// The injector's hop, kind and placement; `first` is the lowest TTL that drew an injection.
fn injected_at(rows: &[Row], first: u8, kind: Injection) -> (u8, How, Placement) {
    let mut went_on = false;
    let mut stopped = 0;
    for row in rows.iter().filter(|r| r.ttl >= first) {
        if let Seen::Injected { after, .. } = row.target {
            match after {
                After::IcmpError | After::Reply => went_on = true,
                After::Nothing if answered(row.control) => stopped += 1,
                After::Nothing | After::Unobservable => {}
            }
        }
    }
    let placement = if went_on {
        Placement::OnPath
    } else if stopped >= MIN_SILENT_CONFIRMATIONS {
        Placement::InPath
    } else {
        Placement::Unknown
    };
    (first, How::Injected(kind), placement)
}

/// A silent dropper's hop: one past the target's last sign of life, confirmed by the control.
fn dropped(rows: &[Row]) -> Result<(u8, How, Placement), Reason> {
    if rows.iter().any(|r| r.target == Seen::Reply) {
        return Err(Reason::TargetReachedServer);
    }
    let last_alive = rows.iter().filter(|r| answered(r.target)).map(|r| r.ttl).max().unwrap_or(0);
    let confirmations = rows.iter().filter(|r| r.ttl > last_alive && answered(r.control)).count();
    if confirmations == 0 {
        return Err(Reason::NoSilentDifference);
    }
    if confirmations < MIN_SILENT_CONFIRMATIONS {
        return Err(Reason::TooFewConfirmations);
    }
    Ok((last_alive.saturating_add(1), How::Dropped, Placement::InPath))
}

#[cfg(test)]
#[path = "localise_tests.rs"]
mod tests;
