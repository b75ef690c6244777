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

use super::codec::{BridgeCert, CertError};

/// The `obfs4` table as written.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Obfs4Spec {
    /// The bridge line.
    pub bridge: String,
}

/// A parsed bridge line.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Obfs4Spec")]
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

impl TryFrom<Obfs4Spec> for Obfs4Params {
    type Error = BridgeError;

    fn try_from(spec: Obfs4Spec) -> Result<Self, BridgeError> {
        parse_bridge_line(&spec.bridge)
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
}
