//! The wire contract between probe and collector, in one place both sides import: the batch
//! signature headers and their verification, the ingest report, key registration, the signed
//! target list, the volunteer's deletion request, and how a probe reaches its collector (the
//! transport rule and key pins). (The rejection codes are [`crate::Rejection`]; the test helper's
//! request and response are in the engine's `control`.)

pub mod forget;
pub mod ingest;
pub mod pin;
pub mod registration;
pub mod signature;
pub mod target_list;
pub mod transport;

pub use ingest::{IngestReport, KeyStanding, ObservedLocation, RejectedLine};
pub use signature::{
    KEY_HEADER, KEY_ID_HEX_LEN, KeyId, ProbeKey, SIGNATURE_HEADER, SPOOL_PENDING_HEADER, SignatureError, verify_batch,
};
