//! Bulk export and verification (issue 14): a day exported in every format by the binary and
//! checked offline by `verify`; a byte flipped in a file, a stored row changed after publication,
//! a wrong key, each caught; the HTTP routes for closed days, an open day's 404, the chain.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use flate2::read::GzDecoder;
use vantage_collector::clock::{Clock, ManualClock};
use vantage_collector::export::day::ExportError;
use vantage_collector::export::{manifest, publish, verify};
use vantage_collector::{SqliteStore, Store};
use vantage_measurement::wire::target_list::ListKey;
use vantage_measurement::{Measurement, TestKind, example};

use crate::support::Collector;

const BINARY: &str = env!("CARGO_BIN_EXE_vantage-collector");

fn run(args: &[&str], paths: &[&Path]) -> Output {
    let mut command = Command::new(BINARY);
    command.args(args).args(paths).env_remove("VANTAGE_DATA_DIR").env_remove("VANTAGE_DATABASE_URL");
    command.output().expect("run the collector binary")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// `n` rows spread over three countries and two tests.
fn rows(n: usize, started: DateTime<Utc>) -> Vec<Measurement> {
    (0..n)
        .map(|i| {
            let mut m = example::tls_reset(started + Duration::seconds(i as i64));
            m.probe.cc = ["DE", "AT", "IR"][i % 3].into();
            if i % 2 == 0 {
                m.test = TestKind::Dns;
            }
            m
        })
        .collect()
}

fn gunzip(path: &Path) -> String {
    let mut out = String::new();
    GzDecoder::new(std::fs::File::open(path).expect("open")).read_to_string(&mut out).expect("gunzip");
    out
}

/// Every .gz file under `dir`.
fn gz_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(gz_files(&path));
        } else if path.extension().is_some_and(|e| e == "gz") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn public_key(data: &Path) -> String {
    let seed = std::fs::read_to_string(data.join("publication.key")).expect("the key was made");
    let seed = base64_seed(seed.trim());
    ListKey::from_seed(&seed).public_base64()
}

fn base64_seed(b64: &str) -> [u8; 32] {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
    bytes.as_slice().try_into().expect("32 bytes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_exported_in_every_format_verifies_and_tampering_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let day = (Utc::now() - Duration::days(3)).date_naive();
    let noon = day.and_hms_opt(12, 0, 0).expect("noon").and_utc();
    let (first, second) = (rows(30, noon - Duration::days(1)), rows(9, noon));
    {
        let store = SqliteStore::open(&data).await.expect("store");
        store.insert_batch(&first, None, None, noon).await.expect("day one");
        store.insert_batch(&second, None, None, noon + Duration::days(1)).await.expect("day two");
        store.close().await.expect("close");
    }
    let (since, until) = (day.to_string(), (day + chrono::Days::new(2)).to_string());
    let ymd = day.format("%Y%m%d").to_string();
    let key = public_key_after_export(&data, &dir.path().join("ndjson"), &since, &until);
    for format in ["csv", "ooni"] {
        let out = dir.path().join(format);
        let done = run(
            &["export", "--since", &since, "--until", &until, "--format", format, "--out"],
            &[&out, Path::new("--data-dir"), &data],
        );
        assert!(done.status.success(), "{}", text(&done));
    }

    // Every format parses, and its rows add up to the day's.
    let count = |format: &str, parse: fn(&str) -> usize| -> usize {
        gz_files(&dir.path().join(format).join(&ymd)).iter().map(|f| parse(&gunzip(f))).sum()
    };
    let ndjson_rows = count("ndjson", |t| {
        t.lines().inspect(|l| assert!(serde_json::from_str::<Measurement>(l).is_ok(), "a measurement: {l}")).count()
    });
    let csv_rows = count("csv", |t| {
        let mut lines = t.lines();
        assert!(lines.next().expect("header").starts_with("id,started_at,received_day,cc,asn"));
        lines.inspect(|l| assert!(l.split(',').count() >= 19, "{l}")).count()
    });
    let ooni_rows = count("ooni", |t| {
        t.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
            .inspect(|r| assert!(r["probe_cc"].is_string() && r["test_name"].is_string(), "{r}"))
            .count()
    });
    assert_eq!((ndjson_rows, csv_rows, ooni_rows), (30, 30, 30));
    assert_eq!(gz_files(&dir.path().join("ndjson").join(&ymd)).len(), 6, "3 countries x 2 tests");

    // verify passes on the untouched export, in every format.
    let manifest_file = dir.path().join("ndjson").join(&ymd).join("manifest.json");
    for format in ["ndjson", "csv", "ooni"] {
        let checked = run(&["verify", "--key", &key, "--manifest"], &[&manifest_file, &dir.path().join(format)]);
        assert!(checked.status.success(), "{format}: {}", text(&checked));
        assert!(text(&checked).contains("all verify"), "{}", text(&checked));
    }
    // The days chain: the second day's `previous` is the first manifest file's hash.
    let next: manifest::Manifest = serde_json::from_slice(
        &std::fs::read(
            dir.path().join("ndjson").join((day + chrono::Days::new(1)).format("%Y%m%d").to_string()).join("manifest.json"),
        )
        .expect("day two"),
    )
    .expect("manifest");
    assert_eq!(next.previous, Some(manifest::file_hash(&std::fs::read(&manifest_file).expect("manifest"))));
    assert_eq!(next.rows, 9);

    // A wrong key fails.
    let wrong = ListKey::from_seed(&[1; 32]).public_base64();
    let refused = run(&["verify", "--key", &wrong, "--manifest"], &[&manifest_file, &dir.path().join("ndjson")]);
    assert!(!refused.status.success() && text(&refused).contains("not the key given"), "{}", text(&refused));

    // One byte flipped in one file: verify fails naming it.
    let victim = dir.path().join("csv").join(&ymd).join("IR/dns/measurements.csv.gz");
    let mut bytes = std::fs::read(&victim).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&victim, bytes).expect("write");
    let caught = run(&["verify", "--key", &key, "--manifest"], &[&manifest_file, &dir.path().join("csv")]);
    assert!(!caught.status.success(), "{}", text(&caught));
    assert!(text(&caught).contains("IR/dns/measurements.csv.gz") && text(&caught).contains("was changed"), "{}", text(&caught));

    // One stored row changed after publication: the re-export no longer matches the published
    // manifest (export says so and fails), and verify fails on the file naming it.
    let changed_id = first.iter().find(|m| m.probe.cc == "AT" && m.test == TestKind::Tls).expect("an AT/tls row").id;
    let db = rusqlite::Connection::open(data.join("vantage.sqlite3")).expect("open the database");
    let updated = db
        .execute("UPDATE measurements SET observed_asn = 64500 WHERE id = ?1", [changed_id.hyphenated().to_string()])
        .expect("tamper");
    assert_eq!(updated, 1);
    drop(db);
    let again = dir.path().join("again");
    let reexport = run(
        &["export", "--since", &since, "--until", &until, "--format", "ndjson", "--out"],
        &[&again, Path::new("--data-dir"), &data],
    );
    assert!(!reexport.status.success(), "{}", text(&reexport));
    assert!(text(&reexport).contains("AT/tls/measurements.jsonl.gz"), "{}", text(&reexport));
    let published = again.join(&ymd).join("manifest.json");
    assert_eq!(std::fs::read(&published).expect("published"), std::fs::read(&manifest_file).expect("first"), "never rewritten");
    let caught = run(&["verify", "--key", &key, "--manifest"], &[&published, &again.join(&ymd)]);
    assert!(!caught.status.success(), "{}", text(&caught));
    let said = text(&caught);
    assert!(said.contains("AT/tls/measurements.jsonl.gz") && said.contains("a row was changed"), "{said}");
}

/// Export the NDJSON files with the binary; the publication key it made (public, base64).
fn public_key_after_export(data: &Path, out: &Path, since: &str, until: &str) -> String {
    let done = run(
        &["export", "--since", since, "--until", until, "--format", "ndjson", "--out"],
        &[out, Path::new("--data-dir"), data],
    );
    assert!(done.status.success(), "{}", text(&done));
    public_key(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_days_are_served_and_verify_and_an_open_day_is_404() {
    let day = NaiveDate::from_ymd_opt(2026, 11, 30).expect("day");
    let clock = Arc::new(ManualClock::at(day.and_hms_opt(12, 0, 0).expect("noon").and_utc()));
    let collector = Collector::start_at(Arc::clone(&clock), |_, _| {}).await;
    let batch: Vec<Measurement> = rows(12, clock.now() - Duration::minutes(5));
    collector.ingest(&batch).await;
    let ymd = "20261130";
    let open = collector.http.get(collector.url(&format!("/api/v1/exports/{ymd}/manifest.json"))).send().await.expect("get");
    assert_eq!(open.status(), 404);
    let said = open.text().await.expect("body");
    assert!(said.contains("not closed") && said.contains("2026-12-01T00:10:00Z"), "{said}");
    let nothing = collector.http.get(collector.url("/api/v1/exports/latest")).send().await.expect("get");
    assert_eq!(nothing.status(), 404);

    // The day closes; the duty holder publishes (called here rather than waiting its period).
    clock.set(day.and_hms_opt(0, 10, 0).expect("00:10").and_utc() + Duration::days(1));
    let data = collector.data_dir();
    let store = SqliteStore::open(&data).await.expect("a second handle");
    let key = vantage_collector::export::key::load_or_create(&data.join("publication.key")).expect("key");
    let published = publish::catch_up(&store, &key, clock.now()).await.expect("publish");
    assert_eq!(published, vec![day]);
    assert_eq!(publish::catch_up(&store, &key, clock.now()).await.expect("again"), vec![], "once");
    // A replica with a key of its own does not continue the chain.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let refused = publish::catch_up(&store, &stranger, clock.now()).await;
    assert!(matches!(refused, Err(ExportError::ForeignKey { day: d, .. }) if d == day), "{refused:?}");

    let get = |path: String| {
        let request = collector.http.get(collector.url(&path));
        async move { request.send().await.expect("get") }
    };
    let key_json: serde_json::Value = get("/api/v1/publication-key".into()).await.json().await.expect("key json");
    let public = manifest::public_key(key_json["key"].as_str().expect("key")).expect("a key");
    assert!(key_json["key_id"].as_str().is_some_and(|k| k.starts_with("publication-key:")));
    let list: serde_json::Value = get("/api/v1/exports".into()).await.json().await.expect("list");
    assert_eq!(list["days"][0]["day"], "2026-11-30");
    let bytes = get(format!("/api/v1/exports/{ymd}/manifest.json")).await.bytes().await.expect("manifest");
    let latest = get("/api/v1/exports/latest".into()).await.bytes().await.expect("latest");
    assert_eq!(bytes, latest);
    let manifest = verify::manifest(&bytes, &public).expect("signed by the collector's key");
    assert_eq!(manifest.rows, 12);
    for entry in &manifest.files {
        let file = get(format!("/api/v1/exports/{ymd}/{}", entry.path)).await;
        assert_eq!(file.status(), 200, "{}", entry.path);
        let body = file.bytes().await.expect("file");
        verify::file(&manifest, &entry.path, body.as_ref()).expect("a served file verifies");
    }
    assert_eq!(get(format!("/api/v1/exports/{ymd}/XX/tls/ooni.jsonl.gz")).await.status(), 404);
    assert_eq!(get("/api/v1/exports/2026-11-30/manifest.json".into()).await.status(), 400);

    // A stored row changed after publication: the re-served file no longer verifies.
    let victim = batch.iter().find(|m| m.probe.cc == "DE" && m.test == TestKind::Dns).expect("a DE/dns row");
    let db = rusqlite::Connection::open(data.join("vantage.sqlite3")).expect("open");
    db.execute("UPDATE measurements SET observed_cc = 'FR' WHERE id = ?1", [victim.id.hyphenated().to_string()]).expect("tamper");
    drop(db);
    let path = "DE/dns/measurements.jsonl.gz";
    let body = get(format!("/api/v1/exports/{ymd}/{path}")).await.bytes().await.expect("file");
    let err = verify::file(&manifest, path, body.as_ref()).expect_err("changed after publication");
    assert!(err.to_string().starts_with(path), "{err}");
    store.close().await.expect("close");
}
