//! Validation of submitted lines: every rejection reason fires on its own input.

use chrono::{Duration, TimeZone, Utc};
use vantage_measurement::{Status, example, parse_line};

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).single().expect("valid date")
}

fn line_with(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v = serde_json::to_value(example::tls_reset(now())).expect("to value");
    edit(&mut v);
    v.to_string()
}

#[test]
fn the_example_round_trips_through_a_line() {
    let m = example::tls_reset(now());
    let back = parse_line(&m.to_json_line().expect("serialise"), now()).expect("valid");
    assert_eq!(back, m);
}

#[test]
fn each_rule_names_its_reason() {
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "malformed"),
        (line_with(|v| v["schema_version"] = 2.into()), "unsupported_schema_version"),
        (line_with(|v| v["id"] = "6fa459ea-ee8a-3ca4-894e-db77e160355e".into()), "invalid_id"),
        (line_with(|v| v["probe"]["cc"] = "de".into()), "invalid_country"),
        (line_with(|v| v["started_at"] = "2027-06-01T00:00:00Z".into()), "started_at_out_of_range"),
        (line_with(|v| v["id"] = example::id_at(now() - Duration::days(91)).to_string().into()), "id_out_of_range"),
        (line_with(|v| v["id"] = example::id_at(now() + Duration::hours(25)).to_string().into()), "id_out_of_range"),
        (line_with(|v| v["target"]["name"] = "has space".into()), "invalid_name"),
        (line_with(|v| v["verdict"] = serde_json::json!({"status": "blocked"})), "verdict_without_mechanism"),
        (line_with(|v| v["extra"] = 1.into()), "malformed"),
        (line_with(|v| v["verdict"]["mechanism"] = "dns.made_up".into()), "malformed"),
        (format!("{{\"pad\":\"{}\"}}", "x".repeat(300 * 1024)), "line_too_long"),
    ];
    for (line, code) in cases {
        let err = parse_line(&line, now()).expect_err(code);
        assert_eq!(err.code().as_str(), code, "{err}");
    }
}

#[test]
fn too_many_observations_is_refused() {
    let mut m = example::tls_reset(now());
    let one = m.observations[0].clone();
    m.observations = vec![one; 65];
    assert_eq!(parse_line(&m.to_json_line().expect("serialise"), now()).unwrap_err().code().as_str(), "too_many_observations");
}

#[test]
fn a_month_old_spooled_measurement_is_still_accepted() {
    let m = example::tls_reset(now() - Duration::days(30));
    assert!(parse_line(&m.to_json_line().expect("serialise"), now()).is_ok());
}

#[test]
fn ok_needs_no_mechanism() {
    let line = line_with(|v| v["verdict"] = serde_json::json!({"status": "ok"}));
    assert_eq!(parse_line(&line, now()).expect("valid").verdict.status, Status::Ok);
}

#[test]
fn a_target_list_version_round_trips_and_stays_optional() {
    let mut m = example::tls_reset(now());
    m.target.list_version = Some(42);
    let line = m.to_json_line().expect("serialise");
    assert!(line.contains(r#""list_version":42"#), "{line}");
    assert_eq!(parse_line(&line, now()).expect("valid"), m);
    // A line from a probe that measured from a targets file has no such key, and still parses.
    let without = line_with(|v| {
        if let Some(target) = v["target"].as_object_mut() {
            target.remove("list_version");
        }
    });
    assert_eq!(parse_line(&without, now()).expect("valid").target.list_version, None);
    // Not a number: refused like any other malformed field.
    let bad = line_with(|v| v["target"]["list_version"] = "seven".into());
    assert_eq!(parse_line(&bad, now()).expect_err("a string").code().as_str(), "malformed");
}
