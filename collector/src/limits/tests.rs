use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, Ordering};

use super::*;

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new(std::collections::HashSet::new(), 1000).expect("metrics"))
}

fn source(n: u8) -> Subject<'static> {
    Subject::Source(IpAddr::from([198, 51, 100, n]))
}

fn tight() -> Settings {
    Settings {
        ingest_per_source: Limit::Rate(Rate::per_hour(1, 1)),
        ingest_per_key: Limit::Rate(Rate::per_hour(2, 1)),
        helper_per_source: Limit::Off,
        register_per_source: Limit::Rate(Rate::per_hour(1, 1)),
        max_entries: 1,
    }
}

#[test]
fn a_refusal_names_the_limit_and_a_wait_in_whole_seconds() {
    let limiter = Limiter::new(&tight(), metrics());
    assert_eq!(check(&limiter, LimitedEndpoint::Ingest, source(1)), Ok(()));
    let limited = check(&limiter, LimitedEndpoint::Ingest, source(1)).expect_err("one an hour");
    assert_eq!((limited.endpoint, limited.scope, limited.cause), (LimitedEndpoint::Ingest, LimitScope::Source, Cause::OverRate));
    assert!(limited.retry_after > Duration::from_secs(3590) && limited.retry_after <= Duration::from_secs(3600));
    assert_eq!(
        limited.to_string(),
        format!("too many ingest requests from this address; retry in {} s", whole_seconds(limited.retry_after))
    );

    let key = [3u8; 32];
    assert_eq!(limiter.peek(LimitedEndpoint::Ingest, Subject::Key(&key)), Ok(()));
    assert_eq!(limiter.check(LimitedEndpoint::Ingest, Subject::Key(&key)), Ok(()));
    let limited = limiter.peek(LimitedEndpoint::Ingest, Subject::Key(&key)).expect_err("the key is spent");
    assert!(limited.to_string().starts_with("too many ingest requests from this probe key"), "{limited}");
}

#[test]
fn a_full_table_refuses_new_sources_with_its_own_message() {
    let limiter = Limiter::new(&tight(), metrics());
    limiter.check(LimitedEndpoint::Ingest, source(1)).expect("the only slot");
    let limited = limiter.check(LimitedEndpoint::Ingest, source(2)).expect_err("the table is full");
    assert_eq!(limited.cause, Cause::TableFull);
    assert!(limited.to_string().starts_with("the collector is limiting too many clients at once"), "{limited}");
}

#[test]
fn a_full_registration_table_still_lets_new_sources_register() {
    // The proof of work gates registration; a full table must not lock new volunteers out.
    let limiter = Limiter::new(&tight(), metrics());
    limiter.check(LimitedEndpoint::Register, source(1)).expect("the only slot");
    assert_eq!(limiter.check(LimitedEndpoint::Register, source(2)), Ok(()), "a new source, table full");
    let limited = limiter.check(LimitedEndpoint::Register, source(1)).expect_err("a tracked source keeps its rate");
    assert_eq!(limited.cause, Cause::OverRate);
}

#[test]
fn each_limiter_has_its_own_salt() {
    static CALLS: AtomicU8 = AtomicU8::new(0);
    fn salt() -> subject::Salt {
        CALLS.fetch_add(1, Ordering::Relaxed);
        random_salt()
    }
    let _limiter = Limiter::with_salts(&Settings::default(), metrics(), salt);
    assert_eq!(CALLS.load(Ordering::Relaxed), 1, "a salt is made at start");
    assert_ne!(random_salt(), random_salt(), "128 random bits");
}

#[tokio::test]
async fn a_refusal_is_answered_429_with_retry_after_and_the_reason() {
    let limited = RateLimited {
        endpoint: LimitedEndpoint::Ingest,
        scope: LimitScope::Key,
        retry_after: Duration::from_millis(1_001),
        cause: Cause::OverRate,
    };
    let response = limited.into_response();
    assert_eq!(response.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "2", "rounded up");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
    let json: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(
        json,
        serde_json::json!({"error": "too many ingest requests from this probe key; retry in 2 s", "reason": "rate_limited"})
    );
}

#[test]
fn the_debug_form_shows_nothing_of_the_tables() {
    let limiter = Limiter::new(&Settings::default(), metrics());
    limiter.check(LimitedEndpoint::Ingest, source(9)).expect("allowed");
    assert_eq!(format!("{limiter:?}"), "Limiter(..)");
}

#[test]
fn a_source_with_its_share_in_flight_is_told_to_come_back_in_a_second() {
    let limiter = Limiter::new(&Settings::default(), metrics());
    let ip = IpAddr::from([198, 51, 100, 1]);
    let held: Vec<_> =
        (0..INGEST_AT_ONCE_PER_SOURCE).map(|_| limiter.enter(LimitedEndpoint::Ingest, ip).expect("its share")).collect();
    let limited = limiter.enter(LimitedEndpoint::Ingest, ip).expect_err("one too many");
    assert_eq!(
        (limited.cause, limited.scope, limited.retry_after),
        (Cause::TooManyAtOnce, LimitScope::Source, Duration::from_secs(1))
    );
    assert_eq!(limited.to_string(), "too many ingest requests at once from this address; retry in 1 s");
    assert!(limiter.enter(LimitedEndpoint::Ingest, IpAddr::from([198, 51, 100, 2])).is_ok(), "another source");
    drop(held);
    assert!(limiter.enter(LimitedEndpoint::Ingest, ip).is_ok(), "back once one finished");
}
