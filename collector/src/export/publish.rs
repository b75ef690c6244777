//! The publication log: once a UTC day of arrival is closed, one replica computes its manifest
//! (every file of every format hashed, the Merkle roots, the link to the previous day), signs it
//! with the publication key and adds it to the store, where it is never overwritten.
//!
//! A day is closed [`CLOSE_DELAY`] after it ends, so a batch received at 23:59:59 and committed a
//! moment later is in it. Days are published in order, each chained to the one before; the first
//! is the day of the earliest stored measurement. Every [`PUBLISH_PERIOD`] each replica asks for
//! [`Duty::Publish`]; the holder publishes every closed day not yet published. Two replicas that
//! raced anyway (a duty handed on mid-pass) compute the same manifest from the same rows, and
//! the store keeps the first.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use ed25519_dalek::SigningKey;

use super::day::{DayExport, ExportError, Output};
use super::format::Format;
use super::manifest::{Manifest, file_hash};
use crate::clock::Clock;
use crate::store::{DayRows, Duty, Publication, Store};

/// How long after its end a day is closed.
pub const CLOSE_DELAY: chrono::Duration = chrono::Duration::minutes(10);
/// How often replicas look for closed days to publish.
pub const PUBLISH_PERIOD: Duration = Duration::from_secs(300);

/// When `day` closes.
pub fn closes_at(day: NaiveDate) -> DateTime<Utc> {
    (day + chrono::Days::new(1)).and_time(chrono::NaiveTime::MIN).and_utc() + CLOSE_DELAY
}

/// Is `day` closed at `now`?
pub fn is_closed(day: NaiveDate, now: DateTime<Utc>) -> bool {
    closes_at(day) <= now
}

/// The latest day closed at `now`.
pub fn last_closed(now: DateTime<Utc>) -> NaiveDate {
    (now - CLOSE_DELAY).date_naive() - chrono::Days::new(1)
}

/// Export `day` from `store`: the files of `written` through `open`, and the day's manifest
/// (unsigned) chained to `previous`. The rows are streamed; the CPU work runs in a blocking
/// thread.
pub async fn export_day<O>(
    store: &dyn Store,
    day: NaiveDate,
    written: Vec<Format>,
    open: O,
    previous: Option<String>,
) -> Result<Manifest, ExportError>
where
    O: FnMut(&str) -> io::Result<Output> + Send + 'static,
{
    let mut rows = store.day_rows(&DayRows { day, group: None }).await?;
    tokio::task::spawn_blocking(move || {
        let mut export = DayExport::new(day, &written, open);
        while let Some(line) = rows.blocking_recv() {
            export.push(&line?)?;
        }
        export.finish(previous)
    })
    .await
    .map_err(|e| ExportError::Store(crate::store::StoreError::Task(e.to_string())))?
}

/// Publish every closed day after the latest published one (from the earliest stored
/// measurement's day when none is), in order, as of `now`; the days published.
pub async fn catch_up(store: &dyn Store, key: &SigningKey, now: DateTime<Utc>) -> Result<Vec<NaiveDate>, ExportError> {
    let (mut day, mut previous) = match store.latest_publication().await? {
        Some(latest) => {
            // One chain, one signer: a replica with a key of its own must not continue it.
            if let Err(e) = Manifest::verified(latest.manifest.as_bytes(), &key.verifying_key()) {
                return Err(ExportError::ForeignKey { day: latest.day, reason: e.to_string() });
            }
            (latest.day + chrono::Days::new(1), Some(file_hash(latest.manifest.as_bytes())))
        }
        None => match store.earliest_received().await? {
            Some(earliest) => (earliest.date_naive(), None),
            None => return Ok(Vec::new()),
        },
    };
    let mut published = Vec::new();
    while is_closed(day, now) {
        let manifest =
            export_day(store, day, Vec::new(), |_: &str| Ok(Box::new(io::sink()) as Output), previous.clone()).await?.sign(key);
        let bytes = manifest.to_file_bytes();
        let text = String::from_utf8(bytes).map_err(|e| crate::store::StoreError::Encode(e.to_string()))?;
        let publication = Publication { day, manifest: text };
        let kept = if store.publish(&publication).await? {
            tracing::info!(day = %day, rows = manifest.rows, files = manifest.files.len(), "published the day's export manifest");
            published.push(day);
            publication
        } else {
            // Another replica was first: chain on from what it published.
            store.publication(day).await?.unwrap_or(publication)
        };
        previous = Some(file_hash(kept.manifest.as_bytes()));
        day = day + chrono::Days::new(1);
    }
    Ok(published)
}

/// Publish closed days every `period` while holding [`Duty::Publish`]; for ever (the caller
/// aborts the task).
pub async fn run(store: Arc<dyn Store>, key: Arc<SigningKey>, clock: Arc<dyn Clock>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let pass = async {
            if store.hold_duty(Duty::Publish).await? {
                catch_up(store.as_ref(), &key, clock.now()).await?;
            }
            Ok::<_, ExportError>(())
        };
        if let Err(e) = pass.await {
            tracing::warn!("publishing closed days failed (will try again in {period:?}): {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[test]
    fn a_day_closes_ten_minutes_after_it_ends() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).expect("day");
        assert_eq!(closes_at(day), t("2026-12-02T00:10:00Z"));
        assert!(!is_closed(day, t("2026-12-02T00:09:59Z")));
        assert!(is_closed(day, t("2026-12-02T00:10:00Z")));
        assert_eq!(last_closed(t("2026-12-02T00:09:59Z")), NaiveDate::from_ymd_opt(2026, 11, 30).expect("day"));
        assert_eq!(last_closed(t("2026-12-02T00:10:00Z")), day);
    }
}
