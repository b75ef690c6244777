//! The key records in SQL: registration, activity kept in step with ingest, and the installation's
//! registration salt. Plain functions on a connection (or the ingest transaction), run in a
//! blocking thread by the [`SqliteStore`](super::SqliteStore).

use rusqlite::{Connection, OptionalExtension, Row, params};
use vantage_measurement::wire::registration::RegistrationChallenge;

use super::{KeyActivity, StoreError};

/// Seconds in a UTC day: `received_at / DAY` is the day number (Unix time has no leap seconds).
const DAY: i64 = 86_400;

/// The `installation` row holding the salt.
const SALT_NAME: &str = "registration_salt";

/// Count `inserted` new measurements of `key`, received at `received_at`, inside the ingest
/// transaction. A new UTC day counts once; a clock set back never counts a day twice.
pub(crate) fn record_activity(conn: &Connection, key: &str, received_at: i64, inserted: usize) -> Result<(), StoreError> {
    let inserted = i64::try_from(inserted).unwrap_or(i64::MAX);
    // In an upsert's SET, column names are the old row's values.
    conn.prepare_cached(
        "INSERT INTO probe_keys (key_id, first_received, last_received, last_day, days, measurements)
         VALUES (?1, ?2, ?2, ?3, 1, ?4)
         ON CONFLICT (key_id) DO UPDATE SET
             first_received = COALESCE(first_received, excluded.first_received),
             last_received  = MAX(COALESCE(last_received, excluded.last_received), excluded.last_received),
             days           = days + (last_day IS NULL OR excluded.last_day > last_day),
             last_day       = MAX(COALESCE(last_day, excluded.last_day), excluded.last_day),
             measurements   = measurements + excluded.measurements",
    )?
    .execute(params![key, received_at, received_at.div_euclid(DAY), inserted])?;
    Ok(())
}

/// Register `key` at `at`; `true` if it was not registered before.
pub(crate) fn register(conn: &Connection, key: &str, at: i64) -> Result<bool, StoreError> {
    let changed = conn.execute(
        "INSERT INTO probe_keys (key_id, registered_at) VALUES (?1, ?2)
         ON CONFLICT (key_id) DO UPDATE SET registered_at = excluded.registered_at WHERE registered_at IS NULL",
        params![key, at],
    )?;
    Ok(changed == 1)
}

const COLUMNS: &str = "key_id, registered_at, first_received, last_received, days, measurements";

fn read(row: &Row<'_>) -> rusqlite::Result<KeyActivity> {
    Ok(KeyActivity {
        key: row.get(0)?,
        registered_at: row.get(1)?,
        first_received: row.get(2)?,
        last_received: row.get(3)?,
        days: u32::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
        measurements: u64::try_from(row.get::<_, i64>(5)?).unwrap_or(0),
    })
}

/// The record of `key`, if any.
pub(crate) fn activity(conn: &Connection, key: &str) -> Result<Option<KeyActivity>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM probe_keys WHERE key_id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row(params![key], read).optional()?)
}

/// The records of the keys whose latest measurement arrived at or after `since`.
pub(crate) fn active(conn: &Connection, since: i64) -> Result<Vec<KeyActivity>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM probe_keys WHERE last_received >= ?1 ORDER BY key_id");
    let rows = conn.prepare_cached(&sql)?.query_map(params![since], read)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The installation's salt, made on first use. `INSERT OR IGNORE` then read: two replicas
/// starting at once end up with the same one.
pub(crate) fn salt(conn: &Connection) -> Result<String, StoreError> {
    conn.execute(
        "INSERT OR IGNORE INTO installation (name, value) VALUES (?1, ?2)",
        params![SALT_NAME, RegistrationChallenge::random_salt()],
    )?;
    Ok(conn.query_row("SELECT value FROM installation WHERE name = ?1", params![SALT_NAME], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use vantage_measurement::example;
    use vantage_measurement::wire::{KeyId, ProbeKey};

    use crate::store::{KeyActivity, SqliteStore, Store};

    fn key(n: u8) -> KeyId {
        ProbeKey::from_seed(&[n; 32]).key_id()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("time")
    }

    #[tokio::test]
    async fn activity_counts_new_measurements_and_distinct_days_and_survives_registration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let a = key(1);
        let day0 = 1_700_006_400; // 00:00 UTC
        let batch = |n: usize, t: i64| (0..n).map(|_| example::tls_reset(at(t))).collect::<Vec<_>>();

        assert_eq!(store.key_activity(&a).await.expect("read"), None);
        store.insert_batch(&batch(3, day0), Some(&a), None, at(day0 + 10)).await.expect("insert");
        let same_day = batch(2, day0);
        store.insert_batch(&same_day, Some(&a), None, at(day0 + 80_000)).await.expect("same day");
        // Only duplicates: nothing new, no activity.
        store.insert_batch(&same_day, Some(&a), None, at(day0 + 3 * 86_400)).await.expect("duplicates");
        store.insert_batch(&batch(1, day0), Some(&a), None, at(day0 + 86_400)).await.expect("next day");
        // A clock set back a day adds measurements but no day.
        store.insert_batch(&batch(1, day0), Some(&a), None, at(day0 + 100)).await.expect("clock back");
        // Anonymous batches belong to no key.
        store.insert_batch(&batch(4, day0), None, None, at(day0 + 5 * 86_400)).await.expect("anonymous");

        let expected = KeyActivity {
            key: a.as_str().to_string(),
            registered_at: None,
            first_received: Some(day0 + 10),
            last_received: Some(day0 + 86_400),
            days: 2,
            measurements: 7,
        };
        assert_eq!(store.key_activity(&a).await.expect("read"), Some(expected.clone()));

        assert!(store.register_key(&a, at(day0 + 90_000)).await.expect("register"), "new");
        assert!(!store.register_key(&a, at(day0 + 99_000)).await.expect("again"), "already registered");
        let registered = KeyActivity { registered_at: Some(day0 + 90_000), ..expected };
        assert_eq!(store.key_activity(&a).await.expect("read"), Some(registered.clone()));

        // Registered before any measurement: no activity yet, and not among the active keys.
        let b = key(2);
        assert!(store.register_key(&b, at(day0)).await.expect("register b"));
        assert_eq!(store.active_keys(at(0)).await.expect("active"), vec![registered.clone()]);
        assert_eq!(store.active_keys(at(day0 + 86_401)).await.expect("active"), vec![]);

        // A volunteer's deletion request takes the record with the measurements.
        store.delete_probe(&a).await.expect("delete");
        assert_eq!(store.key_activity(&a).await.expect("read"), None);
    }

    #[tokio::test]
    async fn the_salt_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let salt = store.registration_salt().await.expect("salt");
        assert_eq!(store.registration_salt().await.expect("again"), salt);
        store.close().await.expect("close");
        let reopened = SqliteStore::open(dir.path()).await.expect("reopen");
        assert_eq!(reopened.registration_salt().await.expect("after restart"), salt);
        let other = tempfile::tempdir().expect("tempdir");
        let elsewhere = SqliteStore::open(other.path()).await.expect("open");
        assert_ne!(elsewhere.registration_salt().await.expect("salt"), salt, "per installation");
    }
}
