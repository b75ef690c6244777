//! The embedded store: one SQLite file, `<data-dir>/vantage.sqlite3`.
//!
//! Durability: WAL journal with `synchronous=FULL`, so a committed batch survives a power cut, not
//! just a crash of this process. That costs an fsync per batch, which is why probes send batches.
//!
//! Concurrency: rusqlite is blocking, so every statement runs in `spawn_blocking`. One writer
//! connection sits behind a mutex (SQLite has one writer anyway). Ingest batches waiting for it
//! are committed together, many in one transaction and one fsync (group commit, `group.rs`). Each query opens its own
//! read-only connection: under WAL readers never wait for the writer, so a long export does not
//! stall ingest. A semaphore bounds the queries running at once, because each one holds a
//! blocking thread for as long as its client takes to read.

mod aggregate;
mod blobs;
mod fleet;
mod group;
mod keys;
mod publications;
pub mod schema;
mod shared;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params, params_from_iter};
use tokio::sync::{Semaphore, mpsc, oneshot};
use vantage_measurement::Measurement;
use vantage_measurement::wire::{KeyId, ObservedLocation};

use super::row::StoredRow;
use super::{
    AdmittedSeries, AggregateRow, Aggregation, DayRows, Duty, Filter, FleetRows, FleetSnapshot, InsertOutcome, KeyActivity,
    Position, Publication, RowReceiver, SeriesClaim, Store, StoreError, StreakKey, Submission, annotate,
};
use group::{Batch, GroupCommit};
pub use group::{CommitCounts, MAX_GROUP_BYTES, MAX_GROUP_ROWS};

/// The database file inside the data directory.
pub const FILE_NAME: &str = "vantage.sqlite3";
/// Queries streaming at once; beyond this a query is refused with [`StoreError::Busy`].
pub const MAX_CONCURRENT_QUERIES: usize = 8;
/// Rows buffered between the database thread and the HTTP response.
const QUERY_CHANNEL_ROWS: usize = 64;
/// Rows [`Store::retain`] deletes per transaction.
const RETAIN_CHUNK_ROWS: u64 = 10_000;
/// How long a statement waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The SQLite [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    /// `None` once closed.
    writer: Arc<Mutex<Option<Connection>>>,
    /// Ingest batches waiting for the writer, committed in groups.
    group: Arc<GroupCommit>,
    closed: Arc<AtomicBool>,
    queries: Arc<Semaphore>,
}

impl SqliteStore {
    /// Open (creating if needed) the store in `data_dir`.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let data_dir = data_dir.to_path_buf();
        let (path, writer) = blocking(move || open_writer(&data_dir)).await?;
        Ok(SqliteStore {
            path,
            writer: Arc::new(Mutex::new(Some(writer))),
            group: Arc::default(),
            closed: Arc::new(AtomicBool::new(false)),
            queries: Arc::new(Semaphore::new(MAX_CONCURRENT_QUERIES)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ingest transactions committed, and the batches they held, since the store opened: with
    /// many small batches at once, far fewer transactions than batches.
    pub fn commit_counts(&self) -> CommitCounts {
        self.group.counts()
    }

    /// Run `f` on the writer connection in a blocking thread.
    async fn with_writer<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let writer = Arc::clone(&self.writer);
        blocking(move || {
            // A panic inside a statement leaves no open transaction behind (rusqlite rolls back
            // on drop), so the connection is still sound: recover from poisoning.
            let mut guard = writer.lock().unwrap_or_else(PoisonError::into_inner);
            let conn = guard.as_mut().ok_or(StoreError::Closed)?;
            f(conn)
        })
        .await
    }

    /// Stream the rows of `sql` from a reader of their own (a query permit held meanwhile).
    async fn stream(&self, sql: String, values: Vec<Value>) -> Result<RowReceiver, StoreError> {
        self.ensure_open()?;
        let permit = Arc::clone(&self.queries).try_acquire_owned().map_err(|_| StoreError::Busy)?;
        let path = self.path.clone();
        let (rows_tx, rows_rx) = mpsc::channel(QUERY_CHANNEL_ROWS);
        let (started_tx, started_rx) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            stream_rows(&path, &sql, values, started_tx, &rows_tx);
        });
        match started_rx.await {
            Ok(Ok(())) => Ok(rows_rx),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Task("the query thread ended before it ran".into())),
        }
    }

    fn ensure_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) { Err(StoreError::Closed) } else { Ok(()) }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert(&self, batch: &[Measurement], submission: &Submission<'_>) -> Result<Vec<InsertOutcome>, StoreError> {
        self.ensure_open()?;
        let batch = Batch {
            rows: StoredRow::all(batch)?,
            probe_key: submission.probe.map(|k| k.as_str().to_string()),
            observed_cc: submission.observed.and_then(|o| o.cc.clone()),
            observed_asn: submission.observed.and_then(|o| o.asn),
            collector_key: submission.standing.map(super::CollectorKey::as_str),
            received_at: submission.received_at.timestamp(),
        };
        group::insert(&self.group, &self.writer, batch).await
    }

    async fn delete_probe(&self, probe: &KeyId) -> Result<u64, StoreError> {
        let probe_key = probe.as_str().to_string();
        self.with_writer(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let deleted = blobs::delete_measurements(&tx, "probe_key = ?1", params![probe_key])?;
            tx.execute("DELETE FROM probe_keys WHERE key_id = ?1", params![probe_key])?;
            tx.commit()?;
            Ok(deleted)
        })
        .await
    }

    async fn register_key(&self, probe: &KeyId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let probe_key = probe.as_str().to_string();
        self.with_writer(move |conn| keys::register(conn, &probe_key, at.timestamp())).await
    }

    async fn key_activity(&self, probe: &KeyId) -> Result<Option<KeyActivity>, StoreError> {
        let probe_key = probe.as_str().to_string();
        // On the writer: a primary-key lookup, and it sees the batch just committed.
        self.with_writer(move |conn| keys::activity(conn, &probe_key)).await
    }

    async fn active_keys(&self, since: DateTime<Utc>) -> Result<Vec<KeyActivity>, StoreError> {
        self.ensure_open()?;
        let path = self.path.clone();
        blocking(move || keys::active(&open_reader(&path)?, since.timestamp())).await
    }

    async fn registration_salt(&self) -> Result<String, StoreError> {
        self.with_writer(|conn| keys::salt(conn)).await
    }

    async fn query(&self, filter: &Filter, limit: usize) -> Result<RowReceiver, StoreError> {
        let (sql, values) = select_statement(filter, limit);
        self.stream(sql, values).await
    }

    async fn day_rows(&self, rows: &DayRows) -> Result<RowReceiver, StoreError> {
        let (sql, values) = publications::day_statement(rows);
        self.stream(sql, values).await
    }

    async fn earliest_received(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.ensure_open()?;
        let path = self.path.clone();
        let earliest = blocking(move || publications::earliest_received(&open_reader(&path)?)).await?;
        Ok(earliest.and_then(|t| DateTime::from_timestamp(t, 0)))
    }

    async fn publish(&self, publication: &Publication) -> Result<bool, StoreError> {
        let publication = publication.clone();
        let now = Utc::now().timestamp();
        self.with_writer(move |conn| publications::publish(conn, &publication, now)).await
    }

    async fn publication(&self, day: chrono::NaiveDate) -> Result<Option<Publication>, StoreError> {
        self.ensure_open()?;
        let path = self.path.clone();
        blocking(move || publications::read(&open_reader(&path)?, Some(day))).await
    }

    async fn latest_publication(&self) -> Result<Option<Publication>, StoreError> {
        self.ensure_open()?;
        let path = self.path.clone();
        blocking(move || publications::read(&open_reader(&path)?, None)).await
    }

    async fn published_days(&self) -> Result<Vec<chrono::NaiveDate>, StoreError> {
        self.ensure_open()?;
        let path = self.path.clone();
        blocking(move || publications::days(&open_reader(&path)?)).await
    }

    async fn aggregate(&self, aggregation: &Aggregation) -> Result<Vec<AggregateRow>, StoreError> {
        self.ensure_open()?;
        let permit = Arc::clone(&self.queries).try_acquire_owned().map_err(|_| StoreError::Busy)?;
        let path = self.path.clone();
        let aggregation = aggregation.clone();
        blocking(move || {
            let _permit = permit;
            aggregate::run(&open_reader(&path)?, &aggregation)
        })
        .await
    }

    async fn positions(&self, filter: &Filter, skip: usize, take: usize) -> Result<Vec<Position>, StoreError> {
        self.ensure_open()?;
        let (path, filter) = (self.path.clone(), filter.clone());
        blocking(move || positions(&open_reader(&path)?, &filter, skip, take)).await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.ensure_open()?;
        let path = self.path.clone();
        // A reader, so counting a large table never holds up ingest.
        blocking(move || {
            let conn = open_reader(&path)?;
            let n: i64 = conn.query_row("SELECT COUNT(*) FROM measurements", [], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn fleet(&self, since: DateTime<Utc>, counted: &[String]) -> Result<FleetRows, StoreError> {
        self.ensure_open()?;
        let path = self.path.clone();
        let since = since.timestamp();
        let counted = serde_json::to_string(counted).map_err(|e| StoreError::Encode(e.to_string()))?;
        // A reader of its own: under WAL the fleet read never holds up ingest.
        blocking(move || fleet::read(&open_reader(&path)?, &counted, since, since)).await
    }

    async fn blocked_since(&self, keys: Vec<StreakKey>) -> Result<Vec<Option<i64>>, StoreError> {
        self.ensure_open()?;
        let path = self.path.clone();
        blocking(move || fleet::blocked_since(&open_reader(&path)?, &keys)).await
    }

    async fn hold_duty(&self, _duty: Duty) -> Result<bool, StoreError> {
        // One file, one collector process: it does all the periodic work.
        self.ensure_open()?;
        Ok(true)
    }

    async fn put_fleet_snapshot(&self, snapshot: &FleetSnapshot) -> Result<(), StoreError> {
        let snapshot = snapshot.clone();
        self.with_writer(move |conn| shared::put_snapshot(conn, &snapshot)).await
    }

    async fn fleet_snapshot(&self) -> Result<Option<FleetSnapshot>, StoreError> {
        self.ensure_open()?;
        let path = self.path.clone();
        blocking(move || shared::snapshot(&open_reader(&path)?)).await
    }

    async fn admitted_series(&self) -> Result<Vec<AdmittedSeries>, StoreError> {
        self.ensure_open()?;
        let path = self.path.clone();
        blocking(move || shared::admitted(&open_reader(&path)?)).await
    }

    async fn admit_series(&self, claims: Vec<SeriesClaim>, max: u64) -> Result<Vec<usize>, StoreError> {
        self.with_writer(move |conn| shared::admit(conn, &claims, max)).await
    }

    async fn retain(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.ensure_open()?;
        let first_kept = super::first_id_of_day(super::day_of(before)).hyphenated().to_string();
        let mut deleted = 0u64;
        loop {
            // One chunk per transaction: ingest waits for at most one chunk, never the whole sweep.
            let boundary = first_kept.clone();
            let n = self
                .with_writer(move |conn| {
                    // Through blobs::delete_measurements, so the chunk's blobs are released with its rows.
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let n = blobs::delete_measurements(
                        &tx,
                        "id IN (SELECT id FROM measurements WHERE id < ?1 LIMIT ?2)",
                        params![boundary, RETAIN_CHUNK_ROWS],
                    )?;
                    tx.commit()?;
                    Ok(n)
                })
                .await?;
            deleted += n;
            if n < RETAIN_CHUNK_ROWS {
                return Ok(deleted);
            }
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with_writer(|conn| {
            conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.closed.store(true, Ordering::Release);
        let writer = Arc::clone(&self.writer);
        blocking(move || {
            // Waits for an insert in progress: its commit finishes before the file is released.
            let taken = writer.lock().unwrap_or_else(PoisonError::into_inner).take();
            match taken {
                Some(conn) => conn.close().map_err(|(_, e)| StoreError::from(e)),
                None => Ok(()),
            }
        })
        .await
    }
}

/// Write one batch's rows inside `tx` (the caller commits): one outcome per row, each new row's
/// blobs stored (once) and referenced, and the signing key's activity moved when anything was
/// newly stored.
fn write_batch(tx: &rusqlite::Transaction<'_>, batch: &Batch) -> Result<Vec<InsertOutcome>, StoreError> {
    let Batch { rows, probe_key, observed_cc, observed_asn, collector_key, received_at } = batch;
    let (probe_key, received_at) = (probe_key.as_deref(), *received_at);
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut taken = blobs::Taken::default();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO measurements
                (id, received_at, started_at, cc, asn, test, target, status, mechanism, skeleton, probe_key,
                 observed_cc, observed_asn, collector_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (id) DO NOTHING",
        )?;
        for row in rows {
            let changed = insert.execute(params![
                row.id.hyphenated().to_string(),
                received_at,
                row.started_at,
                row.cc,
                row.asn,
                row.test,
                row.target,
                row.status,
                row.mechanism,
                row.split.skeleton,
                probe_key,
                observed_cc,
                observed_asn,
                collector_key,
            ])?;
            outcomes.push(if changed == 1 {
                taken.add(&row.split.blobs);
                InsertOutcome::Inserted
            } else {
                InsertOutcome::Duplicate
            });
        }
    }
    taken.write(tx)?;
    let inserted = outcomes.iter().filter(|o| **o == InsertOutcome::Inserted).count();
    if let Some(probe_key) = probe_key
        && inserted > 0
    {
        keys::record_activity(tx, probe_key, received_at, inserted)?;
    }
    Ok(outcomes)
}

/// SQLite's errors stay in this backend: the rest of the collector sees only [`StoreError`].
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Task(e.to_string()))?
}

fn open_writer(data_dir: &Path) -> Result<(PathBuf, Connection), StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir { path: data_dir.display().to_string(), source })?;
    let path = data_dir.join(FILE_NAME);
    let open_error = |e: rusqlite::Error| StoreError::Open { what: path.display().to_string(), reason: e.to_string() };
    let conn = Connection::open(&path).map_err(open_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(open_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        // WAL is what makes readers independent of the writer; without it, refuse to run.
        return Err(StoreError::Incompatible(format!(
            "{} cannot use WAL mode (journal_mode is {mode}); is it on a network filesystem?",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL").map_err(open_error)?;
    let mut conn = conn;
    schema::migrate(&mut conn, &path.display().to_string())?;
    Ok((path, conn))
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Open { what: path.display().to_string(), reason: e.to_string() })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// The SELECT for `filter`, with its bound values (never user text inside the SQL).
pub(crate) fn select_statement(filter: &Filter, limit: usize) -> (String, Vec<Value>) {
    select(ROW_COLUMNS, filter, limit, 0)
}

/// `SELECT {columns}` of the rows `filter` selects in query order, `limit` of them after `skip`.
fn select(columns: &str, filter: &Filter, limit: usize, skip: usize) -> (String, Vec<Value>) {
    let conditions = crate::store::filter::conditions(filter);
    let mut sql = format!("SELECT {columns} FROM measurements");
    sql.push_str(&crate::store::filter::where_clause(&conditions, |_| "?".into()));
    sql.push_str(" ORDER BY started_at, id LIMIT ?");
    let mut values: Vec<Value> = conditions.iter().map(|(_, bound)| value(bound)).collect();
    values.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    if skip > 0 {
        sql.push_str(" OFFSET ?");
        values.push(Value::Integer(i64::try_from(skip).unwrap_or(i64::MAX)));
    }
    (sql, values)
}

/// A bound value as SQLite stores it.
pub(super) fn value(bound: &crate::store::filter::Bound) -> Value {
    use crate::store::filter::Bound;
    match bound {
        Bound::Int(n) => Value::Integer(*n),
        Bound::Text(t) => Value::Text(t.clone()),
        Bound::Id(id) => Value::Text(id.hyphenated().to_string()),
    }
}

/// The positions of the rows [`select`] picks.
fn positions(conn: &Connection, filter: &Filter, skip: usize, take: usize) -> Result<Vec<Position>, StoreError> {
    let (sql, values) = select("started_at, id", filter, take, skip);
    let mut statement = conn.prepare(&sql)?;
    let mut rows = statement.query(params_from_iter(values))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let id: String = row.get(1)?;
        let id = uuid::Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(format!("id {id:?}: {e}")))?;
        out.push(Position { started_at: row.get(0)?, id });
    }
    Ok(out)
}

/// Runs in a blocking thread: report whether the query started, then send rows until done, an
/// error, or the receiver goes away (the HTTP client disconnected).
fn stream_rows(
    path: &Path,
    sql: &str,
    values: Vec<Value>,
    started: oneshot::Sender<Result<(), StoreError>>,
    rows_tx: &mpsc::Sender<Result<String, StoreError>>,
) {
    let conn = match open_reader(path) {
        Ok(conn) => conn,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let prepared = conn.prepare(sql).map_err(StoreError::from).and_then(|s| Ok((s, blobs::BlobLookup::new(&conn)?)));
    let (mut statement, mut lookup) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let mut rows = match statement.query(params_from_iter(values)) {
        Ok(rows) => rows,
        Err(e) => {
            let _ = started.send(Err(e.into()));
            return;
        }
    };
    if started.send(Ok(())).is_err() {
        return;
    }
    loop {
        let item = match rows.next() {
            Ok(Some(row)) => read_row(row, &mut lookup),
            Ok(None) => return,
            Err(e) => Err(StoreError::from(e)),
        };
        let failed = item.is_err();
        if rows_tx.blocking_send(item).is_err() || failed {
            return;
        }
    }
}

/// One stored row as its NDJSON line: the canonical body (the skeleton joined with its blobs),
/// with the observed location added when there is one.
/// The columns [`read_row`] reads, in its order.
pub(crate) const ROW_COLUMNS: &str = "skeleton, observed_cc, observed_asn, collector_key";

fn read_row(row: &rusqlite::Row<'_>, blobs: &mut blobs::BlobLookup<'_>) -> Result<String, StoreError> {
    let corrupt = |e: rusqlite::Error| StoreError::Corrupt(e.to_string());
    let skeleton: Vec<u8> = row.get(0).map_err(corrupt)?;
    let body = super::blobs::join(&skeleton, blobs)?;
    let observed = ObservedLocation { cc: row.get(1).map_err(corrupt)?, asn: row.get(2).map_err(corrupt)? };
    let key: Option<String> = row.get(3).map_err(corrupt)?;
    annotate(body, &observed, key.as_deref())
}
