//! Key registration: a probe key proves a little work once before the collector will ever let it
//! count.
//!
//! Keys cost nothing to make, so without a price one machine could mint thousands of "probes"
//! and outvote the real ones in every fleet figure. Registration puts a small, one-off CPU price
//! on a key (a hashcash-style proof of work) and proves that whoever registers holds the secret
//! key. It is only the entry fee: a registered key still has to report for a while before it
//! counts (the collector's trust policy). The exchange:
//!
//! ```text
//! GET  /api/v1/keys/challenge  → {"salt": "<base64>", "difficulty_bits": 25}
//! POST /api/v1/keys            ← {"public_key": "<base64>", "nonce": 123, "signature": "<base64>"}
//!                              → 201 registered now, 200 already registered, 4xx with a reason
//! ```
//!
//! The work: find a `nonce` such that
//! `SHA-256("vantage-key-registration-v1" ‖ salt ‖ public key ‖ nonce as 8 bytes little-endian)`
//! starts with at least `difficulty_bits` zero bits (salt and key as raw bytes, decoded from
//! base64). The salt is random per collector installation, so work done for one collector is
//! worth nothing at another, and none can be done before the collector exists. The signature,
//! by the probe key, covers `"vantage-key-registration-v1" ‖ salt ‖ nonce` (ed25519 binds the
//! public key itself).
//!
//! Verifying costs the collector one hash and one signature check; solving costs the probe
//! 2^`difficulty_bits` hashes on average ([`DEFAULT_DIFFICULTY_BITS`] says what that is in
//! seconds). A probe refuses a challenge above [`MAX_DIFFICULTY_BITS`], so a hostile or broken
//! collector can't keep it busy for hours.

use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, VerifyingKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::digest::consts::U64;
use sha2::digest::generic_array::GenericArray;

use super::signature::{KeyId, ProbeKey};

/// Where a probe asks for the challenge (`GET`).
pub const CHALLENGE_PATH: &str = "/api/v1/keys/challenge";
/// Where a probe registers its key (`POST`).
pub const REGISTER_PATH: &str = "/api/v1/keys";
/// What every hash and signature of this exchange starts with, so neither can be replayed as
/// anything else (a batch signature, a deletion request).
pub const CONTEXT: &[u8] = b"vantage-key-registration-v1";
/// The default work: 2^25 (33.5 million) hashes on average, about 1.6 s on one core of an AMD EPYC
/// with SHA instructions (20 million hashes a second, release build; 4.8 million in a debug
/// build), half a minute or so on a Raspberry Pi without them. Measured with
/// `examples/registration_work.rs`; docs/security.md has the figures.
pub const DEFAULT_DIFFICULTY_BITS: u8 = 25;
/// The most work a probe agrees to do (eight times the default): a collector asking more is
/// refused, so a hostile or mistaken one can't keep a volunteer's CPU busy for long.
pub const MAX_DIFFICULTY_BITS: u8 = 28;
/// Random bytes in a collector's salt.
pub const SALT_BYTES: usize = 16;

/// The collector's challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationChallenge {
    /// This collector installation's salt, standard base64.
    pub salt: String,
    /// Leading zero bits the proof's hash must have.
    pub difficulty_bits: u8,
}

impl RegistrationChallenge {
    /// A fresh random salt for a new collector installation, as carried in [`Self::salt`].
    pub fn random_salt() -> String {
        let mut salt = [0u8; SALT_BYTES];
        OsRng.fill_bytes(&mut salt);
        BASE64.encode(salt)
    }
}

/// A probe's registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationRequest {
    /// The 32-byte ed25519 public key, standard base64 (as in the batch signature header).
    pub public_key: String,
    /// The proof of work.
    pub nonce: u64,
    /// The probe key's signature over [`CONTEXT`] ‖ salt ‖ nonce, standard base64.
    pub signature: String,
}

/// Why a registration (or a challenge) was refused. The messages go back to the submitter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// A field is not standard base64.
    #[error("{0} is not standard base64")]
    NotBase64(&'static str),
    /// The public key has the wrong length.
    #[error("public_key must be a 32-byte ed25519 public key, got {0} bytes")]
    KeyLength(usize),
    /// The public key is not a usable curve point.
    #[error("public_key is not a valid ed25519 public key")]
    InvalidKey,
    /// The signature has the wrong length.
    #[error("signature must be a 64-byte ed25519 signature, got {0} bytes")]
    SignatureLength(usize),
    /// The hash has too few leading zero bits (wrong nonce, or work done for another salt).
    #[error("the proof of work has {found} leading zero bits; this collector asks for {needed}")]
    InsufficientWork {
        /// What the challenge asks.
        needed: u8,
        /// What the nonce gives.
        found: u32,
    },
    /// The signature does not verify.
    #[error("signature does not verify: not made by this key over this collector's salt and this nonce")]
    BadSignature,
    /// The challenge asks for more work than a probe does.
    #[error("the collector asks for {0} bits of work; a probe does at most {MAX_DIFFICULTY_BITS}")]
    TooDifficult(u8),
}

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const H0: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// SHA-256 of `CONTEXT ‖ salt ‖ public key ‖ nonce`, prepared once per key: the state after the
/// prefix's whole blocks, and the last block(s) with the padding and length already in place, so
/// each nonce costs writing 8 bytes and one call of sha2's `compress256` (SHA instructions where
/// the CPU has them) with nothing generic around it: a debug build solves nearly as fast as a
/// release one.
struct Work {
    state: [u32; 8],
    last: [GenericArray<u8, U64>; 2],
    blocks: usize,
    nonce_at: usize,
}

impl Work {
    fn new(salt: &[u8], public_key: &[u8; 32]) -> Work {
        let data = [CONTEXT, salt, public_key].concat();
        let whole = data.len() / 64 * 64;
        let mut state = H0;
        for block in data[..whole].chunks_exact(64) {
            sha2::compress256(&mut state, std::slice::from_ref(GenericArray::from_slice(block)));
        }
        // The rest of the message, 8 nonce bytes, the 0x80 marker and the bit length.
        let rest = data.len() - whole;
        let blocks = if rest + 8 + 1 + 8 <= 64 { 1 } else { 2 };
        let mut last = [0u8; 128];
        last[..rest].copy_from_slice(&data[whole..]);
        last[rest + 8] = 0x80;
        let bits = (data.len() as u64 + 8) * 8;
        last[blocks * 64 - 8..blocks * 64].copy_from_slice(&bits.to_be_bytes());
        let last = [GenericArray::clone_from_slice(&last[..64]), GenericArray::clone_from_slice(&last[64..])];
        Work { state, last, blocks, nonce_at: rest }
    }

    /// The leading zero bits of the hash with `nonce`.
    fn zeros(&mut self, nonce: u64) -> u32 {
        for (i, byte) in nonce.to_le_bytes().into_iter().enumerate() {
            let at = self.nonce_at + i;
            self.last[at / 64][at % 64] = byte;
        }
        let mut state = self.state;
        sha2::compress256(&mut state, &self.last[..self.blocks]);
        // The digest is the state words, big-endian: count through them.
        let mut zeros = 0;
        for word in state {
            zeros += word.leading_zeros();
            if word != 0 {
                break;
            }
        }
        zeros
    }
}

fn salt_bytes(challenge: &RegistrationChallenge) -> Result<Vec<u8>, RegistrationError> {
    BASE64.decode(challenge.salt.trim()).map_err(|_| RegistrationError::NotBase64("salt"))
}

fn signed_message(salt: &[u8], nonce: u64) -> Vec<u8> {
    [CONTEXT, salt, &nonce.to_le_bytes()].concat()
}

/// Find the nonce for `key` (CPU-bound: run it on a blocking thread). Refuses a challenge above
/// [`MAX_DIFFICULTY_BITS`] or with a salt that is not base64.
pub fn solve(key: &ProbeKey, challenge: &RegistrationChallenge) -> Result<u64, RegistrationError> {
    // Never stopped, so it ends only with a nonce: at most 28 bits are found long before the u64
    // space ends (the chance of none among the first 2^40 tries is e^-4096).
    solve_unless(key, challenge, &AtomicBool::new(false)).map(|nonce| nonce.unwrap_or(u64::MAX))
}

/// [`solve`], giving up (`None`) soon after `stop` is set: a probe shutting down does not wait
/// for the work to finish.
pub fn solve_unless(
    key: &ProbeKey,
    challenge: &RegistrationChallenge,
    stop: &AtomicBool,
) -> Result<Option<u64>, RegistrationError> {
    if challenge.difficulty_bits > MAX_DIFFICULTY_BITS {
        return Err(RegistrationError::TooDifficult(challenge.difficulty_bits));
    }
    let salt = salt_bytes(challenge)?;
    let mut work = Work::new(&salt, key.verifying_key().as_bytes());
    let needed = u32::from(challenge.difficulty_bits);
    for nonce in 0..=u64::MAX {
        // A relaxed load every 65 536 hashes (a few milliseconds) costs nothing measurable.
        if nonce % (1 << 16) == 0 && stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if work.zeros(nonce) >= needed {
            return Ok(Some(nonce));
        }
    }
    Ok(None)
}

/// The request proving `nonce` (from [`solve`]) for `key`.
pub fn request(key: &ProbeKey, challenge: &RegistrationChallenge, nonce: u64) -> Result<RegistrationRequest, RegistrationError> {
    let salt = salt_bytes(challenge)?;
    let signature = key.sign_base64(&signed_message(&salt, nonce));
    Ok(RegistrationRequest { public_key: key.public_key_base64(), nonce, signature })
}

/// Check a registration against this collector's challenge; returns the key's id. The work is
/// checked first (one hash), then the signature, with ed25519's strict rules as for batches.
pub fn verify(request: &RegistrationRequest, challenge: &RegistrationChallenge) -> Result<KeyId, RegistrationError> {
    let salt = salt_bytes(challenge)?;
    let key_bytes = BASE64.decode(request.public_key.trim()).map_err(|_| RegistrationError::NotBase64("public_key"))?;
    let key_bytes: [u8; 32] = key_bytes.as_slice().try_into().map_err(|_| RegistrationError::KeyLength(key_bytes.len()))?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| RegistrationError::InvalidKey)?;
    let signature_bytes = BASE64.decode(request.signature.trim()).map_err(|_| RegistrationError::NotBase64("signature"))?;
    let signature_bytes: [u8; 64] =
        signature_bytes.as_slice().try_into().map_err(|_| RegistrationError::SignatureLength(signature_bytes.len()))?;
    let found = Work::new(&salt, &key_bytes).zeros(request.nonce);
    if found < u32::from(challenge.difficulty_bits) {
        return Err(RegistrationError::InsufficientWork { needed: challenge.difficulty_bits, found });
    }
    key.verify_strict(&signed_message(&salt, request.nonce), &Signature::from_bytes(&signature_bytes))
        .map_err(|_| RegistrationError::BadSignature)?;
    Ok(KeyId::of(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small enough for a debug build to solve at once, large enough to be a real check.
    const TEST_BITS: u8 = 12;

    fn challenge(salt: &[u8]) -> RegistrationChallenge {
        RegistrationChallenge { salt: BASE64.encode(salt), difficulty_bits: TEST_BITS }
    }

    fn proved(key: &ProbeKey, challenge: &RegistrationChallenge) -> RegistrationRequest {
        let nonce = solve(key, challenge).expect("solvable");
        request(key, challenge, nonce).expect("request")
    }

    #[test]
    fn the_work_hash_is_sha256_of_the_whole_message() {
        use sha2::{Digest, Sha256};
        let key = ProbeKey::from_seed(&[7; 32]);
        // Salts that leave 0..63 bytes for the last block, so both one- and two-block endings run.
        for salt_len in 0..80 {
            let salt = vec![0xa5u8; salt_len];
            let public = key.verifying_key();
            for nonce in [0, 1, 0x0123_4567_89ab_cdef, u64::MAX] {
                let whole = Sha256::digest([CONTEXT, &salt, public.as_bytes(), &nonce.to_le_bytes()].concat());
                let bits: String = whole.iter().map(|b| format!("{b:08b}")).collect();
                let expected = bits.chars().take_while(|c| *c == '0').count() as u32;
                let mut work = Work::new(&salt, public.as_bytes());
                assert_eq!(work.zeros(nonce), expected, "salt {salt_len}, nonce {nonce}");
            }
        }
        // And a nonce the solver found really has that many zeros in plain SHA-256.
        let ours = challenge(b"collector salt 1");
        let nonce = solve(&key, &ours).expect("solvable");
        let whole = Sha256::digest([CONTEXT, b"collector salt 1", key.verifying_key().as_bytes(), &nonce.to_le_bytes()].concat());
        assert_eq!(u32::from(whole[0]), 0);
        assert!(whole[1] < 0x10, "12 bits: {:02x}{:02x}", whole[0], whole[1]);
    }

    #[test]
    fn a_solved_challenge_verifies_to_the_key_id() {
        let key = ProbeKey::from_seed(&[7; 32]);
        let ours = challenge(b"collector salt 1");
        let request = proved(&key, &ours);
        assert_eq!(verify(&request, &ours), Ok(key.key_id()));
        // The hash really has the zeros the challenge asks for.
        let public: [u8; 32] = BASE64.decode(&request.public_key).expect("b64").try_into().expect("32");
        assert!(Work::new(b"collector salt 1", &public).zeros(request.nonce) >= u32::from(TEST_BITS));
        // And the request survives JSON both ways.
        let json = serde_json::to_string(&request).expect("json");
        assert_eq!(serde_json::from_str::<RegistrationRequest>(&json).expect("parse"), request);
    }

    #[test]
    fn work_for_another_salt_or_too_little_work_is_refused() {
        let key = ProbeKey::from_seed(&[7; 32]);
        let ours = challenge(b"collector salt 1");
        let theirs = challenge(b"collector salt 2");
        let elsewhere = proved(&key, &theirs);
        // Work done for another collector: the hash misses (and the signature names the other salt).
        assert!(matches!(verify(&elsewhere, &ours), Err(RegistrationError::InsufficientWork { needed: TEST_BITS, .. })));

        // The first nonce that falls short of the bits.
        let mut work = Work::new(b"collector salt 1", key.verifying_key().as_bytes());
        let weak = (0..).find(|n| work.zeros(*n) < u32::from(TEST_BITS)).expect("some nonce");
        let lazy = request(&key, &ours, weak).expect("request");
        let found = work.zeros(weak);
        assert_eq!(verify(&lazy, &ours), Err(RegistrationError::InsufficientWork { needed: TEST_BITS, found }));

        // The same request against a harder challenge of the same collector.
        let harder = RegistrationChallenge { difficulty_bits: 20, ..ours.clone() };
        let good = proved(&key, &ours);
        assert!(matches!(verify(&good, &harder), Err(RegistrationError::InsufficientWork { needed: 20, .. })));
    }

    #[test]
    fn a_signature_by_another_key_or_over_another_nonce_is_refused() {
        let key = ProbeKey::from_seed(&[7; 32]);
        let thief = ProbeKey::from_seed(&[8; 32]);
        let ours = challenge(b"collector salt 1");
        let mut request = proved(&key, &ours);
        request.signature = proved(&thief, &ours).signature;
        assert_eq!(verify(&request, &ours), Err(RegistrationError::BadSignature));
        let mut request = proved(&key, &ours);
        let other_nonce = super::request(&key, &ours, request.nonce.wrapping_add(1)).expect("request");
        request.signature = other_nonce.signature;
        assert_eq!(verify(&request, &ours), Err(RegistrationError::BadSignature));
    }

    #[test]
    fn garbage_is_refused_precisely() {
        let key = ProbeKey::from_seed(&[7; 32]);
        let ours = challenge(b"collector salt 1");
        let good = proved(&key, &ours);
        let with = |edit: fn(&mut RegistrationRequest)| {
            let mut r = good.clone();
            edit(&mut r);
            verify(&r, &ours)
        };
        assert_eq!(with(|r| r.public_key = "not base64!".into()), Err(RegistrationError::NotBase64("public_key")));
        assert_eq!(with(|r| r.public_key = BASE64.encode([1u8; 31])), Err(RegistrationError::KeyLength(31)));
        assert_eq!(with(|r| r.signature = "***".into()), Err(RegistrationError::NotBase64("signature")));
        assert_eq!(with(|r| r.signature = BASE64.encode([0u8; 10])), Err(RegistrationError::SignatureLength(10)));
        let bad_salt = RegistrationChallenge { salt: "%%%".into(), difficulty_bits: TEST_BITS };
        assert_eq!(verify(&good, &bad_salt), Err(RegistrationError::NotBase64("salt")));
        assert_eq!(solve(&key, &bad_salt), Err(RegistrationError::NotBase64("salt")));
    }

    #[test]
    fn a_probe_refuses_a_challenge_that_asks_too_much() {
        let key = ProbeKey::from_seed(&[7; 32]);
        let greedy = RegistrationChallenge { salt: BASE64.encode(b"s"), difficulty_bits: MAX_DIFFICULTY_BITS + 1 };
        assert_eq!(solve(&key, &greedy), Err(RegistrationError::TooDifficult(MAX_DIFFICULTY_BITS + 1)));
        let hard = RegistrationChallenge { salt: BASE64.encode(b"s"), difficulty_bits: MAX_DIFFICULTY_BITS };
        assert_eq!(solve_unless(&key, &hard, &AtomicBool::new(true)), Ok(None), "stopped before it began");
        let salt = BASE64.decode(RegistrationChallenge::random_salt()).expect("base64");
        assert_eq!(salt.len(), SALT_BYTES);
        assert_ne!(RegistrationChallenge::random_salt(), RegistrationChallenge::random_salt());
    }
}
