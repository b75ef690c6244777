//! The researcher API: every filter selects, bad filters are named, rows stream in order.

use serde_json::Value;
use vantage_measurement::{Mechanism, Status, TestKind};

use crate::support::{Collector, measurement_at};

#[tokio::test]
async fn each_filter_selects_exactly_the_matching_measurements() {
    let collector = Collector::start().await;
    let now = chrono::Utc::now().timestamp();
    let early = measurement_at(now - 3600);
    let mut late = measurement_at(now - 60);
    late.probe.cc = "DE".into();
    late.probe.asn = 3320;
    late.test = TestKind::Tcp;
    late.target.name = "wikipedia".into();
    late.verdict.status = Status::Down;
    late.verdict.mechanism = Some(Mechanism::ControlFailed);
    collector.ingest(&[late.clone(), early.clone()]).await;

    assert_eq!(collector.query("").await, vec![early.clone(), late.clone()], "ordered by started_at");
    assert_eq!(collector.query("limit=1").await, vec![early.clone()]);
    let since = chrono::DateTime::from_timestamp(now - 120, 0).expect("time").to_rfc3339();
    let since = since.replace('+', "%2B");
    for query in [
        format!("since={since}"),
        "country=DE".into(),
        "asn=3320".into(),
        "test=tcp".into(),
        "target=wikipedia".into(),
        "verdict=down".into(),
        "mechanism=control.failed".into(),
        "country=DE&test=tcp&verdict=down".into(),
    ] {
        assert_eq!(collector.query(&query).await, vec![late.clone()], "{query}");
    }
    assert_eq!(collector.query(&format!("until={since}")).await, vec![early.clone()]);
    assert_eq!(collector.query("verdict=blocked&test=tls&country=ZZ").await, vec![early]);
    assert!(collector.query("country=FR").await.is_empty());
}

#[tokio::test]
async fn an_invalid_filter_is_400_naming_the_parameter() {
    let collector = Collector::start().await;
    for (query, parameter) in [
        ("since=last-tuesday", "since"),
        ("country=germany", "country"),
        ("asn=AS-x", "asn"),
        ("test=ping", "test"),
        ("verdict=censored", "verdict"),
        ("mechanism=magic", "mechanism"),
        ("limit=100001", "limit"),
        ("colour=red", "colour"),
    ] {
        let url = collector.url(&format!("/api/v1/measurements?{query}"));
        let response = collector.http.get(url).send().await.expect("GET");
        assert_eq!(response.status(), 400, "{query}");
        let error: Value = response.json().await.expect("error body");
        let message = error["error"].as_str().expect("message");
        assert!(message.contains(parameter), "{query}: {message}");
    }
}
