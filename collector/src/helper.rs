//! `POST /api/v1/control`: the test helper, the collector's uncensored view of a target.
//!
//! A probe asks "does this step work from your network?" and the helper runs the probe's own
//! runner ([`vantage_engine::control::execute`]) and returns its observations. Because anyone can
//! ask, the helper would be an open proxy for TCP/TLS/QUIC connection attempts unless it is
//! careful, so a request passes two gates before anything is contacted:
//!
//! 1. the address must be public unicast ([`non_public_kind`]): never loopback, private,
//!    link-local, documentation, multicast, unspecified, CGNAT, …, so the helper can't be pointed
//!    at the collector's own network. Labs and tests, whose servers live on exactly those
//!    addresses, turn this off with `--danger-helper-allow-private`;
//! 2. the destination must be one the published list names, or without a list a standard port of
//!    the test ([`policy`]); an address only the helper's resolver can vouch for is looked up
//!    ([`resolved`]).
//!
//! Work is bounded: each client address may ask for so many controls a minute and have half the
//! slots at once (more get `429`, see [`crate::limits`]), at most [`MAX_IN_FLIGHT`] controls run
//! at once (more get `503`), and each has an overall deadline on top of the runners' per-step
//! timeouts. Refusals never log the request's name or address.

pub mod policy;
pub mod resolved;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use vantage_engine::control::{ControlRequest, ControlResponse, HelperTrust, execute};
use vantage_engine::step::TargetStep;
use vantage_measurement::TestKind;

use self::policy::{Decision, Refusal, Refused};
use self::resolved::ResolvedNames;
use crate::error::{ApiError, ServerFault};
use crate::limits::{LimitedEndpoint, Limiter, Subject};
use crate::metrics::{HelperOutcome, Metrics};
use crate::published::ListSlot;
use crate::server::ClientSource;

/// Controls running at once; beyond this the helper answers `503`.
pub const MAX_IN_FLIGHT: usize = 32;
// One source may hold only part of the slots (crate::limits), never all of them.
const _: () = assert!((crate::limits::HELPER_AT_ONCE_PER_SOURCE as usize) < MAX_IN_FLIGHT);
/// The largest request body: a control request is a few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// The helper's trust, policy and capacity.
#[derive(Debug)]
pub struct Helper {
    trust: HelperTrust,
    allow_private: bool,
    in_flight: Arc<Semaphore>,
    /// What the helper's resolver answered lately for listed names.
    resolved: Mutex<ResolvedNames>,
}

impl Helper {
    /// A helper verifying with `trust`; `allow_private` lifts the public-address rule (labs only;
    /// the destination policy still applies).
    pub fn new(trust: HelperTrust, allow_private: bool) -> Self {
        // The runners' rustls and quinn need a process-wide provider; another part of the
        // process may have installed one already, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Helper {
            trust,
            allow_private,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            resolved: Mutex::new(ResolvedNames::default()),
        }
    }

    /// The longest one control may take: a TLS control is a connect and a handshake, a TCP,
    /// QUIC or VPN control may need a lookup first ([`Decision::IfResolves`]) and a step or two,
    /// each under the step timeout; the margin covers the rest.
    fn deadline(&self) -> Duration {
        self.trust.timeout * 3 + Duration::from_secs(1)
    }

    fn resolved(&self) -> MutexGuard<'_, ResolvedNames> {
        self.resolved.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Does the helper's resolver return `address` for the listed `name`? From what it answered
    /// lately, else from a lookup now (at most one per name per [`resolved::MIN_REFRESH`]).
    async fn resolves_to(&self, name: &str, address: IpAddr) -> bool {
        {
            let resolved = self.resolved();
            let now = Instant::now();
            if resolved.contains(name, address, now) {
                return true;
            }
            if resolved.fresh(name, now) {
                return false;
            }
        }
        let lookup = execute(&TargetStep::Dns { domain: name.to_string() }, &self.trust).await;
        let mut resolved = self.resolved();
        resolved.record(name, &resolved::answers(&lookup.observations), Instant::now());
        resolved.contains(name, address, Instant::now())
    }

    /// Run a control the policy let through: the lookup it may still need, then the step.
    async fn run(
        &self,
        request: &ControlRequest,
        step: &TargetStep,
        decision: Decision,
        listed: bool,
    ) -> Result<ControlResponse, Refused> {
        if let Decision::IfResolves { name, address } = &decision
            && !self.resolves_to(name, *address).await
        {
            return Err(policy::not_resolved(name, *address));
        }
        let response = execute(step, &self.trust).await;
        // A listed name's answers are where later controls of that name may go.
        if listed && let (TestKind::Dns, Some(domain)) = (request.test, &request.domain) {
            self.resolved().record(&policy::normal_name(domain), &resolved::answers(&response.observations), Instant::now());
        }
        Ok(response)
    }
}

/// A refusal: `403` with its reason, counted as `forbidden` (a non-public address) or `not_listed`.
fn refuse(metrics: &Metrics, test: TestKind, refused: Refused) -> Response {
    let outcome = match refused.refusal {
        Refusal::NonPublic => HelperOutcome::Forbidden,
        _ => HelperOutcome::NotListed,
    };
    metrics.record_helper(test, outcome);
    ApiError::client(StatusCode::FORBIDDEN, Some(refused.refusal.as_str()), refused.message).into_response()
}

/// Why `ip` is not one the helper contacts by default, or `None` if it is public unicast.
pub fn non_public_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified (0.0.0.0/8)")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_documentation() {
        Some("documentation")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() || a >= 240 {
        Some("reserved")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (CGNAT)")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("benchmarking")
    } else if a == 192 && b == 0 && c == 0 {
        Some("IETF protocol assignment")
    } else {
        None
    }
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    // The well-known NAT64 prefix reaches whatever IPv4 address it embeds.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [_, _, _, _, _, _, hi, lo] = segments;
        return non_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_unique_local() {
        Some("private (unique local)")
    } else if ip.is_unicast_link_local() || segments[0] & 0xffc0 == 0xfec0 {
        Some("link-local")
    } else if (segments[0] == 0x2001 && segments[1] == 0x0db8) || segments[0] & 0xfff0 == 0x3ff0 {
        Some("documentation")
    } else if segments[..4] == [0x100, 0, 0, 0] {
        Some("discard-only")
    } else if segments[..6] == [0; 6] {
        Some("reserved (IPv4-compatible)")
    } else {
        None
    }
}

/// `POST /api/v1/control`.
pub(crate) async fn post_control(
    State(helper): State<Arc<Helper>>,
    State(metrics): State<Arc<Metrics>>,
    State(limiter): State<Arc<Limiter>>,
    ClientSource(peer): ClientSource,
    State(list): State<Arc<ListSlot>>,
    body: Bytes,
) -> Response {
    if let Err(limited) = limiter.check(LimitedEndpoint::Helper, Subject::Source(peer)) {
        return limited.into_response();
    }
    let request: ControlRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return ApiError::client(StatusCode::BAD_REQUEST, None, format!("not a control request: {e}")).into_response(),
    };
    let test = request.test;
    let step = match request.step() {
        Ok(step) => step,
        Err(e) => {
            metrics.record_helper(test, HelperOutcome::Invalid);
            return ApiError::client(StatusCode::BAD_REQUEST, None, e.to_string()).into_response();
        }
    };
    if let Some(ip) = request.address
        && !helper.allow_private
        && let Some(kind) = non_public_kind(ip)
    {
        return refuse(&metrics, test, Refused::non_public(kind, ip));
    }
    // The list served now, so a SIGHUP that replaces it changes the very next answer.
    let published = list.current();
    let policy = published.as_ref().map_or(&policy::STANDARD, |list| &list.helper_policy);
    let decision = match policy.decide(&request) {
        Ok(decision) => decision,
        Err(refused) => return refuse(&metrics, test, refused),
    };
    // Half the slots at most per source, so controls that hang until the deadline can't hold them all.
    let _share = match limiter.enter(LimitedEndpoint::Helper, peer) {
        Ok(permit) => permit,
        Err(limited) => return limited.into_response(),
    };
    let Ok(_permit) = Arc::clone(&helper.in_flight).try_acquire_owned() else {
        metrics.record_helper(test, HelperOutcome::Busy);
        return ApiError::server(ServerFault::Busy, "the test helper is busy; retry later").into_response();
    };
    match tokio::time::timeout(helper.deadline(), helper.run(&request, &step, decision, policy.is_listed())).await {
        Ok(Ok(response)) => {
            metrics.record_helper(test, HelperOutcome::Executed);
            (StatusCode::OK, Json(response)).into_response()
        }
        Ok(Err(refused)) => refuse(&metrics, test, refused),
        Err(_) => {
            metrics.record_helper(test, HelperOutcome::TimedOut);
            ApiError::server(ServerFault::HelperTimeout, "the control step outran the helper's deadline").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(ip: &str) -> Option<&'static str> {
        non_public_kind(ip.parse().expect("ip"))
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in ["1.1.1.1", "8.8.8.8", "100.128.0.1", "2606:4700:4700::1111", "64:ff9b::808:808"] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn every_non_public_range_is_refused() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.10",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "100.64.0.1",
            "198.18.0.1",
            "192.0.0.170",
            "::",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "fec0::1",
            "2001:db8::1",
            "3fff::1",
            "ff02::1",
            "100::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "::127.0.0.1",
        ] {
            assert!(kind(ip).is_some(), "{ip} must be refused");
        }
    }
}
