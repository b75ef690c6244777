//! Which measurements count: the trust policy and the counting rule, pure.
//!
//! Every stored measurement stays in the store and in the researcher API. What *counts* — moves
//! the measurement counters, the fleet gauges, the status page and so the alerts — is decided
//! here, in one place:
//!
//! > a measurement counts only if its batch was signed, the key was trusted at that moment, and
//! > the collector-observed location (when the collector has GeoIP databases) does not
//! > contradict the one the probe claimed: neither the ASN nor the country.
//!
//! A key is trusted when it is on the operator's `--trusted-keys` list (their own anchor probes),
//! or when it is registered (it proved work once, see
//! [`vantage_measurement::wire::registration`]) *and* has earned it: at least
//! [`DEFAULT_MIN_MEASUREMENTS`] measurements, arriving on at least [`DEFAULT_MIN_DAYS`] distinct
//! UTC days, the first of them at least that many days ago. A daemon at the default interval
//! sends about 84 measurements a day with the built-in list (21 tests, 4 cycles), so an honest
//! new probe counts after a week; a key made to swing one afternoon's figures does not count
//! that afternoon, nor that week.
//!
//! Why the country too: a claimed ASN of `0` is the probe's "unknown" (its default) and can't be
//! contradicted, so a rule on the ASN alone would let a key anywhere claim any country, and the
//! correlated-blocking alert is per country.
//!
//! Ingest applies the rule per batch ([`counts`], with the key's standing after the batch);
//! the fleet read applies it per row: only keys [`TrustPolicy::counted`] names, no contradicted
//! row (the SQL twin of [`contradiction`] is in `store::filter`). What does not count is counted
//! only in `vantage_collector_measurements_uncounted_total{reason}` ([`Uncounted`]).

pub mod args;

use std::collections::HashSet;
use std::path::Path;

use chrono::{DateTime, Utc};
use vantage_measurement::ProbeInfo;
use vantage_measurement::wire::{KEY_ID_HEX_LEN, KeyStanding, ObservedLocation};

use crate::config::ConfigError;
use crate::store::KeyActivity;

/// Measurements a registered key must have stored before it counts.
pub const DEFAULT_MIN_MEASUREMENTS: u64 = 100;
/// Distinct UTC days a registered key must have reported on, and days since its first report,
/// before it counts.
pub const DEFAULT_MIN_DAYS: u32 = 7;

const DAY_SECS: i64 = 86_400;

vantage_measurement::closed_set! {
    /// Why a stored measurement did not count.
    pub enum Uncounted {
        /// The batch was not signed: there is no probe to count.
        Anonymous => "anonymous",
        /// The key is unregistered, or registered and still earning trust.
        UntrustedKey => "untrusted_key",
        /// The collector-observed ASN is not the one the probe claimed.
        AsnMismatch => "asn_mismatch",
        /// The collector-observed country is not the one the probe claimed.
        CountryMismatch => "country_mismatch",
    }
}

/// Does where the collector saw the batch come from contradict where the probe says it is? The
/// ASN first, then the country. A claimed ASN `0` or country `ZZ` is the probe's "unknown" (the
/// defaults of `--asn` and `--cc`), not a claim; what the databases don't know contradicts
/// nothing.
pub fn contradiction(claimed: &ProbeInfo, observed: Option<&ObservedLocation>) -> Option<Uncounted> {
    let observed = observed?;
    if observed.asn.is_some_and(|seen| claimed.asn != 0 && seen != claimed.asn) {
        return Some(Uncounted::AsnMismatch);
    }
    if observed.cc.as_deref().is_some_and(|seen| claimed.cc != "ZZ" && seen != claimed.cc) {
        return Some(Uncounted::CountryMismatch);
    }
    None
}

/// The counting rule for one stored measurement: `standing` of its batch's key (`None`:
/// anonymous), where the measurement says the probe is, where the collector saw the batch come
/// from.
pub fn counts(standing: Option<KeyStanding>, claimed: &ProbeInfo, observed: Option<&ObservedLocation>) -> Result<(), Uncounted> {
    match standing {
        None => Err(Uncounted::Anonymous),
        Some(KeyStanding::Unregistered | KeyStanding::Untrusted) => Err(Uncounted::UntrustedKey),
        Some(KeyStanding::Trusted) => contradiction(claimed, observed).map_or(Ok(()), Err),
    }
}

/// The thresholds and the operator's anchors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustPolicy {
    /// Measurements a registered key needs.
    pub min_measurements: u64,
    /// Distinct days a registered key needs, and days since its first measurement.
    pub min_days: u32,
    /// Key ids trusted outright (`--trusted-keys`), lower-case hex.
    pub anchors: HashSet<String>,
}

impl Default for TrustPolicy {
    fn default() -> Self {
        TrustPolicy { min_measurements: DEFAULT_MIN_MEASUREMENTS, min_days: DEFAULT_MIN_DAYS, anchors: HashSet::new() }
    }
}

impl TrustPolicy {
    /// Where `key` (with its record, if any) stands at `now`.
    pub fn standing(&self, key: &str, record: Option<&KeyActivity>, now: DateTime<Utc>) -> KeyStanding {
        if self.anchors.contains(key) {
            return KeyStanding::Trusted;
        }
        let Some(record) = record.filter(|r| r.registered_at.is_some()) else {
            return KeyStanding::Unregistered;
        };
        let earliest = now.timestamp() - i64::from(self.min_days) * DAY_SECS;
        let earned = record.measurements >= self.min_measurements
            && record.days >= self.min_days
            && record.first_received.is_some_and(|first| first <= earliest);
        if earned { KeyStanding::Trusted } else { KeyStanding::Untrusted }
    }

    /// The keys among `records` that count at `now`, for the fleet read.
    pub fn counted(&self, records: &[KeyActivity], now: DateTime<Utc>) -> Vec<String> {
        records.iter().filter(|r| self.standing(&r.key, Some(r), now) == KeyStanding::Trusted).map(|r| r.key.clone()).collect()
    }
}

/// Read the operator's trusted key ids: one per line, `#` starts a comment, blank lines are
/// fine; each id is the 16 hex characters `vantage-probe key-id` prints.
pub fn load_trusted_keys(path: &Path) -> Result<HashSet<String>, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
    parse_trusted_keys(&text).map_err(|(line, message)| ConfigError::TrustedKeys { path: shown, line, message })
}

/// The ids in a trusted-keys file, or the first bad line (1-based) and what is wrong with it.
pub fn parse_trusted_keys(text: &str) -> Result<HashSet<String>, (usize, String)> {
    let mut keys = HashSet::new();
    for (index, line) in text.lines().enumerate() {
        let id = line.split('#').next().unwrap_or_default().trim();
        if id.is_empty() {
            continue;
        }
        if id.len() != KEY_ID_HEX_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            let shown: String = id.chars().take(40).collect();
            return Err((index + 1, format!("{shown:?} is not a key id ({KEY_ID_HEX_LEN} hex characters)")));
        }
        keys.insert(id.to_ascii_lowercase());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(NOW, 0).expect("time")
    }

    /// A registered key that has just earned trust by the default thresholds.
    fn earned() -> KeyActivity {
        KeyActivity {
            key: "00112233aabbccdd".into(),
            registered_at: Some(NOW - 8 * DAY_SECS),
            first_received: Some(NOW - 7 * DAY_SECS),
            last_received: Some(NOW),
            days: 7,
            measurements: 100,
        }
    }

    #[test]
    fn a_registered_key_is_trusted_only_with_enough_measurements_days_and_age() {
        let policy = TrustPolicy::default();
        let standing = |edit: fn(&mut KeyActivity)| {
            let mut record = earned();
            edit(&mut record);
            policy.standing(&record.key.clone(), Some(&record), now())
        };
        assert_eq!(standing(|_| {}), KeyStanding::Trusted, "exactly at every threshold");
        assert_eq!(standing(|r| r.measurements = 99), KeyStanding::Untrusted);
        assert_eq!(standing(|r| r.days = 6), KeyStanding::Untrusted);
        assert_eq!(standing(|r| r.first_received = Some(NOW - 7 * DAY_SECS + 1)), KeyStanding::Untrusted, "a second too young");
        assert_eq!(standing(|r| r.first_received = None), KeyStanding::Untrusted, "registered, nothing received");
        assert_eq!(standing(|r| r.registered_at = None), KeyStanding::Unregistered, "history alone is not enough");
        assert_eq!(policy.standing("00112233aabbccdd", None, now()), KeyStanding::Unregistered);
    }

    #[test]
    fn an_anchor_is_trusted_at_once_and_counted_lists_only_trusted_keys() {
        let fresh = KeyActivity {
            key: "ffffffffffffffff".into(),
            first_received: Some(NOW),
            measurements: 1,
            days: 1,
            ..KeyActivity::default()
        };
        let mut policy = TrustPolicy::default();
        assert_eq!(policy.standing(&fresh.key, Some(&fresh), now()), KeyStanding::Unregistered);
        assert_eq!(policy.counted(&[earned(), fresh.clone()], now()), vec![earned().key]);
        policy.anchors.insert(fresh.key.clone());
        assert_eq!(policy.standing(&fresh.key, None, now()), KeyStanding::Trusted);
        assert_eq!(policy.counted(&[earned(), fresh.clone()], now()), vec![earned().key, fresh.key]);
    }

    fn at(cc: &str, asn: u32) -> ProbeInfo {
        ProbeInfo { cc: cc.into(), asn, network_type: None, network_epoch: None }
    }

    #[test]
    fn the_counting_rule_names_the_first_reason_that_applies() {
        let seen = |cc: &str, asn| ObservedLocation { cc: Some(cc.into()), asn: Some(asn) };
        let trusted = Some(KeyStanding::Trusted);
        assert_eq!(counts(None, &at("DE", 3320), Some(&seen("FR", 1))), Err(Uncounted::Anonymous));
        assert_eq!(counts(Some(KeyStanding::Unregistered), &at("DE", 3320), None), Err(Uncounted::UntrustedKey));
        assert_eq!(counts(Some(KeyStanding::Untrusted), &at("DE", 3320), Some(&seen("FR", 1))), Err(Uncounted::UntrustedKey));
        assert_eq!(counts(trusted, &at("DE", 3320), Some(&seen("FR", 3209))), Err(Uncounted::AsnMismatch), "the ASN first");
        assert_eq!(counts(trusted, &at("DE", 3320), Some(&seen("FR", 3320))), Err(Uncounted::CountryMismatch));
        assert_eq!(counts(trusted, &at("DE", 0), Some(&seen("FR", 3209))), Err(Uncounted::CountryMismatch), "0 claims no ASN");
        assert_eq!(counts(trusted, &at("DE", 3320), Some(&seen("DE", 3320))), Ok(()));
        assert_eq!(counts(trusted, &at("ZZ", 0), Some(&seen("FR", 3209))), Ok(()), "ZZ and 0 claim nothing");
        assert_eq!(counts(trusted, &at("DE", 3320), None), Ok(()), "no database, nothing to contradict");
        let unknown = ObservedLocation { cc: None, asn: None };
        assert_eq!(counts(trusted, &at("DE", 3320), Some(&unknown)), Ok(()), "an address the databases don't know");
        let ids: Vec<_> = Uncounted::ALL.iter().map(|u| u.as_str()).collect();
        assert_eq!(ids, ["anonymous", "untrusted_key", "asn_mismatch", "country_mismatch"]);
    }

    #[test]
    fn trusted_keys_files_allow_comments_and_name_the_bad_line() {
        let keys = parse_trusted_keys("# anchors\n\n00112233AABBCCDD  # office probe\n  ffffffffffffffff\n").expect("valid");
        assert_eq!(keys, HashSet::from(["00112233aabbccdd".to_string(), "ffffffffffffffff".to_string()]));
        let (line, message) = parse_trusted_keys("00112233aabbccdd\nnot-a-key\n").expect_err("bad line");
        assert_eq!(line, 2);
        assert!(message.contains("\"not-a-key\""), "{message}");
        assert!(parse_trusted_keys("00112233aabbccd\n").is_err(), "15 characters");
        assert!(parse_trusted_keys("00112233aabbccdg\n").is_err(), "not hex");
        assert_eq!(parse_trusted_keys("").expect("empty"), HashSet::new());
    }
}
