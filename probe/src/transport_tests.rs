//! Pinning against a real TLS server on loopback (tokio-rustls, certificates from rcgen): the
//! pin must match AND the CA must vouch; a renewal that keeps the key keeps working; a new key
//! works only if it was pinned beforehand (the backup).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData, SerialNumber};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::*;

/// A CA the client trusts through `--ca`.
pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate (PEM), for `--ca`.
    pub(crate) pem: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCa {
    pub(crate) fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Vantage pinning test CA");
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA");
        let dir = tempfile::tempdir().expect("tempdir");
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, cert.pem()).expect("write CA");
        TestCa { issuer: Issuer::new(params, key), pem, _dir: dir }
    }

    /// A certificate for 127.0.0.1 carrying `key`; `serial` tells renewals apart.
    pub(crate) fn issue(&self, key: &KeyPair, serial: u64) -> Collector {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        params.serial_number = Some(SerialNumber::from(serial));
        params.not_before = rcgen::date_time_ymd(2024, 1, serial.clamp(1, 28) as u8);
        let cert = params.signed_by(key, &self.issuer).expect("leaf");
        Collector { cert: cert.der().clone(), key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())) }
    }
}

/// What a collector presents.
pub(crate) struct Collector {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl Collector {
    /// Made by no CA at all.
    fn self_signed(key: &KeyPair) -> Collector {
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params").self_signed(key).expect("cert");
        Collector { cert: cert.der().clone(), key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())) }
    }

    /// Serve HTTPS on loopback, answering every request `200 ok`; the base URL.
    async fn serve(self) -> String {
        self.serve_body("ok").await
    }

    /// Serve HTTPS on loopback, answering every request with `body`; the base URL.
    pub(crate) async fn serve_body(self, body: &str) -> String {
        let response = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert], self.key)
            .expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, response) = (acceptor.clone(), response.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    // The headers are enough to answer; a body may follow them in the same read.
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        url
    }
}

pub(crate) fn pin_of(key: &KeyPair) -> SpkiPin {
    SpkiPin::of_spki(&key.subject_public_key_info())
}

/// GET `url` with a client for it: `Ok(body)`, or the error with all its causes.
async fn get(url: &str, ca: &Path, pins: &[SpkiPin]) -> Result<String, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = [ca.to_path_buf()];
    let access = CollectorAccess { ca: &ca, pins, ..CollectorAccess::default() };
    let client = collector_client(&[url.to_string()], &access, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let chain = |e: reqwest::Error| {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text = format!("{text}: {cause}");
            source = cause.source();
        }
        text
    };
    let resp = client.get(url).send().await.map_err(chain)?;
    resp.text().await.map_err(chain)
}

#[tokio::test]
async fn the_pinned_key_is_reached_and_so_is_the_backup_when_listed() {
    let ca = TestCa::new();
    let (live, backup) = (KeyPair::generate().expect("key"), KeyPair::generate().expect("key"));
    let url = ca.issue(&live, 1).serve().await;
    assert_eq!(get(&url, &ca.pem, &[pin_of(&live)]).await, Ok("ok".into()));
    assert_eq!(get(&url, &ca.pem, &[pin_of(&backup), pin_of(&live)]).await, Ok("ok".into()), "any pin of the set");
    assert_eq!(get(&url, &ca.pem, &[]).await, Ok("ok".into()), "no pins: the CA alone decides");
}

#[tokio::test]
async fn a_key_that_is_not_pinned_is_refused_and_the_error_names_the_pins() {
    let ca = TestCa::new();
    let (collector, stranger) = (KeyPair::generate().expect("key"), KeyPair::generate().expect("key"));
    // A certificate the CA really issued for the collector's name: only the pin tells it apart.
    let url = ca.issue(&stranger, 1).serve().await;
    let err = get(&url, &ca.pem, &[pin_of(&collector)]).await.expect_err("not pinned");
    let presented = pin_of(&stranger).to_string();
    let pinned = pin_of(&collector).to_string();
    assert!(err.contains(&format!("the collector's TLS key {presented} is none of the pinned keys ({pinned})")), "{err}");
}

#[tokio::test]
async fn a_renewal_that_keeps_the_key_keeps_working_and_a_new_key_needs_the_backup_pin() {
    let ca = TestCa::new();
    let (live, backup) = (KeyPair::generate().expect("key"), KeyPair::generate().expect("key"));
    let first = ca.issue(&live, 1);
    let renewed = ca.issue(&live, 2);
    assert_ne!(first.cert, renewed.cert, "a different certificate");
    let (first, renewed) = (first.serve().await, renewed.serve().await);
    let pinned_live = [pin_of(&live)];
    assert_eq!(get(&first, &ca.pem, &pinned_live).await, Ok("ok".into()));
    assert_eq!(get(&renewed, &ca.pem, &pinned_live).await, Ok("ok".into()), "--reuse-key: same key, same pin");

    let rotated = ca.issue(&backup, 3).serve().await;
    let err = get(&rotated, &ca.pem, &pinned_live).await.expect_err("a new key nobody pinned");
    assert!(err.contains("none of the pinned keys"), "{err}");
    let with_backup = [pin_of(&live), pin_of(&backup)];
    assert_eq!(get(&rotated, &ca.pem, &with_backup).await, Ok("ok".into()), "the backup pinned beforehand");
}

#[tokio::test]
async fn a_matching_pin_does_not_stand_in_for_the_ca() {
    let ca = TestCa::new();
    let key = KeyPair::generate().expect("key");
    let url = Collector::self_signed(&key).serve().await;
    let err = get(&url, &ca.pem, &[pin_of(&key)]).await.expect_err("self-signed");
    assert!(err.contains("invalid peer certificate"), "webpki refused it first: {err}");
    assert!(!err.contains("pinned keys"), "{err}");
}

#[test]
fn collector_urls_pass_the_transport_rule_before_any_client_is_built() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let timeout = Duration::from_secs(5);
    let pins = [SpkiPin::of_spki(b"key")];
    let cases = [
        ("http://collector.example", CollectorAccess::default(), "plaintext HTTP to another machine"),
        ("http://127.0.0.1:8080", CollectorAccess { pins: &pins, ..CollectorAccess::default() }, "collector_pins are set"),
    ];
    for (url, access, needle) in cases {
        let err = collector_client(&[url.to_string()], &access, timeout).expect_err(url);
        assert!(matches!(err, ConfigError::Transport(_)), "{err:?}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    let lab = CollectorAccess { danger_plaintext: true, ..CollectorAccess::default() };
    assert!(collector_client(&["http://collector.example".to_string()], &lab, timeout).is_ok());
    assert!(collector_client(&["http://127.0.0.1:8080".to_string()], &CollectorAccess::default(), timeout).is_ok());
}
