//! GREASE ECH: a ClientHello that carries an Encrypted Client Hello extension (0xfe0d) with no
//! real ECH configuration behind it.
//!
//! # Why
//! Russia and China act on ClientHellos that carry ECH, whatever the SNI. The test for it (issue
//! 15 part 2, after OONI's `echcheck`) is a pair of handshakes to the same server, in random
//! order: one offering GREASE ECH ([`Ech::Grease`]) and a control without it ([`Ech::Control`]).
//! Both offer TLS 1.3 only — rustls requires that with ECH — so the extension is the one
//! difference a censor can key on. The GREASE one failing (reset, timeout, close) while the
//! control completes is ECH blocking; both failing is not evidence of it.
//!
//! # How, without a second crypto provider
//! rustls 0.23 builds the GREASE extension itself (`EchMode::Grease`) but asks an HPKE suite for
//! two things: the suite ids written in the extension, and the `enc` field, which it takes from
//! [`Hpke::setup_sealer`]. The payload is random bytes as long as a sealed inner hello would be;
//! nothing is ever sealed. rustls's only HPKE comes with the aws-lc-rs provider (AWS-LC, C of the
//! OpenSSL/BoringSSL lineage); the ring provider has none. So [`GreaseHpke`] answers
//! `setup_sealer` with a fresh X25519 public key from ring — exactly what a real DHKEM(X25519,
//! HKDF-SHA256) encapsulation puts on the wire — and refuses every real HPKE operation. Real ECH
//! (a config from the target's DNS HTTPS record) needs real HPKE and is not possible with this;
//! docs/ech.md has the decision for it (the pure-Rust `hpke` crate) and its measured size.
//!
//! # The pair
//! [`pair`] runs both handshakes to one address with one SNI, each on its own connection, in an
//! order drawn at random for every run (a residual block triggered by the first handshake would
//! otherwise always hit the same one), handshake only, no data phase. The GREASE side is recorded
//! as [`Role::Target`], the control as [`Role::Control`], from the probe and from the helper
//! alike; each handshake's [`TlsDetail`](vantage_measurement::TlsDetail) says what it offered
//! ([`EchOffer`]), and the observations are in the order they ran.
//!
//! The suite's types come from `rustls::internal::msgs`, which rustls documents as outside its
//! stable interface: a rustls update may move them (rustls 0.24 reworks this API).

use std::net::SocketAddr;

use ring::agreement::{EphemeralPrivateKey, X25519};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::Error;
use rustls::client::{EchGreaseConfig, EchMode};
use rustls::crypto::hpke::{EncapsulatedSecret, Hpke, HpkeOpener, HpkePrivateKey, HpkePublicKey, HpkeSealer, HpkeSuite};
use rustls::internal::msgs::enums::{HpkeAead, HpkeKdf, HpkeKem};
use rustls::internal::msgs::handshake::HpkeSymmetricCipherSuite;
use vantage_measurement::{EchOffer, Observation, Role};

use super::StepContext;
use super::tls::{DataPhase, handshake_offering};
use super::verify::TrustAnchors;

/// The TLS extension type of `encrypted_client_hello` (RFC 9849).
pub const ECH_EXTENSION: u16 = 0xfe0d;

/// What a ClientHello says about ECH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ech {
    /// No ECH extension; TLS 1.2 and 1.3 offered, as every other TLS step.
    Off,
    /// The control of the ECH pair: no ECH extension, TLS 1.3 only, so that it differs from
    /// [`Ech::Grease`] by the extension alone.
    Control,
    /// A GREASE ECH extension ([`ECH_EXTENSION`]); TLS 1.3 only.
    Grease,
}

impl Ech {
    /// What the handshake's detail records: nothing for [`Ech::Off`] (every test but `ech`).
    pub fn offer(self) -> Option<EchOffer> {
        match self {
            Ech::Off => None,
            Ech::Control => Some(EchOffer::None),
            Ech::Grease => Some(EchOffer::Grease),
        }
    }
}

/// Which handshake of the pair runs first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// The GREASE ECH handshake, then the control.
    EchFirst,
    /// The control, then the GREASE ECH handshake.
    ControlFirst,
}

impl Order {
    /// A fair coin (OONI's `echcheck` randomises too).
    pub fn random() -> Order {
        if rand::random::<bool>() { Order::EchFirst } else { Order::ControlFirst }
    }

    /// The pair's ClientHello shapes and their roles, in running order.
    pub fn steps(self) -> [(Ech, Role); 2] {
        let ech = (Ech::Grease, Role::Target);
        let control = (Ech::Control, Role::Control);
        match self {
            Order::EchFirst => [ech, control],
            Order::ControlFirst => [control, ech],
        }
    }
}

/// The ECH pair to `addr` with `sni`, in `order`: two connections, two TLS 1.3 handshakes that
/// differ by the GREASE ECH extension alone; their connect and handshake observations as they ran.
pub async fn pair(ctx: &StepContext, addr: SocketAddr, sni: &str, anchors: &TrustAnchors, order: Order) -> Vec<Observation> {
    let mut observations = Vec::new();
    for (ech, role) in order.steps() {
        observations.extend(handshake_offering(ctx, role, addr, sni, anchors, DataPhase::Skip, ech).await);
    }
    observations
}

/// The rustls ECH mode for a GREASE extension. The placeholder key is random and unused:
/// [`GreaseHpke`] encapsulates to no one.
pub fn grease_mode() -> Result<EchMode, Error> {
    let mut placeholder = [0u8; 32];
    SystemRandom::new().fill(&mut placeholder).map_err(|_| Error::FailedToGetRandomBytes)?;
    Ok(EchMode::Grease(EchGreaseConfig::new(&GreaseHpke, HpkePublicKey(placeholder.to_vec()))))
}

/// An HPKE "suite" that can only dress a GREASE ECH extension: DHKEM(X25519, HKDF-SHA256),
/// HKDF-SHA256, AES-128-GCM — the ECH mandatory-to-implement profile, and the suite rustls's own
/// examples GREASE with (via aws-lc-rs). Every operation that would protect data returns an error.
#[derive(Debug)]
pub struct GreaseHpke;

const SUITE: HpkeSuite = HpkeSuite {
    kem: HpkeKem::DHKEM_X25519_HKDF_SHA256,
    sym: HpkeSymmetricCipherSuite { kdf_id: HpkeKdf::HKDF_SHA256, aead_id: HpkeAead::AES_128_GCM },
};

fn grease_only() -> Error {
    Error::General("GREASE ECH only: no real HPKE".into())
}

impl Hpke for GreaseHpke {
    fn seal(&self, _: &[u8], _: &[u8], _: &[u8], _: &HpkePublicKey) -> Result<(EncapsulatedSecret, Vec<u8>), Error> {
        Err(grease_only())
    }

    /// A fresh X25519 public key as `enc`, and a sealer that refuses to seal.
    fn setup_sealer(&self, _: &[u8], _: &HpkePublicKey) -> Result<(EncapsulatedSecret, Box<dyn HpkeSealer>), Error> {
        let key = EphemeralPrivateKey::generate(&X25519, &SystemRandom::new()).map_err(|_| Error::FailedToGetRandomBytes)?;
        let public = key.compute_public_key().map_err(|_| grease_only())?;
        Ok((EncapsulatedSecret(public.as_ref().to_vec()), Box::new(NoSealer)))
    }

    fn open(&self, _: &EncapsulatedSecret, _: &[u8], _: &[u8], _: &[u8], _: &HpkePrivateKey) -> Result<Vec<u8>, Error> {
        Err(grease_only())
    }

    fn setup_opener(&self, _: &EncapsulatedSecret, _: &[u8], _: &HpkePrivateKey) -> Result<Box<dyn HpkeOpener>, Error> {
        Err(grease_only())
    }

    fn generate_key_pair(&self) -> Result<(HpkePublicKey, HpkePrivateKey), Error> {
        Err(grease_only())
    }

    fn suite(&self) -> HpkeSuite {
        SUITE
    }
}

#[derive(Debug)]
struct NoSealer;

impl HpkeSealer for NoSealer {
    fn seal(&mut self, _: &[u8], _: &[u8]) -> Result<Vec<u8>, Error> {
        Err(grease_only())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_order_runs_both_shapes_once_with_their_roles() {
        for order in [Order::EchFirst, Order::ControlFirst] {
            let steps = order.steps();
            assert!(steps.contains(&(Ech::Grease, Role::Target)) && steps.contains(&(Ech::Control, Role::Control)));
        }
        assert_eq!(Order::EchFirst.steps()[0].0, Ech::Grease);
        assert_eq!(Order::ControlFirst.steps()[0].0, Ech::Control);
        assert_eq!(Ech::Off.offer(), None);
        assert_eq!(Ech::Grease.offer(), Some(EchOffer::Grease));
    }

    #[test]
    fn enc_is_an_x25519_public_key_and_nothing_is_sealed() {
        let (enc, mut sealer) = GreaseHpke.setup_sealer(b"", &HpkePublicKey(vec![0; 32])).expect("sealer");
        assert_eq!(enc.0.len(), 32);
        let (again, _) = GreaseHpke.setup_sealer(b"", &HpkePublicKey(vec![0; 32])).expect("sealer");
        assert_ne!(enc.0, again.0, "each GREASE extension gets a fresh key");
        assert!(sealer.seal(b"", b"inner hello").is_err());
        assert!(GreaseHpke.seal(b"", b"", b"x", &HpkePublicKey(vec![0; 32])).is_err());
    }
}
