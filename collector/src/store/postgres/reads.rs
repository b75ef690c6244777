//! The reads (and the key-record writes) in PostgreSQL's SQL: the researcher query, the fleet,
//! blocking streaks, key records and the installation salt. The same statements as SQLite's
//! (`store/sqlite/fleet.rs`, `store/sqlite/keys.rs`), with `$n` placeholders and the counted keys bound as a
//! `text[]`; the contradiction rule is the one `CONTRADICTED` text both backends use.

use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};
use vantage_measurement::wire::ObservedLocation;
use vantage_measurement::wire::registration::RegistrationChallenge;
use vantage_measurement::{Mechanism, Status, TestKind};

use super::blobs::Lookup;
use crate::store::filter::CONTRADICTED;
use crate::store::filter::{self, Bound};
use crate::store::{Filter, FleetRows, KeyActivity, LatestVerdict, MAX_LATEST_ROWS, StoreError, StreakKey, annotate};

/// A bound value of a dynamically built statement.
pub(super) type Param = Box<dyn ToSql + Sync + Send>;

/// The SELECT for `filter`, with its bound values.
pub(super) fn select_statement(filter: &Filter, limit: usize) -> (String, Vec<Param>) {
    select(ROW_COLUMNS, filter, limit, 0)
}

/// `SELECT {columns}` of the rows `filter` selects in query order, `limit` of them after `skip`.
pub(super) fn select(columns: &str, filter: &Filter, limit: usize, skip: usize) -> (String, Vec<Param>) {
    let conditions = filter::conditions(filter);
    let mut sql = format!("SELECT {columns} FROM measurements");
    sql.push_str(&filter::where_clause(&conditions, |n| format!("${n}")));
    sql.push_str(&format!(" ORDER BY started_at, id LIMIT ${} OFFSET ${}", conditions.len() + 1, conditions.len() + 2));
    let mut values: Vec<Param> = conditions.iter().map(|(_, bound)| param(bound)).collect();
    values.push(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
    values.push(Box::new(i64::try_from(skip).unwrap_or(i64::MAX)));
    (sql, values)
}

/// A bound value as PostgreSQL takes it.
pub(super) fn param(bound: &Bound) -> Param {
    match bound {
        Bound::Int(n) => Box::new(*n),
        Bound::Text(t) => Box::new(t.clone()),
        Bound::Id(id) => Box::new(*id),
    }
}

/// One stored row as its NDJSON line, annotated as SQLite's are: a row of the lean layout is its
/// skeleton joined with its blobs, an older row its body as written.
/// The columns [`read_row`] reads, in its order.
pub(super) const ROW_COLUMNS: &str = "body, skeleton, observed_cc, observed_asn, collector_key";

pub(super) async fn read_row(row: &Row, lookup: &mut Lookup) -> Result<String, StoreError> {
    let corrupt = |e: tokio_postgres::Error| StoreError::Corrupt(e.to_string());
    let body: Option<String> = row.try_get(0).map_err(corrupt)?;
    let skeleton: Option<Vec<u8>> = row.try_get(1).map_err(corrupt)?;
    let line = match (body, skeleton) {
        (Some(body), _) => body,
        (None, Some(skeleton)) => lookup.join(&skeleton).await?,
        (None, None) => return Err(StoreError::Corrupt("a stored row has neither body nor skeleton".into())),
    };
    let asn: Option<i64> = row.try_get(3).map_err(corrupt)?;
    let observed = ObservedLocation { cc: row.try_get(2).map_err(corrupt)?, asn: asn.map(to_u32).transpose()? };
    let key: Option<String> = row.try_get(4).map_err(corrupt)?;
    annotate(line, &observed, key.as_deref())
}

/// The rows that count: a key on the counted list (`$1`), no contradiction.
fn counted() -> String {
    format!("probe_key = ANY($1) AND NOT {CONTRADICTED}")
}

/// Read the fleet, as SQLite's `sqlite::fleet::read` does.
pub(super) async fn fleet(
    client: &impl GenericClient,
    counted_keys: &[String],
    received_since: i64,
    started_since: i64,
) -> Result<FleetRows, StoreError> {
    let counted = counted();
    let active_probes = client
        .query(
            &format!(
                "SELECT cc, COUNT(DISTINCT probe_key) FROM measurements
                 WHERE received_at >= $2 AND probe_key IS NOT NULL AND {counted}
                 GROUP BY cc ORDER BY cc"
            ),
            &[&counted_keys, &received_since],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<_, String>(0)?, count(r.try_get(1)?))))
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let probes_total: i64 = client
        .query_one(
            &format!(
                "SELECT COUNT(DISTINCT probe_key) FROM measurements
                 WHERE received_at >= $2 AND probe_key IS NOT NULL AND {counted}"
            ),
            &[&counted_keys, &received_since],
        )
        .await?
        .try_get(0)?;
    let asn_probes = client
        .query(
            &format!(
                "SELECT cc, asn, COUNT(DISTINCT probe_key) FROM measurements
                 WHERE received_at >= $2 AND probe_key IS NOT NULL AND {counted}
                 GROUP BY cc, asn ORDER BY cc, asn"
            ),
            &[&counted_keys, &received_since],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<_, String>(0)?, to_u32(r.try_get(1)?)?, count(r.try_get(2)?))))
        .collect::<Result<Vec<_>, StoreError>>()?;

    let limit = i64::try_from(MAX_LATEST_ROWS + 1).unwrap_or(i64::MAX);
    let rows = client
        .query(
            &format!(
                "SELECT probe_key, cc, asn, target, test, status, mechanism, started_at FROM (
                     SELECT probe_key, cc, asn, target, test, status, mechanism, started_at,
                            ROW_NUMBER() OVER (PARTITION BY probe_key, target, test ORDER BY started_at DESC, id DESC) AS rn
                     FROM measurements
                     WHERE started_at >= $2 AND probe_key IS NOT NULL AND {counted}) AS ranked
                 WHERE rn = 1
                 ORDER BY probe_key, target, test
                 LIMIT $3"
            ),
            &[&counted_keys, &started_since, &limit],
        )
        .await?;
    let truncated = rows.len() > MAX_LATEST_ROWS;
    let latest = rows.iter().take(MAX_LATEST_ROWS).map(latest_verdict).collect::<Result<Vec<_>, StoreError>>()?;
    let last_received: Option<i64> = client.query_one("SELECT MAX(received_at) FROM measurements", &[]).await?.try_get(0)?;
    Ok(FleetRows { probes_total: count(probes_total), active_probes, asn_probes, latest, truncated, last_received })
}

fn latest_verdict(row: &Row) -> Result<LatestVerdict, StoreError> {
    let test: String = row.try_get(4)?;
    let status: String = row.try_get(5)?;
    let mechanism: Option<String> = row.try_get(6)?;
    Ok(LatestVerdict {
        probe: row.try_get(0)?,
        cc: row.try_get(1)?,
        asn: to_u32(row.try_get(2)?)?,
        target: row.try_get(3)?,
        test: TestKind::parse(&test).ok_or_else(|| corrupt("test", &test))?,
        status: Status::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        mechanism: mechanism.map(|m| Mechanism::parse(&m).ok_or_else(|| corrupt("mechanism", &m))).transpose()?,
        started_at: row.try_get(7)?,
    })
}

/// For each key, the start of its blocking streak, as SQLite's `sqlite::fleet::blocked_since`.
pub(super) async fn blocked_since(client: &impl GenericClient, keys: &[StreakKey]) -> Result<Vec<Option<i64>>, StoreError> {
    let statement = client
        .prepare(&format!(
            "SELECT MIN(started_at) FROM measurements
             WHERE probe_key = $1 AND target = $2 AND test = $3 AND status = 'blocked' AND NOT {CONTRADICTED}
               AND started_at > COALESCE(
                   (SELECT MAX(started_at) FROM measurements
                    WHERE probe_key = $1 AND target = $2 AND test = $3 AND status = 'ok' AND NOT {CONTRADICTED}),
                   -1)"
        ))
        .await?;
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let row = client.query_one(&statement, &[&key.probe, &key.target, &key.test.as_str()]).await?;
        out.push(row.try_get::<_, Option<i64>>(0)?);
    }
    Ok(out)
}

const KEY_COLUMNS: &str = "key_id, registered_at, first_received, last_received, days, measurements";

fn key_activity(row: &Row) -> Result<KeyActivity, StoreError> {
    Ok(KeyActivity {
        key: row.try_get(0)?,
        registered_at: row.try_get(1)?,
        first_received: row.try_get(2)?,
        last_received: row.try_get(3)?,
        days: u32::try_from(row.try_get::<_, i32>(4)?).unwrap_or(0),
        measurements: count(row.try_get(5)?),
    })
}

/// Register `key` at `at`; `true` if it was not registered before.
pub(super) async fn register(client: &impl GenericClient, key: &str, at: i64) -> Result<bool, StoreError> {
    let changed = client
        .execute(
            "INSERT INTO probe_keys (key_id, registered_at) VALUES ($1, $2)
             ON CONFLICT (key_id) DO UPDATE SET registered_at = EXCLUDED.registered_at
             WHERE probe_keys.registered_at IS NULL",
            &[&key, &at],
        )
        .await?;
    Ok(changed == 1)
}

/// The record of `key`, if any.
pub(super) async fn activity(client: &impl GenericClient, key: &str) -> Result<Option<KeyActivity>, StoreError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM probe_keys WHERE key_id = $1");
    client.query_opt(&sql, &[&key]).await?.as_ref().map(key_activity).transpose()
}

/// The records of the keys whose latest measurement arrived at or after `since`.
pub(super) async fn active(client: &impl GenericClient, since: i64) -> Result<Vec<KeyActivity>, StoreError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM probe_keys WHERE last_received >= $1 ORDER BY key_id");
    client.query(&sql, &[&since]).await?.iter().map(key_activity).collect()
}

/// The installation's salt, made by whichever replica asks first.
pub(super) async fn salt(client: &impl GenericClient) -> Result<String, StoreError> {
    const NAME: &str = "registration_salt";
    client
        .execute(
            "INSERT INTO installation (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&NAME, &RegistrationChallenge::random_salt()],
        )
        .await?;
    Ok(client.query_one("SELECT value FROM installation WHERE name = $1", &[&NAME]).await?.try_get(0)?)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn to_u32(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("ASN {n} out of range")))
}

fn corrupt(column: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {column} {value:?}"))
}
