//! The SQLite table layout and how an older file is brought up to date.
//!
//! `PRAGMA user_version` records the layout a file has. Opening runs every migration step above
//! it, in one transaction with the version bump, so a crash mid-migration leaves the old layout
//! and the old version, never a half-migrated file. A file newer than this code is refused.
//!
//! | version | change |
//! |---|---|
//! | 1 | `measurements` with the indexed columns and the canonical body |
//! | 2 | `probe_key` (the signer's key id, `NULL` for anonymous batches) and the fleet indexes |
//! | 3 | `observed_cc`, `observed_asn`: where the collector's GeoIP databases placed the submitter |
//!
//! Steps only add: `ALTER TABLE … ADD COLUMN` does not rewrite the table, so migrating a large
//! store takes as long as building the new indexes, and collectors of the previous version keep
//! reading what they knew.

use rusqlite::Connection;

use super::StoreError;

/// The table layout this code writes.
pub const SCHEMA_VERSION: i64 = 3;

/// Version 1, as first shipped. Kept verbatim: it is the first migration step.
pub(crate) const LAYOUT_V1: &str = "
CREATE TABLE IF NOT EXISTS measurements (
    id          TEXT PRIMARY KEY NOT NULL,
    received_at INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    cc          TEXT NOT NULL,
    asn         INTEGER NOT NULL,
    test        TEXT NOT NULL,
    target      TEXT NOT NULL,
    status      TEXT NOT NULL,
    mechanism   TEXT,
    body        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS measurements_by_time      ON measurements (started_at, id);
CREATE INDEX IF NOT EXISTS measurements_by_cc        ON measurements (cc, started_at);
CREATE INDEX IF NOT EXISTS measurements_by_asn       ON measurements (asn, started_at);
CREATE INDEX IF NOT EXISTS measurements_by_target    ON measurements (target, started_at);
CREATE INDEX IF NOT EXISTS measurements_by_status    ON measurements (status, started_at);
CREATE INDEX IF NOT EXISTS measurements_by_mechanism ON measurements (mechanism, started_at);
";

/// Version 2: who signed (as a key id), and indexes for the fleet gauges. Both indexes are partial:
/// anonymous rows never count as probes, so they need no entries.
const STEP_V2: &str = "
ALTER TABLE measurements ADD COLUMN probe_key TEXT;
-- distinct probes per country / per (country, ASN) by arrival time: answered from the index alone
CREATE INDEX measurements_fleet_received ON measurements (received_at, cc, asn, probe_key)
    WHERE probe_key IS NOT NULL;
-- one probe's history of one (target, test): the latest verdict and the start of a blocking streak
CREATE INDEX measurements_by_probe ON measurements (probe_key, target, test, status, started_at)
    WHERE probe_key IS NOT NULL;
";

/// Version 3: the collector-observed location (`NULL`: no database, or the address was in none).
/// Never the address itself.
const STEP_V3: &str = "
ALTER TABLE measurements ADD COLUMN observed_cc TEXT;
ALTER TABLE measurements ADD COLUMN observed_asn INTEGER;
";

/// Bring the file to [`SCHEMA_VERSION`], creating it if empty. `shown` names it in errors.
pub(crate) fn migrate(conn: &mut Connection, shown: &str) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Incompatible(format!(
            "{shown} has table layout {version}; this collector knows layouts up to {SCHEMA_VERSION}"
        )));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction()?;
    if version < 1 {
        tx.execute_batch(LAYOUT_V1)?;
    }
    if version < 2 {
        tx.execute_batch(STEP_V2)?;
    }
    if version < 3 {
        tx.execute_batch(STEP_V3)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    if version > 0 {
        tracing::info!(from = version, to = SCHEMA_VERSION, "store table layout migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Filter, SqliteStore, Store, sqlite::FILE_NAME};
    use vantage_measurement::example;

    fn columns(conn: &Connection) -> Vec<String> {
        let mut statement = conn.prepare("SELECT name FROM pragma_table_info('measurements')").expect("prepare");
        statement.query_map([], |r| r.get(0)).expect("query").map(|c| c.expect("column")).collect()
    }

    /// A data directory as a version-1 collector left it, holding `m`.
    fn version_1_store(dir: &std::path::Path, m: &vantage_measurement::Measurement) {
        let conn = Connection::open(dir.join(FILE_NAME)).expect("open");
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)).expect("wal");
        conn.execute_batch(LAYOUT_V1).expect("v1 layout");
        conn.pragma_update(None, "user_version", 1).expect("version");
        conn.execute(
            "INSERT INTO measurements (id, received_at, started_at, cc, asn, test, target, status, mechanism, body)
             VALUES (?1, 1700000000, ?2, 'ZZ', 0, 'tls', 'example', 'blocked', 'tls.reset_after_clienthello', ?3)",
            rusqlite::params![m.id.hyphenated().to_string(), m.started_at.timestamp(), m.to_json_line().expect("serialise")],
        )
        .expect("v1 row");
    }

    #[tokio::test]
    async fn a_version_1_store_is_migrated_and_keeps_its_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = example::tls_reset(chrono::Utc::now());
        version_1_store(dir.path(), &old);

        let store = SqliteStore::open(dir.path()).await.expect("open migrates");
        let mut rows = store.query(&Filter::default(), 10).await.expect("query");
        let line = rows.recv().await.expect("a row").expect("readable");
        assert_eq!(serde_json::from_str::<vantage_measurement::Measurement>(&line).expect("parses"), old);
        // Old rows are anonymous; new ones can carry a key.
        let key = vantage_measurement::wire::ProbeKey::from_seed(&[3; 32]).key_id();
        let new = example::tls_reset(chrono::Utc::now());
        store.insert_batch(std::slice::from_ref(&new), Some(&key), None).await.expect("insert after migration");
        store.close().await.expect("close");

        let conn = Connection::open(dir.path().join(FILE_NAME)).expect("inspect");
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        for column in ["probe_key", "observed_cc", "observed_asn"] {
            assert!(columns(&conn).contains(&column.to_string()), "{column}");
        }
        let keys: Vec<Option<String>> = conn
            .prepare("SELECT probe_key FROM measurements ORDER BY id")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .map(|k| k.expect("key"))
            .collect();
        assert_eq!(keys, vec![None, Some(key.as_str().to_string())]);
        drop(conn);

        // Opening again is a no-op, not a second ALTER.
        let again = SqliteStore::open(dir.path()).await.expect("reopen");
        assert_eq!(again.count().await.expect("count"), 2);
    }

    #[test]
    fn a_fresh_file_gets_the_current_layout_in_one_step() {
        let mut conn = Connection::open_in_memory().expect("memory");
        migrate(&mut conn, "memory").expect("migrate");
        assert!(columns(&conn).contains(&"probe_key".to_string()));
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_layout_is_refused_untouched() {
        let mut conn = Connection::open_in_memory().expect("memory");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).expect("version");
        let err = migrate(&mut conn, "future.sqlite3").expect_err("newer");
        assert!(err.to_string().contains("future.sqlite3 has table layout 4"), "{err}");
        assert!(columns(&conn).is_empty(), "nothing was created");
    }

    #[test]
    fn a_failed_step_leaves_the_old_version() {
        // A v1 file whose table already has a probe_key column cannot take step 2: the ALTER
        // fails, and the transaction leaves version 1 and no half-built index.
        let mut conn = Connection::open_in_memory().expect("memory");
        conn.execute_batch(LAYOUT_V1).expect("v1");
        conn.execute_batch("ALTER TABLE measurements ADD COLUMN probe_key TEXT").expect("odd column");
        conn.pragma_update(None, "user_version", 1).expect("version");
        assert!(migrate(&mut conn, "odd").is_err());
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, 1);
        let fleet_index: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'measurements_by_probe'", [], |r| r.get(0))
            .expect("index lookup");
        assert_eq!(fleet_index, 0);
    }
}
