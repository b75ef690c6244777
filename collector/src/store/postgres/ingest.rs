//! Batches into PostgreSQL, several in one transaction (group commit): one binary `COPY` of all
//! their rows into a session-local staging table, then one `INSERT … SELECT … ON CONFLICT DO
//! NOTHING RETURNING id`, then the signing keys' activity in one statement.
//!
//! Why this shape: `COPY` is PostgreSQL's bulk path (one message stream, no per-row statement),
//! and the conflict clause on the primary key `(day, id)` makes the write idempotent across
//! replicas. Two connections inserting the same id at once both reach the unique index; the
//! second waits for the first to commit and then skips the row, so it is stored once and one
//! of them reports it [`Duplicate`](InsertOutcome::Duplicate). The rows `RETURNING` names are
//! the newly stored ones; every other row (stored before, or an earlier copy in the group:
//! `DISTINCT ON (id)` keeps the first by batch, then line) is a duplicate. Each row carries its
//! batch's sender (key, observed location, arrival) through the stage. Sessions run with
//! `synchronous_commit = on`, so the commit is durable (WAL flushed) before the caller answers.

use std::collections::{BTreeMap, HashSet};

use tokio_postgres::Transaction;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::{InsertOutcome, StoreError};
use crate::store::row::StoredRow;

/// The staging table: temporary (this session only, never WAL-logged), emptied at each commit.
const STAGING: &str = "CREATE TEMP TABLE IF NOT EXISTS vantage_staging (
    batch integer NOT NULL, ord integer NOT NULL, day integer NOT NULL, id uuid NOT NULL,
    received_at bigint NOT NULL, started_at bigint NOT NULL, cc text NOT NULL, asn bigint NOT NULL,
    test text NOT NULL, target text NOT NULL, status text NOT NULL, mechanism text,
    skeleton bytea NOT NULL, probe_key text, observed_cc text, observed_asn bigint, collector_key text
) ON COMMIT DELETE ROWS";

const COPY: &str = "COPY vantage_staging (batch, ord, day, id, received_at, started_at, cc, asn, test, target, status,
    mechanism, skeleton, probe_key, observed_cc, observed_asn, collector_key) FROM STDIN (FORMAT binary)";

/// The column types of [`COPY`], in order.
const COPY_TYPES: [Type; 17] = [
    Type::INT4,
    Type::INT4,
    Type::INT4,
    Type::UUID,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
];

const INSERT: &str = "INSERT INTO measurements
        (day, id, received_at, started_at, cc, asn, test, target, status, mechanism, skeleton,
         probe_key, observed_cc, observed_asn, collector_key)
    SELECT DISTINCT ON (id) day, id, received_at, started_at, cc, asn, test, target, status, mechanism, skeleton,
           probe_key, observed_cc, observed_asn, collector_key
    FROM vantage_staging ORDER BY id, batch, ord
    ON CONFLICT (day, id) DO NOTHING
    RETURNING id";

/// The keys' activity, as SQLite's `keys::record_activity`, one row per key: a new UTC day counts
/// once, a clock set back never counts a day twice. In `DO UPDATE`, bare column names are the
/// old row's.
const ACTIVITY: &str = "INSERT INTO probe_keys (key_id, first_received, last_received, last_day, days, measurements)
    SELECT key, received, received, day, 1, inserted FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
        AS moved (key, received, day, inserted)
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
    pub(super) collector_key: Option<&'static str>,
    pub(super) received_at: i64,
}

/// Write `batches` inside `tx` (the caller commits, and has stored the rows' blobs first): one
/// outcome per row, in order, per batch.
pub(super) async fn write_batches(
    tx: &Transaction<'_>,
    batches: &[(&[StoredRow], Sender<'_>)],
) -> Result<Vec<Vec<InsertOutcome>>, StoreError> {
    tx.batch_execute(STAGING).await?;
    let sink = tx.copy_in(COPY).await?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    futures::pin_mut!(writer);
    for (batch, (rows, sender)) in batches.iter().enumerate() {
        let batch = i32::try_from(batch).unwrap_or(i32::MAX);
        for (ord, row) in rows.iter().enumerate() {
            let ord = i32::try_from(ord).unwrap_or(i32::MAX);
            let asn = i64::from(row.asn);
            writer
                .as_mut()
                .write(&[
                    &batch,
                    &ord,
                    &row.day,
                    &row.id,
                    &sender.received_at,
                    &row.started_at,
                    &row.cc,
                    &asn,
                    &row.test,
                    &row.target,
                    &row.status,
                    &row.mechanism,
                    &row.split.skeleton,
                    &sender.probe_key,
                    &sender.observed_cc,
                    &sender.observed_asn,
                    &sender.collector_key,
                ])
                .await?;
        }
    }
    writer.finish().await?;
    let stored = tx.query(INSERT, &[]).await?;
    let mut new: HashSet<Uuid> = stored.iter().map(|r| r.get::<_, Uuid>(0)).collect();
    // The first copy of a new id (by batch, then line) is the inserted one; later copies are
    // duplicates. Per key: how many it stored, and its latest arrival.
    let mut moved: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let mut outcomes = Vec::with_capacity(batches.len());
    for (rows, sender) in batches {
        let batch: Vec<InsertOutcome> =
            rows.iter().map(|row| if new.remove(&row.id) { InsertOutcome::Inserted } else { InsertOutcome::Duplicate }).collect();
        let inserted = batch.iter().filter(|o| **o == InsertOutcome::Inserted).count() as i64;
        if let Some(key) = sender.probe_key
            && inserted > 0
        {
            let entry = moved.entry(key).or_insert((sender.received_at, 0));
            entry.0 = entry.0.max(sender.received_at);
            entry.1 += inserted;
        }
        outcomes.push(batch);
    }
    if !moved.is_empty() {
        // Sorted by key: concurrent groups lock key records in one order.
        let keys: Vec<&str> = moved.keys().copied().collect();
        let received: Vec<i64> = moved.values().map(|(r, _)| *r).collect();
        let days: Vec<i64> = received.iter().map(|r| r.div_euclid(DAY_SECS)).collect();
        let inserted: Vec<i64> = moved.values().map(|(_, n)| *n).collect();
        tx.execute(ACTIVITY, &[&keys, &received, &days, &inserted]).await?;
    }
    Ok(outcomes)
}

/// The days a batch touches.
pub(super) fn days(rows: &[StoredRow]) -> HashSet<i32> {
    rows.iter().map(|r| r.day).collect()
}
