//! # vantage-probe
//!
//! Measures whether DNS, TCP, TLS and QUIC endpoints are reachable from where the probe sits, and
//! tells censorship apart from ordinary failure with controls.

#![warn(missing_docs)]

pub mod classify;
pub mod cli;
pub mod control;
pub mod identity;
pub mod measure;
pub mod netcheck;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod spool;
pub mod targets;
pub mod upload;
