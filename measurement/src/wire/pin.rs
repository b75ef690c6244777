//! Key pins: how a probe recognises its collector's key, whatever certificate carries it.
//!
//! A pin is `sha256/<base64 of the SHA-256 of the DER SubjectPublicKeyInfo>`, the format of HPKP
//! (RFC 7469), which OpenSSL computes too:
//!
//! ```text
//! openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin -outform der \
//!   | openssl dgst -sha256 -binary | base64
//! ```
//!
//! It names a key, not a certificate: a renewal that keeps the key (`certbot renew --reuse-key`)
//! keeps the pin, so probes need nothing new; a new key is accepted only if its pin was handed out
//! before (the operator's backup key). The invitation carries the pins and `join` writes them into
//! `probe.toml` (`collector_pins`).
//!
//! The certificate is read with a small DER walk down to its SubjectPublicKeyInfo. The probe does
//! so only after webpki has parsed and verified the same certificate, and the operator's tools on
//! the operator's own files; a malformed input is an error, never a panic.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a pin starts with: the hash algorithm, as HPKP wrote it.
pub const PIN_PREFIX: &str = "sha256/";
/// The most pins an invitation or config may hold: the live key and a backup for each collector.
pub const MAX_PINS: usize = 16;
/// How much of a bad pin an error repeats (it may come from a pasted invitation).
const SHOWN_CHARS: usize = 60;

/// The SHA-256 of a SubjectPublicKeyInfo.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpkiPin([u8; 32]);

/// Why a pin or a certificate is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// Not `sha256/` and the base64 of 32 bytes.
    #[error(
        "`{0}` is not a key pin: expected `sha256/` and the base64 of 32 bytes (44 characters), as `vantage-collector pin FILE` prints it"
    )]
    Syntax(String),
    /// Not a DER X.509 certificate (the message says which part).
    #[error("not a DER certificate: {0}")]
    NotACertificate(&'static str),
}

impl SpkiPin {
    /// The pin of a DER SubjectPublicKeyInfo (a `PUBLIC KEY` PEM block holds exactly that).
    pub fn of_spki(spki_der: &[u8]) -> SpkiPin {
        SpkiPin(Sha256::digest(spki_der).into())
    }

    /// The pin of the key a DER certificate carries.
    pub fn of_certificate(cert_der: &[u8]) -> Result<SpkiPin, PinError> {
        spki_of_certificate(cert_der).map(SpkiPin::of_spki)
    }
}

impl FromStr for SpkiPin {
    type Err = PinError;

    fn from_str(s: &str) -> Result<SpkiPin, PinError> {
        let bad = || PinError::Syntax(s.chars().take(SHOWN_CHARS).collect());
        let b64 = s.strip_prefix(PIN_PREFIX).ok_or_else(bad)?;
        let bytes = BASE64.decode(b64).map_err(|_| bad())?;
        <[u8; 32]>::try_from(bytes.as_slice()).map(SpkiPin).map_err(|_| bad())
    }
}

impl fmt::Display for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PIN_PREFIX}{}", BASE64.encode(self.0))
    }
}

impl fmt::Debug for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl TryFrom<String> for SpkiPin {
    type Error = PinError;

    fn try_from(s: String) -> Result<SpkiPin, PinError> {
        s.parse()
    }
}

impl From<SpkiPin> for String {
    fn from(pin: SpkiPin) -> String {
        pin.to_string()
    }
}

/// Pins for a message: `sha256/…, sha256/…`.
pub fn list(pins: &[SpkiPin]) -> String {
    pins.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

// === DER ===

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
/// `[0] EXPLICIT`: the certificate's optional version.
const VERSION: u8 = 0xa0;

/// One DER element: its whole encoding and its contents.
struct Element<'a> {
    whole: &'a [u8],
    contents: &'a [u8],
}

/// The element at the front of `input` if it has tag `tag`, and what follows it.
fn element<'a>(input: &'a [u8], tag: u8, what: &'static str) -> Result<(Element<'a>, &'a [u8]), PinError> {
    let err = || PinError::NotACertificate(what);
    let (&found, rest) = input.split_first().ok_or_else(err)?;
    if found != tag {
        return Err(err());
    }
    let (&first, rest) = rest.split_first().ok_or_else(err)?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        // Long form with 1-4 length bytes; 0x80 (indefinite) is BER, not DER.
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let (bytes, rest) = rest.split_at_checked(n).ok_or_else(err)?;
            (bytes.iter().fold(0usize, |len, &b| (len << 8) | usize::from(b)), rest)
        }
        _ => return Err(err()),
    };
    let (contents, after) = rest.split_at_checked(len).ok_or_else(err)?;
    let header = input.len() - rest.len();
    Ok((Element { whole: &input[..header + len], contents }, after))
}

/// The DER SubjectPublicKeyInfo inside a DER X.509 certificate (RFC 5280 §4.1: the field after
/// version, serialNumber, signature, issuer, validity and subject).
pub fn spki_of_certificate(cert_der: &[u8]) -> Result<&[u8], PinError> {
    let (certificate, trailing) = element(cert_der, SEQUENCE, "certificate")?;
    if !trailing.is_empty() {
        return Err(PinError::NotACertificate("bytes after the certificate"));
    }
    let (tbs, _) = element(certificate.contents, SEQUENCE, "tbsCertificate")?;
    let mut fields = tbs.contents;
    if fields.first() == Some(&VERSION) {
        fields = element(fields, VERSION, "version")?.1;
    }
    for (tag, what) in
        [(INTEGER, "serialNumber"), (SEQUENCE, "signature"), (SEQUENCE, "issuer"), (SEQUENCE, "validity"), (SEQUENCE, "subject")]
    {
        fields = element(fields, tag, what)?.1;
    }
    let (spki, _) = element(fields, SEQUENCE, "subjectPublicKeyInfo")?;
    Ok(spki.whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `openssl req -x509` (P-256 and RSA-2048); the expected pins are OpenSSL's own, by
    // the recipe in the module docs.
    const EC_CERT: &[u8] = include_bytes!("testdata/ec-cert.der");
    const EC_PIN: &str = "sha256/VRwbY5IxnpNBYn7rJsEf3EQbZ+pPxFL3zlwlMYIC9AA=";
    const RSA_CERT: &[u8] = include_bytes!("testdata/rsa-cert.der");
    const RSA_PIN: &str = "sha256/Ytge9hYT5NcNqwDQfKj2fClZBxd2zMZhdMzNq4BZ/ss=";

    #[test]
    fn a_certificates_pin_is_the_one_openssl_computes() {
        for (cert, expected) in [(EC_CERT, EC_PIN), (RSA_CERT, RSA_PIN)] {
            let pin = SpkiPin::of_certificate(cert).expect("certificate");
            assert_eq!(pin.to_string(), expected);
            assert_eq!(expected.parse::<SpkiPin>(), Ok(pin));
        }
    }

    #[test]
    fn pins_round_trip_through_serde_and_bad_ones_are_refused() {
        let pin: SpkiPin = EC_PIN.parse().expect("pin");
        let json = serde_json::to_string(&vec![pin]).expect("json");
        assert_eq!(json, format!("[\"{EC_PIN}\"]"));
        assert_eq!(serde_json::from_str::<Vec<SpkiPin>>(&json).expect("back"), vec![pin]);
        let short = format!("sha256/{}", BASE64.encode([7u8; 31]));
        let unpadded = EC_PIN.trim_end_matches('=');
        let sha1 = EC_PIN.replace("sha256/", "sha1/");
        for bad in ["", "sha256/", short.as_str(), unpadded, sha1.as_str(), "sha256/!!!!", &EC_PIN[7..]] {
            assert!(matches!(bad.parse::<SpkiPin>(), Err(PinError::Syntax(_))), "{bad}");
        }
        let long = format!("sha256/{}", "A".repeat(10_000));
        let err = long.parse::<SpkiPin>().expect_err("long").to_string();
        assert!(err.len() < 300, "a pasted monster is not echoed whole: {} chars", err.len());
    }

    #[test]
    fn every_truncation_and_a_trailing_byte_are_errors_not_panics() {
        for len in 0..EC_CERT.len() {
            assert!(SpkiPin::of_certificate(&EC_CERT[..len]).is_err(), "{len} bytes");
        }
        let mut trailing = EC_CERT.to_vec();
        trailing.push(0);
        assert_eq!(SpkiPin::of_certificate(&trailing), Err(PinError::NotACertificate("bytes after the certificate")));
        // Each byte flipped in turn: any outcome but a panic is fine.
        for i in 0..EC_CERT.len() {
            let mut flipped = EC_CERT.to_vec();
            flipped[i] ^= 0xff;
            let _ = SpkiPin::of_certificate(&flipped);
        }
    }

    #[test]
    fn the_spki_found_is_a_public_key_not_the_whole_certificate() {
        let spki = spki_of_certificate(EC_CERT).expect("spki");
        // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (65-byte point) }: 91 bytes.
        assert_eq!(spki.len(), 91);
        assert_eq!(&spki[..2], &[0x30, 0x59]);
        assert_eq!(SpkiPin::of_spki(spki).to_string(), EC_PIN);
    }
}
