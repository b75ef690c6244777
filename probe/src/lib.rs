//! # vantage-probe
//!
//! Measures whether DNS, TCP, TLS and QUIC endpoints are reachable from where the probe sits, and
//! tells censorship apart from ordinary failure with controls.

#![warn(missing_docs)]

pub mod classify;
pub mod control;
pub mod runner;
