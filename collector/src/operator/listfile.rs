//! `LIST.toml`, the list an operator signs: a targets file (`[[target]]` tables, exactly as the
//! probe's `--targets`) plus one `[list]` table saying how it is published:
//!
//! ```toml
//! [list]
//! version = 7                       # must grow with every list signed
//! expires_days = 30                 # or expires_at = 2027-01-31T00:00:00Z
//! interval_hours = 6                # or interval_secs = 21600
//! disabled_tests = ["tor"]          # optional kill switch, fleet-wide
//! disabled_targets = ["old-site"]   # optional, by name
//! labelled = ["wikipedia", "signal"]  # optional: the names with a metric label (default: all)
//!
//! [[target]]
//! name = "wikipedia"
//! domain = "www.wikipedia.org"
//! ```

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::Deserialize;
use vantage_measurement::TestKind;
use vantage_measurement::wire::target_list::ListDocument;

use crate::published::{DocumentError, check_document};

/// The longest validity `expires_days` may ask for: a list nobody maintains should not run for years.
pub const MAX_EXPIRES_DAYS: i64 = 366;

/// Why a `LIST.toml` can't be signed.
#[derive(Debug, thiserror::Error)]
pub enum ListFileError {
    /// Not TOML, or the `[list]` table is not the documented shape.
    #[error("{origin}: {message}")]
    Invalid {
        /// The file.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The document breaks a rule.
    #[error("{origin}: {source}")]
    Document {
        /// The file.
        origin: String,
        /// Which rule.
        #[source]
        source: DocumentError,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListTable {
    version: u64,
    expires_days: Option<i64>,
    expires_at: Option<toml::Value>,
    interval_secs: Option<u64>,
    interval_hours: Option<u64>,
    #[serde(default)]
    disabled_tests: Vec<TestKind>,
    #[serde(default)]
    disabled_targets: Vec<String>,
    labelled: Option<Vec<String>>,
}

/// The document `text` describes, issued at `now`, checked by the same rules `serve` applies.
pub fn document(text: &str, origin: &str, now: DateTime<Utc>) -> Result<ListDocument, ListFileError> {
    let invalid = |message: String| ListFileError::Invalid { origin: origin.to_string(), message };
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| invalid(e.to_string()))?;
    let list = table.remove("list").ok_or_else(|| invalid("no [list] table (version, expiry, interval)".into()))?;
    let list: ListTable = list.try_into().map_err(|e: toml::de::Error| invalid(format!("[list]: {e}")))?;
    let targets_toml = toml::to_string(&table).map_err(|e| invalid(e.to_string()))?;
    let now = now.trunc_subsecs(0);

    let expires_at = match (list.expires_days, &list.expires_at) {
        (Some(days), None) if (1..=MAX_EXPIRES_DAYS).contains(&days) => now + Duration::days(days),
        (Some(days), None) => return Err(invalid(format!("[list] expires_days must be 1-{MAX_EXPIRES_DAYS}, not {days}"))),
        (None, Some(at)) => {
            expiry_time(at).ok_or_else(|| invalid("[list] expires_at must be an RFC 3339 time with a zone".into()))?
        }
        _ => return Err(invalid("[list] needs exactly one of expires_days and expires_at".into())),
    };
    let interval_secs = match (list.interval_secs, list.interval_hours) {
        (Some(secs), None) => secs,
        (None, Some(hours)) => hours.saturating_mul(3600),
        _ => return Err(invalid("[list] needs exactly one of interval_secs and interval_hours".into())),
    };
    let labelled = match list.labelled {
        Some(names) => names,
        // Every target gets a label unless the operator chose; too many is refused below.
        None => vantage_engine::targets::parse(&targets_toml, origin)
            .map(|specs| specs.into_iter().map(|t| t.name).collect())
            .unwrap_or_default(),
    };
    let document = ListDocument {
        version: list.version,
        issued_at: now,
        expires_at,
        interval_secs,
        disabled_tests: list.disabled_tests,
        disabled_targets: list.disabled_targets,
        labelled,
        targets_toml,
    };
    check_document(&document, now).map_err(|source| ListFileError::Document { origin: origin.to_string(), source })?;
    Ok(document)
}

/// A TOML datetime or string, as an instant (an offset is required: "local" times are ambiguous).
fn expiry_time(value: &toml::Value) -> Option<DateTime<Utc>> {
    let text = match value {
        toml::Value::Datetime(at) => at.to_string(),
        toml::Value::String(at) => at.clone(),
        _ => return None,
    };
    DateTime::parse_from_rfc3339(&text).ok().map(|t| t.to_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGETS: &str = "
[[target]]
name = \"wikipedia\"
domain = \"www.wikipedia.org\"
tests = [\"dns\", \"tls\"]

[[target]]
name = \"signal\"
domain = \"signal.org\"
";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").expect("time").to_utc()
    }

    #[test]
    fn a_list_file_becomes_a_document_whose_targets_the_probe_parses() {
        let text = format!(
            "[list]\nversion = 7\nexpires_days = 30\ninterval_hours = 6\ndisabled_tests = [\"tor\"]\nlabelled = [\"wikipedia\"]\n{TARGETS}"
        );
        let d = document(&text, "LIST.toml", now()).expect("valid");
        assert_eq!((d.version, d.interval_secs), (7, 21_600));
        assert_eq!(d.expires_at, now() + Duration::days(30));
        assert_eq!(d.disabled_tests, vec![TestKind::Tor]);
        assert_eq!(d.labelled, vec!["wikipedia".to_string()]);
        let specs = vantage_engine::targets::parse(&d.targets_toml, "doc").expect("the probe's parser accepts it");
        assert_eq!(specs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["wikipedia", "signal"]);
        assert_eq!(specs[0].tests, vec![TestKind::Dns, TestKind::Tls]);
    }

    #[test]
    fn labels_default_to_every_target_and_expiry_can_be_a_date() {
        let text = format!("[list]\nversion = 1\nexpires_at = 2027-01-01T00:00:00Z\ninterval_secs = 3600\n{TARGETS}");
        let d = document(&text, "LIST.toml", now()).expect("valid");
        assert_eq!(d.labelled, vec!["wikipedia".to_string(), "signal".to_string()]);
        assert_eq!(d.expires_at.to_rfc3339(), "2027-01-01T00:00:00+00:00");
    }

    #[test]
    fn bad_list_tables_are_refused_with_what_to_fix() {
        let refused = |list: &str| {
            let text = format!("[list]\n{list}\n{TARGETS}");
            document(&text, "LIST.toml", now()).expect_err("refused").to_string()
        };
        assert!(refused("version = 1\ninterval_secs = 3600").contains("exactly one of expires_days and expires_at"));
        assert!(refused("version = 1\nexpires_days = 400\ninterval_secs = 3600").contains("expires_days must be 1-366"));
        assert!(refused("version = 1\nexpires_days = 3").contains("interval_secs and interval_hours"));
        assert!(refused("version = 0\nexpires_days = 3\ninterval_secs = 3600").contains("at least 1"));
        assert!(refused("version = 1\nexpires_at = 2020-01-01T00:00:00Z\ninterval_secs = 3600").contains("expired"));
        assert!(refused("version = 1\nexpires_days = 3\ninterval_secs = 3600\nlabelled = [\"x\"]").contains("`x`"));
        assert!(refused("version = 1\nexpires_days = 3\ninterval_secs = 3600\nfrequency = 2").contains("frequency"));
        let no_list = document(TARGETS, "LIST.toml", now()).expect_err("no [list]").to_string();
        assert!(no_list.contains("no [list] table"), "{no_list}");
        let bad_target = format!("[list]\nversion = 1\nexpires_days = 3\ninterval_secs = 3600\n{TARGETS}port = 0\n");
        assert!(document(&bad_target, "LIST.toml", now()).expect_err("bad target").to_string().contains("port 0"));
    }
}
