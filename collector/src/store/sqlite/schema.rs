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
//! | 4 | `probe_keys` (registration and activity per key, filled from the stored history), `installation` (the registration salt), the fleet index covers the observed location |
//! | 5 | `body` becomes `skeleton`: the canonical line with its large values (certificate chains) stored once in `blobs` by SHA-256 and counted in `blob_refs`, the rest compressed (`store/blobs.rs`, `store/sqlite/blobs.rs`); the mechanism index leaves out rows without one |
//! | 6 | `fleet_snapshot`, `series_admitted`: what replicas share (`shared`) |
//! | 7 | `collector_key`: where the signing key stood at ingest (`NULL` for rows stored before); the research index that answers aggregations from the index alone |
//! | 8 | `publications`: the export's publication log, one signed manifest per closed day, and the arrival-time index a day's export reads by (`publications`) |
//!
//! Steps 1–4 only add (step 4 also swaps one index for a wider one): `ALTER TABLE … ADD COLUMN`
//! does not rewrite the table, so migrating a large store takes as long as building the new
//! indexes and summaries, and collectors of the previous version keep reading what they knew.
//! Step 5 rewrites every row (its body becomes a skeleton), a chunk at a time within the one
//! migration transaction: it takes about as long as reading and writing the file once.

use rusqlite::Connection;

use crate::store::StoreError;

/// The table layout this code writes.
pub const SCHEMA_VERSION: i64 = 8;

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

/// Version 4: keys earn trust. `probe_keys` holds, per signing key, when it was registered
/// (`NULL`: never) and its activity (first and last arrival, the UTC day of the last one, on how
/// many distinct UTC days and how many measurements arrived), kept in step with each ingest.
/// Activity is tracked for unregistered keys too, and filled in here from the stored history, so
/// a probe that registers after its collector was upgraded keeps the record it has earned.
/// `installation` holds this collector's registration salt (made on first use). The fleet index
/// gains the observed location, so the fleet read can leave out contradicted rows from the index
/// alone.
const STEP_V4: &str = "
CREATE TABLE probe_keys (
    key_id         TEXT PRIMARY KEY NOT NULL,
    registered_at  INTEGER,
    first_received INTEGER,
    last_received  INTEGER,
    last_day       INTEGER,
    days           INTEGER NOT NULL DEFAULT 0,
    measurements   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX probe_keys_by_last_received ON probe_keys (last_received);
INSERT INTO probe_keys (key_id, first_received, last_received, last_day, days, measurements)
    SELECT probe_key, MIN(received_at), MAX(received_at), MAX(received_at) / 86400,
           COUNT(DISTINCT received_at / 86400), COUNT(*)
    FROM measurements WHERE probe_key IS NOT NULL GROUP BY probe_key;
CREATE TABLE installation (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;
DROP INDEX measurements_fleet_received;
CREATE INDEX measurements_fleet_received ON measurements (received_at, cc, asn, probe_key, observed_asn, observed_cc)
    WHERE probe_key IS NOT NULL;
";

/// Version 5: large repeated values stored once (`store/sqlite/blobs.rs` explains the reference
/// counts). The rows themselves are converted by `blobs::convert_bodies` after this SQL.
const STEP_V5: &str = "
ALTER TABLE measurements RENAME COLUMN body TO skeleton;
CREATE TABLE blobs (
    hash  BLOB PRIMARY KEY NOT NULL,
    bytes BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE blob_refs (
    hash BLOB PRIMARY KEY NOT NULL,
    refs INTEGER NOT NULL
) WITHOUT ROWID;
-- `ok` rows have no mechanism: a query by mechanism (which implies NOT NULL) needs no entry for them
DROP INDEX measurements_by_mechanism;
CREATE INDEX measurements_by_mechanism ON measurements (mechanism, started_at) WHERE mechanism IS NOT NULL;
";

/// Version 6: the latest published fleet snapshot and the series budget's admitted combinations,
/// the tables replicas share (`super::shared`).
const STEP_V6: &str = super::shared::LAYOUT;

/// Version 7 (researchers): the signer's standing before its batch (`crate::store::CollectorKey`;
/// `NULL` for rows stored earlier: not known), and an index holding every column an aggregation
/// groups, filters or counts by, so `GROUP BY` over a million rows reads the index alone and
/// never the rows' skeletons.
const STEP_V7: &str = "
ALTER TABLE measurements ADD COLUMN collector_key TEXT;
CREATE INDEX measurements_research ON measurements
    (started_at, cc, asn, target, test, status, mechanism, probe_key, collector_key, observed_cc, observed_asn);
";

/// Version 8: the publication log (`super::publications`).
const STEP_V8: &str = super::publications::LAYOUT;

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
    if version < 4 {
        tx.execute_batch(STEP_V4)?;
    }
    if version < 5 {
        tx.execute_batch(STEP_V5)?;
        super::blobs::convert_bodies(&tx)?;
    }
    if version < 6 {
        tx.execute_batch(STEP_V6)?;
    }
    if version < 7 {
        tx.execute_batch(STEP_V7)?;
    }
    if version < 8 {
        tx.execute_batch(STEP_V8)?;
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
        store
            .insert_batch(std::slice::from_ref(&new), Some(&key), None, chrono::Utc::now())
            .await
            .expect("insert after migration");
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

    #[tokio::test]
    async fn a_version_3_store_gets_key_records_from_its_history() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = vantage_measurement::wire::ProbeKey::from_seed(&[3; 32]).key_id();
        {
            let conn = Connection::open(dir.path().join(FILE_NAME)).expect("open");
            conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)).expect("wal");
            conn.execute_batch(&[LAYOUT_V1, STEP_V2, STEP_V3].concat()).expect("v3 layout");
            conn.pragma_update(None, "user_version", 3).expect("version");
            let day = 1_700_006_400; // 00:00 UTC
            // Signed rows on days 0, 0, 2 and 5; one anonymous row.
            for (received_at, signer) in [
                (day + 5, Some(key.as_str())),
                (day + 900, Some(key.as_str())),
                (day + 2 * 86_400, Some(key.as_str())),
                (day + 5 * 86_400 + 7, Some(key.as_str())),
                (day, None),
            ] {
                let m = example::tls_reset(chrono::Utc::now());
                conn.execute(
                    "INSERT INTO measurements (id, received_at, started_at, cc, asn, test, target, status, mechanism, body, probe_key)
                     VALUES (?1, ?2, ?3, 'ZZ', 0, 'tls', 'example', 'blocked', 'tls.reset_after_clienthello', ?4, ?5)",
                    rusqlite::params![m.id.hyphenated().to_string(), received_at, m.started_at.timestamp(), m.to_json_line().expect("line"), signer],
                )
                .expect("v3 row");
            }
        }
        let store = SqliteStore::open(dir.path()).await.expect("open migrates");
        let record = store.key_activity(&key).await.expect("read").expect("backfilled");
        assert_eq!(
            record,
            crate::store::KeyActivity {
                key: key.as_str().to_string(),
                registered_at: None,
                first_received: Some(1_700_006_405),
                last_received: Some(1_700_006_400 + 5 * 86_400 + 7),
                days: 3,
                measurements: 4,
            },
            "unregistered, with the history it earned"
        );
        assert_eq!(store.count().await.expect("count"), 5);
        let salt = store.registration_salt().await.expect("salt");
        store.close().await.expect("close");

        let conn = Connection::open(dir.path().join(FILE_NAME)).expect("inspect");
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        let index: String = conn
            .query_row("SELECT sql FROM sqlite_master WHERE name = 'measurements_fleet_received'", [], |r| r.get(0))
            .expect("fleet index");
        assert!(index.contains("observed_asn") && index.contains("observed_cc"), "{index}");
        let stored_salt: String = conn.query_row("SELECT value FROM installation", [], |r| r.get(0)).expect("salt row");
        assert_eq!(stored_salt, salt);
    }

    #[tokio::test]
    async fn a_version_4_store_is_converted_to_skeletons_and_returns_identical_rows() {
        use crate::store::sqlite::blobs::{CONVERT_CHUNK, tests::fleet, tests::layout_4_line};
        use vantage_measurement::wire::ObservedLocation;
        let dir = tempfile::tempdir().expect("tempdir");
        // More rows than one conversion chunk; every other one with an observed location.
        let rows = fleet(0..u64::try_from(CONVERT_CHUNK).expect("positive") + 7);
        let observed = ObservedLocation { cc: Some("DE".into()), asn: Some(3320) };
        let observed_of = |i: usize| i.is_multiple_of(2).then_some(&observed);
        {
            let conn = Connection::open(dir.path().join(FILE_NAME)).expect("open");
            conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)).expect("wal");
            conn.execute_batch(&[LAYOUT_V1, STEP_V2, STEP_V3, STEP_V4].concat()).expect("v4 layout");
            conn.pragma_update(None, "user_version", 4).expect("version");
            for (i, m) in rows.iter().enumerate() {
                let seen = observed_of(i);
                conn.execute(
                    "INSERT INTO measurements (id, received_at, started_at, cc, asn, test, target, status, mechanism, body, observed_cc, observed_asn)
                     VALUES (?1, 1750000000, ?2, ?3, ?4, 'tls', ?5, ?6, ?7, ?8, ?9, ?10)",
                    rusqlite::params![
                        m.id.hyphenated().to_string(),
                        m.started_at.timestamp(),
                        m.probe.cc,
                        m.probe.asn,
                        m.target.name,
                        m.verdict.status.as_str(),
                        m.verdict.mechanism.map(|x| x.as_str()),
                        m.to_json_line().expect("line"),
                        seen.and_then(|o| o.cc.clone()),
                        seen.and_then(|o| o.asn),
                    ],
                )
                .expect("v4 row");
            }
        }
        let store = SqliteStore::open(dir.path()).await.expect("open migrates");
        let mut got = Vec::new();
        let mut rx = store.query(&Filter::default(), rows.len() + 1).await.expect("query");
        while let Some(line) = rx.recv().await {
            got.push(line.expect("row"));
        }
        let expected: Vec<String> = rows.iter().enumerate().map(|(i, m)| layout_4_line(m, observed_of(i))).collect();
        assert!(got == expected, "rows differ after the conversion");
        store.close().await.expect("close");

        let conn = Connection::open(dir.path().join(FILE_NAME)).expect("inspect");
        let (version, texts, blobs): (i64, i64, i64) = conn
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version),
                        (SELECT COUNT(*) FROM measurements WHERE typeof(skeleton) != 'blob'),
                        (SELECT COUNT(*) FROM blobs)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("inspect");
        assert_eq!((version, texts), (SCHEMA_VERSION, 0), "every row converted");
        assert!(blobs > 0 && blobs < 400, "chains stored once: {blobs}");
    }

    #[test]
    fn every_filter_the_api_offers_is_answered_from_an_index() {
        use crate::store::sqlite::select_statement;
        use vantage_measurement::{Mechanism, Status, TestKind};
        let mut conn = Connection::open_in_memory().expect("memory");
        migrate(&mut conn, "memory").expect("migrate");
        let t = chrono::DateTime::from_timestamp(1_750_000_000, 0);
        let filters = [
            Filter::default(),
            Filter { since: t, ..Filter::default() },
            Filter { until: t, ..Filter::default() },
            Filter { country: Some("DE".into()), ..Filter::default() },
            Filter { asn: Some(3320), ..Filter::default() },
            Filter { target: Some("wikipedia".into()), ..Filter::default() },
            Filter { verdict: Some(Status::Blocked), ..Filter::default() },
            Filter { mechanism: Some(Mechanism::TlsResetAfterClientHello), ..Filter::default() },
            Filter { test: Some(TestKind::Tls), country: Some("DE".into()), ..Filter::default() },
        ];
        for filter in &filters {
            let (sql, values) = select_statement(filter, 10);
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("explain")
                .query_map(rusqlite::params_from_iter(values), |r| r.get::<_, String>(3))
                .expect("plan")
                .map(|p| p.expect("step"))
                .collect();
            assert!(plan.iter().any(|step| step.contains("USING INDEX")), "{filter:?}: {plan:?}");
            // Ties within one second may be sorted ("FOR LAST TERM OF ORDER BY"), never the whole result.
            assert!(!plan.iter().any(|step| step == "USE TEMP B-TREE FOR ORDER BY"), "{filter:?} sorts: {plan:?}");
        }
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
        assert!(err.to_string().contains(&format!("future.sqlite3 has table layout {}", SCHEMA_VERSION + 1)), "{err}");
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
