//! The follow-up of a `blocked` `tls` or `dns` verdict that looks for the censor's hop (issue 15;
//! method and numbers in `docs/localisation.md`).
//!
//! [`Sweep`] is the plan, pure and table-tested: the control name first at TTL 1, 2, … until it
//! reaches the server (hop S), then two TTLs past it, N = min(S + 2, [`MAX_TTL`]); then the target
//! name at TTL 1..=N in ascending order, stopping as soon as the classifier's answer can't change.
//! At most 2 × [`MAX_TTL`] = 32 attempts. Attempts with the control name can't trigger the censor;
//! target attempts below the censor can't either, so only a target attempt that follows one that
//! drew an injection or silence (it may have reached the censor and started a residual penalty)
//! waits for the spacing. [`follow_up`] is the thin I/O around it: sockets from
//! [`crate::runner::localise`], the waits, the stop flag.
//!
//! Where it runs: after a run's measurements, as a pass of its own (`crate::schedule`), so the
//! residual wait that must follow the measurement's own trigger overlaps with the rest of the run
//! and localisations of different servers wait side by side; one server's follow-ups run one at a
//! time. A blocked `tls`/`dns` measurement is handed over when its follow-up ends, with the block
//! in `verdict.localisation`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;
use vantage_measurement::{Localisation, LocalisedHow, Measurement, Mechanism, NotLocalised, Placement, Status, TestKind};

use crate::classify::localise::{self as rules, How, Injection, Localisation as Found, Reason, Row, Seen};
use crate::measure::MeasureConfig;
use crate::schedule::Stop;

#[cfg(test)]
mod tests;

/// The highest TTL tried (the bound of the issue: 16 control + 16 target attempts at most).
pub const MAX_TTL: u8 = 16;

/// The wait between target attempts that may reach the censor once one has triggered it: the long
/// end of the residual penalties real censors keep (90–180 s, `reference/censorship-methods.md`),
/// like the scheduler's residual window.
pub const DEFAULT_SPACING: Duration = Duration::from_secs(180);

/// At most this many target attempts wait for the spacing in one follow-up (a settled answer
/// needs at most three: an in-path injector or a dropper at hop c is settled by TTLs c, c+1, c+2).
/// With the default spacing a follow-up so costs at most 5 × 180 s = 15 minutes of waiting,
/// not 15 × 180 s.
pub const MAX_SPACED: usize = 5;

/// How long one TTL-limited attempt listens (an ICMP error on a sub-millisecond path may come only
/// with the retransmission, ~200 ms later; real paths answer within an RTT).
pub const DEFAULT_ATTEMPT_WAIT: Duration = Duration::from_secs(2);

/// The name a DNS follow-up's control asks for: a reserved name (RFC 2606) no censor lists.
pub const DNS_CONTROL_NAME: &str = "example.org";

/// How a follow-up runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocaliseConfig {
    /// The wait after a trigger before the next attempt that may reach the censor.
    pub spacing: Duration,
    /// How long one attempt listens.
    pub attempt_wait: Duration,
}

impl Default for LocaliseConfig {
    fn default() -> Self {
        LocaliseConfig { spacing: DEFAULT_SPACING, attempt_wait: DEFAULT_ATTEMPT_WAIT }
    }
}

/// Which name an attempt carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    /// The control name (control SNI, or [`DNS_CONTROL_NAME`]).
    Control,
    /// The blocked name.
    Target,
}

/// The next thing a [`Sweep`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Send one attempt; `spaced`: wait for the spacing since the last target attempt first.
    Attempt {
        /// Which name.
        name: Name,
        /// The TTL.
        ttl: u8,
        /// Whether the spacing applies.
        spaced: bool,
    },
    /// The follow-up is over.
    Done(Localisation),
}

/// The plan of one follow-up: what each TTL drew so far, and what to do next.
#[derive(Clone, Debug, Default)]
pub struct Sweep {
    control: Vec<Seen>,
    target: Vec<Seen>,
}

impl Sweep {
    /// What to do next.
    pub fn next(&self) -> Next {
        let server_hop = self.control.iter().position(|s| *s == Seen::Reply).and_then(|i| u8::try_from(i + 1).ok());
        let tried = u8::try_from(self.control.len()).unwrap_or(MAX_TTL);
        let last = match server_hop {
            Some(s) => s.saturating_add(2).min(MAX_TTL),
            None if tried < MAX_TTL => return Next::Attempt { name: Name::Control, ttl: tried + 1, spaced: false },
            None => return Next::Done(self.report(Found::NotLocalised(Reason::ControlNeverArrived))),
        };
        if tried < last {
            return Next::Attempt { name: Name::Control, ttl: tried + 1, spaced: false };
        }
        if self.control.iter().any(|s| matches!(s, Seen::Injected { .. })) {
            // The control name draws the block too: nothing tells the target's hop apart, so no
            // target attempt is sent.
            return Next::Done(self.report(Found::NotLocalised(Reason::ControlInjected)));
        }
        let done = u8::try_from(self.target.len()).unwrap_or(MAX_TTL);
        let found = rules::localise_within(&self.rows(), server_hop);
        if done >= last || (done > 0 && settled(found)) {
            return Next::Done(self.report(found));
        }
        let first_trigger = self.target.iter().zip(&self.control).position(|(target, control)| match target {
            Seen::Injected { .. } => true,
            // Silence where the control drew an answer: the packet may have died at the censor.
            // Where the control drew nothing either, it is a router that sends no ICMP (common),
            // and counting it would spend the spaced attempts before the censor is reached.
            Seen::Nothing => matches!(control, Seen::IcmpError | Seen::Reply),
            Seen::IcmpError | Seen::Reply => false,
        });
        let spaced_so_far = first_trigger.map(|i| self.target.len() - i - 1);
        match spaced_so_far {
            Some(n) if n >= MAX_SPACED => Next::Done(self.report(found)),
            Some(_) => Next::Attempt { name: Name::Target, ttl: done + 1, spaced: true },
            None => Next::Attempt { name: Name::Target, ttl: done + 1, spaced: false },
        }
    }

    /// Record what the attempt [`Sweep::next`] asked for drew.
    pub fn record(&mut self, name: Name, seen: Seen) {
        match name {
            Name::Control => self.control.push(seen),
            Name::Target => self.target.push(seen),
        }
    }

    /// Attempts recorded so far.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.control.len() + self.target.len()).unwrap_or(u32::MAX)
    }

    /// The rows the classifier reads: one per TTL tried with both names.
    fn rows(&self) -> Vec<Row> {
        self.target
            .iter()
            .zip(&self.control)
            .enumerate()
            .filter_map(|(i, (target, control))| Some(Row { ttl: u8::try_from(i + 1).ok()?, target: *target, control: *control }))
            .collect()
    }

    /// The classifier's answer on what was seen so far.
    fn found(&self) -> Found {
        let server_hop = self.control.iter().position(|s| *s == Seen::Reply).and_then(|i| u8::try_from(i + 1).ok());
        rules::localise_within(&self.rows(), server_hop)
    }

    /// The classifier's answer as the schema block.
    pub fn report(&self, found: Found) -> Localisation {
        block(found, self.attempts())
    }
}

/// Whether more target TTLs can't change the answer: a hop is found and its placement is known,
/// or can never be (a reset or close ends the socket before the packet's fate shows); or the
/// target name reached the server, so no censor on this path blocks it now.
fn settled(found: Found) -> bool {
    match found {
        Found::Localised(located) => {
            located.placement != rules::Placement::Unknown
                || matches!(located.how, How::Injected(Injection::Reset | Injection::Close))
        }
        Found::NotLocalised(reason) => reason == Reason::TargetReachedServer,
    }
}

/// The classifier's answer as the schema's block.
pub fn block(found: Found, attempts: u32) -> Localisation {
    match found {
        Found::Localised(l) => Localisation {
            censor_hop: Some(l.censor_hop),
            server_hop: l.server_hop,
            how: Some(match l.how {
                How::Injected(Injection::Reset) => LocalisedHow::Reset,
                How::Injected(Injection::Alert) => LocalisedHow::Alert,
                How::Injected(Injection::Close) => LocalisedHow::Close,
                How::Injected(Injection::DnsAnswer) => LocalisedHow::DnsAnswer,
                How::Dropped => LocalisedHow::Dropped,
            }),
            placement: Some(match l.placement {
                rules::Placement::InPath => Placement::InPath,
                rules::Placement::OnPath => Placement::OnPath,
                rules::Placement::Unknown => Placement::Unknown,
            }),
            not_localised: None,
            attempts,
        },
        Found::NotLocalised(reason) => Localisation::not_localised(
            match reason {
                Reason::ControlNeverArrived => NotLocalised::ControlNeverArrived,
                Reason::ControlInjected => NotLocalised::ControlInjected,
                Reason::SingleInjection => NotLocalised::SingleInjection,
                Reason::TargetReachedServer => NotLocalised::TargetReachedServer,
                Reason::TooFewConfirmations => NotLocalised::TooFewConfirmations,
                Reason::NoSilentDifference => NotLocalised::NoSilentDifference,
                Reason::AtServerHop => NotLocalised::AtServerHop,
                _ => NotLocalised::NoRows,
            },
            attempts,
        ),
    }
}

/// Whether a measurement gets a follow-up: a `blocked` `dns` verdict (an injector or a hijacking
/// middlebox answers the query where it sits), or a `blocked` `tls` verdict that the name
/// triggered (the ClientHello drew the block; a handshake blocked whatever the name, an
/// intercepting certificate or a stall after the handshake have nothing a TTL-limited
/// ClientHello could draw).
pub fn applies(m: &Measurement) -> bool {
    m.verdict.status == Status::Blocked
        && match m.test {
            TestKind::Dns => true,
            TestKind::Tls => matches!(
                m.verdict.mechanism,
                Some(
                    Mechanism::TlsResetAfterClientHello
                        | Mechanism::TlsTimeoutSni
                        | Mechanism::TlsEofAfterClientHello
                        | Mechanism::TlsAlertSni
                )
            ),
            _ => false,
        }
}

/// What one follow-up needs from its measurement and configuration.
enum Plan {
    Tls { addr: SocketAddr, target: Vec<u8>, control: Vec<u8> },
    Dns { addr: SocketAddr, name: String },
}

/// Run the follow-up of `m` (which [`applies`]) and put its block in `m.verdict.localisation`.
/// `triggered_at`: when the measurement's own trigger went out; nothing that may reach the censor
/// is sent before the spacing since then has passed.
pub async fn follow_up(cfg: &MeasureConfig, lc: LocaliseConfig, m: &mut Measurement, triggered_at: Instant, stop: &Stop) {
    m.verdict.localisation = Some(run(cfg, lc, m, triggered_at, stop).await);
}

async fn run(cfg: &MeasureConfig, lc: LocaliseConfig, m: &Measurement, triggered_at: Instant, stop: &Stop) -> Localisation {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        return Localisation::not_localised(NotLocalised::Unsupported, 0);
    }
    let Some(plan) = plan(cfg, m) else { return Localisation::not_localised(NotLocalised::NotApplicable, 0) };
    let mut sweep = Sweep::default();
    let mut last_trigger = triggered_at;
    let mut first = true;
    loop {
        let (name, ttl, spaced) = match sweep.next() {
            Next::Done(block) => return block,
            Next::Attempt { name, ttl, spaced } => (name, ttl, spaced),
        };
        if (first || spaced) && !pause_until(last_trigger + lc.spacing, stop).await {
            return Localisation::not_localised(NotLocalised::Interrupted, sweep.attempts());
        }
        first = false;
        if stop.is_stopped() {
            return Localisation::not_localised(NotLocalised::Interrupted, sweep.attempts());
        }
        let seen = match attempt(&plan, name, ttl, lc, cfg.dns_linger).await {
            Ok(seen) => seen,
            Err(e) => {
                tracing::debug!("localisation attempt could not run: {}", e.kind());
                return sweep.report(sweep.found());
            }
        };
        if name == Name::Target {
            last_trigger = Instant::now();
        }
        sweep.record(name, seen);
    }
}

/// Sleep until `at`, in slices, watching `stop`; false when stopped.
async fn pause_until(at: Instant, stop: &Stop) -> bool {
    while Instant::now() < at {
        if stop.is_stopped() {
            return false;
        }
        tokio::time::sleep_until(at.min(Instant::now() + Duration::from_millis(500))).await;
    }
    !stop.is_stopped()
}

fn plan(cfg: &MeasureConfig, m: &Measurement) -> Option<Plan> {
    let domain = m.target.domain.as_deref()?;
    match m.test {
        TestKind::Tls => {
            let addr = SocketAddr::new(m.target.address?, m.target.port?);
            let control = m.target.control_sni.as_deref()?;
            Some(Plan::Tls { addr, target: client_hello(cfg, domain)?, control: client_hello(cfg, control)? })
        }
        TestKind::Dns => Some(Plan::Dns { addr: SocketAddr::new(cfg.dns_blackhole?, 53), name: domain.to_string() }),
        _ => None,
    }
}

/// The first flight of a TLS handshake with `sni`, as bytes (the same ClientHello the `tls` test
/// sends: same configuration, same ALPN).
fn client_hello(cfg: &MeasureConfig, sni: &str) -> Option<Vec<u8>> {
    let (config, _record) = crate::runner::tls::client_config(&cfg.anchors, crate::runner::tls::TCP_ALPN).ok()?;
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).ok()?;
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).ok()?;
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).ok()?;
    Some(hello)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
async fn attempt(plan: &Plan, name: Name, ttl: u8, lc: LocaliseConfig, linger: Duration) -> std::io::Result<Seen> {
    use crate::runner::localise::{dns_attempt, tcp_attempt};
    match (plan, name) {
        (Plan::Tls { addr, target, .. }, Name::Target) => tcp_attempt(*addr, target, ttl, lc.attempt_wait).await,
        (Plan::Tls { addr, control, .. }, Name::Control) => tcp_attempt(*addr, control, ttl, lc.attempt_wait).await,
        (Plan::Dns { addr, name: blocked }, name) => {
            let name = if name == Name::Target { blocked.as_str() } else { DNS_CONTROL_NAME };
            Ok(dns_attempt(*addr, name, ttl, lc.attempt_wait, linger).await?.seen())
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
async fn attempt(_: &Plan, _: Name, _: u8, _: LocaliseConfig, _: Duration) -> std::io::Result<Seen> {
    Err(std::io::ErrorKind::Unsupported.into())
}
