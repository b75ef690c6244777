//! What the operator tells the collector, and how it is read.
//!
//! Two stages, as ripgrep and linkerd do: [`Cli`] is what was typed (clap, each flag with its
//! `VANTAGE_*` environment twin, checked but not acted on), [`Config`] is the plain value the
//! [`App`](crate::App) is built from. Tests build a [`Config`] directly and never touch the
//! environment. Files named by the config (target list, CA) are read when the app is built.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use vantage_engine::control::HelperTrust;
use vantage_engine::runner::verify::TrustAnchors;
use vantage_measurement::wire::registration::DEFAULT_DIFFICULTY_BITS;

use crate::limits;
pub use crate::limits::args::{
    ENV_HELPER_RATE_PER_SOURCE, ENV_INGEST_RATE_PER_KEY, ENV_INGEST_RATE_PER_SOURCE, ENV_RATE_LIMIT_ENTRIES,
    ENV_REGISTER_RATE_PER_SOURCE, LimitArgs,
};
pub use crate::trust::args::{
    ENV_REGISTRATION_DIFFICULTY_BITS, ENV_TRUST_MIN_DAYS, ENV_TRUST_MIN_MEASUREMENTS, ENV_TRUSTED_KEYS, TrustArgs,
};

use crate::store::StoreLocation;
pub use crate::store::args::{DatabaseUrl, ENV_DATABASE_URL, ENV_RETAIN_DAYS, StoreArgs};

pub use crate::export::args::{ExportArgs, PublicationArgs, VerifyArgs};
pub use crate::operator::args::{InviteArgs, ListCommand, ListKeyCommand, PinArgs};
use crate::server;
pub use crate::server::args::{
    ConnectionArgs, ENV_FORWARDED_HEADER, ENV_HEADER_TIMEOUT_SECS, ENV_MAX_CONNECTIONS, ENV_MAX_CONNECTIONS_PER_SOURCE,
    ENV_PROXY_PROTOCOL, ENV_TLS_CERT, ENV_TLS_HANDSHAKE_TIMEOUT_SECS, ENV_TLS_KEY, ENV_TRUSTED_PROXIES,
};

/// Environment twin of `--listen`.
pub const ENV_LISTEN: &str = "VANTAGE_LISTEN";
/// Environment twin of `--data-dir`.
pub const ENV_DATA_DIR: &str = "VANTAGE_DATA_DIR";
/// Environment twin of `--targets`.
pub const ENV_TARGETS: &str = "VANTAGE_TARGETS";
/// Environment twin of `--signed-list`.
pub const ENV_SIGNED_LIST: &str = "VANTAGE_SIGNED_LIST";
/// Environment twin of `--geoip-country`.
pub const ENV_GEOIP_COUNTRY: &str = "VANTAGE_GEOIP_COUNTRY";
/// Environment twin of `--geoip-asn`.
pub const ENV_GEOIP_ASN: &str = "VANTAGE_GEOIP_ASN";
/// Environment twin of `--ca`.
pub const ENV_CA: &str = "VANTAGE_CA";
/// Environment twin of `--helper-resolver`.
pub const ENV_HELPER_RESOLVER: &str = "VANTAGE_HELPER_RESOLVER";
/// Environment twin of `--helper-timeout-secs`.
pub const ENV_HELPER_TIMEOUT_SECS: &str = "VANTAGE_HELPER_TIMEOUT_SECS";
/// Environment twin of `--asn-min-probes`.
pub const ENV_ASN_MIN_PROBES: &str = "VANTAGE_ASN_MIN_PROBES";
/// Environment twin of `--max-series`.
pub const ENV_MAX_SERIES: &str = "VANTAGE_MAX_SERIES";
/// Environment twin of `--window-secs`.
pub const ENV_WINDOW_SECS: &str = "VANTAGE_WINDOW_SECS";
/// Environment twin of `--fleet-refresh-secs`.
pub const ENV_FLEET_REFRESH_SECS: &str = "VANTAGE_FLEET_REFRESH_SECS";
/// Where the collector listens unless told otherwise: loopback, so a fresh install exposes
/// nothing until the operator decides (or puts a TLS-terminating proxy in front).
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// The data directory unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "./vantage-data";
/// How long the helper waits for one network step.
pub const DEFAULT_HELPER_TIMEOUT_SECS: u64 = 10;
/// The most names a published target list may hold: each may become a `target` label value.
pub const MAX_PUBLISHED_TARGETS: usize = 1000;
/// Distinct probe keys that must report an ASN in a country before it becomes an `asn` label.
pub const DEFAULT_ASN_MIN_PROBES: u32 = 3;
/// Label combinations the budgeted metric families may hold before new ones fold into `other`.
pub const DEFAULT_MAX_SERIES: usize = 20_000;
/// The window of the fleet gauges and the status page.
pub const DEFAULT_WINDOW_SECS: u64 = 3600;
/// How often the fleet gauges and the status page are recomputed from the store.
pub const DEFAULT_FLEET_REFRESH_SECS: u64 = 15;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "vantage-collector",
    version,
    about = "Receives Vantage measurements, stores them, and exports Prometheus metrics",
    long_about = "Receives Vantage measurements, stores them, and exports Prometheus metrics.\n\n\
        Probes POST batches of NDJSON measurements to /api/v1/measurements; each line is \
        validated against schema v1 and stored once by its id. Researchers read them back \
        from GET /api/v1/measurements with filters. Prometheus scrapes /metrics, whose labels \
        are bounded (country, test, published target, verdict, mechanism; never a probe). \
        The collector also serves the probes' test helper at /api/v1/control, which repeats \
        a DNS/TCP/TLS/QUIC step from this uncensored network."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the ingest API, researcher API, test helper, /metrics and /healthz.
    ///
    /// Prints `vantage-collector listening on http://ADDR` (`https://` with --tls-cert) on stdout
    /// once bound; logs go to stderr (filter with VANTAGE_LOG, e.g. `VANTAGE_LOG=debug`). SIGINT or SIGTERM stop accepting, finish in-flight
    /// requests and close the store.
    // Boxed: the serve flags outweigh every other subcommand's.
    Serve(Box<ServeArgs>),
    /// Make or rotate the operator's list key (ed25519), which signs the target list probes fetch.
    #[command(subcommand)]
    ListKey(ListKeyCommand),
    /// Sign a target list for `serve --signed-list`.
    #[command(subcommand)]
    List(ListCommand),
    /// Print an invitation URL for volunteers (`vantage-probe join URL`).
    Invite(InviteArgs),
    /// Print the pin (`sha256/…`) of the TLS key in a certificate or key file, for `invite --pin`
    /// and the operator's records.
    Pin(PinArgs),
    /// Write closed days' bulk export (gzip files per country and test, and each day's signed
    /// manifest) from the store, publishing first any closed day not yet published.
    Export(ExportArgs),
    /// Check export files offline against a day's signed manifest and the collector's public key.
    Verify(VerifyArgs),
}

/// Flags of `vantage-collector serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on. Use port 0 to let the OS pick (the bound address is
    /// printed on stdout).
    #[arg(long, value_name = "ADDR", env = ENV_LISTEN, default_value_t = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Directory for the measurement store (the SQLite file `vantage.sqlite3`), unless
    /// --database names a PostgreSQL database. Created if missing.
    #[arg(long, value_name = "DIR", env = ENV_DATA_DIR, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// The published target list (TOML, `[[target]]` tables with `name = "..."`; other keys
    /// are ignored). Only these names appear as `target` metric labels; every other target is
    /// counted as `other`. Without it, all targets are `other`.
    #[arg(long, value_name = "FILE", env = ENV_TARGETS)]
    pub targets: Option<PathBuf>,

    /// The signed target list (made by `vantage-collector list sign`), served at GET
    /// /api/v1/targets byte for byte and re-read on SIGHUP. Its `labelled` names are the `target`
    /// metric labels. Checked at start: a list that does not verify is an error. Not with --targets.
    #[arg(long, value_name = "FILE", env = ENV_SIGNED_LIST, conflicts_with = "targets")]
    pub signed_list: Option<PathBuf>,

    /// A MaxMind DB country database (GeoLite2-Country, GeoLite2-City or DB-IP country lite):
    /// the country of each batch's submitting address is stored beside its measurements as the
    /// collector-observed country. The address itself is never stored.
    #[arg(long, value_name = "FILE", env = ENV_GEOIP_COUNTRY)]
    pub geoip_country: Option<PathBuf>,

    /// A MaxMind DB ASN database (GeoLite2-ASN or DB-IP ASN lite): the collector-observed ASN,
    /// as --geoip-country.
    #[arg(long, value_name = "FILE", env = ENV_GEOIP_ASN)]
    pub geoip_asn: Option<PathBuf>,

    /// Extra trust anchors (PEM certificates) for the helper's TLS and QUIC checks, added to
    /// the built-in Mozilla roots. For labs and private PKIs.
    #[arg(long, value_name = "FILE", env = ENV_CA)]
    pub ca: Option<PathBuf>,

    /// DANGER: let the test helper contact loopback, private, link-local, documentation and
    /// other non-public addresses. Off by default so the helper can't be used to probe the
    /// collector's own network; turn on only in tests and isolated labs.
    #[arg(long)]
    pub danger_helper_allow_private: bool,

    /// DNS resolver (IP:PORT) the test helper asks over UDP for DNS controls, instead of this
    /// machine's system resolver. For labs, or to pin the helper to a known honest resolver.
    #[arg(long, value_name = "ADDR", env = ENV_HELPER_RESOLVER)]
    pub helper_resolver: Option<SocketAddr>,

    /// Seconds the test helper waits for one network step.
    #[arg(
        long,
        value_name = "N",
        env = ENV_HELPER_TIMEOUT_SECS,
        default_value_t = DEFAULT_HELPER_TIMEOUT_SECS,
        value_parser = clap::value_parser!(u64).range(1..=120)
    )]
    pub helper_timeout_secs: u64,

    /// An autonomous system gets its own `asn` label value in a country only once at least this
    /// many distinct probe keys reported from it there within the window; until then it is
    /// counted as `asn="other"`. Protects volunteers (a lone probe in a small network would be
    /// identifiable) and bounds the series.
    #[arg(
        long,
        value_name = "K",
        env = ENV_ASN_MIN_PROBES,
        default_value_t = DEFAULT_ASN_MIN_PROBES,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub asn_min_probes: u32,

    /// The most label combinations the label-bearing families (measurement counters and fleet
    /// gauges) may hold. Beyond it, new combinations fold into `other` values (target, asn, then
    /// country `ZZ`) and are counted in vantage_metric_labels_folded_total.
    #[arg(
        long,
        value_name = "N",
        env = ENV_MAX_SERIES,
        default_value_t = DEFAULT_MAX_SERIES as u64,
        value_parser = clap::value_parser!(u64).range(100..=10_000_000)
    )]
    pub max_series: u64,

    /// The window, in seconds, of the fleet gauges (active probes, verdicts across probes), of
    /// the ASN rule above and of the status page.
    #[arg(
        long,
        value_name = "S",
        env = ENV_WINDOW_SECS,
        default_value_t = DEFAULT_WINDOW_SECS,
        value_parser = clap::value_parser!(u64).range(10..=30 * 86_400)
    )]
    pub window_secs: u64,

    /// How often, in seconds, the fleet gauges and the status page are recomputed from the store.
    #[arg(
        long,
        value_name = "S",
        env = ENV_FLEET_REFRESH_SECS,
        default_value_t = DEFAULT_FLEET_REFRESH_SECS,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub fleet_refresh_secs: u64,

    /// Rate limits per client address and per probe key.
    #[command(flatten)]
    pub limits: LimitArgs,

    /// HTTPS, trusted proxies, connection caps and timeouts.
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Which probe keys count: anchors, trust thresholds, the registration proof of work.
    #[command(flatten)]
    pub trust: TrustArgs,

    /// The database (PostgreSQL instead of SQLite) and retention.
    #[command(flatten)]
    pub store: StoreArgs,

    /// The key that signs the export manifests.
    #[command(flatten)]
    pub publication: PublicationArgs,
}

/// Everything the collector is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Directory of the store.
    pub data_dir: PathBuf,
    /// The published target list, if any (see [`load_published_targets`]); the older way.
    pub targets_file: Option<PathBuf>,
    /// The signed target list served at `GET /api/v1/targets` (not with `targets_file`).
    pub signed_list: Option<PathBuf>,
    /// The GeoIP country database.
    pub geoip_country: Option<PathBuf>,
    /// The GeoIP ASN database.
    pub geoip_asn: Option<PathBuf>,
    /// Extra PEM trust anchors for the helper.
    pub ca_file: Option<PathBuf>,
    /// Let the helper contact non-public addresses (tests and labs only).
    pub danger_helper_allow_private: bool,
    /// The resolver the helper asks for DNS controls (`None`: the system resolver).
    pub helper_resolver: Option<SocketAddr>,
    /// The helper's wait per network step.
    pub helper_timeout: Duration,
    /// Distinct probe keys needed before an ASN becomes an `asn` label value in a country.
    pub asn_min_probes: u32,
    /// Label combinations the budgeted families may hold.
    pub max_series: usize,
    /// Window of the fleet gauges, the ASN rule and the status page.
    pub window: Duration,
    /// How often the fleet gauges are recomputed.
    pub fleet_refresh: Duration,
    /// The rate limits.
    pub limits: limits::Settings,
    /// The certificate chain served over HTTPS (with `tls_key`; neither: plain HTTP).
    pub tls_cert: Option<PathBuf>,
    /// Its private key.
    pub tls_key: Option<PathBuf>,
    /// The connection layer: trusted proxies, caps, timeouts.
    pub connections: server::Settings,
    /// The operator's trusted key ids (`None`: none).
    pub trusted_keys: Option<PathBuf>,
    /// Measurements a registered key needs before it counts.
    pub trust_min_measurements: u64,
    /// Distinct days (and days of age) a registered key needs before it counts.
    pub trust_min_days: u32,
    /// The registration proof of work, in leading zero bits.
    pub registration_difficulty_bits: u8,
    /// The PostgreSQL database (`None`: SQLite in `data_dir`).
    pub database: Option<DatabaseUrl>,
    /// Days of measurements kept (`None`: all).
    pub retain_days: Option<u32>,
    /// The publication key file (`None`: `publication.key` in `data_dir`).
    pub publication_key: Option<PathBuf>,
}

impl Config {
    /// A config listening on `listen` with its store in `data_dir`, everything else default
    /// (no target list, no extra CA, helper refuses non-public addresses).
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen,
            data_dir: data_dir.into(),
            targets_file: None,
            signed_list: None,
            geoip_country: None,
            geoip_asn: None,
            ca_file: None,
            danger_helper_allow_private: false,
            helper_resolver: None,
            helper_timeout: Duration::from_secs(DEFAULT_HELPER_TIMEOUT_SECS),
            asn_min_probes: DEFAULT_ASN_MIN_PROBES,
            max_series: DEFAULT_MAX_SERIES,
            window: Duration::from_secs(DEFAULT_WINDOW_SECS),
            fleet_refresh: Duration::from_secs(DEFAULT_FLEET_REFRESH_SECS),
            limits: limits::Settings::default(),
            tls_cert: None,
            tls_key: None,
            connections: server::Settings::default(),
            trusted_keys: None,
            trust_min_measurements: crate::trust::DEFAULT_MIN_MEASUREMENTS,
            trust_min_days: crate::trust::DEFAULT_MIN_DAYS,
            registration_difficulty_bits: DEFAULT_DIFFICULTY_BITS,
            database: None,
            retain_days: None,
            publication_key: None,
        }
    }
}

impl Config {
    /// The names on the published target list `targets_file` (none named: no names, so every
    /// target is counted as `other`).
    pub fn published_targets(&self) -> Result<HashSet<String>, ConfigError> {
        if self.targets_file.is_some() && self.signed_list.is_some() {
            return Err(ConfigError::TwoTargetLists);
        }
        self.targets_file.as_deref().map_or_else(|| Ok(HashSet::new()), load_published_targets)
    }

    /// What the test helper trusts and how it asks: the built-in Mozilla roots plus `ca_file`,
    /// the step timeout, the resolver.
    pub fn helper_trust(&self) -> Result<HelperTrust, ConfigError> {
        let mut anchors = TrustAnchors::webpki_defaults();
        if let Some(path) = &self.ca_file {
            anchors = anchors.with_pem_file(path)?;
        }
        Ok(HelperTrust { anchors: Arc::new(anchors), timeout: self.helper_timeout, dns_resolver: self.helper_resolver })
    }

    /// Where the store is: the `--database` (its URL checked; an error never repeats it) or the
    /// SQLite file in `data_dir`.
    pub fn store_location(&self) -> Result<StoreLocation, ConfigError> {
        match &self.database {
            Some(url) => {
                crate::store::postgres::check_url(&url.0).map_err(ConfigError::DatabaseUrl)?;
                Ok(StoreLocation::Postgres { url: url.0.clone() })
            }
            None => Ok(StoreLocation::Sqlite { data_dir: self.data_dir.clone() }),
        }
    }

    /// The connection layer's settings, checked: PROXY headers need someone allowed to send them.
    pub fn connection_settings(&self) -> Result<server::Settings, ConfigError> {
        if self.connections.proxy_protocol && self.connections.trusted_proxies.is_empty() {
            return Err(ConfigError::ProxyProtocolWithoutProxies);
        }
        Ok(self.connections.clone())
    }
}

impl From<ServeArgs> for Config {
    fn from(args: ServeArgs) -> Self {
        Config {
            listen: args.listen,
            data_dir: args.data_dir,
            targets_file: args.targets,
            signed_list: args.signed_list,
            geoip_country: args.geoip_country,
            geoip_asn: args.geoip_asn,
            ca_file: args.ca,
            danger_helper_allow_private: args.danger_helper_allow_private,
            helper_resolver: args.helper_resolver,
            helper_timeout: Duration::from_secs(args.helper_timeout_secs),
            asn_min_probes: args.asn_min_probes,
            max_series: usize::try_from(args.max_series).unwrap_or(usize::MAX),
            window: Duration::from_secs(args.window_secs),
            fleet_refresh: Duration::from_secs(args.fleet_refresh_secs),
            limits: args.limits.settings(),
            tls_cert: args.connection.tls_cert.clone(),
            tls_key: args.connection.tls_key.clone(),
            connections: args.connection.settings(),
            trusted_keys: args.trust.trusted_keys,
            trust_min_measurements: args.trust.trust_min_measurements,
            trust_min_days: args.trust.trust_min_days,
            registration_difficulty_bits: args.trust.registration_difficulty_bits,
            database: args.store.database,
            retain_days: args.store.retain_days,
            publication_key: args.publication.publication_key,
        }
    }
}

/// Why the configuration can't be used. The binary exits 64 (EX_USAGE) on these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file named by the config could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The target list is not the expected TOML.
    #[error("{path} is not a target list ([[target]] tables with name = \"...\"): {message}")]
    TargetList {
        /// The file.
        path: String,
        /// The parser's message, with the position.
        message: String,
    },
    /// The target list is too long to be used as labels.
    #[error("{path} lists {count} targets; at most {MAX_PUBLISHED_TARGETS} may become metric labels")]
    TooManyTargets {
        /// The file.
        path: String,
        /// How many it lists.
        count: usize,
    },
    /// Both a plain and a signed target list: which one names the labels would be a guess.
    #[error("--targets and --signed-list both name a target list; the signed list alone is the source of the target labels")]
    TwoTargetLists,
    /// The extra trust anchors could not be loaded.
    #[error(transparent)]
    Trust(#[from] vantage_engine::runner::verify::TrustError),
    /// `--database` is not a PostgreSQL URL (the message names the part, never the password).
    #[error("--database: {0}")]
    DatabaseUrl(String),
    /// `--proxy-protocol` without a `--trusted-proxy`: every balancer's header would be refused.
    #[error("--proxy-protocol needs --trusted-proxy: PROXY headers are honoured only from trusted proxies' addresses")]
    ProxyProtocolWithoutProxies,
    /// The trusted-keys file has a line that is not a key id.
    #[error("{path} line {line}: {message}")]
    TrustedKeys {
        /// The file.
        path: String,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// The published target list as far as the collector cares: the names. The file is the probe's
/// format, so keys other than `name` are not ours to judge and are ignored.
#[derive(Deserialize)]
struct TargetList {
    target: Vec<PublishedTarget>,
}

#[derive(Deserialize)]
struct PublishedTarget {
    name: String,
}

/// Read the names of the published target list at `path`.
pub fn load_published_targets(path: &Path) -> Result<HashSet<String>, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
    parse_published_targets(&text).map_err(|e| match e {
        ParseTargetsError::Toml(message) => ConfigError::TargetList { path: shown, message },
        ParseTargetsError::TooMany(count) => ConfigError::TooManyTargets { path: shown, count },
    })
}

enum ParseTargetsError {
    Toml(String),
    TooMany(usize),
}

fn parse_published_targets(text: &str) -> Result<HashSet<String>, ParseTargetsError> {
    let list: TargetList = toml::from_str(text).map_err(|e| ParseTargetsError::Toml(e.to_string()))?;
    let names: HashSet<String> = list.target.into_iter().map(|t| t.name).collect();
    if names.len() > MAX_PUBLISHED_TARGETS {
        return Err(ParseTargetsError::TooMany(names.len()));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let cli = Cli::try_parse_from(args)?;
        let Command::Serve(serve) = cli.command else { panic!("not serve") };
        Ok((*serve).into())
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_flags_reach_the_config() {
        let config = parse(&[
            "vantage-collector",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/tmp/x",
            "--targets",
            "t.toml",
            "--ca",
            "ca.pem",
            "--danger-helper-allow-private",
            "--helper-resolver",
            "127.0.0.1:5353",
            "--helper-timeout-secs",
            "3",
            "--asn-min-probes",
            "5",
            "--max-series",
            "1000",
            "--window-secs",
            "600",
            "--fleet-refresh-secs",
            "2",
            "--geoip-country",
            "c.mmdb",
            "--geoip-asn",
            "a.mmdb",
            "--trusted-keys",
            "anchors.txt",
            "--trust-min-measurements",
            "50",
            "--trust-min-days",
            "3",
            "--registration-difficulty-bits",
            "20",
        ])
        .expect("valid flags");
        assert_eq!(config.listen, "127.0.0.1:0".parse().expect("addr"));
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.targets_file, Some(PathBuf::from("t.toml")));
        assert_eq!(config.ca_file, Some(PathBuf::from("ca.pem")));
        assert!(config.danger_helper_allow_private);
        assert_eq!(config.helper_resolver, Some("127.0.0.1:5353".parse().expect("addr")));
        assert_eq!(config.helper_timeout, Duration::from_secs(3));
        assert_eq!(config.asn_min_probes, 5);
        assert_eq!(config.max_series, 1000);
        assert_eq!(config.window, Duration::from_secs(600));
        assert_eq!(config.fleet_refresh, Duration::from_secs(2));
        assert_eq!(config.geoip_country, Some(PathBuf::from("c.mmdb")));
        assert_eq!(config.geoip_asn, Some(PathBuf::from("a.mmdb")));
        assert_eq!(config.trusted_keys, Some(PathBuf::from("anchors.txt")));
        assert_eq!((config.trust_min_measurements, config.trust_min_days, config.registration_difficulty_bits), (50, 3, 20));
        let signed = parse(&["vantage-collector", "serve", "--signed-list", "s.json"]).expect("signed list");
        assert_eq!(signed.signed_list, Some(PathBuf::from("s.json")));
        assert!(parse(&["vantage-collector", "serve", "--signed-list", "s.json", "--targets", "t.toml"]).is_err(), "one list");
    }

    #[test]
    fn budget_and_window_defaults_and_bounds() {
        let config = parse(&["vantage-collector", "serve"]).expect("defaults");
        assert_eq!(config.asn_min_probes, DEFAULT_ASN_MIN_PROBES);
        assert_eq!(config.max_series, DEFAULT_MAX_SERIES);
        assert_eq!(config.window, Duration::from_secs(DEFAULT_WINDOW_SECS));
        assert!(parse(&["vantage-collector", "serve", "--asn-min-probes", "0"]).is_err());
        assert!(parse(&["vantage-collector", "serve", "--max-series", "5"]).is_err());
        assert!(parse(&["vantage-collector", "serve", "--window-secs", "1"]).is_err());
        assert_eq!(config.trust_min_measurements, crate::trust::DEFAULT_MIN_MEASUREMENTS);
        assert_eq!(config.trust_min_days, crate::trust::DEFAULT_MIN_DAYS);
        assert_eq!(config.registration_difficulty_bits, DEFAULT_DIFFICULTY_BITS);
        assert_eq!(config, Config::new(DEFAULT_LISTEN, DEFAULT_DATA_DIR), "one set of defaults");
        assert!(parse(&["vantage-collector", "serve", "--registration-difficulty-bits", "29"]).is_err(), "probes refuse it");
        assert!(parse(&["vantage-collector", "serve", "--registration-difficulty-bits", "0"]).is_err());
    }

    #[test]
    fn connection_flags_reach_the_config() {
        let config = parse(&["vantage-collector", "serve"]).expect("defaults");
        assert_eq!((config.tls_cert, config.tls_key, config.connections), (None, None, server::Settings::default()));
        let args = ["vantage-collector", "serve", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--max-connections", "9"];
        let config = parse(&args).expect("valid flags");
        assert_eq!((config.tls_cert, config.tls_key), (Some(PathBuf::from("c.pem")), Some(PathBuf::from("k.pem"))));
        assert_eq!(config.connections.max_connections, 9);
        // A config built in code is checked when the app is built: PROXY headers need a sender.
        let mut config = Config::new(DEFAULT_LISTEN, "d");
        config.connections.proxy_protocol = true;
        assert!(matches!(config.connection_settings(), Err(ConfigError::ProxyProtocolWithoutProxies)));
    }

    #[test]
    fn nonsense_flags_are_refused() {
        assert!(parse(&["vantage-collector", "serve", "--listen", "not-an-address"]).is_err());
        assert!(parse(&["vantage-collector", "serve", "--helper-timeout-secs", "0"]).is_err());
        assert!(parse(&["vantage-collector", "serve", "--no-such-flag"]).is_err());
    }

    #[test]
    fn target_list_reads_names_and_ignores_the_probes_other_keys() {
        let names = parse_published_targets(
            r#"
            version = 3
            [[target]]
            name = "wikipedia"
            domain = "wikipedia.org"
            tests = ["dns", "tls"]
            [[target]]
            name = "signal"
            "#,
        )
        .ok()
        .expect("valid list");
        assert_eq!(names, HashSet::from(["wikipedia".to_string(), "signal".to_string()]));
    }

    #[test]
    fn target_list_without_names_is_an_error_with_position() {
        match parse_published_targets("[[target]]\ndomain = \"x.org\"\n") {
            Err(ParseTargetsError::Toml(message)) => assert!(message.contains("name"), "{message}"),
            _ => panic!("a target without a name must be refused"),
        }
        assert!(matches!(parse_published_targets("names = []"), Err(ParseTargetsError::Toml(_))));
    }

    #[test]
    fn target_list_is_bounded() {
        let text: String = (0..=MAX_PUBLISHED_TARGETS).map(|i| format!("[[target]]\nname = \"t{i}\"\n")).collect();
        assert!(matches!(parse_published_targets(&text), Err(ParseTargetsError::TooMany(_))));
    }
}
