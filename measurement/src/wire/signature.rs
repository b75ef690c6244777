//! Batch signatures: the probe signs every upload with its ed25519 key, the collector verifies.
//!
//! The key answers one question for the collector: "did these batches come from the same probe?"
//! It is what lets operators count distinct probes ("blocked for 5 probes in 3 networks") without
//! the collector ever learning who or where a probe is. It is not an account: nobody registers a
//! key, and a volunteer who deletes the key simply becomes a new probe.
//!
//! ```text
//! POST /api/v1/measurements
//! Content-Encoding: gzip
//! X-Vantage-Key: <base64 of the 32-byte ed25519 public key>
//! X-Vantage-Signature: <base64 of the 64-byte ed25519 signature over the exact body bytes>
//! X-Vantage-Spool-Pending: <measurements still waiting on the probe after this batch>
//! ```
//!
//! Base64 is the standard alphabet with padding (RFC 4648 §4). The signature covers the body as
//! sent (the gzip bytes), so the collector checks it before inflating or parsing anything. Batches
//! without both headers are accepted as anonymous; a batch with a bad signature is refused.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Header carrying the base64 public key.
pub const KEY_HEADER: &str = "x-vantage-key";
/// Header carrying the base64 signature over the request body.
pub const SIGNATURE_HEADER: &str = "x-vantage-signature";
/// Header carrying how many measurements still wait in the probe's spool after this batch.
pub const SPOOL_PENDING_HEADER: &str = "x-vantage-spool-pending";

/// Hex characters of a [`KeyId`].
pub const KEY_ID_HEX_LEN: usize = 16;

/// Why a batch signature was refused. The messages go back to the submitter, so they say what is
/// wrong without echoing what was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// Only one of the two headers was sent.
    #[error("a signed batch needs both X-Vantage-Key and X-Vantage-Signature (missing {0})")]
    MissingHeader(&'static str),
    /// A header is not base64.
    #[error("{0} is not standard base64")]
    NotBase64(&'static str),
    /// The public key has the wrong length.
    #[error("X-Vantage-Key must be a 32-byte ed25519 public key, got {0} bytes")]
    KeyLength(usize),
    /// The public key is not a usable curve point.
    #[error("X-Vantage-Key is not a valid ed25519 public key")]
    InvalidKey,
    /// The signature has the wrong length.
    #[error("X-Vantage-Signature must be a 64-byte ed25519 signature, got {0} bytes")]
    SignatureLength(usize),
    /// The signature does not match the body.
    #[error("X-Vantage-Signature does not verify: the body was altered or signed with another key")]
    Mismatch,
}

/// A probe's pseudonym: the first 16 hex characters (64 bits) of SHA-256 of its public key.
///
/// Enough to tell probes apart (a collision among a few million probes is unlikely), too short to
/// be mistaken for the key itself. The collector stores it beside each measurement to count
/// distinct probes; it never appears in measurement JSON, metrics or logs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// The key id of `public`.
    pub fn of(public: &VerifyingKey) -> KeyId {
        let digest = Sha256::digest(public.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        KeyId(hex[..KEY_ID_HEX_LEN].to_string())
    }

    /// The 16 lower-case hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    // Debug output ends up in logs; the id is only for the store.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyId(..)")
    }
}

/// The probe's signing key.
pub struct ProbeKey {
    signing: SigningKey,
}

impl fmt::Debug for ProbeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProbeKey(..)")
    }
}

impl ProbeKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> ProbeKey {
        ProbeKey { signing: SigningKey::generate(&mut rand_core::OsRng) }
    }

    /// The key with this 32-byte secret seed (tests, and loading the key file).
    pub fn from_seed(seed: &[u8; 32]) -> ProbeKey {
        ProbeKey { signing: SigningKey::from_bytes(seed) }
    }

    /// The 32-byte secret seed, for the probe's key file and nothing else.
    pub fn seed(&self) -> &[u8; 32] {
        self.signing.as_bytes()
    }

    /// The public key as sent in [`KEY_HEADER`].
    pub fn public_key_base64(&self) -> String {
        BASE64.encode(self.signing.verifying_key().as_bytes())
    }

    /// The signature over `body` as sent in [`SIGNATURE_HEADER`].
    pub fn sign_base64(&self, body: &[u8]) -> String {
        BASE64.encode(self.signing.sign(body).to_bytes())
    }

    /// The public half.
    pub(crate) fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// This probe's pseudonym, as the collector computes it.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.signing.verifying_key())
    }
}

/// Check a batch: `key_b64` and `signature_b64` are the header values, `body` the exact bytes
/// received. Returns the signer's [`KeyId`].
///
/// Uses ed25519's strict verification (no small-order keys, no malleable signatures), so one body
/// has exactly one valid signature per key.
pub fn verify_batch(key_b64: &str, signature_b64: &str, body: &[u8]) -> Result<KeyId, SignatureError> {
    let key_bytes = BASE64.decode(key_b64.trim()).map_err(|_| SignatureError::NotBase64("X-Vantage-Key"))?;
    let key_bytes: [u8; 32] = key_bytes.as_slice().try_into().map_err(|_| SignatureError::KeyLength(key_bytes.len()))?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| SignatureError::InvalidKey)?;
    let signature_bytes = BASE64.decode(signature_b64.trim()).map_err(|_| SignatureError::NotBase64("X-Vantage-Signature"))?;
    let signature_bytes: [u8; 64] =
        signature_bytes.as_slice().try_into().map_err(|_| SignatureError::SignatureLength(signature_bytes.len()))?;
    let signature = Signature::from_bytes(&signature_bytes);
    key.verify_strict(body, &signature).map_err(|_| SignatureError::Mismatch)?;
    Ok(KeyId::of(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_body_verifies_to_the_signers_key_id() {
        let key = ProbeKey::from_seed(&[7; 32]);
        let body = b"\x1f\x8b compressed batch bytes";
        let id = verify_batch(&key.public_key_base64(), &key.sign_base64(body), body).expect("valid");
        assert_eq!(id, key.key_id());
        assert_eq!(id.as_str().len(), KEY_ID_HEX_LEN);
        assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn the_key_id_is_the_sha256_prefix_of_the_public_key() {
        let key = ProbeKey::from_seed(&[7; 32]);
        let public = BASE64.decode(key.public_key_base64()).expect("base64");
        let digest = Sha256::digest(&public);
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        assert_eq!(key.key_id().as_str(), hex);
        assert_eq!(format!("{:?}", key.key_id()), "KeyId(..)", "Debug never prints the id");
    }

    #[test]
    fn altered_bodies_other_keys_and_garbage_are_refused_precisely() {
        let key = ProbeKey::from_seed(&[7; 32]);
        let other = ProbeKey::from_seed(&[8; 32]);
        let body = b"batch";
        let signature = key.sign_base64(body);
        let public = key.public_key_base64();
        assert_eq!(verify_batch(&public, &signature, b"batcH"), Err(SignatureError::Mismatch));
        assert_eq!(verify_batch(&other.public_key_base64(), &signature, body), Err(SignatureError::Mismatch));
        assert_eq!(verify_batch("not base64!", &signature, body), Err(SignatureError::NotBase64("X-Vantage-Key")));
        assert_eq!(verify_batch(&BASE64.encode([1u8; 31]), &signature, body), Err(SignatureError::KeyLength(31)));
        assert_eq!(verify_batch(&public, &BASE64.encode([0u8; 10]), body), Err(SignatureError::SignatureLength(10)));
        assert_eq!(verify_batch(&public, "***", body), Err(SignatureError::NotBase64("X-Vantage-Signature")));
    }
}
