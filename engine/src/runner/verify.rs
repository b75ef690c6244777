//! Certificate verification that records instead of aborting.
//!
//! A censor that intercepts TLS presents its own certificate. If verification aborted the
//! handshake, we would lose exactly the evidence we came for: the chain, the version, the issuer.
//! So the probe verifies with webpki as usual, *records* the outcome and the chain, and lets the
//! handshake complete. Nothing is ever sent over such a connection; it is closed right after.
//! Handshake signatures are still checked for real, so a completed handshake proves the server
//! holds the key of the certificate it sent.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use vantage_measurement::Failure;

/// The trust anchors used to verify TLS and QUIC certificates: Mozilla's roots plus `--ca` files.
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    roots: Arc<RootCertStore>,
}

/// Why extra anchors could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("cannot load trust anchors from {path}: {reason}")]
pub struct TrustError {
    /// The file.
    pub path: String,
    /// What was wrong with it.
    pub reason: String,
}

impl TrustAnchors {
    /// Mozilla's roots (webpki-roots), compiled in so a static probe needs no system store.
    pub fn webpki_defaults() -> Self {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        TrustAnchors { roots: Arc::new(roots) }
    }

    /// Only the certificates in `path` (for tests and labs with their own CA).
    pub fn empty() -> Self {
        TrustAnchors { roots: Arc::new(RootCertStore::empty()) }
    }

    /// Add every PEM certificate in `path`.
    pub fn with_pem_file(self, path: &Path) -> Result<Self, TrustError> {
        let err = |reason: String| TrustError { path: path.display().to_string(), reason };
        let mut roots = Arc::unwrap_or_clone(self.roots);
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| err(e.to_string()))?;
            roots.add(cert).map_err(|e| err(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(err("no PEM certificate found".into()));
        }
        Ok(TrustAnchors { roots: Arc::new(roots) })
    }

    /// Plain webpki verification against these anchors, for the probe's own connections (a
    /// pinned collector checks this first, then its key). Fails when there are no anchors.
    pub fn webpki_verifier(&self) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
        WebPkiServerVerifier::builder_with_provider(self.roots.clone(), Arc::new(rustls::crypto::ring::default_provider()))
            .build()
            .map_err(|e| TlsError::General(e.to_string()))
    }

    /// A verifier for one handshake, and the slot where it will record what it saw.
    pub fn recording_verifier(&self) -> Result<(Arc<RecordingVerifier>, Arc<Mutex<CertRecord>>), TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // With no anchors at all (a test with nothing to trust) every chain is simply unknown.
        let chain_verifier = if self.roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                    .build()
                    .map_err(|e| TlsError::General(e.to_string()))?,
            )
        };
        Ok(RecordingVerifier::new(Judge::Webpki(chain_verifier)))
    }
}

/// What the verifier saw during one handshake.
#[derive(Debug, Default, Clone)]
pub struct CertRecord {
    /// The chain as sent, leaf first (DER).
    pub chain: Vec<Vec<u8>>,
    /// Whether webpki accepted it for the server name; `None` if no certificate arrived.
    pub verified: Option<bool>,
    /// Why it did not verify.
    pub failure: Option<Failure>,
}

impl CertRecord {
    /// SHA-256 of the leaf, hex.
    pub fn leaf_sha256(&self) -> Option<String> {
        self.chain.first().map(|leaf| Sha256::digest(leaf).iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// A verifier that records its verdict and the chain, then lets the handshake go on.
#[derive(Debug)]
pub struct RecordingVerifier {
    judge: Judge,
    algorithms: WebPkiSupportedAlgorithms,
    record: Arc<Mutex<CertRecord>>,
}

/// How a chain is judged.
#[derive(Debug)]
enum Judge {
    /// webpki against the anchors; `None`: no anchors, every chain is unknown.
    Webpki(Option<Arc<WebPkiServerVerifier>>),
    /// The leaf's SHA-256 is one of these (the project's own endpoints, whatever name is asked).
    Pins(Vec<[u8; 32]>),
}

impl RecordingVerifier {
    fn new(judge: Judge) -> (Arc<Self>, Arc<Mutex<CertRecord>>) {
        let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        let record = Arc::new(Mutex::new(CertRecord::default()));
        (Arc::new(RecordingVerifier { judge, algorithms, record: record.clone() }), record)
    }

    /// A verifier that accepts exactly the leaves whose SHA-256 is in `pins`, and its record.
    pub fn pinned(pins: &[[u8; 32]]) -> (Arc<Self>, Arc<Mutex<CertRecord>>) {
        Self::new(Judge::Pins(pins.to_vec()))
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let outcome = match &self.judge {
            Judge::Webpki(Some(v)) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now).map(|_| ())
            }
            Judge::Webpki(None) => Err(TlsError::InvalidCertificate(CertificateError::UnknownIssuer)),
            Judge::Pins(pins) => {
                let digest: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
                // Not a missing issuer: a certificate other than the pinned ones (ssl_invalid_certificate).
                let unpinned = TlsError::InvalidCertificate(CertificateError::ApplicationVerificationFailure);
                if pins.contains(&digest) { Ok(()) } else { Err(unpinned) }
            }
        };
        let mut chain = vec![end_entity.to_vec()];
        chain.extend(intermediates.iter().map(|c| c.to_vec()));
        if let Ok(mut record) = self.record.lock() {
            record.chain = chain;
            record.verified = Some(outcome.is_ok());
            record.failure = outcome.err().map(|e| verification_failure(&e));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// OONI's names for certificate verification failures.
pub fn verification_failure(err: &TlsError) -> Failure {
    match err {
        TlsError::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => Failure::SslUnknownAuthority,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => Failure::SslInvalidHostname,
            _ => Failure::SslInvalidCertificate,
        },
        _ => Failure::SslInvalidCertificate,
    }
}
