//! `vantage-probe daemon`: measure unattended, on a schedule, within the volunteer's limits.
//!
//! The loop, in order, each time it wakes:
//! 1. read both clocks; a disagreement is a clock jump or a suspend, and the timetable is remade
//!    from now ([`slots`]) instead of firing every missed slot at once;
//! 2. once an interval (at least hourly: a kill switch in a signed list should not wait six
//!    hours), ask the [`PlanSource`] for the plan (an error keeps the last one);
//! 3. take the targets whose slot came, and the residual suspects whose re-test is due;
//! 4. ask the network gate ([`gate::before_batch`]): no route, or a VPN holding the default
//!    route under `on_vpn = "pause"`, pauses; otherwise the batch carries the network epoch;
//! 5. charge each measurement to the budget ([`budget`]) or skip it, and say so in the state;
//! 6. measure the batch through the engine's scheduler (one measurement at a time per server
//!    address; names resolved again for every batch, so a network change is followed), each
//!    measurement appended and synced to the spool as it finishes; a residual suspect gets a
//!    re-test after the residual window;
//! 7. upload the spool — at most once a minute (or once an interval, if shorter) unless a full
//!    batch waits, and never while the collector's `Retry-After` or a back-off runs;
//! 8. write the state file (at most once a minute), and sleep until the next slot (at most
//!    [`MAX_NAP`], so a jump is noticed soon after it happens).
//!
//! Batches never overlap, so no server is measured twice at once across batches either.
//! SIGTERM or SIGINT stops starting work: the running measurements finish (each within its own
//! timeouts) and are spooled, the spool file is sealed, the state says "stopped", and the daemon
//! exits 0. What was not uploaded is sent by the next start. Nothing is kept in memory beyond the
//! current batch: measurements stream to the spool.
//!
//! How it starts (joined, or with `--collector`) is in `launch`; its stop in `shutdown`.

pub mod budget;
pub mod gate;
mod launch;
pub mod plan;
mod shutdown;
pub mod slots;
pub mod state;
pub mod status;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::time::Instant;
use vantage_engine::measure::MeasureConfig;
use vantage_engine::schedule::{self, Handover, Job, PenaltyBook, ResidualPolicy, Retest};
use vantage_measurement::wire::KeyStanding;
use vantage_measurement::{Mechanism, TestKind};

use crate::identity;
use crate::network::{self, OnVpn};
use crate::report;
use crate::spool::Spool;
use crate::upload::{BATCH_LINES, Fault, Uploader};

pub use launch::{DaemonArgs, run};
pub use plan::{FlagsPlan, ListPlan, Plan, PlanSource};
pub use shutdown::{Shutdown, shutdown_on_signals};

use budget::{Admit, Limits};
use slots::{Clocks, Slots};
use state::State;

/// Default seconds between two measurements of a target: every six hours, which the built-in list
/// does in 5.6 MB a day (docs/probe.md has the numbers). A signed list sets its own.
pub const DEFAULT_INTERVAL_SECS: u64 = 21_600;
/// The longest the daemon sleeps at once, so that a clock jump or a resume is noticed soon.
pub const MAX_NAP: Duration = Duration::from_secs(30);
/// Slack added to the residual window before a suspect is re-tested.
const RETEST_SLACK: Duration = Duration::from_secs(5);
/// The longest the daemon follows a plan without asking its source again.
const PLAN_REFRESH_MAX: Duration = Duration::from_secs(3_600);
/// The least time between two routine writes of the state file.
const STATE_SPACING: Duration = Duration::from_secs(60);
/// The least time between two routine uploads: one POST a minute however many small batches ran.
const UPLOAD_SPACING: Duration = Duration::from_secs(60);
/// Waits after a failed upload that named no `Retry-After`: doubling from the first to the last.
const UPLOAD_BACKOFF: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(3_600));

/// How the daemon runs, whatever the plan says.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the spool, the key and the state file live.
    pub data_dir: PathBuf,
    /// Measurements in flight at once (each on a different server).
    pub concurrency: usize,
    /// Residual window; suspects are re-tested after it.
    pub residual_window: Duration,
    /// Only these tests, if given.
    pub only_tests: Option<Vec<TestKind>>,
    /// Budgets.
    pub limits: Limits,
    /// Print each measurement as an NDJSON line on stdout (for a journal).
    pub json: bool,
    /// Pause or tag when a VPN or tunnel holds the default route.
    pub on_vpn: OnVpn,
}

/// Run the daemon until `shutdown` is raised: the entry point for any plan source.
pub async fn serve(
    cfg: Arc<MeasureConfig>,
    settings: Settings,
    uploader: Uploader,
    mut source: impl PlanSource,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let spool = Spool::open(&settings.data_dir)?;
    let key = identity::load_or_create(&settings.data_dir)?;
    let seed = key.public_key_base64();
    let uploader = uploader.with_key(key).registering(&settings.data_dir);
    let state_path = state::path(&settings.data_dir);
    // Today's budget and the last results outlive a restart; the rest is this run's.
    let old = state::read(&state_path).unwrap_or_else(|e| {
        tracing::warn!("{e}; starting with a fresh state");
        None
    });
    let mut plan = source.plan().await.context("no plan to follow")?;
    let mut daemon = Daemon {
        cfg,
        state: State {
            running: true,
            results: old.as_ref().map(|s| s.results.clone()).unwrap_or_default(),
            budget: state::BudgetState {
                daily_bytes: settings.limits.daily_bytes,
                max_per_hour: settings.limits.max_per_hour,
                usage: old.map(|s| s.budget.usage).unwrap_or_default(),
            },
            ..State::default()
        },
        slots: Slots::new(&seed, millis(plan.interval)),
        settings,
        spool,
        uploader,
        state_path,
        upload_after: None,
        next_routine_upload: None,
        backoff: UPLOAD_BACKOFF.0,
        shutdown,
        penalties: PenaltyBook::default(),
        last_save: None,
    };
    daemon.state.spool_pending = waiting(&daemon.spool);
    daemon.follow(&plan);
    if daemon.upload_due() {
        daemon.upload().await;
    }
    daemon.save(true);
    let mut next_plan = Instant::now() + plan.interval.min(PLAN_REFRESH_MAX);
    while !daemon.shutdown.is_raised() {
        if Instant::now() >= next_plan {
            match source.plan().await {
                Ok(fresh) => plan = fresh,
                Err(e) => tracing::warn!("keeping the last plan: {e:#}"),
            }
            daemon.follow(&plan);
            next_plan = Instant::now() + plan.interval.min(PLAN_REFRESH_MAX);
        }
        let due = daemon.slots.tick(clocks());
        if let Some(jump) = due.jumped_ms {
            tracing::info!(
                "the wall clock moved {} s against the monotonic clock (suspend or clock change): re-planned",
                jump / 1000
            );
            daemon.state.clock_jumps += 1;
        }
        let jobs = jobs_for(&plan, &due, daemon.settings.only_tests.as_deref());
        if !jobs.is_empty() {
            daemon.batch(&plan, jobs).await?;
        }
        if daemon.upload_due() {
            daemon.upload().await;
        }
        daemon.save(false);
        let until_due = daemon.slots.next_due().map(|at| Duration::from_millis((at - wall_ms()).max(0) as u64));
        let until_upload = daemon.upload_wakes_at().map(|at| at.saturating_duration_since(Instant::now()));
        let nap = [Some(MAX_NAP), until_due, until_upload, Some(next_plan.saturating_duration_since(Instant::now()))]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(MAX_NAP);
        daemon.shutdown.nap(nap.max(Duration::from_millis(50))).await;
    }
    daemon.state.running = false;
    daemon.save(true);
    tracing::info!("stopped; {} measurement(s) wait in the spool", daemon.state.spool_pending);
    Ok(())
}

/// The jobs of a tick: every test of each due target, then the due re-tests.
fn jobs_for(plan: &Plan, due: &slots::Due, only: Option<&[TestKind]>) -> Vec<Job> {
    let wanted = |test: &TestKind| only.is_none_or(|o| o.contains(test));
    let mut jobs = Vec::new();
    for target in plan.targets.iter().filter(|t| due.targets.contains(&t.name)) {
        jobs.extend(target.tests.iter().filter(|t| wanted(t)).map(|&test| Job { target: target.clone(), test }));
    }
    for (name, test) in &due.retests {
        if let Some(target) = plan.targets.iter().find(|t| &t.name == name && t.tests.contains(test)) {
            jobs.push(Job { target: target.clone(), test: *test });
        }
    }
    jobs
}

struct Daemon {
    cfg: Arc<MeasureConfig>,
    settings: Settings,
    spool: Spool,
    uploader: Uploader,
    state: State,
    state_path: PathBuf,
    slots: Slots,
    /// No upload before this (monotonic): `Retry-After` or the back-off.
    upload_after: Option<Instant>,
    /// No routine upload before this (monotonic): small batches are sent together.
    next_routine_upload: Option<Instant>,
    backoff: Duration,
    shutdown: Shutdown,
    /// Residual penalties carried from batch to batch: targets sharing a server sit in
    /// different slots, and a trigger in one batch must still taint the server in the next.
    penalties: PenaltyBook,
    last_save: Option<Instant>,
}

impl Daemon {
    /// Take a plan: the timetable follows its targets and interval, the state its list.
    fn follow(&mut self, plan: &Plan) {
        if let Some(collector) = &plan.collector {
            self.uploader.send_to(collector);
        }
        let names: HashSet<&str> = plan.targets.iter().map(|t| t.name.as_str()).collect();
        self.slots.set_plan(names.iter().copied(), millis(plan.interval), wall_ms());
        self.state.keep_targets(&names);
        self.state.interval_secs = plan.interval.as_secs();
        self.state.list_version = plan.list_version;
        self.state.list_signer = plan.list_signer.clone();
    }

    /// Gate, budget, measure and spool one batch of `plan`'s jobs.
    async fn batch(&mut self, plan: &Plan, jobs: Vec<Job>) -> anyhow::Result<()> {
        let now = Utc::now();
        let targets: Vec<_> = jobs.iter().map(|j| j.target.clone()).collect();
        let cfg = match gate::before_batch(&targets, self.settings.on_vpn, &self.settings.data_dir, &self.cfg.probe) {
            gate::Gate::Go(probe) if probe == self.cfg.probe => self.cfg.clone(),
            gate::Gate::Go(probe) => Arc::new(MeasureConfig { probe, ..(*self.cfg).clone() }),
            gate::Gate::Pause(why) => {
                tracing::info!("not measuring: {why}");
                for job in &jobs {
                    self.state.record_skip(&job.target.name, job.test, now, &why);
                }
                self.state.paused = Some(why);
                return Ok(());
            }
        };
        self.state.paused = None;
        let limits = self.settings.limits;
        let mut admitted = Vec::with_capacity(jobs.len());
        for job in jobs {
            match self.state.budget.usage.admit(
                limits,
                now.timestamp_millis(),
                budget::estimated_bytes(job.test, job.target.trials),
            ) {
                Admit::Go => admitted.push(job),
                Admit::OverBytes => self.state.record_skip(&job.target.name, job.test, now, "daily byte budget spent"),
                Admit::OverRate => self.state.record_skip(&job.target.name, job.test, now, "hourly measurement cap reached"),
            }
        }
        if admitted.is_empty() {
            return Ok(());
        }
        let mut writer = self.spool.writer()?;
        let mut spool_error = None;
        let mut suspects = Vec::new();
        let mut spooled = 0;
        let (state, json) = (&mut self.state, self.settings.json);
        let residual = ResidualPolicy { window: self.settings.residual_window, retest: Retest::Never };
        let concurrency = self.settings.concurrency;
        let mut measured = std::collections::HashSet::new();
        schedule::run_until_stopped(cfg, admitted, concurrency, residual, &self.shutdown.stop, &self.penalties, |handover| {
            let (mut m, held) = match handover {
                Handover::Done(m) => (m, false),
                Handover::Held(m) => (m, true),
            };
            plan.stamp(&mut m);
            if held {
                // Safe on disk while its hop follow-up runs; its final form comes later.
                if let Err(e) = writer.hold(&m) {
                    spool_error.get_or_insert(e);
                }
                return;
            }
            // Admission charged each job once; a second family and a hop follow-up cost more.
            let first = measured.insert((m.target.name.clone(), m.test));
            let extra = budget::unadmitted_bytes(&m, first);
            if extra > 0 {
                state.budget.usage.charge(Utc::now().timestamp_millis(), extra, u32::from(!first));
            }
            match writer.append(&m) {
                Ok(()) => spooled += 1,
                Err(e) => {
                    spool_error.get_or_insert(e);
                }
            }
            if json {
                let _ = report::write_json_line(&mut std::io::stdout().lock(), &m);
            }
            state.record(&m);
            if m.verdict.mechanism == Some(Mechanism::ResidualSuspected) {
                suspects.push((m.target.name.clone(), m.test));
            }
        })
        .await;
        writer.seal()?;
        self.state.spool_pending += spooled;
        if let Some(e) = spool_error {
            // A spool that can't be written would lose every measurement from now on: stop loudly.
            return Err(e).context("measurements could not be spooled");
        }
        let retest_at = wall_ms() + millis(self.settings.residual_window + RETEST_SLACK);
        for (name, test) in suspects {
            self.slots.retest(&name, test, retest_at);
        }
        Ok(())
    }

    /// Whether to upload now: something waits, the collector's wait (or the back-off) is over,
    /// and the routine spacing has passed or a full batch waits.
    fn upload_due(&self) -> bool {
        let now = Instant::now();
        let waited = self.upload_after.is_none_or(|at| now >= at);
        let routine = self.next_routine_upload.is_none_or(|at| now >= at) || self.state.spool_pending >= BATCH_LINES;
        self.state.spool_pending > 0 && waited && routine
    }

    /// When an upload will be due, if something waits.
    fn upload_wakes_at(&self) -> Option<Instant> {
        (self.state.spool_pending > 0).then(|| self.upload_after.into_iter().chain(self.next_routine_upload).max()).flatten()
    }

    fn upload_spacing(&self) -> Duration {
        UPLOAD_SPACING.min(Duration::from_secs(self.state.interval_secs.max(1)))
    }

    /// Deliver the spool; a stop cuts the upload short (what was not
    /// acknowledged stays in the spool).
    async fn upload(&mut self) {
        if self.shutdown.is_raised() {
            return;
        }
        self.next_routine_upload = Some(Instant::now() + self.upload_spacing());
        let mut rx = self.shutdown.tx.subscribe();
        let report = tokio::select! {
            report = self.uploader.flush(&self.spool) => report,
            _ = rx.changed() => return,
        };
        network::note_collector_view(&self.settings.data_dir, report.observed.as_ref());
        if report.key == Some(KeyStanding::Unregistered) {
            // Beside the schedule, not in its way; dropped (and the work stopped) with the runtime.
            let uploader = self.uploader.clone();
            tokio::spawn(async move { uploader.register_if_asked(report.key).await });
        }
        self.state.upload.accepted += report.accepted as u64;
        self.state.spool_pending = report.remaining;
        match report.error {
            None => {
                self.state.upload.last_ok_at = Some(Utc::now());
                self.state.upload.last_error = None;
                self.state.upload.not_before = None;
                self.upload_after = None;
                self.backoff = UPLOAD_BACKOFF.0;
            }
            Some(e) => {
                let wait = wait_after_failure(e.retry_after(), &mut self.backoff);
                if e.fault() == Fault::Setup {
                    tracing::error!("the collector refuses this probe's uploads; check the collector URL and key: {e}");
                }
                tracing::warn!("upload stopped: {e}; next try in {} s", wait.as_secs());
                self.state.upload.last_error = Some(e.to_string());
                self.state.upload.not_before = Some(Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default());
                self.upload_after = Some(Instant::now() + wait);
            }
        }
    }

    /// Write the state file: when `forced` (start, stop), else at most once per [`STATE_SPACING`]
    /// (or per interval, if shorter), so a long list does not rewrite a large file every batch.
    fn save(&mut self, forced: bool) {
        let spacing = STATE_SPACING.min(Duration::from_secs(self.state.interval_secs.max(1)));
        if !forced && self.last_save.is_some_and(|at| at.elapsed() < spacing) {
            return;
        }
        self.last_save = Some(Instant::now());
        self.state.written_at = Some(Utc::now());
        self.state.next_runs = self.slots.upcoming().filter_map(|(name, at)| Some((name.to_string(), utc(at)?))).collect();
        if let Err(e) = state::write(&self.state_path, &self.state) {
            tracing::warn!("{e}");
        }
    }
}

/// How long to wait after a failed upload: the collector's `Retry-After` when it gave one;
/// otherwise the back-off, which then doubles up to its cap, so a collector that is down (or a
/// setup it refuses) is not asked again after every batch.
fn wait_after_failure(retry_after: Option<Duration>, backoff: &mut Duration) -> Duration {
    retry_after.unwrap_or_else(|| {
        let wait = *backoff;
        *backoff = (*backoff * 2).min(UPLOAD_BACKOFF.1);
        wait
    })
}

/// Measurements in the spool's files (those a crash or a stop left too).
fn waiting(spool: &Spool) -> usize {
    let files = spool.pending().unwrap_or_default();
    files.iter().map(|f| crate::spool::count_lines(f).unwrap_or(0)).sum()
}

fn utc(wall_ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(wall_ms)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(millis).unwrap_or(0)
}

/// Both clocks now. Tokio's clock is the monotonic one (it stops while the machine sleeps).
fn clocks() -> Clocks {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    Clocks { wall_ms: wall_ms(), mono_ms: millis(Instant::now().saturating_duration_since(start)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_engine::targets;

    fn plan() -> Plan {
        let text = "[[target]]\nname='a'\ndomain='a.example'\ntests=['dns','tls']\n\
                    [[target]]\nname='b'\ndomain='b.example'\ntests=['quic']\n";
        Plan {
            targets: targets::parse(text, "t").expect("valid").into_iter().map(Arc::new).collect(),
            interval: Duration::from_secs(60),
            list_version: None,
            list_signer: None,
            collector: None,
        }
    }

    fn names(jobs: &[Job]) -> Vec<(String, TestKind)> {
        jobs.iter().map(|j| (j.target.name.clone(), j.test)).collect()
    }

    #[test]
    fn the_collectors_retry_after_wins_and_otherwise_the_back_off_doubles_to_its_cap() {
        let secs = Duration::from_secs;
        let mut backoff = UPLOAD_BACKOFF.0;
        // (Retry-After, expected wait)
        let table = [
            (None, secs(30)),
            (None, secs(60)),
            (Some(secs(7)), secs(7)), // the collector's word, and the back-off stays where it was
            (None, secs(120)),
            (Some(secs(7_200)), secs(7_200)), // even when longer than our cap
            (None, secs(240)),
            (None, secs(480)),
            (None, secs(960)),
            (None, secs(1_920)),
            (None, secs(3_600)),
            (None, secs(3_600)),
        ];
        for (i, (retry_after, expected)) in table.into_iter().enumerate() {
            assert_eq!(wait_after_failure(retry_after, &mut backoff), expected, "failure {i}");
        }
    }

    #[test]
    fn a_tick_becomes_every_test_of_due_targets_and_the_due_retests() {
        let due = |targets: &[&str], retests: &[(&str, TestKind)]| slots::Due {
            targets: targets.iter().map(|s| s.to_string()).collect(),
            retests: retests.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
            jumped_ms: None,
        };
        let a = |t| ("a".to_string(), t);
        // (due, only these tests, expected jobs)
        type Case = (slots::Due, Option<Vec<TestKind>>, Vec<(String, TestKind)>);
        let table: Vec<Case> = vec![
            (due(&["a"], &[]), None, vec![a(TestKind::Dns), a(TestKind::Tls)]),
            (due(&["a"], &[]), Some(vec![TestKind::Tls]), vec![a(TestKind::Tls)]),
            (due(&[], &[("b", TestKind::Quic)]), None, vec![("b".to_string(), TestKind::Quic)]),
            // A re-test of a target or a test the plan no longer has is dropped.
            (due(&[], &[("gone", TestKind::Tls), ("b", TestKind::Tls)]), None, vec![]),
            (due(&["unknown"], &[]), None, vec![]),
        ];
        for (due, only, expected) in table {
            assert_eq!(names(&jobs_for(&plan(), &due, only.as_deref())), expected, "{due:?} {only:?}");
        }
    }
}
