//! A throwaway certificate authority for tests: any SNI gets a certificate signed by it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A CA whose certificate the probe is told to trust with `--ca`.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl TestCa {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(TestCa { issuer: Issuer::new(params, key), cert_pem: cert.pem(), key_pem })
    }

    /// Save certificate and key as `<stem>.pem` and `<stem>.key` in `dir`, for other processes.
    pub fn save(&self, dir: &Path, stem: &str) -> anyhow::Result<()> {
        std::fs::write(dir.join(format!("{stem}.pem")), &self.cert_pem)?;
        std::fs::write(dir.join(format!("{stem}.key")), &self.key_pem)?;
        Ok(())
    }

    /// Load a CA saved by [`TestCa::save`].
    pub fn load(dir: &Path, stem: &str) -> anyhow::Result<Self> {
        let cert_pem = std::fs::read_to_string(dir.join(format!("{stem}.pem")))?;
        let key_pem = std::fs::read_to_string(dir.join(format!("{stem}.key")))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, KeyPair::from_pem(&key_pem)?)?;
        Ok(TestCa { issuer, cert_pem, key_pem })
    }

    /// Write the CA certificate as PEM (for `--ca`).
    pub fn write_pem(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, &self.cert_pem)?;
        Ok(())
    }

    /// A leaf certificate and key for `name` (a DNS name, or an IP address for an IP SAN).
    pub fn issue(&self, name: &str) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
        let (cert, key) = self.issue_leaf(name)?;
        Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))))
    }

    /// [`issue`](Self::issue) written as PEM to `dir/<stem>.crt` and `dir/<stem>.key`, for a
    /// server in another process (the collector's `--tls-cert`/`--tls-key`).
    pub fn issue_files(&self, name: &str, dir: &Path, stem: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
        let (cert, key) = self.issue_leaf(name)?;
        let (cert_path, key_path) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        Ok((cert_path, key_path))
    }

    fn issue_leaf(&self, name: &str) -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
        let mut params = CertificateParams::new(vec![name.to_string()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert, key))
    }
}

/// Resolves any SNI to a certificate for that name, issued on first use and cached.
#[derive(Clone)]
pub struct AnySni {
    ca: Arc<TestCa>,
    cache: Arc<Mutex<HashMap<String, Arc<CertifiedKey>>>>,
}

impl std::fmt::Debug for AnySni {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnySni")
    }
}

impl AnySni {
    /// Certificates from `ca`.
    pub fn new(ca: Arc<TestCa>) -> Self {
        AnySni { ca, cache: Arc::default() }
    }

    /// A certificate for `name` (issued on first use), whatever a client asks for.
    pub fn certified_for(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.certified(name)
    }

    fn certified(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let mut cache = self.cache.lock().ok()?;
        if let Some(k) = cache.get(name) {
            return Some(k.clone());
        }
        let (cert, key) = self.ca.issue(name).ok()?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key).ok()?;
        let certified = Arc::new(CertifiedKey::new(vec![cert], signing));
        cache.insert(name.to_string(), certified.clone());
        Some(certified)
    }
}

impl ResolvesServerCert for AnySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certified(hello.server_name().unwrap_or("no-sni.invalid"))
    }
}

/// A rustls server config presenting certificates from `ca` for any SNI, with `alpn`.
pub fn server_config(ca: Arc<TestCa>, alpn: &[&[u8]]) -> anyhow::Result<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(AnySni::new(ca)));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::pem::PemObject as _;

    #[test]
    fn a_saved_ca_signs_the_same_after_loading() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        TestCa::new("lab CA")?.save(dir.path(), "ca")?;
        let loaded = TestCa::load(dir.path(), "ca")?;
        let (leaf, _) = loaded.issue("a.example")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(dir.path().join("ca.pem"))? {
            roots.add(cert?)?;
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()?;
        let name = rustls::pki_types::ServerName::try_from("a.example")?;
        verifier.verify_server_cert(&leaf, &[], &name, &[], rustls::pki_types::UnixTime::now())?;
        Ok(())
    }
}
