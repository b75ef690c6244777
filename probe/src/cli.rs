//! Command-line flags, and their conversion into the configs the library runs on.
//!
//! What the user typed ([`RunArgs`]) stays separate from what it builds ([`MeasureConfig`]), so
//! every default lives in one constant and every flag can be tested here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::FalseyValueParser;
use clap::{Args, Parser, Subcommand};
use vantage_measurement::wire::transport::{Allowance, TransportError};
use vantage_measurement::{NetworkType, ProbeInfo, TestKind};

use vantage_engine::classify::bogon::BogonPolicy;
use vantage_engine::control::{DohClient, HelperClient};
use vantage_engine::localise::{DEFAULT_SPACING, LocaliseConfig};
use vantage_engine::measure::MeasureConfig;
use vantage_engine::runner::verify::TrustAnchors;
use vantage_engine::schedule::{DEFAULT_RESIDUAL_WINDOW, ResidualPolicy, Retest};

use crate::network::OnVpn;

/// Default DNS-over-HTTPS control resolver.
pub const DEFAULT_DOH: &str = "https://dns.google/dns-query";
/// Default UDP resolver whose every reply is recorded (injection shows as extra replies).
pub const DEFAULT_UDP_RESOLVER: &str = "8.8.8.8:53";
/// Default wait per network step, seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// Default listening time after the first DNS reply, milliseconds.
pub const DEFAULT_DNS_LINGER_MS: u64 = 2000;
/// Default measurements in flight.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// vantage-probe: is this network censoring DNS, TCP, TLS or QUIC — or is the server just down?
///
/// Every test pairs the target with controls (a control SNI on the same address, the collector's
/// test helper outside this network, a DoH resolver) so that a failure is only called `blocked`
/// when the controls show the target is up. The probe never records this machine's IP address.
#[derive(Debug, Parser)]
#[command(name = "vantage-probe", version)]
pub struct Cli {
    /// Log more (-v: info, -vv: debug). Logs go to stderr and never contain this machine's address.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure the targets and report (and submit, with --collector).
    Run(Box<RunArgs>),
    /// Send spooled measurements to the collector without measuring.
    Flush(FlushArgs),
    /// Join a network: agree to what the probe does, fetch the signed list, write the config.
    Join(crate::join::JoinArgs),
    /// Ask the collector to delete every measurement this probe's key submitted.
    Forget(crate::forget::ForgetArgs),
    /// Measure unattended: every target at the interval, within the budgets, uploading as it goes.
    Daemon(Box<crate::daemon::DaemonArgs>),
    /// Show what the daemon did: last results, pending spool, budget used, next runs.
    Status(crate::daemon::status::StatusArgs),
    /// Print this probe's key id (making the key if there is none yet): what an operator puts in
    /// the collector's --trusted-keys file for a probe of their own. Volunteers need not.
    KeyId(KeyIdArgs),
    /// Print the built-in target list in targets-file format.
    Targets,
    /// Print the JSON Schema of a measurement (schema v1).
    Schema,
}

/// Flags of `vantage-probe run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Targets file (TOML, `[[target]]` entries; see docs/targets.md). Default: the built-in list.
    #[arg(long, env = "VANTAGE_TARGETS")]
    pub targets: Option<PathBuf>,
    /// Run only these tests (comma-separated: dns,tcp,tls,quic,openvpn,wireguard,ikev2,tor,dot,doh).
    #[arg(long, value_delimiter = ',', value_parser = parse_test)]
    pub tests: Option<Vec<TestKind>>,
    /// Print each measurement as a JSON line on stdout (NDJSON) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also measure the built-in public encrypted-DNS resolvers: DoT and DoH to every address of
    /// Cloudflare, Google, Quad9 and AdGuard (docs/encrypted-dns.md). A targets file can say the
    /// same with `builtin_resolvers = true`.
    #[arg(long, env = "VANTAGE_ENCRYPTED_DNS", value_parser = FalseyValueParser::new())]
    pub encrypted_dns: bool,
    /// Collector base URL to submit to (https://…; plaintext http:// only on this machine, e.g.
    /// http://127.0.0.1:8080). Also the default test helper.
    #[arg(long, env = "VANTAGE_COLLECTOR")]
    pub collector: Option<String>,
    /// Test-helper base URL, if not the collector's (https://, as the collector's).
    #[arg(long, env = "VANTAGE_HELPER")]
    pub helper: Option<String>,
    /// Allow a plaintext http:// collector or helper on another machine. What the probe finds and
    /// the names it tests then cross the network, and its censor, in the clear: for labs only.
    #[arg(long)]
    pub danger_plaintext_collector: bool,
    /// Don't ask any test helper (verdicts that need one become inconclusive).
    #[arg(long, conflicts_with = "helper")]
    pub no_helper: bool,
    /// DNS-over-HTTPS control resolver URL, or `off` (`none` works too) to ask none.
    #[arg(long, value_name = "URL|off", default_value = DEFAULT_DOH, value_parser = parse_doh, env = "VANTAGE_DOH")]
    pub doh: Toggle<String>,
    /// UDP resolver (IP:PORT) whose every reply is recorded, or `off` (`none` works too).
    #[arg(long, value_name = "IP:PORT|off", default_value = DEFAULT_UDP_RESOLVER, value_parser = parse_resolver, env = "VANTAGE_RESOLVER")]
    pub resolver: Toggle<SocketAddr>,
    /// A host that runs no DNS service: the target name is sent there too, and any answer is
    /// proof of injection (use a reference endpoint's address).
    #[arg(long, value_name = "IP", env = "VANTAGE_DNS_BLACKHOLE")]
    pub dns_blackhole: Option<std::net::IpAddr>,
    /// An IPv6 address and TCP port that answers (a reference endpoint): when an IPv6 measurement
    /// fails at the address level, it is connected to, and if it fails too the network's IPv6 is
    /// broken (`network.no_ipv6`), not the target blocked. Brackets: `[2001:db8::1]:443`.
    #[arg(long, value_name = "[IPv6]:PORT", env = "VANTAGE_IPV6_CONTROL")]
    pub ipv6_control: Option<SocketAddr>,
    /// Skip the system resolver (when it is a LAN box you'd rather not query, or in tests).
    #[arg(long)]
    pub no_system_resolver: bool,
    /// Extra trust anchors (PEM file) for TLS/QUIC targets and the collector. Repeatable.
    #[arg(long = "ca", env = "VANTAGE_CA")]
    pub ca: Vec<PathBuf>,
    /// Measurements in flight at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Seconds to wait for any single network step.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECS)]
    pub timeout: u64,
    /// Milliseconds to keep listening after the first DNS reply.
    #[arg(long, default_value_t = DEFAULT_DNS_LINGER_MS)]
    pub dns_linger_ms: u64,
    /// Seconds a blocked trigger (an SNI, content) taints its server: a later failure there within
    /// this window is `inconclusive residual.suspected`, not `blocked` (censors keep punishing the
    /// tuple for 90-180 s).
    #[arg(long, default_value_t = DEFAULT_RESIDUAL_WINDOW.as_secs(), value_name = "SECS")]
    pub residual_window: u64,
    /// At the end of the run, wait for residual penalties to lapse (at most the residual window)
    /// and measure the suspects again; both measurements are reported.
    #[arg(long)]
    pub retest_residual: bool,
    /// Don't follow a `blocked` tls or dns verdict up with TTL-limited repeats that find the
    /// censor's hop (at most 32 extra attempts, spaced by --localise-spacing; docs/localisation.md).
    #[arg(long, env = "VANTAGE_NO_LOCALISE", value_parser = FalseyValueParser::new())]
    pub no_localise: bool,
    /// Seconds between localisation attempts that may reach a censor that has just been triggered
    /// (residual penalties last 90-180 s; a blocked measurement's follow-up takes a few of these).
    #[arg(long, default_value_t = DEFAULT_SPACING.as_secs(), value_name = "SECS")]
    pub localise_spacing: u64,
    /// Directory for the spool of unsent measurements and the probe key (probe.key, made on first
    /// delivery).
    #[arg(long, env = "VANTAGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Upload through this SOCKS5 proxy (HOST:PORT); measurements never go through it.
    #[arg(long, value_name = "HOST:PORT", env = "VANTAGE_SOCKS5")]
    pub socks5: Option<crate::config::Socks5Proxy>,
    /// This network's country (ISO 3166-1 alpha-2); ZZ if unknown.
    #[arg(long, default_value = "ZZ", value_parser = parse_cc, env = "VANTAGE_CC")]
    pub cc: String,
    /// This network's autonomous system number; 0 if unknown.
    #[arg(long, default_value_t = 0, env = "VANTAGE_ASN")]
    pub asn: u32,
    /// The kind of access network.
    #[arg(long, value_parser = parse_network_type)]
    pub network_type: Option<NetworkType>,
    /// When a VPN or other tunnel holds the default route (the results would describe the VPN's
    /// network): `pause` measures nothing and exits with status 4, `tag` measures and marks every
    /// measurement `network_type = vpn`.
    #[arg(long, value_name = "pause|tag", default_value_t = OnVpn::default(), value_parser = parse_on_vpn, env = "VANTAGE_ON_VPN")]
    pub on_vpn: OnVpn,
    /// Address ranges (CIDR) that are not bogons here, e.g. a lab's documentation ranges.
    #[arg(long = "danger-not-bogon", value_name = "CIDR")]
    pub danger_not_bogon: Vec<String>,
    /// Address ranges (CIDR) to count as known block pages besides the shipped, sourced list,
    /// e.g. a lab's own block-page server. An answer there is `blocked dns.forged_answer`.
    #[arg(long = "danger-blockpage", value_name = "CIDR")]
    pub danger_blockpage: Vec<String>,
}

/// Flags of `vantage-probe flush`.
#[derive(Debug, Args)]
pub struct FlushArgs {
    /// Collector base URL (https://; plaintext http:// only on this machine).
    #[arg(long, env = "VANTAGE_COLLECTOR")]
    pub collector: String,
    /// Allow a plaintext http:// collector on another machine (labs only; see `run --help`).
    #[arg(long)]
    pub danger_plaintext_collector: bool,
    /// Directory of the spool and the probe key.
    #[arg(long, env = "VANTAGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Extra trust anchors (PEM) for the collector's certificate.
    #[arg(long = "ca", env = "VANTAGE_CA")]
    pub ca: Vec<PathBuf>,
    /// Upload through this SOCKS5 proxy (HOST:PORT).
    #[arg(long, value_name = "HOST:PORT", env = "VANTAGE_SOCKS5")]
    pub socks5: Option<crate::config::Socks5Proxy>,
}

/// Flags of `vantage-probe key-id`.
#[derive(Debug, Args)]
pub struct KeyIdArgs {
    /// Directory of the probe key (a joined daemon's is in its config, e.g. /var/lib/vantage-probe).
    #[arg(long, env = "VANTAGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// A flag whose value can also switch its step off (`--doh off`), so that no magic string
/// travels past the parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Toggle<T> {
    /// Switched off.
    Off,
    /// On, with this value.
    On(T),
}

impl<T> Toggle<T> {
    /// `off` (or `none`, the older spelling) switches the step off; anything else must parse as `T`.
    fn parse(s: &str, on: impl FnOnce(&str) -> Result<T, String>) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("none") { Ok(Toggle::Off) } else { on(s).map(Toggle::On) }
    }

    /// The value, if on.
    pub fn value(&self) -> Option<&T> {
        match self {
            Toggle::Off => None,
            Toggle::On(value) => Some(value),
        }
    }
}

fn parse_doh(s: &str) -> Result<Toggle<String>, String> {
    Toggle::parse(s, |url| {
        if url.starts_with("https://") || url.starts_with("http://") {
            Ok(url.to_string())
        } else {
            Err(format!("`{url}` is not an http(s) URL or `off`"))
        }
    })
}

fn parse_resolver(s: &str) -> Result<Toggle<SocketAddr>, String> {
    Toggle::parse(s, |addr| addr.parse().map_err(|_| format!("`{addr}` is not IP:PORT or `off`")))
}

fn parse_test(s: &str) -> Result<TestKind, String> {
    TestKind::parse(s)
        .ok_or_else(|| format!("unknown test `{s}` (expected dns, tcp, tls, quic, openvpn, wireguard, ikev2 or tor)"))
}

/// A country code as typed (`de` is fine), stored as the schema has it (`DE`).
fn parse_cc(s: &str) -> Result<String, String> {
    let cc = s.to_ascii_uppercase();
    if vantage_measurement::is_country_code(&cc) { Ok(cc) } else { Err(format!("`{s}` is not a two-letter country code")) }
}

fn parse_on_vpn(s: &str) -> Result<OnVpn, String> {
    s.parse()
}

fn parse_network_type(s: &str) -> Result<NetworkType, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown network type `{s}` (expected fixed, wifi, mobile or vpn)"))
}

/// Why flags could not be turned into a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag's value is unusable.
    #[error("--{flag}: {reason}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// A collector URL from the config file is one the transport rule refuses.
    #[error("{0}")]
    Transport(TransportError),
}

/// A [`ConfigError`] for `--flag`.
pub fn flag(flag: &'static str, reason: impl ToString) -> ConfigError {
    ConfigError::Flag { flag, reason: reason.to_string() }
}

/// Where spool files live unless `--data-dir` says otherwise.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("vantage"))
        .unwrap_or_else(|| PathBuf::from("vantage-data"))
}

/// Trust anchors: Mozilla's roots plus each `--ca` file.
pub fn trust_anchors(ca: &[PathBuf]) -> Result<TrustAnchors, ConfigError> {
    ca.iter().try_fold(TrustAnchors::webpki_defaults(), |anchors, path| anchors.with_pem_file(path).map_err(|e| flag("ca", e)))
}

/// The HTTP client for the collector, the helper and DoH, trusting `--ca` files too.
pub fn http_client(ca: &[PathBuf], timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    http_client_builder(ca, timeout)?.build().map_err(|e| flag("ca", e))
}

/// What [`http_client`] builds, for clients that add to it (a proxy for collector traffic).
pub fn http_client_builder(ca: &[PathBuf], timeout: Duration) -> Result<reqwest::ClientBuilder, ConfigError> {
    let mut builder = reqwest::Client::builder().connect_timeout(timeout).timeout(timeout * 3).no_proxy();
    for path in ca {
        let pem = std::fs::read(path).map_err(|e| flag("ca", format!("{}: {e}", path.display())))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| flag("ca", e))? {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

impl RunArgs {
    /// How residual penalties are weighed and re-tested.
    pub fn residual_policy(&self) -> ResidualPolicy {
        let window = Duration::from_secs(self.residual_window);
        ResidualPolicy { window, retest: if self.retest_residual { Retest::Within(window) } else { Retest::Never } }
    }

    /// What the transport rule weighs for the helper (never proxied; uploads add the proxy).
    pub fn allowance(&self) -> Allowance {
        Allowance { danger_plaintext: self.danger_plaintext_collector, ..Allowance::default() }
    }

    /// Check the collector and helper URLs against the transport rule.
    pub fn check_transport(&self) -> Result<(), ConfigError> {
        if let Some(collector) = &self.collector {
            let remote_proxy = self.socks5.as_ref().is_some_and(|p| !p.is_loopback());
            crate::transport::check_flag("collector", collector, Allowance { remote_proxy, ..self.allowance() })?;
        }
        if let Some(helper) = self.helper.as_ref().filter(|_| !self.no_helper) {
            crate::transport::check_flag("helper", helper, self.allowance())?;
        }
        Ok(())
    }

    /// Build the measurement configuration.
    pub fn measure_config(&self, http: &reqwest::Client) -> Result<MeasureConfig, ConfigError> {
        self.check_transport()?;
        let helper_url = if self.no_helper { None } else { self.helper.as_ref().or(self.collector.as_ref()) };
        if self.timeout == 0 || self.timeout > 120 {
            return Err(flag("timeout", "must be between 1 and 120 seconds"));
        }
        if self.concurrency == 0 || self.concurrency > 256 {
            return Err(flag("concurrency", "must be between 1 and 256"));
        }
        if self.residual_window > 3600 {
            return Err(flag("residual-window", "must be at most 3600 seconds"));
        }
        if self.localise_spacing > 3600 {
            return Err(flag("localise-spacing", "must be at most 3600 seconds"));
        }
        if self.ipv6_control.is_some_and(|a| !a.is_ipv6()) {
            return Err(flag("ipv6-control", "must be an IPv6 address and port, such as [2001:db8::1]:443"));
        }
        let bogons = BogonPolicy::allowing(&self.danger_not_bogon).map_err(|e| flag("danger-not-bogon", e))?;
        let bogons = bogons.with_blockpages(&self.danger_blockpage).map_err(|e| flag("danger-blockpage", e))?;
        Ok(MeasureConfig {
            anchors: Arc::new(trust_anchors(&self.ca)?),
            timeout: Duration::from_secs(self.timeout),
            helper: helper_url.map(|u| HelperClient::new(u, http.clone())),
            doh: self.doh.value().map(|url| DohClient::new(url, http.clone())),
            udp_resolver: self.resolver.value().copied(),
            system_resolver: !self.no_system_resolver,
            dns_blackhole: self.dns_blackhole,
            ipv6_control: self.ipv6_control,
            ipv6_answered: Default::default(),
            dns_linger: Duration::from_millis(self.dns_linger_ms.min(10_000)),
            probe: ProbeInfo { cc: self.cc.clone(), asn: self.asn, network_type: self.network_type, network_epoch: None },
            bogons,
            localise: (!self.no_localise)
                .then(|| LocaliseConfig { spacing: Duration::from_secs(self.localise_spacing), ..LocaliseConfig::default() }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    fn run_args(extra: &[&str]) -> Result<RunArgs, clap::Error> {
        let argv = ["vantage-probe", "run"].iter().chain(extra).copied();
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Run(args) => *args,
            other => panic!("parsed as {other:?}"),
        })
    }

    #[test]
    fn defaults_come_from_the_constants() {
        let args = run_args(&[]).expect("parse");
        assert_eq!(args.doh, Toggle::On(DEFAULT_DOH.to_string()));
        assert_eq!(args.resolver, Toggle::On(DEFAULT_UDP_RESOLVER.parse().expect("constant")));
        assert_eq!(args.timeout, DEFAULT_TIMEOUT_SECS);
        assert_eq!(args.cc, "ZZ");
        assert_eq!(args.on_vpn, OnVpn::Pause);
    }

    #[test]
    fn encrypted_dns_is_off_unless_asked() {
        assert!(!run_args(&[]).expect("parse").encrypted_dns);
        assert!(run_args(&["--encrypted-dns"]).expect("parse").encrypted_dns);
    }

    #[test]
    fn on_vpn_takes_pause_or_tag() {
        assert_eq!(run_args(&["--on-vpn", "tag"]).expect("parse").on_vpn, OnVpn::Tag);
        let err = run_args(&["--on-vpn", "ignore"]).expect_err("unknown policy").to_string();
        assert!(err.contains("for '--on-vpn "), "{err}");
    }

    #[test]
    fn tests_flag_takes_a_list_and_refuses_unknown_tests() {
        assert_eq!(run_args(&["--tests", "dns,tls"]).expect("parse").tests, Some(vec![TestKind::Dns, TestKind::Tls]));
        let err = run_args(&["--tests", "ping"]).expect_err("unknown test").to_string();
        assert!(err.contains("unknown test `ping`"), "{err}");
    }

    #[test]
    fn country_is_normalised_and_checked() {
        assert_eq!(run_args(&["--cc", "de"]).expect("parse").cc, "DE");
        assert!(run_args(&["--cc", "DEU"]).is_err());
    }

    #[test]
    fn collector_is_the_default_helper_unless_told_otherwise() {
        let http = http();
        let with = run_args(&["--collector", "http://127.0.0.1:1"]).expect("parse");
        assert!(with.measure_config(&http).expect("config").helper.is_some());
        let without = run_args(&["--collector", "http://127.0.0.1:1", "--no-helper"]).expect("parse");
        assert!(without.measure_config(&http).expect("config").helper.is_none());
    }

    #[test]
    fn a_plaintext_collector_or_helper_elsewhere_is_refused_unless_the_danger_flag_says_so() {
        let http = http();
        for (argv, flag) in [
            (vec!["--collector", "http://collector.example"], "--collector"),
            (vec!["--collector", "https://collector.example", "--helper", "http://192.0.2.1:8080"], "--helper"),
            (vec!["--collector", "http://127.0.0.1:8080", "--socks5", "tor.lan:9050"], "--collector"),
            (vec!["--collector", "collector.example"], "--collector"),
        ] {
            let err = run_args(&argv).expect("parse").measure_config(&http).expect_err(flag).to_string();
            assert!(err.starts_with(flag), "{err}");
        }
        for argv in [
            vec!["--collector", "https://collector.example", "--helper", "https://helper.example"],
            vec!["--collector", "http://127.0.0.1:8080", "--socks5", "127.0.0.1:9050"],
            vec!["--collector", "http://[::1]:8080", "--helper", "http://localhost:8081"],
            vec!["--collector", "http://collector.example", "--danger-plaintext-collector"],
        ] {
            assert!(run_args(&argv).expect("parse").measure_config(&http).is_ok(), "{argv:?}");
        }
    }

    #[test]
    fn bad_values_name_their_flag() {
        let http = http();
        for (argv, flag) in [(vec!["--timeout", "0"], "--timeout"), (vec!["--ca", "/nonexistent.pem"], "--ca")] {
            let err = run_args(&argv).expect("parse").measure_config(&http).expect_err(flag).to_string();
            assert!(err.starts_with(flag), "{err}");
        }
        // Values with a syntax of their own are refused by the parser, which names the flag too.
        for (argv, flag) in [(vec!["--resolver", "8.8.8.8"], "--resolver"), (vec!["--doh", "dns.google"], "--doh")] {
            let err = run_args(&argv).expect_err(flag).to_string();
            assert!(err.contains(&format!("for '{flag} ")), "{err}");
        }
    }

    #[test]
    fn none_disables_doh_and_the_udp_resolver() {
        let http = http();
        let cfg = run_args(&["--doh", "none", "--resolver", "none"]).expect("parse").measure_config(&http).expect("config");
        assert!(cfg.doh.is_none() && cfg.udp_resolver.is_none());
    }

    #[test]
    fn off_disables_doh_and_the_udp_resolver_too() {
        let args = run_args(&["--doh", "off", "--resolver", "OFF"]).expect("parse");
        assert_eq!((&args.doh, &args.resolver), (&Toggle::Off, &Toggle::Off));
        let cfg = args.measure_config(&http()).expect("config");
        assert!(cfg.doh.is_none() && cfg.udp_resolver.is_none());
    }

    #[test]
    fn doh_and_resolver_values_are_typed_at_parse_time() {
        let args = run_args(&["--doh", "http://127.0.0.1:8053/dns-query", "--resolver", "127.0.0.1:5353"]).expect("parse");
        assert_eq!(args.doh, Toggle::On("http://127.0.0.1:8053/dns-query".to_string()));
        assert_eq!(args.resolver, Toggle::On("127.0.0.1:5353".parse().expect("addr")));
        // `off` is a word, not a prefix: a host named like it is still refused for what it is.
        assert!(run_args(&["--doh", "offline.example"]).is_err());
    }
}
