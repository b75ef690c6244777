//! Bulk export and verifiable data: each closed UTC day of arrival as gzip files per (country,
//! test) in three formats, a signed manifest per day chained to the day before, and the tools to
//! check a file offline against it.
//!
//! ```text
//! store ──day_rows (cc, test, id order)──▶ day::DayExport ──▶ CC/TEST/{measurements.jsonl,measurements.csv,ooni.jsonl}.gz
//!                                              │ format (one row at a time), gzip (deterministic), merkle (frontier)
//!                                              ▼
//!                                     manifest::Manifest ──sign (key)──▶ publish: the publication log (never overwritten)
//!                                                                          ├─▶ http: /api/v1/exports/…
//!                                                                          └─▶ cli: export --out DIR
//! verify (offline): manifest signature + each file's SHA-256 (+ NDJSON rows rebuilt into the Merkle root)
//! ```
//!
//! The pure parts ([`merkle`], [`manifest`], [`format`], [`day`], [`verify`]) do no I/O of their own:
//! they take lines and writers. [`publish`], [`http`] and [`cli`] connect them to the store, the
//! router and the file system. `docs/exports.md` says what verification proves and what it does not.

pub mod args;
pub mod cli;
pub mod day;
pub mod format;
pub mod http;
pub mod key;
pub mod manifest;
pub mod merkle;
pub mod publish;
pub mod verify;
