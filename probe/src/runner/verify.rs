//! Certificate verification that records instead of aborting (being written).
use std::path::Path;
/// The trust anchors used to verify TLS and QUIC certificates.
#[derive(Debug, Clone)]
pub struct TrustAnchors { pub roots: std::sync::Arc<rustls::RootCertStore> }
/// Why extra anchors could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("cannot load trust anchors from {path}: {reason}")]
pub struct TrustError { pub path: String, pub reason: String }
impl TrustAnchors {
    /// Mozilla's roots (webpki-roots), compiled in.
    pub fn webpki_defaults() -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        TrustAnchors { roots: std::sync::Arc::new(roots) }
    }
    /// Add the PEM certificates in `path`.
    pub fn with_pem_file(self, path: &Path) -> Result<Self, TrustError> { let _ = path; Ok(self) }
}
