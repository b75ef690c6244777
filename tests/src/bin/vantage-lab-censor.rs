//! `vantage-lab-censor`: the lab's userspace censors, run inside the `censor` namespace.
//! Parse flags, open the socket or device, say `ready`, run until SIGTERM or SIGINT. The work
//! is in `vantage_tests::censor`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use vantage_tests::censor::NameList;
use vantage_tests::censor::dns_forge::{ForgedAnswer, Injector};
use vantage_tests::censor::dns_inject::DnsInjector;
use vantage_tests::censor::ech_filter::{EchFilter, EchRule};
use vantage_tests::censor::fet::FetCensor;
use vantage_tests::censor::fet_tun::FetTun;
use vantage_tests::censor::mitm::Mitm;
use vantage_tests::censor::nfqueue::{Block, EchQueue};
use vantage_tests::censor::quic_filter::{FilterConfig, QuicSniFilter};
use vantage_tests::censor::quic_tun::QuicTun;
use vantage_tests::censor::tun;
use vantage_tests::pki::TestCa;

/// vantage-lab-censor: censors for the Vantage lab, doing what nftables alone cannot.
///
/// Each subcommand runs until SIGTERM or SIGINT, logs to stderr (VANTAGE_LOG=debug for more),
/// and prints one line `ready` on stdout once it is capturing or listening. Run it inside the
/// censor's network namespace (`ip netns exec censor vantage-lab-censor …`), as root.
#[derive(Debug, Parser)]
#[command(name = "vantage-lab-censor", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// On-path DNS injection: race the real resolver with a forged reply.
    ///
    /// Sniffs IFACE (the censor's probe-facing interface) with an AF_PACKET socket. Every IPv4
    /// UDP query to port 53 for a listed name (or a subdomain) gets a forged reply from the
    /// queried server's address, sent back out of IFACE. The query is not dropped, so the real
    /// answer follows and the probe sees two replies. Queries to an address with no DNS server
    /// are answered too: that is the blackhole control. No routing setup is needed.
    DnsInject(DnsInjectArgs),
    /// TLS interception: certificates from the censor's CA for listed SNIs.
    ///
    /// The harness DNATs the target's TCP port to --listen, e.g.
    /// `nft add rule ip nat prerouting iifname P ip daddr T tcp dport 443 dnat to L:8443`.
    /// ClientHellos with a listed SNI are terminated with a certificate for that SNI signed by
    /// the CA in --ca-dir, and the plaintext is relayed over TLS to --upstream (whose
    /// certificate is not checked). Everything else is spliced to --upstream untouched.
    Mitm(MitmArgs),
    /// In-path QUIC SNI filter: drop QUIC v1 Initials whose ClientHello SNI is listed.
    ///
    /// Creates the TUN device --tun and, with --probe-iface, routes UDP arriving on that
    /// interface through it (ip_forward=1, rp_filter=0, `ip rule add iif P ipproto udp lookup
    /// TABLE`, `ip route replace default dev TUN table TABLE`); the rule is removed on exit.
    /// Decrypts each client Initial (keys from its DCID), reassembles the ClientHello and
    /// drops the Initial that reveals a listed SNI; forwards everything else.
    QuicSniDrop(QuicArgs),
    /// In-path ECH filter on NFQUEUE: block ClientHellos that offer ECH (extension 0xfe0d).
    ///
    /// Binds queue --queue; the harness then sends the probe's client→server TCP to it, e.g.
    /// `iptables -A FORWARD -i P -p tcp --dport 443 -j NFQUEUE --queue-num 7`, and for
    /// `--block reset` first `iptables -A FORWARD -p tcp -m mark --mark 0xec -j REJECT --reject-with
    /// tcp-reset`. Reassembles each flow's first bytes until the ClientHello is whole, then blocks
    /// the segment that completed it, and the rest of the flow, when it offers ECH (and, with
    /// --name, only when its SNI is listed, like Russia's rule).
    EchFilter(EchArgs),
    /// In-path cut of fully encrypted TCP flows (obfs4, Shadowsocks) after N bytes.
    ///
    /// Creates the TUN device --tun and, with --probe-iface, routes TCP arriving on that
    /// interface through it. The first data packet of each flow is judged by the exemptions of
    /// Wu et al. 2023 (popcount, printable bytes, protocol prefixes); a flow that looks fully
    /// encrypted gets --cut-after bytes through, then its client segments are dropped.
    FetCut(FetArgs),
}

#[derive(Debug, Args)]
struct FetArgs {
    /// Name of the TUN device to create (at most 15 characters).
    #[arg(long)]
    tun: String,
    /// Bytes of a suspect flow let through (0: its first data packet is dropped).
    #[arg(long)]
    cut_after: u32,
    /// Route TCP arriving on this interface through the TUN (and undo it on exit).
    #[arg(long)]
    probe_iface: Option<String>,
    /// Routing table (and rule priority) for the policy route.
    #[arg(long, default_value_t = 101)]
    table: u32,
}

#[derive(Debug, Args)]
struct DnsInjectArgs {
    /// Interface to sniff and inject on: the censor's probe-facing side.
    #[arg(long)]
    iface: String,
    /// A name to censor, with its subdomains (case-insensitive). Repeatable.
    #[arg(long = "name", value_name = "NAME", required = true)]
    names: Vec<String>,
    /// Forged answer: an IPv4 address (A record, RR TTL 300; empty NOERROR for other types),
    /// or `nxdomain` (NXDOMAIN without SOA).
    #[arg(long, value_name = "IP|nxdomain")]
    answer: ForgedAnswer,
    /// Wait this long before injecting (0: as fast as possible, which beats the resolver).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

#[derive(Debug, Args)]
struct MitmArgs {
    /// Address to accept the DNATed connections on.
    #[arg(long)]
    listen: SocketAddr,
    /// The real server to relay to.
    #[arg(long)]
    upstream: SocketAddr,
    /// Directory with the censor CA's `<stem>.pem` and `<stem>.key` (`TestCa::save`).
    #[arg(long)]
    ca_dir: PathBuf,
    /// File stem of the censor CA in --ca-dir.
    #[arg(long, default_value = "censor-ca")]
    ca_stem: String,
    /// An SNI to intercept, with its subdomains (case-insensitive). Repeatable.
    #[arg(long = "intercept", value_name = "NAME", required = true)]
    intercept: Vec<String>,
}

#[derive(Debug, Args)]
struct QuicArgs {
    /// Name of the TUN device to create (at most 15 characters).
    #[arg(long)]
    tun: String,
    /// An SNI whose Initials are dropped, with its subdomains. Repeatable.
    #[arg(long = "name", value_name = "NAME", required_unless_present = "all_initials")]
    names: Vec<String>,
    /// Drop every QUIC v1 Initial, whatever its SNI (QUIC blocked outright).
    #[arg(long)]
    all_initials: bool,
    /// Route UDP arriving on this interface through the TUN (and undo it on exit). Without it,
    /// the harness must run the equivalent of `tun::setup_commands` itself.
    #[arg(long)]
    probe_iface: Option<String>,
    /// Routing table (and rule priority) for the policy route.
    #[arg(long, default_value_t = 100)]
    table: u32,
}

#[derive(Debug, Args)]
struct EchArgs {
    /// The NFQUEUE number to bind.
    #[arg(long)]
    queue: u16,
    /// What a blocked segment becomes: `drop` (silence) or `reset` (marked 0xec for a REJECT rule).
    #[arg(long, value_parser = ["drop", "reset"])]
    block: String,
    /// Block ECH only with this SNI (and its subdomains). Repeatable; none: every SNI.
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("VANTAGE_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::DnsInject(a) => {
            let injector = Injector { names: NameList::new(&a.names), answer: a.answer };
            let capture = DnsInjector::open(&a.iface, injector, Duration::from_millis(a.delay_ms))?;
            std::thread::spawn(move || capture.run());
            tracing::info!("injecting {:?} for {:?} on {}", a.answer, a.names, a.iface);
            ready();
            until_signal().await
        }
        Command::Mitm(a) => {
            let ca = TestCa::load(&a.ca_dir, &a.ca_stem)
                .with_context(|| format!("loading CA {}/{}.pem and .key", a.ca_dir.display(), a.ca_stem))?;
            let mitm = Mitm::bind(a.listen, a.upstream, NameList::new(&a.intercept), ca).await?;
            tracing::info!("intercepting {:?} on {}, upstream {}", a.intercept, mitm.local_addr()?, a.upstream);
            ready();
            tokio::select! {
                () = mitm.run() => Ok(()),
                r = until_signal() => r,
            }
        }
        Command::FetCut(a) => {
            let tun = FetTun::open(&a.tun, FetCensor::new(a.cut_after))?;
            if let Some(probe_iface) = &a.probe_iface {
                let _ = tun::run_commands(&tun::teardown_commands(probe_iface, "tcp", a.table));
                tun::run_commands(&tun::setup_commands(&a.tun, probe_iface, "tcp", a.table))?;
            }
            std::thread::spawn(move || tun.run());
            tracing::info!("cutting fully encrypted TCP flows after {} bytes on {}", a.cut_after, a.tun);
            ready();
            let result = until_signal().await;
            if let Some(probe_iface) = &a.probe_iface {
                tun::run_commands(&tun::teardown_commands(probe_iface, "tcp", a.table))?;
            }
            result
        }
        Command::QuicSniDrop(a) => {
            let config = FilterConfig { names: NameList::new(&a.names), all_initials: a.all_initials };
            let tun = QuicTun::open(&a.tun, QuicSniFilter::new(config))?;
            if let Some(probe_iface) = &a.probe_iface {
                // A rule left by a killed earlier run would duplicate; remove it first.
                let _ = tun::run_commands(&tun::teardown_commands(probe_iface, "udp", a.table));
                tun::run_commands(&tun::setup_commands(&a.tun, probe_iface, "udp", a.table))?;
            }
            std::thread::spawn(move || tun.run());
            let what = if a.all_initials { "every QUIC Initial".to_string() } else { format!("QUIC Initials for {:?}", a.names) };
            tracing::info!("dropping {what} on {}", a.tun);
            ready();
            let result = until_signal().await;
            if let Some(probe_iface) = &a.probe_iface {
                tun::run_commands(&tun::teardown_commands(probe_iface, "udp", a.table))?;
            }
            result
        }
        Command::EchFilter(a) => {
            let names = (!a.names.is_empty()).then(|| NameList::new(&a.names));
            let block = if a.block == "reset" { Block::Reset } else { Block::Drop };
            let queue = EchQueue::open(a.queue, EchFilter::new(EchRule { names }), block)?;
            std::thread::spawn(move || {
                // A queue with no reader drops everything: a dead filter must not pass for a censor.
                if let Err(e) = queue.run() {
                    eprintln!("error: {e:#}");
                    std::process::exit(1);
                }
            });
            let scope = if a.names.is_empty() { "any SNI".to_string() } else { format!("SNI {:?}", a.names) };
            tracing::info!("blocking ClientHellos offering ECH with {scope} ({block:?}) on NFQUEUE {}", a.queue);
            ready();
            until_signal().await
        }
    }
}

/// Tell the harness we are capturing or listening.
fn ready() {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
}

async fn until_signal() -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
    }
    Ok(())
}
