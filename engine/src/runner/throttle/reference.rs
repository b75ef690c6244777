//! The `throughput` table of a targets file: it marks the target's `address` as a throughput
//! reference endpoint (`deploy/endpoints/throughput/`), the only kind of server the `throttle`
//! test asks for a body under the target's name and the control's.
//!
//! ```toml
//! [[target]]
//! name = "twitter-throttle"
//! domain = "twitter.com"              # sent as SNI (and Host); never resolved
//! address = "203.0.113.50"            # the reference endpoint
//! control_port = 8443                 # optional: the endpoint's second port, for the control
//! tests = ["throttle"]
//! throughput = { certificate_sha256 = ["3f1c…64 hex…"], bytes = 131072 }
//! ```
//!
//! The endpoint can't hold a certificate for the target's name, so the probe trusts it by pin:
//! `certificate_sha256` lists the SHA-256 of the DER certificates it may present (two during a
//! rotation), `openssl x509 -in cert.pem -outform der | sha256sum`. Parsed here, so a bad pin
//! fails the load, not the measurement.

use serde::Deserialize;
use vantage_measurement::TestKind;

use crate::targets::TargetSpec;

/// The least a download may ask for: past TCP slow start and a shaper's burst allowance.
pub const MIN_BYTES: u64 = 128 * 1024;
/// The most a download may ask for (four of them per measurement, on a volunteer's data plan).
pub const MAX_BYTES: u64 = 1024 * 1024;
/// The body each download asks for unless the target says otherwise.
pub const DEFAULT_BYTES: u64 = MIN_BYTES;
/// The most pins one endpoint lists.
pub const MAX_PINS: usize = 4;

/// The table as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThroughputSpec {
    /// SHA-256 of each DER certificate the endpoint may present, hex.
    pub certificate_sha256: Vec<String>,
    /// Body bytes per download.
    #[serde(default = "default_bytes")]
    pub bytes: u64,
}

fn default_bytes() -> u64 {
    DEFAULT_BYTES
}

/// A reference endpoint's parameters, checked.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "ThroughputSpec")]
pub struct Throughput {
    /// The certificates' fingerprints the probe accepts.
    pub pins: Vec<[u8; 32]>,
    /// Body bytes per download.
    pub bytes: u64,
}

/// Why a `throughput` table was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ThroughputError {
    /// No pin, or too many.
    #[error("certificate_sha256 must list 1-{MAX_PINS} fingerprints")]
    PinCount,
    /// A pin is not 64 hex digits.
    #[error("certificate_sha256 entry {0} is not 64 hex digits")]
    PinFormat(usize),
    /// `bytes` out of range.
    #[error("bytes must be {MIN_BYTES}-{MAX_BYTES}")]
    Bytes,
}

impl TryFrom<ThroughputSpec> for Throughput {
    type Error = ThroughputError;

    fn try_from(spec: ThroughputSpec) -> Result<Self, ThroughputError> {
        if spec.certificate_sha256.is_empty() || spec.certificate_sha256.len() > MAX_PINS {
            return Err(ThroughputError::PinCount);
        }
        let pins = spec
            .certificate_sha256
            .iter()
            .enumerate()
            .map(|(i, text)| parse_pin(text).ok_or(ThroughputError::PinFormat(i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        if !(MIN_BYTES..=MAX_BYTES).contains(&spec.bytes) {
            return Err(ThroughputError::Bytes);
        }
        Ok(Throughput { pins, bytes: spec.bytes })
    }
}

/// 64 hex digits (either case, `:` separators allowed as openssl prints them) to 32 bytes.
pub fn parse_pin(text: &str) -> Option<[u8; 32]> {
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(digits.chunks(2)) {
        let hex = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

/// The table is present exactly when the test is listed, and the test has an endpoint address
/// (the target's name leads to the real service, never to the reference endpoint).
pub fn check(t: &TargetSpec) -> Result<(), &'static str> {
    match (t.throughput.is_some(), t.tests.contains(&TestKind::Throttle)) {
        (false, true) => Err("the throttle test needs a `throughput` table (a reference endpoint)"),
        (true, false) => Err("`throughput` is set but the throttle test is not listed"),
        (true, true) if t.address.is_none() => Err("the throttle test needs the reference endpoint's `address`"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "3F1C000000000000000000000000000000000000000000000000000000a0b1c2";

    #[test]
    fn pins_parse_in_either_case_and_with_colons() {
        let pin = parse_pin(PIN).expect("pin");
        assert_eq!((pin[0], pin[31]), (0x3f, 0xc2));
        let colons: String =
            PIN.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(":");
        assert_eq!(parse_pin(&colons), Some(pin));
        for bad in ["", "3f1c", &PIN.replace('3', "g"), &format!("{PIN}00")] {
            assert_eq!(parse_pin(bad), None, "{bad}");
        }
    }

    #[test]
    fn targets_with_a_throughput_table_load_checked() {
        let base = "[[target]]\nname='t'\ndomain='twitter.example'\n";
        let good = format!("{base}address='203.0.113.50'\ntests=['throttle']\nthroughput={{certificate_sha256=['{PIN}']}}\n");
        let t = &crate::targets::parse(&good, "t").expect("valid")[0];
        let throughput = t.throughput.as_ref().expect("throughput");
        assert_eq!((throughput.bytes, throughput.pins.len()), (DEFAULT_BYTES, 1));
        let cases = [
            ("address='203.0.113.50'\ntests=['throttle']\n", "needs a `throughput` table"),
            (&format!("address='203.0.113.50'\ntests=['tls']\nthroughput={{certificate_sha256=['{PIN}']}}\n"), "not listed"),
            (&format!("tests=['throttle']\nthroughput={{certificate_sha256=['{PIN}']}}\n"), "`address`"),
            ("address='203.0.113.50'\ntests=['throttle']\nthroughput={certificate_sha256=[]}\n", "1-4 fingerprints"),
            ("address='203.0.113.50'\ntests=['throttle']\nthroughput={certificate_sha256=['abc']}\n", "entry 1"),
            (
                &format!("address='203.0.113.50'\ntests=['throttle']\nthroughput={{certificate_sha256=['{PIN}'],bytes=1000}}\n"),
                "bytes must be",
            ),
        ];
        for (tail, needle) in cases {
            let err = crate::targets::parse(&format!("{base}{tail}"), "t").expect_err(needle).to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }
}
