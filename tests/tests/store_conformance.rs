//! One conformance suite for every store backend: each case is an async function taking a fresh
//! store location, run once against SQLite and once against PostgreSQL (a throwaway server
//! shared by this binary, a fresh database per case). Cases that only one backend can have
//! (PostgreSQL's migrations, duties shared between replicas) are in `postgres_only`; what replicas
//! share (the fleet snapshot, the series budget) is in `shared`.

#[path = "store_conformance/aggregate.rs"]
mod aggregate;
#[path = "store_conformance/cases.rs"]
mod cases;
#[path = "store_conformance/fleet.rs"]
mod fleet;
#[path = "store_conformance/postgres_only.rs"]
mod postgres_only;
#[path = "store_conformance/publications.rs"]
mod publications;
#[path = "store_conformance/research.rs"]
mod research;
#[path = "store_conformance/shared.rs"]
mod shared;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use vantage_collector::store::{self, Filter, Store, StoreLocation};
use vantage_measurement::Measurement;
use vantage_tests::postgres::TempPostgres;

/// Which database a case runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty store location; [`Fresh::open`] may be called more than once (replicas, or a
/// restart).
pub struct Fresh {
    pub backend: Backend,
    pub location: StoreLocation,
    _dir: Option<tempfile::TempDir>,
}

impl Fresh {
    pub fn new(backend: Backend) -> Fresh {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                Fresh { backend, location: StoreLocation::Sqlite { data_dir: dir.path().to_path_buf() }, _dir: Some(dir) }
            }
            Backend::Postgres => {
                let server = TempPostgres::shared().expect("PostgreSQL for the conformance suite");
                let url = server.create_database("conformance").expect("a fresh database");
                Fresh { backend, location: StoreLocation::Postgres { url }, _dir: None }
            }
        }
    }

    pub async fn open(&self) -> Arc<dyn Store> {
        store::open(&self.location).await.expect("open the store")
    }
}

pub fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).expect("valid time")
}

/// Every row a query returns, as lines.
pub async fn lines(store: &dyn Store, filter: &Filter, limit: usize) -> Vec<String> {
    let mut rx = store.query(filter, limit).await.expect("query");
    let mut out = Vec::new();
    while let Some(line) = rx.recv().await {
        out.push(line.expect("row"));
    }
    out
}

/// Every row a query returns, parsed.
pub async fn collect(store: &dyn Store, filter: &Filter, limit: usize) -> Vec<Measurement> {
    lines(store, filter, limit).await.iter().map(|l| serde_json::from_str(l).expect("stored line parses")).collect()
}

/// Each case twice: `sqlite::case` and `postgres::case`.
macro_rules! conformance {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::$module::$case(crate::Fresh::new(crate::Backend::Sqlite)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::$module::$case(crate::Fresh::new(crate::Backend::Postgres)).await;
                }
            )*
        }
    };
}

conformance!(
    aggregate::aggregates_count_every_group_like_a_row_by_row_model,
    aggregate::counted_aggregates_read_only_the_listed_keys_and_no_contradicted_row,
    research::the_standing_at_ingest_is_stored_beside_each_row_and_filters,
    research::positions_and_keyset_bounds_walk_every_row_once,
    cases::duplicates_within_and_across_batches_are_stored_once,
    cases::concurrent_inserts_of_one_id_store_it_once,
    cases::filters_select_by_every_indexed_column_in_time_order,
    cases::the_observed_location_is_added_to_rows_and_a_probes_rows_can_be_deleted,
    cases::a_closed_store_refuses_work_and_reopens_with_its_data,
    cases::queries_beyond_the_limit_are_refused_busy,
    cases::activity_counts_new_measurements_and_distinct_days_and_survives_registration,
    cases::the_salt_is_made_once_and_kept,
    cases::retention_drops_whole_days_by_the_id_and_keeps_the_rest,
    fleet::each_probe_counts_once_with_its_latest_verdict_in_the_window,
    fleet::a_streak_starts_at_the_first_block_after_the_last_ok,
    fleet::only_counted_keys_and_uncontradicted_rows_are_read,
    fleet::duties_are_held_by_one_store_at_a_time,
    shared::the_latest_fleet_snapshot_wins_and_an_older_one_never_overwrites_it,
    shared::series_admission_holds_the_cap_across_stores_and_answers_alike,
    publications::a_days_rows_come_by_arrival_grouped_by_country_and_test_in_id_order,
    publications::a_published_manifest_is_never_overwritten,
);

/// The same input gives the same rows, byte for byte, from both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_return_the_same_bytes() {
    use vantage_measurement::wire::{ObservedLocation, ProbeKey};
    let key = ProbeKey::from_seed(&[9; 32]).key_id();
    let seen = ObservedLocation { cc: Some("DE".into()), asn: Some(3320) };
    let now = Utc::now();
    // Resets without chains, and a fleet's handshakes whose chains are stored once as blobs.
    let batch: Vec<Measurement> = (0..20)
        .map(|i| vantage_measurement::example::tls_reset(now - chrono::Duration::minutes(i)))
        .chain((0..20).map(|n| vantage_measurement::example::tls_fleet(n, now - chrono::Duration::seconds(n as i64))))
        .collect();
    let mut outputs = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let fresh = Fresh::new(backend);
        let store = fresh.open().await;
        store.insert_batch(&batch[..25], Some(&key), Some(&seen), now).await.expect("signed, observed");
        store.insert_batch(&batch[25..], None, None, now).await.expect("anonymous");
        outputs.push(lines(store.as_ref(), &Filter::default(), 100).await);
        store.close().await.expect("close");
    }
    assert_eq!(outputs[0].len(), 40);
    assert_eq!(outputs[0], outputs[1], "SQLite and PostgreSQL rows differ");
}
