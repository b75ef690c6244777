//! # vantage-engine
//!
//! The measuring library, shared by the volunteer's probe and the collector's test helper: it
//! measures whether DNS, TCP, TLS, QUIC, VPN and Tor endpoints are reachable from where it runs,
//! and tells censorship apart from ordinary failure with controls.
//!
//! ```text
//! targets ──▶ schedule ──▶ measure ──▶ runner::<protocol> (codec + thin async I/O) ──▶ observations
//!                              └──▶ control (helper, DoH) ──▶ classify (pure) ──▶ Measurement
//! ```
//!
//! No CLI, no disk, no uploads: those are the probe binary's; no server: that is the collector's.

#![warn(missing_docs)]

pub mod classify;
pub mod control;
pub mod localise;
pub mod measure;
pub mod runner;
pub mod schedule;
pub mod step;
pub mod targets;
