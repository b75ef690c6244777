//! The fleet refresh: every `--fleet-refresh-secs`, one replica reads the fleet from the store and
//! computes what is published (the fleet gauges, the ASN label rule, the status page); it keeps
//! that as the shared [snapshot](snapshot) in the database, and every replica publishes the
//! latest snapshot. So several collectors on one database serve identical figures, and the read
//! costs the database once per period whatever the number of replicas.
//!
//! Each tick, on every replica ([`Fleet::refresh`]):
//!
//! 1. ping the store (`vantage_collector_store_up`);
//! 2. ask for each [`Duty`] (`vantage_collector_duty_held{duty}`): a replica keeps a duty for as
//!    long as its database session lives, so a dead holder's duty passes to the next replica
//!    that asks;
//! 3. load the series budget's admitted combinations (other replicas' admissions);
//! 4. if this replica holds [`Duty::FleetRefresh`]: read the fleet, judge the keys by the
//!    [`TrustPolicy`], compute what is published and store it as the snapshot;
//!    That includes the [events](crate::events) of the look-back, from the keys counted now.
//! 5. load the latest snapshot and publish it, if it is newer than the one published.
//!
//! Why a timer and not on scrape: the read costs a scan of the window, and several Prometheus
//! servers (or a dashboard refresh storm) scraping at once should not multiply it. The HELP text
//! of each fleet gauge says it is recomputed, and `vantage_collector_fleet_refresh_timestamp_seconds`
//! is when the snapshot was made (by whichever replica), so staleness is visible and alertable.
//! SQLite holds every duty: one process makes and reads its own snapshot.
//!
//! Only keys the trust policy counts *now* (by the injected clock) are read: the keys active in
//! the window are read first, judged by [`TrustPolicy`], and the fleet read is told which count.
//! The same judgement gives `vantage_collector_keys_active{standing}`.

pub mod snapshot;

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use vantage_measurement::wire::KeyStanding;

use crate::clock::Clock;
use crate::events::{self, Event};
use crate::metrics::{Metrics, StoreOp};
use crate::status::view::{self, Page};
use crate::store::{Duty, KeyActivity, Store, StoreError};
use crate::trust::TrustPolicy;
use snapshot::{Shared, SnapshotError};

/// The events are read every this many refresh periods (a minute at the default 15 s).
pub const EVENTS_EVERY_TICKS: u32 = 4;

/// Why one refresh failed. The previous gauges and snapshot stay in place; the next tick retries.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gauges could not be built (a bug in this crate).
    #[error("fleet gauges: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The shared snapshot could not be encoded or decoded.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// The published snapshot, as the status page uses it.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The status page (its streak starts filled in).
    pub page: Page,
    /// The detected events, ongoing first.
    pub events: Vec<Event>,
    /// When the events were read (they are read less often than the rest, see
    /// [`EVENTS_EVERY_TICKS`]).
    pub events_read_at: Option<DateTime<Utc>>,
    /// When it was made (`None`: not yet).
    pub made_at: Option<DateTime<Utc>>,
    /// Counts the snapshots published here, so pages rendered from one can be reused.
    pub generation: u64,
    /// The stored form it was decoded from (a clock that stands still, as in tests, makes a new
    /// snapshot at the same time as the last).
    stored: String,
}

/// The refresher and the latest snapshot.
#[derive(Debug)]
pub struct Fleet {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    policy: Arc<TrustPolicy>,
    clock: Arc<dyn Clock>,
    /// The window of the gauges and the status page.
    pub window: Duration,
    asn_min_probes: u32,
    interval: Duration,
    snapshot: RwLock<Arc<Snapshot>>,
}

impl Fleet {
    /// A refresher of `metrics` from `store`, counting the keys `policy` trusts at `clock`'s now.
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        policy: Arc<TrustPolicy>,
        clock: Arc<dyn Clock>,
        window: Duration,
        asn_min_probes: u32,
        interval: Duration,
    ) -> Self {
        let snapshot = RwLock::new(Arc::new(Snapshot::default()));
        Fleet { store, metrics, policy, clock, window, asn_min_probes, interval, snapshot }
    }

    /// The latest snapshot published here.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// One tick: the store's health, the duties, the shared budget; the snapshot made if this
    /// replica holds the duty; the latest snapshot published.
    pub async fn refresh(&self) -> Result<(), RefreshError> {
        let ping = self.store.ping().await;
        self.metrics.set_store_up(ping.is_ok());
        ping?;
        let mut makes = false;
        for duty in Duty::ALL {
            let held = match self.store.hold_duty(*duty).await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(duty = duty.as_str(), "asking for a duty failed (taken as not held): {e}");
                    false
                }
            };
            self.metrics.set_duty_held(*duty, held);
            makes |= *duty == Duty::FleetRefresh && held;
        }
        self.metrics.load_series(&self.store.admitted_series().await?);
        if makes {
            self.make().await?;
        }
        self.publish_latest().await
    }

    /// Read the store, compute what is published and store it as the shared snapshot.
    async fn make(&self) -> Result<(), RefreshError> {
        let now = self.clock.now();
        let window = chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::hours(1));
        let timer = self.metrics.store_timer(StoreOp::Fleet);
        let active = self.store.active_keys(now - window).await?;
        let counted = self.policy.counted(&active, now);
        let rows = self.store.fleet(now - window, &counted).await?;
        timer.observe_duration();
        if rows.truncated {
            tracing::warn!(
                rows = rows.latest.len(),
                "the fleet read hit its row cap; fleet gauges are a lower bound (shorten --window-secs)"
            );
        }
        self.metrics.settle_fleet(self.store.as_ref(), &rows).await?;
        let keys = by_standing(&self.policy, &active, now);
        let metrics = self.metrics.fleet_publication(&rows, self.asn_min_probes, self.window, keys);
        let mut page = view::build(&rows, Some(now), self.window.as_secs(), |target| self.metrics.is_published(target));
        if let Err(e) = crate::status::fill_since(self.store.as_ref(), &self.metrics, &mut page).await {
            tracing::warn!("status page: blocking streaks unavailable this refresh: {e}");
        }
        // The timelines reach back further than the window: the keys that count are those active
        // over the whole span (a probe that went quiet an hour ago still drew its past bars).
        let span = crate::status::timeline::Span::for_window(self.window.as_secs(), now);
        let timelines = async {
            let counted = self.policy.counted(&self.store.active_keys(span.start).await?, now);
            crate::status::fill_timelines(self.store.as_ref(), &self.metrics, &mut page, &span, &counted).await
        };
        if let Err(e) = timelines.await {
            tracing::warn!("status page: timelines unavailable this refresh: {e}");
        }
        let (events, events_read_at) = self.events(now, &metrics.eligible_asns).await;
        // Made at the wall clock's time, as the staleness alert reads it (`now` is the injected
        // clock's, which judges trust and the window).
        let shared = snapshot::encode(&Shared { metrics, page, events, events_read_at }, Utc::now())?;
        self.store.put_fleet_snapshot(&shared).await?;
        Ok(())
    }

    /// The events of the look-back, from the keys the policy counts now (an error keeps the
    /// published list, so an ongoing event's alert does not resolve on a failed read, and is
    /// logged: the gauges and the page still go out).
    ///
    /// They are read again only every [`EVENTS_EVERY_TICKS`] refresh periods: the read covers a
    /// week, and an hourly detector gains nothing from a read every 15 seconds.
    async fn events(
        &self,
        now: DateTime<Utc>,
        eligible_asns: &std::collections::BTreeSet<(String, u32)>,
    ) -> (Vec<Event>, Option<DateTime<Utc>>) {
        let published = self.snapshot();
        let every = chrono::Duration::from_std(self.interval * EVENTS_EVERY_TICKS).unwrap_or(chrono::Duration::minutes(1));
        // By the wall clock, as `made_at`: an injected clock that stands still (tests) must not
        // stop the reads.
        let started = Utc::now();
        if let Some(read_at) = published.events_read_at
            && started >= read_at
            && started - read_at < every
        {
            return (published.events.clone(), Some(read_at));
        }
        let since = now - chrono::Duration::hours(events::LOOKBACK_HOURS);
        let read = async {
            let active = self.store.active_keys(since).await?;
            let counted = self.policy.counted(&active, now);
            events::read::read(self.store.as_ref(), &counted, now, eligible_asns).await
        };
        match read.await {
            Ok(events) => (events, Some(started)),
            Err(e) => {
                tracing::warn!("events unavailable this refresh (the previous list stays): {e}");
                (published.events.clone(), published.events_read_at)
            }
        }
    }

    /// Publish the latest stored snapshot if it is newer than the one published here.
    async fn publish_latest(&self) -> Result<(), RefreshError> {
        let Some(stored) = self.store.fleet_snapshot().await? else {
            return Ok(());
        };
        let published = self.snapshot();
        let same = published.made_at == Some(stored.made_at) && published.stored == stored.body;
        if same || published.made_at.is_some_and(|at| at > stored.made_at) {
            return Ok(());
        }
        let shared = snapshot::decode(&stored)?;
        self.metrics.publish_fleet(&shared.metrics, stored.made_at)?;
        let mut slot = self.snapshot.write().unwrap_or_else(PoisonError::into_inner);
        let generation = slot.generation + 1;
        self.metrics.publish_events(&shared.events)?;
        *slot = Arc::new(Snapshot {
            page: shared.page,
            events: shared.events,
            events_read_at: shared.events_read_at,
            made_at: Some(stored.made_at),
            generation,
            stored: stored.body,
        });
        Ok(())
    }

    /// The k of the ASN rule: the fewest distinct trusted probes an ASN needs to be named
    /// (`--asn-min-probes`), for the metrics and the aggregation API alike.
    pub fn asn_min_probes(&self) -> u32 {
        self.asn_min_probes
    }

    /// The clock the fleet is read by.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Refresh now and then every interval, for ever (the caller aborts the task).
    pub async fn run(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(e) = self.refresh().await {
                tracing::warn!("fleet refresh failed (gauges keep their previous values): {e}");
            }
        }
    }
}

/// How many of the active keys stand where, every standing listed.
fn by_standing(policy: &TrustPolicy, active: &[KeyActivity], now: DateTime<Utc>) -> Vec<(KeyStanding, u64)> {
    KeyStanding::ALL
        .iter()
        .map(|standing| {
            let keys = active.iter().filter(|r| policy.standing(&r.key, Some(r), now) == *standing).count();
            (*standing, keys as u64)
        })
        .collect()
}
