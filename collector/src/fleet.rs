//! The fleet refresh: every `--fleet-refresh-secs`, read the fleet from the store, recompute the
//! fleet gauges and the ASN label rule, and keep the read for the status page.
//!
//! Why a timer and not on scrape: the read costs a scan of the window, and several Prometheus
//! servers (or a dashboard refresh storm) scraping at once should not multiply it. The HELP text
//! of each fleet gauge says it is recomputed, and `vantage_collector_fleet_refresh_timestamp_seconds`
//! says when, so staleness is visible and alertable. The read runs on its own read-only
//! connection: ingest never waits for it.
//!
//! Only keys the trust policy counts *now* (by the injected clock) are read: the keys active in
//! the window are read first, judged by [`TrustPolicy`], and the fleet read is told which count.
//! The same judgement gives `vantage_collector_keys_active{standing}`.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use vantage_measurement::wire::KeyStanding;

use crate::clock::Clock;
use crate::metrics::{Metrics, StoreOp};
use crate::store::{FleetRows, KeyActivity, Store, StoreError};
use crate::trust::TrustPolicy;

/// Why one refresh failed. The previous gauges and snapshot stay in place; the next tick retries.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gauges could not be built (a bug in this crate).
    #[error("fleet gauges: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// One read of the fleet, as the status page uses it.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// What the store said.
    pub rows: FleetRows,
    /// When it was read (`None`: not yet).
    pub read_at: Option<DateTime<Utc>>,
    /// Counts refreshes, so pages rendered from one snapshot can be reused.
    pub generation: u64,
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

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Read the store once and publish.
    pub async fn refresh(&self) -> Result<(), RefreshError> {
        let now = self.clock.now();
        let window = chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::hours(1));
        let timer = self.metrics.store_timer(StoreOp::Fleet);
        let active = self.store.active_keys(now - window).await?;
        let counted = self.policy.counted(&active, now);
        let rows = self.store.fleet(now - window, &counted).await?;
        timer.observe_duration();
        self.metrics.publish_keys(&by_standing(&self.policy, &active, now));
        if rows.truncated {
            tracing::warn!(
                rows = rows.latest.len(),
                "the fleet read hit its row cap; fleet gauges are a lower bound (shorten --window-secs)"
            );
        }
        self.metrics.publish_fleet(&rows, self.asn_min_probes, self.window)?;
        let mut slot = self.snapshot.write().unwrap_or_else(PoisonError::into_inner);
        let generation = slot.generation + 1;
        *slot = Arc::new(Snapshot { rows, read_at: Some(now), generation });
        Ok(())
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
