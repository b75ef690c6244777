//! `docs/research.md`'s quick start, run as written: a collector holds a day of measurements with
//! known blocked shares, the day closes and is published, the doc's Python script (Debian's
//! python3 and pandas) downloads it and computes the shares, which must equal both the data that
//! went in and the bars of the status page; then the doc's shell lines verify the download, and
//! fail once a byte of it is flipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use chrono::{NaiveDate, TimeDelta};
use vantage_collector::clock::{Clock, ManualClock};
use vantage_collector::export::{key, publish};
use vantage_collector::{SqliteStore, Store};
use vantage_measurement::{Measurement, Status, TestKind};

use crate::markup::{Point, timeline_points};
use crate::support::{Collector, bucket, measurement_at_with as at, newcomer_key, probe_key};

const BINARY: &str = env!("CARGO_BIN_EXE_vantage-collector");
/// Debian's interpreter, where `python3-pandas` installs (a `python3` earlier on PATH may be
/// another one without it).
const PYTHON: &str = "/usr/bin/python3";

/// The fenced block of `language` that follows the line `heading` in `docs/research.md`.
fn snippet(heading: &str, language: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/research.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let section = &doc[doc.find(heading).unwrap_or_else(|| panic!("no {heading:?} in docs/research.md"))..];
    let fence = format!("```{language}\n");
    let start = section.find(&fence).unwrap_or_else(|| panic!("no {language} block after {heading:?}")) + fence.len();
    let end = section[start..].find("```").expect("the block ends") + start;
    section[start..end].to_string()
}

fn said(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// `(cc, target)` → `(hour, blocked, conclusive)` per hour with something conclusive.
type Shares = BTreeMap<(String, String), Vec<Point>>;

/// The script's CSV (`cc,target,hour,blocked,conclusive,share`) as [`Shares`], each share
/// checked against its counts.
fn parse_shares(csv: &str) -> Shares {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("cc,target,hour,blocked,conclusive,share"), "{csv}");
    let mut shares = Shares::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let [cc, target, hour, blocked, conclusive, share] = cells[..] else { panic!("6 cells: {line}") };
        let (blocked, conclusive): (u64, u64) = (blocked.parse().expect("blocked"), conclusive.parse().expect("conclusive"));
        let share: f64 = share.parse().expect("share");
        assert!((share - blocked as f64 / conclusive as f64).abs() < 1e-9, "{line}");
        shares.entry((cc.into(), target.into())).or_default().push((hour.into(), blocked, conclusive));
    }
    shares
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_reproduces_the_status_page_and_verifies_its_download() {
    let day = NaiveDate::from_ymd_opt(2026, 11, 30).expect("day");
    let hour = |h: u32| day.and_hms_opt(h, 0, 0).expect("hour").and_utc();
    let clock = Arc::new(ManualClock::at(hour(15)));
    let collector = Collector::start_at(Arc::clone(&clock), |_, _| {}).await;

    // DE/wikipedia, four trusted probes an hour, the first `blocked` of them blocked; IR/signal
    // over QUIC, two probes. Spread over the hour so the hour, not the second, is what groups.
    let mut expected = Shares::new();
    let mut second = 0;
    let mut next = |h: u32| {
        second += 7;
        hour(h) + TimeDelta::seconds(second)
    };
    for (h, blocked) in [(10, 0u64), (11, 1), (12, 3), (13, 4)] {
        for probe in 1..=4u8 {
            let status = if u64::from(probe) <= blocked { Status::Blocked } else { Status::Ok };
            collector.ingest_signed(&probe_key(probe), &[at(next(h), "DE", "wikipedia", status)]).await;
        }
        expected.entry(("DE".into(), "wikipedia".into())).or_default().push((bucket(hour(h)), blocked, 4));
    }
    for (h, blocked) in [(11, 1u64), (12, 2)] {
        for probe in 5..=6u8 {
            let status = if u64::from(probe - 4) <= blocked { Status::Blocked } else { Status::Ok };
            let m = Measurement { test: TestKind::Quic, ..at(next(h), "IR", "signal", status) };
            collector.ingest_signed(&probe_key(probe), &[m]).await;
        }
        expected.entry(("IR".into(), "signal".into())).or_default().push((bucket(hour(h)), blocked, 2));
    }
    // Published but not counted: a `down` (not conclusive), an anonymous and an unregistered key's
    // blocked ones.
    collector.ingest_signed(&probe_key(1), &[at(next(12), "DE", "wikipedia", Status::Down)]).await;
    collector.ingest(&[at(next(12), "DE", "wikipedia", Status::Blocked)]).await;
    collector.ingest_signed(&newcomer_key(1), &[at(next(13), "DE", "wikipedia", Status::Blocked)]).await;

    // The day closes and is published (by the duty holder; called here rather than waiting its
    // period), and the fleet refresh draws the page as of then.
    clock.set(hour(0) + TimeDelta::days(1) + TimeDelta::minutes(10));
    let data = collector.data_dir();
    let store = SqliteStore::open(&data).await.expect("a second handle");
    let signing = key::load_or_create(&data.join(key::FILE_NAME)).expect("the publication key");
    assert_eq!(publish::catch_up(&store, &signing, clock.now()).await.expect("publish"), vec![day]);
    store.close().await.expect("close");
    collector.next_fleet_refresh().await;
    let page = collector.http.get(collector.url("/")).send().await.expect("GET /").text().await.expect("page");
    let mut drawn = Shares::new();
    for cc in ["DE", "IR"] {
        for (target, points) in timeline_points(&page, cc) {
            drawn.insert((cc.to_string(), target), points);
        }
    }
    assert_eq!(drawn, expected, "the status page draws the shares that went in");

    // The doc's script, as written.
    let work = tempfile::tempdir().expect("work dir");
    let script = work.path().join("quickstart.py");
    std::fs::write(&script, snippet("## Quick start", "python")).expect("write the script");
    let base = collector.url("");
    let ran = Command::new(PYTHON).arg(&script).args([&base, "20261130"]).current_dir(work.path()).output().expect("python3");
    assert!(ran.status.success(), "the quick start failed: {}", said(&ran));
    let computed = parse_shares(&String::from_utf8_lossy(&ran.stdout));
    assert_eq!(computed, expected, "pandas computes the shares that went in, and so the page's bars");
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(stderr.starts_with("23 rows, 23 in the signed manifest"), "every row downloaded: {stderr}");

    // The doc's verification lines, as written, on what the script downloaded.
    let verify = || {
        let path = std::env::join_paths(
            std::iter::once(PathBuf::from(BINARY).parent().expect("bin dir").to_path_buf())
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .expect("PATH");
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &snippet("## Verify what you downloaded", "sh")])
            .env("BASE", &base)
            .env("DAY", "20261130")
            .env("PATH", path)
            .current_dir(work.path())
            .output()
            .expect("bash")
    };
    let checked = verify();
    assert!(checked.status.success(), "an untouched download verifies: {}", said(&checked));

    let victim = work.path().join("20261130/DE/tls/measurements.csv.gz");
    let mut bytes = std::fs::read(&victim).expect("a downloaded file");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&victim, bytes).expect("flip a byte");
    let caught = verify();
    assert!(!caught.status.success(), "a flipped byte is caught: {}", said(&caught));
    assert!(said(&caught).contains("DE/tls/measurements.csv.gz"), "and the file named: {}", said(&caught));
}
