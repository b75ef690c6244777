//! `--retain-days`: drop old measurements, on one replica at a time.
//!
//! Every [`RETENTION_PERIOD`] each replica asks the store whether it holds [`Duty::Retention`];
//! the one that does asks the store to drop every day older than the window. A replica that
//! dies hands the duty on with its database session, so retention neither runs twice at once nor
//! stops. The first pass is right at start, so a lowered `--retain-days` takes effect at once.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::store::{Duty, Store};

/// How often retention runs (days are dropped whole, so hourly is plenty).
pub const RETENTION_PERIOD: Duration = Duration::from_secs(3600);

/// Drop measurements older than `days` days, every `period`, while holding the duty; for ever
/// (the caller aborts the task).
pub async fn run(store: Arc<dyn Store>, clock: Arc<dyn Clock>, days: u32, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = once(store.as_ref(), clock.as_ref(), days).await {
            tracing::warn!("retention failed (will try again in {period:?}): {e}");
        }
    }
}

/// One pass: `Some(rows dropped)` if this replica holds the duty, `None` if another does.
pub async fn once(store: &dyn Store, clock: &dyn Clock, days: u32) -> Result<Option<u64>, crate::store::StoreError> {
    if !store.hold_duty(Duty::Retention).await? {
        return Ok(None);
    }
    let before = clock.now() - chrono::Duration::days(i64::from(days));
    let dropped = store.retain(before).await?;
    if dropped > 0 {
        tracing::info!(dropped, days, "retention dropped measurements older than the window");
    }
    Ok(Some(dropped))
}
