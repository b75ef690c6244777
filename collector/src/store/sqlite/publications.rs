//! The publication log in SQL (layout 8): one signed manifest per closed day, never overwritten
//! (`crate::export::publish` makes them), and the day read the export streams. The PostgreSQL
//! backend keeps the same table (`postgres::publications`).

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use crate::store::{DayRows, Publication, StoreError, day_number, day_of_number, day_seconds};

/// The table, and the arrival-time index a day's read needs (`IF NOT EXISTS`: renumberable).
pub(crate) const LAYOUT: &str = "
CREATE TABLE IF NOT EXISTS publications (
    day          INTEGER PRIMARY KEY NOT NULL,
    manifest     TEXT NOT NULL,
    published_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS measurements_by_received ON measurements (received_at);
";

/// The SELECT of a day's rows (the query's columns), with its bound values.
pub(crate) fn day_statement(rows: &DayRows) -> (String, Vec<Value>) {
    let (start, end) = day_seconds(rows.day);
    let mut sql = format!("SELECT {} FROM measurements WHERE received_at >= ?1 AND received_at < ?2", super::ROW_COLUMNS);
    let mut values = vec![Value::Integer(start), Value::Integer(end)];
    if let Some((cc, test)) = &rows.group {
        sql.push_str(" AND cc = ?3 AND test = ?4");
        values.extend([Value::Text(cc.clone()), Value::Text(test.as_str().into())]);
    }
    sql.push_str(" ORDER BY cc, test, id");
    (sql, values)
}

/// Add a day's manifest unless the day has one.
pub(crate) fn publish(conn: &Connection, publication: &Publication, now: i64) -> Result<bool, StoreError> {
    let added = conn.execute(
        "INSERT INTO publications (day, manifest, published_at) VALUES (?1, ?2, ?3) ON CONFLICT (day) DO NOTHING",
        params![day_number(publication.day), publication.manifest, now],
    )?;
    Ok(added == 1)
}

/// The manifest of one day, or of the latest (`day` `None`).
pub(crate) fn read(conn: &Connection, day: Option<chrono::NaiveDate>) -> Result<Option<Publication>, StoreError> {
    let row = |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?));
    let found = match day {
        Some(day) => {
            conn.query_row("SELECT day, manifest FROM publications WHERE day = ?1", params![day_number(day)], row).optional()?
        }
        None => conn.query_row("SELECT day, manifest FROM publications ORDER BY day DESC LIMIT 1", [], row).optional()?,
    };
    found.map(|(day, manifest)| Ok(Publication { day: day_of_number(day)?, manifest })).transpose()
}

/// Every published day, oldest first.
pub(crate) fn days(conn: &Connection) -> Result<Vec<chrono::NaiveDate>, StoreError> {
    let mut statement = conn.prepare("SELECT day FROM publications ORDER BY day")?;
    let days = statement.query_map([], |r| r.get::<_, i64>(0))?.collect::<Result<Vec<_>, _>>()?;
    days.into_iter().map(day_of_number).collect()
}

/// When the earliest measurement arrived, Unix seconds.
pub(crate) fn earliest_received(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn.query_row("SELECT MIN(received_at) FROM measurements", [], |r| r.get(0))?)
}
