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
    if let Some(helper) = pinned_helper(&probe_config, &args.run, timeout)? {
        Arc::make_mut(&mut cfg).helper = Some(helper);
    }
    let source =
        ListPlan { store: ListStore::for_config(&probe_config), fetcher: ListFetcher::for_config(&probe_config, timeout)? };
    serve(cfg, settings, Uploader::new(&collector, upload_http, timeout * 3), source, shutdown).await
}

/// The helper when it is the joined network's pinned collector (no `--helper`): its answers decide
/// verdicts, so it is pinned as the uploads are (and, as every helper request, never proxied).
fn pinned_helper(config: &ProbeConfig, run: &RunArgs, timeout: Duration) -> anyhow::Result<Option<HelperClient>> {
    let Some(collector) = config.collectors.first().filter(|_| run.helper.is_none() && !run.no_helper) else { return Ok(None) };
    if config.collector_pins.is_empty() {
        return Ok(None);
    }
    let access = CollectorAccess { socks5: None, ..config.access() };
    let http = config::collector_client(std::slice::from_ref(collector), &access, timeout)?;
    Ok(Some(HelperClient::new(collector, http)))
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

#[cfg(test)]
mod tests {
    use clap::Parser;
    use vantage_engine::control::ControlRequest;
    use vantage_measurement::TestKind;
    use vantage_measurement::wire::target_list::ListKey;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::transport::tests::{TestCa, pin_of};

    fn run_args(extra: &[&str]) -> RunArgs {
        let argv = ["vantage-probe", "run"].iter().chain(extra).copied();
        match Cli::try_parse_from(argv).expect("flags").command {
            Command::Run(args) => *args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_helper_is_pinned_when_it_is_the_pinned_collector() {
        let ca = TestCa::new();
        let (live, stranger) = (rcgen::KeyPair::generate().expect("key"), rcgen::KeyPair::generate().expect("key"));
        let impostor = ca.issue(&stranger, 1).serve_body("{\"observations\": []}").await;
        let config = ProbeConfig {
            collectors: vec![impostor],
            list_key: ListKey::from_seed(&[1; 32]).public_base64(),
            data_dir: "/nonexistent".into(),
            socks5: None,
            accepted_risks: true,
            ca: vec![ca.pem.clone()],
            collector_pins: vec![pin_of(&live)],
            danger_plaintext_collector: false,
            opt_out: Default::default(),
            daemon: Default::default(),
        };
        let timeout = Duration::from_secs(5);
        let helper = pinned_helper(&config, &run_args(&[]), timeout).expect("client").expect("a pinned helper");
        let request = ControlRequest {
            test: TestKind::Tcp,
            domain: None,
            address: Some([192, 0, 2, 1].into()),
            port: Some(443),
            vpn: None,
            resolver: None,
        };
        let err = helper.control(&request, timeout).await.expect_err("an impostor's answer").to_string();
        assert!(err.contains("none of the pinned keys"), "{err}");

        // The same collector with its real key answers.
        let genuine = ca.issue(&live, 2).serve_body("{\"observations\": []}").await;
        let config = ProbeConfig { collectors: vec![genuine], ..config };
        let helper = pinned_helper(&config, &run_args(&[]), timeout).expect("client").expect("a pinned helper");
        assert_eq!(helper.control(&request, timeout).await.expect("answered").len(), 0);

        // Another helper, none, or no pins: nothing to pin here.
        assert!(pinned_helper(&config, &run_args(&["--helper", "https://helper.example"]), timeout).expect("ok").is_none());
        assert!(pinned_helper(&config, &run_args(&["--no-helper"]), timeout).expect("ok").is_none());
        let unpinned = ProbeConfig { collector_pins: vec![], ..config };
        assert!(pinned_helper(&unpinned, &run_args(&[]), timeout).expect("ok").is_none());
    }
}
