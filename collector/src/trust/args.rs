//! The trust flags, flattened into `vantage-collector serve` (the rest of the flags and every
//! other `VANTAGE_*` name are in [`config`](crate::config), which re-exports these).

use std::path::PathBuf;

use clap::Args;
use vantage_measurement::wire::registration::{DEFAULT_DIFFICULTY_BITS, MAX_DIFFICULTY_BITS};

use super::{DEFAULT_MIN_DAYS, DEFAULT_MIN_MEASUREMENTS};

/// Environment twin of `--trusted-keys`.
pub const ENV_TRUSTED_KEYS: &str = "VANTAGE_TRUSTED_KEYS";
/// Environment twin of `--trust-min-measurements`.
pub const ENV_TRUST_MIN_MEASUREMENTS: &str = "VANTAGE_TRUST_MIN_MEASUREMENTS";
/// Environment twin of `--trust-min-days`.
pub const ENV_TRUST_MIN_DAYS: &str = "VANTAGE_TRUST_MIN_DAYS";
/// Environment twin of `--registration-difficulty-bits`.
pub const ENV_REGISTRATION_DIFFICULTY_BITS: &str = "VANTAGE_REGISTRATION_DIFFICULTY_BITS";

/// Which probe keys count: the operator's anchors, the thresholds a registered key must reach,
/// and the proof of work of a registration.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Probe key ids to trust outright (the operator's own anchor probes): one per line, as
    /// `vantage-probe key-id` prints it, `#` comments allowed. Their measurements count at once;
    /// every other key must register and earn trust first.
    #[arg(long, value_name = "FILE", env = ENV_TRUSTED_KEYS)]
    pub trusted_keys: Option<PathBuf>,

    /// Measurements a registered probe key must have sent before its measurements count in the
    /// metrics, fleet gauges, status page and alerts.
    #[arg(
        long,
        value_name = "N",
        env = ENV_TRUST_MIN_MEASUREMENTS,
        default_value_t = DEFAULT_MIN_MEASUREMENTS
    )]
    pub trust_min_measurements: u64,

    /// Distinct UTC days a registered probe key must have reported on, and days since its first
    /// report, before its measurements count.
    #[arg(
        long,
        value_name = "DAYS",
        env = ENV_TRUST_MIN_DAYS,
        default_value_t = DEFAULT_MIN_DAYS,
        value_parser = clap::value_parser!(u32).range(0..=365)
    )]
    pub trust_min_days: u32,

    /// Leading zero bits of the proof of work a new probe key must find to register (each bit
    /// doubles the probe's work; probes refuse more than 28).
    #[arg(
        long,
        value_name = "BITS",
        env = ENV_REGISTRATION_DIFFICULTY_BITS,
        default_value_t = DEFAULT_DIFFICULTY_BITS,
        value_parser = clap::value_parser!(u8).range(1..=i64::from(MAX_DIFFICULTY_BITS))
    )]
    pub registration_difficulty_bits: u8,
}
