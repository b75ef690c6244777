//! `vantage-lab`: the censorship lab by hand.
//!
//! `vantage-lab up SCENARIO` builds one scenario and leaves it running for exploration;
//! `vantage-lab run [SCENARIO…]` runs scenarios through the real probe and prints the verdict
//! matrix; `vantage-lab list` shows what there is. Needs root (network namespaces).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vantage_tests::lab::check::{run_all, summary};
use vantage_tests::lab::scenario::Scenario;
use vantage_tests::lab::topology::{preflight, remove_stale};
use vantage_tests::lab::world::{World, collector_url};
use vantage_tests::lab::{addr, bin};

/// The censorship lab: emulated censors in network namespaces, measured by the real probe.
#[derive(Debug, Parser)]
#[command(name = "vantage-lab", version)]
struct Args {
    /// Directory of scenario files.
    #[arg(long, global = true, value_name = "DIR", default_value_os_t = default_dir())]
    scenario_dir: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Bring one scenario up, print how to enter each namespace and the probe's command line,
    /// and keep it running until Ctrl-C; then tear it down.
    Up {
        /// A scenario name (file stem in --scenario-dir) or a path to a scenario file.
        scenario: String,
    },
    /// Run scenarios (all if none named) through the real probe; print the verdict matrix.
    /// Exits 1 if any verdict, mechanism, trial count or privacy check misses.
    Run {
        /// Scenario names or paths.
        scenarios: Vec<String>,
        /// Scenarios run at once.
        #[arg(long, default_value_t = 3)]
        jobs: usize,
        /// Keep each scenario's working directory (CA, targets, the collector's store).
        #[arg(long)]
        keep: bool,
    },
    /// List the scenarios with their descriptions.
    List,
}

fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/scenarios")
}

fn load(dir: &Path, names: &[String]) -> anyhow::Result<Vec<Scenario>> {
    if names.is_empty() {
        return Ok(Scenario::load_dir(dir)?);
    }
    names
        .iter()
        .map(|n| {
            let path = if Path::new(n).is_file() { PathBuf::from(n) } else { dir.join(format!("{n}.toml")) };
            Ok(Scenario::load(&path)?)
        })
        .collect()
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vantage-lab: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    match args.command {
        Cmd::List => {
            for s in load(&args.scenario_dir, &[])? {
                println!("{:<28} {:<7} {}", s.name, format!("{:?}", s.kind).to_lowercase(), s.description);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { scenarios, jobs, keep } => {
            let scenarios = load(&args.scenario_dir, &scenarios)?;
            preflight()?;
            remove_stale()?;
            let started = std::time::Instant::now();
            let reports = run_all(&scenarios, jobs, keep);
            println!("{}", summary(&reports));
            let failed = reports.iter().filter(|r| !r.passed()).count();
            println!("{} passed, {failed} failed in {:.0} s", reports.len() - failed, started.elapsed().as_secs_f64());
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Cmd::Up { scenario } => {
            let scenario = load(&args.scenario_dir, &[scenario])?.remove(0);
            preflight()?;
            remove_stale()?;
            let world = World::up(&scenario, false)?;
            print_guide(&world)?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(tokio::signal::ctrl_c()).context("waiting for Ctrl-C")?;
            eprintln!("\nvantage-lab: tearing {} down", scenario.name);
            drop(world);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_guide(world: &World) -> anyhow::Result<()> {
    let t = &world.topo;
    let s = &world.scenario;
    println!("scenario {} ({:?}): {}", s.name, s.kind, s.description);
    println!("working directory: {}\n", world.dir().display());
    println!("namespaces (enter one with `ip netns exec NAME bash`):");
    println!("  {:<24} probe     {}", t.probe, addr::PROBE);
    println!("  {:<24} censor    {} / {}", t.censor, addr::CENSOR_PROBE_SIDE, addr::CENSOR_INTERNET_SIDE);
    println!(
        "  {:<24} internet  resolvers {} (probe's) {} (helper's), servers {} {}, no DNS on {}",
        t.internet,
        addr::PROBE_RESOLVER,
        addr::HELPER_RESOLVER,
        addr::SERVER,
        addr::SERVER_2,
        addr::NO_DNS
    );
    println!("  {:<24} helper    collector {}\n", t.helper, collector_url(""));
    println!("the censor's rules:  ip netns exec {} nft list ruleset", t.censor);
    println!("measure:\n  ip netns exec {} {} {}\n", t.probe, bin("vantage-probe")?.display(), world.probe_args()?.join(" "));
    let ca = world.dir().join("lab-ca.pem");
    println!("results:  ip netns exec {} curl -s --cacert {} {}", t.helper, ca.display(), collector_url("/api/v1/measurements"));
    println!("\nCtrl-C tears everything down.");
    Ok(())
}
