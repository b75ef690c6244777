//! The targets file: what to measure, and how.
//!
//! TOML, one `[[target]]` table per endpoint:
//!
//! ```toml
//! [[target]]
//! name = "wikipedia"               # the name on the published list (a metric label upstream)
//! domain = "www.wikipedia.org"     # resolved by `dns`, sent as SNI by `tls` and `quic`
//! address = "185.15.59.224"        # optional: skip resolution and use this address
//! port = 443                       # optional, default 443
//! tests = ["dns", "tcp", "tls", "quic"]   # optional, default all four
//! control_sni = "example.org"      # optional: the harmless SNI paired with `domain`
//! control_port = 8443              # optional: port for the control SNI (default: `port`)
//! trials = 3                       # optional: repeat tcp/tls/quic, 1-8 (default 1)
//! udp_echo_port = 7                # optional: UDP echo on `address`, a baseline for quic
//! category = "news"                # optional: a short lowercase word volunteers can opt out of
//! families = ["ipv4"]              # optional: measure a resolved name on these families only
//! ```
//!
//! VPN targets (`openvpn`, `wireguard`, `ikev2`, `tor`) need an `address` or a `domain` to
//! resolve, a `port`, and what their protocol needs (see docs/vpn.md):
//!
//! ```toml
//! [[target]]
//! name = "ref-openvpn-udp"
//! domain = "vpn.example.org"
//! address = "203.0.113.40"
//! port = 1194
//! tests = ["openvpn"]
//! transport = "udp"                # openvpn only: udp (default) or tcp
//! echo_address = "203.0.113.41"    # optional: UDP echo + TCP echo on the same port numbers
//! openvpn = { mode = "tls-crypt", key = "-----BEGIN OpenVPN Static key V1-----\n…" }
//!
//! [[target]]
//! name = "ref-wireguard"
//! domain = "vpn.example.org"
//! address = "203.0.113.40"
//! port = 51820
//! tests = ["wireguard"]
//! wireguard = { server_public_key = "base64…", private_key = "base64…",
//!               address = "203.0.113.130", server_address = "203.0.113.129",
//!               helper_private_key = "base64…" }
//! ```
//!
//! A `throttle` target names a throughput reference endpoint's `address` and its pinned
//! certificates in a `throughput` table (`runner::throttle::reference`, docs/throttling.md).
//!
//! Keys are parsed here, so a bad key fails the load, not the measurement. They are held in
//! types whose `Debug` is redacted and never enter a measurement or a log line.
//!
//! `control_port` is the defence against residual censorship: a censor that blocks the
//! (client, server, port) tuple for minutes after a trigger can't touch a control on another
//! port of the same server.
//!
//! Unknown keys are an error, so a typo never silently changes what is measured.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use vantage_measurement::{TestKind, Transport};

use crate::runner::vpn::codec::openvpn::{Digest, KeyDirection, StaticKey, Wrap};
use crate::runner::vpn::codec::wireguard::{PeerKeys, Secret};
use crate::runner::vpn::wireguard::Tunnel;

pub mod resolver;
pub use resolver::ResolverParams;

/// The control SNI used when a target names none: a name no censor has reason to block.
pub const DEFAULT_CONTROL_SNI: &str = "example.org";
/// The port used when a target names none.
pub const DEFAULT_PORT: u16 = 443;

/// One endpoint to measure.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Name on the published list.
    pub name: String,
    /// Domain to resolve and to send as SNI.
    pub domain: String,
    /// Fixed address, instead of resolving `domain`.
    #[serde(default)]
    pub address: Option<IpAddr>,
    /// Port for tcp, tls and quic.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Tests to run.
    #[serde(default = "all_tests")]
    pub tests: Vec<TestKind>,
    /// The harmless SNI paired with `domain`.
    #[serde(default = "default_control_sni")]
    pub control_sni: String,
    /// Port for the control SNI, when the server offers another one.
    #[serde(default)]
    pub control_port: Option<u16>,
    /// How many times tcp, tls and quic are repeated (censors that block only some flows).
    #[serde(default = "one")]
    pub trials: u32,
    /// A UDP echo service on the target's address: the baseline that tells QUIC filtering
    /// from all-UDP blocking.
    #[serde(default)]
    pub udp_echo_port: Option<u16>,
    /// VPN tests: `udp` or `tcp` (OpenVPN; the others have one transport each).
    #[serde(default)]
    pub transport: Option<Transport>,
    /// VPN tests: an address running a UDP and a TCP echo on the same port numbers as the VPN
    /// endpoint: the random-bytes control goes there.
    #[serde(default)]
    pub echo_address: Option<IpAddr>,
    /// OpenVPN parameters, checked and parsed when the file is read. Boxed, as is `wireguard`:
    /// the keys are 640 bytes that most targets don't have, and a list holds thousands of targets.
    #[serde(default)]
    pub openvpn: Option<Box<OpenvpnParams>>,
    /// WireGuard parameters, checked and parsed when the file is read.
    #[serde(default)]
    pub wireguard: Option<Box<WireguardParams>>,
    /// obfs4: the bridge line, parsed when the file is read (see `runner::obfs4::bridge`).
    #[serde(default)]
    pub obfs4: Option<Box<crate::runner::obfs4::bridge::Obfs4Table>>,
    /// What kind of service this is (`vpn`, `news`, `circumvention`, …): a volunteer can opt out
    /// of a whole category on their probe, whatever a published list says.
    #[serde(default)]
    pub category: Option<String>,
    /// A throughput reference endpoint at `address` (the `throttle` test): pins and body size.
    #[serde(default)]
    pub throughput: Option<crate::runner::throttle::reference::Throughput>,
    /// The address families a resolved name is measured on (`["ipv4"]`, `["ipv6"]`); empty: every
    /// family the name has, each measured separately.
    #[serde(default)]
    pub families: Vec<vantage_measurement::Family>,
    /// `dot`/`doh` parameters (DoH path, the name asked for); see [`resolver`].
    #[serde(default)]
    pub resolver: Option<Box<ResolverParams>>,
}

/// Why a target's VPN parameters can't be used. Never carries a key's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// tls-auth and tls-crypt need the endpoint's static key.
    #[error("tls-auth and tls-crypt need `key`")]
    MissingStaticKey,
    /// A plain endpoint has no static key.
    #[error("a plain endpoint takes no `key`")]
    KeyOnPlain,
    /// The static key file's text does not parse.
    #[error("the static key: {0}")]
    StaticKey(String),
    /// `key_direction` is neither 0 nor 1.
    #[error("key_direction must be 0 or 1, not {0}")]
    KeyDirection(u8),
    /// `auth` names a digest OpenVPN's tls-auth doesn't use here.
    #[error("auth `{0}` is not SHA1, SHA256 or SHA512")]
    Digest(String),
    /// A WireGuard key is not base64.
    #[error("{0} is not base64")]
    NotBase64(&'static str),
    /// A WireGuard key does not decode to 32 bytes.
    #[error("{0} is not a 32-byte key")]
    KeyLength(&'static str),
    /// The tunnel addresses come as a pair.
    #[error("wireguard `address` and `server_address` go together")]
    TunnelHalf,
    /// An obfs4 cert that does not decode.
    #[error("the obfs4 cert: {0}")]
    Obfs4Cert(crate::runner::obfs4::codec::CertError),
}

/// Text that is a key: `Debug` shows `redacted`, never the text.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct KeyText(pub String);

impl std::fmt::Debug for KeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyText(redacted)")
    }
}

/// How an OpenVPN endpoint protects its control channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpenvpnMode {
    /// No static key.
    #[default]
    Plain,
    /// `--tls-auth`.
    TlsAuth,
    /// `--tls-crypt`.
    TlsCrypt,
}

/// OpenVPN parameters of a target. The static key is the endpoint's, shared by all its clients
/// and published with it; it is sent to the test helper (which needs it to check the endpoint)
/// and nowhere else.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpenvpnSpec {
    /// `plain`, `tls-auth` or `tls-crypt`.
    #[serde(default)]
    pub mode: OpenvpnMode,
    /// The static key file's text (tls-auth, tls-crypt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyText>,
    /// The client's `key-direction` for tls-auth: 0, 1, or absent (bidirectional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_direction: Option<u8>,
    /// The tls-auth HMAC digest (`--auth`): `SHA1` (default), `SHA256`, `SHA512`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
}

/// A target's OpenVPN parameters: the file's text (sent to the test helper as is) and the wrap
/// the codec uses, parsed once from it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "OpenvpnSpec")]
pub struct OpenvpnParams {
    /// As written, for the helper's control request.
    pub spec: OpenvpnSpec,
    /// What the codec needs.
    pub wrap: Wrap,
}

impl TryFrom<OpenvpnSpec> for OpenvpnParams {
    type Error = ParamsError;

    fn try_from(spec: OpenvpnSpec) -> Result<Self, ParamsError> {
        let key = || -> Result<StaticKey, ParamsError> {
            let text = spec.key.as_ref().ok_or(ParamsError::MissingStaticKey)?;
            StaticKey::parse(&text.0).map_err(|e| ParamsError::StaticKey(e.to_string()))
        };
        let wrap = match spec.mode {
            OpenvpnMode::Plain if spec.key.is_some() => return Err(ParamsError::KeyOnPlain),
            OpenvpnMode::Plain => Wrap::Plain,
            OpenvpnMode::TlsCrypt => Wrap::TlsCrypt { key: key()? },
            OpenvpnMode::TlsAuth => {
                let direction = match spec.key_direction {
                    None => KeyDirection::Bidirectional,
                    Some(0) => KeyDirection::Normal,
                    Some(1) => KeyDirection::Inverse,
                    Some(d) => return Err(ParamsError::KeyDirection(d)),
                };
                let digest = match spec.auth.as_deref().map(str::to_ascii_uppercase).as_deref() {
                    None | Some("SHA1") => Digest::Sha1,
                    Some("SHA256") => Digest::Sha256,
                    Some("SHA512") => Digest::Sha512,
                    Some(other) => return Err(ParamsError::Digest(other.to_string())),
                };
                Wrap::TlsAuth { key: key()?, direction, digest }
            }
        };
        Ok(OpenvpnParams { spec, wrap })
    }
}

/// WireGuard parameters of a target (keys in base64, as `wg` prints them).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireguardSpec {
    /// The endpoint's public key.
    pub server_public_key: String,
    /// The probe peer's private key. Never leaves the probe.
    pub private_key: KeyText,
    /// The peer's preshared key, if the endpoint sets one.
    #[serde(default)]
    pub preshared_key: Option<KeyText>,
    /// The probe's tunnel address (the endpoint's AllowedIPs for this peer): enables the data phase.
    #[serde(default)]
    pub address: Option<std::net::Ipv4Addr>,
    /// The endpoint's tunnel address, which answers ICMP echo.
    #[serde(default)]
    pub server_address: Option<std::net::Ipv4Addr>,
    /// A second peer on the endpoint, published for the test helper's handshake: the helper
    /// never gets `private_key`.
    #[serde(default)]
    pub helper_private_key: Option<KeyText>,
}

/// A target's WireGuard parameters: the file's text (the helper peer's part is sent to the test
/// helper) and the keys and tunnel the runner uses, parsed once from it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "WireguardSpec")]
pub struct WireguardParams {
    /// As written.
    pub spec: WireguardSpec,
    /// The probe peer's keys.
    pub keys: PeerKeys,
    /// The helper peer's keys, when the endpoint publishes one.
    pub helper_keys: Option<PeerKeys>,
    /// Tunnel addresses for the data phase, when given.
    pub tunnel: Option<Tunnel>,
}

impl TryFrom<WireguardSpec> for WireguardParams {
    type Error = ParamsError;

    fn try_from(spec: WireguardSpec) -> Result<Self, ParamsError> {
        let keys = peer_keys(&spec.server_public_key, &spec.private_key, spec.preshared_key.as_ref())?;
        let helper_keys = spec.helper_private_key.as_ref().map(|k| peer_keys(&spec.server_public_key, k, None)).transpose()?;
        let tunnel = match (spec.address, spec.server_address) {
            (Some(address), Some(server_address)) => Some(Tunnel { address, server_address }),
            (None, None) => None,
            _ => return Err(ParamsError::TunnelHalf),
        };
        Ok(WireguardParams { spec, keys, helper_keys, tunnel })
    }
}

/// The keys of one peer of a WireGuard endpoint. The helper peer has no preshared key.
pub fn peer_keys(server_public: &str, private: &KeyText, preshared: Option<&KeyText>) -> Result<PeerKeys, ParamsError> {
    Ok(PeerKeys {
        private: Secret(decode_key("private_key", &private.0)?),
        server_public: decode_key("server_public_key", server_public)?,
        preshared: Secret(match preshared {
            Some(k) => decode_key("preshared_key", &k.0)?,
            None => [0; 32],
        }),
    })
}

/// A 32-byte key in base64. The error names the field, never the value.
pub fn decode_key(field: &'static str, text: &str) -> Result<[u8; 32], ParamsError> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| ParamsError::NotBase64(field))?;
    bytes.try_into().map_err(|_| ParamsError::KeyLength(field))
}

/// The longest category name.
pub const MAX_CATEGORY_LEN: usize = 24;

/// A category is a short lowercase word (`vpn`, `social-media`): letters, digits and `-`,
/// starting with a letter, at most [`MAX_CATEGORY_LEN`] characters. The same rule checks a
/// volunteer's opt-outs, so a category they name can match one a list uses.
pub fn is_category(word: &str) -> bool {
    word.len() <= MAX_CATEGORY_LEN
        && word.starts_with(|c: char| c.is_ascii_lowercase())
        && word.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The most trials a target may ask for (each adds a handshake pair to the measurement).
pub const MAX_TRIALS: u32 = 8;

fn one() -> u32 {
    1
}

fn default_port() -> u16 {
    DEFAULT_PORT
}

/// The tests a target runs unless it lists its own: the four web tests. VPN tests need
/// endpoint parameters, so a target names them explicitly.
pub const DEFAULT_TESTS: &[TestKind] = &[TestKind::Dns, TestKind::Tcp, TestKind::Tls, TestKind::Quic];

fn all_tests() -> Vec<TestKind> {
    DEFAULT_TESTS.to_vec()
}

fn default_control_sni() -> String {
    DEFAULT_CONTROL_SNI.to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsFile {
    #[serde(default)]
    target: Vec<TargetSpec>,
    /// Encrypted-DNS resolvers, each expanded into `dot`/`doh` targets ([`resolver`]).
    #[serde(default)]
    resolver: Vec<resolver::ResolverEntry>,
    /// Also measure [`resolver::builtin`].
    #[serde(default)]
    builtin_resolvers: bool,
}

/// Why a targets file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    /// The file could not be read.
    #[error("cannot read targets file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the documented shape.
    #[error("targets file {path} is invalid: {message}")]
    Invalid {
        /// The path.
        path: String,
        /// What is wrong and where.
        message: String,
    },
}

/// Parse targets from TOML text; `origin` names the source in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<TargetSpec>, TargetsError> {
    let invalid = |message: String| TargetsError::Invalid { path: origin.to_string(), message };
    let mut file: TargetsFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    for entry in &file.resolver {
        file.target.extend(entry.expand(origin)?);
    }
    if file.builtin_resolvers {
        file.target.extend(resolver::builtin());
    }
    let mut names = HashSet::new();
    for t in &file.target {
        if !names.insert(t.name.as_str()) {
            return Err(invalid(format!("target name `{}` appears twice", t.name)));
        }
        for (field, value) in [("name", &t.name), ("domain", &t.domain), ("control_sni", &t.control_sni)] {
            if !vantage_measurement::is_plausible_name(value) {
                let most = vantage_measurement::validate::MAX_NAME_LEN;
                return Err(invalid(format!("target `{}`: {field} must be 1-{most} printable ASCII characters", t.name)));
            }
        }
        if t.tests.is_empty() {
            return Err(invalid(format!("target `{}` lists no tests", t.name)));
        }
        if t.port == 0 || t.control_port == Some(0) || t.udp_echo_port == Some(0) {
            return Err(invalid(format!("target `{}`: port 0 is not a port", t.name)));
        }
        if !(1..=MAX_TRIALS).contains(&t.trials) {
            return Err(invalid(format!("target `{}`: trials must be 1-{MAX_TRIALS}", t.name)));
        }
        if let Some(category) = t.category.as_deref().filter(|c| !is_category(c)) {
            return Err(invalid(format!(
                "target `{}`: category `{category}` must be a short lowercase word (a-z, 0-9, `-`; at most {MAX_CATEGORY_LEN})",
                t.name
            )));
        }
        if let Some(ip) =
            t.address.filter(|ip| !t.families.is_empty() && !t.families.contains(&vantage_measurement::Family::of(*ip)))
        {
            return Err(invalid(format!("target `{}`: its address {ip} is of none of its `families`", t.name)));
        }
        check_vpn(t).map_err(|reason| invalid(format!("target `{}`: {reason}", t.name)))?;
        crate::runner::obfs4::bridge::check(t).map_err(|reason| invalid(format!("target `{}`: {reason}", t.name)))?;
        crate::runner::throttle::reference::check(t).map_err(|reason| invalid(format!("target `{}`: {reason}", t.name)))?;
        resolver::check(t).map_err(|reason| invalid(format!("target `{}`: {reason}", t.name)))?;
    }
    if file.target.is_empty() {
        return Err(invalid("no [[target]] or [[resolver]] entries".into()));
    }
    let mut targets = file.target;
    targets.iter_mut().for_each(crate::runner::obfs4::bridge::settle);
    Ok(targets)
}

/// The VPN tables are present exactly when a VPN test needs them (their keys were parsed with
/// the file), and each test runs over its transport.
fn check_vpn(t: &TargetSpec) -> Result<(), &'static str> {
    let runs = |test| t.tests.contains(&test);
    match (t.openvpn.is_some(), runs(TestKind::Openvpn)) {
        (false, true) => return Err("the openvpn test needs an `openvpn` table"),
        (true, false) => return Err("`openvpn` is set but the openvpn test is not listed"),
        _ => {}
    }
    match (t.wireguard.is_some(), runs(TestKind::Wireguard)) {
        (false, true) => return Err("the wireguard test needs a `wireguard` table"),
        (true, false) => return Err("`wireguard` is set but the wireguard test is not listed"),
        _ => {}
    }
    let tcp_only = [TestKind::Tor, TestKind::Throttle];
    let udp_only = [TestKind::Wireguard, TestKind::Ikev2];
    match t.transport {
        Some(Transport::Udp) if t.tests.iter().any(|x| tcp_only.contains(x)) => Err("tor and throttle run over tcp only"),
        Some(Transport::Tcp) if t.tests.iter().any(|x| udp_only.contains(x)) => Err("wireguard and ikev2 run over udp only"),
        _ => Ok(()),
    }
}

/// Load targets from a file.
pub fn load(path: &Path) -> Result<Vec<TargetSpec>, TargetsError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TargetsError::Read { path: origin.clone(), source })?;
    parse(&text, &origin)
}

/// The built-in list: services commonly blocked somewhere, reachable everywhere else.
pub fn builtin() -> Vec<TargetSpec> {
    // The text is ours and tested below; an error here is a bug caught by that test.
    parse(BUILTIN, "built-in targets").unwrap_or_default()
}

const BUILTIN: &str = r#"
[[target]]
name = "wikipedia"
domain = "www.wikipedia.org"
category = "reference"

[[target]]
name = "torproject"
domain = "www.torproject.org"
tests = ["dns", "tcp", "tls"]
category = "circumvention"

[[target]]
name = "signal"
domain = "signal.org"
tests = ["dns", "tcp", "tls"]
category = "messaging"

[[target]]
name = "telegram"
domain = "telegram.org"
tests = ["dns", "tcp", "tls"]
category = "messaging"

[[target]]
name = "youtube"
domain = "www.youtube.com"
category = "video"

[[target]]
name = "cloudflare-dns"
domain = "cloudflare-dns.com"
category = "circumvention"
"#;

#[cfg(test)]
mod tests;
