//! Signed target lists: what the collector's operator asks the fleet to measure, and the proof
//! that the operator, and nobody on the path, said so.
//!
//! ```text
//! GET /api/v1/targets
//! {"format": "vantage-target-list/1",
//!  "document": "<the ListDocument as JSON text, signed byte for byte>",
//!  "signer": "<base64 ed25519 public key>",
//!  "signature": "<base64 signature over LIST_CONTEXT || document>",
//!  "endorsements": [{"key": "<new>", "signed_by": "<old>", "signature": "…"}],
//!  "revocations": [{"key": "<revoked>", "signature": "…"}]}
//! ```
//!
//! The probe pins the operator's list key from its invitation and accepts a list only through
//! [`verify`]: signed by the pinned key, or by a key the pinned key endorsed (directly or through
//! a chain of endorsements: how the operator rotates the key), with no key on the way revoked, not
//! expired, and not older than the last list it accepted (a replayed old list could switch a
//! kill switch back off). Each statement is signed under its own context string, so a signature
//! made for one purpose can never be replayed as another.
//!
//! The document carries the targets file as TOML text: the probe parses it with the same parser
//! as a local targets file, and the collector checked it with that parser before signing.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::TestKind;
use crate::wire::pin::{MAX_PINS, PinError, SpkiPin};

/// The envelope's `format`.
pub const LIST_FORMAT: &str = "vantage-target-list/1";
/// The path the collector serves the signed list on.
pub const LIST_PATH: &str = "/api/v1/targets";
/// Signed before a list document.
const LIST_CONTEXT: &[u8] = b"vantage target list v1\0";
/// Signed before the public key an old key endorses.
const ENDORSE_CONTEXT: &[u8] = b"vantage list key endorsement v1\0";
/// Signed before the public key a key revokes (its own).
const REVOKE_CONTEXT: &[u8] = b"vantage list key revocation v1\0";
/// The most endorsements a probe follows from its pinned key (rotations between two fetches).
pub const MAX_ENDORSEMENTS: usize = 16;

/// What the operator publishes: the targets, how often to measure them, and what is switched off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListDocument {
    /// Increases with every list the operator signs; a probe refuses anything older than it has.
    pub version: u64,
    /// When the operator signed it.
    pub issued_at: DateTime<Utc>,
    /// After this, probes stop using it (a list nobody maintains should not run forever).
    pub expires_at: DateTime<Utc>,
    /// How often each target's tests run, seconds.
    pub interval_secs: u64,
    /// Tests switched off fleet-wide (a kill switch for a test that turns out to be risky).
    #[serde(default)]
    pub disabled_tests: Vec<TestKind>,
    /// Targets switched off by name.
    #[serde(default)]
    pub disabled_targets: Vec<String>,
    /// The names that get a `target` metric label of their own; every other target counts as
    /// `other`. A list may hold more targets than the collector's label budget.
    #[serde(default)]
    pub labelled: Vec<String>,
    /// The targets file (TOML, `[[target]]` tables), as a local `--targets` file has it.
    pub targets_toml: String,
}

/// The signed envelope as served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedList {
    /// [`LIST_FORMAT`].
    pub format: String,
    /// The [`ListDocument`] as JSON text: the exact bytes signed.
    pub document: String,
    /// The signing key (base64).
    pub signer: String,
    /// The signature (base64).
    pub signature: String,
    /// Old keys vouching for their successors, oldest first.
    #[serde(default)]
    pub endorsements: Vec<Endorsement>,
    /// Keys their holder has withdrawn.
    #[serde(default)]
    pub revocations: Vec<Revocation>,
}

/// "`signed_by` hands over to `key`": how a list key is rotated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endorsement {
    /// The new key (base64).
    pub key: String,
    /// The old key (base64).
    pub signed_by: String,
    /// The old key's signature over the new key (base64).
    pub signature: String,
}

/// "`key` must no longer be trusted", signed by that key itself (made when the key is, and kept
/// apart from it, so that losing the key does not lose the means to withdraw it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoked key (base64).
    pub key: String,
    /// Its own signature over itself (base64).
    pub signature: String,
}

/// Why a list was refused. Every message says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// Not the envelope this version understands.
    #[error("not a signed target list ({0}); is this a Vantage collector of a compatible version?")]
    Malformed(String),
    /// A key or signature is not base64 of the right length.
    #[error("the list's {0} is not a valid ed25519 key or signature")]
    BadEncoding(&'static str),
    /// Signed by a key the probe has no reason to trust.
    #[error(
        "the list is signed by {signer}, which the pinned key {pinned} never endorsed; refusing it (re-join with a new invitation if the operator changed keys)"
    )]
    UnknownSigner {
        /// The signer's fingerprint.
        signer: String,
        /// The pinned key's fingerprint.
        pinned: String,
    },
    /// The signature does not match: the list was altered after signing.
    #[error("the list's signature does not verify: it was altered after the operator signed it; refusing it")]
    Tampered,
    /// An endorsement in the chain does not verify.
    #[error("a key endorsement in the list does not verify; refusing it")]
    BadEndorsement,
    /// A key on the way was revoked.
    #[error("the list key {0} was revoked by its operator; ask the operator for a new invitation")]
    Revoked(String),
    /// Past its expiry.
    #[error("the list expired at {0}; keeping the last good list until the operator publishes a new one")]
    Expired(DateTime<Utc>),
    /// Older than the list the probe already has.
    #[error("the list is version {got}, older than version {have} already accepted (a replay?); refusing it")]
    Older {
        /// The version offered.
        got: u64,
        /// The version the probe has.
        have: u64,
    },
}

/// What the probe trusts: the pinned key and the newest version it accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListTrust {
    /// The pinned list key (base64); moves forward along endorsements.
    pub pinned: String,
    /// The newest version accepted so far.
    #[serde(default)]
    pub version: Option<u64>,
}

/// A list that passed [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedList {
    /// The document.
    pub document: ListDocument,
    /// The key that signed it: the probe's pin from now on.
    pub signer: String,
}

impl VerifiedList {
    /// The trust to keep after accepting this list.
    pub fn trust(&self) -> ListTrust {
        ListTrust { pinned: self.signer.clone(), version: Some(self.document.version) }
    }
}

/// Check a served list against what the probe trusts, at `now`. Order matters for the messages:
/// a tampered list is called tampered even if it is also old.
pub fn verify(list: &SignedList, trust: &ListTrust, now: DateTime<Utc>) -> Result<VerifiedList, ListError> {
    if list.format != LIST_FORMAT {
        return Err(ListError::Malformed(format!("format `{}`", list.format)));
    }
    let pinned = decode_key("pinned key", &trust.pinned)?;
    let revoked = revoked_keys(&list.revocations)?;
    let signer = decode_key("signer", &list.signer)?;
    check_chain(&pinned, &signer, &list.endorsements, &revoked)?;
    let signature = decode_signature("signature", &list.signature)?;
    signer.verify_strict(&[LIST_CONTEXT, list.document.as_bytes()].concat(), &signature).map_err(|_| ListError::Tampered)?;
    let document: ListDocument =
        serde_json::from_str(&list.document).map_err(|e| ListError::Malformed(format!("document: {e}")))?;
    if document.expires_at <= now {
        return Err(ListError::Expired(document.expires_at));
    }
    if let Some(have) = trust.version.filter(|&have| document.version < have) {
        return Err(ListError::Older { got: document.version, have });
    }
    Ok(VerifiedList { document, signer: list.signer.clone() })
}

/// The signer is the pinned key, or reached from it by endorsements, none of them revoked.
fn check_chain(
    pinned: &VerifyingKey,
    signer: &VerifyingKey,
    chain: &[Endorsement],
    revoked: &[VerifyingKey],
) -> Result<(), ListError> {
    let mut current = *pinned;
    let mut steps = 0;
    loop {
        if revoked.contains(&current) {
            return Err(ListError::Revoked(fingerprint(&current)));
        }
        if current == *signer {
            return Ok(());
        }
        let Some(next) = chain.iter().find(|e| decode_key("endorsed key", &e.signed_by).is_ok_and(|k| k == current)) else {
            return Err(ListError::UnknownSigner { signer: fingerprint(signer), pinned: fingerprint(pinned) });
        };
        steps += 1;
        if steps > MAX_ENDORSEMENTS {
            return Err(ListError::BadEndorsement);
        }
        let key = decode_key("endorsed key", &next.key)?;
        let signature = decode_signature("endorsement", &next.signature)?;
        current.verify_strict(&[ENDORSE_CONTEXT, key.as_bytes()].concat(), &signature).map_err(|_| ListError::BadEndorsement)?;
        current = key;
    }
}

/// The keys whose revocations verify; a revocation that does not verify is ignored (anyone could
/// write one), never an error.
fn revoked_keys(revocations: &[Revocation]) -> Result<Vec<VerifyingKey>, ListError> {
    Ok(revocations
        .iter()
        .filter_map(|r| {
            let key = decode_key("revoked key", &r.key).ok()?;
            let signature = decode_signature("revocation", &r.signature).ok()?;
            key.verify_strict(&[REVOKE_CONTEXT, key.as_bytes()].concat(), &signature).ok()?;
            Some(key)
        })
        .collect())
}

fn decode_key(what: &'static str, b64: &str) -> Result<VerifyingKey, ListError> {
    let bytes = BASE64.decode(b64.trim()).map_err(|_| ListError::BadEncoding(what))?;
    let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| ListError::BadEncoding(what))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| ListError::BadEncoding(what))
}

fn decode_signature(what: &'static str, b64: &str) -> Result<Signature, ListError> {
    let bytes = BASE64.decode(b64.trim()).map_err(|_| ListError::BadEncoding(what))?;
    let bytes: [u8; 64] = bytes.as_slice().try_into().map_err(|_| ListError::BadEncoding(what))?;
    Ok(Signature::from_bytes(&bytes))
}

/// A short, stable name for a key in messages: `list-key:` and 16 hex characters of its SHA-256.
pub fn fingerprint(key: &VerifyingKey) -> String {
    format!("list-key:{}", crate::wire::KeyId::of(key))
}

/// The fingerprint of a base64 key, or `invalid key` if it is not one.
pub fn fingerprint_of(b64: &str) -> String {
    decode_key("key", b64).map(|k| fingerprint(&k)).unwrap_or_else(|_| "invalid key".to_string())
}

/// The operator's list key (secret). Kept off the serving machine where possible.
pub struct ListKey {
    signing: SigningKey,
}

impl fmt::Debug for ListKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ListKey(..)")
    }
}

impl ListKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> ListKey {
        ListKey { signing: SigningKey::generate(&mut rand_core::OsRng) }
    }

    /// The key with this 32-byte secret seed (tests, and loading the key file).
    pub fn from_seed(seed: &[u8; 32]) -> ListKey {
        ListKey { signing: SigningKey::from_bytes(seed) }
    }

    /// The 32-byte secret seed, for the key file and nothing else.
    pub fn seed(&self) -> &[u8; 32] {
        self.signing.as_bytes()
    }

    /// The public key (base64), as pinned by probes.
    pub fn public_base64(&self) -> String {
        BASE64.encode(self.signing.verifying_key().as_bytes())
    }

    /// This key's fingerprint.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.signing.verifying_key())
    }

    /// Sign a document; `endorsements` lead from older keys to this one.
    pub fn sign(&self, document: &ListDocument, endorsements: Vec<Endorsement>, revocations: Vec<Revocation>) -> SignedList {
        // A struct of strings, numbers and enum names always serialises.
        let text = serde_json::to_string(document).unwrap_or_default();
        let signature = self.signing.sign(&[LIST_CONTEXT, text.as_bytes()].concat());
        SignedList {
            format: LIST_FORMAT.to_string(),
            document: text,
            signer: self.public_base64(),
            signature: BASE64.encode(signature.to_bytes()),
            endorsements,
            revocations,
        }
    }

    /// Hand over to `successor`: probes that pin this key will follow to the new one.
    pub fn endorse(&self, successor: &ListKey) -> Endorsement {
        let new = successor.signing.verifying_key();
        let signature = self.signing.sign(&[ENDORSE_CONTEXT, new.as_bytes()].concat());
        Endorsement {
            key: successor.public_base64(),
            signed_by: self.public_base64(),
            signature: BASE64.encode(signature.to_bytes()),
        }
    }

    /// Withdraw this key.
    pub fn revoke(&self) -> Revocation {
        let own = self.signing.verifying_key();
        let signature = self.signing.sign(&[REVOKE_CONTEXT, own.as_bytes()].concat());
        Revocation { key: self.public_base64(), signature: BASE64.encode(signature.to_bytes()) }
    }
}

/// What a volunteer is given to join: the collector (and fallbacks, for when one is blocked), the
/// list key to pin, and optionally the collectors' TLS key pins. Written as a URL,
/// `https://collector.example/join#v1.<base64url JSON>`, so that it can be pasted, mailed or shown
/// as a QR code; the fragment never reaches a server.
///
/// `pins` is left out when empty, so an invitation without pins reads the same to probes from
/// before pins; one with pins is refused by those (unknown field) rather than joined unpinned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invitation {
    /// Collector base URLs, the first preferred.
    pub collectors: Vec<String>,
    /// The list key to pin (base64).
    pub list_key: String,
    /// The collectors' TLS keys ([`SpkiPin`]): the live key and a backup. Empty: no pinning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<String>,
}

/// Why an invitation can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvitationError {
    /// Not the documented shape.
    #[error("not a Vantage invitation (expected https://…/join#v1.…): {0}")]
    Malformed(&'static str),
    /// A key pin is not `sha256/…`.
    #[error("the invitation's key pins are unusable: {0}")]
    Pin(PinError),
}

impl Invitation {
    /// The invitation as a URL on its first collector.
    pub fn to_url(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let base = self.collectors.first().map(|c| c.trim_end_matches('/')).unwrap_or_default();
        format!("{base}/join#v1.{}", BASE64URL.encode(json))
    }

    /// Read an invitation URL.
    pub fn parse(url: &str) -> Result<Invitation, InvitationError> {
        let (_, fragment) = url.trim().split_once('#').ok_or(InvitationError::Malformed("no #fragment"))?;
        let payload = fragment.strip_prefix("v1.").ok_or(InvitationError::Malformed("unknown invitation version"))?;
        let json = BASE64URL.decode(payload).map_err(|_| InvitationError::Malformed("the fragment is not base64url"))?;
        let invitation: Invitation =
            serde_json::from_slice(&json).map_err(|_| InvitationError::Malformed("the fragment is not an invitation"))?;
        if invitation.collectors.is_empty() || invitation.collectors.len() > 8 {
            return Err(InvitationError::Malformed("it must name 1-8 collectors"));
        }
        if !invitation.collectors.iter().all(|c| c.starts_with("https://") || c.starts_with("http://")) {
            return Err(InvitationError::Malformed("a collector is not an http(s) URL"));
        }
        decode_key("list key", &invitation.list_key)
            .map_err(|_| InvitationError::Malformed("the list key is not an ed25519 key"))?;
        invitation.spki_pins()?;
        Ok(invitation)
    }

    /// The pins, checked: each `sha256/<base64 of 32 bytes>`, at most [`MAX_PINS`].
    pub fn spki_pins(&self) -> Result<Vec<SpkiPin>, InvitationError> {
        if self.pins.len() > MAX_PINS {
            return Err(InvitationError::Malformed("it holds too many key pins"));
        }
        self.pins.iter().map(|p| p.parse().map_err(InvitationError::Pin)).collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").expect("time").to_utc()
    }

    fn document(version: u64) -> ListDocument {
        ListDocument {
            version,
            issued_at: now() - Duration::hours(1),
            expires_at: now() + Duration::days(7),
            interval_secs: 21_600,
            disabled_tests: vec![TestKind::Tor],
            disabled_targets: vec![],
            labelled: vec!["wikipedia".into()],
            targets_toml: "[[target]]\nname = \"wikipedia\"\ndomain = \"www.wikipedia.org\"\n".into(),
        }
    }

    fn trust(key: &ListKey, version: Option<u64>) -> ListTrust {
        ListTrust { pinned: key.public_base64(), version }
    }

    #[test]
    fn a_list_signed_by_the_pinned_key_verifies_and_moves_the_version_forward() {
        let key = ListKey::from_seed(&[1; 32]);
        let list = key.sign(&document(5), vec![], vec![]);
        let verified = verify(&list, &trust(&key, Some(4)), now()).expect("valid");
        assert_eq!(verified.document, document(5));
        assert_eq!(verified.trust(), trust(&key, Some(5)));
        // The same list fetched again is still good (nothing newer was published).
        assert!(verify(&list, &verified.trust(), now()).is_ok());
    }

    #[test]
    fn tampered_foreign_expired_and_older_lists_are_refused_with_their_reason() {
        let key = ListKey::from_seed(&[1; 32]);
        let stranger = ListKey::from_seed(&[2; 32]);
        let mut tampered = key.sign(&document(5), vec![], vec![]);
        tampered.document = tampered.document.replace("\"tor\"", "\"dns\"");
        assert_eq!(verify(&tampered, &trust(&key, None), now()), Err(ListError::Tampered));

        let foreign = stranger.sign(&document(5), vec![], vec![]);
        assert!(matches!(verify(&foreign, &trust(&key, None), now()), Err(ListError::UnknownSigner { .. })));

        let mut old = document(5);
        old.expires_at = now() - Duration::seconds(1);
        assert_eq!(verify(&key.sign(&old, vec![], vec![]), &trust(&key, None), now()), Err(ListError::Expired(old.expires_at)));

        let replay = key.sign(&document(3), vec![], vec![]);
        assert_eq!(verify(&replay, &trust(&key, Some(4)), now()), Err(ListError::Older { got: 3, have: 4 }));

        let mut unsigned = key.sign(&document(5), vec![], vec![]);
        unsigned.signature = String::new();
        assert_eq!(verify(&unsigned, &trust(&key, None), now()), Err(ListError::BadEncoding("signature")));
    }

    #[test]
    fn a_rotated_key_is_followed_through_endorsements_and_a_forged_one_is_not() {
        let k0 = ListKey::from_seed(&[1; 32]);
        let k1 = ListKey::from_seed(&[2; 32]);
        let k2 = ListKey::from_seed(&[3; 32]);
        let chain = vec![k0.endorse(&k1), k1.endorse(&k2)];
        let list = k2.sign(&document(9), chain, vec![]);
        let verified = verify(&list, &trust(&k0, Some(8)), now()).expect("chain from the pin");
        assert_eq!(verified.signer, k2.public_base64(), "the pin moves to the new key");

        // An attacker's key "endorsed" by a signature the old key never made.
        let attacker = ListKey::from_seed(&[9; 32]);
        let mut forged = attacker.endorse(&attacker);
        forged.signed_by = k0.public_base64();
        let list = attacker.sign(&document(9), vec![forged], vec![]);
        assert_eq!(verify(&list, &trust(&k0, None), now()), Err(ListError::BadEndorsement));
    }

    #[test]
    fn a_revoked_key_signs_nothing_and_a_forged_revocation_is_ignored() {
        let k0 = ListKey::from_seed(&[1; 32]);
        let list = k0.sign(&document(5), vec![], vec![k0.revoke()]);
        assert_eq!(verify(&list, &trust(&k0, None), now()), Err(ListError::Revoked(k0.fingerprint())));

        let other = ListKey::from_seed(&[2; 32]);
        let forged = Revocation { key: k0.public_base64(), signature: other.revoke().signature };
        assert!(verify(&k0.sign(&document(5), vec![], vec![forged]), &trust(&k0, None), now()).is_ok());
    }

    #[test]
    fn an_invitation_round_trips_through_its_url_and_garbage_is_refused() {
        let key = ListKey::from_seed(&[1; 32]);
        let invitation = Invitation {
            collectors: vec!["https://c1.example:8443".into(), "https://c2.example".into()],
            list_key: key.public_base64(),
            pins: vec![],
        };
        let url = invitation.to_url();
        assert!(url.starts_with("https://c1.example:8443/join#v1."), "{url}");
        assert_eq!(Invitation::parse(&url), Ok(invitation));
        for bad in ["https://c1.example/join", "https://c1.example/join#v2.abc", "https://c1.example/join#v1.!!!"] {
            assert!(Invitation::parse(bad).is_err(), "{bad}");
        }
        let no_key = Invitation { collectors: vec!["https://c".into()], list_key: "AAAA".into(), pins: vec![] };
        assert!(Invitation::parse(&no_key.to_url()).is_err());
    }

    #[test]
    fn pins_travel_in_the_invitation_and_old_invitations_still_parse() {
        let key = ListKey::from_seed(&[1; 32]);
        let live = SpkiPin::of_spki(b"live key");
        let backup = SpkiPin::of_spki(b"backup key");
        let pinned = Invitation {
            collectors: vec!["https://c1.example".into()],
            list_key: key.public_base64(),
            pins: vec![live.to_string(), backup.to_string()],
        };
        let parsed = Invitation::parse(&pinned.to_url()).expect("pinned");
        assert_eq!(parsed.spki_pins(), Ok(vec![live, backup]));

        // Written before pins existed: no `pins` field at all.
        let json = format!("{{\"collectors\":[\"https://c1.example\"],\"list_key\":\"{}\"}}", key.public_base64());
        let old = format!("https://c1.example/join#v1.{}", BASE64URL.encode(json));
        let parsed = Invitation::parse(&old).expect("an old invitation");
        assert!(parsed.pins.is_empty());
        assert_eq!(parsed.to_url(), old, "no pins, no field: the URL is what it was");

        let bad = Invitation { pins: vec!["sha256/short".into()], ..pinned.clone() };
        assert!(matches!(Invitation::parse(&bad.to_url()), Err(InvitationError::Pin(PinError::Syntax(_)))));
        let many = Invitation { pins: vec![live.to_string(); MAX_PINS + 1], ..pinned };
        assert!(Invitation::parse(&many.to_url()).is_err());
    }
}
