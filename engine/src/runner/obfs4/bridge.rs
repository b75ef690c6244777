//! The targets file's `obfs4` table: a Tor bridge line, parsed when the file is loaded.
//!
//! ```toml
//! [[target]]
//! name = "ref-obfs4"
//! domain = "bridge.vantage.example"   # a label only: the bridge line's address is dialled
//! tests = ["obfs4"]
//! echo_address = "203.0.113.41"       # TCP echo on the bridge's port number: the control
//! obfs4 = { bridge = "obfs4 203.0.113.40:443 0123…CDEF cert=… iat-mode=0" }
//! ```
//!
//! The leading `obfs4` and the fingerprint are optional, as in Tor's `Bridge` lines. A bad
//! cert fails the load; the cert itself is never printed (`Debug` says `redacted`).

use std::net::SocketAddr;

use serde::Deserialize;
use vantage_measurement::{TestKind, Transport};

use super::codec::{BridgeCert, CertError};
use crate::targets::TargetSpec;

/// The `obfs4` table as written.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Obfs4Spec {
    /// The bridge line.
    pub bridge: String,
}

/// The `obfs4` table once read: the parsed bridge line, or why it was refused. The refusal is
/// reported by [`check`] in its own words: a TOML error would quote the line, cert and all.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "Obfs4Spec")]
pub struct Obfs4Table(Result<Obfs4Params, BridgeError>);

impl Obfs4Table {
    /// The bridge, if its line parsed (always, in a loaded targets file).
    pub fn params(&self) -> Option<&Obfs4Params> {
        self.0.as_ref().ok()
    }
}

impl From<Obfs4Spec> for Obfs4Table {
    fn from(spec: Obfs4Spec) -> Self {
        Obfs4Table(parse_bridge_line(&spec.bridge))
    }
}

impl std::fmt::Debug for Obfs4Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Ok(p) => p.fmt(f),
            Err(e) => write!(f, "Obfs4Table(Err({e}))"),
        }
    }
}

/// A parsed bridge line.
#[derive(Clone, PartialEq, Eq)]
pub struct Obfs4Params {
    /// Where the bridge listens.
    pub addr: SocketAddr,
    /// The bridge's node id and public key.
    pub cert: BridgeCert,
    /// The bridge's inter-arrival-time mode (0, 1 or 2): recorded, and with 1 or 2 the client
    /// also splits its writes.
    pub iat_mode: u8,
}

impl std::fmt::Debug for Obfs4Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Obfs4Spec(redacted)")
    }
}

impl std::fmt::Debug for Obfs4Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Obfs4Params").field("cert", &"redacted").field("iat_mode", &self.iat_mode).finish_non_exhaustive()
    }
}

/// Why a bridge line was refused (naming the field, never quoting the cert).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    /// No `address:port`.
    #[error("the bridge line has no address:port")]
    NoAddress,
    /// No `cert=`.
    #[error("the bridge line has no cert=")]
    NoCert,
    /// The cert does not decode.
    #[error("the bridge line's cert: {0}")]
    Cert(CertError),
    /// `iat-mode` is not 0, 1 or 2.
    #[error("iat-mode must be 0, 1 or 2")]
    IatMode,
    /// A word that is none of the above.
    #[error("the bridge line has an unexpected word (not a transport, address, fingerprint, cert= or iat-mode=)")]
    Unexpected,
}

/// The `obfs4` table is there exactly when the obfs4 test is listed, and a fixed `address`
/// agrees with the bridge line's.
pub fn check(t: &TargetSpec) -> Result<(), String> {
    let table = t.obfs4.as_deref();
    if let Some(Obfs4Table(Err(e))) = table {
        return Err(e.to_string());
    }
    let params = table.and_then(Obfs4Table::params);
    let reason = match (params, t.tests.contains(&TestKind::Obfs4)) {
        (None, true) => "the obfs4 test needs an `obfs4` table with the bridge line",
        (Some(_), false) => "`obfs4` is set but the obfs4 test is not listed",
        (Some(p), true) if t.address.is_some_and(|a| a != p.addr.ip()) => "`address` differs from the bridge line's",
        (Some(_), true) if t.transport == Some(Transport::Udp) => "obfs4 runs over tcp only",
        _ => return Ok(()),
    };
    Err(reason.into())
}

/// The bridge line's address and port become the target's (no name to resolve).
pub fn settle(t: &mut TargetSpec) {
    if let Some(addr) = t.obfs4.as_deref().and_then(Obfs4Table::params).map(|p| p.addr) {
        t.address = Some(addr.ip());
        t.port = addr.port();
    }
}

/// Parse `[obfs4] ADDR:PORT [FINGERPRINT] cert=… [iat-mode=N]`.
pub fn parse_bridge_line(line: &str) -> Result<Obfs4Params, BridgeError> {
    let mut words = line.split_whitespace().peekable();
    if words.peek().is_some_and(|w| w.eq_ignore_ascii_case("obfs4")) {
        words.next();
    }
    let addr: SocketAddr = words.next().and_then(|w| w.parse().ok()).ok_or(BridgeError::NoAddress)?;
    let (mut cert, mut iat_mode) = (None, 0u8);
    for word in words {
        if let Some(value) = word.strip_prefix("cert=") {
            cert = Some(BridgeCert::parse(value).map_err(BridgeError::Cert)?);
        } else if let Some(value) = word.strip_prefix("iat-mode=") {
            iat_mode = value.parse().ok().filter(|m| *m <= 2).ok_or(BridgeError::IatMode)?;
        } else if !(word.len() == 40 && word.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(BridgeError::Unexpected);
        }
    }
    Ok(Obfs4Params { addr, cert: cert.ok_or(BridgeError::NoCert)?, iat_mode })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "1zafY8m+vab3C1YJOMbZXKebX9A8Pd1v/Vb7lsZ4NnShUA8A0LMW0GBmRAKAT2p7auhwPg";

    #[test]
    fn bridge_lines_parse_and_bad_ones_fail_without_quoting_the_cert() {
        let fp = "0123456789ABCDEF0123456789ABCDEF01234567";
        let full = parse_bridge_line(&format!("obfs4 203.0.113.40:443 {fp} cert={CERT} iat-mode=1")).expect("full line");
        assert_eq!(full.addr, "203.0.113.40:443".parse().expect("addr"));
        assert_eq!(full.iat_mode, 1);
        let bare = parse_bridge_line(&format!("[2001:db8::1]:9443 cert={CERT}==")).expect("bare line");
        assert_eq!((bare.addr.port(), bare.iat_mode), (9443, 0));
        assert!(!format!("{full:?}").contains(&CERT[..10]));
        let cases = [
            (format!("obfs4 cert={CERT}"), BridgeError::NoAddress),
            ("obfs4 203.0.113.40:443 iat-mode=0".to_string(), BridgeError::NoCert),
            ("203.0.113.40:443 cert=AAAA".to_string(), BridgeError::Cert(CertError::Length(3))),
            ("203.0.113.40:443 cert=!!!".to_string(), BridgeError::Cert(CertError::NotBase64)),
            (format!("203.0.113.40:443 cert={CERT} iat-mode=3"), BridgeError::IatMode),
            (format!("203.0.113.40:443 cert={CERT} hello"), BridgeError::Unexpected),
        ];
        for (line, want) in cases {
            let err = parse_bridge_line(&line).expect_err(&line);
            assert_eq!(err, want, "{line}");
            assert!(!err.to_string().contains("1zaf"), "{err}");
        }
    }

    #[test]
    fn a_targets_file_takes_the_bridge_line_and_refuses_a_bad_cert_without_quoting_it() {
        let file = |tests: &str, line: &str| {
            format!(
                "[[target]]\nname='bridge'\ndomain='bridge.example'\ntests={tests}\necho_address='203.0.113.41'\nobfs4={{ bridge = '{line}' }}\n"
            )
        };
        let line = format!("obfs4 203.0.113.40:9443 cert={CERT} iat-mode=0");
        let targets = crate::targets::parse(&file("['obfs4']", &line), "t").expect("valid");
        assert_eq!((targets[0].address, targets[0].port), (Some("203.0.113.40".parse().expect("ip")), 9443));
        assert!(!format!("{:?}", targets[0]).contains(&CERT[..12]));
        let bad = format!("obfs4 203.0.113.40:9443 cert={}", &CERT[..60]);
        let err = crate::targets::parse(&file("['obfs4']", &bad), "t").expect_err("bad cert").to_string();
        assert!(err.contains("cert decodes to 45 bytes") && !err.contains(&CERT[..12]), "{err}");
        let err = crate::targets::parse(&file("['tls']", &line), "t").expect_err("not listed").to_string();
        assert!(err.contains("not listed"), "{err}");
        let no_table = "[[target]]\nname='b'\ndomain='b.example'\ntests=['obfs4']\n";
        assert!(crate::targets::parse(no_table, "t").expect_err("no table").to_string().contains("needs an `obfs4` table"));
    }
}
