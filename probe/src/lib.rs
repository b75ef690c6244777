//! # vantage-probe
//!
//! The volunteer's binary around [`vantage_engine`]: the command line, the probe's key file, the
//! crash-safe spool, the uploader, where each measurement goes during a run, and the report.

#![warn(missing_docs)]

pub mod cli;
pub mod daemon;
pub mod identity;
pub mod netcheck;
pub mod outputs;
pub mod report;
pub mod spool;
pub mod upload;
