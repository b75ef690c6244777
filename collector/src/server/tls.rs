//! The collector's certificate: read from `--tls-cert` / `--tls-key`, checked, served, re-read on
//! SIGHUP.
//!
//! The certificate lives in a [`CertSlot`], a rustls [`ResolvesServerCert`] that hands every new
//! handshake the key loaded last. A renewal (certbot, an ACME client, a Kubernetes secret) writes
//! the files and sends SIGHUP; handshakes after the reload get the new certificate, connections
//! already open keep theirs. A file that does not load (half written, the wrong key, not PEM)
//! changes nothing: the error is logged and the old certificate stays, so a botched renewal never
//! takes the collector off the air. At start the same problems are a configuration error.
//!
//! ALPN offers `http/1.1` only. The clients are the probe (reqwest, built without HTTP/2),
//! Prometheus and browsers on the status page, all fine with HTTP/1.1; HTTP/2 would add the `h2`
//! crate and its own abuse surface (stream floods, rapid reset, HPACK) for no gain here.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;

/// The one protocol offered in ALPN.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why a certificate or key can't be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Only one of the two files was named.
    #[error("--tls-cert and --tls-key go together: name both files, or neither to serve plain HTTP")]
    Half,
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no usable PEM of the expected kind.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong with it.
        what: String,
    },
    /// The end-entity certificate is not a readable X.509 certificate.
    #[error("{path}: the first certificate does not parse: {message}")]
    Certificate {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// The key is of a kind rustls can't sign with, or does not match the certificate.
    #[error("{key} does not go with {cert}: {source}")]
    Key {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the server configuration (a bug in this crate).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A certificate and key that loaded, and what an operator wants to know about it.
#[derive(Debug)]
pub struct LoadedCert {
    /// What handshakes are answered with.
    pub key: Arc<CertifiedKey>,
    /// The end-entity certificate's not-after.
    pub not_after: DateTime<Utc>,
    /// SHA-256 of the end-entity certificate (DER), hex: what `openssl x509 -fingerprint -sha256` shows.
    pub fingerprint: String,
}

/// The crypto the collector serves with: ring, as everywhere in Vantage.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The files the config names: both, or neither (plain HTTP).
pub fn pair<'a>(cert: Option<&'a Path>, key: Option<&'a Path>) -> Result<Option<(&'a Path, &'a Path)>, TlsError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        _ => Err(TlsError::Half),
    }
}

/// [`load`] with the collector's crypto provider: the start-up check of `--tls-cert/--tls-key`.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, TlsError> {
    load(cert_path, key_path, &provider())
}

/// Read and check a certificate chain (PEM, end-entity first) and its private key (PEM: PKCS#8,
/// PKCS#1 or SEC1).
pub fn load(cert_path: &Path, key_path: &Path, provider: &CryptoProvider) -> Result<LoadedCert, TlsError> {
    let (cert_shown, key_shown) = (cert_path.display().to_string(), key_path.display().to_string());
    let read =
        |path: &Path, shown: &str| std::fs::read(path).map_err(|source| TlsError::Read { path: shown.to_string(), source });
    let cert_pem = read(cert_path, &cert_shown)?;
    let key_pem = read(key_path, &key_shown)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: cert_shown.clone(), what: format!("not a PEM certificate chain: {e}") })?;
    let Some(end_entity) = chain.first() else {
        return Err(TlsError::Pem { path: cert_shown, what: "no CERTIFICATE block".into() });
    };
    let not_after = not_after(end_entity).map_err(|message| TlsError::Certificate { path: cert_shown.clone(), message })?;
    let fingerprint = Sha256::digest(end_entity).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::Pem { path: key_shown.clone(), what: format!("no PEM private key: {e}") })?;
    // Parses the key and compares its public half with the certificate's (SPKI bytes).
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Key {
        cert: cert_shown,
        key: key_shown,
        source,
    })?;
    Ok(LoadedCert { key: Arc::new(key), not_after, fingerprint })
}

/// The not-after of a DER certificate.
fn not_after(der: &CertificateDer<'_>) -> Result<DateTime<Utc>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    let seconds = cert.validity().not_after.timestamp();
    DateTime::from_timestamp(seconds, 0).ok_or_else(|| format!("not-after {seconds} is out of range"))
}

/// The certificate being served and the files it is re-read from.
#[derive(Debug)]
pub struct CertSlot {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    metrics: Arc<Metrics>,
}

impl CertSlot {
    /// Load `cert_path` and `key_path` (a configuration error if they don't): [`load_pair`], then
    /// [`new`](Self::new).
    pub fn open(cert_path: PathBuf, key_path: PathBuf, metrics: Arc<Metrics>) -> Result<CertSlot, TlsError> {
        let loaded = load_pair(&cert_path, &key_path)?;
        Ok(Self::new(cert_path, key_path, loaded, metrics))
    }

    /// Serve `loaded`, read from `cert_path` and `key_path` (re-read from there), and export its
    /// expiry.
    pub fn new(cert_path: PathBuf, key_path: PathBuf, loaded: LoadedCert, metrics: Arc<Metrics>) -> CertSlot {
        log_loaded(&loaded, "serving HTTPS");
        metrics.set_tls_cert_expiry(loaded.not_after.timestamp());
        CertSlot { cert_path, key_path, provider: provider(), current: RwLock::new(loaded.key), metrics }
    }

    /// The certificate and key handed to new handshakes.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Re-read the files. A good pair replaces the served one; a bad one changes nothing.
    pub fn reload(&self) -> Result<LoadedCert, TlsError> {
        let loaded = load(&self.cert_path, &self.key_path, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&loaded.key);
        self.metrics.set_tls_cert_expiry(loaded.not_after.timestamp());
        Ok(loaded)
    }

    /// Re-read on every SIGHUP, for ever (the caller aborts the task).
    pub async fn reload_on_hangup(self: Arc<Self>) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; the certificate is read only at start");
                return;
            };
            while hangups.recv().await.is_some() {
                match self.reload() {
                    Ok(loaded) => log_loaded(&loaded, "SIGHUP: certificate re-read"),
                    Err(e) => tracing::error!("SIGHUP: keeping the certificate served so far: {e}"),
                }
            }
        }
    }

    /// The rustls configuration of the collector's listener, answering from this slot.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn log_loaded(loaded: &LoadedCert, what: &str) {
    let not_after = loaded.not_after.to_rfc3339();
    if loaded.not_after <= Utc::now() {
        tracing::warn!(%not_after, sha256 = %loaded.fingerprint, "{what}: the certificate has EXPIRED; clients will refuse it");
    } else {
        tracing::info!(%not_after, sha256 = %loaded.fingerprint, "{what}");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// A self-signed certificate for `localhost` and its key, as PEM.
    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params").self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new(HashSet::new(), 1000).expect("metrics"))
    }

    #[test]
    fn a_matching_pair_loads_and_exports_its_expiry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = self_signed();
        let metrics = metrics();
        let (text, _) = metrics.render().expect("render");
        assert!(!text.contains("vantage_collector_tls_cert_expiry_timestamp_seconds "), "no series before a certificate");
        let slot = CertSlot::open(write(dir.path(), "c.pem", &cert), write(dir.path(), "k.pem", &key), Arc::clone(&metrics))
            .map(Arc::new)
            .expect("loads");
        let (text, _) = metrics.render().expect("render");
        let value: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("vantage_collector_tls_cert_expiry_timestamp_seconds "))
            .expect("series")
            .parse()
            .expect("number");
        // rcgen's default validity ends in 4096.
        assert_eq!(DateTime::from_timestamp(value as i64, 0).map(|t| t.format("%Y").to_string()), Some("4096".into()));
        assert_eq!(slot.server_config().expect("config").alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn bad_files_are_errors_that_name_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = self_signed();
        let (_, other_key) = self_signed();
        let provider = rustls::crypto::ring::default_provider();
        let good_cert = write(dir.path(), "cert.pem", &cert);
        let good_key = write(dir.path(), "key.pem", &key);
        let load_with = |c: &Path, k: &Path| load(c, k, &provider).expect_err("refused");

        let err = load_with(&dir.path().join("missing.pem"), &good_key);
        assert!(matches!(err, TlsError::Read { .. }) && err.to_string().contains("missing.pem"), "{err}");
        let err = load_with(&write(dir.path(), "empty.pem", ""), &good_key);
        assert!(matches!(err, TlsError::Pem { .. }), "{err}");
        let err = load_with(&good_key, &good_key);
        assert!(matches!(err, TlsError::Pem { .. }), "a key is no certificate: {err}");
        let err = load_with(&good_cert, &good_cert);
        assert!(matches!(err, TlsError::Pem { .. }), "a certificate is no key: {err}");
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = load_with(&write(dir.path(), "garbage.pem", garbage), &good_key);
        assert!(matches!(err, TlsError::Certificate { .. }), "{err}");
        let err = load_with(&good_cert, &write(dir.path(), "other.pem", &other_key));
        assert!(matches!(err, TlsError::Key { .. }) && err.to_string().contains("other.pem"), "{err}");
        assert!(load(&good_cert, &good_key, &provider).is_ok());
    }

    #[test]
    fn a_bad_reload_keeps_the_certificate_and_a_good_one_replaces_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = self_signed();
        let (cert_path, key_path) = (write(dir.path(), "c.pem", &cert), write(dir.path(), "k.pem", &key));
        let slot = CertSlot::open(cert_path.clone(), key_path.clone(), metrics()).expect("loads");
        let first = slot.current();

        write(dir.path(), "c.pem", "half a renewal");
        assert!(slot.reload().is_err());
        assert!(Arc::ptr_eq(&slot.current(), &first), "the old certificate stays");

        let (cert, key) = self_signed();
        write(dir.path(), "c.pem", &cert);
        write(dir.path(), "k.pem", &key);
        let loaded = slot.reload().expect("renewed");
        assert_eq!(slot.current().cert, loaded.key.cert);
        assert_ne!(slot.current().cert, first.cert);
    }
}
