//! The status page's timelines, looked at by a real browser: measurements with a known blocked
//! share per hour go in, headless Chromium renders `/`, and the bars it drew (their `data-`
//! values read back from the DOM it built) must be exactly those shares, bucket by bucket. A
//! screenshot is kept in `target/test-artifacts/status-timeline.png`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use vantage_measurement::{Measurement, Status, TestKind};

use crate::markup::{Point, tags, timeline_points};
use crate::status_page::{artifacts_dir, headless};
use crate::support::{Collector, bucket, measurement_at_with as at, probe_key};

/// `(cc, target)` → `(bucket start, blocked, measured)` per bucket with something conclusive.
type Expected = BTreeMap<(String, String), Vec<Point>>;

#[tokio::test(flavor = "multi_thread")]
async fn each_bar_is_the_blocked_share_of_its_hour() {
    // A window of 10 minutes: DE (blocked now) has its table, IR (blocked hours ago, nothing
    // conclusive since) only its timeline; both are drawn over the last 24 hours.
    let collector = Collector::start_with(|config, _| config.window = Duration::from_secs(600)).await;
    let now = Utc::now();
    let hour = now.duration_trunc(TimeDelta::hours(1)).expect("hour");
    let mut expected = Expected::new();
    let mut seconds = 0;
    let mut next = |h: i64| {
        seconds += 1;
        hour - TimeDelta::hours(h) + TimeDelta::seconds(seconds)
    };

    // DE/wikipedia: four trusted probes an hour, the first `blocked` of them blocked; three hours
    // ago nothing was measured (a gap, not a zero).
    let de_shares: [(i64, u64); 5] = [(6, 0), (5, 1), (4, 2), (2, 4), (1, 3)];
    for (h, blocked) in de_shares {
        for probe in 1..=4u8 {
            let status = if u64::from(probe) <= blocked { Status::Blocked } else { Status::Ok };
            collector.ingest_signed(&probe_key(probe), &[at(next(h), "DE", "wikipedia", status)]).await;
        }
        let start = hour - TimeDelta::hours(h);
        expected.entry(("DE".into(), "wikipedia".into())).or_default().push((bucket(start), blocked, 4));
    }
    // Not counted: a `down` (not conclusive), an anonymous blocked one, a never-blocked target.
    collector.ingest_signed(&probe_key(5), &[at(next(2), "DE", "wikipedia", Status::Down)]).await;
    collector.ingest(&[at(next(6), "DE", "wikipedia", Status::Blocked)]).await;
    collector.ingest_signed(&probe_key(5), &[at(next(4), "DE", "news", Status::Ok)]).await;
    // And now: blocked for probe 1, so DE has a row in the table above its timeline.
    let now = now.duration_trunc(TimeDelta::seconds(1)).expect("second");
    collector.ingest_signed(&probe_key(1), &[at(now, "DE", "wikipedia", Status::Blocked)]).await;
    expected.entry(("DE".into(), "wikipedia".into())).or_default().push((bucket(hour), 1, 1));

    // IR/signal over QUIC, two probes: half, all, then only inconclusive (a gap).
    for (h, blocked) in [(3i64, 1u64), (2, 2)] {
        for probe in 6..=7u8 {
            let status = if u64::from(probe - 5) <= blocked { Status::Blocked } else { Status::Ok };
            let m = Measurement { test: TestKind::Quic, ..at(next(h), "IR", "signal", status) };
            collector.ingest_signed(&probe_key(probe), &[m]).await;
        }
        expected.entry(("IR".into(), "signal".into())).or_default().push((bucket(hour - TimeDelta::hours(h)), blocked, 2));
    }
    collector.ingest_signed(&probe_key(6), &[at(next(1), "IR", "signal", Status::Inconclusive)]).await;
    collector.next_fleet_refresh().await;

    let dom = headless(&collector.url("/"), &["--dump-dom".to_string()]).await;
    let mut drawn = Expected::new();
    for cc in ["DE", "IR"] {
        for (target, points) in timeline_points(&dom, cc) {
            drawn.insert((cc.to_string(), target), points);
        }
    }
    assert_eq!(drawn, expected, "the bars the browser drew are the shares that went in");

    // Where they are: each country's chart inside its own section, DE (with a table) first.
    let all = tags(&dom);
    let position = |name: &str, id: &str| {
        all.iter().position(|e| e.name == name && e.get("id") == Some(id)).unwrap_or_else(|| panic!("no {name}#{id}"))
    };
    let (de, de_chart, ir, ir_chart) = (
        position("section", "country-DE"),
        position("svg", "timeline-DE"),
        position("section", "country-IR"),
        position("svg", "timeline-IR"),
    );
    assert!(de < de_chart && de_chart < ir && ir < ir_chart, "{dom}");
    let chart = &all[de_chart];
    assert_eq!(chart.get("role"), Some("img"));
    assert_eq!(chart.get("aria-label"), Some("Blocked share per target in DE, hourly over the last 24 hours (UTC)"));
    let described = chart.get("aria-describedby").expect("a description");
    let desc = all.iter().position(|e| e.name == "desc" && e.get("id") == Some(described)).expect("the described element");
    assert!(de_chart < desc && desc < ir, "DE's description is in DE's chart");
    assert!(dom.contains(">wikipedia: blocked in 5 of 6 hours measured, latest 100 %.</desc>"), "in words too: {dom}");
    let ir_text = &dom[dom.find("id=\"country-IR\"").expect("IR")..];
    let quiet = ir_text.find("No blocking reported.").expect("IR says it is quiet now");
    assert!(quiet < ir_text.find("<svg").expect("IR's chart"), "the words above the chart: {dom}");

    // A picture for humans (and CI artifacts).
    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    let png = dir.join("status-timeline.png");
    let _ = std::fs::remove_file(&png);
    headless(&collector.url("/"), &[format!("--screenshot={}", png.display())]).await;
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
}
