//! What only the PostgreSQL store has: migrations from an older layout, replicas opening a fresh
//! database at once, a refused newer layout, a URL whose password never shows.

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
    {
        // A database as a layout-1 collector left it: only the first step, and its rows.
        let v1 = PostgresStore::open_at_layout(&url, 1).await.expect("layout 1");
        v1.insert_batch(std::slice::from_ref(&old), Some(&key), None, Utc::now()).await.expect("v1 row");
        v1.close().await.expect("close");
    }
    let client = raw(&url).await;
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
