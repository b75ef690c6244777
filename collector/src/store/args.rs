//! The store flags, flattened into `vantage-collector serve` (the data directory stays with the
//! rest of the flags in [`config`](crate::config), which re-exports these).

use clap::Args;

/// Environment twin of `--database`.
pub const ENV_DATABASE_URL: &str = "VANTAGE_DATABASE_URL";
/// Environment twin of `--retain-days`.
pub const ENV_RETAIN_DAYS: &str = "VANTAGE_RETAIN_DAYS";
/// The longest `--retain-days` (a century: "keep everything" is the flag left out).
pub const MAX_RETAIN_DAYS: u32 = 36_500;

/// Which database, and how long measurements are kept.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// A PostgreSQL database (postgres://USER[:PASSWORD]@HOST[:PORT]/DB, or a unix socket
    /// directory as ?host=/run/postgresql) to store measurements in instead of the SQLite file
    /// in --data-dir. Several collectors may share one; the tables are created or migrated at
    /// start. Plain TCP or a unix socket (no TLS): keep the database on a private network. The
    /// password is never logged; prefer the environment variable or PGPASSFILE-free secrets.
    #[arg(long, value_name = "URL", env = ENV_DATABASE_URL, hide_env_values = true, value_parser = DatabaseUrl::parse)]
    pub database: Option<DatabaseUrl>,

    /// Drop measurements whose day (the UTC day in their id) is more than this many days ago,
    /// checked hourly by one collector. Without it, everything is kept. PostgreSQL drops whole
    /// daily partitions; SQLite deletes in chunks.
    #[arg(
        long,
        value_name = "DAYS",
        env = ENV_RETAIN_DAYS,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RETAIN_DAYS))
    )]
    pub retain_days: Option<u32>,
}

/// A database URL: its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(pub String);

impl DatabaseUrl {
    /// Take the URL as typed: it is checked when the config is (so no error repeats it).
    pub(crate) fn parse(url: &str) -> Result<DatabaseUrl, std::convert::Infallible> {
        Ok(DatabaseUrl(url.to_string()))
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&super::postgres::redact(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        store: StoreArgs,
    }

    #[test]
    fn the_flags_parse_and_the_password_stays_out_of_debug() {
        let cli = Cli::try_parse_from(["x", "--database", "postgres://v:s3cret@db/m", "--retain-days", "30"]).expect("parse");
        assert_eq!(cli.store.retain_days, Some(30));
        assert!(!format!("{cli:?}").contains("s3cret"));
        assert!(Cli::try_parse_from(["x", "--retain-days", "0"]).is_err(), "keeping nothing is not retention");
        assert_eq!(Cli::try_parse_from(["x"]).expect("defaults").store.database, None);
    }
}
