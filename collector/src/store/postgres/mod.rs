//! The shared store: one PostgreSQL database for any number of collector replicas.
//!
//! - **Driver.** tokio-postgres (async, binary `COPY`, pipelining) behind a deadpool-postgres
//!   pool. Plain TCP or a unix socket to the database, no TLS: the DSN names a database on the
//!   collectors' private network or the same host (see `docs/collector.md`).
//! - **Layout.** `measurements` is partitioned by UTC day of the UUIDv7 id (`partitions`), with
//!   `(day, id)` as its primary key; versioned migrations run at open under an advisory lock
//!   (`schema`).
//! - **Ingest.** Binary `COPY` into a staging table, then one idempotent `INSERT … SELECT`
//!   (`ingest`); the key's activity moves in the same transaction; durable at commit.
//! - **Reads.** The same SQL as SQLite's, over pooled connections (`reads`). A query streams its
//!   rows over a bounded channel from a connection of its own; at most
//!   [`MAX_CONCURRENT_QUERIES`] run at once, beyond that [`StoreError::Busy`].
//! - **Duties.** [`Store::hold_duty`] takes a session-level advisory lock per [`Duty`] on one
//!   connection this store keeps for nothing else: the lock lives exactly as long as that
//!   session, so a replica that dies (or loses the database) lets the duty pass on.
//!
//! Per replica: the pool, the duty session, the cache of partitions seen. Everything else (rows,
//! key records, the salt, which replica holds which duty) is in the database.

mod aggregate;
mod blobs;
mod ingest;
mod partitions;
mod publications;
mod reads;
pub mod schema;
mod shared;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use futures::StreamExt;
use tokio::sync::{Mutex, RwLock, Semaphore, mpsc, oneshot};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};
use vantage_measurement::Measurement;
use vantage_measurement::wire::KeyId;

use super::row::StoredRow;
use super::{
    AdmittedSeries, AggregateRow, Aggregation, DayRows, Duty, Filter, FleetRows, FleetSnapshot, InsertOutcome, KeyActivity,
    Position, Publication, RowReceiver, SeriesClaim, Store, StoreError, StreakKey, Submission,
};

/// Queries streaming at once; beyond this a query is refused with [`StoreError::Busy`].
pub const MAX_CONCURRENT_QUERIES: usize = 8;
/// Pooled connections: the queries, plus room for ingest, the fleet read and key lookups.
const POOL_SIZE: usize = MAX_CONCURRENT_QUERIES + 16;
/// Batches written at once. Beyond this a batch waits its turn in the process rather than for a
/// pooled connection, whose wait is bounded ([`POOL_WAIT`]): a burst of many small batches
/// queues instead of failing with `503`, and the rest of the pool stays free for reads, key
/// lookups and duties.
const MAX_WRITERS: usize = 12;
/// The most rows one group commit writes; a writer takes every batch waiting up to this. Small
/// batches (a fleet's steady state) share one transaction by the hundred; large ones still spread
/// over several writers, so the database works on them in parallel.
const MAX_GROUP_ROWS: usize = 5_000;
/// Rows buffered between the database and the HTTP response.
const QUERY_CHANNEL_ROWS: usize = 64;
/// How long to wait for the server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for a pooled connection before failing (the probe retries).
const POOL_WAIT: Duration = Duration::from_secs(10);
/// The first key of every advisory lock this code takes (`"VANT"`), so they can't collide with
/// another application's on a shared server. The second key names the lock: 0 and 1 are
/// migrations and partition changes, 100 + n the duties.
pub(crate) const LOCK_CLASS: i32 = 0x5641_4e54;

/// The PostgreSQL [`Store`].
pub struct PostgresStore {
    pool: Pool,
    /// Where, for errors and logs (no password).
    shown: String,
    /// How to open the duty session.
    config: Config,
    /// Operations hold it shared; [`Store::close`] takes it exclusively, so it waits for writes
    /// in progress.
    running: RwLock<()>,
    closed: AtomicBool,
    queries: Arc<Semaphore>,
    writers: Semaphore,
    /// Batches waiting for a writer; each writer takes all of them it can (group commit).
    waiting: std::sync::Mutex<Vec<Pending>>,
    /// Write transactions committed, and the batches they held (tests read it).
    commits: (AtomicU64, AtomicU64),
    partitions: partitions::KnownDays,
    duty: Mutex<DutySession>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("database", &self.shown).finish_non_exhaustive()
    }
}

/// The connection holding this replica's duties, and which ones it holds.
#[derive(Default)]
struct DutySession {
    client: Option<Client>,
    held: HashSet<Duty>,
}

impl PostgresStore {
    /// Connect to the database at `url`, migrating it to the current layout.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_at_layout(url, schema::SCHEMA_VERSION).await
    }

    /// [`PostgresStore::open`], migrating only up to layout `version`: for tests that build a
    /// database as an older collector left it. Don't write through a store opened at an older
    /// layout; open it again with [`PostgresStore::open`].
    #[doc(hidden)]
    pub async fn open_at_layout(url: &str, version: i32) -> Result<Self, StoreError> {
        let shown = redact(url);
        let open_error = |reason: String| StoreError::Open { what: shown.clone(), reason };
        let config = session_config(url).map_err(open_error)?;
        let manager = Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| open_error(e.to_string()))?;
        let mut client = pool.get().await.map_err(|e| open_error(StoreError::from(e).to_string()))?;
        schema::migrate(&mut client, &shown, version).await?;
        drop(client);
        tracing::info!(database = %shown, layout = version, "PostgreSQL store open");
        Ok(PostgresStore {
            pool,
            shown,
            config,
            running: RwLock::new(()),
            closed: AtomicBool::new(false),
            queries: Arc::new(Semaphore::new(MAX_CONCURRENT_QUERIES)),
            writers: Semaphore::new(MAX_WRITERS),
            waiting: std::sync::Mutex::new(Vec::new()),
            commits: (AtomicU64::new(0), AtomicU64::new(0)),
            partitions: partitions::KnownDays::default(),
            duty: Mutex::new(DutySession::default()),
        })
    }

    /// A pooled connection, unless the store is closed.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        Ok(self.pool.get().await?)
    }

    /// The batches waiting now, oldest first, up to [`MAX_GROUP_ROWS`] rows (at least one batch).
    fn take_group(&self) -> Vec<Pending> {
        let mut waiting = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut rows = 0;
        let count = waiting
            .iter()
            .take_while(|p| {
                rows += p.rows.len();
                rows <= MAX_GROUP_ROWS
            })
            .count()
            .max(1)
            .min(waiting.len());
        waiting.drain(..count).collect()
    }

    /// Write `group` in one transaction and answer each batch; if the group fails, each batch
    /// again in a transaction of its own, so one bad batch fails alone.
    async fn write_group(&self, group: Vec<Pending>) {
        if group.len() > 1 {
            let batches: Vec<_> = group.iter().map(|p| (p.rows.as_slice(), p.sender())).collect();
            match self.try_write(&batches).await {
                Ok(outcomes) => {
                    for (pending, outcome) in group.into_iter().zip(outcomes) {
                        let _ = pending.reply.send(Ok(outcome));
                    }
                    return;
                }
                Err(e) => tracing::debug!(batches = group.len(), "a group commit failed; writing its batches one by one: {e}"),
            }
        }
        for pending in group {
            let result = self.write_alone(&pending).await;
            let _ = pending.reply.send(result);
        }
    }

    /// One batch in its own transaction, once more if a partition this store remembered was
    /// dropped meanwhile by another replica's retention.
    async fn write_alone(&self, pending: &Pending) -> Result<Vec<InsertOutcome>, StoreError> {
        let batch = [(pending.rows.as_slice(), pending.sender())];
        let result = match self.try_write(&batch).await {
            Err(StoreError::Database(message)) if message.contains("no partition of relation") => {
                self.partitions.forget();
                self.try_write(&batch).await
            }
            result => result,
        };
        result.map(|mut outcomes| outcomes.pop().unwrap_or_default())
    }

    /// `batches` in one transaction: their partitions first, then every blob they use (one sorted
    /// write, so a row is never visible without what it references and groups lock blobs in one
    /// order), then each batch's rows; one outcome list per batch.
    async fn try_write(&self, batches: &[(&[StoredRow], ingest::Sender<'_>)]) -> Result<Vec<Vec<InsertOutcome>>, StoreError> {
        let mut client = self.client().await?;
        let days = batches.iter().flat_map(|(rows, _)| ingest::days(rows)).collect();
        partitions::ensure(&mut client, &self.partitions, &days).await?;
        let tx = client.transaction().await?;
        let used: Vec<(i32, &crate::store::blobs::Split)> =
            batches.iter().flat_map(|(rows, _)| rows.iter()).map(|row| (row.day, &row.split)).collect();
        blobs::put(&*tx, used).await?;
        let outcomes = ingest::write_batches(&tx, batches).await?;
        tx.commit().await?;
        self.commits.0.fetch_add(1, Ordering::Relaxed);
        self.commits.1.fetch_add(batches.len() as u64, Ordering::Relaxed);
        Ok(outcomes)
    }

    /// Stream the rows of `sql` (the query's columns) from a pooled connection of their own, a
    /// query permit held meanwhile.
    async fn stream(&self, sql: &str, values: Vec<reads::Param>) -> Result<RowReceiver, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let permit = Arc::clone(&self.queries).try_acquire_owned().map_err(|_| StoreError::Busy)?;
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await?;
        let params = values.iter().map(|v| &**v as &(dyn tokio_postgres::types::ToSql + Sync));
        let rows = client.query_raw(&statement, params).await?;
        let (rows_tx, rows_rx) = mpsc::channel(QUERY_CHANNEL_ROWS);
        let mut lookup = blobs::Lookup::new(self.pool.clone());
        tokio::spawn(async move {
            // The connection and the permit are held until the last row is sent or the reader
            // goes away (the HTTP client disconnected): dropping the stream ends the query.
            let (_permit, _client) = (permit, client);
            futures::pin_mut!(rows);
            while let Some(row) = rows.next().await {
                let item = match row {
                    Ok(row) => reads::read_row(&row, &mut lookup).await,
                    Err(e) => Err(StoreError::from(e)),
                };
                let failed = item.is_err();
                if rows_tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(rows_rx)
    }

    /// (write transactions committed, batches they held): group commit at work when the first
    /// is the smaller.
    #[doc(hidden)]
    pub fn commit_counts(&self) -> (u64, u64) {
        (self.commits.0.load(Ordering::Relaxed), self.commits.1.load(Ordering::Relaxed))
    }

    /// Batches waiting for a writer now.
    #[doc(hidden)]
    pub fn queued_batches(&self) -> usize {
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Keep every writer busy until the guard drops, as a burst of long writes would: batches
    /// arriving meanwhile queue (tests of group commit).
    #[doc(hidden)]
    pub fn hold_writers(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.writers.try_acquire_many(MAX_WRITERS as u32).ok()
    }
}

/// A batch waiting for a writer, with who sent it and where its answer goes.
struct Pending {
    rows: Vec<StoredRow>,
    probe_key: Option<String>,
    observed_cc: Option<String>,
    observed_asn: Option<i64>,
    collector_key: Option<&'static str>,
    received_at: i64,
    reply: oneshot::Sender<Result<Vec<InsertOutcome>, StoreError>>,
}

impl Pending {
    fn sender(&self) -> ingest::Sender<'_> {
        ingest::Sender {
            probe_key: self.probe_key.as_deref(),
            observed_cc: self.observed_cc.as_deref(),
            observed_asn: self.observed_asn,
            collector_key: self.collector_key,
            received_at: self.received_at,
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert(&self, batch: &[Measurement], submission: &Submission<'_>) -> Result<Vec<InsertOutcome>, StoreError> {
        let _running = self.running.read().await;
        let rows = StoredRow::all(batch)?;
        let (reply, answer) = oneshot::channel();
        let observed = submission.observed;
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Pending {
            rows,
            probe_key: submission.probe.map(|k| k.as_str().to_string()),
            observed_cc: observed.and_then(|o| o.cc.clone()),
            observed_asn: observed.and_then(|o| o.asn).map(i64::from),
            collector_key: submission.standing.map(crate::store::CollectorKey::as_str),
            received_at: submission.received_at.timestamp(),
            reply,
        });
        {
            // Whoever gets a turn writes everything waiting, this batch or not: batches that
            // arrive while writers are busy are committed together (one WAL flush for many).
            let _turn = self.writers.acquire().await.map_err(|_| StoreError::Closed)?;
            let group = self.take_group();
            if !group.is_empty() {
                self.write_group(group).await;
            }
        }
        answer.await.map_err(|_| StoreError::Task("the batch was dropped before it was written".into()))?
    }

    async fn delete_probe(&self, probe: &KeyId) -> Result<u64, StoreError> {
        let _running = self.running.read().await;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let deleted = tx.execute("DELETE FROM measurements WHERE probe_key = $1", &[&probe.as_str()]).await?;
        tx.execute("DELETE FROM probe_keys WHERE key_id = $1", &[&probe.as_str()]).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn register_key(&self, probe: &KeyId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let _running = self.running.read().await;
        reads::register(&**self.client().await?, probe.as_str(), at.timestamp()).await
    }

    async fn key_activity(&self, probe: &KeyId) -> Result<Option<KeyActivity>, StoreError> {
        reads::activity(&**self.client().await?, probe.as_str()).await
    }

    async fn active_keys(&self, since: DateTime<Utc>) -> Result<Vec<KeyActivity>, StoreError> {
        reads::active(&**self.client().await?, since.timestamp()).await
    }

    async fn registration_salt(&self) -> Result<String, StoreError> {
        let _running = self.running.read().await;
        reads::salt(&**self.client().await?).await
    }

    async fn query(&self, filter: &Filter, limit: usize) -> Result<RowReceiver, StoreError> {
        let (sql, values) = reads::select_statement(filter, limit);
        self.stream(&sql, values).await
    }

    async fn day_rows(&self, rows: &DayRows) -> Result<RowReceiver, StoreError> {
        let (sql, values) = publications::day_statement(rows);
        self.stream(&sql, values).await
    }

    async fn earliest_received(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let earliest = publications::earliest_received(&**self.client().await?).await?;
        Ok(earliest.and_then(|t| DateTime::from_timestamp(t, 0)))
    }

    async fn publish(&self, publication: &Publication) -> Result<bool, StoreError> {
        let _running = self.running.read().await;
        publications::publish(&**self.client().await?, publication, Utc::now().timestamp()).await
    }

    async fn publication(&self, day: chrono::NaiveDate) -> Result<Option<Publication>, StoreError> {
        publications::read(&**self.client().await?, Some(day)).await
    }

    async fn latest_publication(&self) -> Result<Option<Publication>, StoreError> {
        publications::read(&**self.client().await?, None).await
    }

    async fn published_days(&self) -> Result<Vec<chrono::NaiveDate>, StoreError> {
        publications::days(&**self.client().await?).await
    }

    async fn aggregate(&self, aggregation: &Aggregation) -> Result<Vec<AggregateRow>, StoreError> {
        let permit = Arc::clone(&self.queries).try_acquire_owned().map_err(|_| StoreError::Busy)?;
        let mut client = self.client().await?;
        let rows = aggregate::run(&mut client, aggregation).await;
        drop(permit);
        rows
    }

    async fn positions(&self, filter: &Filter, skip: usize, take: usize) -> Result<Vec<Position>, StoreError> {
        let (sql, values) = reads::select("started_at, id", filter, take, skip);
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            values.iter().map(|v| &**v as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        let rows = self.client().await?.query(&sql, &params).await?;
        rows.iter().map(|r| Ok(Position { started_at: r.try_get(0)?, id: r.try_get(1)? })).collect()
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = self.client().await?.query_one("SELECT COUNT(*) FROM measurements", &[]).await?.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn fleet(&self, since: DateTime<Utc>, counted: &[String]) -> Result<FleetRows, StoreError> {
        let since = since.timestamp();
        reads::fleet(&**self.client().await?, counted, since, since).await
    }

    async fn blocked_since(&self, keys: Vec<StreakKey>) -> Result<Vec<Option<i64>>, StoreError> {
        reads::blocked_since(&**self.client().await?, &keys).await
    }

    async fn put_fleet_snapshot(&self, snapshot: &FleetSnapshot) -> Result<(), StoreError> {
        let _running = self.running.read().await;
        shared::put_snapshot(&**self.client().await?, snapshot).await
    }

    async fn fleet_snapshot(&self) -> Result<Option<FleetSnapshot>, StoreError> {
        shared::snapshot(&**self.client().await?).await
    }

    async fn admitted_series(&self) -> Result<Vec<AdmittedSeries>, StoreError> {
        shared::admitted(&**self.client().await?).await
    }

    async fn admit_series(&self, claims: Vec<SeriesClaim>, max: u64) -> Result<Vec<usize>, StoreError> {
        let _running = self.running.read().await;
        shared::admit(&mut self.client().await?, &claims, max).await
    }

    async fn hold_duty(&self, duty: Duty) -> Result<bool, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let mut session = self.duty.lock().await;
        let mut last_error = None;
        // Twice at most: a broken session is replaced once (its locks died with it).
        for _ in 0..2 {
            if session.client.as_ref().is_none_or(Client::is_closed) {
                session.held.clear();
                session.client = Some(connect(&self.config).await?);
            }
            let Some(client) = session.client.as_ref() else { continue };
            let result = if session.held.contains(&duty) {
                // Held already (session locks stack, so don't take it twice): is the session alive?
                client.simple_query("SELECT 1").await.map(|_| true)
            } else {
                client
                    .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &duty_lock(duty)])
                    .await
                    .and_then(|row| row.try_get::<_, bool>(0))
            };
            match result {
                Ok(held) => {
                    if held {
                        session.held.insert(duty);
                    }
                    return Ok(held);
                }
                Err(e) => {
                    tracing::warn!(database = %self.shown, "the duty session broke; reconnecting: {e}");
                    session.client = None;
                    session.held.clear();
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.map_or(StoreError::Closed, StoreError::from))
    }

    async fn retain(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let _running = self.running.read().await;
        let mut client = self.client().await?;
        partitions::drop_before(&mut client, &self.partitions, super::day_of(before)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.closed.store(true, Ordering::Release);
        // Waits for writes in progress: their commits finish before the pool goes.
        let _closing = self.running.write().await;
        let mut session = self.duty.lock().await;
        if let Some(client) = session.client.take() {
            // Hand the duties on now rather than when the server notices the socket closed.
            let _ = client.simple_query("SELECT pg_advisory_unlock_all()").await;
        }
        session.held.clear();
        self.pool.close();
        Ok(())
    }
}

/// The second advisory-lock key of `duty`.
fn duty_lock(duty: Duty) -> i32 {
    match duty {
        Duty::FleetRefresh => 100,
        Duty::Retention => 101,
        Duty::Publish => 102,
    }
}

/// A connection of its own (the duty session), its driver task spawned.
async fn connect(config: &Config) -> Result<Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("database connection ended: {e}");
        }
    });
    Ok(client)
}

/// The URL parsed, with what every session needs: a connect timeout unless the URL sets one,
/// durable commits whatever the server's default, and the application name in `pg_stat_activity`.
fn session_config(url: &str) -> Result<Config, String> {
    let mut config: Config = url.parse().map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("vantage-collector");
    }
    let options = format!("{} -c synchronous_commit=on", config.get_options().unwrap_or_default());
    config.options(options.trim());
    Ok(config)
}

/// Check that `url` is a PostgreSQL URL this store can use (without connecting): the error never
/// repeats the URL.
pub fn check_url(url: &str) -> Result<(), String> {
    session_config(url).map(|_| ())
}

/// `url` as logs and errors may show it: user, hosts, ports and database; never the password.
pub fn redact(url: &str) -> String {
    let Ok(config) = url.parse::<Config>() else {
        return "<unreadable PostgreSQL URL>".into();
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            Host::Tcp(name) => format!("{name}:{port}"),
            Host::Unix(dir) => format!("{}:{port}", dir.display()),
        })
        .collect();
    format!("postgres://{}@{}/{}", config.get_user().unwrap_or(""), hosts.join(","), config.get_dbname().unwrap_or(""))
}

/// PostgreSQL's errors stay in this backend: the rest of the collector sees only [`StoreError`].
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => StoreError::Database(format!("{}: {}", db.code().code(), db.message())),
            None => StoreError::Database(e.to_string()),
        }
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => e.into(),
            PoolError::Closed => StoreError::Closed,
            other => StoreError::Database(format!("no database connection: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_password() {
        let shown = redact("postgres://vantage:s3cret@db.internal:6543/measurements?sslmode=disable");
        assert_eq!(shown, "postgres://vantage@db.internal:6543/measurements");
        assert!(!redact("host=db user=v password=s3cret dbname=m").contains("s3cret"));
        assert_eq!(redact("postgres://v:s3cret@[bad"), "<unreadable PostgreSQL URL>");
        let err = check_url("postgres://v:s3cret@db/m?port=notaport").expect_err("bad port");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn every_duty_has_its_own_lock() {
        let locks: HashSet<i32> = Duty::ALL.iter().map(|d| duty_lock(*d)).collect();
        assert_eq!(locks.len(), Duty::ALL.len());
    }
}
