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

mod group;

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

use super::{
    Duty, Filter, FleetRows, InsertOutcome, KeyActivity, OBSERVED_FIELD, RowReceiver, Store, StoreError, StreakKey, fleet, keys,
    schema,
};
use group::{Batch, GroupCommit};
pub use group::{CommitCounts, MAX_GROUP_BYTES, MAX_GROUP_ROWS};

/// The database file inside the data directory.
pub const FILE_NAME: &str = "vantage.sqlite3";
/// Queries streaming at once; beyond this a query is refused with [`StoreError::Busy`].
pub const MAX_CONCURRENT_QUERIES: usize = 8;
/// Rows buffered between the database thread and the HTTP response.
const QUERY_CHANNEL_ROWS: usize = 64;
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

    fn ensure_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) { Err(StoreError::Closed) } else { Ok(()) }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_batch(
        &self,
        batch: &[Measurement],
        probe: Option<&KeyId>,
        observed: Option<&ObservedLocation>,
        received_at: DateTime<Utc>,
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        self.ensure_open()?;
        let batch = Batch {
            rows: batch.iter().map(Row::from_measurement).collect::<Result<Vec<Row>, StoreError>>()?,
            probe_key: probe.map(|k| k.as_str().to_string()),
            observed_cc: observed.and_then(|o| o.cc.clone()),
            observed_asn: observed.and_then(|o| o.asn),
            received_at: received_at.timestamp(),
        };
        group::insert(&self.group, &self.writer, batch).await
    }

    async fn delete_probe(&self, probe: &KeyId) -> Result<u64, StoreError> {
        let probe_key = probe.as_str().to_string();
        self.with_writer(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let deleted = tx.execute("DELETE FROM measurements WHERE probe_key = ?1", params![probe_key])?;
            tx.execute("DELETE FROM probe_keys WHERE key_id = ?1", params![probe_key])?;
            tx.commit()?;
            Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
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
        self.ensure_open()?;
        let permit = Arc::clone(&self.queries).try_acquire_owned().map_err(|_| StoreError::Busy)?;
        let (sql, values) = select_statement(filter, limit);
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

/// Write one batch's rows inside `tx` (the caller commits): one outcome per row, and the signing
/// key's activity moved when anything was newly stored.
fn write_batch(
    tx: &rusqlite::Transaction<'_>,
    rows: &[Row],
    probe_key: Option<&str>,
    observed_cc: Option<&str>,
    observed_asn: Option<u32>,
    received_at: i64,
) -> Result<Vec<InsertOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(rows.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO measurements
                (id, received_at, started_at, cc, asn, test, target, status, mechanism, body, probe_key,
                 observed_cc, observed_asn)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (id) DO NOTHING",
        )?;
        for row in rows {
            let changed = insert.execute(params![
                row.id,
                received_at,
                row.started_at,
                row.cc,
                row.asn,
                row.test,
                row.target,
                row.status,
                row.mechanism,
                row.body,
                probe_key,
                observed_cc,
                observed_asn,
            ])?;
            outcomes.push(if changed == 1 { InsertOutcome::Inserted } else { InsertOutcome::Duplicate });
        }
    }
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

/// The indexed columns of one measurement, plus its canonical line.
struct Row {
    id: String,
    started_at: i64,
    cc: String,
    asn: u32,
    test: &'static str,
    target: String,
    status: &'static str,
    mechanism: Option<&'static str>,
    body: String,
}

impl Row {
    fn from_measurement(m: &Measurement) -> Result<Row, StoreError> {
        Ok(Row {
            id: m.id.hyphenated().to_string(),
            started_at: m.started_at.timestamp(),
            cc: m.probe.cc.clone(),
            asn: m.probe.asn,
            test: m.test.as_str(),
            target: m.target.name.clone(),
            status: m.verdict.status.as_str(),
            mechanism: m.verdict.mechanism.map(|mech| mech.as_str()),
            body: m.to_json_line().map_err(|e| StoreError::Encode(e.to_string()))?,
        })
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
fn select_statement(filter: &Filter, limit: usize) -> (String, Vec<Value>) {
    let mut clauses: Vec<&str> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(since) = filter.since {
        clauses.push("started_at >= ?");
        values.push(Value::Integer(since.timestamp()));
    }
    if let Some(until) = filter.until {
        clauses.push("started_at < ?");
        values.push(Value::Integer(until.timestamp()));
    }
    if let Some(cc) = &filter.country {
        clauses.push("cc = ?");
        values.push(Value::Text(cc.clone()));
    }
    if let Some(asn) = filter.asn {
        clauses.push("asn = ?");
        values.push(Value::Integer(i64::from(asn)));
    }
    if let Some(test) = filter.test {
        clauses.push("test = ?");
        values.push(Value::Text(test.as_str().into()));
    }
    if let Some(target) = &filter.target {
        clauses.push("target = ?");
        values.push(Value::Text(target.clone()));
    }
    if let Some(status) = filter.verdict {
        clauses.push("status = ?");
        values.push(Value::Text(status.as_str().into()));
    }
    if let Some(mechanism) = filter.mechanism {
        clauses.push("mechanism = ?");
        values.push(Value::Text(mechanism.as_str().into()));
    }
    if let Some(cc) = &filter.observed_country {
        clauses.push("observed_cc = ?");
        values.push(Value::Text(cc.clone()));
    }
    if let Some(asn) = filter.observed_asn {
        clauses.push("observed_asn = ?");
        values.push(Value::Integer(i64::from(asn)));
    }
    let mut sql = String::from("SELECT body, observed_cc, observed_asn FROM measurements");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(" ORDER BY started_at, id LIMIT ?");
    values.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    (sql, values)
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
    let mut statement = match conn.prepare(sql) {
        Ok(s) => s,
        Err(e) => {
            let _ = started.send(Err(e.into()));
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
            Ok(Some(row)) => read_row(row),
            Ok(None) => return,
            Err(e) => Err(StoreError::from(e)),
        };
        let failed = item.is_err();
        if rows_tx.blocking_send(item).is_err() || failed {
            return;
        }
    }
}

/// One stored row as its NDJSON line: the canonical body, with the observed location added when
/// there is one.
fn read_row(row: &rusqlite::Row<'_>) -> Result<String, StoreError> {
    let corrupt = |e: rusqlite::Error| StoreError::Corrupt(e.to_string());
    let body: String = row.get(0).map_err(corrupt)?;
    let observed = ObservedLocation { cc: row.get(1).map_err(corrupt)?, asn: row.get(2).map_err(corrupt)? };
    annotate(body, &observed)
}

/// Add [`OBSERVED_FIELD`] to a stored body (a JSON object: we wrote it) unless nothing was
/// observed.
fn annotate(body: String, observed: &ObservedLocation) -> Result<String, StoreError> {
    if observed.cc.is_none() && observed.asn.is_none() {
        return Ok(body);
    }
    let Some(open) = body.strip_suffix('}') else {
        return Err(StoreError::Corrupt("a stored body is not a JSON object".into()));
    };
    let value = serde_json::to_string(observed).map_err(|e| StoreError::Encode(e.to_string()))?;
    Ok(format!("{open},\"{OBSERVED_FIELD}\":{value}}}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone};
    use vantage_measurement::{Mechanism, Status, TestKind, example};

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).single().expect("valid time")
    }

    async fn collect(store: &SqliteStore, filter: &Filter, limit: usize) -> Vec<Measurement> {
        let mut rx = store.query(filter, limit).await.expect("query");
        let mut out = Vec::new();
        while let Some(line) = rx.recv().await {
            out.push(serde_json::from_str(&line.expect("row")).expect("stored line parses"));
        }
        out
    }

    #[tokio::test]
    async fn duplicates_within_and_across_batches_are_stored_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let m = example::tls_reset(at(1_700_000_000));
        let outcomes = store.insert_batch(&[m.clone(), m.clone()], None, None, chrono::Utc::now()).await.expect("insert");
        assert_eq!(outcomes, vec![InsertOutcome::Inserted, InsertOutcome::Duplicate]);
        let outcomes = store.insert_batch(std::slice::from_ref(&m), None, None, chrono::Utc::now()).await.expect("insert again");
        assert_eq!(outcomes, vec![InsertOutcome::Duplicate]);
        assert_eq!(store.count().await.expect("count"), 1);
        assert_eq!(collect(&store, &Filter::default(), 10).await, vec![m]);
    }

    #[tokio::test]
    async fn filters_select_by_every_indexed_column_in_time_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let mut late = example::tls_reset(at(1_700_000_100));
        late.probe.cc = "DE".into();
        late.probe.asn = 3320;
        late.test = TestKind::Tcp;
        late.target.name = "wikipedia".into();
        late.verdict.status = Status::Down;
        late.verdict.mechanism = Some(Mechanism::ControlFailed);
        let early = example::tls_reset(at(1_700_000_000));
        store.insert_batch(&[late.clone(), early.clone()], None, None, chrono::Utc::now()).await.expect("insert");

        let all = collect(&store, &Filter::default(), 10).await;
        assert_eq!(all, vec![early.clone(), late.clone()], "ordered by started_at");
        assert_eq!(collect(&store, &Filter::default(), 1).await, vec![early.clone()], "limit");

        let only_late = [
            Filter { since: Some(at(1_700_000_050)), ..Filter::default() },
            Filter { country: Some("DE".into()), ..Filter::default() },
            Filter { asn: Some(3320), ..Filter::default() },
            Filter { test: Some(TestKind::Tcp), ..Filter::default() },
            Filter { target: Some("wikipedia".into()), ..Filter::default() },
            Filter { verdict: Some(Status::Down), ..Filter::default() },
            Filter { mechanism: Some(Mechanism::ControlFailed), ..Filter::default() },
        ];
        for filter in &only_late {
            assert_eq!(collect(&store, filter, 10).await, vec![late.clone()], "{filter:?}");
        }
        let until = Filter { until: Some(at(1_700_000_100)), ..Filter::default() };
        assert_eq!(collect(&store, &until, 10).await, vec![early], "until is exclusive");
    }

    #[tokio::test]
    async fn a_closed_store_refuses_work_and_reopens_with_its_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let m = example::tls_reset(at(1_700_000_000));
        store.insert_batch(std::slice::from_ref(&m), None, None, chrono::Utc::now()).await.expect("insert");
        store.close().await.expect("close");
        assert!(matches!(store.ping().await, Err(StoreError::Closed)));
        assert!(matches!(
            store.insert_batch(std::slice::from_ref(&m), None, None, chrono::Utc::now()).await,
            Err(StoreError::Closed)
        ));

        let reopened = SqliteStore::open(dir.path()).await.expect("reopen");
        assert_eq!(collect(&reopened, &Filter::default(), 10).await, vec![m]);
    }

    #[tokio::test]
    async fn the_observed_location_is_added_to_rows_and_a_probes_rows_can_be_deleted() {
        use vantage_measurement::wire::ProbeKey;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let (a, b) = (ProbeKey::from_seed(&[1; 32]).key_id(), ProbeKey::from_seed(&[2; 32]).key_id());
        let seen = ObservedLocation { cc: Some("DE".into()), asn: Some(3320) };
        let first = example::tls_reset(at(1_700_000_000));
        let second = example::tls_reset(at(1_700_000_001));
        store.insert_batch(std::slice::from_ref(&first), Some(&a), Some(&seen), chrono::Utc::now()).await.expect("a");
        store.insert_batch(std::slice::from_ref(&second), Some(&b), None, chrono::Utc::now()).await.expect("b");

        let mut rows = store.query(&Filter::default(), 10).await.expect("query");
        let mut lines = Vec::new();
        while let Some(line) = rows.recv().await {
            lines.push(serde_json::from_str::<serde_json::Value>(&line.expect("row")).expect("JSON"));
        }
        assert_eq!(lines[0][OBSERVED_FIELD], serde_json::json!({"cc": "DE", "asn": 3320}));
        assert!(lines[1].get(OBSERVED_FIELD).is_none(), "nothing observed, nothing added");
        // Without the annotation, each line is still the measurement as stored.
        let mut plain = lines[0].clone();
        plain.as_object_mut().expect("object").remove(OBSERVED_FIELD);
        assert_eq!(serde_json::from_value::<Measurement>(plain).expect("measurement"), first);

        let by_observed = [
            Filter { observed_country: Some("DE".into()), ..Filter::default() },
            Filter { observed_asn: Some(3320), ..Filter::default() },
        ];
        for filter in &by_observed {
            let mut rows = store.query(filter, 10).await.expect("query");
            let mut ids = Vec::new();
            while let Some(line) = rows.recv().await {
                ids.push(serde_json::from_str::<serde_json::Value>(&line.expect("row")).expect("JSON")["id"].clone());
            }
            assert_eq!(ids, vec![serde_json::json!(first.id)], "{filter:?}");
        }
        assert_eq!(store.delete_probe(&a).await.expect("delete"), 1);
        assert_eq!(store.delete_probe(&a).await.expect("again"), 0);
        assert_eq!(collect(&store, &Filter::default(), 10).await, vec![second], "the other key's row stays");
    }
}
