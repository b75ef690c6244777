//! The censorship lab, end to end: every scenario in `tests/lab/scenarios` is built from network
//! namespaces, measured by the real `vantage-probe` through its censor, with the real collector
//! and test helper outside, and every verdict and mechanism is checked (see `vantage-lab run`).
//!
//! Needs root. Without root or a tool it fails with the reason; it never skips, because a lab
//! that quietly does nothing would pass every time. A failing scenario is not retried.
//!
//! `VANTAGE_LAB_SCENARIOS=a,b` runs only those; `VANTAGE_LAB_KEEP=1` keeps each scenario's
//! working directory (CA, targets, probe output, the collector's store) for inspection.

use std::path::Path;

use vantage_tests::lab::check::{run_all, summary};
use vantage_tests::lab::scenario::{Kind, Scenario};
use vantage_tests::lab::topology::{preflight, remove_stale};

/// Scenarios run at once: CI has two cores, and most of a scenario's time is spent waiting
/// for timeouts, not computing.
const JOBS: usize = 3;

#[test]
fn every_scenario_gets_its_verdict_and_mechanism_and_leaks_no_probe_address() -> anyhow::Result<()> {
    preflight()?;
    remove_stale()?;
    let mut scenarios = Scenario::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/scenarios"))?;
    let only = std::env::var("VANTAGE_LAB_SCENARIOS").unwrap_or_default();
    if !only.is_empty() {
        let wanted: Vec<&str> = only.split(',').map(str::trim).collect();
        scenarios.retain(|s| wanted.contains(&s.name.as_str()));
    } else {
        // The floor: the lab must cover at least this much.
        assert!(scenarios.iter().filter(|s| s.kind == Kind::Censor).count() >= 15, "fewer than 15 censor scenarios");
        assert!(scenarios.iter().filter(|s| s.kind == Kind::Benign).count() >= 6, "fewer than 6 benign scenarios");
    }
    let keep = std::env::var_os("VANTAGE_LAB_KEEP").is_some();
    let reports = run_all(&scenarios, JOBS, keep);
    println!("{}", summary(&reports));
    let failed: Vec<&str> = reports.iter().filter(|r| !r.passed()).map(|r| r.scenario.as_str()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} lab scenarios failed: {failed:?} (matrix and evidence above)",
        failed.len(),
        reports.len()
    );
    Ok(())
}
