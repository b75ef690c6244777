//! The helper's destination policy, request by request.

use std::net::SocketAddr;

use vantage_engine::control::protocol::VpnControl;
use vantage_engine::targets;

use super::*;

/// A list as an operator writes one: web targets with and without an address, a QUIC-only name,
/// VPN endpoints, a Tor bridge on an unusual port, two targets sharing a name.
const LIST: &str = r#"
[[target]]
name = "wikipedia"
domain = "www.wikipedia.org"
tests = ["dns", "tcp", "tls"]

[[target]]
name = "pinned"
domain = "pinned.example"
address = "198.51.100.7"
port = 8443
tests = ["tcp", "tls", "quic"]

[[target]]
name = "quic-only"
domain = "quic.example"
tests = ["quic"]

[[target]]
name = "ovpn"
domain = "vpn.example"
address = "203.0.113.40"
port = 1195
tests = ["openvpn"]
transport = "tcp"
openvpn = { mode = "plain" }

[[target]]
name = "ikev2"
domain = "vpn.example"
address = "203.0.113.40"
port = 4500
tests = ["ikev2"]

[[target]]
name = "bridge"
domain = "bridge.example"
address = "203.0.113.50"
port = 37211
tests = ["tor"]
"#;

fn listed() -> HelperPolicy {
    HelperPolicy::listed(&targets::parse(LIST, "list").expect("a valid targets file"))
}

fn request(test: TestKind, domain: Option<&str>, addr: &str) -> ControlRequest {
    let addr: SocketAddr = addr.parse().expect("addr");
    ControlRequest {
        test,
        domain: domain.map(str::to_string),
        address: Some(addr.ip()),
        port: Some(addr.port()),
        vpn: None,
        resolver: None,
    }
}

fn refusal(policy: &HelperPolicy, request: &ControlRequest) -> Refusal {
    policy.decide(request).expect_err("refused").refusal
}

fn if_resolves(name: &str, address: &str) -> Result<Decision, Refused> {
    Ok(Decision::IfResolves { name: name.into(), address: address.parse().expect("ip") })
}

#[test]
fn a_dns_control_is_answered_for_listed_names_only_in_any_case_with_or_without_the_dot() {
    let policy = listed();
    for name in ["www.wikipedia.org", "WWW.Wikipedia.ORG", "www.wikipedia.org.", "vpn.example"] {
        assert_eq!(policy.decide(&ControlRequest::dns(name)), Ok(Decision::Allow), "{name}");
    }
    let refused = policy.decide(&ControlRequest::dns("unlisted.example")).expect_err("unlisted");
    assert_eq!(refused.refusal, Refusal::NameNotListed);
    assert!(refused.message.contains("`unlisted.example`"), "{refused}");
    // A listed target's `name` is not its domain.
    assert_eq!(refusal(&policy, &ControlRequest::dns("wikipedia")), Refusal::NameNotListed);
}

#[test]
fn a_connection_to_a_name_without_an_address_waits_for_the_helpers_resolver() {
    let policy = listed();
    let tcp = request(TestKind::Tcp, Some("www.wikipedia.org."), "185.15.59.224:443");
    assert_eq!(policy.decide(&tcp), if_resolves("www.wikipedia.org", "185.15.59.224"));
    let quic = request(TestKind::Quic, Some("quic.example"), "192.0.2.80:443");
    assert_eq!(policy.decide(&quic), if_resolves("quic.example", "192.0.2.80"));
}

#[test]
fn a_listed_address_needs_no_lookup_and_no_other_address_will_do() {
    let policy = listed();
    assert_eq!(policy.decide(&request(TestKind::Tcp, Some("pinned.example"), "198.51.100.7:8443")), Ok(Decision::Allow));
    assert_eq!(policy.decide(&request(TestKind::Quic, Some("pinned.example"), "198.51.100.7:8443")), Ok(Decision::Allow));
    let elsewhere = policy.decide(&request(TestKind::Tcp, Some("pinned.example"), "198.51.100.8:8443")).expect_err("elsewhere");
    assert_eq!(elsewhere.refusal, Refusal::AddressNotListed);
    assert!(elsewhere.message.contains("at 198.51.100.7, not 198.51.100.8"), "{elsewhere}");
}

/// Answer validation asks the helper to try the address the probe's resolver answered, which
/// nobody else knows: TLS goes to any address, but only with a listed name on its TLS port.
#[test]
fn tls_to_an_answered_address_is_allowed_with_a_listed_name_on_its_tls_port() {
    let policy = listed();
    assert_eq!(
        policy.decide(&ControlRequest::tls("www.wikipedia.org", "192.0.2.99:443".parse().expect("a"))),
        Ok(Decision::Allow)
    );
    assert_eq!(policy.decide(&request(TestKind::Tls, Some("pinned.example"), "192.0.2.99:8443")), Ok(Decision::Allow));
    // A QUIC-only name is validated over TLS on 443, as the probe does.
    assert_eq!(policy.decide(&request(TestKind::Tls, Some("quic.example"), "192.0.2.99:443")), Ok(Decision::Allow));
    assert_eq!(refusal(&policy, &request(TestKind::Tls, Some("www.wikipedia.org"), "192.0.2.99:22")), Refusal::PortNotListed);
    assert_eq!(refusal(&policy, &request(TestKind::Tls, Some("unlisted.example"), "192.0.2.99:443")), Refusal::NameNotListed);
}

#[test]
fn a_port_or_test_the_list_does_not_give_the_name_is_refused_with_what_it_does_give() {
    let policy = listed();
    let refused = policy.decide(&request(TestKind::Tcp, Some("www.wikipedia.org"), "185.15.59.224:22")).expect_err("port");
    assert_eq!(refused.refusal, Refusal::PortNotListed);
    assert!(refused.message.contains("on 443, not 22"), "{refused}");
    let refused = policy.decide(&request(TestKind::Quic, Some("www.wikipedia.org"), "185.15.59.224:443")).expect_err("test");
    assert_eq!(refused.refusal, Refusal::TestNotListed);
    assert!(refused.message.contains("no quic test for `www.wikipedia.org`"), "{refused}");
}

#[test]
fn a_vpn_control_reaches_only_the_listed_endpoint_address_port_and_transport() {
    let policy = listed();
    let openvpn = |addr: &str, transport: Option<Transport>| ControlRequest {
        vpn: Some(VpnControl { transport, ..VpnControl::default() }),
        ..request(TestKind::Openvpn, Some("vpn.example"), addr)
    };
    assert_eq!(policy.decide(&openvpn("203.0.113.40:1195", Some(Transport::Tcp))), Ok(Decision::Allow));
    let udp = policy.decide(&openvpn("203.0.113.40:1195", Some(Transport::Udp))).expect_err("udp");
    assert_eq!(udp.refusal, Refusal::PortNotListed);
    assert!(udp.message.contains("on 1195/tcp, not 1195/udp"), "{udp}");
    assert_eq!(refusal(&policy, &openvpn("203.0.113.40:1195", None)), Refusal::PortNotListed, "no transport means udp");
    assert_eq!(refusal(&policy, &openvpn("203.0.113.41:1195", Some(Transport::Tcp))), Refusal::AddressNotListed);
    assert_eq!(policy.decide(&request(TestKind::Ikev2, Some("vpn.example"), "203.0.113.40:4500")), Ok(Decision::Allow));
    assert_eq!(refusal(&policy, &request(TestKind::Ikev2, Some("vpn.example"), "203.0.113.40:500")), Refusal::PortNotListed);
    // A bridge on its own port is reachable because the list names it, and only then.
    assert_eq!(policy.decide(&request(TestKind::Tor, Some("bridge.example"), "203.0.113.50:37211")), Ok(Decision::Allow));
    assert_eq!(
        refusal(&policy, &request(TestKind::Tor, Some("bridge.example"), "203.0.113.51:37211")),
        Refusal::AddressNotListed
    );
}

#[test]
fn without_a_name_only_an_endpoint_the_list_spells_out_is_reachable() {
    let policy = listed();
    assert_eq!(policy.decide(&request(TestKind::Tor, None, "203.0.113.50:37211")), Ok(Decision::Allow));
    assert_eq!(policy.decide(&request(TestKind::Tcp, None, "198.51.100.7:8443")), Ok(Decision::Allow));
    // wikipedia's addresses come from its name: without the name there is nothing to check.
    let refused = policy.decide(&request(TestKind::Tcp, None, "185.15.59.224:443")).expect_err("nameless");
    assert_eq!(refused.refusal, Refusal::AddressNotListed);
    assert!(refused.message.contains("send the target's domain"), "{refused}");
}

#[test]
fn without_a_list_only_the_standard_ports_of_each_test_are_reachable() {
    let policy = &STANDARD;
    assert_eq!(policy.decide(&ControlRequest::dns("anything.example")), Ok(Decision::Allow), "a lookup contacts no address");
    for (test, addr) in [
        (TestKind::Tcp, "192.0.2.1:80"),
        (TestKind::Tcp, "192.0.2.1:443"),
        (TestKind::Tls, "192.0.2.1:443"),
        (TestKind::Quic, "192.0.2.1:443"),
        (TestKind::Openvpn, "192.0.2.1:1194"),
        (TestKind::Wireguard, "192.0.2.1:51820"),
        (TestKind::Ikev2, "192.0.2.1:4500"),
        (TestKind::Tor, "192.0.2.1:9001"),
    ] {
        assert_eq!(policy.decide(&request(test, Some("any.example"), addr)), Ok(Decision::Allow), "{test} {addr}");
    }
    let refused = policy.decide(&request(TestKind::Tls, Some("any.example"), "192.0.2.1:8443")).expect_err("8443");
    assert_eq!(refused.refusal, Refusal::NonStandardPort);
    assert!(refused.message.contains("standard tls ports (443), not 8443"), "{refused}");
    for (test, port) in [(TestKind::Tcp, 22), (TestKind::Tcp, 25), (TestKind::Tor, 37211), (TestKind::Ikev2, 1701)] {
        assert_eq!(refusal(policy, &request(test, None, &format!("192.0.2.1:{port}"))), Refusal::NonStandardPort);
    }
}

/// A probe measuring its built-in targets against a collector without a list keeps its helper.
#[test]
fn the_probes_built_in_targets_are_all_on_standard_ports() {
    for target in targets::builtin() {
        for test in target.tests.iter().filter(|t| **t != TestKind::Dns) {
            assert!(standard_ports(*test).contains(&target.port), "{} {test} on {}", target.name, target.port);
        }
    }
}

#[test]
fn every_test_but_dns_and_throttle_has_standard_ports_and_the_refusal_reasons_keep_their_values() {
    for test in TestKind::ALL {
        // DNS names no address; throttle's control is the endpoint itself (no helper request).
        assert_eq!(standard_ports(*test).is_empty(), matches!(test, TestKind::Dns | TestKind::Throttle), "{test}");
    }
    // Clients match these `reason`s: pinned byte for byte.
    let reasons: Vec<&str> = Refusal::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        reasons,
        ["non_public", "name_not_listed", "test_not_listed", "port_not_listed", "address_not_listed", "non_standard_port"]
    );
}

/// The policy is part of the list it came from: a new list, a new answer.
#[test]
fn a_new_list_changes_the_answer() {
    let before = listed();
    let tls = request(TestKind::Tls, Some("signal.org"), "192.0.2.5:443");
    assert_eq!(refusal(&before, &tls), Refusal::NameNotListed);
    let after =
        HelperPolicy::listed(&targets::parse("[[target]]\nname = \"signal\"\ndomain = \"signal.org\"\n", "list").expect("valid"));
    assert_eq!(after.decide(&tls), Ok(Decision::Allow));
    assert_eq!(refusal(&after, &ControlRequest::dns("www.wikipedia.org")), Refusal::NameNotListed);
    assert!(after.is_listed() && !STANDARD.is_listed());
}
