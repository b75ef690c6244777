//! How `vantage-probe daemon` starts: joined (the config `join` wrote, its network's signed list)
//! or with `--collector` (a targets file or the built-in list at `--interval`); both end in
//! [`serve`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use vantage_engine::control::HelperClient;
use vantage_engine::measure::MeasureConfig;

use super::budget::{self, Limits};
use super::{DEFAULT_INTERVAL_SECS, FlagsPlan, ListPlan, Settings, serve, shutdown_on_signals};
use crate::cli::{self, RunArgs};
use crate::config::{self, CollectorAccess, ProbeConfig};
use crate::consent;
use crate::list::{ListFetcher, ListStore};
use crate::network::OnVpn;
use crate::upload::Uploader;

/// Flags of `vantage-probe daemon`: those of `run` (what to measure and how), and the schedule
/// and the limits.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// What to measure and how (the flags of `run`).
    #[command(flatten)]
    pub run: RunArgs,
    /// The config file `join` wrote: the joined network's collectors and signed list, opt-outs and
    /// budgets. The daemon runs from it unless `--collector` is given (a fixed targets file, for
    /// labs). Default: see `join --help`.
    #[arg(long, env = "VANTAGE_CONFIG", conflicts_with = "collector")]
    pub config: Option<PathBuf>,
    /// Agree to the risks without being asked (unattended installs; see docs/probe.md#risks).
    #[arg(long)]
    pub accept_risks: bool,
    /// Seconds between two measurements of each target, with `--collector` (a signed list sets
    /// its own); each target has its own slot inside the interval. Values under a minute are for
    /// labs. Default: 21600 (six hours).
    #[arg(long, value_name = "SECS", env = "VANTAGE_INTERVAL")]
    pub interval: Option<u64>,
    /// Bytes a day (UTC) the daemon may spend measuring and uploading; 0 for no limit. Default:
    /// the config's `daily_bytes`, else 15 MB.
    #[arg(long, value_name = "BYTES", env = "VANTAGE_DAILY_BYTES")]
    pub daily_bytes: Option<u64>,
    /// Measurements the daemon may start per hour (re-tests included); 0 for no limit. Default:
    /// the config's `max_measurements_per_hour`, else 600.
    #[arg(long, value_name = "N", env = "VANTAGE_MAX_PER_HOUR")]
    pub max_per_hour: Option<u32>,
}

/// `vantage-probe daemon`, stopped by SIGTERM or SIGINT: from the joined network's config, or,
/// with `--collector`, from `--targets` (or the built-in list) and `--interval`.
pub async fn run(mut args: DaemonArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.run.timeout.max(1));
    let shutdown = shutdown_on_signals()?;
    if let Some(collector) = args.run.collector.clone() {
        let interval = args.interval.unwrap_or(DEFAULT_INTERVAL_SECS);
        if interval == 0 || interval > 7 * 86_400 {
            return Err(cli::flag("interval", "must be between 1 second and a week").into());
        }
        let limits = Limits {
            daily_bytes: args.daily_bytes.unwrap_or(budget::DEFAULT_DAILY_BYTES),
            max_per_hour: args.max_per_hour.unwrap_or(budget::DEFAULT_MAX_PER_HOUR),
        };
        // The flags first (the transport rule among them, naming --collector), then the client.
        let (cfg, settings) = prepare(&args.run, limits, args.run.on_vpn)?;
        let access = CollectorAccess {
            ca: &args.run.ca,
            socks5: args.run.socks5.as_ref(),
            danger_plaintext: args.run.danger_plaintext_collector,
            ..CollectorAccess::default()
        };
        let upload_http = config::collector_client(std::slice::from_ref(&collector), &access, timeout)?;
        let source = FlagsPlan { targets: args.run.targets.clone(), interval: Duration::from_secs(interval) };
        return serve(cfg, settings, Uploader::new(&collector, upload_http, timeout * 3), source, shutdown).await;
    }
    if args.run.targets.is_some() {
        return Err(
            cli::flag("targets", "a joined probe measures its network's signed list; --targets goes with --collector").into()
        );
    }
    if args.interval.is_some() {
        return Err(cli::flag("interval", "the signed list sets the interval; --interval goes with --collector").into());
    }
    let path = args.config.clone().unwrap_or_else(config::default_config_path);
    let mut probe_config =
        ProbeConfig::load(&path).map_err(|e| anyhow::anyhow!("{e} (join a network first: vantage-probe join URL)"))?;
    consent::ensure(&mut probe_config, &path, args.accept_risks, &mut consent::Terminal)?;
    probe_config.danger_plaintext_collector |= args.run.danger_plaintext_collector;
    args.run.danger_plaintext_collector = probe_config.danger_plaintext_collector;
    // Every collector of the file against the transport rule, before anything is measured.
    let upload_http = probe_config.collector_client(timeout)?;
    // The joined network's collector is the upload target and the default helper.
    let collector =
        probe_config.collectors.first().cloned().ok_or_else(|| anyhow::anyhow!("{}: no collector", path.display()))?;
    args.run.collector = Some(collector.clone());
    args.run.data_dir = Some(probe_config.data_dir.clone());
    args.run.ca.extend(probe_config.ca.iter().cloned());
    let daemon = &probe_config.daemon;
    let limits = Limits {
        daily_bytes: args.daily_bytes.unwrap_or(daemon.daily_bytes),
        max_per_hour: args.max_per_hour.unwrap_or(daemon.max_measurements_per_hour),
    };
    let (mut cfg, settings) = prepare(&args.run, limits, daemon.on_vpn)?;
    if args.run.helper.is_none() && !args.run.no_helper && !probe_config.collector_pins.is_empty() {
        // The helper is the pinned collector: its answers decide verdicts, so they are pinned too
        // (and, as every helper request, never proxied).
        let access = CollectorAccess { socks5: None, ..probe_config.access() };
        let helper_http = config::collector_client(std::slice::from_ref(&collector), &access, timeout)?;
        Arc::make_mut(&mut cfg).helper = Some(HelperClient::new(&collector, helper_http));
    }
    let source =
        ListPlan { store: ListStore::for_config(&probe_config), fetcher: ListFetcher::for_config(&probe_config, timeout)? };
    serve(cfg, settings, Uploader::new(&collector, upload_http, timeout * 3), source, shutdown).await
}

/// The measurement configuration and the daemon's settings from `run`'s flags.
fn prepare(run: &RunArgs, limits: Limits, on_vpn: OnVpn) -> anyhow::Result<(Arc<MeasureConfig>, Settings)> {
    let http = cli::http_client(&run.ca, Duration::from_secs(run.timeout.max(1)))?;
    let cfg = Arc::new(run.measure_config(&http)?);
    let settings = Settings {
        data_dir: run.data_dir.clone().unwrap_or_else(cli::default_data_dir),
        concurrency: run.concurrency,
        residual_window: Duration::from_secs(run.residual_window),
        only_tests: run.tests.clone(),
        limits,
        json: run.json,
        on_vpn,
    };
    Ok((cfg, settings))
}
