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
//! ```
//!
//! `control_port` is the defence against residual censorship: a censor that blocks the
//! (client, server, port) tuple for minutes after a trigger can't touch a control on another
//! port of the same server.
//!
//! Unknown keys are an error, so a typo never silently changes what is measured.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;
use vantage_measurement::TestKind;

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
}

/// The most trials a target may ask for (each adds a handshake pair to the measurement).
pub const MAX_TRIALS: u32 = 8;

fn one() -> u32 {
    1
}

fn default_port() -> u16 {
    DEFAULT_PORT
}

fn all_tests() -> Vec<TestKind> {
    TestKind::ALL.to_vec()
}

fn default_control_sni() -> String {
    DEFAULT_CONTROL_SNI.to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsFile {
    target: Vec<TargetSpec>,
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
    let file: TargetsFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let mut names = HashSet::new();
    for t in &file.target {
        if !names.insert(t.name.as_str()) {
            return Err(invalid(format!("target name `{}` appears twice", t.name)));
        }
        for (field, value) in [("name", &t.name), ("domain", &t.domain), ("control_sni", &t.control_sni)] {
            if value.is_empty() || value.len() > 253 || !value.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(format!("target `{}`: {field} must be 1-253 printable ASCII characters", t.name)));
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
    }
    if file.target.is_empty() {
        return Err(invalid("no [[target]] entries".into()));
    }
    Ok(file.target)
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

[[target]]
name = "torproject"
domain = "www.torproject.org"
tests = ["dns", "tcp", "tls"]

[[target]]
name = "signal"
domain = "signal.org"
tests = ["dns", "tcp", "tls"]

[[target]]
name = "telegram"
domain = "telegram.org"
tests = ["dns", "tcp", "tls"]

[[target]]
name = "youtube"
domain = "www.youtube.com"

[[target]]
name = "cloudflare-dns"
domain = "cloudflare-dns.com"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_list_parses() {
        let targets = builtin();
        assert!(targets.len() >= 5);
        assert!(targets.iter().all(|t| t.port == 443 && t.control_sni == DEFAULT_CONTROL_SNI));
    }

    #[test]
    fn defaults_fill_in() {
        let t = &parse("[[target]]\nname='a'\ndomain='a.example'\n", "t").expect("valid")[0];
        assert_eq!(t.tests, TestKind::ALL.to_vec());
        assert_eq!(t.address, None);
    }

    #[test]
    fn typos_and_nonsense_are_refused_with_the_reason() {
        let cases = [
            ("[[target]]\nname='a'\ndomian='a.example'\n", "unknown field"),
            ("[[target]]\nname='a'\ndomain='a.example'\ntests=['ping']\n", "unknown variant"),
            ("[[target]]\nname='a'\ndomain='a.example'\n[[target]]\nname='a'\ndomain='b.example'\n", "twice"),
            ("[[target]]\nname='a'\ndomain='has space'\n", "printable"),
            ("[[target]]\nname='a'\ndomain='a.example'\naddress='not-ip'\n", "address"),
            ("[[target]]\nname='a'\ndomain='a.example'\nport=70000\n", "port"),
            ("[[target]]\nname='a'\ndomain='a.example'\ntrials=9\n", "trials must be 1-8"),
            ("[[target]]\nname='a'\ndomain='a.example'\ncontrol_port=0\n", "port 0"),
            ("target = []\n", "no [[target]]"),
        ];
        for (text, needle) in cases {
            let err = parse(text, "t.toml").expect_err(needle).to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
            assert!(err.contains("t.toml"));
        }
    }
}
