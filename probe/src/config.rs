//! The probe's config file: which collectors, which list key, where the data lives, and what the
//! volunteer keeps off their machine. `vantage-probe join` writes it; the daemon, `status` and
//! `forget` read it.
//!
//! ```toml
//! collectors = ["https://c1.example", "https://c2.example"]   # from the invitation; first preferred
//! list_key = "<base64>"          # the key pinned at join (the live pin/version lives in data_dir)
//! data_dir = "/var/lib/vantage-probe"
//! socks5 = "127.0.0.1:9050"      # optional: uploads and list fetches go through it
//! accepted_risks = true          # set by join after the explicit yes / --accept-risks
//! ca = ["/path/extra-ca.pem"]    # optional extra trust anchors (labs)
//! collector_pins = ["sha256/…"]  # optional, from the invitation: the collectors' TLS keys
//! danger_plaintext_collector = false  # labs only: allow http:// collectors on other machines
//! [opt_out]
//! tests = ["tor", "openvpn"]     # never run these, whatever the list says
//! categories = ["vpn"]           # never run targets of these categories
//! [daemon]
//! daily_bytes = 15_000_000
//! max_measurements_per_hour = 600
//! on_vpn = "pause"               # or "tag"
//! ```
//!
//! Unknown keys are an error (a typo in an opt-out must never silently run what the volunteer
//! switched off), and every error names the file and the field. The file pins the operator's key,
//! so it is written atomically (a crash leaves the old file or the new one) with mode `0600`.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vantage_engine::targets::is_category;
use vantage_measurement::TestKind;
use vantage_measurement::wire::pin::{MAX_PINS, SpkiPin};
use vantage_measurement::wire::target_list::fingerprint_of;
use vantage_measurement::wire::transport::{self, Allowance};

use crate::cli::ConfigError;
pub use crate::network::OnVpn;
use crate::private_file::write_private;
pub use crate::transport::{CollectorAccess, collector_client};

/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "VANTAGE_CONFIG";
/// The config file when running as root (a system service).
pub const SYSTEM_CONFIG: &str = "/etc/vantage/probe.toml";
/// The data directory when running as root.
pub const SYSTEM_DATA_DIR: &str = "/var/lib/vantage-probe";
// The budgets' defaults are the daemon's, measured and justified there.
pub use crate::daemon::budget::{DEFAULT_DAILY_BYTES, DEFAULT_MAX_PER_HOUR as DEFAULT_MAX_MEASUREMENTS_PER_HOUR};

/// The config file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Collector base URLs, the first preferred; the others are fallbacks when one is blocked.
    pub collectors: Vec<String>,
    /// The operator's list key pinned at join (base64). The live pin, which follows rotations, is
    /// kept in `data_dir`.
    pub list_key: String,
    /// The spool, the probe key, the last good list and its trust state.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Uploads and list fetches go through this SOCKS5 proxy; measurements never do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socks5: Option<Socks5Proxy>,
    /// The volunteer said yes to the consent text (or installed with `--accept-risks`).
    #[serde(default)]
    pub accepted_risks: bool,
    /// Extra trust anchors (PEM files) for the collectors' certificates and TLS targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca: Vec<PathBuf>,
    /// The collectors' TLS key pins (from the invitation): when any are set, a collector is
    /// accepted only if its certificate verifies AND carries one of these keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collector_pins: Vec<SpkiPin>,
    /// Allow plaintext http:// collectors on other machines (labs only; `join
    /// --danger-plaintext-collector` sets it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub danger_plaintext_collector: bool,
    /// What the volunteer never runs, whatever the list says.
    #[serde(default)]
    pub opt_out: OptOut,
    /// The daemon's budgets and policies.
    #[serde(default)]
    pub daemon: DaemonSettings,
}

/// Local opt-outs: they win over any list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptOut {
    /// Test kinds never run here.
    #[serde(default)]
    pub tests: Vec<TestKind>,
    /// Target categories never measured here (`vpn`, `circumvention`, …).
    #[serde(default)]
    pub categories: Vec<String>,
}

/// The daemon's budgets and what it does on a VPN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSettings {
    /// Bytes the probe may send and receive per day.
    #[serde(default = "default_daily_bytes")]
    pub daily_bytes: u64,
    /// The most measurements per hour.
    #[serde(default = "default_max_per_hour")]
    pub max_measurements_per_hour: u32,
    /// What to do when the default route goes through a VPN or tunnel.
    #[serde(default)]
    pub on_vpn: OnVpn,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            daily_bytes: DEFAULT_DAILY_BYTES,
            max_measurements_per_hour: DEFAULT_MAX_MEASUREMENTS_PER_HOUR,
            on_vpn: OnVpn::default(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    default_data_dir_for(running_as_root())
}

fn is_false(b: &bool) -> bool {
    !b
}

fn default_daily_bytes() -> u64 {
    DEFAULT_DAILY_BYTES
}

fn default_max_per_hour() -> u32 {
    DEFAULT_MAX_MEASUREMENTS_PER_HOUR
}

/// A SOCKS5 proxy, `HOST:PORT`. Names are resolved by the proxy (`socks5h`), so a local Tor also
/// hides which collector the probe looks up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Socks5Proxy(String);

impl Socks5Proxy {
    /// The proxy URL reqwest takes.
    pub fn url(&self) -> String {
        format!("socks5h://{}", self.0)
    }

    /// Whether the proxy runs on this machine (a loopback address or `localhost`).
    pub fn is_loopback(&self) -> bool {
        self.0.rsplit_once(':').is_some_and(|(host, _)| transport::is_loopback_host(host))
    }
}

impl FromStr for Socks5Proxy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not HOST:PORT (e.g. 127.0.0.1:9050)");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host_ok = !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
            && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
        if port == 0 || !host_ok {
            return Err(bad());
        }
        Ok(Socks5Proxy(s.to_string()))
    }
}

impl TryFrom<String> for Socks5Proxy {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Socks5Proxy> for String {
    fn from(p: Socks5Proxy) -> String {
        p.0
    }
}

impl fmt::Display for Socks5Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why the config file can't be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// No config file: the probe has not joined a network.
    #[error("no config file at {path}: join a network first (`vantage-probe join <INVITATION_URL>`) or pass --config")]
    Missing {
        /// The file.
        path: String,
    },
    /// Reading or writing failed.
    #[error("config file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The file is not the documented shape (the message names the field and line).
    #[error("config file {path} is invalid: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong and where.
        message: String,
    },
    /// A field's value is unusable.
    #[error("config file {path}: field `{field}`: {reason}")]
    Field {
        /// The file.
        path: String,
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl ProbeConfig {
    /// Read and check the config file at `path`.
    pub fn load(path: &Path) -> Result<ProbeConfig, ConfigFileError> {
        let shown = path.display().to_string();
        let text = fs::read_to_string(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ConfigFileError::Missing { path: shown.clone() },
            _ => ConfigFileError::Io { path: shown.clone(), source },
        })?;
        Self::parse(&text, &shown)
    }

    /// Parse and check config text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<ProbeConfig, ConfigFileError> {
        let config: ProbeConfig = toml::from_str(text)
            .map_err(|e| ConfigFileError::Invalid { path: origin.to_string(), message: e.to_string().trim_end().to_string() })?;
        config.check().map_err(|(field, reason)| ConfigFileError::Field { path: origin.to_string(), field, reason })?;
        Ok(config)
    }

    /// The rules serde can't express.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.collectors.is_empty() || self.collectors.len() > 8 {
            return Err(("collectors", "must name 1-8 collector URLs".into()));
        }
        // Only the syntax here: whether plaintext may be used is decided where the collectors
        // are used (`collector_client`), where a --danger-plaintext-collector flag is known too.
        let syntax = Allowance { danger_plaintext: true, ..Allowance::default() };
        if let Some(Err(e)) = self.collectors.iter().map(|c| transport::check(c, syntax)).find(Result::is_err) {
            return Err(("collectors", e.to_string()));
        }
        if self.collector_pins.len() > MAX_PINS {
            return Err(("collector_pins", format!("must hold at most {MAX_PINS} pins")));
        }
        if fingerprint_of(&self.list_key) == "invalid key" {
            return Err(("list_key", "is not a base64 ed25519 public key".into()));
        }
        if let Some(bad) = self.opt_out.categories.iter().find(|c| !is_category(c)) {
            return Err(("opt_out.categories", format!("`{bad}` is not a category (a short lowercase word such as `vpn`)")));
        }
        if self.daemon.max_measurements_per_hour == 0 {
            return Err(("daemon.max_measurements_per_hour", "must be at least 1".into()));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(("data_dir", "must not be empty".into()));
        }
        Ok(())
    }

    /// The file's text (fails only for a path that is not UTF-8, which TOML can't hold).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// Write the file at `path`: atomically, mode 0600, its directory created if need be.
    pub fn save(&self, path: &Path) -> Result<(), ConfigFileError> {
        let shown = path.display().to_string();
        let text = self.to_toml().map_err(|e| ConfigFileError::Invalid { path: shown.clone(), message: e.to_string() })?;
        write_private(path, text.as_bytes()).map_err(|source| ConfigFileError::Io { path: shown, source })
    }
}

impl ProbeConfig {
    /// How collector traffic is built from this file.
    pub fn access(&self) -> CollectorAccess<'_> {
        CollectorAccess {
            ca: &self.ca,
            socks5: self.socks5.as_ref(),
            pins: &self.collector_pins,
            danger_plaintext: self.danger_plaintext_collector,
        }
    }

    /// The HTTP client for this file's collectors, each checked against the transport rule.
    pub fn collector_client(&self, timeout: Duration) -> Result<reqwest::Client, ConfigError> {
        collector_client(&self.collectors, &self.access(), timeout)
    }
}

/// Where the config file is: `$VANTAGE_CONFIG`, else [`SYSTEM_CONFIG`] for root, else
/// `$XDG_CONFIG_HOME/vantage/probe.toml` (or `~/.config/vantage/probe.toml`).
pub fn default_config_path() -> PathBuf {
    if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if running_as_root() {
        return PathBuf::from(SYSTEM_CONFIG);
    }
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("vantage/probe.toml"))
        .unwrap_or_else(|| PathBuf::from("vantage-probe.toml"))
}

/// The data directory a join picks unless told: [`SYSTEM_DATA_DIR`] for root, else the same
/// directory `run` and `flush` use.
pub fn default_data_dir_for(root: bool) -> PathBuf {
    if root { PathBuf::from(SYSTEM_DATA_DIR) } else { crate::cli::default_data_dir() }
}

/// Whether this process runs as root: `/proc/self` belongs to the effective user.
pub fn running_as_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "sha256/VRwbY5IxnpNBYn7rJsEf3EQbZ+pPxFL3zlwlMYIC9AA=";

    fn key() -> String {
        vantage_measurement::wire::target_list::ListKey::from_seed(&[1; 32]).public_base64()
    }

    fn minimal() -> String {
        format!("collectors = [\"https://c1.example\"]\nlist_key = \"{}\"\ndata_dir = \"/var/lib/vantage-probe\"\n", key())
    }

    #[test]
    fn a_minimal_file_gets_every_default() {
        let config = ProbeConfig::parse(&minimal(), "probe.toml").expect("valid");
        assert_eq!(config.collectors, vec!["https://c1.example".to_string()]);
        assert_eq!(config.socks5, None);
        assert!(!config.accepted_risks);
        assert_eq!(config.opt_out, OptOut::default());
        assert_eq!(config.daemon.daily_bytes, DEFAULT_DAILY_BYTES);
        assert_eq!(config.daemon.max_measurements_per_hour, DEFAULT_MAX_MEASUREMENTS_PER_HOUR);
        assert_eq!(config.daemon.on_vpn, OnVpn::Pause);
    }

    #[test]
    fn the_documented_example_parses_and_round_trips() {
        let text = format!(
            "{}socks5 = \"127.0.0.1:9050\"\naccepted_risks = true\nca = [\"/etc/lab-ca.pem\"]\n\
             collector_pins = [\"{PIN}\"]\ndanger_plaintext_collector = true\n\
             [opt_out]\ntests = [\"tor\", \"openvpn\"]\ncategories = [\"vpn\"]\n\
             [daemon]\ndaily_bytes = 50_000_000\nmax_measurements_per_hour = 600\non_vpn = \"tag\"\n",
            minimal()
        );
        let config = ProbeConfig::parse(&text, "probe.toml").expect("valid");
        assert_eq!(config.socks5.as_ref().map(Socks5Proxy::url), Some("socks5h://127.0.0.1:9050".to_string()));
        assert_eq!(config.opt_out.tests, vec![TestKind::Tor, TestKind::Openvpn]);
        assert_eq!(config.opt_out.categories, vec!["vpn".to_string()]);
        assert_eq!(config.daemon.on_vpn, OnVpn::Tag);
        assert_eq!(config.collector_pins, vec![PIN.parse::<SpkiPin>().expect("pin")]);
        assert!(config.danger_plaintext_collector);
        assert_eq!(ProbeConfig::parse(&config.to_toml().expect("toml"), "again").expect("round trip"), config);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let cases = [
            (format!("{}colectors = []\n", minimal()), "unknown field `colectors`"),
            (format!("{}[opt_out]\ntests = [\"ping\"]\n", minimal()), "ping"),
            (format!("{}[opt_out]\ncategories = [\"VPN\"]\n", minimal()), "field `opt_out.categories`"),
            (format!("{}[daemon]\non_vpn = \"ignore\"\n", minimal()), "on_vpn"),
            (format!("{}socks5 = \"localhost\"\n", minimal()), "HOST:PORT"),
            (minimal().replace(&key(), "AAAA"), "field `list_key`"),
            (minimal().replace("https://c1.example", "c1.example"), "field `collectors`"),
            (format!("{}collector_pins = [\"sha256/AAAA\"]\n", minimal()), "is not a key pin"),
            (format!("{}collector_pins = [{}]\n", minimal(), vec![format!("\"{PIN}\""); 17].join(",")), "field `collector_pins`"),
            ("list_key = \"x\"\n".to_string(), "missing field `collectors`"),
        ];
        for (text, needle) in cases {
            let err = ProbeConfig::parse(&text, "/etc/vantage/probe.toml").expect_err(needle).to_string();
            assert!(err.starts_with("config file /etc/vantage/probe.toml"), "{err}");
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn socks5_takes_host_port_only() {
        for good in ["127.0.0.1:9050", "tor.lan:9050", "[::1]:9050"] {
            assert!(good.parse::<Socks5Proxy>().is_ok(), "{good}");
        }
        for bad in ["127.0.0.1", ":9050", "127.0.0.1:0", "::1:9050", "socks5://127.0.0.1:9050", "host:port"] {
            assert!(bad.parse::<Socks5Proxy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn saving_is_private_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("etc/vantage/probe.toml");
        let config = ProbeConfig::parse(&minimal(), "t").expect("valid");
        config.save(&path).expect("save");
        config.save(&path).expect("save over the old file");
        assert_eq!(ProbeConfig::load(&path).expect("load"), config);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).expect("file").permissions().mode() & 0o777, 0o600);
        }
        let names: Vec<_> =
            fs::read_dir(path.parent().expect("dir")).expect("dir").filter_map(Result::ok).map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("probe.toml")]);
    }

    #[test]
    fn a_minimal_file_has_no_pins_and_no_plaintext_and_writes_neither_key() {
        let config = ProbeConfig::parse(&minimal(), "probe.toml").expect("valid");
        assert!(config.collector_pins.is_empty() && !config.danger_plaintext_collector);
        let text = config.to_toml().expect("toml");
        assert!(!text.contains("collector_pins") && !text.contains("danger"), "{text}");
        // A plaintext collector elsewhere parses (the flag may allow it), but gets no client.
        let plain = ProbeConfig::parse(&minimal().replace("https://c1.example", "http://c1.example"), "t").expect("syntax");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let err = plain.collector_client(Duration::from_secs(5)).expect_err("plaintext");
        assert!(err.to_string().contains("danger_plaintext_collector = true"), "{err}");
        let lab = ProbeConfig { danger_plaintext_collector: true, ..plain };
        assert!(lab.collector_client(Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn socks5_proxies_on_this_machine_are_told_apart() {
        for (proxy, local) in [("127.0.0.1:9050", true), ("[::1]:9050", true), ("localhost:9050", true), ("tor.lan:9050", false)]
        {
            assert_eq!(proxy.parse::<Socks5Proxy>().expect("proxy").is_loopback(), local, "{proxy}");
        }
    }

    #[test]
    fn a_missing_file_says_to_join() {
        let err = ProbeConfig::load(Path::new("/nonexistent/probe.toml")).expect_err("missing").to_string();
        assert!(err.contains("vantage-probe join"), "{err}");
    }
}
