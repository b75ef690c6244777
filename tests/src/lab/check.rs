//! Run the real probe through a scenario and hold it to the scenario's expectations.
//!
//! Per (target, test): the verdict's status **and** mechanism must be one the file accepts, and
//! with several trials the count must be in range. Per scenario: a benign one has no `blocked`
//! at all; every measurement reached the collector's API; and the probe's address appears in no
//! measurement, probe log line, collector log line, API response, metric or store file.
//! A failing scenario is never retried: a flaky verdict is a finding, not noise.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use vantage_measurement::{Family, Mechanism, Status, TestKind};

use super::addr;
use super::scenario::{Expected, ExpectedTrials, Kind, Outcome, Scenario};
use super::world::World;
use crate::netns::Stream;

/// The longest one probe run may take (trials of timeouts add up; the slowest scenario needs
/// well under half of this).
const PROBE_DEADLINE: Duration = Duration::from_secs(180);

/// One (target, test) of one scenario.
#[derive(Clone, Debug)]
pub struct Row {
    /// The scenario.
    pub scenario: String,
    /// The target's name.
    pub target: String,
    /// The test.
    pub test: TestKind,
    /// Whether this is the re-test after a residual penalty lapsed (the pair's second measurement).
    pub retest: bool,
    /// Which family's measurement of a dual-stack target (`None`: the target is not dual stack).
    pub family: Option<Family>,
    /// What the file accepts.
    pub expected: Expected,
    /// What the probe concluded (`None`: no measurement came back).
    pub got: Option<Outcome>,
    /// `blocked/total` the probe reported.
    pub trials: Option<(u32, u32)>,
    /// What the file expects of the trial counts.
    pub expected_trials: Option<ExpectedTrials>,
    /// Trials the target asked for (tcp, tls and quic repeat; dns does not).
    pub trials_run: u32,
    /// Text the evidence must contain.
    pub expected_evidence: Vec<String>,
    /// The verdict's evidence, for reports of a miss.
    pub evidence: Vec<String>,
    /// What the file expects of the verdict's `localisation` block (see
    /// [`super::scenario::LabTarget::expect_localised`]).
    pub expected_localised: Option<String>,
    /// The verdict's `localisation` block, as a label.
    pub localised: String,
}

impl Row {
    /// Whether verdict, mechanism and trial counts are as expected.
    pub fn passed(&self) -> bool {
        let verdict_ok = self.got.as_ref().is_some_and(|g| self.expected.accepts(g));
        let trials_ok = match self.expected_trials {
            // Repeated trials must be reported, even when the file names no count.
            None if self.trials_run > 1 => self.trials.is_some_and(|(_, t)| t == self.trials_run),
            None => true,
            Some(e) => self.trials.is_some_and(|(b, t)| t == e.total && (e.min_blocked..=e.max_blocked).contains(&b)),
        };
        let evidence_ok = self.missing_evidence().is_none();
        verdict_ok && trials_ok && evidence_ok && self.localised_ok()
    }

    /// Whether the localisation block is as expected (`none` accepts any reason).
    pub fn localised_ok(&self) -> bool {
        self.expected_localised
            .as_deref()
            .is_none_or(|e| e == self.localised || (e == "none" && self.localised.starts_with("none ")))
    }

    /// The first expected piece of evidence that no evidence line contains.
    pub fn missing_evidence(&self) -> Option<&str> {
        self.expected_evidence.iter().map(String::as_str).find(|needle| !self.evidence.iter().any(|e| e.contains(needle)))
    }

    /// The row's expected label, resolved to the alternative that matched if one did.
    pub fn expected_label(&self) -> String {
        match &self.got {
            Some(g) if self.expected.accepts(g) => g.label(),
            _ => self.expected.label(),
        }
    }

    fn got_label(&self) -> String {
        self.got.as_ref().map(Outcome::label).unwrap_or_else(|| "(missing)".into())
    }
}

/// Everything one scenario run established.
#[derive(Clone, Debug)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// Censor or benign.
    pub kind: Kind,
    /// One per (target, test).
    pub rows: Vec<Row>,
    /// Failures that are not one row's (setup, privacy, delivery).
    pub problems: Vec<String>,
    /// Wall time, setup to teardown.
    pub runtime: Duration,
}

impl Report {
    /// No problem and every row as expected.
    pub fn passed(&self) -> bool {
        self.problems.is_empty() && self.rows.iter().all(Row::passed)
    }

    /// A few lines on what went wrong (empty when it passed).
    pub fn failures(&self) -> String {
        let mut out = String::new();
        for p in &self.problems {
            let _ = writeln!(out, "  {}: {p}", self.scenario);
        }
        for r in self.rows.iter().filter(|r| !r.passed()) {
            let trials = r.trials.map(|(b, t)| format!(" trials {b}/{t}")).unwrap_or_default();
            let mut wanted = r.expected_trials.map(|t| format!(" trials {}", t.label())).unwrap_or_default();
            if let Some(needle) = r.missing_evidence() {
                wanted.push_str(&format!(" with evidence mentioning `{needle}`"));
            }
            if !r.localised_ok() {
                let expected = r.expected_localised.as_deref().unwrap_or_default();
                wanted.push_str(&format!(" localised `{expected}` (got `{}`)", r.localised));
            }
            let retest = if r.retest { " (re-test)" } else { "" };
            let _ = writeln!(
                out,
                "  {}: {} {}{retest}: expected `{}`{wanted}, got `{}`{trials}\n      evidence: {}",
                r.scenario,
                r.target,
                r.test.as_str(),
                r.expected.label(),
                r.got_label(),
                r.evidence.join("; ")
            );
        }
        out
    }
}

/// Bring `scenario` up, run the probe through it, check everything, tear it down.
pub fn run_scenario(scenario: &Scenario, keep: bool) -> Report {
    let started = Instant::now();
    let mut report = Report {
        scenario: scenario.name.clone(),
        kind: scenario.kind,
        rows: Vec::new(),
        problems: Vec::new(),
        runtime: Duration::ZERO,
    };
    if let Err(e) = measure(scenario, keep, &mut report) {
        report.problems.push(format!("{e:#}"));
    }
    report.runtime = started.elapsed();
    report
}

fn measure(scenario: &Scenario, keep: bool, report: &mut Report) -> anyhow::Result<()> {
    let mut world = World::up(scenario, keep)?;
    if keep {
        eprintln!("vantage-lab: {} kept in {}", scenario.name, world.dir().display());
    }
    let probe_bin = super::bin("vantage-probe")?.display().to_string();
    let mut probe = world.topo.probe.spawn("vantage-probe", &probe_bin, &world.probe_args()?, &[])?;
    let status = probe.wait_exit(PROBE_DEADLINE)?;
    let stdout = probe.stream(Stream::Stdout);
    let stderr = probe.stream(Stream::Stderr);
    if !status.success() {
        anyhow::bail!("vantage-probe exited with {status}: {}", tail(&stderr));
    }
    let measurements: Vec<Value> = stdout.iter().map(|l| serde_json::from_str(l)).collect::<Result<_, _>>()?;
    report.rows = rows(scenario, &measurements);
    if scenario.kind == Kind::Benign {
        for m in measurements.iter().filter(|m| m["verdict"]["status"] == "blocked") {
            report.problems.push(format!("benign scenario, yet {} {} came out blocked", m["target"]["name"], m["test"]));
        }
    }

    let api = world.fetch("/api/v1/measurements")?;
    let metrics = world.fetch("/metrics")?;
    let stored: BTreeSet<String> = api
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|m| m["id"].as_str().map(String::from))
        .collect();
    for m in &measurements {
        if let Some(id) = m["id"].as_str().filter(|id| !stored.contains(*id)) {
            report
                .problems
                .push(format!("measurement {id} ({} {}) is not in the collector's API", m["target"]["name"], m["test"]));
        }
    }
    for row in &report.rows {
        if let Some(problem) = metric_problem(&metrics, row) {
            report.problems.push(problem);
        }
    }
    world.collector.stop();
    if keep {
        std::fs::write(world.dir().join("probe.ndjson"), stdout.join("\n"))?;
        std::fs::write(world.dir().join("probe.log"), stderr.join("\n"))?;
        std::fs::write(world.dir().join("collector.log"), world.collector.output().join("\n"))?;
    }
    let mut places: Vec<(&str, String)> = vec![
        ("a measurement", stdout.join("\n")),
        ("the probe's log", stderr.join("\n")),
        ("the collector's log", world.collector.output().join("\n")),
        ("the API", api),
        ("the metrics", metrics),
    ];
    places.extend(store_files(&world.dir().join("collector-data")));
    for (place, text) in &places {
        for (whose, address) in private_addresses() {
            if let Some(context) = find_address(text, &address) {
                report.problems.push(format!("privacy: {whose} {address} appears in {place}: …{context}…"));
            }
        }
    }
    Ok(())
}

/// Addresses no output may carry: the probe's own, its gateway (the volunteer's network), and
/// the intermediate hops of a router chain, whose Time Exceeded the hop follow-up reads (it keeps
/// hop numbers only).
fn private_addresses() -> Vec<(&'static str, String)> {
    let mut list = vec![
        ("the probe's address", addr::PROBE.to_string()),
        ("the probe's address", addr::PROBE_V6.to_string()),
        ("the probe's gateway", addr::CENSOR_PROBE_SIDE.to_string()),
        ("the probe's gateway", addr::CENSOR_PROBE_SIDE_V6.to_string()),
    ];
    // `Topology::build` and `add_ipv6`: the inner links of a chain of up to four routers.
    for k in 0..4u8 {
        for host in [1, 2] {
            list.push(("a router's address", std::net::Ipv4Addr::new(198, 51, 100, 128 + 4 * k + host).to_string()));
            list.push(("a router's address", std::net::Ipv4Addr::new(203, 0, 113, 236 + 4 * k + host).to_string()));
            let v6 = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x1ff, u16::from(k) + 1, 0, 0, 0, u16::from(host));
            list.push(("a router's address", v6.to_string()));
        }
    }
    list
}

fn rows(scenario: &Scenario, measurements: &[Value]) -> Vec<Row> {
    let mut rows = Vec::new();
    let expectations = scenario.targets.iter().flat_map(|t| {
        // A dual-stack target's endpoint tests are measured once per family.
        let v4 = t.dual_stack().then_some(Family::Ipv4);
        let family = move |test: &TestKind| if *test == TestKind::Dns { None } else { v4 };
        let first = t.expect.iter().map(move |(test, expected)| (t, test, expected, false, family(test)));
        let v6 = t.expect_v6.iter().map(move |(test, expected)| (t, test, expected, false, Some(Family::Ipv6)));
        first.chain(v6).chain(t.expect_retest.iter().map(move |(test, expected)| (t, test, expected, true, family(test))))
    });
    for (t, test, expected, retest, family) in expectations {
        let mut of_pair = measurements.iter().filter(|m| {
            m["target"]["name"] == t.spec.name.as_str()
                && m["test"] == test.as_str()
                && family.is_none_or(|f| family_of(m) == Some(f))
        });
        let m = if retest { of_pair.nth(1) } else { of_pair.next() };
        let verdict = m.map(|m| &m["verdict"]);
        let got = verdict.and_then(|v| {
            let status = Status::parse(v["status"].as_str()?)?;
            let mechanism = v["mechanism"].as_str().and_then(Mechanism::parse);
            Some(Outcome { status, mechanism })
        });
        let trials = verdict.and_then(|v| Some((v["trials"]["blocked"].as_u64()? as u32, v["trials"]["total"].as_u64()? as u32)));
        let evidence = verdict
            .and_then(|v| v["evidence"].as_array())
            .map(|e| e.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default();
        rows.push(Row {
            scenario: scenario.name.clone(),
            target: t.spec.name.clone(),
            test: *test,
            retest,
            family,
            expected: expected.clone(),
            got,
            trials,
            expected_trials: t.expect_trials.get(test).copied(),
            // DNS runs once; throttle's `trials` are the pairs inside its one step.
            trials_run: if matches!(test, TestKind::Dns | TestKind::Throttle) { 1 } else { t.spec.trials },
            // Evidence is asked of the first measurement; the re-test must simply come out right.
            expected_evidence: match (retest, family) {
                (true, _) => Vec::new(),
                (false, Some(Family::Ipv6)) => t.expect_evidence_v6.get(test).cloned().unwrap_or_default(),
                (false, _) => t.expect_evidence.get(test).cloned().unwrap_or_default(),
            },
            evidence,
            expected_localised: if retest { None } else { t.expect_localised.get(test).cloned() },
            localised: localised_label(verdict.map(|v| &v["localisation"])),
        });
    }
    rows
}

/// A verdict's `localisation` block as a label: `3/5 reset unknown`, `none <reason>`, or
/// `(absent)`.
fn localised_label(block: Option<&Value>) -> String {
    let Some(block) = block.filter(|b| b.is_object()) else { return "(absent)".into() };
    if let Some(reason) = block["not_localised"].as_str() {
        return format!("none {reason}");
    }
    let text = |key: &str| block[key].as_str().unwrap_or("?").to_string();
    let hop = |key: &str| block[key].as_u64().map(|h| h.to_string()).unwrap_or_else(|| "?".into());
    format!("{}/{} {} {}", hop("censor_hop"), hop("server_hop"), text("how"), text("placement"))
}

/// Whether `/metrics` counts the row's verdict: `vantage_measurements_total` with the target,
/// test, verdict and mechanism labels (the scenario's targets are the published list).
fn metric_problem(metrics: &str, row: &Row) -> Option<String> {
    let got = row.got.as_ref()?;
    let mechanism = got.mechanism.map(Mechanism::as_str).unwrap_or("none");
    let labels = [
        format!("target=\"{}\"", row.target),
        format!("test=\"{}\"", row.test.as_str()),
        format!("verdict=\"{}\"", got.status.as_str()),
        format!("mechanism=\"{mechanism}\""),
    ];
    let counted = metrics.lines().filter(|l| l.starts_with("vantage_measurements_total{")).any(|l| {
        labels.iter().all(|label| l.contains(label.as_str()))
            && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| v >= 1.0)
    });
    (!counted).then(|| {
        format!("/metrics has no vantage_measurements_total series for {} {} {}", row.target, row.test.as_str(), got.label())
    })
}

/// The collector's store, as text (SQLite keeps text columns as UTF-8 bytes).
fn store_files(dir: &Path) -> Vec<(&'static str, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path()).ok())
        .map(|bytes| ("the collector's store", String::from_utf8_lossy(&bytes).into_owned()))
        .collect()
}

/// The family of a measurement's address (`None` without one).
fn family_of(m: &Value) -> Option<Family> {
    let ip: std::net::IpAddr = m["target"]["address"].as_str()?.parse().ok()?;
    Some(Family::of(ip))
}

/// The first occurrence of `ip` in `text` that is a whole address (`198.51.100.2` but not
/// `198.51.100.20`; `2001:db8:100::2` but not `2001:db8:100::20` or `…::2:1`), with some context.
pub fn find_address(text: &str, ip: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let v6 = ip.contains(':');
    // What may continue an address: digits and dots (IPv4); hex digits, colons and dots (IPv6).
    let part = |b: u8| b.is_ascii_digit() || b == b'.' || (v6 && (b.is_ascii_hexdigit() || b == b':'));
    let mut from = 0;
    while let Some(i) = text[from..].find(ip).map(|i| i + from) {
        let end = i + ip.len();
        let digit_before = i > 0 && part(bytes[i - 1]);
        let digit_after = bytes.get(end).is_some_and(|b| if v6 { part(*b) } else { b.is_ascii_digit() });
        if !digit_before && !digit_after {
            let mut start = i.saturating_sub(60);
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            let mut stop = (end + 60).min(text.len());
            while !text.is_char_boundary(stop) {
                stop += 1;
            }
            return Some(text[start..stop].replace('\n', " "));
        }
        from = end;
    }
    None
}

fn tail(lines: &[String]) -> String {
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// One confusion matrix per protocol: rows what was expected, columns what the probe said.
pub fn matrix(reports: &[Report]) -> String {
    let mut out = String::new();
    for test in TestKind::ALL {
        let mut cells: BTreeMap<(String, String), usize> = BTreeMap::new();
        for r in reports.iter().flat_map(|r| &r.rows).filter(|r| r.test == *test) {
            *cells.entry((r.expected_label(), r.got_label())).or_default() += 1;
        }
        if cells.is_empty() {
            continue;
        }
        let rows: BTreeSet<&String> = cells.keys().map(|(e, _)| e).collect();
        let cols: Vec<&String> = cells.keys().map(|(_, g)| g).collect::<BTreeSet<_>>().into_iter().collect();
        let width = rows.iter().map(|r| r.len()).max().unwrap_or(8).max(8);
        let _ = writeln!(out, "\n{} (rows: expected, columns: got)", test.as_str().to_uppercase());
        for (i, c) in cols.iter().enumerate() {
            let _ = writeln!(out, "  [{}] {c}", i + 1);
        }
        let _ = write!(out, "  {:width$}", "");
        for i in 0..cols.len() {
            let _ = write!(out, " {:>4}", format!("[{}]", i + 1));
        }
        let _ = writeln!(out);
        for row in rows {
            let _ = write!(out, "  {row:width$}");
            for col in &cols {
                match cells.get(&(row.clone(), (*col).clone())) {
                    Some(n) if row == *col => {
                        let _ = write!(out, " {n:>4}");
                    }
                    Some(n) => {
                        let _ = write!(out, " {:>4}", format!("{n}!"));
                    }
                    None => {
                        let _ = write!(out, " {:>4}", ".");
                    }
                }
            }
            let _ = writeln!(out);
        }
    }
    out
}

/// The per-scenario summary and the matrices, as the lab prints them.
pub fn summary(reports: &[Report]) -> String {
    let mut out = String::new();
    for r in reports {
        let blocked = r.rows.iter().filter(|row| row.got.as_ref().is_some_and(|g| g.status == Status::Blocked)).count();
        let _ = writeln!(
            out,
            "{:<4} {:<28} {:<7} {:>2} checks {:>2} blocked {:>5.1} s",
            if r.passed() { "ok" } else { "FAIL" },
            r.scenario,
            match r.kind {
                Kind::Censor => "censor",
                Kind::Benign => "benign",
            },
            r.rows.len(),
            blocked,
            r.runtime.as_secs_f64()
        );
    }
    out.push_str(&matrix(reports));
    let failures: String = reports.iter().map(Report::failures).collect();
    if !failures.is_empty() {
        let _ = write!(out, "\nFAILURES (a cell marked `!` is a miss):\n{failures}");
    }
    out
}

/// Run `scenarios`, at most `jobs` at a time, in file order.
pub fn run_all(scenarios: &[Scenario], jobs: usize, keep: bool) -> Vec<Report> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let reports = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(s) = scenarios.get(i) else { break };
                    let report = run_scenario(s, keep);
                    eprintln!(
                        "vantage-lab: {} {} in {:.1} s",
                        s.name,
                        if report.passed() { "passed" } else { "FAILED" },
                        report.runtime.as_secs_f64()
                    );
                    reports.lock().unwrap_or_else(|e| e.into_inner()).push((i, report));
                }
            });
        }
    });
    let mut reports = reports.into_inner().unwrap_or_else(|e| e.into_inner());
    reports.sort_by_key(|(i, _)| *i);
    reports.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_must_be_counted_in_the_metrics() {
        let row = Row {
            scenario: "s".into(),
            target: "blocked".into(),
            test: TestKind::Tls,
            retest: false,
            family: None,
            expected: Expected(Vec::new()),
            got: Some(Outcome { status: Status::Blocked, mechanism: Some(Mechanism::TlsTimeoutSni) }),
            trials: None,
            expected_trials: None,
            trials_run: 1,
            expected_evidence: Vec::new(),
            evidence: Vec::new(),
            expected_localised: None,
            localised: "(absent)".into(),
        };
        let counted = r#"vantage_measurements_total{country="ZZ",mechanism="tls.timeout_sni",target="blocked",test="tls",verdict="blocked"} 1"#;
        assert_eq!(metric_problem(counted, &row), None);
        assert!(metric_problem(&counted.replace("} 1", "} 0"), &row).is_some());
        assert!(metric_problem(&counted.replace("tls.timeout_sni", "none"), &row).is_some());
    }

    #[test]
    fn localisation_blocks_read_as_labels() {
        let located =
            serde_json::json!({"censor_hop": 3, "server_hop": 5, "how": "reset", "placement": "unknown", "attempts": 11});
        assert_eq!(localised_label(Some(&located)), "3/5 reset unknown");
        let none = serde_json::json!({"not_localised": "target_reached_server", "attempts": 14});
        assert_eq!(localised_label(Some(&none)), "none target_reached_server");
        assert_eq!(localised_label(Some(&Value::Null)), "(absent)");
        assert_eq!(localised_label(None), "(absent)");
    }

    #[test]
    fn only_whole_addresses_are_found() {
        assert!(find_address("peer 198.51.100.2:443", "198.51.100.2").is_some());
        assert!(find_address("198.51.100.20 and 198.51.100.21", "198.51.100.2").is_none());
        assert!(find_address("1198.51.100.2", "198.51.100.2").is_none());
        assert!(find_address("x 198.51.100.20 y 198.51.100.2", "198.51.100.2").is_some());
        assert!(find_address("peer [2001:db8:100::2]:443", "2001:db8:100::2").is_some());
        assert!(find_address("\"2001:db8:100::2\"", "2001:db8:100::2").is_some());
        assert!(find_address("2001:db8:100::20 2001:db8:100::2:1 12001:db8:100::2", "2001:db8:100::2").is_none());
    }
}
