//! `vantage-probe`: parse flags, dispatch, pick an exit code. The work is in the library.
//!
//! Exit codes: 0 the run completed (whatever it found), 1 an error, 2 bad usage (clap's own, and
//! a flag value found unusable after parsing: a [`ConfigError`]), 3 this machine has no network
//! (nothing was measured).

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use vantage_engine::measure::MeasureConfig;
use vantage_engine::schedule;
use vantage_engine::targets::{self, TargetSpec};
use vantage_measurement::{Measurement, Mechanism};
use vantage_probe::cli::{self, Cli, Command, ConfigError, FlushArgs, RunArgs};
use vantage_probe::outputs::Outputs;
use vantage_probe::report::{self, progress};
use vantage_probe::spool::Spool;
use vantage_probe::upload::{FlushReport, Uploader};
use vantage_probe::{identity, netcheck};

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
    exit_code(runtime.block_on(dispatch(cli.command)))
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run(*args).await,
        Command::Flush(args) => flush(args).await,
        Command::Daemon(args) => vantage_probe::daemon::run(*args).await.map(|()| ExitCode::SUCCESS),
        Command::Status(args) => vantage_probe::daemon::status::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Targets => {
            print_targets();
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema => {
            print!("{}", vantage_measurement::json_schema());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `run`: set up, check for a network, open the outbox, measure, report, deliver.
async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let session = Session::new(&args)?;
    if !session.has_network() {
        print_no_network();
        return Ok(ExitCode::from(EXIT_NO_NETWORK));
    }
    // Opened before measuring, so a key with the wrong permissions stops the run before it costs
    // anything.
    let outbox = match &args.collector {
        Some(url) => Some(Outbox::open(url, args.data_dir.clone(), session.http.clone(), session.timeout)?),
        None => None,
    };
    let measurements = session.measure(&args, outbox.as_ref().map(|o| &o.spool)).await?;
    print_results(&measurements, args.json);
    if let Some(outbox) = &outbox {
        print_delivery(&outbox.deliver().await, args.json);
    }
    let _ = std::io::stdout().flush();
    Ok(ExitCode::SUCCESS)
}

/// `flush`: deliver what waits in the spool, without measuring.
async fn flush(args: FlushArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(cli::DEFAULT_TIMEOUT_SECS);
    let http = cli::http_client(&args.ca, timeout)?;
    let delivery = Outbox::open(&args.collector, args.data_dir, http, timeout)?.deliver().await;
    print_delivery(&delivery, false);
    match delivery.error {
        Some(e) => anyhow::bail!("{e}"),
        None => Ok(ExitCode::SUCCESS),
    }
}

fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
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

/// What a run measures with, built from the flags before anything else, so that an unusable flag
/// stops the run first.
struct Session {
    timeout: Duration,
    http: reqwest::Client,
    cfg: Arc<MeasureConfig>,
    targets: Vec<TargetSpec>,
}

impl Session {
    fn new(args: &RunArgs) -> anyhow::Result<Session> {
        let timeout = Duration::from_secs(args.timeout.max(1));
        let http = cli::http_client(&args.ca, timeout)?;
        let cfg = Arc::new(args.measure_config(&http)?);
        let targets = match &args.targets {
            Some(path) => targets::load(path)?,
            None => targets::builtin(),
        };
        Ok(Session { timeout, http, cfg, targets })
    }

    /// Whether the kernel has a route to anything this run would measure.
    fn has_network(&self) -> bool {
        let mut destinations: Vec<IpAddr> = self.targets.iter().filter_map(|t| t.address).collect();
        destinations.extend(self.cfg.udp_resolver.map(|r| r.ip()));
        let needs_internet = self.targets.iter().any(|t| t.address.is_none());
        netcheck::has_route(&destinations, needs_internet)
    }

    /// Run every planned test; each measurement goes to the outputs (the spool first) as it
    /// finishes.
    async fn measure(&self, args: &RunArgs, spool: Option<&Spool>) -> anyhow::Result<Vec<Measurement>> {
        let writer = spool.map(Spool::writer).transpose()?;
        let jobs = schedule::plan(&self.targets, args.tests.as_deref());
        let mut outputs = Outputs::new(writer, args.json, progress::bar(jobs.len() as u64, args.json));
        schedule::run(self.cfg.clone(), jobs, args.concurrency, args.residual_policy(), |m| outputs.record(m)).await;
        outputs.finish().context("measurements could not be spooled")
    }
}

/// What delivery needs: the spool, locked for this process, and an uploader signing with this
/// probe's key.
struct Outbox {
    spool: Spool,
    uploader: Uploader,
}

impl Outbox {
    fn open(collector: &str, data_dir: Option<PathBuf>, http: reqwest::Client, timeout: Duration) -> anyhow::Result<Outbox> {
        let data_dir = data_dir.unwrap_or_else(cli::default_data_dir);
        let spool = Spool::open(&data_dir)?;
        let key = identity::load_or_create(&data_dir)?;
        Ok(Outbox { spool, uploader: Uploader::new(collector, http, timeout * 3).with_key(key) })
    }

    async fn deliver(&self) -> FlushReport {
        self.uploader.flush(&self.spool).await
    }
}

fn print_no_network() {
    eprintln!(
        "No network: this machine has no route to the targets or to the internet, so nothing was \
         measured (measuring now would report every target as failing, which says nothing \
         about censorship). Connect to a network and run again."
    );
}

/// The table (with `--json`, only the totals, on stderr), and a plain word if every test failed
/// for want of a network.
fn print_results(measurements: &[Measurement], json: bool) {
    if json {
        eprintln!("{}", report::table::totals(measurements));
    } else {
        print!("{}", report::table::render(measurements));
    }
    if all_offline(measurements) {
        eprintln!(
            "No network: every test failed on this machine's own network (no route or interface down); these are not censorship results."
        );
    }
}

fn all_offline(measurements: &[Measurement]) -> bool {
    !measurements.is_empty() && measurements.iter().all(|m| m.verdict.mechanism == Some(Mechanism::NetworkOffline))
}

fn print_delivery(d: &FlushReport, to_stderr: bool) {
    let line = report::delivery_line(d);
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
