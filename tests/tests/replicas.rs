//! Stateless replicas: three real `vantage-collector serve` processes on one PostgreSQL database
//! (issue 11). Signed batches are spread over them as a load balancer would; then every
//! measurement is stored once (counted through each replica's API), every replica exports the
//! same fleet gauges and shows the same status figures, the series budget folds alike on all,
//! each duty has exactly one holder and passes on when its holder is killed, and `kill -9` of a
//! replica in the middle of a large batch loses no acknowledged row.
//!
//! The exposition is parsed (name, labels, value); nothing here searches the page for a
//! substring. Waits poll with a deadline; nothing asserts a duration.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use chrono::Utc;
use vantage_measurement::wire::{KEY_HEADER, ProbeKey, SIGNATURE_HEADER};
use vantage_measurement::{Measurement, example};
use vantage_tests::postgres::TempPostgres;
use vantage_tests::procs::Collector;

/// The budget under test: small enough that the countries below overflow it.
const MAX_SERIES: &str = "100";
/// The fleet families, whose values every replica must export alike.
const FLEET_FAMILIES: &[&str] = &[
    "vantage_probes_active",
    "vantage_target_probes",
    "vantage_target_asns",
    "vantage_target_asns_measured",
    "vantage_collector_keys_active",
    "vantage_collector_fleet_refresh_timestamp_seconds",
];
/// The families under the series budget.
const BUDGETED: &[&str] = &[
    "vantage_measurements_total",
    "vantage_measurements_by_asn_total",
    "vantage_probes_active",
    "vantage_target_probes",
    "vantage_target_asns",
    "vantage_target_asns_measured",
];

/// One sample's labels, sorted by name.
type Labels = BTreeMap<String, String>;
/// A parsed exposition: family name → labels → value.
type Exposition = BTreeMap<String, BTreeMap<Labels, f64>>;

/// Parse the text exposition format: `# ` lines skipped, then `name{k="v",…} value`, label
/// values unescaped (`\\`, `\"`, `\n`).
fn parse(text: &str) -> anyhow::Result<Exposition> {
    let mut out = Exposition::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (name, rest) = match line.find(['{', ' ']) {
            Some(at) => line.split_at(at),
            None => bail!("no value: {line:?}"),
        };
        let mut labels = Labels::new();
        let mut rest = rest;
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end = loop {
                let Some((start, c)) = chars.next() else { bail!("unclosed labels: {line:?}") };
                if c == '}' {
                    break start + 1;
                }
                if c == ',' {
                    continue;
                }
                let eq = body[start..].find("=\"").context("label without =\"")? + start;
                let key = body[start..eq].to_string();
                while chars.peek().is_some_and(|(i, _)| *i <= eq + 1) {
                    chars.next();
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c)) => value.push(c),
                            None => bail!("dangling escape: {line:?}"),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => value.push(c),
                        None => bail!("unclosed value: {line:?}"),
                    }
                }
                labels.insert(key, value);
            };
            rest = &body[end..];
        }
        let value: f64 = rest.trim().split(' ').next().context("value")?.parse().with_context(|| format!("value of {line:?}"))?;
        out.entry(name.to_string()).or_default().insert(labels, value);
    }
    Ok(out)
}

#[test]
fn the_parser_reads_labels_with_escapes() -> anyhow::Result<()> {
    let text = "# HELP x y\nx{a=\"1\",b=\"q\\\"uo,te}\"} 2\ny 3.5\n";
    let parsed = parse(text)?;
    let labels: Labels = [("a".into(), "1".into()), ("b".into(), "q\"uo,te}".into())].into();
    assert_eq!(parsed["x"][&labels], 2.0);
    assert_eq!(parsed["y"][&Labels::new()], 3.5);
    Ok(())
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().expect("client")
}

async fn exposition(http: &reqwest::Client, replica: &str) -> anyhow::Result<Exposition> {
    let text = http.get(format!("{replica}/metrics")).send().await?.error_for_status()?.text().await?;
    parse(&text)
}

/// Every replica's exposition, in order.
async fn expositions(http: &reqwest::Client, replicas: &[String]) -> anyhow::Result<Vec<Exposition>> {
    let mut all = Vec::new();
    for replica in replicas {
        all.push(exposition(http, replica).await?);
    }
    Ok(all)
}

/// The value of an unlabelled (or single) sample of `name`, or of `name{label=value}`.
fn value(e: &Exposition, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    e.get(name)?.iter().find(|(labels, _)| label.is_none_or(|(k, v)| labels.get(k).is_some_and(|l| l == v))).map(|(_, v)| *v)
}

/// Every measurement id the replica's API returns.
async fn stored_ids(http: &reqwest::Client, replica: &str) -> anyhow::Result<Vec<String>> {
    let body = http.get(format!("{replica}/api/v1/measurements?limit=100000")).send().await?.error_for_status()?.text().await?;
    body.lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line)?;
            row["id"].as_str().map(str::to_string).context("a row without id")
        })
        .collect()
}

/// Post `batch` signed by `key`; the status code, or an error if no answer came.
async fn post(http: &reqwest::Client, replica: &str, key: &ProbeKey, batch: &[Measurement]) -> anyhow::Result<u16> {
    let body: String = batch.iter().map(|m| m.to_json_line().expect("serialise") + "\n").collect();
    let response = http
        .post(format!("{replica}/api/v1/measurements"))
        .header("content-type", "application/x-ndjson")
        .header(KEY_HEADER, key.public_key_base64())
        .header(SIGNATURE_HEADER, key.sign_base64(body.as_bytes()))
        .body(body)
        .send()
        .await?;
    Ok(response.status().as_u16())
}

fn probe_key(n: u8) -> ProbeKey {
    ProbeKey::from_seed(&[n; 32])
}

/// A measurement of the `n`th country (two letters from n) from `asn`.
fn measurement(n: usize, asn: u32) -> Measurement {
    let mut m = example::tls_reset(Utc::now());
    let letters = [b'A' + (n / 26 % 26) as u8, b'A' + (n % 26) as u8];
    m.probe.cc = String::from_utf8(letters.to_vec()).expect("ascii");
    m.probe.asn = asn;
    m
}

/// Write the trusted-keys file for `keys` probes and start `n` replicas on `url`.
fn start_replicas(url: &str, dir: &Path, keys: u8, n: usize) -> anyhow::Result<Vec<Collector>> {
    let trusted = dir.join("trusted-keys");
    let ids: Vec<String> = (1..=keys).map(|k| probe_key(k).key_id().as_str().to_string()).collect();
    std::fs::write(&trusted, ids.join("\n"))?;
    let trusted = trusted.display().to_string();
    // One loopback source sends for every probe here: its rate limits are off.
    let flags = [
        "--database",
        url,
        "--trusted-keys",
        &trusted,
        "--fleet-refresh-secs",
        "1",
        "--max-series",
        MAX_SERIES,
        "--ingest-rate-per-source",
        "off",
        "--ingest-rate-per-key",
        "off",
    ];
    (0..n).map(|_| Collector::start(&flags)).collect()
}

/// Poll `check` every 200 ms until it says `Ok(true)`; its last error or a timeout after `secs`.
async fn eventually<F, Fut>(what: &str, secs: u64, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let outcome = check().await;
        if matches!(outcome, Ok(true)) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what} did not happen within {secs} s (last check: {outcome:?})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The fleet families of one replica.
fn fleet(e: &Exposition) -> Exposition {
    FLEET_FAMILIES.iter().filter_map(|name| e.get(*name).map(|samples| (name.to_string(), samples.clone()))).collect()
}

/// How many replicas hold `duty`.
fn holders(expositions: &[Exposition], duty: &str) -> usize {
    expositions.iter().filter(|e| value(e, "vantage_collector_duty_held", Some(("duty", duty))) == Some(1.0)).count()
}

/// The figures of the status page: the fleet size, each country's heading and each row's counts
/// (the "ago" hints depend on when a page was rendered, so they are left out).
fn status_figures(html: &str) -> Vec<String> {
    fn texts<'a>(html: &'a str, open: &str, close: &str) -> Vec<&'a str> {
        html.split(open).skip(1).filter_map(|rest| rest.split_once(close).map(|(inner, _)| inner)).collect()
    }
    let mut figures: Vec<String> = texts(html, "<b id=\"fleet-size\">", "</b>").into_iter().map(str::to_string).collect();
    figures.extend(texts(html, "<h2>", "</h2>").into_iter().map(str::to_string));
    figures.extend(texts(html, "<td class=\"n\">", "</td>").into_iter().map(str::to_string));
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_store_once_report_alike_and_hand_duties_on() -> anyhow::Result<()> {
    let pg = TempPostgres::shared()?;
    let url = pg.create_database("replicas_consistency")?;
    let dir = tempfile::tempdir()?;
    let probes: u8 = 6;
    let mut replicas = start_replicas(&url, dir.path(), probes, 3)?;
    let http = client();

    // Six probes, 60 countries between them (more than the budget of 100 series holds), each
    // batch to the next replica; one batch sent again to another replica, as a retry would.
    let mut sent = BTreeSet::new();
    let mut retried = None;
    for batch_no in 0..12usize {
        for probe in 1..=probes {
            let batch: Vec<Measurement> = (0..5).map(|i| measurement(batch_no * 5 + i, 64_500 + u32::from(probe) % 3)).collect();
            sent.extend(batch.iter().map(|m| m.id.to_string()));
            let replica = &replicas[(batch_no + usize::from(probe)) % 3].url;
            ensure!(post(&http, replica, &probe_key(probe), &batch).await? == 200, "batch {batch_no} of probe {probe}");
            retried.get_or_insert((probe, batch, (batch_no + usize::from(probe) + 1) % 3));
        }
    }
    let (probe, batch, other) = retried.context("a batch")?;
    ensure!(post(&http, &replicas[other].url, &probe_key(probe), &batch).await? == 200, "the retry");

    // Every measurement once, whichever replica is asked.
    for replica in &replicas {
        let ids = stored_ids(&http, &replica.url).await?;
        let distinct: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(ids.len(), distinct.len(), "{}: no measurement twice", replica.url);
        assert_eq!(distinct, sent, "{}: every measurement", replica.url);
    }

    // The same fleet gauges (the shared snapshot, newer than the last batch) on all three, and
    // each duty held exactly once.
    let after_ingest = Utc::now().timestamp_millis() as f64 / 1000.0;
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let (http_ref, urls_ref) = (&http, &urls);
    let consistent = move || async move {
        let all = expositions(http_ref, urls_ref).await?;
        let fleets: Vec<Exposition> = all.iter().map(fleet).collect();
        let made = value(&all[0], "vantage_collector_fleet_refresh_timestamp_seconds", None).unwrap_or(0.0);
        let probes_seen: f64 = fleets[0].get("vantage_probes_active").map(|s| s.values().sum()).unwrap_or(0.0);
        Ok(made > after_ingest
            && probes_seen >= f64::from(probes)
            && fleets.windows(2).all(|w| w[0] == w[1])
            && ["fleet_refresh", "retention"].iter().all(|duty| holders(&all, duty) == 1))
    };
    eventually("identical fleet gauges on every replica", 30, consistent).await?;

    // The same status figures.
    let mut pages = Vec::new();
    for replica in &replicas {
        pages.push(status_figures(&http.get(format!("{}/", replica.url)).send().await?.error_for_status()?.text().await?));
    }
    assert!(pages[0].len() > 3, "the page shows the fleet: {:?}", pages[0]);
    assert!(pages.windows(2).all(|w| w[0] == w[1]), "{pages:#?}");

    // The budget folded alike: all replicas' budgeted series together are no more than the one
    // set the database admitted (each folding on its own would export up to three budgets).
    let all = expositions(&http, &urls).await?;
    let admitted: Vec<f64> = all.iter().filter_map(|e| value(e, "vantage_metric_series_admitted", None)).collect();
    let union: BTreeSet<(&str, &Labels)> = all
        .iter()
        .flat_map(|e| BUDGETED.iter().filter_map(|n| e.get(*n).map(|s| s.keys().map(move |l| (*n, l)))))
        .flatten()
        .collect();
    assert!(admitted.iter().all(|a| *a >= union.len() as f64), "admitted {admitted:?}, exported {}", union.len());
    let folded: f64 = all
        .iter()
        .filter_map(|e| e.get("vantage_metric_labels_folded_total"))
        .flat_map(|samples| samples.iter().filter(|(labels, _)| labels.get("reason").is_some_and(|r| r == "budget")))
        .map(|(_, v)| v)
        .sum();
    assert!(folded > 0.0, "the budget was spent, so something folded");

    // Kill the holder of the fleet refresh: another replica takes the duty and refreshes.
    let holder = all
        .iter()
        .position(|e| value(e, "vantage_collector_duty_held", Some(("duty", "fleet_refresh"))) == Some(1.0))
        .context("a holder")?;
    drop(replicas.remove(holder)); // SIGKILL
    let killed_at = Utc::now().timestamp_millis() as f64 / 1000.0;
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let (http_ref, urls_ref) = (&http, &urls);
    let taken_over = move || async move {
        let all = expositions(http_ref, urls_ref).await?;
        let made: Vec<f64> =
            all.iter().filter_map(|e| value(e, "vantage_collector_fleet_refresh_timestamp_seconds", None)).collect();
        Ok(["fleet_refresh", "retention"].iter().all(|duty| holders(&all, duty) == 1)
            && made.len() == 2
            && made.iter().all(|t| *t > killed_at)
            && fleet(&all[0]) == fleet(&all[1]))
    };
    eventually("a surviving replica taking the duties over", 30, taken_over).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_a_replica_mid_batch_loses_no_acknowledged_row() -> anyhow::Result<()> {
    let pg = TempPostgres::shared()?;
    let url = pg.create_database("replicas_kill")?;
    let dir = tempfile::tempdir()?;
    let clients: u8 = 4;
    let replicas = start_replicas(&url, dir.path(), clients, 3)?;
    let urls: Arc<Vec<String>> = Arc::new(replicas.iter().map(|r| r.url.clone()).collect());
    let dead = Arc::new(AtomicUsize::new(usize::MAX));
    // Batches to replica 0 that were sent and not yet answered.
    let in_flight_on_0 = Arc::new(AtomicUsize::new(0));
    let answered_by_0 = Arc::new(AtomicUsize::new(0));

    // Each client sends large batches in turn to each replica; a batch without a 200 goes to
    // the next replica that is alive, as a probe keeps its spool and retries.
    let mut tasks = Vec::new();
    for client_no in 1..=clients {
        let (urls, dead, in_flight_on_0, answered_by_0) =
            (Arc::clone(&urls), Arc::clone(&dead), Arc::clone(&in_flight_on_0), Arc::clone(&answered_by_0));
        tasks.push(tokio::spawn(async move {
            let http = client();
            let key = probe_key(client_no);
            let mut sent = BTreeSet::new();
            let mut acknowledged = BTreeSet::new();
            for batch_no in 0..6usize {
                let batch: Vec<Measurement> = (0..1500).map(|i| measurement(i % 40, 64_500)).collect();
                sent.extend(batch.iter().map(|m| m.id.to_string()));
                let mut target = (batch_no + usize::from(client_no)) % urls.len();
                for _attempt in 0..50 {
                    if target == dead.load(Ordering::SeqCst) {
                        target = (target + 1) % urls.len();
                    }
                    if target == 0 {
                        in_flight_on_0.fetch_add(1, Ordering::SeqCst);
                    }
                    let status = post(&http, &urls[target], &key, &batch).await;
                    if target == 0 {
                        in_flight_on_0.fetch_sub(1, Ordering::SeqCst);
                    }
                    if matches!(status, Ok(200)) {
                        if target == 0 {
                            answered_by_0.fetch_add(1, Ordering::SeqCst);
                        }
                        acknowledged.extend(batch.iter().map(|m| m.id.to_string()));
                        break;
                    }
                    target = (target + 1) % urls.len();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            (sent, acknowledged)
        }));
    }

    // Kill replica 0 once it has answered a batch and is busy with another.
    let mut replicas = replicas.into_iter();
    let victim = replicas.next().context("three replicas")?;
    let survivors: Vec<Collector> = replicas.collect();
    let (answered, in_flight) = (&answered_by_0, &in_flight_on_0);
    eventually("replica 0 busy with a batch after answering one", 120, move || async move {
        Ok(answered.load(Ordering::SeqCst) >= 1 && in_flight.load(Ordering::SeqCst) >= 1)
    })
    .await?;
    dead.store(0, Ordering::SeqCst);
    drop(victim); // SIGKILL, mid-batch

    let mut sent = BTreeSet::new();
    let mut acknowledged = BTreeSet::new();
    for task in tasks {
        let (s, a) = task.await?;
        sent.extend(s);
        acknowledged.extend(a);
    }
    assert_eq!(acknowledged, sent, "every batch was acknowledged in the end (retried on a survivor)");
    let http = client();
    for survivor in &survivors {
        let ids = stored_ids(&http, &survivor.url).await?;
        let stored: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(ids.len(), stored.len(), "no row twice");
        let lost: Vec<_> = acknowledged.difference(&stored).take(5).collect();
        assert!(lost.is_empty(), "{}: acknowledged rows lost, e.g. {lost:?}", survivor.url);
        assert_eq!(stored, sent, "everything stored once, nothing else");
    }
    Ok(())
}
