//! [`Store::aggregate`](crate::store::Store::aggregate) on PostgreSQL: the shared statements
//! (`store/aggregate.rs`) in one read-only `REPEATABLE READ` transaction, so both see one
//! snapshot.

use tokio_postgres::IsolationLevel;
use tokio_postgres::Row;

use super::reads::Param;
use crate::store::aggregate::{self, Dialect, Folder, Part};
use crate::store::{AggregateRow, Aggregation, Axis, StoreError};

/// Run `aggregation` on `client`.
pub(super) async fn run(client: &mut tokio_postgres::Client, aggregation: &Aggregation) -> Result<Vec<AggregateRow>, StoreError> {
    let statements = aggregate::statements(aggregation, Dialect::Postgres);
    let mut values: Vec<Param> = statements.values.iter().map(super::reads::param).collect();
    if let Some(keys) = &statements.counted {
        values.push(Box::new(keys.clone()));
    }
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        values.iter().map(|v| &**v as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
    let axes = &statements.axes;
    let n = axes.len();
    let mut folder = Folder::new(&statements);
    let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
    for row in tx.query(&statements.counts, &params).await? {
        let status: String = row.try_get(n)?;
        let mechanism: Option<String> = row.try_get(n + 1)?;
        folder.count(key(&row, axes)?, &status, mechanism.as_deref(), row.try_get(n + 2)?)?;
    }
    for row in tx.query(&statements.probes, &params).await? {
        folder.probes(key(&row, axes)?, row.try_get(n)?)?;
    }
    tx.commit().await?;
    folder.finish()
}

/// The leading grouping columns of `row`.
fn key(row: &Row, axes: &[Axis]) -> Result<Vec<Part>, StoreError> {
    axes.iter()
        .enumerate()
        .map(|(i, axis)| {
            Ok(if aggregate::is_integer(*axis) {
                row.try_get::<_, Option<i64>>(i)?.map_or(Part::Null, Part::Int)
            } else {
                row.try_get::<_, Option<String>>(i)?.map_or(Part::Null, Part::Text)
            })
        })
        .collect()
}
