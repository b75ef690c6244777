//! Property: whatever mix of valid, repeated and refused lines a batch holds, the store ends up
//! holding what it held before plus the batch's new valid measurements, once each, exactly as
//! sent; a refused line changes nothing, not even a stored measurement whose id it carries.
//!
//! Each case starts a collector, stores an earlier batch, then posts the mixed batch through the
//! HTTP API (plain or gzip, anonymous or signed, LF or CRLF, with blank lines) and compares the
//! report, the store's count and every stored row with a model.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestRng, TestRunner};
use uuid::{Builder, Uuid};
use vantage_collector::{App, Config, SqliteStore, Store};
use vantage_measurement::wire::{IngestReport, KEY_HEADER, SIGNATURE_HEADER};
use vantage_measurement::{Measurement, Status, example};

use crate::support::{Collector, gzip, probe_key};

/// Cases per run: each starts a collector, so a few seconds in all.
const CASES: u32 = 32;

/// A valid measurement, as the generator describes it.
#[derive(Clone, Debug)]
struct Fresh {
    random: [u8; 10],
    age_secs: i64,
    cc: &'static str,
    asn: u32,
    target: String,
    blocked: bool,
    t_start_ms: f64,
}

impl Fresh {
    fn build(&self, now: DateTime<Utc>) -> Measurement {
        let started_at = DateTime::from_timestamp(now.timestamp() - self.age_secs, 0).expect("valid time");
        let mut m = example::tls_reset(started_at);
        m.id = Builder::from_unix_timestamp_millis(started_at.timestamp_millis() as u64, &self.random).into_uuid();
        m.probe.cc = self.cc.into();
        m.probe.asn = self.asn;
        m.target.name = self.target.clone();
        m.observations[0].t_start_ms = self.t_start_ms;
        if !self.blocked {
            m.verdict.status = Status::Ok;
            m.verdict.mechanism = None;
        }
        m
    }
}

/// How a refused line is broken. Each breaks one rule of an otherwise valid line.
#[derive(Clone, Copy, Debug)]
enum Corruption {
    LowerCaseCountry,
    SchemaVersion2,
    UuidV4,
    FarFuture,
    TooOld,
    TooManyObservations,
    BadName,
    NoMechanism,
    UnknownField,
    /// Cut after this share (per mille) of the line.
    Truncated(u16),
    NotJson,
}

impl Corruption {
    /// The line, its refusal reason, and the id the report names.
    fn apply(self, m: &Measurement, now: DateTime<Utc>) -> (String, &'static str, Option<Uuid>) {
        let mut m = m.clone();
        let line = |m: &Measurement| m.to_json_line().expect("serialise");
        let with_json = |m: &Measurement, key: &str, value: serde_json::Value| {
            let mut v = serde_json::to_value(m).expect("serialise");
            v[key] = value;
            v.to_string()
        };
        match self {
            Self::LowerCaseCountry => {
                m.probe.cc = m.probe.cc.to_lowercase();
                (line(&m), "invalid_country", Some(m.id))
            }
            Self::SchemaVersion2 => (with_json(&m, "schema_version", 2.into()), "unsupported_schema_version", Some(m.id)),
            Self::UuidV4 => {
                m.id = Builder::from_random_bytes(*m.id.as_bytes()).into_uuid();
                (line(&m), "invalid_id", Some(m.id))
            }
            Self::FarFuture | Self::TooOld => {
                let shift = if matches!(self, Self::FarFuture) { Duration::days(2) } else { -Duration::days(100) };
                m.started_at = DateTime::from_timestamp((now + shift).timestamp(), 0).expect("valid time");
                (line(&m), "started_at_out_of_range", Some(m.id))
            }
            Self::TooManyObservations => {
                m.observations = std::iter::repeat_n(m.observations[0].clone(), 65).collect();
                (line(&m), "too_many_observations", Some(m.id))
            }
            Self::BadName => {
                m.target.name = "has space".into();
                (line(&m), "invalid_name", Some(m.id))
            }
            Self::NoMechanism => {
                m.verdict.status = Status::Blocked;
                m.verdict.mechanism = None;
                (line(&m), "verdict_without_mechanism", Some(m.id))
            }
            Self::UnknownField => (with_json(&m, "extra", 1.into()), "malformed", Some(m.id)),
            Self::Truncated(share) => {
                let full = line(&m);
                let cut = (full.len() * usize::from(share) / 1000).clamp(1, full.len() - 1);
                (full[..cut].to_string(), "malformed", None)
            }
            Self::NotJson => ("not a measurement".into(), "malformed", None),
        }
    }
}

/// One line of the batch under test.
#[derive(Clone, Debug)]
enum Planned {
    Valid(Fresh),
    /// The `n`th known measurement (stored earlier or valid earlier in this batch) sent again.
    Repeat(usize),
    /// A broken copy of a new measurement.
    Refused(Corruption, Fresh),
    /// A broken copy of the `n`th known measurement (its id is stored or about to be).
    RefusedKnown(Corruption, usize),
}

#[derive(Clone, Debug)]
struct Case {
    earlier: Vec<Fresh>,
    lines: Vec<Planned>,
    gzip: bool,
    signed: bool,
    crlf: bool,
    /// Blank lines before each line (cycled).
    blanks: Vec<u8>,
}

fn fresh() -> impl Strategy<Value = Fresh> {
    (
        any::<[u8; 10]>(),
        0..80 * 86_400i64,
        prop::sample::select(&["ZZ", "DE", "IR", "RU", "CN"][..]),
        any::<u32>(),
        "[a-z][a-z0-9.-]{0,15}",
        any::<bool>(),
        prop_oneof![Just(0.0), prop::num::f64::POSITIVE | prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL],
    )
        .prop_map(|(random, age_secs, cc, asn, target, blocked, t_start_ms)| Fresh {
            random,
            age_secs,
            cc,
            asn,
            target,
            blocked,
            t_start_ms,
        })
}

fn corruption() -> impl Strategy<Value = Corruption> {
    use Corruption::*;
    prop_oneof![
        prop::sample::select(
            &[
                LowerCaseCountry,
                SchemaVersion2,
                UuidV4,
                FarFuture,
                TooOld,
                TooManyObservations,
                BadName,
                NoMechanism,
                UnknownField,
                NotJson
            ][..]
        ),
        (0u16..1000).prop_map(Truncated),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let planned = prop_oneof![
        3 => fresh().prop_map(Planned::Valid),
        1 => any::<usize>().prop_map(Planned::Repeat),
        2 => (corruption(), fresh()).prop_map(|(c, f)| Planned::Refused(c, f)),
        2 => (corruption(), any::<usize>()).prop_map(|(c, n)| Planned::RefusedKnown(c, n)),
    ];
    (
        prop::collection::vec(fresh(), 0..4),
        prop::collection::vec(planned, 1..12),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(0u8..3, 1..4),
    )
        .prop_map(|(earlier, lines, gzip, signed, crlf, blanks)| Case { earlier, lines, gzip, signed, crlf, blanks })
}

/// What the collector should answer and store.
struct Expected {
    body: String,
    report: IngestReport,
    stored: BTreeMap<Uuid, Measurement>,
}

/// Build the body and the model's answer. `known` are the measurements stored before the batch.
fn plan(case: &Case, stored: &BTreeMap<Uuid, Measurement>, now: DateTime<Utc>) -> Expected {
    let mut known: Vec<Measurement> = stored.values().cloned().collect();
    let mut after = stored.clone();
    let mut report = IngestReport::default();
    let (mut body, mut physical) = (String::new(), 0);
    let newline = if case.crlf { "\r\n" } else { "\n" };
    for (i, planned) in case.lines.iter().enumerate() {
        for _ in 0..case.blanks[i % case.blanks.len()] {
            body.push_str(newline);
            physical += 1;
        }
        physical += 1;
        let valid = |m: Measurement, after: &mut BTreeMap<Uuid, Measurement>, report: &mut IngestReport| match after.entry(m.id) {
            std::collections::btree_map::Entry::Occupied(_) => report.duplicates += 1,
            std::collections::btree_map::Entry::Vacant(slot) => {
                report.accepted += 1;
                slot.insert(m);
            }
        };
        let line = match planned {
            Planned::Valid(f) => {
                let m = f.build(now);
                known.push(m.clone());
                valid(m.clone(), &mut after, &mut report);
                m.to_json_line().expect("serialise")
            }
            Planned::Repeat(n) if !known.is_empty() => {
                let m = known[n % known.len()].clone();
                valid(m.clone(), &mut after, &mut report);
                m.to_json_line().expect("serialise")
            }
            Planned::Repeat(_) => {
                // Nothing to repeat yet: an empty JSON line is refused like any other.
                report.rejected.push(rejected(physical, "malformed", None));
                "{}".into()
            }
            Planned::Refused(c, f) => refuse(c.apply(&f.build(now), now), physical, &mut report),
            Planned::RefusedKnown(c, n) => {
                let m = known.get(n % known.len().max(1)).cloned().unwrap_or_else(|| case.earlier_or_default(now));
                refuse(c.apply(&m, now), physical, &mut report)
            }
        };
        body.push_str(&line);
        body.push_str(newline);
    }
    Expected { body, report, stored: after }
}

impl Case {
    /// A measurement to break when nothing is known yet.
    fn earlier_or_default(&self, now: DateTime<Utc>) -> Measurement {
        let fallback =
            Fresh { random: [0; 10], age_secs: 0, cc: "ZZ", asn: 0, target: "x".into(), blocked: true, t_start_ms: 0.0 };
        self.earlier.first().unwrap_or(&fallback).build(now)
    }
}

fn refuse((line, reason, id): (String, &'static str, Option<Uuid>), physical: usize, report: &mut IngestReport) -> String {
    report.rejected.push(rejected(physical, reason, id));
    line
}

fn rejected(line: usize, reason: &str, id: Option<Uuid>) -> vantage_measurement::wire::RejectedLine {
    vantage_measurement::wire::RejectedLine { line, id, reason: reason.into(), detail: String::new() }
}

/// Everything stored, by id.
async fn stored(collector: &Collector) -> BTreeMap<Uuid, Measurement> {
    collector.query("limit=100000").await.into_iter().map(|m| (m.id, m)).collect()
}

async fn run_case(case: Case) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("data")).await.expect("open the store"));
    let config = Config::new("127.0.0.1:0".parse().expect("addr"), dir.path().join("data"));
    let collector = Collector::serve(App::bind_with_store(config, store.clone()).await.expect("bind"), dir);
    let now = Utc::now();
    let earlier: Vec<Measurement> = case.earlier.iter().map(|f| f.build(now)).collect();
    if !earlier.is_empty() {
        collector.ingest(&earlier).await;
    }
    let before = stored(&collector).await;
    let count_before = store.count().await.expect("count");
    prop_assert_eq!(count_before as usize, before.len());

    let expected = plan(&case, &before, now);
    let raw = if case.gzip { gzip(expected.body.as_bytes()) } else { expected.body.clone().into_bytes() };
    let mut request = collector.http.post(collector.url("/api/v1/measurements"));
    if case.gzip {
        request = request.header("content-encoding", "gzip");
    }
    if case.signed {
        let key = probe_key(1);
        request = request.header(KEY_HEADER, key.public_key_base64()).header(SIGNATURE_HEADER, key.sign_base64(&raw));
    }
    let response = request.body(raw).send().await.expect("POST");
    prop_assert_eq!(response.status(), 200);
    let mut report: IngestReport = response.json().await.expect("report");
    // The key's standing (the trust tests' subject) is told for signed batches only.
    prop_assert_eq!(report.key.is_some(), case.signed);
    report.key = None;
    for r in &mut report.rejected {
        prop_assert!(!r.detail.is_empty(), "each refusal says why");
        r.detail.clear();
    }
    prop_assert_eq!(&report, &expected.report);

    let after = stored(&collector).await;
    prop_assert_eq!(store.count().await.expect("count"), count_before + expected.report.accepted as u64);
    prop_assert_eq!(after, expected.stored, "the store holds what it held plus the batch's valid lines");
    Ok(())
}

#[test]
fn refused_lines_leave_the_store_unchanged_and_valid_ones_are_stored_once() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let config = ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    runner.run(&case(), |case| runtime.block_on(run_case(case))).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn each_corruption_is_refused_for_the_reason_the_model_expects() {
    // Checked against `parse_line` too, so a wrong expectation shows without a server.
    let now = Utc::now();
    let m = Fresh { random: [1; 10], age_secs: 60, cc: "DE", asn: 3320, target: "site".into(), blocked: true, t_start_ms: 0.5 }
        .build(now);
    vantage_measurement::parse_line(&m.to_json_line().expect("serialise"), now).expect("the base line is valid");
    use Corruption::*;
    let all = [
        LowerCaseCountry,
        SchemaVersion2,
        UuidV4,
        FarFuture,
        TooOld,
        TooManyObservations,
        BadName,
        NoMechanism,
        UnknownField,
        Truncated(0),
        Truncated(500),
        Truncated(999),
        NotJson,
    ];
    for c in all {
        let (line, reason, _) = c.apply(&m, now);
        let refused = vantage_measurement::parse_line(&line, now).expect_err("refused");
        assert_eq!(refused.code().as_str(), reason, "{c:?}");
    }
}
