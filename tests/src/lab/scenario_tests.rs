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
