//! What only the PostgreSQL store has: migrations from an older layout, replicas opening a fresh
//! database at once, a refused newer layout, a URL whose password never shows, blobs kept by the
//! last day that uses them.

use chrono::Utc;
use vantage_collector::store::postgres::schema::SCHEMA_VERSION;
use vantage_collector::store::{Filter, PostgresStore, Store, StoreError};
use vantage_measurement::example;
use vantage_measurement::wire::ProbeKey;
use vantage_tests::postgres::TempPostgres;

use crate::collect;

async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

async fn versions(client: &tokio_postgres::Client) -> Vec<i32> {
    let rows = client.query("SELECT version FROM schema_migrations ORDER BY version", &[]).await.expect("versions");
    rows.iter().map(|r| r.get(0)).collect()
}

fn fresh_url() -> String {
    TempPostgres::shared().expect("PostgreSQL").create_database("pg_only").expect("database")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layout_1_database_is_migrated_and_keeps_its_data() {
    let url = fresh_url();
    let key = ProbeKey::from_seed(&[5; 32]).key_id();
    let old = example::tls_reset(Utc::now());
    let client = raw(&url).await;
    {
        // A database as a layout-1 collector left it: only the first step, and a row written the
        // way that layout wrote them (the whole line in `body`), in its day's partition.
        let v1 = PostgresStore::open_at_layout(&url, 1).await.expect("layout 1");
        v1.close().await.expect("close");
        let day = old.started_at.timestamp().div_euclid(86_400) as i32;
        let partition = format!("measurements_p{}", old.started_at.format("%Y%m%d"));
        client
            .batch_execute(&format!(
                "CREATE TABLE {partition} PARTITION OF measurements FOR VALUES FROM ({day}) TO ({})",
                day + 1
            ))
            .await
            .expect("partition");
        let received = Utc::now().timestamp();
        client
            .execute(
                "INSERT INTO measurements (day, id, received_at, started_at, cc, asn, test, target, status, mechanism, body, probe_key)
                 VALUES ($1, $2, $3, $4, 'ZZ', 0, 'tls', $5, 'blocked', 'tls.reset_after_clienthello', $6, $7)",
                &[&day, &old.id, &received, &old.started_at.timestamp(), &old.target.name, &old.to_json_line().expect("line"), &key.as_str()],
            )
            .await
            .expect("v1 row");
        client
            .execute(
                "INSERT INTO probe_keys (key_id, first_received, last_received, last_day, days, measurements) VALUES ($1, $2, $2, $3, 1, 1)",
                &[&key.as_str(), &received, &received.div_euclid(86_400)],
            )
            .await
            .expect("v1 key record");
    }
    assert_eq!(versions(&client).await, vec![1]);

    let store = PostgresStore::open(&url).await.expect("open migrates");
    assert_eq!(collect(&store, &Filter::default(), 10).await, vec![old.clone()]);
    assert_eq!(store.key_activity(&key).await.expect("read").expect("kept").measurements, 1);
    let new = example::tls_reset(Utc::now());
    store.insert_batch(std::slice::from_ref(&new), Some(&key), None, Utc::now()).await.expect("after migration");
    assert_eq!(store.count().await.expect("count"), 2);
    assert_eq!(versions(&client).await, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    let fleet_index: i64 = client
        .query_one("SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'measurements_fleet_received'", &[])
        .await
        .expect("index")
        .get(0);
    assert_eq!(fleet_index, 1, "step 2 ran");
    // Opening again changes nothing.
    let again = PostgresStore::open(&url).await.expect("reopen");
    assert_eq!(again.count().await.expect("count"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_opening_a_fresh_database_at_once_all_succeed() {
    let url = fresh_url();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::open(&url).await })
        })
        .collect();
    for open in opens {
        open.await.expect("task").expect("every replica opens");
    }
    let client = raw(&url).await;
    let steps: i64 = client.query_one("SELECT COUNT(*) FROM schema_migrations", &[]).await.expect("count").get(0);
    assert_eq!(steps, i64::from(SCHEMA_VERSION), "each step ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_layout_is_refused() {
    let url = fresh_url();
    PostgresStore::open(&url).await.expect("open").close().await.expect("close");
    raw(&url).await.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&(SCHEMA_VERSION + 1)]).await.expect("bump");
    let err = PostgresStore::open(&url).await.expect_err("newer");
    assert!(matches!(err, StoreError::Incompatible(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_an_open_error_without_the_password() {
    let server = TempPostgres::shared().expect("PostgreSQL");
    let url = format!("postgres://postgres:s3cret@127.0.0.1:{}/no_such_database", server.port());
    let err = PostgresStore::open(&url).await.expect_err("no such database");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{text}");
    assert!(!text.contains("s3cret") && text.contains("no_such_database"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_url_works() {
    let server = TempPostgres::shared().expect("PostgreSQL");
    let url = format!("postgres://postgres@/postgres?host={}&port={}", server.socket_dir().display(), server.port());
    let store = PostgresStore::open(&url).await.expect("over the unix socket");
    store.ping().await.expect("ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_are_stored_once_and_leave_with_the_last_day_that_uses_them() {
    let url = fresh_url();
    let store = PostgresStore::open(&url).await.expect("open");
    let client = raw(&url).await;
    let blobs = || async { client.query_one("SELECT COUNT(*) FROM blobs", &[]).await.expect("count").get::<_, i64>(0) };
    let day = 86_400;
    let today = Utc::now().timestamp() / day * day;
    let at = |secs: i64| chrono::DateTime::from_timestamp(secs, 0).expect("time");
    // 200 handshakes of one fleet three days ago and 200 more today: the same servers' chains.
    let old: Vec<_> = (0..200).map(|n| example::tls_fleet(n, at(today - 3 * day + n as i64))).collect();
    let new: Vec<_> = (200..400).map(|n| example::tls_fleet(n, at(today + n as i64 % 3600))).collect();
    store.insert_batch(&old, None, None, Utc::now()).await.expect("old");
    let after_old = blobs().await;
    assert!(after_old > 0 && after_old < 200, "chains repeat across rows, so fewer blobs than rows: {after_old}");
    store.insert_batch(&new, None, None, Utc::now()).await.expect("new");
    let after_new = blobs().await;
    assert_eq!(collect(&store, &Filter::default(), 1000).await.len(), 400, "every row reads back");

    // Dropping the old days drops only the blobs no kept row uses.
    assert_eq!(store.retain(at(today - day)).await.expect("retain"), 200);
    let kept = blobs().await;
    let only_new = {
        let url = fresh_url();
        let alone = PostgresStore::open(&url).await.expect("open");
        alone.insert_batch(&new, None, None, Utc::now()).await.expect("new alone");
        raw(&url).await.query_one("SELECT COUNT(*) FROM blobs", &[]).await.expect("count").get::<_, i64>(0)
    };
    assert_eq!(kept, only_new, "what is left is what today's rows need (before: {after_new})");
    assert_eq!(collect(&store, &Filter::default(), 1000).await, new, "today's rows read back whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_waiting_together_commit_in_one_transaction_and_a_bad_one_fails_alone() {
    let url = fresh_url();
    let store = std::sync::Arc::new(PostgresStore::open(&url).await.expect("open"));
    // A row the database refuses: the batch holding it must fail, and only that batch.
    raw(&url)
        .await
        .batch_execute(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.target = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER poison BEFORE INSERT ON measurements FOR EACH ROW EXECUTE FUNCTION poison();",
        )
        .await
        .expect("trigger");
    let now = Utc::now();
    let batches: Vec<Vec<_>> = (0..40u64)
        .map(|b| {
            (0..10u64)
                .map(|i| {
                    let mut m = example::tls_fleet(b * 10 + i, now - chrono::Duration::seconds((b * 10 + i) as i64));
                    if b == 17 && i == 3 {
                        m.target.name = "poison".into();
                    }
                    m
                })
                .collect()
        })
        .collect();
    let (before, _) = store.commit_counts();
    let held = store.hold_writers().expect("all writers idle");
    let tasks: Vec<_> = batches
        .iter()
        .cloned()
        .map(|batch| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move { store.insert_batch(&batch, None, None, Utc::now()).await })
        })
        .collect();
    while store.queued_batches() < batches.len() {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    drop(held);
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    for (b, result) in results.iter().enumerate() {
        if b == 17 {
            assert!(matches!(result, Err(StoreError::Database(m)) if m.contains("poisoned row")), "{result:?}");
        } else {
            assert_eq!(result.as_ref().expect("stored").len(), 10, "batch {b}");
        }
    }
    // One group of forty failed as a whole; then each batch alone: 39 commits, one refusal.
    assert_eq!(store.commit_counts().0 - before, 39);
    assert_eq!(store.count().await.expect("count"), 390);

    // Without a bad batch, forty queued batches of one key are one transaction; each batch
    // repeats the last measurement of the one before, which the group stores once.
    use vantage_collector::InsertOutcome::{Duplicate, Inserted};
    let key = ProbeKey::from_seed(&[8; 32]).key_id();
    let mut batches: Vec<Vec<vantage_measurement::Measurement>> = Vec::new();
    for b in 0..40u64 {
        let mut batch: Vec<_> = (0..10u64).map(|i| example::tls_fleet(1000 + b * 10 + i, now)).collect();
        if let Some(previous) = batches.last() {
            batch[0] = previous[9].clone();
        }
        batches.push(batch);
    }
    let held = store.hold_writers().expect("all writers idle");
    let (before, _) = store.commit_counts();
    let mut tasks = Vec::new();
    for batch in batches {
        // One at a time into the queue, so the group holds them in this order.
        let queued = store.queued_batches();
        let (inserting, key) = (std::sync::Arc::clone(&store), key.clone());
        tasks.push(tokio::spawn(async move { inserting.insert_batch(&batch, Some(&key), None, Utc::now()).await }));
        while store.queued_batches() == queued {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
    drop(held);
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task").expect("stored"));
    }
    assert_eq!(outcomes[0], vec![Inserted; 10]);
    for later in &outcomes[1..] {
        assert_eq!(later[..2], [Duplicate, Inserted], "the repeated line is a duplicate, the rest new");
    }
    assert_eq!(store.commit_counts().0 - before, 1, "one group, one commit");
    assert_eq!(store.count().await.expect("count"), 390 + 10 + 39 * 9);
    let activity = store.key_activity(&key).await.expect("read").expect("recorded");
    assert_eq!(activity.measurements, 10 + 39 * 9, "the key's activity counts what the group stored");
}
