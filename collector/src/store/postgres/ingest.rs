//! One batch into PostgreSQL: binary `COPY` into a session-local staging table, then one
//! `INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING id`, the key's activity moved, commit.
//!
//! Why this shape: `COPY` is PostgreSQL's bulk path (one message stream, no per-row statement),
//! and the conflict clause on the primary key `(day, id)` makes the write idempotent across
//! replicas. Two connections inserting the same id at once both reach the unique index; the
//! second waits for the first to commit and then skips the row, so it is stored once and one
//! of them reports it [`Duplicate`](InsertOutcome::Duplicate). The rows `RETURNING` names are
//! the newly stored ones; everything else in the batch (stored before, or earlier in the same
//! batch: `DISTINCT ON (id)` keeps the first) is a duplicate. Sessions run with
//! `synchronous_commit = on`, so the commit is durable (WAL flushed) before this returns.

use std::collections::HashSet;

use tokio_postgres::Transaction;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::{InsertOutcome, StoreError};
use crate::store::row::StoredRow;

/// The staging table: temporary (this session only, never WAL-logged), emptied at each commit.
const STAGING: &str = "CREATE TEMP TABLE IF NOT EXISTS vantage_staging (
    ord integer NOT NULL, day integer NOT NULL, id uuid NOT NULL, started_at bigint NOT NULL,
    cc text NOT NULL, asn bigint NOT NULL, test text NOT NULL, target text NOT NULL,
    status text NOT NULL, mechanism text, skeleton bytea NOT NULL
) ON COMMIT DELETE ROWS";

const COPY: &str = "COPY vantage_staging (ord, day, id, started_at, cc, asn, test, target, status, mechanism, skeleton)
    FROM STDIN (FORMAT binary)";

/// The column types of [`COPY`], in order.
const COPY_TYPES: [Type; 11] = [
    Type::INT4,
    Type::INT4,
    Type::UUID,
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
];

const INSERT: &str = "INSERT INTO measurements
        (day, id, received_at, started_at, cc, asn, test, target, status, mechanism, skeleton,
         probe_key, observed_cc, observed_asn)
    SELECT DISTINCT ON (id) day, id, $1, started_at, cc, asn, test, target, status, mechanism, skeleton, $2, $3, $4
    FROM vantage_staging ORDER BY id, ord
    ON CONFLICT (day, id) DO NOTHING
    RETURNING id";

/// The key's activity, as SQLite's `keys::record_activity`: a new UTC day counts once, a clock
/// set back never counts a day twice. In `DO UPDATE`, bare column names are the old row's.
const ACTIVITY: &str = "INSERT INTO probe_keys (key_id, first_received, last_received, last_day, days, measurements)
    VALUES ($1, $2, $2, $3, 1, $4)
    ON CONFLICT (key_id) DO UPDATE SET
        first_received = COALESCE(probe_keys.first_received, EXCLUDED.first_received),
        last_received  = GREATEST(probe_keys.last_received, EXCLUDED.last_received),
        days           = probe_keys.days
                         + CASE WHEN probe_keys.last_day IS NULL OR EXCLUDED.last_day > probe_keys.last_day THEN 1 ELSE 0 END,
        last_day       = GREATEST(probe_keys.last_day, EXCLUDED.last_day),
        measurements   = probe_keys.measurements + EXCLUDED.measurements";

/// Seconds in a UTC day.
const DAY_SECS: i64 = 86_400;

/// Who sent a batch and when, stored beside each of its rows.
pub(super) struct Sender<'a> {
    pub(super) probe_key: Option<&'a str>,
    pub(super) observed_cc: Option<&'a str>,
    pub(super) observed_asn: Option<i64>,
    pub(super) received_at: i64,
}

/// Write one batch inside `tx` (the caller commits, and has stored the rows' blobs first): one
/// outcome per row, in order.
pub(super) async fn write_batch(
    tx: &Transaction<'_>,
    rows: &[StoredRow],
    sender: &Sender<'_>,
) -> Result<Vec<InsertOutcome>, StoreError> {
    tx.batch_execute(STAGING).await?;
    let sink = tx.copy_in(COPY).await?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    futures::pin_mut!(writer);
    for (ord, row) in rows.iter().enumerate() {
        let ord = i32::try_from(ord).unwrap_or(i32::MAX);
        let asn = i64::from(row.asn);
        writer
            .as_mut()
            .write(&[
                &ord,
                &row.day,
                &row.id,
                &row.started_at,
                &row.cc,
                &asn,
                &row.test,
                &row.target,
                &row.status,
                &row.mechanism,
                &row.split.skeleton,
            ])
            .await?;
    }
    writer.finish().await?;
    let stored = tx.query(INSERT, &[&sender.received_at, &sender.probe_key, &sender.observed_cc, &sender.observed_asn]).await?;
    // Several batches share a transaction (group commit): the next one starts from an empty stage.
    tx.batch_execute("TRUNCATE vantage_staging").await?;
    let mut new: HashSet<Uuid> = stored.iter().map(|r| r.get::<_, Uuid>(0)).collect();
    // The first copy of a new id is the inserted one; later copies in the batch are duplicates.
    let outcomes: Vec<InsertOutcome> =
        rows.iter().map(|row| if new.remove(&row.id) { InsertOutcome::Inserted } else { InsertOutcome::Duplicate }).collect();
    let inserted = i64::try_from(stored.len()).unwrap_or(i64::MAX);
    if let Some(key) = sender.probe_key
        && inserted > 0
    {
        let day = sender.received_at.div_euclid(DAY_SECS);
        tx.execute(ACTIVITY, &[&key, &sender.received_at, &day, &inserted]).await?;
    }
    Ok(outcomes)
}

/// The days a batch touches.
pub(super) fn days(rows: &[StoredRow]) -> HashSet<i32> {
    rows.iter().map(|r| r.day).collect()
}
