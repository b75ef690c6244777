//! The flags of `vantage-collector export` and `verify`, and `serve`'s `--publication-key`.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::Args;

use super::format::Format;
use crate::store::args::DatabaseUrl;

/// Environment twin of `--publication-key`.
pub const ENV_PUBLICATION_KEY: &str = "VANTAGE_PUBLICATION_KEY";

/// `serve --publication-key`.
#[derive(Debug, Args)]
pub struct PublicationArgs {
    /// The collector's publication key (ed25519 seed, base64, mode 0600), which signs each closed
    /// day's export manifest. Made on first use. Replicas sharing a database must share this file.
    /// Default: publication.key in --data-dir.
    #[arg(long, value_name = "FILE", env = ENV_PUBLICATION_KEY)]
    pub publication_key: Option<PathBuf>,
}

/// Flags of `vantage-collector export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The first UTC day of arrival to export (YYYY-MM-DD).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub since: NaiveDate,
    /// The day after the last one (exclusive).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub until: NaiveDate,
    /// The file format: canonical NDJSON, flat CSV, or OONI records.
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    pub format: Format,
    /// Where to write DIR/YYYYMMDD/CC/TEST/FILE.gz and DIR/YYYYMMDD/manifest.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The data directory of the store (as `serve`'s).
    #[arg(long, value_name = "DIR", env = crate::config::ENV_DATA_DIR, default_value = crate::config::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// A PostgreSQL database instead of the SQLite file in --data-dir (as `serve`'s).
    #[arg(long, value_name = "URL", env = crate::store::args::ENV_DATABASE_URL, hide_env_values = true, value_parser = DatabaseUrl::parse)]
    pub database: Option<DatabaseUrl>,
    /// The publication key (as `serve`'s).
    #[command(flatten)]
    pub publication: PublicationArgs,
}

/// Flags of `vantage-collector verify`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("public").required(true).args(["key", "key_file"])))]
pub struct VerifyArgs {
    /// The day's manifest.json.
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,
    /// The collector's public key (base64), as `GET /api/v1/publication-key` gives it.
    #[arg(long, value_name = "BASE64")]
    pub key: Option<String>,
    /// A file holding the public key: the base64 key, or the JSON of `GET /api/v1/publication-key`.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Export files (…/CC/TEST/NAME.gz) or directories to check (every .gz file under them that
    /// belongs to the manifest's day).
    #[arg(value_name = "FILE|DIR", required = true)]
    pub paths: Vec<PathBuf>,
}

fn parse_format(text: &str) -> Result<Format, String> {
    Format::parse(text).ok_or_else(|| format!("one of {}", Format::ALL.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ")))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        export: ExportArgs,
    }

    #[test]
    fn export_flags_parse_and_a_bad_format_says_the_choices() {
        let cli = Cli::try_parse_from(["x", "--since", "2026-12-01", "--until", "2026-12-02", "--format", "csv", "--out", "o"])
            .expect("parse");
        assert_eq!(cli.export.format, Format::Csv);
        let err = Cli::try_parse_from(["x", "--since", "2026-12-01", "--until", "2026-12-02", "--format", "xml", "--out", "o"])
            .expect_err("xml");
        assert!(err.to_string().contains("ndjson, csv, ooni"), "{err}");
    }
}
