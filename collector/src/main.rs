//! `vantage-collector`: parse the command line, start logging, then the start-up checklist
//! (config → store → metrics → helper trust → server), serve, pick an exit code.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use vantage_collector::app::Published;
use vantage_collector::clock::SystemClock;
use vantage_collector::helper::Helper;
use vantage_collector::metrics::Metrics;
use vantage_collector::{App, BuildError, Cli, Command, Config, Store, export, operator, shutdown_signal, store};

/// EX_USAGE from sysexits.h: the command line or configuration is wrong.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors.
            return if e.use_stderr() { ExitCode::from(EXIT_USAGE) } else { ExitCode::SUCCESS };
        }
    };
    init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve((*args).into())),
        Command::ListKey(command) => offline(operator::list_key(command)),
        Command::List(command) => offline(operator::list(command)),
        Command::Invite(args) => offline(operator::invite(&args)),
        Command::Pin(args) => offline(operator::pin::pin_of_file(&args.file).map(|pin| pin.to_string())),
        Command::Export(args) => offline(runtime.block_on(export::cli::export(args))),
        Command::Verify(args) => offline(export::cli::verify(&args)),
    }
}

/// Print an offline command's result, or its error (exit 1).
fn offline(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> ExitCode {
    let app = match start(config).await {
        Ok(app) => app,
        Err(e) if e.is_config() => {
            tracing::error!("configuration: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Scripts and tests read this line to learn the port; keep its format stable.
    println!("vantage-collector listening on {}://{}", app.scheme(), app.local_addr());
    match app.serve(shutdown_signal()).await.context("serving") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The start-up checklist, the details in each module. Every step that can fail does so before
/// anything is served; a configuration error exits 64.
async fn start(config: Config) -> Result<App, BuildError> {
    // Config: the target lists, GeoIP databases and certificate first, so a bad one is reported
    // before the data directory is touched.
    let published = Published::load(&config)?;
    // Store: open (or create, or migrate) the SQLite file or the PostgreSQL database; a bad
    // --database URL is a configuration error.
    let location = config.store_location()?;
    tracing::info!(store = %location, "opening the store");
    let store: Arc<dyn Store> = store::open(&location).await?;
    // Metrics: every family registered; only published targets may become labels.
    let metrics = Arc::new(Metrics::new(published.labels.clone(), config.max_series)?);
    // Helper trust: the built-in roots plus the operator's CA.
    let helper = Helper::new(config.helper_trust()?, config.danger_helper_allow_private);
    // Server: seeded from the store, routed, bound; `serve` starts answering.
    // Clock: the system's (tests inject one they move).
    App::bind_parts(config, store, metrics, helper, published, Arc::new(SystemClock)).await
}

/// Logs go to stderr, filtered by VANTAGE_LOG (as the probe's; default `info`).
fn init_tracing() {
    // The collector's own accept loop (crate::server) never logs a peer's address, at any level.
    let filter =
        EnvFilter::builder().with_default_directive(LevelFilter::INFO.into()).with_env_var("VANTAGE_LOG").from_env_lossy();
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).init();
}
