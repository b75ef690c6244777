//! The publication log in PostgreSQL (layout 6): the same table and rules as SQLite's
//! (`sqlite::publications`), and the day read the export streams.

use tokio_postgres::GenericClient;

use super::reads::Param;
use crate::store::{DayRows, Publication, StoreError, day_number, day_of_number, day_seconds};

/// Layout step 6 (`schema`). Arrival-time reads use `measurements_by_received` (step 2).
pub(super) const LAYOUT: &str = "
CREATE TABLE publications (
    day          integer PRIMARY KEY,
    manifest     text    NOT NULL,
    published_at bigint  NOT NULL
);
";

/// The SELECT of a day's rows (the query's columns), with its bound values. `COLLATE \"C\"`:
/// byte order whatever the database's collation, as SQLite's.
pub(super) fn day_statement(rows: &DayRows) -> (String, Vec<Param>) {
    let (start, end) = day_seconds(rows.day);
    let mut sql = format!("SELECT {} FROM measurements WHERE received_at >= $1 AND received_at < $2", super::reads::ROW_COLUMNS);
    let mut values: Vec<Param> = vec![Box::new(start), Box::new(end)];
    if let Some((cc, test)) = &rows.group {
        sql.push_str(" AND cc = $3 AND test = $4");
        values.push(Box::new(cc.clone()));
        values.push(Box::new(test.as_str().to_string()));
    }
    sql.push_str(" ORDER BY cc COLLATE \"C\", test COLLATE \"C\", id");
    (sql, values)
}

/// Add a day's manifest unless the day has one.
pub(super) async fn publish(client: &impl GenericClient, publication: &Publication, now: i64) -> Result<bool, StoreError> {
    let added = client
        .execute(
            "INSERT INTO publications (day, manifest, published_at) VALUES ($1, $2, $3) ON CONFLICT (day) DO NOTHING",
            &[&day_number(publication.day), &publication.manifest, &now],
        )
        .await?;
    Ok(added == 1)
}

/// The manifest of one day, or of the latest (`day` `None`).
pub(super) async fn read(client: &impl GenericClient, day: Option<chrono::NaiveDate>) -> Result<Option<Publication>, StoreError> {
    let row = match day {
        Some(day) => client.query_opt("SELECT day, manifest FROM publications WHERE day = $1", &[&day_number(day)]).await?,
        None => client.query_opt("SELECT day, manifest FROM publications ORDER BY day DESC LIMIT 1", &[]).await?,
    };
    row.map(|r| Ok(Publication { day: day_of_number(i64::from(r.try_get::<_, i32>(0)?))?, manifest: r.try_get(1)? })).transpose()
}

/// Every published day, oldest first.
pub(super) async fn days(client: &impl GenericClient) -> Result<Vec<chrono::NaiveDate>, StoreError> {
    let rows = client.query("SELECT day FROM publications ORDER BY day", &[]).await?;
    rows.iter().map(|r| day_of_number(i64::from(r.try_get::<_, i32>(0)?))).collect()
}

/// When the earliest measurement arrived, Unix seconds.
pub(super) async fn earliest_received(client: &impl GenericClient) -> Result<Option<i64>, StoreError> {
    Ok(client.query_one("SELECT MIN(received_at) FROM measurements", &[]).await?.try_get(0)?)
}
