//! `ingest-load`: the ingest benchmark's load generator (run by `tests/bench/ingest.sh`).
//!
//! Starts a real `vantage-collector serve` on loopback for each figure and prints, per backend:
//!
//! - **throughput**: `--batches` gzip batches of `--lines` realistic TLS measurements, signed by
//!   `--clients` probe keys posting at once (one batch at a time each, as a probe does), in
//!   measurements per second; `--rounds` times on the same store, fresh ids each round;
//! - **stored bytes** per measurement after those rounds (SQLite: the file once the collector
//!   closed it, which checkpoints the WAL; PostgreSQL: the database's growth);
//! - **latency**: `--probes` probes (distinct keys and source addresses) posting
//!   `--probe-batches` batches of `--probe-lines` each, all at once: p50 and p99 per batch;
//! - **`/metrics`**: the exposition rendered once `--series` label combinations were counted
//!   (countries × the published targets), median of five scrapes.
//!
//! Every key is in the collector's `--trusted-keys`, so each measurement takes the whole counting
//! path, as a trusted fleet's do; the rate limits are off (all load comes from 127.0.0.0/8).
//! Nothing is timed while batches are made: bodies are built and signed before the clock starts.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::Utc;
use clap::Parser;
use vantage_measurement::wire::{KEY_HEADER, ProbeKey, SIGNATURE_HEADER};
use vantage_tests::load::{SignedBatch, Workload, percentile};
use vantage_tests::procs::Collector;

/// Load a real collector on loopback and print ingest throughput, stored bytes, batch latency
/// and `/metrics` render time.
#[derive(Debug, Parser)]
struct Args {
    /// Also run every figure against PostgreSQL: `serve --database URL` (an empty database the
    /// benchmark may fill).
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Also run every figure against a PostgreSQL of its own: Debian's server, started in a temp
    /// directory for the run (as the tests do), instead of `--database`.
    #[arg(long, conflicts_with = "database")]
    temp_postgres: bool,
    /// Throughput: batches per round.
    #[arg(long, default_value_t = 100)]
    batches: usize,
    /// Throughput: measurements per batch.
    #[arg(long, default_value_t = 500)]
    lines: usize,
    /// Throughput: concurrent clients (keys, source addresses).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Throughput: rounds on the same store.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Latency: concurrent probes.
    #[arg(long, default_value_t = 1000)]
    probes: usize,
    /// Latency: batches each probe posts, back to back.
    #[arg(long, default_value_t = 5)]
    probe_batches: usize,
    /// Latency: measurements per batch.
    #[arg(long, default_value_t = 10)]
    probe_lines: usize,
    /// Latency: the probes' batches spread evenly at this many per second in all (a fleet's
    /// steady state); 0 sends them all at once (the burst after an outage).
    #[arg(long, default_value_t = 0.0)]
    pace: f64,
    /// `/metrics`: label combinations to create before timing the exposition.
    #[arg(long, default_value_t = 100_000)]
    series: usize,
    /// Only these figures (repeat the flag); all without it. For profiling one path, e.g. with a
    /// `vantage-collector` beside this binary that runs the real one under valgrind.
    #[arg(long, value_enum)]
    only: Vec<Phase>,
}

/// The benchmark's figures, for `--only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    /// Throughput and stored bytes.
    Throughput,
    /// Batch latency of many probes at once.
    Latency,
    /// `/metrics` render time.
    Metrics,
}

impl Args {
    fn runs(&self, phase: Phase) -> bool {
        self.only.is_empty() || self.only.contains(&phase)
    }
}

/// Published targets: the most the collector allows as labels.
const TARGETS: usize = 1000;

/// Where the collector keeps its data.
#[derive(Clone, Debug)]
enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// What one backend measured.
#[derive(Debug, Default)]
struct Figures {
    rates: Vec<f64>,
    stored_bytes: Option<f64>,
    p50: Duration,
    p99: Duration,
    failed: usize,
    render: Duration,
    series: usize,
    exposition_bytes: usize,
}

/// The keys, the trusted-keys and targets files every collector of the run gets.
struct Setup {
    workload: Workload,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> anyhow::Result<Setup> {
        let workload = Workload::new(TARGETS)?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("targets.toml"), workload.targets_toml())?;
        Ok(Setup { workload, dir })
    }

    /// The flags of a benchmark collector whose trusted keys are `keys`.
    fn start(&self, backend: &Backend, keys: &[ProbeKey], max_series: usize) -> anyhow::Result<Collector> {
        let trusted = self.dir.path().join("trusted-keys");
        std::fs::write(&trusted, keys.iter().map(|k| format!("{}\n", k.key_id().as_str())).collect::<String>())?;
        let mut flags: Vec<String> =
            ["--ingest-rate-per-source", "off", "--ingest-rate-per-key", "off", "--max-connections", "100000"]
                .map(String::from)
                .to_vec();
        flags.extend(["--trusted-keys".into(), trusted.display().to_string()]);
        flags.extend(["--targets".into(), self.dir.path().join("targets.toml").display().to_string()]);
        flags.extend(["--max-series".into(), max_series.to_string()]);
        if let Backend::Postgres(url) = backend {
            flags.extend(["--database".into(), url.clone()]);
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Collector::start(&flags)
    }
}

/// The key of client `n` of a phase (`tag` keeps the phases' keys apart).
fn key(tag: u8, n: usize) -> ProbeKey {
    let mut seed = [tag; 32];
    seed[..8].copy_from_slice(&(n as u64).to_le_bytes());
    ProbeKey::from_seed(&seed)
}

/// A client posting from its own loopback address (the collector counts sources by address).
fn client(n: usize) -> anyhow::Result<reqwest::Client> {
    let n = n + 1;
    let address = std::net::Ipv4Addr::new(127, (n / 250 + 1) as u8, 0, (n % 250 + 1) as u8);
    Ok(reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::V4(address))
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// POST one batch; the number it accepted (an error unless 200).
async fn post(http: &reqwest::Client, url: &str, batch: &SignedBatch) -> anyhow::Result<u64> {
    let response = http
        .post(url)
        .header("content-encoding", "gzip")
        .header(KEY_HEADER, &batch.key)
        .header(SIGNATURE_HEADER, &batch.signature)
        .body(batch.body.clone())
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status == 200, "{status}: {text}");
    let report: serde_json::Value = serde_json::from_str(&text)?;
    report["accepted"].as_u64().context("no accepted count in the report")
}

/// Countries for client `n`: two upper-case letters.
fn country(n: usize) -> String {
    let n = n % (26 * 26);
    String::from_utf8(vec![b'A' + (n / 26) as u8, b'A' + (n % 26) as u8]).unwrap_or_else(|_| "ZZ".into())
}

/// Throughput and stored bytes.
async fn throughput(setup: &Setup, backend: &Backend, args: &Args, figures: &mut Figures) -> anyhow::Result<()> {
    let keys: Vec<ProbeKey> = (0..args.clients).map(|n| key(1, n)).collect();
    let collector = setup.start(backend, &keys, 20_000)?;
    let url = format!("{}/api/v1/measurements", collector.url);
    let clients: Vec<reqwest::Client> = (0..args.clients).map(client).collect::<anyhow::Result<_>>()?;
    let before = stored_size(backend, &collector)?;
    let (mut stored, mut raw) = (0u64, 0usize);
    for round in 0..args.rounds {
        let now = Utc::now();
        let batches: Vec<(usize, SignedBatch)> = (0..args.batches)
            .map(|b| {
                let n = b % args.clients;
                let lines: Vec<_> = (0..args.lines)
                    .map(|j| setup.workload.measurement(b * args.lines + j, &country(n), 64_496 + n as u32, now))
                    .collect();
                Ok((n, SignedBatch::new(&keys[n], &lines)?))
            })
            .collect::<anyhow::Result<_>>()?;
        raw += batches.iter().map(|(_, b)| b.raw_bytes).sum::<usize>();
        let batches = Arc::new(batches);
        let started = Instant::now();
        let tasks: Vec<_> = (0..args.clients)
            .map(|n| {
                let (http, url, batches) = (clients[n].clone(), url.clone(), Arc::clone(&batches));
                tokio::spawn(async move {
                    let mut accepted = 0;
                    for (_, batch) in batches.iter().filter(|(owner, _)| *owner == n) {
                        accepted += post(&http, &url, batch).await?;
                    }
                    anyhow::Ok(accepted)
                })
            })
            .collect();
        let mut accepted = 0;
        for task in tasks {
            accepted += task.await??;
        }
        let elapsed = started.elapsed();
        ensure!(accepted == (args.batches * args.lines) as u64, "round {round}: {accepted} accepted");
        stored += accepted;
        figures.rates.push(accepted as f64 / elapsed.as_secs_f64());
        eprintln!("  round {}: {accepted} measurements in {:.2} s", round + 1, elapsed.as_secs_f64());
    }
    eprintln!("  {:.0} bytes of NDJSON per measurement", raw as f64 / stored as f64);
    let after = match backend {
        Backend::Sqlite => {
            let dir = collector.stop()?;
            sqlite_size(dir.path())?
        }
        Backend::Postgres(_) => stored_size(backend, &collector)?,
    };
    figures.stored_bytes = Some(after.saturating_sub(before) as f64 / stored as f64);
    Ok(())
}

/// Bytes the store holds now (SQLite: the files; PostgreSQL: the database).
fn stored_size(backend: &Backend, collector: &Collector) -> anyhow::Result<u64> {
    match backend {
        Backend::Sqlite => sqlite_size(collector.data_dir.path()),
        Backend::Postgres(url) => {
            let out = std::process::Command::new("psql")
                .args([url.as_str(), "-At", "-c", "SELECT pg_database_size(current_database())"])
                .output()?;
            ensure!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
            Ok(String::from_utf8(out.stdout)?.trim().parse()?)
        }
    }
}

/// The SQLite files in `dir` (database, WAL, shared memory), in bytes.
fn sqlite_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("vantage.sqlite3") {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// p50 and p99 of `--probes` probes posting small batches at once.
async fn latency(setup: &Setup, backend: &Backend, args: &Args, figures: &mut Figures) -> anyhow::Result<()> {
    let keys: Vec<ProbeKey> = (0..args.probes).map(|n| key(2, n)).collect();
    let collector = setup.start(backend, &keys, 20_000)?;
    let url = format!("{}/api/v1/measurements", collector.url);
    let now = Utc::now();
    let mut probes = Vec::with_capacity(args.probes);
    for (n, key) in keys.iter().enumerate() {
        let batches = (0..args.probe_batches)
            .map(|b| {
                let lines: Vec<_> = (0..args.probe_lines)
                    .map(|j| setup.workload.measurement(n + b * args.probe_lines + j, &country(n), 64_496, now))
                    .collect();
                SignedBatch::new(key, &lines)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        probes.push((client(n)?, batches));
    }
    let start = Arc::new(tokio::sync::Barrier::new(args.probes));
    let (pace, fleet) = (args.pace, args.probes);
    let tasks: Vec<_> = probes
        .into_iter()
        .enumerate()
        .map(|(n, (http, batches))| {
            let (url, start) = (url.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                let began = tokio::time::Instant::now();
                let mut seen = Vec::with_capacity(batches.len());
                for (b, batch) in batches.iter().enumerate() {
                    if pace > 0.0 {
                        // Batch b of probe n is the (n + b * probes)th of an even stream.
                        let due = Duration::from_secs_f64((n + b * fleet) as f64 / pace);
                        tokio::time::sleep_until(began + due).await;
                    }
                    let started = Instant::now();
                    let ok = post(&http, &url, batch).await.is_ok();
                    seen.push((ok, started.elapsed()));
                }
                seen
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        for (ok, took) in task.await? {
            figures.failed += usize::from(!ok);
            latencies.push(took);
        }
    }
    latencies.sort();
    figures.p50 = percentile(&latencies, 0.5);
    figures.p99 = percentile(&latencies, 0.99);
    eprintln!(
        "  {} batches, {} failed, max {:.1} ms",
        latencies.len(),
        figures.failed,
        ms(latencies.last().copied().unwrap_or_default())
    );
    drop(collector);
    Ok(())
}

/// `/metrics` at `--series` label combinations: countries × published targets, one measurement
/// each.
async fn metrics(setup: &Setup, backend: &Backend, args: &Args, figures: &mut Figures) -> anyhow::Result<()> {
    let signer = key(3, 0);
    // Room for every combination, the ASN family's and the fleet gauges'.
    let collector = setup.start(backend, std::slice::from_ref(&signer), args.series * 2 + 10_000)?;
    let url = format!("{}/api/v1/measurements", collector.url);
    let http = client(0)?;
    let now = Utc::now();
    const PER_BATCH: usize = 5000;
    for first in (0..args.series).step_by(PER_BATCH) {
        let lines: Vec<_> = (first..(first + PER_BATCH).min(args.series))
            .map(|i| setup.workload.measurement(i % TARGETS, &country(i / TARGETS), 64_496, now))
            .collect();
        post(&http, &url, &SignedBatch::new(&signer, &lines)?).await?;
    }
    let scrape = format!("{}/metrics", collector.url);
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let text = http.get(&scrape).send().await?.error_for_status()?.text().await?;
        times.push(started.elapsed());
        figures.series = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
        figures.exposition_bytes = text.len();
    }
    times.sort();
    figures.render = percentile(&times, 0.5);
    if figures.series < args.series {
        bail!("only {} series in the exposition; wanted {}", figures.series, args.series);
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let setup = Setup::new()?;
    let mut backends = vec![Backend::Sqlite];
    backends.extend(args.database.clone().map(Backend::Postgres));
    // Kept for the whole run: dropping it stops the server.
    let temp_postgres = args.temp_postgres.then(vantage_tests::postgres::TempPostgres::start).transpose()?;
    if let Some(server) = &temp_postgres {
        backends.push(Backend::Postgres(server.create_database("bench")?));
    }
    let mut results = Vec::new();
    for backend in &backends {
        let mut figures = Figures::default();
        if args.runs(Phase::Throughput) {
            eprintln!(
                "{}: throughput ({} x {} batches of {} from {} clients)",
                backend.name(),
                args.rounds,
                args.batches,
                args.lines,
                args.clients
            );
            throughput(&setup, backend, &args, &mut figures).await?;
        }
        if args.runs(Phase::Latency) {
            let pace = if args.pace > 0.0 { format!("{} batches/s in all", args.pace) } else { "all at once".into() };
            eprintln!(
                "{}: latency ({} probes x {} batches of {}, {pace})",
                backend.name(),
                args.probes,
                args.probe_batches,
                args.probe_lines
            );
            latency(&setup, backend, &args, &mut figures).await?;
        }
        if args.runs(Phase::Metrics) {
            eprintln!("{}: /metrics at {} label combinations", backend.name(), args.series);
            metrics(&setup, backend, &args, &mut figures).await?;
        }
        results.push((backend.name(), figures));
    }
    println!(
        "{:<9} {:>22} {:>18} {:>10} {:>10} {:>8} {:>14}",
        "backend", "measurements/s", "bytes/measurement", "p50 ms", "p99 ms", "failed", "/metrics ms"
    );
    for (name, f) in &results {
        let rates: Vec<String> = f.rates.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "{:<9} {:>22} {:>18} {:>10.1} {:>10.1} {:>8} {:>14}",
            name,
            format!("{:.0} ({})", median(&f.rates), rates.join("/")),
            f.stored_bytes.map_or("-".into(), |b| format!("{b:.0}")),
            ms(f.p50),
            ms(f.p99),
            f.failed,
            format!("{:.1} ({}k series, {} MB)", ms(f.render), f.series / 1000, f.exposition_bytes / 1_000_000),
        );
    }
    Ok(())
}
