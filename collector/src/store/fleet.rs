//! The fleet reads: counts of distinct probe keys and each probe's latest verdict, in SQL.
//!
//! Everything here is a plain function on a read-only connection, run in a blocking thread by
//! the [`SqliteStore`](super::SqliteStore). The SQL does what a database is good at (windowing,
//! "latest row per group", distinct counts); the folding into metric labels happens in pure Rust
//! in `metrics::fleet`, where it is unit-tested without a database.

use rusqlite::{Connection, OptionalExtension, params};
use vantage_measurement::{Mechanism, Status, TestKind};

use super::{FleetRows, LatestVerdict, StoreError, StreakKey};

/// The most (probe, target, test) rows one fleet read returns. 2 000 probes × 100 targets × 4
/// tests fit; beyond it the gauges are a lower bound and the refresh logs a warning.
pub const MAX_LATEST_ROWS: usize = 1_000_000;

/// A row whose collector-observed ASN or country contradicts the claimed one (a claimed ASN 0 or
/// country ZZ is "unknown", no claim): the SQL twin of `crate::trust::contradiction`, held
/// together by a test below.
macro_rules! contradicted {
    () => {
        "((observed_asn IS NOT NULL AND asn != 0 AND observed_asn != asn)
          OR (observed_cc IS NOT NULL AND cc != 'ZZ' AND observed_cc != cc))"
    };
}

/// The rows that count, as SQL: a key on the counted list (`?1`, a JSON array of key ids, decided
/// by the trust policy), and no contradiction between the collector-observed location and the
/// claimed one.
const COUNTED: &str = concat!("probe_key IN (SELECT value FROM json_each(?1)) AND NOT ", contradicted!());
/// A row whose observed ASN contradicts the claimed one.
const CONTRADICTED: &str = contradicted!();

/// Read the fleet: probes by arrival since `received_since`, latest verdicts among measurements
/// started since `started_since` (Unix seconds), only rows that count (`counted`: a JSON array of
/// the key ids that do).
pub(crate) fn read(conn: &Connection, counted: &str, received_since: i64, started_since: i64) -> Result<FleetRows, StoreError> {
    let active_probes = conn
        .prepare_cached(&format!(
            "SELECT cc, COUNT(DISTINCT probe_key) FROM measurements
             WHERE received_at >= ?2 AND probe_key IS NOT NULL AND {COUNTED}
             GROUP BY cc ORDER BY cc"
        ))?
        .query_map(params![counted, received_since], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
        .map(|row| row.map(|(cc, n)| (cc, count(n))))
        .collect::<Result<Vec<_>, _>>()?;

    let probes_total: i64 = conn.query_row(
        &format!(
            "SELECT COUNT(DISTINCT probe_key) FROM measurements
             WHERE received_at >= ?2 AND probe_key IS NOT NULL AND {COUNTED}"
        ),
        params![counted, received_since],
        |r| r.get(0),
    )?;

    let asn_probes = conn
        .prepare_cached(&format!(
            "SELECT cc, asn, COUNT(DISTINCT probe_key) FROM measurements
             WHERE received_at >= ?2 AND probe_key IS NOT NULL AND {COUNTED}
             GROUP BY cc, asn ORDER BY cc, asn"
        ))?
        .query_map(params![counted, received_since], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?, r.get::<_, i64>(2)?)))?
        .map(|row| row.map(|(cc, asn, n)| (cc, asn, count(n))))
        .collect::<Result<Vec<_>, _>>()?;

    // The latest row per (probe, target, test); ties on the second broken by the UUIDv7 id,
    // which orders by the probe's millisecond clock.
    let mut statement = conn.prepare_cached(&format!(
        "SELECT probe_key, cc, asn, target, test, status, mechanism, started_at FROM (
             SELECT probe_key, cc, asn, target, test, status, mechanism, started_at,
                    ROW_NUMBER() OVER (PARTITION BY probe_key, target, test ORDER BY started_at DESC, id DESC) AS rank
             FROM measurements
             WHERE started_at >= ?2 AND probe_key IS NOT NULL AND {COUNTED})
         WHERE rank = 1
         ORDER BY probe_key, target, test
         LIMIT ?3"
    ))?;
    let limit = i64::try_from(MAX_LATEST_ROWS + 1).unwrap_or(i64::MAX);
    let mut rows = statement.query(params![counted, started_since, limit])?;
    let mut latest = Vec::new();
    let mut truncated = false;
    while let Some(row) = rows.next()? {
        if latest.len() == MAX_LATEST_ROWS {
            truncated = true;
            break;
        }
        let test: String = row.get(4)?;
        let status: String = row.get(5)?;
        let mechanism: Option<String> = row.get(6)?;
        latest.push(LatestVerdict {
            probe: row.get(0)?,
            cc: row.get(1)?,
            asn: row.get(2)?,
            target: row.get(3)?,
            test: TestKind::parse(&test).ok_or_else(|| corrupt("test", &test))?,
            status: Status::parse(&status).ok_or_else(|| corrupt("status", &status))?,
            mechanism: mechanism.map(|m| Mechanism::parse(&m).ok_or_else(|| corrupt("mechanism", &m))).transpose()?,
            started_at: row.get(7)?,
        });
    }

    let last_received: Option<i64> = conn.query_row("SELECT MAX(received_at) FROM measurements", [], |r| r.get(0))?;
    Ok(FleetRows { probes_total: count(probes_total), active_probes, asn_probes, latest, truncated, last_received })
}

/// For each key: the first `blocked` measurement after the probe's last `ok` one of that
/// (target, test). `down` and `inconclusive` don't end a streak: they say nothing about blocking.
/// Rows whose observed location contradicts the claimed one are left out, as from the fleet read.
pub(crate) fn blocked_since(conn: &Connection, keys: &[StreakKey]) -> Result<Vec<Option<i64>>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT MIN(started_at) FROM measurements
         WHERE probe_key = ?1 AND target = ?2 AND test = ?3 AND status = 'blocked' AND NOT {CONTRADICTED}
           AND started_at > COALESCE(
               (SELECT MAX(started_at) FROM measurements
                WHERE probe_key = ?1 AND target = ?2 AND test = ?3 AND status = 'ok' AND NOT {CONTRADICTED}),
               -1)"
    ))?;
    keys.iter()
        .map(|key| {
            statement
                .query_row(params![key.probe, key.target, key.test.as_str()], |r| r.get::<_, Option<i64>>(0))
                .optional()
                .map(Option::flatten)
                .map_err(StoreError::from)
        })
        .collect()
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn corrupt(column: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {column} {value:?}"))
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use std::collections::BTreeSet;

    use vantage_measurement::wire::{KeyId, ObservedLocation, ProbeKey};
    use vantage_measurement::{Measurement, ProbeInfo, example};

    use super::*;
    use crate::store::{SqliteStore, Store};

    fn key(n: u8) -> KeyId {
        ProbeKey::from_seed(&[n; 32]).key_id()
    }

    fn ids(keys: &[&KeyId]) -> Vec<String> {
        keys.iter().map(|k| k.as_str().to_string()).collect()
    }

    fn m(at: i64, cc: &str, asn: u32, target: &str, status: Status) -> Measurement {
        let mut m = example::tls_reset(DateTime::from_timestamp(at, 0).expect("time"));
        m.probe.cc = cc.into();
        m.probe.asn = asn;
        m.target.name = target.into();
        m.verdict.status = status;
        m.verdict.mechanism = match status {
            Status::Ok => None,
            Status::Blocked => Some(Mechanism::TlsResetAfterClientHello),
            _ => Some(Mechanism::ControlFailed),
        };
        m
    }

    #[tokio::test]
    async fn each_probe_counts_once_with_its_latest_verdict_in_the_window() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let now = Utc::now().timestamp();
        let (a, b, c) = (key(1), key(2), key(3));
        // a: blocked, then ok (latest ok); b: ok, then blocked; c: only before the window.
        store.insert_batch(&[m(now - 50, "DE", 3320, "wiki", Status::Blocked)], Some(&a), None, Utc::now()).await.expect("a1");
        store.insert_batch(&[m(now - 10, "DE", 3320, "wiki", Status::Ok)], Some(&a), None, Utc::now()).await.expect("a2");
        store.insert_batch(&[m(now - 40, "DE", 3209, "wiki", Status::Ok)], Some(&b), None, Utc::now()).await.expect("b1");
        store.insert_batch(&[m(now - 20, "DE", 3209, "wiki", Status::Blocked)], Some(&b), None, Utc::now()).await.expect("b2");
        store.insert_batch(&[m(now - 5000, "FR", 3215, "wiki", Status::Blocked)], Some(&c), None, Utc::now()).await.expect("c");
        // Anonymous: stored, never counted as a probe.
        store.insert_batch(&[m(now - 5, "DE", 3320, "wiki", Status::Blocked)], None, None, Utc::now()).await.expect("anonymous");

        let since = DateTime::from_timestamp(now - 3600, 0).expect("since");
        let rows = store.fleet(since, &ids(&[&a, &b, &c])).await.expect("fleet");
        let latest: Vec<(&str, &str, &str)> =
            rows.latest.iter().map(|l| (l.probe.as_str(), l.cc.as_str(), l.status.as_str())).collect();
        let mut expected = vec![(a.as_str(), "DE", "ok"), (b.as_str(), "DE", "blocked")];
        expected.sort();
        assert_eq!(latest, expected);
        // All arrived just now, so c is an active probe (by arrival) even though its
        // measurement is too old to say anything about the present.
        assert_eq!(rows.active_probes, vec![("DE".to_string(), 2), ("FR".to_string(), 1)]);
        assert_eq!(rows.probes_total, 3);
        assert_eq!(rows.asn_probes, vec![("DE".to_string(), 3209, 1), ("DE".to_string(), 3320, 1), ("FR".to_string(), 3215, 1)]);
        assert!(!rows.truncated);
        assert!(rows.last_received.is_some_and(|t| t >= now));
    }

    #[tokio::test]
    async fn a_streak_starts_at_the_first_block_after_the_last_ok() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let (a, b, c) = (key(1), key(2), key(3));
        let t0 = 1_700_000_000;
        let history = [
            (t0, Status::Blocked),
            (t0 + 100, Status::Ok),
            (t0 + 200, Status::Blocked),
            (t0 + 250, Status::Down),
            (t0 + 300, Status::Blocked),
        ];
        for (at, status) in history {
            store.insert_batch(&[m(at, "DE", 1, "wiki", status)], Some(&a), None, Utc::now()).await.expect("a");
        }
        store.insert_batch(&[m(t0 + 50, "DE", 1, "wiki", Status::Blocked)], Some(&b), None, Utc::now()).await.expect("b");
        store.insert_batch(&[m(t0 + 60, "DE", 1, "wiki", Status::Ok)], Some(&c), None, Utc::now()).await.expect("c");
        let streak = |probe: &KeyId| StreakKey { probe: probe.as_str().to_string(), target: "wiki".into(), test: TestKind::Tls };
        let since = store.blocked_since(vec![streak(&a), streak(&b), streak(&c)]).await.expect("streaks");
        assert_eq!(since, vec![Some(t0 + 200), Some(t0 + 50), None], "`down` does not end a streak; `ok` does");
    }

    #[tokio::test]
    async fn only_counted_keys_and_uncontradicted_rows_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let now = Utc::now().timestamp();
        let (trusted, untrusted) = (key(1), key(2));
        let seen = |cc: &str, asn| ObservedLocation { cc: Some(cc.into()), asn: Some(asn) };
        // Every case of the contradiction rule: (claimed cc, claimed ASN, observed, target).
        let cases = [
            ("DE", 3320, Some(seen("DE", 3320)), "same"),
            ("DE", 3320, Some(seen("DE", 3209)), "other-asn"),
            ("DE", 3320, Some(seen("FR", 3320)), "other-country"),
            ("DE", 0, Some(seen("DE", 3209)), "unclaimed-asn"),
            ("DE", 0, Some(seen("FR", 3209)), "unclaimed-asn-other-country"),
            ("ZZ", 0, Some(seen("FR", 3209)), "unclaimed"),
            ("DE", 3320, Some(ObservedLocation { cc: None, asn: None }), "unknown-address"),
            ("DE", 3320, None, "unseen"),
        ];
        for (cc, asn, observed, target) in &cases {
            for signer in [&trusted, &untrusted] {
                let batch = [m(now - 10, cc, *asn, target, Status::Blocked)];
                store.insert_batch(&batch, Some(signer), observed.as_ref(), Utc::now()).await.expect("insert");
            }
        }
        let since = DateTime::from_timestamp(now - 3600, 0).expect("since");
        let rows = store.fleet(since, &ids(&[&trusted])).await.expect("fleet");
        let read: BTreeSet<&str> = rows.latest.iter().map(|l| l.target.as_str()).collect();
        let expected: BTreeSet<&str> = cases
            .iter()
            .filter(|(cc, asn, observed, _)| {
                let claimed = ProbeInfo { cc: cc.to_string(), asn: *asn, network_type: None, network_epoch: None };
                crate::trust::contradiction(&claimed, observed.as_ref()).is_none()
            })
            .map(|(_, _, _, target)| *target)
            .collect();
        assert_eq!(read, expected, "the SQL and crate::trust::contradiction agree");
        assert_eq!(expected.len(), 5, "three contradicted rows are left out");
        assert!(rows.latest.iter().all(|l| l.probe == trusted.as_str()), "only the counted key");
        assert_eq!(rows.probes_total, 1);
        assert_eq!(store.fleet(since, &[]).await.expect("fleet").probes_total, 0, "nobody counts");

        // A streak ignores contradicted rows too: the contradicted `ok` does not end it.
        let streak = StreakKey { probe: trusted.as_str().to_string(), target: "wiki".into(), test: TestKind::Tls };
        store
            .insert_batch(&[m(now - 30, "DE", 3320, "wiki", Status::Blocked)], Some(&trusted), None, Utc::now())
            .await
            .expect("b");
        let lie = [m(now - 20, "DE", 3320, "wiki", Status::Ok)];
        store.insert_batch(&lie, Some(&trusted), Some(&seen("DE", 64512)), Utc::now()).await.expect("ok from elsewhere");
        assert_eq!(store.blocked_since(vec![streak]).await.expect("streak"), vec![Some(now - 30)]);
    }
}
