//! Where the test helper will go: the destinations the published list names, or, without a list,
//! the standard ports of the tests. Pure: a request in, a decision out; the handler does the I/O.
//!
//! The helper exists to vouch for the list's targets from outside the censored network. Anything
//! beyond that makes it a proxy: anyone can ask it to connect somewhere, and the connection comes
//! from the collector's address. So, with a signed list published:
//!
//! - a DNS control only for a name that is the `domain` of a listed target;
//! - a TCP, QUIC or VPN control only to an endpoint the list names: the target's `domain`, test
//!   and `port` (and, for OpenVPN, its `transport`), at the target's `address` when the list gives
//!   one, else at an address the helper's own resolver returns for that name
//!   ([`Decision::IfResolves`]; the handler asks the resolver, see [`super::resolved`]);
//! - a TLS control only with a listed name as SNI, on that target's TLS port, but to **any**
//!   public address. This is deliberate: the DNS answer validation of the detection rules
//!   (`engine::runner::dns::validate`) asks the helper to try the addresses the probe's resolver
//!   answered, and a forged answer is by definition one that neither the helper's resolver nor the
//!   list knows. Refusing it would turn every forged answer into `inconclusive`. What remains
//!   open is a TCP connect and a ClientHello naming a listed target, on a listed TLS port.
//!
//! Without a list the helper can't know the targets, so it takes what a probe's own targets file
//! would most likely hold: the tests' standard ports ([`STANDARD_PORTS`]), any public address.
//! The older `--targets` file names metric labels only and is not a list here.
//!
//! Non-public addresses are refused before this policy is asked (see [`super::non_public_kind`]).
//! Names compare case-insensitively, with or without a trailing dot.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use vantage_engine::control::ControlRequest;
use vantage_engine::targets::{DEFAULT_PORT, TargetSpec};
use vantage_measurement::{TestKind, Transport};

/// Without a published list, the ports each test may reach: the tests' defaults and what the
/// repository's own targets use (`deploy/endpoints/targets.example.toml`, docs/vpn.md). DNS is
/// absent: a DNS control asks the helper's resolver and names no address to contact. So is
/// throttle: its control is the reference endpoint under another name, and the helper runs none.
pub const STANDARD_PORTS: &[(TestKind, &[u16])] = &[
    // Web sites: HTTPS (the targets' default port), and plain HTTP for a bare TCP connect.
    (TestKind::Tcp, &[80, DEFAULT_PORT]),
    (TestKind::Tls, &[DEFAULT_PORT]),
    (TestKind::Ech, &[DEFAULT_PORT]),
    (TestKind::Quic, &[DEFAULT_PORT]),
    // 1194 is IANA's; 443 is the commonest disguise; 1195 and 1196 are the reference endpoints'.
    (TestKind::Openvpn, &[443, 1194, 1195, 1196]),
    (TestKind::Wireguard, &[51820]),
    // IKE, and IKE with NAT traversal.
    (TestKind::Ikev2, &[500, 4500]),
    // Tor's default ORPort, and the port many relays use to look like HTTPS.
    (TestKind::Tor, &[443, 9001]),
    // DNS over TLS (RFC 7858) and DNS over HTTPS.
    (TestKind::Dot, &[853]),
    (TestKind::Doh, &[443]),
    // obfs4 bridges on the HTTPS port (bridges.torproject.org hands out other ports too, which
    // a collector's operator allows explicitly).
    (TestKind::Obfs4, &[443]),
];

/// The standard ports of `test` (none for DNS).
pub fn standard_ports(test: TestKind) -> &'static [u16] {
    STANDARD_PORTS.iter().find(|(t, _)| *t == test).map_or(&[], |(_, ports)| ports)
}

vantage_measurement::closed_set! {
    /// Why the policy refuses a control: the `reason` of the `403`.
    pub enum Refusal {
        /// The address is not public unicast (checked before the policy; see [`super::non_public_kind`]).
        NonPublic => "non_public",
        /// No listed target has the request's name as its `domain`.
        NameNotListed => "name_not_listed",
        /// The name is listed, but not with this test.
        TestNotListed => "test_not_listed",
        /// The name and test are listed, on other ports (or another OpenVPN transport).
        PortNotListed => "port_not_listed",
        /// The address is neither the listed one nor one the helper's resolver returns for the name.
        AddressNotListed => "address_not_listed",
        /// No list is published and the port is not a standard one of the test.
        NonStandardPort => "non_standard_port",
    }
}

/// A refused control: the reason, and a message saying what the helper would accept instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// Why.
    pub refusal: Refusal,
    /// For the client (the request's own name and address; never logged).
    pub message: String,
}

impl Refused {
    fn new(refusal: Refusal, message: String) -> Refused {
        Refused { refusal, message }
    }

    /// The refusal of a non-public address of `kind`.
    pub fn non_public(kind: &str, address: IpAddr) -> Refused {
        let message = format!("the test helper does not contact {kind} addresses ({address}); it only controls public targets");
        Refused::new(Refusal::NonPublic, message)
    }
}

/// What the policy says about a request it does not refuse outright.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run it.
    Allow,
    /// Run it if the helper's own resolver returns `address` for `name` (a listed target without
    /// an `address`); otherwise refuse with [`Refusal::AddressNotListed`].
    IfResolves {
        /// The listed name, normalised.
        name: String,
        /// The address asked for.
        address: IpAddr,
    },
}

/// The helper's destination policy: a published list's, or the standard ports'.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelperPolicy {
    /// No list: any public address on the tests' standard ports.
    StandardPorts,
    /// What a published list names.
    Listed(ListedDestinations),
}

/// The policy of a collector that publishes no list.
pub static STANDARD: HelperPolicy = HelperPolicy::StandardPorts;

/// One endpoint of a listed target, as the helper may be asked to contact it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Endpoint {
    test: TestKind,
    port: u16,
    /// The listed address; `None`: whatever the name resolves to.
    address: Option<IpAddr>,
    /// OpenVPN's transport; `None` for the other tests.
    transport: Option<Transport>,
}

/// The endpoints of a published list, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListedDestinations {
    /// Normalised `domain` → that name's endpoints (several targets may share a name).
    by_name: HashMap<String, Vec<Endpoint>>,
    /// The endpoints with a listed address, for a request that names no domain.
    explicit: HashSet<Endpoint>,
}

/// A name as the policy compares it: lowercase, without a trailing dot.
pub fn normal_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The transport an OpenVPN endpoint or request means when it says none: UDP, as the runner.
fn openvpn_transport(test: TestKind, transport: Option<Transport>) -> Option<Transport> {
    (test == TestKind::Openvpn).then(|| transport.unwrap_or(Transport::Udp))
}

impl HelperPolicy {
    /// The policy of a published list's targets.
    pub fn listed(targets: &[TargetSpec]) -> HelperPolicy {
        let mut listed = ListedDestinations::default();
        for target in targets {
            let endpoints = listed.by_name.entry(normal_name(&target.domain)).or_default();
            let mut add = |test: TestKind, port: u16| {
                let endpoint =
                    Endpoint { test, port, address: target.address, transport: openvpn_transport(test, target.transport) };
                if !endpoints.contains(&endpoint) {
                    endpoints.push(endpoint);
                }
                if endpoint.address.is_some() {
                    listed.explicit.insert(endpoint);
                }
            };
            for &test in &target.tests {
                match test {
                    TestKind::Dns => {}
                    // A QUIC-only name's answers are validated over TLS on 443, as the probe does.
                    TestKind::Quic if !target.tests.contains(&TestKind::Tls) => {
                        add(TestKind::Quic, target.port);
                        add(TestKind::Tls, DEFAULT_PORT);
                    }
                    _ => add(test, target.port),
                }
            }
        }
        HelperPolicy::Listed(listed)
    }

    /// Whether this policy comes from a published list.
    pub fn is_listed(&self) -> bool {
        matches!(self, Self::Listed(_))
    }

    /// Decide about a request whose fields are already checked ([`ControlRequest::step`]).
    pub fn decide(&self, request: &ControlRequest) -> Result<Decision, Refused> {
        match self {
            Self::StandardPorts => standard(request),
            Self::Listed(listed) => listed.decide(request),
        }
    }
}

fn standard(request: &ControlRequest) -> Result<Decision, Refused> {
    let (test, Some(port)) = (request.test, request.port) else { return Ok(Decision::Allow) };
    let ports = standard_ports(test);
    if test == TestKind::Dns || ports.contains(&port) {
        return Ok(Decision::Allow);
    }
    Err(Refused::new(
        Refusal::NonStandardPort,
        format!(
            "this collector publishes no target list, so its test helper contacts only the standard {test} ports ({}), not {port}",
            join(ports.iter().map(u16::to_string))
        ),
    ))
}

impl ListedDestinations {
    fn decide(&self, request: &ControlRequest) -> Result<Decision, Refused> {
        let test = request.test;
        let transport = openvpn_transport(test, request.vpn.as_ref().and_then(|v| v.transport));
        let Some(domain) = &request.domain else {
            // Only TCP and the VPN tests may omit the name: then the endpoint itself must be listed.
            let (Some(address), Some(port)) = (request.address, request.port) else { return Ok(Decision::Allow) };
            let endpoint = Endpoint { test, port, address: Some(address), transport };
            if self.explicit.contains(&endpoint) {
                return Ok(Decision::Allow);
            }
            let message = format!(
                "the published list names no {test} endpoint {address} port {port}{}; send the target's domain for an address its name resolves to",
                transport.map(|t| format!(" over {t}")).unwrap_or_default()
            );
            return Err(Refused::new(Refusal::AddressNotListed, message));
        };
        let name = normal_name(domain);
        let Some(endpoints) = self.by_name.get(&name) else {
            let message = format!(
                "no target on the published list has the name `{domain}`: the test helper answers only for listed targets"
            );
            return Err(Refused::new(Refusal::NameNotListed, message));
        };
        let (Some(address), Some(port)) = (request.address, request.port) else { return Ok(Decision::Allow) };
        let of_test: Vec<&Endpoint> = endpoints.iter().filter(|e| e.test == test).collect();
        if of_test.is_empty() {
            let message = format!("the published list has no {test} test for `{domain}`");
            return Err(Refused::new(Refusal::TestNotListed, message));
        }
        let on_port: Vec<&Endpoint> = of_test.iter().copied().filter(|e| e.port == port && e.transport == transport).collect();
        if on_port.is_empty() {
            let listed: BTreeSet<(u16, Option<Transport>)> = of_test.iter().map(|e| (e.port, e.transport)).collect();
            let listed = listed.into_iter().map(|(port, transport)| port_text(port, transport));
            let message =
                format!("the published list has {test} for `{domain}` on {}, not {}", join(listed), port_text(port, transport));
            return Err(Refused::new(Refusal::PortNotListed, message));
        }
        // TLS goes to any public address: see the module doc (answer validation).
        if test == TestKind::Tls || on_port.iter().any(|e| e.address == Some(address)) {
            return Ok(Decision::Allow);
        }
        if on_port.iter().any(|e| e.address.is_none()) {
            return Ok(Decision::IfResolves { name, address });
        }
        let message = format!(
            "the published list has {test} for `{domain}` at {}, not {address}",
            join(on_port.iter().filter_map(|e| e.address).collect::<BTreeSet<_>>().iter().map(IpAddr::to_string))
        );
        Err(Refused::new(Refusal::AddressNotListed, message))
    }
}

/// The refusal when the helper's resolver does not return `address` for `name`.
pub fn not_resolved(name: &str, address: IpAddr) -> Refused {
    Refused::new(
        Refusal::AddressNotListed,
        format!(
            "{address} is not an address of `{name}`: the published list names none and the helper's resolver does not return it"
        ),
    )
}

/// `443`, or `1194/udp` for OpenVPN.
fn port_text(port: u16, transport: Option<Transport>) -> String {
    transport.map_or(port.to_string(), |t| format!("{port}/{t}"))
}

fn join(words: impl Iterator<Item = String>) -> String {
    words.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
