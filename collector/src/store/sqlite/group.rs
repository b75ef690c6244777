//! Group commit: the batches of many requests in one transaction, one fsync for all of them.
//!
//! With `synchronous=FULL` every commit waits for the disk, so a thousand probes each sending ten
//! measurements would wait for a thousand fsyncs in a row. Instead, [`SqliteStore::insert_batch`]
//! puts its batch in a queue and waits; one committer at a time (a blocking task, started by
//! whichever batch finds none running) takes the writer connection, then **every** batch waiting
//! (up to [`MAX_GROUP_ROWS`] rows and [`MAX_GROUP_BYTES`] bytes of bodies; at least one batch,
//! however large) and writes them with [`write_batch`] inside one `IMMEDIATE` transaction. Each
//! request is answered only after the commit that holds its rows, so the store's promise is
//! unchanged: `insert_batch` returns once the batch is durable. While a group commits, the next
//! one gathers; the committer stops when the queue is empty.
//!
//! The outcomes are the same as batch by batch: batches are written in arrival order, so an id
//! sent twice (in one batch, or in two batches of one group) is `Inserted` once and `Duplicate`
//! after. If anything in a group fails (a batch's statement, or the commit itself), the group's
//! transaction is rolled back and each of its batches is written again in a transaction of its
//! own: one bad batch fails alone, and nothing of the group was half written.
//!
//! The writer connection is taken before the queue is read, so batches that arrive while another
//! statement (a key registration, a deletion) holds the writer all go into the next group.
//!
//! [`SqliteStore::insert_batch`]: super::SqliteStore

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::{StoredRow, write_batch};
use crate::store::{InsertOutcome, StoreError};

/// The most rows one group commits (a larger single batch still commits alone).
pub const MAX_GROUP_ROWS: usize = 20_000;
/// The most bytes of measurement bodies one group commits (likewise).
pub const MAX_GROUP_BYTES: usize = 32 * 1024 * 1024;

/// One request's batch: its rows and what is stored beside them.
pub(super) struct Batch {
    pub(super) rows: Vec<StoredRow>,
    pub(super) probe_key: Option<String>,
    pub(super) observed_cc: Option<String>,
    pub(super) observed_asn: Option<u32>,
    pub(super) collector_key: Option<&'static str>,
    pub(super) received_at: i64,
}

impl Batch {
    /// What the group bound counts: the bytes each row writes at most (its skeleton and blobs).
    fn bytes(&self) -> usize {
        self.rows.iter().map(|r| r.split.skeleton.len() + r.split.blobs.iter().map(|b| b.bytes.len()).sum::<usize>()).sum()
    }

    fn write(&self, tx: &rusqlite::Transaction<'_>) -> Result<Vec<InsertOutcome>, StoreError> {
        write_batch(tx, self)
    }
}

type Outcome = Result<Vec<InsertOutcome>, StoreError>;

/// A batch waiting for its commit, and where its outcome goes.
struct Pending {
    batch: Batch,
    reply: oneshot::Sender<Outcome>,
}

impl Pending {
    /// Answer the request. It may have gone (its client hung up): its rows are stored anyway.
    fn answer(self, outcome: Outcome) {
        let _ = self.reply.send(outcome);
    }
}

/// Transactions committed and the batches they held, since the store opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitCounts {
    /// Transactions of ingest committed (a group, or a batch written alone after its group failed).
    pub transactions: u64,
    /// Batches committed in them.
    pub batches: u64,
}

/// The queue of batches waiting for a commit, and whether a committer is running.
#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    queue: Mutex<Queue>,
    transactions: AtomicU64,
    batches: AtomicU64,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Pending>,
    committing: bool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("waiting", &self.waiting.len()).field("committing", &self.committing).finish()
    }
}

impl GroupCommit {
    /// Queue `pending`; `true` if the caller must start a committer ([`run`](Self::run)).
    fn push(&self, pending: Pending) -> bool {
        let mut queue = self.lock();
        queue.waiting.push_back(pending);
        !std::mem::replace(&mut queue.committing, true)
    }

    /// The committer: until the queue is empty, take the writer, then the waiting batches, and
    /// commit them as one group. Blocking: run it on a blocking thread.
    fn run(&self, writer: &Mutex<Option<Connection>>) {
        // Should a statement panic, the batches still waiting are failed and the next batch
        // starts a new committer, instead of every later batch waiting for this one.
        let _stopped = Stopped(self);
        loop {
            // A panic inside a statement leaves no open transaction behind (rusqlite rolls back
            // on drop), so the connection is still sound: recover from poisoning.
            let mut conn = writer.lock().unwrap_or_else(PoisonError::into_inner);
            let group = self.take();
            if group.is_empty() {
                return;
            }
            match conn.as_mut() {
                Some(conn) => self.commit(conn, group),
                None => group.into_iter().for_each(|p| p.answer(Err(StoreError::Closed))),
            }
        }
    }

    /// Transactions and batches committed so far.
    pub(super) fn counts(&self) -> CommitCounts {
        CommitCounts { transactions: self.transactions.load(Ordering::Relaxed), batches: self.batches.load(Ordering::Relaxed) }
    }

    /// Batches waiting for a committer.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next group, in arrival order, within the bounds; empty (and the committer marked
    /// stopped) when nothing waits.
    fn take(&self) -> Vec<Pending> {
        let mut queue = self.lock();
        let (mut rows, mut bytes, mut group) = (0, 0, Vec::new());
        while let Some(next) = queue.waiting.front() {
            let (next_rows, next_bytes) = (next.batch.rows.len(), next.batch.bytes());
            if !group.is_empty() && (rows + next_rows > MAX_GROUP_ROWS || bytes + next_bytes > MAX_GROUP_BYTES) {
                break;
            }
            rows += next_rows;
            bytes += next_bytes;
            group.extend(queue.waiting.pop_front());
        }
        if group.is_empty() {
            queue.committing = false;
        }
        group
    }

    /// Write `group` in one transaction and answer each batch; on any failure, write each batch
    /// alone instead.
    fn commit(&self, conn: &mut Connection, group: Vec<Pending>) {
        let written = (|| {
            // IMMEDIATE takes the write lock up front instead of failing on upgrade mid-group.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let outcomes = group.iter().map(|p| p.batch.write(&tx)).collect::<Result<Vec<_>, _>>()?;
            tx.commit()?;
            Ok::<_, StoreError>(outcomes)
        })();
        match written {
            Ok(outcomes) => {
                self.committed(group.len());
                for (pending, outcome) in group.into_iter().zip(outcomes) {
                    pending.answer(Ok(outcome));
                }
            }
            Err(e) if group.len() == 1 => {
                if let Some(alone) = group.into_iter().next() {
                    alone.answer(Err(e));
                }
            }
            Err(e) => {
                tracing::warn!(batches = group.len(), "a group commit failed ({e}); writing its batches one by one");
                for pending in group {
                    let alone = (|| {
                        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                        let outcomes = pending.batch.write(&tx)?;
                        tx.commit()?;
                        Ok(outcomes)
                    })();
                    if alone.is_ok() {
                        self.committed(1);
                    }
                    pending.answer(alone);
                }
            }
        }
    }

    fn committed(&self, batches: usize) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.batches.fetch_add(batches as u64, Ordering::Relaxed);
    }
}

/// Marks the committer stopped if it unwinds, failing what waits.
struct Stopped<'a>(&'a GroupCommit);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let waiting = {
                let mut queue = self.0.lock();
                queue.committing = false;
                std::mem::take(&mut queue.waiting)
            };
            for pending in waiting {
                pending.answer(Err(StoreError::Task("the writer failed while this batch waited".into())));
            }
        }
    }
}

/// Queue `batch` on `group` and wait for its commit, starting a committer if none runs.
pub(super) async fn insert(group: &Arc<GroupCommit>, writer: &Arc<Mutex<Option<Connection>>>, batch: Batch) -> Outcome {
    let (reply, outcome) = oneshot::channel();
    if group.push(Pending { batch, reply }) {
        let (group, writer) = (Arc::clone(group), Arc::clone(writer));
        tokio::task::spawn_blocking(move || group.run(&writer));
    }
    outcome.await.map_err(|_| StoreError::Task("the writer stopped before it committed the batch".into()))?
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use chrono::Utc;
    use vantage_measurement::{Measurement, example};

    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Filter, Store};

    /// Holds the writer connection on a thread of its own until the returned sender is used, as
    /// a long statement would; batches arriving meanwhile queue up.
    fn hold_writer(store: &SqliteStore) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let (release, released) = mpsc::channel::<()>();
        let (held, is_held) = mpsc::channel::<()>();
        let writer = Arc::clone(&store.writer);
        let holder = std::thread::spawn(move || {
            let _conn = writer.lock().unwrap_or_else(PoisonError::into_inner);
            held.send(()).expect("the test waits");
            let _ = released.recv();
        });
        is_held.recv().expect("the writer is held");
        (release, holder)
    }

    /// Start inserting each of `batches`, one after the other: each is queued before the next
    /// starts, so the queue holds them in the order given.
    async fn queue_all(store: &Arc<SqliteStore>, batches: Vec<Vec<Measurement>>) -> Vec<tokio::task::JoinHandle<Outcome>> {
        let mut tasks = Vec::with_capacity(batches.len());
        for batch in batches {
            let queued = store.group.waiting();
            let inserting = Arc::clone(store);
            tasks.push(tokio::spawn(async move { inserting.insert_batch(&batch, None, None, Utc::now()).await }));
            while store.group.waiting() == queued {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        tasks
    }

    async fn stored(store: &SqliteStore) -> u64 {
        store.count().await.expect("count")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_waiting_together_commit_in_one_transaction_exactly_once_and_durably() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open(dir.path()).await.expect("open"));
        // Twenty batches of three; each batch repeats the last measurement of the one before.
        let mut batches: Vec<Vec<Measurement>> = Vec::new();
        for i in 0..20 {
            let mut batch: Vec<_> = (0..3).map(|_| example::tls_reset(Utc::now())).collect();
            if let Some(previous) = batches.last() {
                batch[0] = previous[2].clone();
            }
            batches.push(batch);
            assert_eq!(batches.len(), i + 1);
        }
        let (release, holder) = hold_writer(&store);
        let tasks = queue_all(&store, batches).await;
        release.send(()).expect("release");
        holder.join().expect("holder");

        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.expect("task").expect("committed"));
        }
        assert_eq!(store.commit_counts(), CommitCounts { transactions: 1, batches: 20 }, "one group, one commit");
        assert_eq!(outcomes[0], vec![InsertOutcome::Inserted; 3]);
        for later in &outcomes[1..] {
            assert_eq!(later, &[InsertOutcome::Duplicate, InsertOutcome::Inserted, InsertOutcome::Inserted], "in arrival order");
        }
        // Every acknowledged row is in the file after a reopen.
        store.close().await.expect("close");
        let reopened = SqliteStore::open(dir.path()).await.expect("reopen");
        assert_eq!(stored(&reopened).await, 3 + 19 * 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_that_fails_inside_a_group_fails_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open(dir.path()).await.expect("open"));
        // A constraint only the writer connection knows: a row of target `poison` aborts.
        store
            .with_writer(|conn| {
                conn.execute_batch(
                    "CREATE TEMP TRIGGER poison BEFORE INSERT ON measurements WHEN NEW.target = 'poison'
                     BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;",
                )?;
                Ok(())
            })
            .await
            .expect("trigger");
        let good = || vec![example::tls_reset(Utc::now()), example::tls_reset(Utc::now())];
        let mut poisoned = good();
        poisoned[1].target.name = "poison".into();
        let (first, second) = (good(), good());

        let (release, holder) = hold_writer(&store);
        let tasks = queue_all(&store, vec![first.clone(), poisoned, second.clone()]).await;
        release.send(()).expect("release");
        holder.join().expect("holder");
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("task"));
        }
        assert_eq!(results[0].as_ref().expect("first"), &[InsertOutcome::Inserted; 2]);
        assert!(matches!(&results[1], Err(StoreError::Database(e)) if e.contains("poisoned row")), "{:?}", results[1]);
        assert_eq!(results[2].as_ref().expect("second"), &[InsertOutcome::Inserted; 2]);
        assert_eq!(store.commit_counts(), CommitCounts { transactions: 2, batches: 2 }, "the group fell back to one by one");

        // Nothing of the failed batch was written, not even its good row.
        let mut rows = store.query(&Filter::default(), 10).await.expect("query");
        let mut ids = std::collections::HashSet::new();
        while let Some(line) = rows.recv().await {
            ids.insert(serde_json::from_str::<Measurement>(&line.expect("row")).expect("measurement").id);
        }
        let expected: std::collections::HashSet<_> = first.iter().chain(&second).map(|m| m.id).collect();
        assert_eq!(ids, expected);
    }
}
