//! What replicas share besides measurements, in PostgreSQL: the latest fleet snapshot and the
//! series budget's admitted combinations (the same two tables and rules as SQLite's, in
//! `store::shared`). Admission serialises replicas with a table lock held for its transaction.

use chrono::DateTime;
use tokio_postgres::GenericClient;

use crate::metrics::budget::first_admissible;
use crate::store::{AdmittedSeries, FleetSnapshot, SeriesClaim, StoreError};
use crate::store::{decode_labels, encode_labels};

/// Layout step 3 (`schema`).
pub(super) const LAYOUT: &str = "
CREATE TABLE fleet_snapshot (
    id         integer PRIMARY KEY CHECK (id = 1),
    format     bigint  NOT NULL,
    made_at_ms bigint  NOT NULL,
    body       text    NOT NULL
);
CREATE TABLE series_admitted (
    family text    NOT NULL,
    labels text    NOT NULL,
    cost   integer NOT NULL,
    PRIMARY KEY (family, labels)
);
";

/// Keep `snapshot` unless a newer one is stored.
pub(super) async fn put_snapshot(client: &impl GenericClient, snapshot: &FleetSnapshot) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO fleet_snapshot (id, format, made_at_ms, body) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET format = excluded.format, made_at_ms = excluded.made_at_ms, body = excluded.body
             WHERE excluded.made_at_ms >= fleet_snapshot.made_at_ms",
            &[&i64::from(snapshot.format), &snapshot.made_at.timestamp_millis(), &snapshot.body],
        )
        .await?;
    Ok(())
}

/// The latest snapshot.
pub(super) async fn snapshot(client: &impl GenericClient) -> Result<Option<FleetSnapshot>, StoreError> {
    let Some(row) = client.query_opt("SELECT format, made_at_ms, body FROM fleet_snapshot WHERE id = 1", &[]).await? else {
        return Ok(None);
    };
    let (format, made_at_ms): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    let format = u32::try_from(format).map_err(|_| StoreError::Corrupt(format!("fleet snapshot format {format}")))?;
    let made_at = DateTime::from_timestamp_millis(made_at_ms)
        .ok_or_else(|| StoreError::Corrupt(format!("fleet snapshot time {made_at_ms}")))?;
    Ok(Some(FleetSnapshot { format, made_at, body: row.try_get(2)? }))
}

/// Every admitted combination.
pub(super) async fn admitted(client: &impl GenericClient) -> Result<Vec<AdmittedSeries>, StoreError> {
    let rows = client.query("SELECT family, labels, cost FROM series_admitted", &[]).await?;
    rows.iter()
        .map(|row| {
            let cost: i32 = row.try_get(2)?;
            Ok(AdmittedSeries {
                family: row.try_get(0)?,
                labels: decode_labels(row.try_get(1)?)?,
                cost: u32::try_from(cost).unwrap_or(0),
            })
        })
        .collect()
}

/// Decide `claims` in one transaction. The lock (which conflicts with itself, not with readers)
/// queues replicas admitting at once, so the sum they compare with the cap is the real one.
pub(super) async fn admit(
    client: &mut deadpool_postgres::Object,
    claims: &[SeriesClaim],
    max: u64,
) -> Result<Vec<usize>, StoreError> {
    let tx = client.transaction().await?;
    tx.batch_execute("LOCK TABLE series_admitted IN SHARE ROW EXCLUSIVE MODE").await?;
    let total: i64 = tx.query_one("SELECT COALESCE(SUM(cost), 0)::bigint FROM series_admitted", &[]).await?.try_get(0)?;
    let mut total = u64::try_from(total).unwrap_or(0);
    let known = tx.prepare("SELECT 1 FROM series_admitted WHERE family = $1 AND labels = $2").await?;
    let insert = tx.prepare("INSERT INTO series_admitted (family, labels, cost) VALUES ($1, $2, $3)").await?;
    let mut chosen = Vec::with_capacity(claims.len());
    for claim in claims {
        let encoded = claim.candidates.iter().map(|c| encode_labels(c)).collect::<Result<Vec<_>, _>>()?;
        let mut is_known = Vec::with_capacity(encoded.len());
        for labels in &encoded {
            is_known.push(tx.query_opt(&known, &[&claim.family, labels]).await?.is_some());
        }
        let index = first_admissible(&is_known, total, u64::from(claim.cost), max);
        if !is_known[index] {
            let cost = i32::try_from(claim.cost).unwrap_or(i32::MAX);
            tx.execute(&insert, &[&claim.family, &encoded[index], &cost]).await?;
            total += u64::from(claim.cost);
        }
        chosen.push(index);
    }
    tx.commit().await?;
    Ok(chosen)
}
