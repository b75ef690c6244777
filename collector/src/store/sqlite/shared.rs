//! What replicas share besides measurements, in SQL: the latest fleet snapshot and the series
//! budget's admitted label combinations. Plain functions on a connection, run in a blocking thread
//! by the [`SqliteStore`](super::SqliteStore); the PostgreSQL backend keeps the same two tables
//! (`postgres::shared`). Both are tested alike by the conformance suite (`tests/tests/store_conformance/shared.rs`).
//!
//! Both are small by construction: the snapshot is one row holding what is published (bounded
//! by the series budget and the status page's row caps), never the fleet read behind it; the
//! admitted combinations are at most `--max-series` plus the closed, fully folded remainder.

use chrono::DateTime;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::metrics::budget::first_admissible;
use crate::store::{AdmittedSeries, FleetSnapshot, SeriesClaim, StoreError, decode_labels, encode_labels};

/// The two tables (a layout step of `schema`; `IF NOT EXISTS` so the step can be renumbered).
pub(crate) const LAYOUT: &str = "
CREATE TABLE IF NOT EXISTS fleet_snapshot (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    format     INTEGER NOT NULL,
    made_at_ms INTEGER NOT NULL,
    body       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS series_admitted (
    family TEXT NOT NULL,
    labels TEXT NOT NULL,
    cost   INTEGER NOT NULL,
    PRIMARY KEY (family, labels)
) WITHOUT ROWID;
";

/// Keep `snapshot` unless a newer one is stored.
pub(crate) fn put_snapshot(conn: &Connection, snapshot: &FleetSnapshot) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO fleet_snapshot (id, format, made_at_ms, body) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET format = excluded.format, made_at_ms = excluded.made_at_ms, body = excluded.body
         WHERE excluded.made_at_ms >= made_at_ms",
        params![snapshot.format, snapshot.made_at.timestamp_millis(), snapshot.body],
    )?;
    Ok(())
}

/// The latest snapshot.
pub(crate) fn snapshot(conn: &Connection) -> Result<Option<FleetSnapshot>, StoreError> {
    let row = conn
        .query_row("SELECT format, made_at_ms, body FROM fleet_snapshot WHERE id = 1", [], |r| {
            Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
        })
        .optional()?;
    row.map(|(format, made_at_ms, body)| {
        let made_at = DateTime::from_timestamp_millis(made_at_ms)
            .ok_or_else(|| StoreError::Corrupt(format!("fleet snapshot time {made_at_ms}")))?;
        Ok(FleetSnapshot { format, made_at, body })
    })
    .transpose()
}

/// Every admitted combination.
pub(crate) fn admitted(conn: &Connection) -> Result<Vec<AdmittedSeries>, StoreError> {
    let mut statement = conn.prepare_cached("SELECT family, labels, cost FROM series_admitted")?;
    let rows = statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, u32>(2)?)))?;
    rows.map(|row| {
        let (family, labels, cost) = row?;
        Ok(AdmittedSeries { family, labels: decode_labels(&labels)?, cost })
    })
    .collect()
}

/// Decide `claims` in one write transaction (SQLite's one writer serialises them).
pub(crate) fn admit(conn: &mut Connection, claims: &[SeriesClaim], max: u64) -> Result<Vec<usize>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut total: u64 =
        tx.query_row("SELECT COALESCE(SUM(cost), 0) FROM series_admitted", [], |r| r.get::<_, i64>(0))?.try_into().unwrap_or(0);
    let mut chosen = Vec::with_capacity(claims.len());
    {
        let mut known = tx.prepare_cached("SELECT 1 FROM series_admitted WHERE family = ?1 AND labels = ?2")?;
        let mut insert = tx.prepare_cached("INSERT INTO series_admitted (family, labels, cost) VALUES (?1, ?2, ?3)")?;
        for claim in claims {
            let encoded = claim.candidates.iter().map(|c| encode_labels(c)).collect::<Result<Vec<_>, _>>()?;
            let is_known =
                encoded.iter().map(|labels| known.exists(params![claim.family, labels])).collect::<Result<Vec<bool>, _>>()?;
            let index = first_admissible(&is_known, total, u64::from(claim.cost), max);
            if !is_known[index] {
                insert.execute(params![claim.family, encoded[index], claim.cost])?;
                total += u64::from(claim.cost);
            }
            chosen.push(index);
        }
    }
    tx.commit()?;
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn labels_round_trip_whatever_they_hold() {
        let odd = labels(&["a\",\"b", "", "ünï", "\\"]);
        assert_eq!(decode_labels(&encode_labels(&odd).expect("encode")).expect("decode"), odd);
    }
}
