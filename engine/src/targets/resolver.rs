//! Encrypted-DNS resolvers in the targets file: the `[[resolver]]` table, the per-target
//! `resolver` parameters it expands into, and the built-in list of public resolvers.
//!
//! ```toml
//! builtin_resolvers = true              # optional: also measure the built-in list below
//!
//! [[resolver]]
//! name = "cloudflare"                   # target names become `cloudflare-dot-1.1.1.1`, …
//! addresses = ["1.1.1.1", "2606:4700:4700::1111"]
//! dot_name = "one.one.one.one"          # optional: the DoT SNI (no `dot` test without it)
//! doh_name = "cloudflare-dns.com"       # optional: the DoH SNI and Host (no `doh` test without it)
//! doh_path = "/dns-query"               # optional, default /dns-query
//! query = "example.org"                 # optional: the harmless name asked for (A record)
//! trials = 1                            # optional, as for [[target]]
//! ```
//!
//! One `[[resolver]]` becomes one target per address and protocol: `dot` on port 853 with
//! `dot_name` as SNI, `doh` on port 443 with `doh_name`, each at a fixed address (every published
//! address of a resolver is measured on its own: censors block some and miss others). The same
//! can be written by hand as a `[[target]]` with `tests = ["dot"]` (or `["doh"]`), a `port`, and
//! an optional `resolver = { doh_path = "…", query = "…" }` table.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use vantage_measurement::TestKind;

use super::{TargetSpec, TargetsError};
use crate::runner::edns::{DEFAULT_DOH_PATH, DEFAULT_QUERY, DOH_PORT, DOT_PORT};

/// The category of every target a `[[resolver]]` expands into (volunteers can opt out of it).
pub const CATEGORY: &str = "encrypted-dns";
/// The longest DoH path accepted.
pub const MAX_PATH_LEN: usize = 128;

/// What a `dot` or `doh` test asks besides the endpoint and SNI.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverParams {
    /// The DoH request path.
    #[serde(default = "default_path")]
    pub doh_path: String,
    /// The name asked for.
    #[serde(default = "default_query")]
    pub query: String,
}

impl Default for ResolverParams {
    fn default() -> Self {
        ResolverParams { doh_path: default_path(), query: default_query() }
    }
}

impl ResolverParams {
    /// Why these parameters can't be sent (to a resolver, or to the test helper).
    pub fn check(&self) -> Result<(), &'static str> {
        let path_ok = self.doh_path.starts_with('/')
            && self.doh_path.len() <= MAX_PATH_LEN
            && self.doh_path.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
        if !path_ok {
            return Err("resolver doh_path must start with `/` and be at most 128 printable ASCII characters");
        }
        if !vantage_measurement::is_plausible_name(&self.query) || self.query.contains(' ') {
            return Err("resolver query must be a DNS name");
        }
        Ok(())
    }
}

fn default_path() -> String {
    DEFAULT_DOH_PATH.to_string()
}

fn default_query() -> String {
    DEFAULT_QUERY.to_string()
}

/// One `[[resolver]]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverEntry {
    /// The resolver's name (`cloudflare`): the prefix of its targets' names.
    pub name: String,
    /// Every address to measure.
    pub addresses: Vec<IpAddr>,
    /// The DoT server name (SNI).
    #[serde(default)]
    pub dot_name: Option<String>,
    /// The DoH server name (SNI and `Host`).
    #[serde(default)]
    pub doh_name: Option<String>,
    /// The DoH path.
    #[serde(default = "default_path")]
    pub doh_path: String,
    /// The name asked for.
    #[serde(default = "default_query")]
    pub query: String,
    /// Trials per measurement, as for `[[target]]`.
    #[serde(default)]
    pub trials: Option<u32>,
}

impl ResolverEntry {
    /// The targets this resolver stands for: per address, `dot` then `doh`. They pass through the
    /// same deserialisation (and then the same checks) as a hand-written `[[target]]`.
    pub fn expand(&self, origin: &str) -> Result<Vec<TargetSpec>, TargetsError> {
        let invalid = |message: String| TargetsError::Invalid { path: origin.to_string(), message };
        if self.addresses.is_empty() {
            return Err(invalid(format!("resolver `{}` lists no addresses", self.name)));
        }
        if self.dot_name.is_none() && self.doh_name.is_none() {
            return Err(invalid(format!("resolver `{}` needs `dot_name`, `doh_name` or both", self.name)));
        }
        let mut out = Vec::new();
        for address in &self.addresses {
            let protocols = [(TestKind::Dot, &self.dot_name, DOT_PORT), (TestKind::Doh, &self.doh_name, DOH_PORT)];
            for (test, sni, port) in protocols {
                let Some(sni) = sni else { continue };
                let mut table = toml::Table::new();
                table.insert("name".into(), format!("{}-{}-{address}", self.name, test.as_str()).into());
                table.insert("domain".into(), sni.clone().into());
                table.insert("address".into(), address.to_string().into());
                table.insert("port".into(), i64::from(port).into());
                table.insert("tests".into(), toml::Value::Array(vec![test.as_str().into()]));
                table.insert("category".into(), CATEGORY.into());
                if let Some(trials) = self.trials {
                    table.insert("trials".into(), i64::from(trials).into());
                }
                let mut params = toml::Table::new();
                params.insert("doh_path".into(), self.doh_path.clone().into());
                params.insert("query".into(), self.query.clone().into());
                table.insert("resolver".into(), params.into());
                let target = TargetSpec::deserialize(toml::Value::Table(table))
                    .map_err(|e| invalid(format!("resolver `{}`: {e}", self.name)))?;
                out.push(target);
            }
        }
        Ok(out)
    }
}

/// A target's resolver parameters are sound, and only a `dot` or `doh` target has them.
pub(super) fn check(t: &TargetSpec) -> Result<(), &'static str> {
    let encrypted = t.tests.iter().any(|x| matches!(x, TestKind::Dot | TestKind::Doh));
    if t.resolver.is_some() && !encrypted {
        return Err("`resolver` is set but neither dot nor doh is listed");
    }
    if t.tests.contains(&TestKind::Dot) && t.tests.contains(&TestKind::Doh) {
        return Err("dot and doh use different ports: list them as two targets (or use [[resolver]])");
    }
    t.resolver.as_deref().map_or(Ok(()), ResolverParams::check)
}

/// The built-in list of public encrypted resolvers: data for volunteers who turn it on
/// (`builtin_resolvers = true` in a targets file, or `vantage-probe run --encrypted-dns`). No test
/// ever contacts these addresses; tests point at lab addresses.
pub fn builtin() -> Vec<TargetSpec> {
    // The text is ours and tested below; an error here is a bug caught by that test.
    super::parse(BUILTIN, "built-in resolvers").unwrap_or_default()
}

/// Every published IPv4 and IPv6 address of each resolver's default (unfiltered or standard)
/// service, with its DoT and DoH names. Sources, as published by each operator:
/// - Cloudflare: <https://developers.cloudflare.com/1.1.1.1/ip-addresses/> (1.1.1.1, 1.0.0.1,
///   2606:4700:4700::1111, ::1001; DoT `one.one.one.one`, DoH
///   `https://cloudflare-dns.com/dns-query`, <https://developers.cloudflare.com/1.1.1.1/encryption/>).
/// - Google: <https://developers.google.com/speed/public-dns/docs/using> (8.8.8.8, 8.8.4.4,
///   2001:4860:4860::8888, ::8844) and <https://developers.google.com/speed/public-dns/docs/secure-transports>
///   (DoT and DoH at `dns.google`, path `/dns-query`).
/// - Quad9: <https://www.quad9.net/service/service-addresses-and-features/> (recommended, malware
///   blocking with DNSSEC: 9.9.9.9, 149.112.112.112, 2620:fe::fe, 2620:fe::9; DoT and DoH at
///   `dns.quad9.net`, `https://dns.quad9.net/dns-query`). Its DoH requires HTTP/2 since
///   15 December 2025 (<https://quad9.net/news/blog/doh-http-1-1-retirement>) and our DoH client
///   speaks HTTP/1.1, so Quad9 is measured over DoT only: a DoH target would fail for the helper
///   too and say nothing about the network.
/// - AdGuard: <https://adguard-dns.io/kb/general/dns-providers/> (default servers: 94.140.14.14,
///   94.140.15.15, 2a10:50c0::ad1:ff, 2a10:50c0::ad2:ff; DoT `dns.adguard-dns.com`, DoH
///   `https://dns.adguard-dns.com/dns-query`).
const BUILTIN: &str = r#"
[[resolver]]
name = "cloudflare"
addresses = ["1.1.1.1", "1.0.0.1", "2606:4700:4700::1111", "2606:4700:4700::1001"]
dot_name = "one.one.one.one"
doh_name = "cloudflare-dns.com"

[[resolver]]
name = "google"
addresses = ["8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844"]
dot_name = "dns.google"
doh_name = "dns.google"

[[resolver]]
name = "quad9"
addresses = ["9.9.9.9", "149.112.112.112", "2620:fe::fe", "2620:fe::9"]
dot_name = "dns.quad9.net"
# doh_name = "dns.quad9.net": HTTP/2 only (see above).

[[resolver]]
name = "adguard"
addresses = ["94.140.14.14", "94.140.15.15", "2a10:50c0::ad1:ff", "2a10:50c0::ad2:ff"]
dot_name = "dns.adguard-dns.com"
doh_name = "dns.adguard-dns.com"
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::parse;

    #[test]
    fn a_resolver_expands_to_one_target_per_address_and_protocol() {
        let text = "[[resolver]]\nname='r'\naddresses=['192.0.2.53','2001:db8::53']\ndot_name='dot.test'\n\
                    doh_name='doh.test'\ndoh_path='/q'\n";
        let targets = parse(text, "t").expect("valid");
        let summary: Vec<(String, String, u16, Vec<TestKind>)> =
            targets.iter().map(|t| (t.name.clone(), t.domain.clone(), t.port, t.tests.clone())).collect();
        assert_eq!(
            summary,
            [
                ("r-dot-192.0.2.53".to_string(), "dot.test".to_string(), 853, vec![TestKind::Dot]),
                ("r-doh-192.0.2.53".to_string(), "doh.test".to_string(), 443, vec![TestKind::Doh]),
                ("r-dot-2001:db8::53".to_string(), "dot.test".to_string(), 853, vec![TestKind::Dot]),
                ("r-doh-2001:db8::53".to_string(), "doh.test".to_string(), 443, vec![TestKind::Doh]),
            ]
        );
        assert!(targets.iter().all(|t| t.category.as_deref() == Some(CATEGORY) && t.address.is_some()));
        assert_eq!(targets[1].resolver.as_deref().map(|r| r.doh_path.as_str()), Some("/q"));
    }

    #[test]
    fn a_hand_written_target_gets_the_defaults() {
        let t = &parse("[[target]]\nname='a'\ndomain='dns.test'\nport=853\ntests=['dot']\n", "t").expect("valid")[0];
        assert_eq!(t.resolver, None);
        assert_eq!(ResolverParams::default().doh_path, "/dns-query");
    }

    #[test]
    fn nonsense_is_refused_with_the_reason() {
        let cases = [
            ("[[resolver]]\nname='r'\naddresses=[]\ndot_name='d.test'\n", "no addresses"),
            ("[[resolver]]\nname='r'\naddresses=['192.0.2.1']\n", "needs `dot_name`"),
            ("[[resolver]]\nname='r'\naddresses=['192.0.2.1']\ndoh_name='d.test'\ndoh_path='q'\n", "doh_path"),
            ("[[resolver]]\nname='r'\naddresses=['192.0.2.1']\ndoh_name='d.test'\nquery='a b'\n", "query"),
            ("[[resolver]]\nname='r'\naddresses=['x']\ndoh_name='d.test'\n", "address"),
            ("[[target]]\nname='a'\ndomain='d.test'\ntests=['dot','doh']\n", "different ports"),
            ("[[target]]\nname='a'\ndomain='d.test'\ntests=['tls']\nresolver={query='x.test'}\n", "neither dot nor doh"),
        ];
        for (text, needle) in cases {
            let err = parse(text, "t.toml").expect_err(needle).to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn the_builtin_list_has_every_address_of_four_resolvers() {
        let targets = builtin();
        for (name, doh_targets) in [("cloudflare", 4), ("google", 4), ("quad9", 0), ("adguard", 4)] {
            let dot = targets.iter().filter(|t| t.name.starts_with(&format!("{name}-dot-"))).count();
            let doh = targets.iter().filter(|t| t.name.starts_with(&format!("{name}-doh-"))).count();
            assert_eq!((dot, doh), (4, doh_targets), "{name}: two IPv4 and two IPv6 addresses, DoT and DoH each");
        }
        let v6 = targets.iter().filter(|t| t.address.is_some_and(|a| a.is_ipv6())).count();
        assert_eq!(v6, targets.len() / 2);
    }

    #[test]
    fn a_targets_file_can_switch_the_builtin_list_on() {
        let text = "builtin_resolvers = true\n[[target]]\nname='a'\ndomain='a.example'\n";
        let targets = parse(text, "t").expect("valid");
        assert_eq!(targets.len(), 1 + builtin().len());
        assert_eq!(parse("[[target]]\nname='a'\ndomain='a.example'\n", "t").expect("valid").len(), 1);
    }
}
