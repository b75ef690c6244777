//! The real Prometheus (Debian's `prometheus`) scraping a real `vantage-collector` on loopback,
//! with the project's own config and rules. Signed batches from nine simulated probes in three
//! countries feed the collector; then, through Prometheus's HTTP API:
//!
//! - every PromQL expression of every dashboard panel and every rule parses, and returns data
//!   unless listed in [`MAY_BE_EMPTY`] with the reason;
//! - every dashboard variable finds its values;
//! - every dashboard data link, filled in from a real result, gets an answer from the collector;
//! - the correlated-blocking alert fires for the country where three probes see a target
//!   blocked, and stays silent where two do, where all is fine, and where the server is down for
//!   everyone; its link leads to exactly those blocked measurements;
//! - stopping the collector fires the collector-down alert.
//!
//! Feeding Prometheus from real lab probes (tests/src/lab) instead of generated batches is the
//! next step; the lab already proves real probe verdicts reach `vantage_measurements_total`.

mod operators;
#[path = "prometheus_e2e/prometheus.rs"]
mod prometheus;

use prometheus::{Prometheus, api, percent_encode, poll, query, start_prometheus, substitute};

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use operators::{Query, dashboard_queries, rules, variable_queries};
use serde_json::Value;
use vantage_measurement::wire::{KEY_HEADER, ProbeKey, SIGNATURE_HEADER, SPOOL_PENDING_HEADER};
use vantage_measurement::{Measurement, Mechanism, Operation, Status, TestKind, Verdict, example};
use vantage_tests::pki::TestCa;
use vantage_tests::procs::Collector;

/// Expressions that legitimately return nothing in this scenario, by where they come from.
const MAY_BE_EMPTY: &[(&str, &str)] = &[
    // Alerts whose condition is false here, on purpose: the scenario is healthy and young.
    ("VantageProtocolNewlyBlocked", "needs a day of history (offset 1h baseline); proven by promtool in deploy/prometheus/tests"),
    ("VantageCollectorDown", "the collector is up while queries run; proven below by stopping it"),
    ("VantageCollectorAbsent", "the job exists; proven by promtool"),
    ("VantageIngestionStalled", "batches just arrived; proven by promtool"),
    ("VantageFleetGaugesStale", "the gauges refresh every second here; proven by promtool"),
    ("VantageFleetShrinking", "needs yesterday's fleet; proven by promtool"),
    ("VantageCountryProbesVanishing", "needs yesterday's fleet; proven by promtool"),
    ("VantageCollectorReplicaDown", "one collector here: its being down is VantageCollectorDown; proven by promtool"),
    ("VantageCollectorStoreDown", "the store is up; proven by promtool"),
    ("VantageBlockingEvent", "the detector needs hours of hourly buckets; proven by promtool and collector/tests/api/events.rs"),
    (
        "Blocking events (changepoint detector) / A",
        "no event in a scenario minutes long; the gauge is proven by collector/tests/api/events.rs",
    ),
    ("VantageCollectorDutyUnheld", "the one replica holds every duty; proven by promtool"),
    ("VantageCollectorDutyHeldTwice", "one replica; proven by promtool"),
    (
        "VantageCollectorCertificateExpiring",
        "the test certificate has a year to run; its input series is checked below, firing by promtool",
    ),
];

/// Whole-test deadline for any one wait; every wait polls.
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The scenario

/// Where three probes see `news` blocked over TLS: the alert must fire here.
const BLOCKING: &str = "XA";
/// Where two probes see it blocked: below the three the alert needs.
const BELOW_K: &str = "XC";
/// Where everything works, and one target is down for everyone (never censorship).
const CLEAN: &str = "XB";

struct Probe {
    key: ProbeKey,
    cc: &'static str,
    asn: u32,
}

/// What one probe reports in one round: (target, test, verdict).
fn reports(probe_index: usize, cc: &str) -> Vec<(&'static str, TestKind, Status)> {
    match cc {
        BLOCKING => vec![
            ("news", TestKind::Tls, if probe_index < 3 { Status::Blocked } else { Status::Ok }),
            ("chat", TestKind::Dns, Status::Ok),
            // One probe alone sees QUIC blocked: agreement is missing, no alert.
            ("chat", TestKind::Quic, if probe_index == 0 { Status::Blocked } else { Status::Ok }),
            // Two see WireGuard blocked: the VPN dashboard has something to show, the alert
            // still needs a third.
            ("vpn-a", TestKind::Wireguard, if probe_index < 2 { Status::Blocked } else { Status::Ok }),
            ("vpn-b", TestKind::Openvpn, Status::Ok),
        ],
        BELOW_K => vec![("news", TestKind::Tls, Status::Blocked), ("chat", TestKind::Dns, Status::Ok)],
        _ => vec![
            ("news", TestKind::Tls, Status::Ok),
            ("chat", TestKind::Dns, Status::Ok),
            ("news", TestKind::Tcp, Status::Down),
            ("chat", TestKind::Quic, Status::Inconclusive),
            ("vpn-b", TestKind::Tor, Status::Ok),
            ("vpn-a", TestKind::Ikev2, Status::Ok),
        ],
    }
}

fn measurement(cc: &str, asn: u32, target: &str, test: TestKind, status: Status) -> Measurement {
    let mut m = example::tls_reset(Utc::now() - chrono::Duration::seconds(5));
    m.probe.cc = cc.to_string();
    m.probe.asn = asn;
    m.target.name = target.to_string();
    m.test = test;
    if test.is_vpn() {
        // The example's steps are TLS handshakes; a VPN test's are VPN handshakes.
        for step in &mut m.observations {
            step.op = Operation::VpnHandshake;
        }
    }
    m.verdict = match (status, test) {
        (Status::Ok, _) => Verdict::ok(),
        (Status::Blocked, TestKind::Quic) => Verdict::new(status, Mechanism::UdpBlocked, vec!["echo lost too".into()]),
        (Status::Blocked, TestKind::Wireguard) => {
            Verdict::new(status, Mechanism::VpnWireguardNoHandshakeResponse, vec!["no handshake response".into()])
        }
        (Status::Blocked, _) => Verdict::new(status, Mechanism::TlsResetAfterClientHello, vec!["target sni reset".into()]),
        (Status::Down, _) => Verdict::new(status, Mechanism::ControlFailed, vec!["helper failed too".into()]),
        (Status::Inconclusive, _) => Verdict::new(status, Mechanism::NoControl, vec!["no control".into()]),
    };
    m
}

/// The HTTP client that trusts the collector's test CA (set once at the start of the test).
static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();

fn http() -> &'static reqwest::Client {
    HTTP.get().expect("the client is made before the collector starts")
}

/// POST one batch, signed by `key` when given; returns the collector's report.
async fn submit(collector: &Collector, key: Option<&ProbeKey>, lines: &[String], spool_pending: u64) -> Value {
    let body = lines.join("\n") + "\n";
    let mut req = http()
        .post(format!("{}/api/v1/measurements", collector.url))
        .header("content-type", "application/x-ndjson")
        .header(SPOOL_PENDING_HEADER, spool_pending.to_string());
    if let Some(key) = key {
        req = req.header(KEY_HEADER, key.public_key_base64()).header(SIGNATURE_HEADER, key.sign_base64(body.as_bytes()));
    }
    let resp = req.body(body).send().await.expect("submit");
    assert!(resp.status().is_success(), "ingest answered {}", resp.status());
    resp.json().await.expect("ingest report")
}

/// One round: every probe submits its reports as one signed batch; an anonymous batch and a
/// malformed line come along so the rejection and anonymous paths have data too.
async fn submit_round(collector: &Collector, probes: &[Probe], round: u64) -> u64 {
    let mut stored = 0;
    for (i, probe) in probes.iter().enumerate() {
        let index_in_country = probes[..i].iter().filter(|p| p.cc == probe.cc).count();
        let lines: Vec<String> = reports(index_in_country, probe.cc)
            .into_iter()
            .map(|(target, test, status)| {
                measurement(probe.cc, probe.asn, target, test, status).to_json_line().expect("serialise")
            })
            .collect();
        let report = submit(collector, Some(&probe.key), &lines, round * 3 + i as u64).await;
        assert_eq!(report["accepted"].as_u64(), Some(lines.len() as u64), "{report}");
        stored += lines.len() as u64;
    }
    let anonymous = measurement("XD", 64999, "news", TestKind::Tls, Status::Ok).to_json_line().expect("serialise");
    let report = submit(collector, None, &[anonymous, "{\"not\": \"a measurement\"}".into()], 0).await;
    assert_eq!(report["accepted"].as_u64(), Some(1), "{report}");
    assert_eq!(report["rejected"][0]["reason"].as_str(), Some("malformed"), "{report}");
    stored + 1
}

fn targets_file(dir: &Path) -> String {
    let p = dir.join("published-targets.toml");
    std::fs::write(
        &p,
        "[[target]]\nname = \"news\"\ndomain = \"news.example\"\ntests = [\"dns\", \"tcp\", \"tls\"]\n\n\
         [[target]]\nname = \"chat\"\ndomain = \"chat.example\"\ntests = [\"dns\", \"quic\"]\n\n\
         [[target]]\nname = \"vpn-a\"\ntests = [\"wireguard\", \"ikev2\"]\n\n\
         [[target]]\nname = \"vpn-b\"\ntests = [\"openvpn\", \"tor\"]\n",
    )
    .expect("write targets");
    p.display().to_string()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn dashboards_and_rules_work_against_a_real_prometheus() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let scratch = tempfile::tempdir().expect("tempdir");
    let targets = targets_file(scratch.path());
    let probes: Vec<Probe> = [
        (BLOCKING, 64500),
        (BLOCKING, 64500),
        (BLOCKING, 64501),
        (BLOCKING, 64502),
        (CLEAN, 64510),
        (CLEAN, 64510),
        (CLEAN, 64511),
        (BELOW_K, 64520),
        (BELOW_K, 64521),
    ]
    .into_iter()
    .map(|(cc, asn)| Probe { key: ProbeKey::generate(), cc, asn })
    .collect();
    let trusted = scratch.path().join("trusted-keys.txt");
    let ids: String = probes.iter().map(|p| format!("{}\n", p.key.key_id())).collect();
    std::fs::write(&trusted, ids).expect("write trusted keys");
    let trusted = trusted.display().to_string();
    // HTTPS, as a collector on the internet serves it: Prometheus scrapes it with the CA, and the
    // certificate's expiry series (and its alert's expression) has data.
    let ca = TestCa::new("Prometheus e2e CA").expect("CA");
    let ca_pem = scratch.path().join("ca.pem");
    ca.write_pem(&ca_pem).expect("CA PEM");
    let (cert, key) = ca.issue_files("127.0.0.1", scratch.path(), "collector").expect("certificate");
    let pem = std::fs::read(&ca_pem).expect("CA PEM");
    let client = reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM")).build();
    HTTP.set(client.expect("client")).expect("one client");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let collector = Collector::start(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--danger-helper-allow-private",
        "--targets",
        &targets,
        // Recompute the fleet gauges every second instead of every minute.
        "--fleet-refresh-secs",
        "1",
        // AS64500 has two probes in XA: enough for its own `asn` label here.
        "--asn-min-probes",
        "2",
        // The operator vouches for the nine probes: they count from their first batch.
        "--trusted-keys",
        &trusted,
    ])
    .expect("start collector");
    let prometheus = start_prometheus(&collector, &ca_pem).await;
    poll("first scrape of the collector", || async {
        query(&prometheus, "up{job=\"vantage-collector\"} == 1").await.is_ok_and(|r| r.len() == 1)
    })
    .await;

    // Two rounds with a scrape between them: every counter series then rises inside the
    // window, so rates are real numbers, not the 0 of a series seen only once.
    let mut stored = 0;
    for round in 0..2 {
        stored += submit_round(&collector, &probes, round).await;
        let expr = format!("sum(vantage_collector_ingested_total) >= {stored}");
        poll(&format!("Prometheus scraped round {round}"), || async {
            query(&prometheus, &expr).await.is_ok_and(|r| !r.is_empty())
        })
        .await;
    }
    // The alert on the certificate has its input: the served certificate's expiry, in the future.
    let expiry = query(&prometheus, "vantage_collector_tls_cert_expiry_timestamp_seconds - time() > 86400").await.expect("query");
    assert_eq!(expiry.len(), 1, "one certificate expiry series, more than a day away: {expiry:?}");
    // A researcher query, so the store's query latency has an observation as well.
    http()
        .get(format!("{}/api/v1/measurements?limit=1", collector.url))
        .send()
        .await
        .expect("query")
        .error_for_status()
        .expect("200");
    // The fleet gauges have caught up, and the rules have evaluated on the second round.
    poll("fleet gauges", || async {
        query(&prometheus, "max(vantage_target_probes{country=\"XA\",target=\"news\",test=\"tls\",verdict=\"blocked\"}) == 3")
            .await
            .is_ok_and(|r| !r.is_empty())
    })
    .await;
    // The active-probe count can trail the per-target counts by a refresh or two.
    poll("active probes, recorded", || async {
        query(&prometheus, "sum(country:vantage_probes_active:max) == 9").await.is_ok_and(|r| !r.is_empty())
    })
    .await;
    poll("recording rules", || async {
        query(&prometheus, "country_target_test:vantage_measurements_blocked_per_measurements:ratio_rate1h{country=\"XA\",target=\"news\",test=\"tls\"} > 0").await.is_ok_and(|r| !r.is_empty())
    })
    .await;

    check_every_expression(&prometheus).await;
    check_variables(&prometheus, &collector).await;
    check_links(&prometheus, &collector).await;
    check_correlated_blocking_alert(&prometheus, &collector).await;

    // The collector goes away: the scrape fails and the down alert fires.
    let collector_url = collector.url.clone();
    drop(collector);
    poll("VantageCollectorDown firing", || async {
        firing(&prometheus)
            .await
            .iter()
            .any(|a| a["labels"]["alertname"] == "VantageCollectorDown" && a["labels"]["collector_url"] == collector_url.as_str())
    })
    .await;

    let elapsed = started.elapsed();
    eprintln!("prometheus end-to-end: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(90), "took {elapsed:?}; keep it under 90 s");
}

/// Every dashboard and rule expression parses; each returns data unless [`MAY_BE_EMPTY`] says why not.
async fn check_every_expression(prometheus: &Prometheus) {
    let mut all: Vec<Query> = dashboard_queries();
    for rule in rules() {
        all.push(Query { origin: format!("{} / {}", rule.file, rule.name), expr: rule.expr });
    }
    assert!(all.len() > 60, "only {} expressions found", all.len());
    let mut failures = Vec::new();
    let mut empty_as_documented = BTreeSet::new();
    for q in &all {
        let expr = substitute(&q.expr);
        match query(prometheus, &expr).await {
            Err(e) => failures.push(format!("{}: does not evaluate: {e}\n    {expr}", q.origin)),
            Ok(result) if result.is_empty() => {
                match MAY_BE_EMPTY.iter().find(|(name, _)| q.origin.ends_with(&format!("/ {name}"))) {
                    Some((name, _)) => {
                        empty_as_documented.insert(*name);
                    }
                    None => failures.push(format!("{}: no data\n    {expr}", q.origin)),
                }
            }
            Ok(result) => {
                // NaN everywhere is "no data" in disguise (a 0/0 share, a quantile of nothing).
                let all_nan = result.iter().all(|s| s["value"][1].as_str().is_some_and(|v| v == "NaN"));
                if all_nan {
                    failures.push(format!("{}: only NaN\n    {expr}", q.origin));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} expressions failed:\n{}", failures.len(), all.len(), failures.join("\n"));
    // The exemptions are not stale: each one really was empty.
    for (name, why) in MAY_BE_EMPTY {
        assert!(empty_as_documented.contains(name), "{name} is exempt ({why}) but returned data: update MAY_BE_EMPTY");
    }
}

/// `label_values(metric, label)` variables find the scenario's values.
async fn check_variables(prometheus: &Prometheus, collector: &Collector) {
    let queries = variable_queries();
    assert!(queries.len() >= 5, "{queries:?}");
    for (origin, q) in queries {
        let inner = q.strip_prefix("label_values(").and_then(|s| s.strip_suffix(')')).unwrap_or_else(|| panic!("{origin}: {q}"));
        let (selector, label) = inner.rsplit_once(',').unwrap_or_else(|| panic!("{origin}: {q}"));
        let data = api(prometheus, &format!("/api/v1/label/{}/values?match[]={}", label.trim(), percent_encode(selector.trim())))
            .await
            .unwrap_or_else(|e| panic!("{origin}: {e}"));
        let values: Vec<&str> = data.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let expected = if label.trim() == "country" { BLOCKING } else { collector.url.as_str() };
        assert!(values.contains(&expected), "{origin}: {values:?} lacks {expected}");
    }
}

/// Each raw-measurement link, filled in from the first series of its panel's first query as
/// Grafana would, gets 200 from the collector with measurements that match it.
async fn check_links(prometheus: &Prometheus, collector: &Collector) {
    let now = Utc::now();
    let from = (now - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let to = (now + chrono::Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut followed = 0;
    for (p, d) in operators::dashboards() {
        for panel in operators::panels(&d) {
            let Some(expr) = panel["targets"][0]["expr"].as_str() else { continue };
            let links = panel["fieldConfig"]["defaults"]["links"].as_array().cloned().unwrap_or_default();
            // A panel exempt from returning data here has no series to fill its links from.
            let title = panel["title"].as_str().unwrap_or_default();
            let exempt = MAY_BE_EMPTY.iter().any(|(name, _)| name.starts_with(&format!("{title} / ")));
            if links.is_empty() || exempt {
                continue;
            }
            let result = query(prometheus, &substitute(expr)).await.expect("evaluates");
            let series =
                result.first().unwrap_or_else(|| panic!("{} / {}: no data to follow a link from", p.display(), panel["title"]));
            for link in links {
                let mut url = link["url"].as_str().expect("url").replace("${collector_url}", &collector.url);
                url = url.replace("${country}", BLOCKING).replace("${__from:date:iso}", &from).replace("${__to:date:iso}", &to);
                for (label, value) in series["metric"].as_object().into_iter().flatten() {
                    let value = value.as_str().unwrap_or_default();
                    url = url
                        .replace(&format!("${{__field.labels.{label}}}"), value)
                        .replace(&format!("${{__data.fields.{label}}}"), value);
                }
                assert!(!url.contains("${"), "{} / {}: unfilled variable in {url}", p.display(), panel["title"]);
                let resp = http().get(&url).send().await.expect("GET link");
                assert!(resp.status().is_success(), "{} / {}: {url} answered {}", p.display(), panel["title"], resp.status());
                let body = resp.text().await.expect("body");
                assert!(!body.trim().is_empty(), "{} / {}: {url} found no measurements", p.display(), panel["title"]);
                followed += 1;
            }
        }
    }
    assert!(followed >= 20, "followed only {followed} links");
}

async fn alerts(prometheus: &Prometheus) -> Vec<Value> {
    api(prometheus, "/api/v1/alerts").await.expect("alerts")["alerts"].as_array().cloned().unwrap_or_default()
}

async fn firing(prometheus: &Prometheus) -> Vec<Value> {
    alerts(prometheus).await.into_iter().filter(|a| a["state"] == "firing").collect()
}

async fn check_correlated_blocking_alert(prometheus: &Prometheus, collector: &Collector) {
    poll("VantageCorrelatedBlocking firing", || async {
        firing(prometheus).await.iter().any(|a| a["labels"]["alertname"] == "VantageCorrelatedBlocking")
    })
    .await;
    // Three more evaluations of the censorship rules, so a wrong alert would have had the same
    // time to appear (and go from pending to firing) as the right one.
    let since = Utc::now() + chrono::Duration::seconds(3);
    poll("three more evaluations", || async {
        let groups = api(prometheus, "/api/v1/rules").await.expect("rules")["groups"].as_array().cloned().unwrap_or_default();
        groups
            .iter()
            .filter(|g| g["name"] == "vantage-censorship")
            .filter_map(|g| g["lastEvaluation"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()))
            .any(|t| t > since)
    })
    .await;

    let censorship: Vec<Value> =
        alerts(prometheus).await.into_iter().filter(|a| a["labels"]["category"] == "censorship").collect();
    let summary: Vec<String> = censorship
        .iter()
        .map(|a| {
            format!(
                "{} {} {} {} {}",
                a["labels"]["alertname"], a["state"], a["labels"]["country"], a["labels"]["target"], a["labels"]["test"]
            )
        })
        .collect();
    // Exactly one: XA / news / tls. Not XC (two probes), XB (clean, and down for everyone),
    // not XA's QUIC (one probe), in any state, pending included.
    assert_eq!(censorship.len(), 1, "{summary:#?}");
    let alert = &censorship[0];
    assert_eq!(alert["state"], "firing");
    for (label, value) in [
        ("alertname", "VantageCorrelatedBlocking"),
        ("country", BLOCKING),
        ("target", "news"),
        ("test", "tls"),
        ("severity", "info"),
    ] {
        assert_eq!(alert["labels"][label].as_str(), Some(value), "{alert:#}");
    }
    let notes = &alert["annotations"];
    assert_eq!(notes["summary"].as_str(), Some("news (tls) is blocked in XA: 3 probes agree"), "{alert:#}");
    assert!(
        notes["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("3 distinct probes in XA, in 2 of the 3 networks that measured it,")),
        "{alert:#}"
    );

    // The link leads to the evidence: the six blocked measurements (three probes, two rounds).
    let link = notes["raw_measurements"].as_str().expect("raw_measurements");
    assert_eq!(link, format!("{}/api/v1/measurements?country=XA&target=news&test=tls&verdict=blocked", collector.url));
    let body = http().get(link).send().await.expect("GET").error_for_status().expect("200").text().await.expect("body");
    let lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).expect("NDJSON")).collect();
    assert_eq!(lines.len(), 6, "{body}");
    assert!(
        lines
            .iter()
            .all(|m| m["probe"]["cc"] == BLOCKING && m["verdict"]["status"] == "blocked" && m["target"]["name"] == "news")
    );

    // And the clean countries are really in Prometheus, so their silence means something.
    for cc in [CLEAN, BELOW_K] {
        let expr = format!("country:vantage_probes_active:max{{country=\"{cc}\"}} > 0");
        assert!(!query(prometheus, &expr).await.expect("query").is_empty(), "{cc} has no active probes in Prometheus");
    }
}
