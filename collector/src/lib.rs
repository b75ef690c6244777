//! # vantage-collector
//!
//! The collector is where measurements leave volunteers' hands, so it is built to be
//! unsurprising to them and to the researchers and operators who read the data:
//!
//! ```text
//! probe ──POST NDJSON(gzip)──▶ ingest ──validate──▶ store (SQLite | PostgreSQL later)
//!                                  │                    └──▶ GET /api/v1/measurements (researchers)
//!                                  └──▶ metrics ──▶ /metrics (Prometheus, bounded labels)
//!                          store ──every 15 s──▶ fleet gauges (distinct probes) + status page at /
//! probe ──POST control──▶ helper (the probe's runners, from this network) ──▶ observations
//! ```
//!
//! - [`payload`] bounds memory before anything is parsed; [`ingest`] validates each line with
//!   the schema crate and stores the good ones in one transaction, exactly once by id.
//! - [`store`] is a trait so a shared database can replace the embedded one without touching
//!   the HTTP side; an acknowledged batch is durable by the store's contract.
//! - [`metrics`] folds every submitter-controlled label into a closed set under a series budget;
//!   never a per-probe series. [`fleet`] recomputes the distinct-probe gauges from the store.
//! - [`status`] renders the headline (what is blocked where, how, since when) as a page at `/`.
//! - [`helper`] refuses non-public addresses unless a lab turns that off, so it is no SSRF proxy.
//! - [`limits`] keeps one client (an address, a probe key) from taking the collector for itself:
//!   rates per source and per key, and a share of the slots per source; `429` with `Retry-After`.
//! - [`app`] wires them into one axum router, built before it serves ([`App::bind`]) and drained
//!   on shutdown ([`App::serve`]). No handler imports the router or the whole shared state: each
//!   takes the pieces it uses (`Arc<Metrics>`, `Arc<dyn Store>`, …) through axum's `FromRef` on
//!   the state in `state`, and answers errors through `error`, which sorts them by whose fault
//!   they are (4xx: the request's, 5xx: the collector's). So every module imports only
//!   modules below it: `app → state → {forget → ingest, query, helper, status, ops, published,
//!   geoip, registration} → limits → server → fleet → metrics → trust → payload → error → store →
//!   clock` (`operator`, the offline commands, sits beside `app` and uses `published` for the list
//!   rules).
//! - [`server`] is the connection layer under the router: HTTPS (a certificate re-read on
//!   SIGHUP), connection caps and timeouts against slow clients, and the client's address
//!   ([`server::ClientSource`]), taken from a PROXY or forwarded-for header only when a trusted
//!   proxy sent it.
//!
//! - [`trust`] decides what counts: only measurements of registered keys that have earned trust
//!   (or the operator's anchors), signed, whose observed ASN does not contradict the claimed one,
//!   move the measurement counters, fleet gauges, status page and alerts; [`registration`] takes
//!   a new key's proof of work; [`clock`] is "now" for all of it, injectable for tests.
//! - [`published`] serves the operator's signed target list at `GET /api/v1/targets` (made
//!   offline with the [`operator`] commands) and names the `target` labels; [`geoip`] places
//!   each batch's submitter in a country and ASN; [`forget`] honours a volunteer's signed
//!   deletion request.
//!
//! The probe's IP address is used only to refuse lines that contain it, to look up its country
//! and ASN, (as a salted hash in memory) to count it against the rate limits and (in memory,
//! while its connections are open) against the per-source connection cap; it is never
//! logged, stored or used as a label.

#![warn(missing_docs)]

pub mod aggregation;
pub mod app;
pub mod clock;
pub mod config;
pub mod cursor;
mod error;
pub mod events;
pub mod export;
pub mod fleet;
pub mod forget;
pub mod geoip;
pub mod helper;
pub mod ingest;
pub mod limits;
pub mod metrics;
pub mod operator;
mod ops;
pub mod payload;
pub mod published;
pub mod query;
pub mod registration;
pub mod retention;
pub mod server;
mod state;
pub mod status;
pub mod store;
pub mod trust;

pub use app::{App, BuildError, ServeError, shutdown_signal};
pub use config::{Cli, Command, Config, ConfigError, ServeArgs};
pub use store::{Duty, Filter, InsertOutcome, PostgresStore, SqliteStore, Store, StoreError, StoreLocation};
