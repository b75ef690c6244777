//! Daily partitions of `measurements`: made when a batch needs one, dropped by retention.
//!
//! A partition holds one UTC day of ids (`FOR VALUES FROM (day) TO (day + 1)`), named
//! `measurements_pYYYYMMDD`. Before a batch's transaction, the store makes sure each day it
//! touches has its partition. Creating one takes a brief lock on the parent table, so it happens
//! in a short transaction of its own, under an advisory lock shared by every replica: of two
//! replicas wanting the same new day, one creates it and the other finds it (`IF NOT EXISTS`
//! is race-free only because of that lock). Each store remembers the days it has seen exist; when
//! another replica's retention dropped one meanwhile, the insert fails with "no partition" and
//! the store forgets what it knew and tries once more.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Days, NaiveDate};
use tokio_postgres::Client;

use super::{LOCK_CLASS, StoreError};

/// The advisory lock (within [`LOCK_CLASS`]) partition changes run under.
const PARTITION_LOCK: i32 = 1;

/// The days whose partitions this store has seen exist.
#[derive(Debug, Default)]
pub(super) struct KnownDays(Mutex<HashSet<i32>>);

impl KnownDays {
    fn missing(&self, days: &HashSet<i32>) -> Vec<i32> {
        let known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut missing: Vec<i32> = days.iter().copied().filter(|d| !known.contains(d)).collect();
        missing.sort_unstable();
        missing
    }

    fn learn(&self, day: i32) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(day);
    }

    /// Forget everything (another replica may have dropped a partition).
    pub(super) fn forget(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

/// The partition of `day`: `measurements_p20261202`.
fn name(day: i32) -> String {
    let date = NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|epoch| epoch.checked_add_days(Days::new(u64::try_from(day).unwrap_or(0))))
        .unwrap_or_default();
    format!("measurements_p{}", date.format("%Y%m%d"))
}

/// The day of a partition named by [`name`] (`None`: not one of ours).
fn day_of_name(name: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(name.strip_prefix("measurements_p")?, "%Y%m%d").ok()?;
    let epoch = DateTime::UNIX_EPOCH.date_naive();
    i32::try_from(date.signed_duration_since(epoch).num_days()).ok()
}

/// Make sure every day in `days` has its partition.
pub(super) async fn ensure(client: &mut Client, known: &KnownDays, days: &HashSet<i32>) -> Result<(), StoreError> {
    let missing = known.missing(days);
    if missing.is_empty() {
        return Ok(());
    }
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&LOCK_CLASS, &PARTITION_LOCK]).await?;
    for &day in &missing {
        // Numbers and a name made here, never input: safe to write into the DDL.
        let next = day.saturating_add(1);
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF measurements FOR VALUES FROM ({day}) TO ({next})",
            name(day)
        ))
        .await?;
    }
    tx.commit().await?;
    for day in missing {
        known.learn(day);
    }
    Ok(())
}

/// Drop every partition of a day before `first_kept`; returns how many rows they held.
pub(super) async fn drop_before(client: &mut Client, known: &KnownDays, first_kept: i32) -> Result<u64, StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&LOCK_CLASS, &PARTITION_LOCK]).await?;
    let partitions = tx
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'measurements'::regclass",
            &[],
        )
        .await?;
    let mut dropped = 0u64;
    for row in partitions {
        let partition: String = row.get(0);
        if day_of_name(&partition).is_none_or(|day| day >= first_kept) {
            continue;
        }
        let rows: i64 = tx.query_one(&format!("SELECT COUNT(*) FROM {partition}"), &[]).await?.get(0);
        tx.batch_execute(&format!("DROP TABLE {partition}")).await?;
        dropped += u64::try_from(rows).unwrap_or(0);
    }
    super::blobs::drop_before(&tx, first_kept).await?;
    tx.commit().await?;
    known.forget();
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_name_says_its_day_and_reads_back() {
        let day = crate::store::day_of(DateTime::from_timestamp(1_796_169_600, 0).expect("time")); // 2026-12-02
        assert_eq!(name(day), "measurements_p20261202");
        assert_eq!(day_of_name(&name(day)), Some(day));
        assert_eq!(day_of_name("measurements_default"), None);
        assert_eq!(day_of_name("schema_migrations"), None);
    }
}
