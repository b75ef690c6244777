//! The rate limits' flags, flattened into `vantage-collector serve` (the rest of the flags and
//! every other `VANTAGE_*` name are in [`config`](crate::config), which re-exports these).

use clap::Args;

use super::{
    DEFAULT_HELPER_PER_SOURCE, DEFAULT_INGEST_PER_KEY, DEFAULT_INGEST_PER_SOURCE, DEFAULT_MAX_ENTRIES,
    DEFAULT_REGISTER_PER_SOURCE, Limit, Settings,
};

/// Environment twin of `--ingest-rate-per-source`.
pub const ENV_INGEST_RATE_PER_SOURCE: &str = "VANTAGE_INGEST_RATE_PER_SOURCE";
/// Environment twin of `--ingest-rate-per-key`.
pub const ENV_INGEST_RATE_PER_KEY: &str = "VANTAGE_INGEST_RATE_PER_KEY";
/// Environment twin of `--helper-rate-per-source`.
pub const ENV_HELPER_RATE_PER_SOURCE: &str = "VANTAGE_HELPER_RATE_PER_SOURCE";
/// Environment twin of `--register-rate-per-source`.
pub const ENV_REGISTER_RATE_PER_SOURCE: &str = "VANTAGE_REGISTER_RATE_PER_SOURCE";
/// Environment twin of `--rate-limit-entries`.
pub const ENV_RATE_LIMIT_ENTRIES: &str = "VANTAGE_RATE_LIMIT_ENTRIES";
/// Rate limits per client address and per probe key.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Ingest batches one client address (an IPv6 client: its /64) may post: N/s, N/min, N/h or
    /// N/d, up to N at once or `,burst=B`; `off` (or 0) for no limit. Over it: 429 with
    /// Retry-After. Behind a reverse proxy every client has the proxy's address.
    #[arg(long, value_name = "RATE", env = ENV_INGEST_RATE_PER_SOURCE, default_value_t = DEFAULT_INGEST_PER_SOURCE)]
    pub ingest_rate_per_source: Limit,

    /// Ingest batches one probe key may post (counted only once its signature verified), as
    /// --ingest-rate-per-source.
    #[arg(long, value_name = "RATE", env = ENV_INGEST_RATE_PER_KEY, default_value_t = DEFAULT_INGEST_PER_KEY)]
    pub ingest_rate_per_key: Limit,

    /// Test-helper controls one client address may ask for, as --ingest-rate-per-source.
    #[arg(long, value_name = "RATE", env = ENV_HELPER_RATE_PER_SOURCE, default_value_t = DEFAULT_HELPER_PER_SOURCE)]
    pub helper_rate_per_source: Limit,

    /// Probe key registrations one client address may make, as --ingest-rate-per-source.
    #[arg(long, value_name = "RATE", env = ENV_REGISTER_RATE_PER_SOURCE, default_value_t = DEFAULT_REGISTER_PER_SOURCE)]
    pub register_rate_per_source: Limit,

    /// Addresses (or keys) each rate limit tracks at most (100,000: about 2.2 MB). When a limit's
    /// table is full of clients that still owe it time, new addresses are refused (429) until one
    /// drains; new keys are let through.
    #[arg(
        long,
        value_name = "N",
        env = ENV_RATE_LIMIT_ENTRIES,
        default_value_t = DEFAULT_MAX_ENTRIES as u64,
        value_parser = clap::value_parser!(u64).range(100..=100_000_000)
    )]
    pub rate_limit_entries: u64,
}

impl LimitArgs {
    /// The limits these flags ask for.
    pub fn settings(&self) -> Settings {
        Settings {
            ingest_per_source: self.ingest_rate_per_source,
            ingest_per_key: self.ingest_rate_per_key,
            helper_per_source: self.helper_rate_per_source,
            register_per_source: self.register_rate_per_source,
            max_entries: usize::try_from(self.rate_limit_entries).unwrap_or(usize::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Serve {
        #[command(flatten)]
        limits: LimitArgs,
    }

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        Serve::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).map(|s| s.limits.settings())
    }

    #[test]
    fn rate_limits_have_defaults_and_read_rates() {
        let config = parse(&[]).expect("defaults");
        assert_eq!(config, Settings::default());
        let config = parse(&[
            "--ingest-rate-per-source",
            "600/min",
            "--ingest-rate-per-key",
            "10/min,burst=100",
            "--helper-rate-per-source",
            "off",
            "--register-rate-per-source",
            "0",
            "--rate-limit-entries",
            "5000",
        ])
        .expect("valid rates");
        let rate = |s: &str| s.parse::<Limit>().expect("rate");
        assert_eq!(config.ingest_per_source, rate("600/min"));
        assert_eq!(config.ingest_per_key, rate("10/min,burst=100"));
        assert_eq!((config.helper_per_source, config.register_per_source), (Limit::Off, Limit::Off));
        assert_eq!(config.max_entries, 5000);
        assert!(parse(&["--ingest-rate-per-key", "30"]).is_err(), "a rate needs its unit");
        assert!(parse(&["--rate-limit-entries", "10"]).is_err());
    }
}
