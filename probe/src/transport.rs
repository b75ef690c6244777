//! How the probe reaches its collector and test helper: the transport rule
//! ([`vantage_measurement::wire::transport`]: https, or plaintext only to this machine, or
//! `--danger-plaintext-collector`) and key pinning.
//!
//! [`collector_client`] is the only way to an HTTP client for collector traffic (list fetches,
//! uploads, `forget`), and it checks every URL the client is for before building it; the flags
//! of `run`, `flush` and `daemon` are checked with [`check_flag`] beside the other flags, so an
//! unusable URL stops a run before anything is measured (exit 2, as any bad flag).
//!
//! With pins (`collector_pins` in probe.toml, from the invitation), a collector's certificate is
//! accepted only if webpki accepts it (Mozilla's roots and the `--ca` files, the name, the dates)
//! AND the key it carries is one of the pins. The pin narrows what a CA may vouch for: a CA that
//! issues a certificate for the collector's name to someone else (coerced, or compromised) can't
//! make the probe talk to them. A mismatch fails the connection with the pins named; there is no
//! fallback to unpinned.

use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme};
use vantage_measurement::wire::pin::{self, SpkiPin};
use vantage_measurement::wire::transport::{self, Allowance, Carriage, TransportError};

use crate::cli::{ConfigError, flag};
use crate::config::Socks5Proxy;

/// Everything collector traffic is built from besides the URLs.
#[derive(Clone, Copy, Debug, Default)]
pub struct CollectorAccess<'a> {
    /// Extra trust anchors (PEM files).
    pub ca: &'a [PathBuf],
    /// Uploads and list fetches go through this proxy.
    pub socks5: Option<&'a Socks5Proxy>,
    /// The collectors' key pins; empty: no pinning.
    pub pins: &'a [SpkiPin],
    /// `--danger-plaintext-collector` or `danger_plaintext_collector = true`.
    pub danger_plaintext: bool,
}

impl CollectorAccess<'_> {
    /// What the transport rule weighs for these connections.
    pub fn allowance(&self) -> Allowance {
        Allowance {
            danger_plaintext: self.danger_plaintext,
            remote_proxy: self.socks5.is_some_and(|p| !p.is_loopback()),
            pinned: !self.pins.is_empty(),
        }
    }
}

/// The HTTP client for collector traffic to `urls` (list fetches, uploads, `forget`): the trust
/// anchors, the pins, and the SOCKS5 proxy if one is set. Every URL must pass the transport rule
/// first. Measurements and their controls never use it.
pub fn collector_client(
    urls: &[String],
    access: &CollectorAccess<'_>,
    timeout: Duration,
) -> Result<reqwest::Client, ConfigError> {
    for url in urls {
        allow(url, access.allowance()).map_err(ConfigError::Transport)?;
    }
    let mut builder = crate::cli::http_client_builder(access.ca, timeout)?;
    if !access.pins.is_empty() {
        builder = builder.tls_backend_preconfigured(pinned_tls(access.ca, access.pins)?);
    }
    if let Some(proxy) = access.socks5 {
        builder = builder.proxy(reqwest::Proxy::all(proxy.url()).map_err(|e| flag("socks5", e))?);
    }
    builder.build().map_err(|e| flag("socks5", e))
}

/// The rule for a URL given as `--flag`; its error names the flag.
pub fn check_flag(name: &'static str, url: &str, allowance: Allowance) -> Result<Carriage, ConfigError> {
    allow(url, allowance).map_err(|e| flag(name, e))
}

/// The rule, and the warning when the volunteer's danger flag is what lets a URL through.
fn allow(url: &str, allowance: Allowance) -> Result<Carriage, TransportError> {
    let carriage = transport::check(url, allowance)?;
    if carriage == Carriage::DangerPlaintext {
        static WARNED: Once = Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "DANGER: --danger-plaintext-collector: sending to {url} as plaintext HTTP. What this probe \
                 finds and the names it tests cross the network, and any censor on it, in the clear. \
                 For labs only; a real collector is https://."
            );
        });
    }
    Ok(carriage)
}

/// The rustls configuration for a pinned collector: webpki over Mozilla's roots and `ca`, then
/// the pins.
fn pinned_tls(ca: &[PathBuf], pins: &[SpkiPin]) -> Result<rustls::ClientConfig, ConfigError> {
    let webpki = crate::cli::trust_anchors(ca)?.webpki_verifier().map_err(|e| flag("ca", e))?;
    let verifier = PinnedVerifier::new(webpki, pins.to_vec());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| flag("ca", e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // What reqwest offers itself, built without HTTP/2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A certificate whose key is none of the pins.
#[derive(Debug, thiserror::Error)]
#[error(
    "the collector's TLS key {presented} is none of the pinned keys ({pinned}); refusing the connection. Someone on the path may hold a certificate for the collector's name; if the operator changed keys without a backup pin, join again with a new invitation"
)]
pub struct PinMismatch {
    /// The pin of the key the collector presented.
    pub presented: SpkiPin,
    /// The pins, for the message.
    pub pinned: String,
}

/// webpki verification, then the end-entity key must be one of the pins.
#[derive(Debug)]
pub struct PinnedVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    pins: Vec<SpkiPin>,
}

impl PinnedVerifier {
    /// `inner` (webpki) first, then `pins`.
    pub fn new(inner: Arc<dyn ServerCertVerifier>, pins: Vec<SpkiPin>) -> PinnedVerifier {
        PinnedVerifier { inner, pins }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // A pin narrows what the CAs may vouch for; it never stands in for them.
        let verified = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        let presented = SpkiPin::of_certificate(end_entity).map_err(|_| CertificateError::BadEncoding)?;
        if self.pins.contains(&presented) {
            Ok(verified)
        } else {
            Err(rustls::Error::Other(OtherError(Arc::new(PinMismatch { presented, pinned: pin::list(&self.pins) }))))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

#[cfg(test)]
#[path = "transport_tests.rs"]
pub(crate) mod tests;
