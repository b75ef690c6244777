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

/// Read the fleet: probes by arrival since `received_since`, latest verdicts among measurements
/// started since `started_since` (Unix seconds).
pub(crate) fn read(conn: &Connection, received_since: i64, started_since: i64) -> Result<FleetRows, StoreError> {
    let active_probes = conn
        .prepare_cached(
            "SELECT cc, COUNT(DISTINCT probe_key) FROM measurements
             WHERE received_at >= ?1 AND probe_key IS NOT NULL
             GROUP BY cc ORDER BY cc",
        )?
        .query_map(params![received_since], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
        .map(|row| row.map(|(cc, n)| (cc, count(n))))
        .collect::<Result<Vec<_>, _>>()?;

    let probes_total: i64 = conn.query_row(
        "SELECT COUNT(DISTINCT probe_key) FROM measurements WHERE received_at >= ?1 AND probe_key IS NOT NULL",
        params![received_since],
        |r| r.get(0),
    )?;

    let asn_probes = conn
        .prepare_cached(
            "SELECT cc, asn, COUNT(DISTINCT probe_key) FROM measurements
             WHERE received_at >= ?1 AND probe_key IS NOT NULL
             GROUP BY cc, asn ORDER BY cc, asn",
        )?
        .query_map(params![received_since], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?, r.get::<_, i64>(2)?)))?
        .map(|row| row.map(|(cc, asn, n)| (cc, asn, count(n))))
        .collect::<Result<Vec<_>, _>>()?;

    // The latest row per (probe, target, test); ties on the second broken by the UUIDv7 id,
    // which orders by the probe's millisecond clock.
    let mut statement = conn.prepare_cached(
        "SELECT probe_key, cc, asn, target, test, status, mechanism, started_at FROM (
             SELECT probe_key, cc, asn, target, test, status, mechanism, started_at,
                    ROW_NUMBER() OVER (PARTITION BY probe_key, target, test ORDER BY started_at DESC, id DESC) AS rank
             FROM measurements
             WHERE started_at >= ?1 AND probe_key IS NOT NULL)
         WHERE rank = 1
         ORDER BY probe_key, target, test
         LIMIT ?2",
    )?;
    let limit = i64::try_from(MAX_LATEST_ROWS + 1).unwrap_or(i64::MAX);
    let mut rows = statement.query(params![started_since, limit])?;
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
pub(crate) fn blocked_since(conn: &Connection, keys: &[StreakKey]) -> Result<Vec<Option<i64>>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT MIN(started_at) FROM measurements
         WHERE probe_key = ?1 AND target = ?2 AND test = ?3 AND status = 'blocked'
           AND started_at > COALESCE(
               (SELECT MAX(started_at) FROM measurements
                WHERE probe_key = ?1 AND target = ?2 AND test = ?3 AND status = 'ok'),
               -1)",
    )?;
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
    use vantage_measurement::wire::{KeyId, ProbeKey};
    use vantage_measurement::{Measurement, example};

    use super::*;
    use crate::store::{SqliteStore, Store};

    fn key(n: u8) -> KeyId {
        ProbeKey::from_seed(&[n; 32]).key_id()
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
        store.insert_batch(&[m(now - 50, "DE", 3320, "wiki", Status::Blocked)], Some(&a), None).await.expect("a1");
        store.insert_batch(&[m(now - 10, "DE", 3320, "wiki", Status::Ok)], Some(&a), None).await.expect("a2");
        store.insert_batch(&[m(now - 40, "DE", 3209, "wiki", Status::Ok)], Some(&b), None).await.expect("b1");
        store.insert_batch(&[m(now - 20, "DE", 3209, "wiki", Status::Blocked)], Some(&b), None).await.expect("b2");
        store.insert_batch(&[m(now - 5000, "FR", 3215, "wiki", Status::Blocked)], Some(&c), None).await.expect("c");
        // Anonymous: stored, never counted as a probe.
        store.insert_batch(&[m(now - 5, "DE", 3320, "wiki", Status::Blocked)], None, None).await.expect("anonymous");

        let since = DateTime::from_timestamp(now - 3600, 0).expect("since");
        let rows = store.fleet(since).await.expect("fleet");
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
            store.insert_batch(&[m(at, "DE", 1, "wiki", status)], Some(&a), None).await.expect("a");
        }
        store.insert_batch(&[m(t0 + 50, "DE", 1, "wiki", Status::Blocked)], Some(&b), None).await.expect("b");
        store.insert_batch(&[m(t0 + 60, "DE", 1, "wiki", Status::Ok)], Some(&c), None).await.expect("c");
        let streak = |probe: &KeyId| StreakKey { probe: probe.as_str().to_string(), target: "wiki".into(), test: TestKind::Tls };
        let since = store.blocked_since(vec![streak(&a), streak(&b), streak(&c)]).await.expect("streaks");
        assert_eq!(since, vec![Some(t0 + 200), Some(t0 + 50), None], "`down` does not end a streak; `ok` does");
    }
}
