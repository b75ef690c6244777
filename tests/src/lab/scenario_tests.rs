//! Scenario files: what is accepted, what is refused, and that the shipped ones load.

use super::*;

const MINIMAL: &str = r#"
description = "d"
kind = "censor"
[[target]]
name = "a"
domain = "a.example"
tests = ["dns", "tls"]
trials = 2
expect = { dns = "ok", tls = "blocked tls.reset_after_clienthello | inconclusive residual.suspected" }
expect_trials = { tls = "1-2/2" }
expect_evidence = { tls = ["connection_reset"] }
"#;

#[test]
fn lab_keys_are_stripped_and_the_rest_is_the_probes_file() {
    let s = Scenario::parse("m", Path::new("m.toml"), MINIMAL).expect("valid");
    assert!(!s.targets_toml.contains("expect"));
    let t = &s.targets[0];
    assert_eq!(t.spec.trials, 2);
    assert_eq!(t.expect[&TestKind::Tls].0.len(), 2);
    assert_eq!(t.expect_trials[&TestKind::Tls].label(), "1-2/2");
    assert_eq!(t.expect_evidence[&TestKind::Tls], ["connection_reset"]);
    assert_eq!(s.records()["a.example"], std::net::IpAddr::from(addr::SERVER));
}

#[test]
fn typos_and_gaps_are_refused() {
    for (bad, why) in [
        (MINIMAL.replace("kind =", "kinds ="), "unknown field"),
        (MINIMAL.replace("domain =", "domian ="), "domian"),
        (MINIMAL.replace("reset_after_clienthello", "reset"), "unknown mechanism"),
        (MINIMAL.replace("dns = \"ok\", ", ""), "exactly its tests"),
        (MINIMAL.replace("1-2/2", "1/3"), "trials = 2"),
        (MINIMAL.replace("censor\"", "benign\""), "benign scenario"),
    ] {
        let err = Scenario::parse("m", Path::new("m.toml"), &bad).expect_err(why);
        assert!(err.contains(why), "{err} should mention {why}");
    }
}

#[test]
fn the_shipped_scenarios_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/scenarios");
    let all = Scenario::load_dir(&dir).expect("every scenario file is valid");
    assert!(all.iter().filter(|s| s.kind == Kind::Censor).count() >= 15);
    assert!(all.iter().filter(|s| s.kind == Kind::Benign).count() >= 6);
}

#[test]
fn routers_and_localisation_expectations_are_read() {
    let with = format!(
        "{}expect_localised = {{ tls = \"3/5 reset unknown\" }}\n",
        MINIMAL.replace("kind = \"censor\"\n", "kind = \"censor\"\n[topology]\nrouters_before = 1\nrouters_after = 2\n")
    );
    let s = Scenario::parse("m", Path::new("m.toml"), &with).expect("valid");
    let topology = s.topology.expect("asked for routers");
    assert_eq!((topology.routers_before, topology.routers_after), (1, 2));
    assert_eq!(s.targets[0].expect_localised[&TestKind::Tls], "3/5 reset unknown");
    assert!(!s.targets_toml.contains("expect_localised"));
    assert!(Scenario::parse("m", Path::new("m.toml"), MINIMAL).expect("valid").topology.is_none());
    let typo = with.replace("routers_after", "routers_afterwards");
    assert!(Scenario::parse("m", Path::new("m.toml"), &typo).expect_err("typo").contains("unknown field"));
}

#[test]
fn a_target_with_ipv6_expectations_is_dual_stack_and_served_on_both_families() {
    let text = MINIMAL.replace(
        "expect_trials =",
        "expect_v6 = { tls = \"blocked tls.reset_after_clienthello\" }\nexpect_evidence_v6 = { tls = [\"reset\"] }\nexpect_trials =",
    );
    let s = Scenario::parse("m", Path::new("m.toml"), &text).expect("valid");
    let t = &s.targets[0];
    assert!(t.dual_stack() && s.probe_ipv6);
    assert!(!s.targets_toml.contains("expect_v6"));
    let twin: std::net::Ipv6Addr = "2001:db8:113::20".parse().expect("ip");
    assert_eq!(addr::v6(addr::SERVER), twin);
    assert_eq!(s.records_v6(&s.records())["a.example"], twin);
    let served: BTreeSet<IpAddr> = s.endpoints(t).into_iter().map(|(_, a, _)| a).collect();
    assert_eq!(served, [IpAddr::from(addr::SERVER), IpAddr::from(twin)].into());
    // IPv6 expectations name the endpoint tests (DNS is measured once), and a benign file still
    // can't expect a block on IPv6.
    let with_dns = text.replace("expect_v6 = { tls", "expect_v6 = { dns = \"ok\", tls");
    let err = Scenario::parse("m", Path::new("m.toml"), &with_dns).expect_err("dns has no family");
    assert!(err.contains("endpoint tests"), "{err}");
    let benign = text.replace("censor\"", "benign\"").replace(
        "dns = \"ok\", tls = \"blocked tls.reset_after_clienthello | inconclusive residual.suspected\"",
        "dns = \"ok\", tls = \"ok\"",
    );
    let err = Scenario::parse("m", Path::new("m.toml"), &benign).expect_err("benign");
    assert!(err.contains("benign scenario"), "{err}");
    let no_v6 = Scenario::parse("m", Path::new("m.toml"), &format!("probe_ipv6 = false\n{MINIMAL}")).expect("valid");
    assert!(!no_v6.probe_ipv6 && !no_v6.targets[0].dual_stack());
}
