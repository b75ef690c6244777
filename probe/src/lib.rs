//! # vantage-probe
//!
//! The volunteer's binary around [`vantage_engine`]: the command line, the probe's key file, the
//! crash-safe spool, the uploader and the key's registration, where each measurement goes during a run, and the report; and
//! for a probe that joined a network, its config file, the signed target list, the consent it
//! asks for, and the deletion request.

#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod consent;
pub mod daemon;
pub mod forget;
pub mod identity;
pub mod join;
pub mod list;
pub mod netcheck;
pub mod network;
pub mod outputs;
pub mod private_file;
pub mod register;
pub mod report;
pub mod spool;
pub mod targets_file;
pub mod transport;
pub mod upload;
