//! The key records in SQL: registration, activity kept in step with ingest, and the installation's
//! registration salt. Plain functions on a connection (or the ingest transaction), run in a
//! blocking thread by the [`SqliteStore`](super::SqliteStore).

use rusqlite::{Connection, OptionalExtension, Row, params};
use vantage_measurement::wire::registration::RegistrationChallenge;

use crate::store::{KeyActivity, StoreError};

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
