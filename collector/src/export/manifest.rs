//! A day's manifest: what was published for one UTC day of arrival, signed.
//!
//! ```json
//! { "format_version": 1, "day": "2026-12-01", "publication_key": "<base64 ed25519 public key>",
//!   "files": [{"path": "DE/tls/measurements.jsonl.gz", "rows": 2, "sha256": "<hex>", "merkle_root": "<hex>"}],
//!   "rows": 2, "merkle_root": "<hex>", "previous": "<hex or null>", "signature": "<base64>" }
//! ```
//!
//! - `files` lists every file of the day in every format (path order), each with the SHA-256 of
//!   its gzip bytes and the Merkle root (`merkle`) of the canonical NDJSON lines it was made from:
//!   a CSV or OONI file has the same root as the NDJSON file of its group, since its rows are
//!   derived from those lines.
//! - `merkle_root` is the tree over every row of the day, in file order (country, test, id).
//! - `previous` is the SHA-256 of the previous day's manifest file (its exact bytes), so the
//!   manifests form a hash chain: rewriting one day breaks every later day's link.
//! - `signature` is ed25519 over [`SIGNED_PREFIX`] followed by the *signed bytes*: the manifest
//!   serialised as compact JSON (no spaces, keys in the order above) without `signature`.
//!   In Python: `json.dumps({k: v for k, v in m.items() if k != "signature"}, separators=(",", ":"))`
//!   on the parsed file (key order is kept).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::NaiveDate;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Signed before the manifest bytes, so a manifest signature can't be replayed as anything else.
pub const SIGNED_PREFIX: &[u8] = b"vantage-export-manifest-v1\n";

/// One file of a day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// `CC/TEST/NAME.gz`, relative to the day's directory.
    pub path: String,
    /// Rows (lines after a CSV header).
    pub rows: u64,
    /// SHA-256 of the gzip bytes, hex.
    pub sha256: String,
    /// Merkle root of the canonical lines the rows were made from, hex.
    pub merkle_root: String,
}

/// A day's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The UTC day of arrival, `YYYY-MM-DD`.
    pub day: NaiveDate,
    /// The collector's publication key, base64.
    pub publication_key: String,
    /// Every file, in path order.
    pub files: Vec<FileEntry>,
    /// Rows of the day.
    pub rows: u64,
    /// Merkle root over the day's rows, hex.
    pub merkle_root: String,
    /// SHA-256 of the previous day's manifest file, hex (`None`: the first day published).
    pub previous: Option<String>,
    /// Base64 ed25519 signature (`None` while it is being made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Why a manifest is not what the collector published.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not a manifest at all.
    #[error("not a manifest: {0}")]
    Unreadable(String),
    /// A format this code does not know.
    #[error("manifest format {0} is not known (this code reads {FORMAT_VERSION})")]
    Format(u32),
    /// Not signed by the key the verifier was given.
    #[error("the manifest names key {found}, not the key given ({expected})")]
    WrongKey {
        /// The key the manifest names.
        found: String,
        /// The key the verifier trusts.
        expected: String,
    },
    /// The signature is missing or does not verify: the manifest was changed after signing.
    #[error("the manifest's signature does not verify: it was changed after signing, or signed by another key")]
    BadSignature,
}

impl Manifest {
    /// The bytes the signature covers (after [`SIGNED_PREFIX`]).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let unsigned = Manifest { signature: None, ..self.clone() };
        // Our own types always serialise.
        serde_json::to_vec(&unsigned).unwrap_or_default()
    }

    /// Sign with `key` (setting `publication_key` to its public half).
    pub fn sign(mut self, key: &SigningKey) -> Manifest {
        self.publication_key = BASE64.encode(key.verifying_key().as_bytes());
        self.signature = None;
        let message = [SIGNED_PREFIX, &self.signed_bytes()].concat();
        self.signature = Some(BASE64.encode(key.sign(&message).to_bytes()));
        self
    }

    /// The manifest file as written and served: pretty JSON and a newline.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// A manifest file back, checked against `key` (format, key, signature).
    pub fn verified(bytes: &[u8], key: &VerifyingKey) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| ManifestError::Unreadable(e.to_string()))?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(ManifestError::Format(manifest.format_version));
        }
        let expected = BASE64.encode(key.as_bytes());
        if manifest.publication_key != expected {
            return Err(ManifestError::WrongKey { found: manifest.publication_key, expected });
        }
        let signature = manifest
            .signature
            .as_deref()
            .and_then(|s| BASE64.decode(s).ok())
            .and_then(|s| <[u8; 64]>::try_from(s.as_slice()).ok())
            .ok_or(ManifestError::BadSignature)?;
        let message = [SIGNED_PREFIX, &manifest.signed_bytes()].concat();
        key.verify(&message, &Signature::from_bytes(&signature)).map_err(|_| ManifestError::BadSignature)?;
        Ok(manifest)
    }

    /// The entry of `path` (relative to the day).
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// The SHA-256 of a manifest file's bytes, hex: what the next day's `previous` holds.
pub fn file_hash(bytes: &[u8]) -> String {
    super::merkle::hex(&Sha256::digest(bytes))
}

/// A public key from base64.
pub fn public_key(b64: &str) -> Result<VerifyingKey, ManifestError> {
    let bytes = BASE64.decode(b64.trim()).map_err(|e| ManifestError::Unreadable(format!("key: {e}")))?;
    let bytes = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| ManifestError::Unreadable("key: not 32 bytes".into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| ManifestError::Unreadable(format!("key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            day: NaiveDate::from_ymd_opt(2026, 12, 1).expect("date"),
            publication_key: String::new(),
            files: vec![FileEntry {
                path: "DE/tls/measurements.jsonl.gz".into(),
                rows: 2,
                sha256: "aa".into(),
                merkle_root: "bb".into(),
            }],
            rows: 2,
            merkle_root: "bb".into(),
            previous: None,
            signature: None,
        }
    }

    #[test]
    fn a_signed_manifest_verifies_and_any_change_breaks_it() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let signed = manifest().sign(&key);
        let bytes = signed.to_file_bytes();
        assert_eq!(Manifest::verified(&bytes, &key.verifying_key()), Ok(signed.clone()));
        let changed = String::from_utf8(bytes).expect("utf-8").replace("\"rows\": 2,\n  \"merkle", "\"rows\": 3,\n  \"merkle");
        assert_eq!(Manifest::verified(changed.as_bytes(), &key.verifying_key()), Err(ManifestError::BadSignature));
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(matches!(
            Manifest::verified(&signed.to_file_bytes(), &other.verifying_key()),
            Err(ManifestError::WrongKey { .. })
        ));
        // A forger who swaps in their own key is caught by the key check, not the signature.
        let forged = manifest().sign(&other).to_file_bytes();
        assert!(matches!(Manifest::verified(&forged, &key.verifying_key()), Err(ManifestError::WrongKey { .. })));
    }

    #[test]
    fn the_signed_bytes_are_compact_json_in_field_order_without_the_signature() {
        let signed = manifest().sign(&SigningKey::from_bytes(&[7; 32]));
        let text = String::from_utf8(signed.signed_bytes()).expect("utf-8");
        assert!(text.starts_with("{\"format_version\":1,\"day\":\"2026-12-01\",\"publication_key\":\""), "{text}");
        assert!(text.ends_with("\"rows\":2,\"merkle_root\":\"bb\",\"previous\":null}"), "{text}");
    }
}
