//! The scheduler: which (target, test) pairs run, in what order, how many at once.
//!
//! Residual censorship shapes the schedule. After a trigger (a name in a ClientHello, content),
//! censors block the (client, server, port) tuple, sometimes the whole (client, server) pair, for
//! 90–180 s, so a later test of the same *server* can fail for a reason that belongs to an earlier
//! one. Many names share one address (shared hosting, CDNs), so:
//! - endpoint tests are grouped by the **address they will reach**, resolved before anything is
//!   measured (a target's name is resolved once, off the censored path, and the lookup is shared
//!   by its tests), never by target name: one measurement at a time per address, in a fixed order
//!   (by test, then target name), so the same run always tells the same story;
//! - a measurement that comes out `blocked` by what it said ([`triggers_residual`]) taints its
//!   server for the residual window ([`DEFAULT_RESIDUAL_WINDOW`], `--residual-window`), on its
//!   transport: its port (3-tuple) and, when a block shows there too, the server's other ports
//!   (2-tuple). The classifier gets the live taint as an input and calls a block inside it
//!   `inconclusive residual.suspected`, naming the trigger; the scheduler never rewrites a verdict;
//! - suspects are re-tested once the window has passed ([`Retest`]): both measurements are
//!   reported, and the re-test's verdict is the one to believe;
//! - inside a measurement the control runs first, on its own port when the target has one
//!   (`control_port`), so the target's trigger can't reach it. IP blocks don't taint: a bare SYN
//!   triggers no content censor.
//!
//! A caller that measures a few targets at a time (the daemon) carries live penalties from run to
//! run in a [`PenaltyBook`], so a trigger in one run still taints its server in the next, and a
//! [`Stop`] ends a run early without cutting a measurement short.
//!
//! A dual-stack name is measured on each family separately ([`per_family`]): its endpoint tests run
//! once on its IPv4 and once on its IPv6 address, each in that address's group, so residual
//! penalties are kept per (address, transport, port) and a trigger on IPv4 never taints IPv6.
//!
//! Address groups are visited in shuffled order so that order effects average out across runs.
//! Concurrency is bounded: a volunteer's uplink and the censor's flow tables are not ours to flood.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use rand::seq::SliceRandom;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use vantage_measurement::{Family, Localisation, Measurement, Mechanism, NotLocalised, Status, TestKind, Transport};

use crate::classify::{ResidualTaint, triggers_residual};
use crate::measure::{MeasureConfig, Resolved, measure, resolve, transport};
use crate::targets::TargetSpec;

/// How long a trigger taints its server: the long end of what censors are reported to keep a
/// penalty (90–180 s; `reference/censorship-methods.md`).
pub const DEFAULT_RESIDUAL_WINDOW: Duration = Duration::from_secs(180);

/// One unit of work.
#[derive(Clone, Debug)]
pub struct Job {
    /// What to measure, shared by the target's tests (a list may hold 10,000 targets).
    pub target: Arc<TargetSpec>,
    /// With which test.
    pub test: TestKind,
}

/// Whether and how long to wait, at the end of a run, to re-test suspects of a residual penalty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retest {
    /// Report the suspicion and stop (a one-shot run shouldn't wait minutes unasked).
    Never,
    /// Wait for the penalties to lapse, at most this long, then measure the suspects again.
    Within(Duration),
}

/// How residual penalties are handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResidualPolicy {
    /// How long a trigger taints its server.
    pub window: Duration,
    /// Re-testing of suspects.
    pub retest: Retest,
}

impl Default for ResidualPolicy {
    fn default() -> Self {
        ResidualPolicy { window: DEFAULT_RESIDUAL_WINDOW, retest: Retest::Never }
    }
}

/// A request to stop starting work, shared between whoever asks (a signal handler) and a
/// running [`run_until_stopped`]: measurements already running finish, each within its own
/// timeouts, and no new one starts.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// A flag nobody has raised yet.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Ask the run to stop starting work.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Expand targets into jobs (only the tests in `only`, if given), shuffled.
pub fn plan(targets: &[TargetSpec], only: Option<&[TestKind]>) -> Vec<Job> {
    plan_owned(targets.to_vec(), only)
}

/// [`plan`] for a caller that no longer needs the list: each target moves into its jobs, so a
/// long list is never held twice.
pub fn plan_owned(targets: Vec<TargetSpec>, only: Option<&[TestKind]>) -> Vec<Job> {
    let mut jobs = Vec::new();
    for target in targets {
        let target = Arc::new(target);
        let tests = target.tests.iter().filter(|test| only.is_none_or(|o| o.contains(test)));
        jobs.extend(tests.map(|&test| Job { target: target.clone(), test }));
    }
    jobs.shuffle(&mut rand::rng());
    jobs
}

/// What the scheduler hands to its caller.
#[derive(Debug)]
pub enum Handover {
    /// A finished measurement.
    Done(Measurement),
    /// A `blocked` measurement held back for its hop follow-up, which may take minutes: as it
    /// stands, marked `localisation: interrupted` (what it is if the follow-up never ends: a
    /// crash, a kill), for the caller to keep safe until the same measurement (same id) comes as
    /// [`Handover::Done`].
    Held(Measurement),
}

/// Run `jobs` with at most `concurrency` servers in flight, handing each measurement to `on_done`
/// as soon as it finishes (so it is spooled before the next one completes).
pub async fn run(
    cfg: Arc<MeasureConfig>,
    jobs: Vec<Job>,
    concurrency: usize,
    residual: ResidualPolicy,
    on_done: impl FnMut(Handover),
) {
    run_until_stopped(cfg, jobs, concurrency, residual, &Stop::new(), &PenaltyBook::default(), on_done).await
}

/// Residual penalties that outlive one run, for a caller that runs many (the daemon measures a
/// few targets at a time): a trigger in one run still taints its server in the next, until the
/// window lapses. Only live penalties are kept.
#[derive(Debug, Default)]
pub struct PenaltyBook(std::sync::Mutex<HashMap<String, Penalties>>);

impl PenaltyBook {
    fn take(&self, server: &str) -> Penalties {
        self.0.lock().map(|mut book| book.remove(server).unwrap_or_default()).unwrap_or_default()
    }

    fn keep(&self, server: String, penalties: Penalties, now: Instant) {
        if penalties.lapses_at().is_some_and(|lapse| lapse > now)
            && let Ok(mut book) = self.0.lock()
        {
            book.insert(server, penalties);
        }
    }

    /// Servers with a live penalty.
    pub fn len(&self) -> usize {
        self.0.lock().map(|book| book.len()).unwrap_or(0)
    }

    /// Whether no server has a live penalty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// [`run`], until `stop` is raised: from then on no measurement starts (and no re-test), those
/// in flight finish and are handed to `on_done`. Penalties start from `book` and go back to it.
pub async fn run_until_stopped(
    cfg: Arc<MeasureConfig>,
    jobs: Vec<Job>,
    concurrency: usize,
    residual: ResidualPolicy,
    stop: &Stop,
    book: &PenaltyBook,
    mut on_done: impl FnMut(Handover),
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The producer owns `tx`, so the channel closes once every group is done.
    let producer = async move {
        let concurrency = concurrency.max(1);
        let resolved = resolve_names(&cfg, &jobs, concurrency).await;
        let groups: Vec<Group> = by_server(per_family(jobs, &resolved), &resolved)
            .into_iter()
            .map(|(server, jobs)| Group { penalties: book.take(&server), server, jobs, held: Vec::new() })
            .collect();
        let run_all = |groups: Vec<Group>| {
            let (cfg, resolved, tx) = (&cfg, &resolved, &tx);
            futures::stream::iter(groups)
                .map(move |Group { server, jobs, penalties, .. }| async move {
                    let (jobs, penalties, held) =
                        run_group(cfg, resolved, jobs, penalties, residual.window, stop, tx.clone()).await;
                    Group { server, jobs, penalties, held }
                })
                .buffer_unordered(concurrency)
                .collect::<Vec<_>>()
        };
        // Blocked tls/dns measurements held back for their hop follow-up, after the run's
        // measurements (see `crate::localise`): servers side by side, one server's in turn.
        let localise_all = |groups: Vec<Group>| {
            let (cfg, tx) = (&cfg, &tx);
            futures::stream::iter(groups)
                .map(move |group| localise_group(cfg, group, residual.window, stop, tx.clone()))
                .buffer_unordered(concurrency)
                .collect::<Vec<_>>()
        };
        // What comes back from a run is each server's residual suspects, with its penalties.
        let (suspects, settled): (Vec<Group>, Vec<Group>) =
            localise_all(run_all(groups).await).await.into_iter().partition(|g| !g.jobs.is_empty());
        for group in settled {
            book.keep(group.server, group.penalties, Instant::now());
        }
        let lapse = suspects.iter().filter_map(|g| g.penalties.lapses_at()).max();
        let retest_at = match (residual.retest, lapse) {
            (Retest::Within(patience), Some(lapse)) if lapse.saturating_duration_since(Instant::now()) <= patience => Some(lapse),
            (Retest::Within(_), Some(_)) => {
                tracing::info!("residual suspects not re-tested: the penalties outlast --retest-residual");
                None
            }
            _ => None,
        };
        let suspects = match retest_at {
            Some(lapse) => {
                tokio::time::sleep_until(lapse).await;
                if stop.is_stopped() { suspects } else { localise_all(run_all(suspects).await).await }
            }
            None => suspects,
        };
        for group in suspects {
            book.keep(group.server, group.penalties, Instant::now());
        }
    };
    let consumer = async {
        while let Some(m) = rx.recv().await {
            on_done(m);
        }
    };
    tokio::join!(producer, consumer);
}

/// Resolve each target that endpoint tests will connect to by name, once, `concurrency` at a time.
async fn resolve_names(cfg: &MeasureConfig, jobs: &[Job], concurrency: usize) -> HashMap<String, Resolved> {
    let mut names: Vec<&TargetSpec> = jobs.iter().filter(|j| j.test != TestKind::Dns).map(|j| j.target.as_ref()).collect();
    names.sort_by(|a, b| a.name.cmp(&b.name));
    names.dedup_by(|a, b| a.name == b.name);
    futures::stream::iter(names)
        .map(|target| async move { resolve(cfg, target).await.map(|r| (target.name.clone(), r)) })
        .buffer_unordered(concurrency)
        .filter_map(|resolved| async move { resolved })
        .collect()
        .await
}

/// A job on one address family: `None` for DNS, a fixed address, or a name that did not resolve.
#[derive(Clone, Debug)]
struct Work {
    job: Job,
    family: Option<Family>,
}

impl Work {
    /// What its measurement connects to: its family's address of the shared lookup.
    fn resolved(&self, resolved: &HashMap<String, Resolved>) -> Option<Resolved> {
        let r = resolved.get(&self.job.target.name)?;
        Some(match self.family {
            Some(family) => r.in_family(family),
            None => r.clone(),
        })
    }
}

/// One job per family for a resolved name's endpoint tests: every family the lookup found, or
/// those of the target's `families` (a family it asks for but the name lacks is still measured,
/// and says the name did not resolve). DNS, fixed addresses and unresolved names: as they are.
fn per_family(jobs: Vec<Job>, resolved: &HashMap<String, Resolved>) -> Vec<Work> {
    let mut out = Vec::new();
    for job in jobs {
        let lookup = resolved.get(&job.target.name).filter(|_| job.test != TestKind::Dns && job.target.address.is_none());
        let families = match lookup {
            None => vec![None],
            Some(_) if !job.target.families.is_empty() => job.target.families.iter().copied().map(Some).collect(),
            Some(r) => match r.families() {
                found if found.is_empty() => vec![None],
                found => found.into_iter().map(Some).collect(),
            },
        };
        out.extend(families.into_iter().map(|family| Work { job: job.clone(), family }));
    }
    out
}

/// Measure one server's jobs one after another; returns the residual suspects and the penalties.
async fn run_group(
    cfg: &MeasureConfig,
    resolved: &HashMap<String, Resolved>,
    group: Vec<Work>,
    mut penalties: Penalties,
    window: Duration,
    stop: &Stop,
    tx: UnboundedSender<Handover>,
) -> (Vec<Work>, Penalties, Vec<Held>) {
    let mut suspects = Vec::new();
    let mut held = Vec::new();
    for work in group {
        if stop.is_stopped() {
            break;
        }
        let job = &work.job;
        let endpoint = transport(job.test, &job.target).map(|transport| (transport, job.target.port));
        let taint = endpoint.and_then(|e| penalties.taint(e, Instant::now()));
        let lookup = work.resolved(resolved);
        let m = measure(cfg, &job.target, job.test, lookup.as_ref(), taint.as_ref()).await;
        if let Some(endpoint) = endpoint {
            penalties.record(endpoint, &m, window, Instant::now());
        }
        if m.verdict.mechanism == Some(Mechanism::ResidualSuspected) {
            suspects.push(work);
        }
        if cfg.localise.is_some() && crate::localise::applies(&m) {
            let mut as_is = m.clone();
            as_is.verdict.localisation = Some(Localisation::not_localised(NotLocalised::Interrupted, 0));
            let _ = tx.send(Handover::Held(as_is));
            held.push(Held { measurement: m, endpoint, triggered_at: Instant::now() });
        } else {
            let _ = tx.send(Handover::Done(m));
        }
    }
    (suspects, penalties, held)
}

/// A blocked measurement waiting for its hop follow-up.
struct Held {
    measurement: Measurement,
    endpoint: Option<(Transport, u16)>,
    triggered_at: Instant,
}

/// Follow up one server's held measurements in turn, hand each over when done, and keep the
/// penalty its target attempts renew (they trigger the censor again).
async fn localise_group(
    cfg: &MeasureConfig,
    mut group: Group,
    window: Duration,
    stop: &Stop,
    tx: UnboundedSender<Handover>,
) -> Group {
    for Held { mut measurement, endpoint, triggered_at } in std::mem::take(&mut group.held) {
        if let Some(lc) = cfg.localise {
            crate::localise::follow_up(cfg, lc, &mut measurement, triggered_at, stop).await;
        }
        if let Some(endpoint) = endpoint.filter(|_| measurement.verdict.localisation.is_some_and(|l| l.attempts > 0)) {
            group.penalties.record(endpoint, &measurement, window, Instant::now());
        }
        let _ = tx.send(Handover::Done(measurement));
    }
    group
}

/// One server's jobs (or, after a run, its residual suspects) and its penalties.
struct Group {
    server: String,
    jobs: Vec<Work>,
    penalties: Penalties,
    held: Vec<Held>,
}

/// Group jobs by the server they reach: DNS per target, endpoint tests per address (or per name
/// where it did not resolve), each with its key. Groups shuffled, jobs in a group in a fixed order.
fn by_server(jobs: Vec<Work>, resolved: &HashMap<String, Resolved>) -> Vec<(String, Vec<Work>)> {
    let mut groups: BTreeMap<String, Vec<Work>> = BTreeMap::new();
    for work in jobs {
        let job = &work.job;
        let address: Option<IpAddr> = job.target.address.or_else(|| work.resolved(resolved).and_then(|r| r.address));
        let key = match (job.test, address) {
            (TestKind::Dns, _) => format!("dns {}", job.target.name),
            (_, Some(ip)) => format!("server {ip}"),
            (_, None) => format!("unresolved {}", job.target.name),
        };
        groups.entry(key).or_default().push(work);
    }
    let mut groups: Vec<(String, Vec<Work>)> = groups.into_iter().collect();
    for (_, group) in &mut groups {
        group.sort_by(|a, b| (a.job.test, &a.job.target.name).cmp(&(b.job.test, &b.job.target.name)));
    }
    groups.shuffle(&mut rand::rng());
    groups
}

/// Live residual penalties on one server, per transport.
#[derive(Debug, Default)]
struct Penalties {
    by_transport: HashMap<Transport, Penalty>,
}

/// A trigger's penalty on one server and transport.
#[derive(Debug)]
struct Penalty {
    /// `<target> <test>` of the trigger.
    trigger: String,
    port: u16,
    at: Instant,
    until: Instant,
}

impl Penalties {
    /// The penalty that may explain a failure on `(transport, port)` now, if one is live.
    fn taint(&self, (transport, port): (Transport, u16), now: Instant) -> Option<ResidualTaint> {
        let penalty = self.by_transport.get(&transport).filter(|p| now < p.until)?;
        Some(ResidualTaint {
            trigger: penalty.trigger.clone(),
            same_port: penalty.port == port,
            seconds_ago: now.saturating_duration_since(penalty.at).as_secs(),
        })
    }

    /// Start (or restart) a penalty when `m` was blocked by what it said.
    fn record(&mut self, (transport, port): (Transport, u16), m: &Measurement, window: Duration, now: Instant) {
        if m.verdict.status == Status::Blocked && m.verdict.mechanism.is_some_and(triggers_residual) {
            let trigger = format!("{} {}", m.target.name, m.test.as_str());
            self.by_transport.insert(transport, Penalty { trigger, port, at: now, until: now + window });
        }
    }

    /// When the last live penalty lapses.
    fn lapses_at(&self) -> Option<Instant> {
        self.by_transport.values().map(|p| p.until).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets;
    use vantage_measurement::{Verdict, example};

    fn resolved_to(names: &[(&str, &str)]) -> HashMap<String, Resolved> {
        let lookup = example::tls_reset(chrono::Utc::now()).observations[0].clone();
        names
            .iter()
            .map(|(name, ip)| (name.to_string(), Resolved { address: ip.parse().ok(), observation: lookup.clone() }))
            .collect()
    }

    #[test]
    fn plan_expands_and_filters() {
        let ts = targets::parse(
            "[[target]]\nname='a'\ndomain='a.example'\n[[target]]\nname='b'\ndomain='b.example'\ntests=['tls']\n",
            "t",
        )
        .expect("valid");
        assert_eq!(plan(&ts, None).len(), 5);
        let tls_only = plan(&ts, Some(&[TestKind::Tls]));
        assert_eq!(tls_only.len(), 2);
        assert!(tls_only.iter().all(|j| j.test == TestKind::Tls));
    }

    #[test]
    fn names_that_resolve_to_one_address_share_a_group_in_a_fixed_order() {
        let ts = targets::parse(
            "[[target]]\nname='b'\ndomain='b.example'\n[[target]]\nname='a'\ndomain='a.example'\n\
             [[target]]\nname='c'\ndomain='c.example'\n",
            "t",
        )
        .expect("valid");
        let resolved = resolved_to(&[("a", "192.0.2.1"), ("b", "192.0.2.1"), ("c", "192.0.2.9")]);
        let groups: Vec<Vec<Work>> =
            by_server(per_family(plan(&ts, None), &resolved), &resolved).into_iter().map(|(_, g)| g).collect();
        // Two servers (all endpoint tests of a and b on one), and one DNS group per target.
        assert_eq!(groups.len(), 5);
        let shared = groups.iter().find(|g| g.len() == 6).expect("a and b share 192.0.2.1");
        let order: Vec<(TestKind, &str)> = shared.iter().map(|w| (w.job.test, w.job.target.name.as_str())).collect();
        let expected = [TestKind::Tcp, TestKind::Tls, TestKind::Quic].into_iter().flat_map(|t| [(t, "a"), (t, "b")]);
        assert_eq!(order, expected.collect::<Vec<_>>());
    }

    #[test]
    fn a_dual_stack_name_is_measured_on_each_family_in_the_group_of_each_address() {
        use vantage_measurement::{Detail, DnsAnswer, DnsDetail, DnsReply, Operation, Role, Vantage};
        let ts = targets::parse(
            "[[target]]\nname='d'\ndomain='d.example'\ntests=['dns','tls']\n\
             [[target]]\nname='v4'\ndomain='v4.example'\ntests=['tls']\nfamilies=['ipv4']\n",
            "t",
        )
        .expect("valid");
        let mut lookup = crate::classify::testing::step(Vantage::Helper, Role::Target, Operation::Resolve, None);
        let answers = ["192.0.2.1", "2001:db8::1"].map(|ip| DnsAnswer { ip: ip.parse().expect("ip"), ttl: 60 });
        lookup.detail = Some(Detail::Dns(DnsDetail {
            replies: vec![DnsReply { answers: answers.to_vec(), ..DnsReply::default() }],
            ..DnsDetail::default()
        }));
        let resolved: HashMap<String, Resolved> =
            ["d", "v4"].map(|n| (n.to_string(), Resolved { address: Some(answers[0].ip), observation: lookup.clone() })).into();
        let groups: BTreeMap<String, Vec<(String, Option<Family>)>> =
            by_server(per_family(plan(&ts, None), &resolved), &resolved)
                .into_iter()
                .map(|(key, g)| (key, g.into_iter().map(|w| (w.job.target.name.to_string(), w.family)).collect()))
                .collect();
        let v4 = [("d".to_string(), Some(Family::Ipv4)), ("v4".to_string(), Some(Family::Ipv4))];
        assert_eq!(groups["server 192.0.2.1"], v4, "one residual book per address: v4 and v6 are separate tuples");
        assert_eq!(groups["server 2001:db8::1"], [("d".to_string(), Some(Family::Ipv6))], "`families` keeps v4 on IPv4");
        assert_eq!(groups["dns d"], [("d".to_string(), None)], "DNS is measured once");
    }

    fn blocked(name: &str, test: TestKind, mechanism: Mechanism) -> Measurement {
        let mut m = example::tls_reset(chrono::Utc::now());
        m.target.name = name.into();
        m.test = test;
        m.verdict = Verdict::new(Status::Blocked, mechanism, Vec::new());
        m
    }

    #[test]
    fn a_content_trigger_taints_its_server_for_the_window_on_its_transport() {
        let mut penalties = Penalties::default();
        let window = Duration::from_secs(180);
        let t0 = Instant::now();
        penalties.record((Transport::Tcp, 443), &blocked("a", TestKind::Tls, Mechanism::TlsResetAfterClientHello), window, t0);
        let later = t0 + Duration::from_secs(30);
        let same = penalties.taint((Transport::Tcp, 443), later).expect("live");
        assert_eq!((same.trigger.as_str(), same.same_port, same.seconds_ago), ("a tls", true, 30));
        assert!(!penalties.taint((Transport::Tcp, 8443), later).expect("the whole server").same_port);
        assert_eq!(penalties.taint((Transport::Udp, 443), later), None, "a TCP penalty says nothing about UDP");
        assert_eq!(penalties.taint((Transport::Tcp, 443), t0 + window), None, "lapsed");
        assert_eq!(penalties.lapses_at(), Some(t0 + window));
    }

    fn loopback_config() -> Arc<MeasureConfig> {
        Arc::new(MeasureConfig {
            anchors: Arc::new(crate::runner::verify::TrustAnchors::webpki_defaults()),
            timeout: Duration::from_secs(2),
            helper: None,
            doh: None,
            udp_resolver: None,
            system_resolver: false,
            dns_blackhole: None,
            ipv6_control: None,
            ipv6_answered: Default::default(),
            dns_linger: Duration::ZERO,
            probe: vantage_measurement::ProbeInfo { cc: "ZZ".into(), asn: 0, network_type: None, network_epoch: None },
            bogons: crate::classify::bogon::BogonPolicy::allowing::<&str>(&[]).expect("no ranges"),
            localise: None,
        })
    }

    fn tcp_jobs_to_a_closed_port(n: usize) -> Vec<Job> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        let text: String = (0..n)
            .map(|i| format!("[[target]]\nname='t{i}'\ndomain='t{i}.example'\naddress='127.0.0.1'\nport={port}\ntests=['tcp']\n"))
            .collect();
        plan(&targets::parse(&text, "t").expect("valid"), None)
    }

    #[tokio::test]
    async fn a_raised_stop_starts_nothing_and_an_unraised_one_changes_nothing() {
        let stop = Stop::new();
        let book = PenaltyBook::default();
        let mut measured = 0;
        run_until_stopped(loopback_config(), tcp_jobs_to_a_closed_port(3), 2, ResidualPolicy::default(), &stop, &book, |_| {
            measured += 1
        })
        .await;
        assert_eq!(measured, 3);
        stop.stop();
        let mut after = 0;
        run_until_stopped(loopback_config(), tcp_jobs_to_a_closed_port(3), 2, ResidualPolicy::default(), &stop, &book, |_| {
            after += 1
        })
        .await;
        assert_eq!(after, 0);
    }

    #[test]
    fn the_book_carries_live_penalties_from_run_to_run_and_forgets_lapsed_ones() {
        let book = PenaltyBook::default();
        let t0 = Instant::now();
        let trigger = blocked("a", TestKind::Tls, Mechanism::TlsResetAfterClientHello);
        let mut penalties = book.take("server 192.0.2.1");
        penalties.record((Transport::Tcp, 443), &trigger, Duration::from_secs(180), t0);
        book.keep("server 192.0.2.1".into(), penalties, t0);
        book.keep("server 192.0.2.2".into(), Penalties::default(), t0);
        assert_eq!(book.len(), 1, "a server without a penalty is not kept");
        // The next run on that server sees the trigger of the last one.
        let next = book.take("server 192.0.2.1");
        let taint = next.taint((Transport::Tcp, 443), t0 + Duration::from_secs(60)).expect("still live");
        assert_eq!((taint.trigger.as_str(), taint.seconds_ago), ("a tls", 60));
        book.keep("server 192.0.2.1".into(), next, t0 + Duration::from_secs(181));
        assert!(book.is_empty(), "lapsed: forgotten");
    }

    #[test]
    fn ip_blocks_and_other_verdicts_taint_nothing() {
        let mut penalties = Penalties::default();
        let now = Instant::now();
        penalties.record((Transport::Tcp, 443), &blocked("a", TestKind::Tcp, Mechanism::TcpTimeout), Duration::from_secs(9), now);
        let mut ok = blocked("b", TestKind::Tls, Mechanism::TlsResetAfterClientHello);
        ok.verdict = Verdict::ok();
        penalties.record((Transport::Tcp, 443), &ok, Duration::from_secs(9), now);
        assert_eq!(penalties.taint((Transport::Tcp, 443), now), None);
    }
}
