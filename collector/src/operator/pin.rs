//! The pin of the collector's TLS key, from the operator's own files: `vantage-collector pin
//! FILE` prints it, and `invite --pin-from FILE` puts it in invitations.
//!
//! FILE is PEM: a certificate (the first one is used: `cert.pem` and `fullchain.pem` both start
//! with the collector's own), a public key (`openssl pkey -in KEY -pubout`), or an unencrypted
//! PKCS#8 private key (`BEGIN PRIVATE KEY`, as certbot and `openssl genpkey` write it). A key file
//! is how the backup key's pin is made before that key has any certificate. PKCS#1 and SEC1 keys
//! (`BEGIN RSA/EC PRIVATE KEY`) are refused with the command that converts them. A pin names the
//! key, so the certificate and its key give the same pin.

use std::path::Path;

use anyhow::{Context, bail};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::{self, SectionKind};
use vantage_measurement::wire::pin::SpkiPin;

/// The pin of the key in the PEM file at `path`.
pub fn pin_of_file(path: &Path) -> anyhow::Result<SpkiPin> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    pin_of_pem(&bytes).with_context(|| format!("{}: no key pin", path.display()))
}

/// The pin of the first certificate or key in PEM text.
pub fn pin_of_pem(mut pem_text: &[u8]) -> anyhow::Result<SpkiPin> {
    while let Some((kind, der)) = pem::from_buf(&mut pem_text).context("not PEM")? {
        match kind {
            SectionKind::Certificate => return Ok(SpkiPin::of_certificate(&der)?),
            SectionKind::PublicKey => return Ok(SpkiPin::of_spki(&der)),
            SectionKind::PrivateKey => {
                let key = rcgen::KeyPair::try_from(&PrivatePkcs8KeyDer::from(der))
                    .context("a PKCS#8 private key of a kind this tool can't read (RSA, ECDSA P-256/P-384 or Ed25519 are)")?;
                return Ok(SpkiPin::of_spki(&rcgen::PublicKeyData::subject_public_key_info(&key)));
            }
            SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey => bail!(
                "a PKCS#1/SEC1 private key: pin its public half instead \
                 (`openssl pkey -in KEY -pubout -out KEY.pub`, then use KEY.pub)"
            ),
            // A CSR or CRL is no key of the collector's; keep looking.
            _ => {}
        }
    }
    bail!("no CERTIFICATE, PUBLIC KEY or PRIVATE KEY block")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_and_its_certificate_give_the_same_pin() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert =
            rcgen::CertificateParams::new(vec!["collector.example".into()]).expect("params").self_signed(&key).expect("cert");
        let from_cert = pin_of_pem(cert.pem().as_bytes()).expect("certificate");
        assert_eq!(pin_of_pem(key.serialize_pem().as_bytes()).expect("private key"), from_cert);
        assert_eq!(pin_of_pem(key.public_key_pem().as_bytes()).expect("public key"), from_cert);
        // fullchain.pem: the collector's certificate first; what follows is not its key.
        let other = rcgen::KeyPair::generate().expect("key");
        let ca = rcgen::CertificateParams::new(vec![]).expect("params").self_signed(&other).expect("ca");
        let chain = format!("{}{}", cert.pem(), ca.pem());
        assert_eq!(pin_of_pem(chain.as_bytes()).expect("chain"), from_cert);
    }

    #[test]
    fn files_without_a_usable_key_say_why() {
        for (text, needle) in [
            ("", "no CERTIFICATE, PUBLIC KEY or PRIVATE KEY"),
            ("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n", "openssl pkey -in KEY -pubout"),
            ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a DER certificate"),
        ] {
            let err = format!("{:#}", pin_of_pem(text.as_bytes()).expect_err(needle));
            assert!(err.contains(needle), "{err}");
        }
    }
}
