//! `vantage-probe`: parse flags, dispatch, pick an exit code. The work is in the library.
//!
//! Exit codes: 0 the run completed (whatever it found), 1 an error, 2 bad usage (clap's own, and
//! a flag value found unusable after parsing: a [`ConfigError`]), 3 this machine has no network
//! (nothing was measured).

use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use vantage_engine::{schedule, targets};
use vantage_measurement::{Measurement, Mechanism};
use vantage_probe::cli::{self, Cli, Command, ConfigError, FlushArgs, RunArgs};
use vantage_probe::identity;
use vantage_probe::spool::Spool;
use vantage_probe::upload::{FlushReport, Uploader};
use vantage_probe::{netcheck, report};

const EXIT_USAGE: u8 = 2;
const EXIT_NO_NETWORK: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    // One crypto provider for every rustls user in the process (reqwest, quinn, our runners).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(*args).await,
            Command::Flush(args) => flush(args).await.map(|_| ExitCode::SUCCESS),
            Command::Targets => {
                print_targets();
                Ok(ExitCode::SUCCESS)
            }
            Command::Schema => {
                print!("{}", vantage_measurement::json_schema());
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        // A flag value that parsed but can't be used is bad usage, as clap's own errors are.
        Err(e) if e.downcast_ref::<ConfigError>().is_some() => {
            eprintln!("error: {e:#}\n\nFor more information, try '--help'.");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("VANTAGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("vantage_probe={level},warn")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let http = cli::http_client(&args.ca, timeout)?;
    let cfg = Arc::new(args.measure_config(&http)?);
    let targets = match &args.targets {
        Some(path) => targets::load(path)?,
        None => targets::builtin(),
    };

    let mut destinations: Vec<IpAddr> = targets.iter().filter_map(|t| t.address).collect();
    destinations.extend(cfg.udp_resolver.map(|r| r.ip()));
    let needs_internet = targets.iter().any(|t| t.address.is_none());
    if !netcheck::has_route(&destinations, needs_internet) {
        eprintln!(
            "No network: this machine has no route to the targets or to the internet, so nothing was \
             measured (measuring now would report every target as failing, which says nothing \
             about censorship). Connect to a network and run again."
        );
        return Ok(ExitCode::from(EXIT_NO_NETWORK));
    }

    // The spool and the key are needed only to deliver; both are checked before measuring, so a
    // key with the wrong permissions stops the run before it costs anything.
    let delivery_setup = match &args.collector {
        Some(_) => {
            let data_dir = args.data_dir.clone().unwrap_or_else(cli::default_data_dir);
            let spool = Spool::open(&data_dir)?;
            Some((spool, identity::load_or_create(&data_dir)?))
        }
        None => None,
    };
    let (spool, key) = match delivery_setup {
        Some((spool, key)) => (Some(spool), Some(key)),
        None => (None, None),
    };
    let mut writer = spool.as_ref().map(Spool::writer).transpose()?;

    let jobs = schedule::plan(&targets, args.tests.as_deref());
    let progress = progress_bar(jobs.len() as u64, args.json);
    let mut measurements = Vec::with_capacity(jobs.len());
    let mut spool_error = None;
    let stdout = std::io::stdout();
    schedule::run(cfg.clone(), jobs, args.concurrency, |m| {
        if let Some(w) = writer.as_mut()
            && let Err(e) = w.append(&m)
        {
            spool_error.get_or_insert(e);
        }
        if args.json {
            let _ = report::write_json_line(&mut stdout.lock(), &m);
        }
        progress.inc(1);
        measurements.push(m);
    })
    .await;
    progress.finish_and_clear();
    if let Some(e) = spool_error {
        return Err(e).context("measurements could not be spooled");
    }
    if let Some(w) = writer {
        w.seal()?;
    }

    if args.json {
        eprintln!("{}", report::table::totals(&measurements));
    } else {
        print!("{}", report::table::render(&measurements));
    }
    if all_offline(&measurements) {
        eprintln!(
            "No network: every test failed on this machine's own network (no route or interface down); these are not censorship results."
        );
    }
    if let (Some(url), Some(spool), Some(key)) = (&args.collector, &spool, key) {
        let delivery = Uploader::new(url, http, timeout * 3).with_key(key).flush(spool).await;
        print_delivery(&delivery, args.json);
    }
    let _ = std::io::stdout().flush();
    Ok(ExitCode::SUCCESS)
}

fn all_offline(measurements: &[Measurement]) -> bool {
    !measurements.is_empty() && measurements.iter().all(|m| m.verdict.mechanism == Some(Mechanism::NetworkOffline))
}

fn progress_bar(len: u64, json: bool) -> ProgressBar {
    if json || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{spinner} measuring [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

async fn flush(args: FlushArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(cli::DEFAULT_TIMEOUT_SECS);
    let http = cli::http_client(&args.ca, timeout)?;
    let data_dir = args.data_dir.unwrap_or_else(cli::default_data_dir);
    let spool = Spool::open(&data_dir)?;
    let key = identity::load_or_create(&data_dir)?;
    let delivery = Uploader::new(&args.collector, http, timeout * 3).with_key(key).flush(&spool).await;
    print_delivery(&delivery, false);
    match delivery.error {
        Some(e) => anyhow::bail!("{e}"),
        None => Ok(()),
    }
}

fn print_delivery(d: &FlushReport, to_stderr: bool) {
    let mut line = format!("collector: {} stored, {} already there, {} refused", d.accepted, d.duplicates, d.rejected);
    if d.rejected > 0 {
        line.push_str(" (kept with reasons in the spool's rejected/ folder)");
    }
    if let Some(e) = &d.error {
        line.push_str(&format!("; {} waiting in the spool for the next run ({e})", d.remaining));
    }
    if to_stderr {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

fn print_targets() {
    for t in targets::builtin() {
        let tests: Vec<String> = t.tests.iter().map(|x| format!("\"{}\"", x.as_str())).collect();
        println!(
            "[[target]]\nname = \"{}\"\ndomain = \"{}\"\nport = {}\ntests = [{}]\ncontrol_sni = \"{}\"\n",
            t.name,
            t.domain,
            t.port,
            tests.join(", "),
            t.control_sni
        );
    }
}
