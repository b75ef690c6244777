//! `vantage-probe`: parse flags, dispatch, pick an exit code. The work is in the library.
//!
//! Exit codes: 0 the run completed (whatever it found), 1 an error, 2 bad usage (clap's own, and
//! a flag value found unusable after parsing: a [`ConfigError`]), 3 this machine has no network
//! (nothing was measured), 4 a VPN or other tunnel holds the default route and `--on-vpn pause`
//! (the default) paused the run (nothing was measured).

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
use vantage_measurement::ProbeInfo;
use vantage_probe::cli::{self, Cli, Command, ConfigError, FlushArgs, RunArgs};
use vantage_probe::config::{self, CollectorAccess, ProbeConfig};
use vantage_probe::forget::{self, ForgetArgs};
use vantage_probe::join::{JoinArgs, JoinError};
use vantage_probe::network::{self, Readiness, TunnelEvidence};
use vantage_probe::outputs::Outputs;
use vantage_probe::report::table::Summary;
use vantage_probe::report::{self, progress};
use vantage_probe::spool::Spool;
use vantage_probe::upload::{FlushReport, Uploader};
use vantage_probe::{consent, identity, netcheck};

const EXIT_USAGE: u8 = 2;
const EXIT_NO_NETWORK: u8 = 3;
const EXIT_ON_VPN: u8 = 4;

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
        Command::Join(args) => join(args).await,
        Command::Forget(args) => forget(args).await,
        Command::Daemon(args) => vantage_probe::daemon::run(*args).await.map(|()| ExitCode::SUCCESS),
        Command::Status(args) => vantage_probe::daemon::status::run(&args).map(|()| ExitCode::SUCCESS),
        Command::KeyId(args) => {
            let key = identity::load_or_create(&args.data_dir.unwrap_or_else(cli::default_data_dir))?;
            println!("{}", key.key_id());
            Ok(ExitCode::SUCCESS)
        }
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
    let mut session = Session::new(&args)?;
    if !session.has_network() {
        print_no_network();
        return Ok(ExitCode::from(EXIT_NO_NETWORK));
    }
    if let Some(tunnel) = stamp_network(&args, &mut Arc::make_mut(&mut session.cfg).probe)? {
        print_paused_on_vpn(tunnel);
        return Ok(ExitCode::from(EXIT_ON_VPN));
    }
    // Opened before measuring, so a key with the wrong permissions stops the run before it costs
    // anything.
    let outbox = match &args.collector {
        Some(url) => {
            // Uploads may go through the proxy; the measurements' own traffic (helper, DoH) never does.
            let access = CollectorAccess {
                ca: &args.ca,
                socks5: args.socks5.as_ref(),
                danger_plaintext: args.danger_plaintext_collector,
                ..CollectorAccess::default()
            };
            let http = config::collector_client(std::slice::from_ref(url), &access, session.timeout)?;
            Some(Outbox::open(url, args.data_dir.clone(), http, session.timeout)?)
        }
        None => None,
    };
    let summary = session.measure(&args, outbox.as_ref().map(|o| &o.spool)).await?;
    print_results(summary, args.json);
    if let Some(outbox) = &outbox {
        print_delivery(&outbox.deliver().await, args.json);
    }
    let _ = std::io::stdout().flush();
    Ok(ExitCode::SUCCESS)
}

/// `flush`: deliver what waits in the spool, without measuring.
async fn flush(args: FlushArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(cli::DEFAULT_TIMEOUT_SECS);
    let access = CollectorAccess {
        ca: &args.ca,
        socks5: args.socks5.as_ref(),
        danger_plaintext: args.danger_plaintext_collector,
        ..CollectorAccess::default()
    };
    vantage_probe::transport::check_flag("collector", &args.collector, access.allowance())?;
    let http = config::collector_client(std::slice::from_ref(&args.collector), &access, timeout)?;
    let delivery = Outbox::open(&args.collector, args.data_dir, http, timeout)?.deliver().await;
    print_delivery(&delivery, false);
    match delivery.error {
        Some(e) => anyhow::bail!("{e}"),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// `join`: consent, the first list, the config file.
async fn join(args: JoinArgs) -> anyhow::Result<ExitCode> {
    let joined = vantage_probe::join::join(&args, &mut consent::Terminal).await.map_err(|e| match e {
        // An unusable flag value is bad usage here too.
        JoinError::Flag(flag) => anyhow::Error::new(flag),
        other => other.into(),
    })?;
    println!("{joined}");
    Ok(ExitCode::SUCCESS)
}

/// `forget`: the signed deletion request, to the first collector that answers.
async fn forget(args: ForgetArgs) -> anyhow::Result<ExitCode> {
    let mut config = ProbeConfig::load(&args.config.unwrap_or_else(config::default_config_path))?;
    config.danger_plaintext_collector |= args.danger_plaintext_collector;
    let timeout = Duration::from_secs(cli::DEFAULT_TIMEOUT_SECS);
    let http = config.collector_client(timeout)?;
    let key = forget::probe_key(&config.data_dir)?;
    let done = forget::forget(&config.collectors, &key, &http, timeout * 3, chrono::Utc::now()).await?;
    println!("{} deleted {} measurements submitted under this probe's key.", done.collector, done.deleted);
    // The collectors dropped the key's registration with its data: register again if it stays.
    if let Err(e) = vantage_probe::register::forget_registrations(&config.data_dir) {
        eprintln!("warning: could not clear the registration record in {}: {e}", config.data_dir.display());
    }
    Ok(ExitCode::SUCCESS)
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
    cfg: Arc<MeasureConfig>,
    targets: Vec<TargetSpec>,
}

impl Session {
    fn new(args: &RunArgs) -> anyhow::Result<Session> {
        let timeout = Duration::from_secs(args.timeout.max(1));
        let http = cli::http_client(&args.ca, timeout)?;
        let cfg = Arc::new(args.measure_config(&http)?);
        let mut targets = match &args.targets {
            Some(path) => vantage_probe::targets_file::load(path)?,
            None => targets::builtin(),
        };
        if args.encrypted_dns {
            let have: std::collections::HashSet<String> = targets.iter().map(|t| t.name.clone()).collect();
            targets.extend(targets::resolver::builtin().into_iter().filter(|t| !have.contains(&t.name)));
        }
        Ok(Session { timeout, cfg, targets })
    }

    /// Whether the kernel has a route to anything this run would measure.
    fn has_network(&self) -> bool {
        let mut destinations: Vec<IpAddr> = self.targets.iter().filter_map(|t| t.address).collect();
        destinations.extend(self.cfg.udp_resolver.map(|r| r.ip()));
        let needs_internet = self.targets.iter().any(|t| t.address.is_none());
        netcheck::has_route(&destinations, needs_internet)
    }

    /// Run every planned test; each measurement goes to the outputs (the spool first) as it
    /// finishes; what stays is the summary for the table.
    async fn measure(self, args: &RunArgs, spool: Option<&Spool>) -> anyhow::Result<Summary> {
        let writer = spool.map(Spool::writer).transpose()?;
        let jobs = schedule::plan_owned(self.targets, args.tests.as_deref());
        let mut outputs = Outputs::new(writer, args.json, progress::bar(jobs.len() as u64, args.json));
        schedule::run(self.cfg.clone(), jobs, args.concurrency, args.residual_policy(), |h| outputs.take(h)).await;
        outputs.finish().context("measurements could not be spooled")
    }
}

/// What delivery needs: the spool, locked for this process, and an uploader signing with this
/// probe's key.
struct Outbox {
    data_dir: PathBuf,
    spool: Spool,
    uploader: Uploader,
}

impl Outbox {
    fn open(collector: &str, data_dir: Option<PathBuf>, http: reqwest::Client, timeout: Duration) -> anyhow::Result<Outbox> {
        let data_dir = data_dir.unwrap_or_else(cli::default_data_dir);
        let spool = Spool::open(&data_dir)?;
        let key = identity::load_or_create(&data_dir)?;
        let uploader = Uploader::new(collector, http, timeout * 3).with_key(key).registering(&data_dir);
        Ok(Outbox { data_dir, spool, uploader })
    }

    async fn deliver(&self) -> FlushReport {
        let report = self.uploader.flush(&self.spool).await;
        network::note_collector_view(&self.data_dir, report.observed.as_ref());
        // Once per key and collector, after the upload: a second or two of work.
        self.uploader.register_if_asked(report.key).await;
        report
    }
}

/// Apply the VPN policy and the network epoch to what every measurement says about the probe;
/// `Some` when the policy pauses the run. The epoch is kept where the run keeps state (with
/// `--collector` or `--data-dir`).
fn stamp_network(args: &RunArgs, probe: &mut ProbeInfo) -> anyhow::Result<Option<TunnelEvidence>> {
    let state_dir = args.data_dir.clone().or_else(|| args.collector.as_ref().map(|_| cli::default_data_dir()));
    match network::prepare(args.on_vpn, state_dir.as_deref(), probe)? {
        Readiness::Paused(tunnel) => Ok(Some(tunnel)),
        Readiness::Measure { through, .. } => {
            if let Some(tunnel) = through {
                eprintln!("Measuring through a tunnel ({tunnel}): every measurement is marked network_type = vpn.");
            }
            Ok(None)
        }
    }
}

fn print_paused_on_vpn(tunnel: TunnelEvidence) {
    eprintln!(
        "Paused: {tunnel}, so measurements would describe the VPN's network, not this one. Nothing \
         was measured. Turn the VPN off and run again, or run with --on-vpn tag to measure anyway \
         with every result marked network_type = vpn."
    );
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
fn print_results(mut summary: Summary, json: bool) {
    if json {
        eprintln!("{}", summary.totals());
    } else {
        // A closed stdout (`| head`) loses the table, not the run.
        let _ = summary.write_table(&mut std::io::BufWriter::new(std::io::stdout().lock()));
    }
    if summary.all_offline() {
        eprintln!(
            "No network: every test failed on this machine's own network (no route or interface down); these are not censorship results."
        );
    }
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
            "[[target]]\nname = \"{}\"\ndomain = \"{}\"\nport = {}\ntests = [{}]\ncontrol_sni = \"{}\"",
            t.name,
            t.domain,
            t.port,
            tests.join(", "),
            t.control_sni
        );
        if let Some(category) = &t.category {
            println!("category = \"{category}\"");
        }
        println!();
    }
}
