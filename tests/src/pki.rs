//! A throwaway certificate authority for tests: any SNI gets a certificate signed by it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A CA whose certificate the probe is told to trust with `--ca`.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
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
        Ok(TestCa { issuer: Issuer::new(params, key), cert_pem: cert.pem() })
    }

    /// Write the CA certificate as PEM (for `--ca`).
    pub fn write_pem(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, &self.cert_pem)?;
        Ok(())
    }

    /// A leaf certificate and key for `name`.
    pub fn issue(&self, name: &str) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
        let mut params = CertificateParams::new(vec![name.to_string()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))))
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
