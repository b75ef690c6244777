//! The status page at `/`, looked at by a real browser: headless Chromium renders it, we read the
//! DOM it built and keep a screenshot in `target/test-artifacts/status.png`.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;
use vantage_measurement::{Measurement, Mechanism, TestKind};

use crate::support::{Collector, measurement_of, probe_key};

/// `target/test-artifacts`, next to the build's own directories.
pub(crate) fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test binary>
    let target = exe.ancestors().nth(3).expect("the test binary lives under target/<profile>/deps");
    target.join("test-artifacts")
}

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        if let Some(path) =
            std::env::var_os("PATH").iter().flat_map(std::env::split_paths).map(|dir| dir.join(name)).find(|path| path.is_file())
        {
            return path;
        }
    }
    panic!("chromium is not installed: run tests/install-deps.sh (Debian package `chromium`)");
}

/// Run headless Chromium on `url` with `extra` flags (the brief's locked-down set: no network
/// beyond the page, no sandbox because CI runs as root). Returns stdout.
pub(crate) async fn headless(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("chromium finished within 120 s")
        .expect("chromium runs");
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn of(test: TestKind, mechanism: Mechanism, m: Measurement) -> Measurement {
    Measurement { test, verdict: vantage_measurement::Verdict { mechanism: Some(mechanism), ..m.verdict }, ..m }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_shows_what_is_blocked_where_how_and_since_when() {
    let collector = Collector::start_with(|config, dir| {
        let list = dir.join("targets.toml");
        std::fs::write(&list, "[[target]]\nname = \"wikipedia\"\n[[target]]\nname = \"signal\"\n").expect("write list");
        config.targets_file = Some(list);
    })
    .await;
    let hours_ago = |h: i64, mut m: Measurement| {
        m.started_at -= chrono::Duration::hours(h);
        m
    };
    // DE: wikipedia's TLS handshake is reset for two probes in two networks; probe 1 was fine
    // three hours ago and blocked since two. A third probe gets through. Signal's QUIC is
    // blocked for one probe.
    let first_blocked = hours_ago(2, measurement_of("DE", 3320, "wikipedia", true));
    let since = first_blocked.started_at.format("%Y-%m-%d %H:%M UTC").to_string();
    collector
        .ingest_signed(
            &probe_key(1),
            &[
                hours_ago(3, measurement_of("DE", 3320, "wikipedia", false)),
                first_blocked,
                measurement_of("DE", 3320, "wikipedia", true),
            ],
        )
        .await;
    collector.ingest_signed(&probe_key(2), &[measurement_of("DE", 3209, "wikipedia", true)]).await;
    collector
        .ingest_signed(
            &probe_key(2),
            &[of(TestKind::Quic, Mechanism::QuicSniBlocked, measurement_of("DE", 3209, "signal", true))],
        )
        .await;
    collector.ingest_signed(&probe_key(3), &[measurement_of("DE", 6805, "wikipedia", false)]).await;
    // IR: DNS injection. FR: all fine.
    collector
        .ingest_signed(
            &probe_key(4),
            &[of(TestKind::Dns, Mechanism::DnsInjected, measurement_of("IR", 197_207, "wikipedia", true))],
        )
        .await;
    collector.ingest_signed(&probe_key(5), &[measurement_of("FR", 3215, "wikipedia", false)]).await;
    collector.next_fleet_refresh().await;

    // The page itself: HTML, no scripts allowed.
    let response = collector.http.get(collector.url("/")).send().await.expect("GET /");
    assert_eq!(response.status(), 200);
    let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert!(header("content-security-policy").starts_with("default-src 'none'"));

    // What a browser makes of it.
    let dom = headless(&collector.url("/"), &["--dump-dom".to_string()]).await;
    for expected in [
        "id=\"country-DE\"",
        "id=\"country-IR\"",
        "id=\"country-FR\"",
        "wikipedia<span class=\"badge\">blocked</span>",
        "<code>tls.reset_after_clienthello</code>",
        "<code>quic.sni_blocked</code>",
        "<code>dns.injected</code>",
        "<b>2</b> of 3 probes",
        "<b>2</b> of 3 ASNs",
        since.as_str(),
        "No blocking reported.",
        "<b id=\"fleet-size\">5</b>",
        "href=\"/api/v1/measurements?country=DE&amp;target=wikipedia&amp;verdict=blocked&amp;test=tls\"",
    ] {
        assert!(dom.contains(expected), "the rendered page lacks {expected:?}:\n{dom}");
    }
    let de = dom.find("id=\"country-DE\"").expect("DE");
    let fr = dom.find("id=\"country-FR\"").expect("FR");
    assert!(de < fr, "countries with blocking come first");

    // The row's link leads to the evidence.
    let evidence = collector.query("country=DE&target=wikipedia&verdict=blocked&test=tls").await;
    assert_eq!(evidence.len(), 3, "probe 1's two blocked measurements and probe 2's");

    // And a picture of it for humans (and CI artifacts).
    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    let png = dir.join("status.png");
    let _ = std::fs::remove_file(&png);
    headless(&collector.url("/"), &[format!("--screenshot={}", png.display())]).await;
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(bytes.len() > 20_000, "a real page, not a blank: {} bytes", bytes.len());
}

#[tokio::test]
async fn before_any_probe_the_page_says_so() {
    let collector = Collector::start().await;
    collector.next_fleet_refresh().await;
    let page = collector.http.get(collector.url("/")).send().await.expect("GET /").text().await.expect("body");
    assert!(page.contains("No signed measurements in the last 1 hour"), "{page}");
    assert!(page.contains("<b id=\"fleet-size\">0</b>"), "{page}");
}
