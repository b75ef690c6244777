//! Scenario files: one TOML file per censor behaviour or benign fault, so a new behaviour is a
//! new file, not new code.
//!
//! A file says what the path does (`[censor]`: commands run in the censor's router namespace,
//! `[internet]`: routes in the servers' namespace, `[dns]`: what the resolvers answer), which
//! targets the probe measures (`[[target]]` in the probe's own targets-file format) and what it
//! must conclude for each (`expect`). Unknown keys are an error everywhere: a typo must not turn
//! a censor off and leave a scenario passing for the wrong reason. The probe's part of each
//! target is checked with the probe's own parser when the file is loaded.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vantage_engine::runner::edns::{DOH_PORT, DOT_PORT};
use vantage_engine::targets::TargetSpec;
use vantage_measurement::{Mechanism, Status, TestKind};

use super::addr;

/// Keys of a `[[target]]` table that are the lab's, not the probe's.
const LAB_KEYS: &[&str] = &[
    "expect",
    "expect_v6",
    "expect_trials",
    "expect_evidence",
    "expect_evidence_v6",
    "expect_retest",
    "expect_localised",
    "server",
];

/// Why a scenario file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid scenario.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Whether the scenario emulates a censor or an ordinary fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Interference: the expectations name how it must be detected.
    Censor,
    /// An honest network with a fault: nothing may come out `blocked`.
    Benign,
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    description: String,
    kind: Kind,
    #[serde(default)]
    probe_args: Vec<String>,
    #[serde(default = "yes")]
    probe_ipv6: bool,
    #[serde(default)]
    dns: DnsSpec,
    #[serde(default)]
    censor: CensorSpec,
    #[serde(default)]
    internet: InternetSpec,
    #[serde(default)]
    topology: Option<TopologySpec>,
    target: Vec<toml::Table>,
}

/// Plain routers around the censor, so it sits at a known hop (the localisation scenarios). A
/// scenario with this table runs the probe's hop follow-up (with the lab's short spacing); one
/// without runs it with `--no-localise`, so the other scenarios keep their time.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    /// Routers between the probe and the censor.
    #[serde(default)]
    pub routers_before: u8,
    /// Routers between the censor and the servers' namespace.
    #[serde(default)]
    pub routers_after: u8,
}

/// What the two resolvers in `internet` answer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// Extra or overriding records on both resolvers (targets' names are added automatically):
    /// an IPv4 address is an A record, an IPv6 one an AAAA record (the name then has no A).
    #[serde(default)]
    pub records: BTreeMap<String, IpAddr>,
    /// Records only the probe's resolver gives (a CDN answering by region).
    #[serde(default)]
    pub probe_records: BTreeMap<String, IpAddr>,
    /// How the probe's resolver behaves.
    #[serde(default)]
    pub probe_resolver: ResolverMode,
}

/// The probe's resolver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolverMode {
    /// Answers from the lab's records.
    #[default]
    Honest,
    /// A validating resolver with a broken chain of trust: SERVFAIL for every name.
    Servfail,
}

/// Commands run in the censor's namespace, in this order: sysctls, tools (each waited for until
/// ready), `ip`, the nft script, `iptables`, `ip6tables`, `tc`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CensorSpec {
    /// `key=value` for `sysctl -w`.
    #[serde(default)]
    pub sysctl: Vec<String>,
    /// Userspace censors (injector, proxy, middlebox) or a lying resolver.
    #[serde(default)]
    pub run: Vec<ToolSpec>,
    /// Arguments of `ip` commands, one command per entry (split on whitespace).
    #[serde(default)]
    pub ip: Vec<String>,
    /// An nft script, loaded with `nft -f`.
    #[serde(default)]
    pub nft: Option<String>,
    /// Arguments of `iptables` commands (split on whitespace).
    #[serde(default)]
    pub iptables: Vec<String>,
    /// Arguments of `ip6tables` commands (split on whitespace), after `iptables`.
    #[serde(default)]
    pub ip6tables: Vec<String>,
    /// Arguments of `tc` commands (split on whitespace).
    #[serde(default)]
    pub tc: Vec<String>,
}

/// A long-running program in the censor's namespace.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// A workspace binary (looked up next to the lab's) or a program on `PATH`.
    pub program: String,
    /// Its arguments; `{dir}` becomes the scenario's working directory.
    #[serde(default)]
    pub args: Vec<String>,
    /// A piece of a line the program prints (stdout or stderr) once it is ready.
    pub ready: String,
}

/// Commands run in the servers' namespace (faults that hit everyone, the helper too).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternetSpec {
    /// Arguments of `ip` commands (split on whitespace).
    #[serde(default)]
    pub ip: Vec<String>,
    /// An nft script, loaded with `nft -f`.
    #[serde(default)]
    pub nft: Option<String>,
}

/// One acceptable verdict: a status and the mechanism it must carry (none for a plain `ok`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The status.
    pub status: Status,
    /// The mechanism; `None` means the verdict must have none.
    pub mechanism: Option<Mechanism>,
}

impl Outcome {
    /// `blocked dns.injected`, `ok`.
    pub fn label(&self) -> String {
        match self.mechanism {
            Some(m) => format!("{} {m}", self.status.as_str()),
            None => self.status.as_str().to_string(),
        }
    }

    fn parse(text: &str) -> Result<Outcome, String> {
        let mut words = text.split_whitespace();
        let status = words.next().ok_or("an empty expectation")?;
        let status = Status::parse(status).ok_or_else(|| format!("unknown status `{status}`"))?;
        let mechanism =
            words.next().map(|m| Mechanism::parse(m).ok_or_else(|| format!("unknown mechanism `{m}`"))).transpose()?;
        if let Some(extra) = words.next() {
            return Err(format!("unexpected `{extra}` after the mechanism"));
        }
        Ok(Outcome { status, mechanism })
    }
}

/// What one test of one target must conclude: any of these (`ok | inconclusive dns.timeout`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected(pub Vec<Outcome>);

impl Expected {
    /// The label as written, normalised.
    pub fn label(&self) -> String {
        self.0.iter().map(Outcome::label).collect::<Vec<_>>().join(" | ")
    }

    /// Whether `got` is one of the acceptable outcomes.
    pub fn accepts(&self, got: &Outcome) -> bool {
        self.0.contains(got)
    }
}

/// How many trials must be blocked out of how many: `4/8`, `1-8/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedTrials {
    /// Fewest blocked trials.
    pub min_blocked: u32,
    /// Most blocked trials.
    pub max_blocked: u32,
    /// Trials run.
    pub total: u32,
}

impl ExpectedTrials {
    fn parse(text: &str) -> Result<ExpectedTrials, String> {
        let bad = || format!("`{text}` is not BLOCKED/TOTAL or MIN-MAX/TOTAL");
        let (blocked, total) = text.split_once('/').ok_or_else(bad)?;
        let total = total.trim().parse().map_err(|_| bad())?;
        let (min, max) = blocked.split_once('-').unwrap_or((blocked, blocked));
        let (min_blocked, max_blocked) = (min.trim().parse().map_err(|_| bad())?, max.trim().parse().map_err(|_| bad())?);
        if min_blocked > max_blocked || max_blocked > total {
            return Err(bad());
        }
        Ok(ExpectedTrials { min_blocked, max_blocked, total })
    }

    /// `4/8`, `1-8/8`.
    pub fn label(&self) -> String {
        if self.min_blocked == self.max_blocked {
            format!("{}/{}", self.min_blocked, self.total)
        } else {
            format!("{}-{}/{}", self.min_blocked, self.max_blocked, self.total)
        }
    }
}

/// The lab's keys of one `[[target]]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabKeys {
    #[serde(default)]
    expect: BTreeMap<String, String>,
    #[serde(default)]
    expect_v6: BTreeMap<String, String>,
    #[serde(default)]
    expect_trials: BTreeMap<String, String>,
    #[serde(default)]
    expect_evidence: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    expect_evidence_v6: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    expect_retest: BTreeMap<String, String>,
    #[serde(default)]
    expect_localised: BTreeMap<String, String>,
    #[serde(default)]
    server: ServerState,
}

/// Whether the target's servers run, and how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// Listening on every port the target's tests use, any SNI.
    #[default]
    Up,
    /// TLS answers only the target's own name; any other SNI gets an alert (servers that
    /// refuse unknown names are common, and must not make the control look censored).
    Strict,
    /// Stopped: nothing listens (for everyone).
    Down,
}

/// A target: the probe's spec plus what the lab expects of it.
#[derive(Clone, Debug)]
pub struct LabTarget {
    /// As the probe reads it.
    pub spec: TargetSpec,
    /// Per test (for a dual-stack target's endpoint tests: the IPv4 measurement).
    pub expect: BTreeMap<TestKind, Expected>,
    /// Per endpoint test, the IPv6 measurement's verdict. A target with these is dual stack: its
    /// name gets an AAAA record (the [`addr::v6`] twin of its server) and its servers listen on
    /// both addresses.
    pub expect_v6: BTreeMap<TestKind, Expected>,
    /// Per test, for targets with several trials.
    pub expect_trials: BTreeMap<TestKind, ExpectedTrials>,
    /// Per test, pieces of text the verdict's evidence must contain (each in some line).
    pub expect_evidence: BTreeMap<TestKind, Vec<String>>,
    /// The same for the IPv6 measurement of a dual-stack target.
    pub expect_evidence_v6: BTreeMap<TestKind, Vec<String>>,
    /// Per test, the verdict of the re-test after a residual penalty lapsed (the probe's second
    /// measurement of the pair; the scenario passes `--retest-residual`).
    pub expect_retest: BTreeMap<TestKind, Expected>,
    /// Per test, the verdict's `localisation` block as `censor/server how placement` (`3/5 reset
    /// unknown`), or `none` (no hop, any reason) / `none <reason>`.
    pub expect_localised: BTreeMap<TestKind, String>,
    /// Whether its servers run.
    pub server: ServerState,
}

impl LabTarget {
    /// Whether its name has an AAAA record too (it has IPv6 expectations).
    pub fn dual_stack(&self) -> bool {
        !self.expect_v6.is_empty()
    }
}

/// A loaded, checked scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The file's stem.
    pub name: String,
    /// Where it came from.
    pub path: PathBuf,
    /// One line on what it emulates.
    pub description: String,
    /// Censor or benign.
    pub kind: Kind,
    /// Extra flags for `vantage-probe run`.
    pub probe_args: Vec<String>,
    /// Whether the probe's network has IPv6 (`probe_ipv6 = false`: no address, no route).
    pub probe_ipv6: bool,
    /// Resolvers.
    pub dns: DnsSpec,
    /// The censor's namespace.
    pub censor: CensorSpec,
    /// The servers' namespace.
    pub internet: InternetSpec,
    /// Routers around the censor, when asked for.
    pub topology: Option<TopologySpec>,
    /// What is measured.
    pub targets: Vec<LabTarget>,
    /// The targets file handed to the probe (the lab's keys removed).
    pub targets_toml: String,
}

impl Scenario {
    /// Load and check one file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: path.into(), source })?;
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("scenario").to_string();
        Scenario::parse(&name, path, &text).map_err(|message| ScenarioError::Invalid { path: path.into(), message })
    }

    /// Every `*.toml` in `dir`, sorted by name.
    pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, ScenarioError> {
        let read = |source| ScenarioError::Read { path: dir.into(), source };
        let mut paths: Vec<PathBuf> =
            std::fs::read_dir(dir).map_err(read)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>().map_err(read)?;
        paths.retain(|p| p.extension().is_some_and(|e| e == "toml"));
        paths.sort();
        paths.iter().map(|p| Scenario::load(p)).collect()
    }

    fn parse(name: &str, path: &Path, text: &str) -> Result<Scenario, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut probe_tables = Vec::new();
        let mut lab_keys = Vec::new();
        for mut table in file.target {
            let mut lab = toml::Table::new();
            for key in LAB_KEYS {
                if let Some(v) = table.remove(*key) {
                    lab.insert(key.to_string(), v);
                }
            }
            lab_keys.push(LabKeys::deserialize(toml::Value::Table(lab)).map_err(|e| e.to_string())?);
            probe_tables.push(toml::Value::Table(table));
        }
        let mut doc = toml::Table::new();
        doc.insert("target".into(), toml::Value::Array(probe_tables));
        let targets_toml = toml::to_string(&doc).map_err(|e| e.to_string())?;
        let specs = vantage_engine::targets::parse(&targets_toml, &path.display().to_string()).map_err(|e| e.to_string())?;
        let targets = specs.into_iter().zip(lab_keys).map(|(spec, lab)| lab_target(spec, lab)).collect::<Result<Vec<_>, _>>()?;
        let scenario = Scenario {
            name: name.to_string(),
            path: path.into(),
            description: file.description,
            kind: file.kind,
            probe_args: file.probe_args,
            probe_ipv6: file.probe_ipv6,
            dns: file.dns,
            censor: file.censor,
            internet: file.internet,
            topology: file.topology,
            targets,
            targets_toml,
        };
        scenario.check()?;
        Ok(scenario)
    }

    /// Rules that span targets.
    fn check(&self) -> Result<(), String> {
        let mut states: BTreeMap<(Service, IpAddr, u16), ServerState> = BTreeMap::new();
        for t in &self.targets {
            for e in self.endpoints(t) {
                if let Some(other) = states.insert(e, t.server).filter(|s| *s != t.server) {
                    return Err(format!("{e:?} is both {other:?} and {:?}", t.server));
                }
            }
        }
        let serving = states.iter().filter(|(_, s)| **s != ServerState::Down).map(|(e, _)| e);
        if let Some((_, a, _)) = serving.clone().find(|(_, a, _)| !is_lab_host(*a)) {
            return Err(format!("no lab host has {a}, so nothing can serve there: use a server address or `server = \"down\"`"));
        }
        if self.kind == Kind::Benign {
            let blocked = self
                .targets
                .iter()
                .flat_map(|t| t.expect.values().chain(t.expect_v6.values()))
                .flat_map(|e| &e.0)
                .find(|o| o.status == Status::Blocked);
            if let Some(o) = blocked {
                return Err(format!("a benign scenario can't expect `{}`", o.label()));
            }
        }
        Ok(())
    }

    /// The addresses a target's name leads to: its fixed address, else both resolvers' answers
    /// (for a dual-stack target, with their IPv6 twins).
    pub fn server_addresses(&self, t: &LabTarget) -> BTreeSet<IpAddr> {
        if let Some(a) = t.spec.address {
            return [a].into();
        }
        let helper = self.dns.records.get(&t.spec.domain).copied().unwrap_or(addr::SERVER.into());
        let probe = self.dns.probe_records.get(&t.spec.domain).copied().unwrap_or(helper);
        let mut out: BTreeSet<IpAddr> = [helper, probe].into();
        if t.dual_stack() {
            out.extend([helper, probe].into_iter().filter_map(|a| twin(a).map(IpAddr::V6)));
        }
        out
    }

    /// `(service, address, port)` triples the target's tests need listening.
    pub fn endpoints(&self, t: &LabTarget) -> BTreeSet<(Service, IpAddr, u16)> {
        let mut out = BTreeSet::new();
        let ports: Vec<u16> = std::iter::once(t.spec.port).chain(t.spec.control_port).collect();
        for a in self.server_addresses(t) {
            for test in &t.spec.tests {
                let service = match test {
                    TestKind::Tcp | TestKind::Tls | TestKind::Ech => Service::Tls,
                    TestKind::Quic => Service::Quic,
                    TestKind::Throttle => Service::Throughput,
                    // A resolver serves both, as the public ones do: the probe's connect to the
                    // other port of the address tells a blocked port from a blocked address.
                    TestKind::Dot | TestKind::Doh => {
                        out.insert((Service::Dot, a, DOT_PORT));
                        out.insert((Service::Doh, a, DOH_PORT));
                        continue;
                    }
                    _ => continue,
                };
                out.extend(ports.iter().map(|p| (service, a, *p)));
            }
            if let Some(p) = t.spec.udp_echo_port {
                out.insert((Service::Echo, a, p));
            }
        }
        out
    }

    /// The records of the helper's resolver (and, with `probe_records` on top, the probe's).
    pub fn records(&self) -> BTreeMap<String, IpAddr> {
        let mut records: BTreeMap<String, IpAddr> = BTreeMap::new();
        for t in &self.targets {
            let a = match t.spec.address {
                Some(std::net::IpAddr::V4(a)) => a,
                _ => addr::SERVER,
            };
            records.insert(t.spec.domain.clone(), a.into());
        }
        records.extend(self.dns.records.clone());
        records
    }

    /// The AAAA records of dual-stack names, given the resolver's A records: each name's IPv6
    /// twin of its IPv4 address.
    pub fn records_v6(&self, records: &BTreeMap<String, IpAddr>) -> BTreeMap<String, Ipv6Addr> {
        self.targets
            .iter()
            .filter(|t| t.dual_stack())
            .filter_map(|t| Some((t.spec.domain.clone(), twin(*records.get(&t.spec.domain)?)?)))
            .collect()
    }
}

/// The IPv6 twin of a lab host's IPv4 address (`None` for an IPv6 address or a non-host).
fn twin(a: IpAddr) -> Option<Ipv6Addr> {
    match a {
        IpAddr::V4(v4) if addr::INTERNET_HOSTS.contains(&v4) => Some(addr::v6(v4)),
        _ => None,
    }
}

/// Whether a lab host (on the internet's loopback) has `a`.
fn is_lab_host(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => addr::INTERNET_HOSTS.contains(&v4),
        IpAddr::V6(v6) => addr::v4_of(v6).is_some(),
    }
}

fn yes() -> bool {
    true
}

/// What a lab server offers on an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    /// TLS over TCP, any SNI.
    Tls,
    /// QUIC, any SNI.
    Quic,
    /// UDP echo.
    Echo,
    /// The throughput reference endpoint (nginx, any SNI, the same body).
    Throughput,
    /// DNS over TLS, any SNI.
    Dot,
    /// DNS over HTTPS, any SNI.
    Doh,
}

fn test_kind(name: &str) -> Result<TestKind, String> {
    TestKind::ALL.iter().copied().find(|t| t.as_str() == name).ok_or_else(|| format!("unknown test `{name}`"))
}

fn lab_target(spec: TargetSpec, lab: LabKeys) -> Result<LabTarget, String> {
    let whose = |e: String| format!("target `{}`: {e}", spec.name);
    let expectations = |texts: &BTreeMap<String, String>| -> Result<BTreeMap<TestKind, Expected>, String> {
        let mut expect = BTreeMap::new();
        for (test, text) in texts {
            let outcomes = text.split('|').map(Outcome::parse).collect::<Result<Vec<_>, _>>().map_err(whose)?;
            expect.insert(test_kind(test).map_err(whose)?, Expected(outcomes));
        }
        Ok(expect)
    };
    let expect = expectations(&lab.expect)?;
    let expect_v6 = expectations(&lab.expect_v6)?;
    let expect_retest = expectations(&lab.expect_retest)?;
    if let Some(vpn) = spec.tests.iter().find(|t| TestKind::VPN.contains(t)) {
        return Err(whose(format!("the lab has no {} server yet (dns, tcp, tls, quic and throttle only)", vpn.as_str())));
    }
    let tests: BTreeSet<TestKind> = spec.tests.iter().copied().collect();
    let expected: BTreeSet<TestKind> = expect.keys().copied().collect();
    if tests != expected {
        return Err(whose(format!("`expect` must name exactly its tests {tests:?}, not {expected:?}")));
    }
    let mut expect_trials = BTreeMap::new();
    for (test, text) in &lab.expect_trials {
        let t = ExpectedTrials::parse(text).map_err(whose)?;
        if t.total != spec.trials {
            return Err(whose(format!("expect_trials `{text}` but trials = {}", spec.trials)));
        }
        expect_trials.insert(test_kind(test).map_err(whose)?, t);
    }
    let mut expect_evidence = BTreeMap::new();
    for (test, needles) in lab.expect_evidence {
        expect_evidence.insert(test_kind(&test).map_err(whose)?, needles);
    }
    let mut expect_localised = BTreeMap::new();
    for (test, label) in lab.expect_localised {
        expect_localised.insert(test_kind(&test).map_err(whose)?, label);
    }
    let mut expect_evidence_v6 = BTreeMap::new();
    for (test, needles) in lab.expect_evidence_v6 {
        expect_evidence_v6.insert(test_kind(&test).map_err(whose)?, needles);
    }
    let endpoint_tests: BTreeSet<TestKind> = tests.iter().copied().filter(|t| *t != TestKind::Dns).collect();
    let expected_v6: BTreeSet<TestKind> = expect_v6.keys().copied().collect();
    if !expect_v6.is_empty() && endpoint_tests != expected_v6 {
        return Err(whose(format!("`expect_v6` must name exactly its endpoint tests {endpoint_tests:?}, not {expected_v6:?}")));
    }
    Ok(LabTarget {
        spec,
        expect,
        expect_v6,
        expect_trials,
        expect_evidence,
        expect_evidence_v6,
        expect_retest,
        expect_localised,
        server: lab.server,
    })
}

#[cfg(test)]
#[path = "scenario_tests.rs"]
mod tests;
