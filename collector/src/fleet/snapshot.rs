//! The shared fleet snapshot: what the replica holding [`Duty::FleetRefresh`] publishes for all,
//! in the form the store keeps ([`FleetSnapshot`]): JSON with a format number.
//!
//! It holds the results, not the read behind them: the gauges' values (bounded by the series
//! budget), the (country, ASN) pairs the `asn` label may name, the keys by standing, and the
//! status page (bounded by its caps per country; the probes behind each row are left out), and the
//! detected events (bounded by `events::MAX_EVENTS`, probes as counts only). A
//! fleet of 2 000 probes and 100 targets comes to tens of kilobytes, where the read behind it is
//! up to a million rows. The page's timelines add up to 50 targets × 48 buckets per country with
//! anything blocked, about 30 bytes a bucket: some 70 KB for each such country at worst.
//!
//! The format number lets replicas of two versions share a database during a rolling upgrade: a
//! replica that does not know a snapshot's format keeps publishing the one it had (its gauges go
//! stale, which the staleness alert shows) instead of misreading it. Change [`FORMAT`] whenever
//! the serialised shape changes in a way an older replica would misread.
//!
//! [`Duty::FleetRefresh`]: crate::store::Duty::FleetRefresh

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::Event;
use crate::metrics::fleet::FleetPublication;
use crate::status::view::Page;
use crate::store::FleetSnapshot;

/// The serialisation this build writes and reads.
pub const FORMAT: u32 = 3;

/// What one replica publishes for all.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Shared {
    /// The metrics' part: gauges, the ASN rule, keys by standing.
    pub metrics: FleetPublication,
    /// The status page, streak starts filled in.
    pub page: Page,
    /// The detected events of the look-back (bounded by `events::MAX_EVENTS`).
    pub events: Vec<Event>,
    /// When their read began (the refreshing replica's wall clock).
    pub events_read_at: Option<DateTime<Utc>>,
}

/// Why a snapshot could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Made by a build that writes another format.
    #[error("the shared fleet snapshot has format {found}; this collector reads format {FORMAT} (a rolling upgrade?)")]
    Format {
        /// The stored format.
        found: u32,
    },
    /// The body is not what its format says (a bug, or an edited database).
    #[error("the shared fleet snapshot can't be read: {0}")]
    Body(#[from] serde_json::Error),
}

/// `shared` as the store keeps it, made at `made_at`.
pub fn encode(shared: &Shared, made_at: DateTime<Utc>) -> Result<FleetSnapshot, SnapshotError> {
    Ok(FleetSnapshot { format: FORMAT, made_at, body: serde_json::to_string(shared)? })
}

/// The stored snapshot back.
pub fn decode(stored: &FleetSnapshot) -> Result<Shared, SnapshotError> {
    if stored.format != FORMAT {
        return Err(SnapshotError::Format { found: stored.format });
    }
    Ok(serde_json::from_str(&stored.body)?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use vantage_measurement::wire::KeyStanding;
    use vantage_measurement::{Mechanism, TestKind};

    use super::*;
    use crate::metrics::fleet::{Distinct, FleetValues};
    use crate::status::timeline::{Bucket, CountryTimeline, TargetSeries, Timelines};
    use crate::status::view::{BlockedRow, Country};
    use crate::store::StreakKey;

    fn shared() -> Shared {
        let labels = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let at = DateTime::from_timestamp(1_700_000_000, 0);
        Shared {
            metrics: FleetPublication {
                values: FleetValues {
                    active: BTreeMap::from([(labels(&["DE"]), 4)]),
                    verdicts: BTreeMap::from([(labels(&["DE", "wiki", "tls", "blocked"]), Distinct { probes: 3, asns: 2 })]),
                    measured: BTreeMap::from([(labels(&["DE", "wiki", "tls"]), Distinct { probes: 0, asns: 3 })]),
                },
                eligible_asns: [("DE".to_string(), 3320)].into(),
                keys: vec![(KeyStanding::Trusted, 4)],
                window_secs: 3600,
                last_received: Some(1_700_000_100),
            },
            page: Page {
                read_at: at,
                window_secs: 3600,
                probes_total: 4,
                last_ingest: at,
                countries: vec![Country {
                    cc: "DE".into(),
                    probes_active: 4,
                    blocked: vec![BlockedRow {
                        target: "wiki \"<x>\"".into(),
                        published: true,
                        test: TestKind::Tls,
                        mechanisms: vec![(Mechanism::TlsResetAfterClientHello, 3)],
                        probes_blocked: 3,
                        probes_total: 4,
                        asns_blocked: 2,
                        asns_total: 3,
                        since: at,
                        streak_keys: Vec::new(),
                    }],
                    more: 0,
                }],
                timelines: Timelines {
                    start: at,
                    bucket_secs: 3600,
                    buckets: 2,
                    countries: vec![CountryTimeline {
                        cc: "DE".into(),
                        targets: vec![TargetSeries {
                            target: "wiki \"<x>\"".into(),
                            buckets: vec![None, Some(Bucket { blocked: 3, measured: 4 })],
                        }],
                        more: 0,
                    }],
                },
            },
            events: vec![Event {
                country: "DE".into(),
                target: "wiki".into(),
                test: TestKind::Tls,
                started_at: at.unwrap_or_default(),
                detected_at: at.unwrap_or_default(),
                ended_at: None,
                started_before_lookback: false,
                mechanism: Some(Mechanism::TlsResetAfterClientHello),
                baseline_share: 0.05,
                blocked_share: 0.8,
                probes_blocked: 5,
                probes_measuring: 6,
                asns: vec![3320],
            }],
            events_read_at: at,
        }
    }

    #[test]
    fn a_snapshot_reads_back_as_it_was_made() {
        let made_at = Utc::now();
        let stored = encode(&shared(), made_at).expect("encode");
        assert_eq!((stored.format, stored.made_at), (FORMAT, made_at));
        assert_eq!(decode(&stored).expect("decode"), shared());
    }

    #[test]
    fn the_probes_behind_a_row_are_not_shared() {
        let mut with_keys = shared();
        with_keys.page.countries[0].blocked[0].streak_keys =
            vec![StreakKey { probe: "a-key-id".into(), target: "wiki".into(), test: TestKind::Tls }];
        let stored = encode(&with_keys, Utc::now()).expect("encode");
        assert!(!stored.body.contains("a-key-id"), "{}", stored.body);
        assert_eq!(decode(&stored).expect("decode"), shared());
    }

    #[test]
    fn another_format_is_refused_not_misread() {
        let stored = FleetSnapshot { format: FORMAT + 1, ..encode(&shared(), Utc::now()).expect("encode") };
        assert!(matches!(decode(&stored), Err(SnapshotError::Format { found }) if found == FORMAT + 1));
        let garbled = FleetSnapshot { body: "{".into(), ..stored };
        assert!(matches!(decode(&FleetSnapshot { format: FORMAT, ..garbled }), Err(SnapshotError::Body(_))));
    }
}
