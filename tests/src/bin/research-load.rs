//! `research-load`: the research API's benchmark (run by `tests/bench/research.sh`).
//!
//! Fills a store with `--rows` measurements written straight through the `Store` API in large
//! batches (how they got there is not what is measured), then starts a real release
//! `vantage-collector serve` on it and prints, per backend:
//!
//! - **walk**: every row read through `GET /api/v1/measurements?limit=N`, following the `Link`
//!   header to the last page: total time, rows per second, pages;
//! - **aggregation**: day × country (`axis_x=time&axis_y=country`) as JSON and as CSV, the
//!   median of `--repeats` requests each.
//!
//! Rows: 10 countries, 3 ASNs each, 50 targets, 2 tests, every verdict, spread over 30 days,
//! a quarter anonymous and the rest from 200 signing keys.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::{TimeZone, Utc};
use clap::Parser;
use vantage_collector::store::{self, CollectorKey, StoreLocation, Submission};
use vantage_measurement::wire::ProbeKey;
use vantage_measurement::{Measurement, Mechanism, Status, TestKind, example};
use vantage_tests::procs::Collector;

/// Fill a store, then time walking it with the cursor and a day × country aggregation.
#[derive(Debug, Parser)]
struct Args {
    /// Measurements in the store.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Rows per page of the walk.
    #[arg(long, default_value_t = 10_000)]
    limit: usize,
    /// Requests per aggregation format (the median is printed).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Also run against a PostgreSQL of its own (Debian's server in a temp directory).
    #[arg(long)]
    temp_postgres: bool,
    /// Skip SQLite.
    #[arg(long)]
    no_sqlite: bool,
}

const COUNTRIES: [&str; 10] = ["IR", "RU", "CN", "TR", "DE", "US", "BR", "IN", "EG", "PK"];
const BATCH: usize = 10_000;
const DAYS: i64 = 30;

/// Row `n` of the data set: deterministic in `n` (but for its id).
fn row(n: usize) -> Measurement {
    let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).single().unwrap_or_else(Utc::now);
    let at = start + chrono::Duration::seconds((n as i64 * 7919) % (DAYS * 86_400));
    let mut m = example::tls_reset(at);
    m.probe.cc = COUNTRIES[n % COUNTRIES.len()].into();
    m.probe.asn = 64_500 + (n % 30) as u32;
    m.target.name = format!("site-{}", (n / 7) % 50);
    m.test = if n.is_multiple_of(5) { TestKind::Dns } else { TestKind::Tls };
    let (status, mechanism) = match n % 11 {
        0..=5 => (Status::Ok, None),
        6..=8 => (Status::Blocked, Some(Mechanism::TlsResetAfterClientHello)),
        9 => (Status::Down, Some(Mechanism::ControlFailed)),
        _ => (Status::Inconclusive, None),
    };
    m.verdict.status = status;
    m.verdict.mechanism = mechanism;
    m
}

async fn fill(location: &StoreLocation, rows: usize) -> anyhow::Result<Duration> {
    let store = store::open(location).await?;
    let keys: Vec<_> = (0..200u8).map(|n| ProbeKey::from_seed(&[n; 32]).key_id()).collect();
    let started = Instant::now();
    let mut n = 0;
    while n < rows {
        let size = BATCH.min(rows - n);
        let batch: Vec<Measurement> = (n..n + size).map(row).collect();
        let key = !(n / BATCH).is_multiple_of(4);
        let probe = key.then(|| &keys[(n / BATCH) % keys.len()]);
        let standing = Some(if key { CollectorKey::Trusted } else { CollectorKey::Anonymous });
        store.insert(&batch, &Submission { probe, observed: None, standing, received_at: Utc::now() }).await?;
        n += size;
    }
    let took = started.elapsed();
    ensure!(store.count().await? == rows as u64, "the store holds a different number of rows");
    store.close().await?;
    Ok(took)
}

/// Walk every row; (seconds, rows, pages).
async fn walk(http: &reqwest::Client, base: &str, limit: usize) -> anyhow::Result<(f64, usize, usize)> {
    let started = Instant::now();
    let (mut rows, mut pages) = (0, 0);
    let mut next = Some(format!("/api/v1/measurements?limit={limit}"));
    while let Some(path) = next.take() {
        let response = http.get(format!("{base}{path}")).send().await?;
        ensure!(response.status() == 200, "{path}: {}", response.status());
        next = response
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.split_once('>'))
            .map(|(target, _)| target.trim_start_matches('<').to_string());
        let body = response.bytes().await?;
        rows += body.iter().filter(|b| **b == b'\n').count();
        pages += 1;
    }
    Ok((started.elapsed().as_secs_f64(), rows, pages))
}

/// The median of `repeats` requests of `path`, in seconds, and the body's size.
async fn median(http: &reqwest::Client, base: &str, path: &str, repeats: usize) -> anyhow::Result<(f64, usize)> {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..repeats.max(1) {
        let started = Instant::now();
        let response = http.get(format!("{base}{path}")).send().await?;
        ensure!(response.status() == 200, "{path}: {}", response.status());
        size = response.bytes().await?.len();
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], size))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(600)).build()?;
    let temp_postgres = args.temp_postgres.then(vantage_tests::postgres::TempPostgres::start).transpose()?;
    let mut runs: Vec<(&str, Option<String>)> = Vec::new();
    if !args.no_sqlite {
        runs.push(("sqlite", None));
    }
    if let Some(server) = &temp_postgres {
        runs.push(("postgres", Some(server.create_database("research")?)));
    }
    if runs.is_empty() {
        bail!("nothing to run: --no-sqlite without --temp-postgres");
    }
    for (name, url) in runs {
        let data_dir = tempfile::tempdir()?;
        let location = match &url {
            Some(url) => StoreLocation::Postgres { url: url.clone() },
            None => StoreLocation::Sqlite { data_dir: data_dir.path().to_path_buf() },
        };
        eprintln!("{name}: writing {} rows", args.rows);
        let filled = fill(&location, args.rows).await.context("fill the store")?;
        let extra: Vec<&str> = url.as_deref().map(|u| vec!["--database", u]).unwrap_or_default();
        let collector = Collector::start_in(data_dir, &extra)?;
        let (secs, rows, pages) = walk(&http, &collector.url, args.limit).await?;
        ensure!(rows == args.rows, "the walk saw {rows} rows of {}", args.rows);
        let day_country = "/api/v1/aggregation?axis_x=time&axis_y=country";
        let (json, json_bytes) = median(&http, &collector.url, day_country, args.repeats).await?;
        let (csv, csv_bytes) = median(&http, &collector.url, &format!("{day_country}&format=csv"), args.repeats).await?;
        println!(
            "{name}: {} rows written in {:.1} s; walk (limit {}): {secs:.1} s, {:.0} rows/s, {pages} pages; \
             day x country: json {:.3} s ({json_bytes} B), csv {:.3} s ({csv_bytes} B)",
            args.rows,
            filled.as_secs_f64(),
            args.limit,
            rows as f64 / secs,
            json,
            csv
        );
        collector.stop()?;
    }
    Ok(())
}
