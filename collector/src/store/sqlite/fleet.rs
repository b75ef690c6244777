//! The fleet reads: counts of distinct probe keys and each probe's latest verdict, in SQL.
//!
//! Everything here is a plain function on a read-only connection, run in a blocking thread by
//! the [`SqliteStore`](super::SqliteStore). The SQL does what a database is good at (windowing,
//! "latest row per group", distinct counts); the folding into metric labels happens in pure Rust
//! in `metrics::fleet`, where it is unit-tested without a database.

use rusqlite::{Connection, OptionalExtension, params};
use vantage_measurement::{Mechanism, Status, TestKind};

use crate::store::filter::{CONTRADICTED, contradicted};
use crate::store::{FleetRows, LatestVerdict, MAX_LATEST_ROWS, StoreError, StreakKey};

/// The rows that count, as SQL: a key on the counted list (`?1`, a JSON array of key ids, decided
/// by the trust policy), and no contradiction between the collector-observed location and the
/// claimed one.
const COUNTED: &str = concat!("probe_key IN (SELECT value FROM json_each(?1)) AND NOT ", contradicted!());

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
