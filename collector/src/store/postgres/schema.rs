//! The PostgreSQL table layout and its migrations.
//!
//! `schema_migrations` holds one row per applied step. Opening runs the missing steps in one
//! transaction that first takes a transaction-level advisory lock, so several replicas starting
//! at once queue behind each other: the first migrates, the others find the work done. A crash
//! mid-migration rolls everything back (PostgreSQL's DDL is transactional). A database whose
//! layout is newer than this code knows is refused, as SQLite's is.
//!
//! | version | change |
//! |---|---|
//! | 1 | `measurements` partitioned by the UUIDv7 day (`day`, part of the primary key), the query indexes, `probe_keys`, `installation` |
//! | 2 | the fleet indexes (partial: only signed rows) and the arrival-time index |
//! | 3 | `fleet_snapshot`, `series_admitted`: what replicas share |
//! | 4 | `skeleton` beside `body`: new rows keep their large values (certificate chains) once in `blobs` by SHA-256 (`store/blobs.rs`); rows written before keep their body |
//! | 3 | `fleet_snapshot`, `series_admitted`: what replicas share (`shared`) |
//! | 5 | `collector_key`: where the signing key stood at ingest (`NULL` for rows stored before); the research index (aggregations from the index alone) |
//! | 6 | `publications`: the export's publication log, one signed manifest per closed day (`publications`) |

use tokio_postgres::Client;

use super::{LOCK_CLASS, StoreError};

/// The table layout this code writes.
pub const SCHEMA_VERSION: i32 = 6;

/// The advisory lock (within [`LOCK_CLASS`]) migrations run under.
const MIGRATION_LOCK: i32 = 0;

/// Version 1. `day` is computed in Rust from the id (days since 1970-01-01 of the UUIDv7 time),
/// so the primary key `(day, id)` is unique per id across all partitions: the same id always
/// falls on the same day. Integers are `bigint` where SQLite's are (an ASN is a `u32`).
const LAYOUT_V1: &str = "
CREATE TABLE measurements (
    day          integer NOT NULL,
    id           uuid    NOT NULL,
    received_at  bigint  NOT NULL,
    started_at   bigint  NOT NULL,
    cc           text    NOT NULL,
    asn          bigint  NOT NULL,
    test         text    NOT NULL,
    target       text    NOT NULL,
    status       text    NOT NULL,
    mechanism    text,
    body         text    NOT NULL,
    probe_key    text,
    observed_cc  text,
    observed_asn bigint,
    PRIMARY KEY (day, id)
) PARTITION BY RANGE (day);
CREATE INDEX measurements_by_time      ON measurements (started_at, id);
CREATE INDEX measurements_by_cc        ON measurements (cc, started_at);
CREATE INDEX measurements_by_asn       ON measurements (asn, started_at);
CREATE INDEX measurements_by_target    ON measurements (target, started_at);
CREATE INDEX measurements_by_status    ON measurements (status, started_at);
CREATE INDEX measurements_by_mechanism ON measurements (mechanism, started_at);
CREATE TABLE probe_keys (
    key_id         text PRIMARY KEY,
    registered_at  bigint,
    first_received bigint,
    last_received  bigint,
    last_day       bigint,
    days           integer NOT NULL DEFAULT 0,
    measurements   bigint  NOT NULL DEFAULT 0
);
CREATE INDEX probe_keys_by_last_received ON probe_keys (last_received);
CREATE TABLE installation (
    name  text PRIMARY KEY,
    value text NOT NULL
);
";

/// Version 2: the fleet reads answered from indexes (as SQLite's layout 4), and the collector's
/// last arrival (`MAX(received_at)`) from an index instead of a scan. An index on the partitioned
/// table is made on every partition, present and future.
const STEP_V2: &str = "
CREATE INDEX measurements_fleet_received ON measurements (received_at, cc, asn, probe_key, observed_asn, observed_cc)
    WHERE probe_key IS NOT NULL;
CREATE INDEX measurements_by_probe ON measurements (probe_key, target, test, status, started_at)
    WHERE probe_key IS NOT NULL;
CREATE INDEX measurements_by_received ON measurements (received_at);
";

/// Version 3 (replicas): the shared fleet snapshot and the series budget's admissions.
const STEP_REPLICAS_SHARED: &str = super::shared::LAYOUT;

/// Version 4: the lean layout. A new row holds its skeleton (`body` NULL); each blob is stored once,
/// with the latest day of a row that references it, so retention can drop the blobs of dropped
/// partitions without counting references (`super::blobs`). Rows written before keep `body`
/// and read as before: no rewrite of existing partitions.
const STEP_V4: &str = "
ALTER TABLE measurements ALTER COLUMN body DROP NOT NULL;
ALTER TABLE measurements ADD COLUMN skeleton bytea;
CREATE TABLE blobs (
    hash     bytea   PRIMARY KEY,
    bytes    bytea   NOT NULL,
    last_day integer NOT NULL
);
CREATE INDEX blobs_by_last_day ON blobs (last_day);
";

/// Version 5 (researchers): the signer's standing before its batch (`NULL` for rows stored
/// earlier: not known; adding a nullable column rewrites nothing), and an index holding every
/// column an aggregation groups, filters or counts by, for index-only scans.
const STEP_V5: &str = "
ALTER TABLE measurements ADD COLUMN collector_key text;
CREATE INDEX measurements_research ON measurements
    (started_at, cc, asn, target, test, status, mechanism, probe_key, collector_key, observed_cc, observed_asn);
";

/// Version 6: the publication log (`super::publications`).
const STEP_V6: &str = super::publications::LAYOUT;

/// Every step, in order: `(version it brings the database to, SQL)`.
const STEPS: [(i32, &str); 6] =
    [(1, LAYOUT_V1), (2, STEP_V2), (3, STEP_REPLICAS_SHARED), (4, STEP_V4), (5, STEP_V5), (6, STEP_V6)];

/// Bring the database to `target` (normally [`SCHEMA_VERSION`]; tests build older layouts).
/// `shown` names it (without password) in errors.
pub(crate) async fn migrate(client: &mut Client, shown: &str, target: i32) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&LOCK_CLASS, &MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let version: i32 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).await?.get(0);
    if version > SCHEMA_VERSION {
        return Err(StoreError::Incompatible(format!(
            "{shown} has table layout {version}; this collector knows layouts up to {SCHEMA_VERSION}"
        )));
    }
    for (step, sql) in STEPS.iter().filter(|(step, _)| *step > version && *step <= target) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[step]).await?;
    }
    tx.commit().await?;
    if version > 0 && version < target {
        tracing::info!(from = version, to = target, "store table layout migrated");
    }
    Ok(())
}
