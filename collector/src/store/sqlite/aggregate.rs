//! [`Store::aggregate`](crate::store::Store::aggregate) on SQLite: the shared statements
//! (`store/aggregate.rs`) run in one read transaction (one snapshot for both) on a reader
//! connection of their own, so a long aggregation never holds up ingest.

use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use crate::store::aggregate::{self, Dialect, Folder, Part};
use crate::store::{AggregateRow, Aggregation, Axis, StoreError};

/// Run `aggregation` on `conn` (a reader).
pub(super) fn run(conn: &Connection, aggregation: &Aggregation) -> Result<Vec<AggregateRow>, StoreError> {
    let statements = aggregate::statements(aggregation, Dialect::Sqlite);
    let mut values: Vec<Value> = statements.values.iter().map(super::value).collect();
    if let Some(keys) = &statements.counted {
        values.push(Value::Text(serde_json::to_string(keys).map_err(|e| StoreError::Encode(e.to_string()))?));
    }
    let axes = &statements.axes;
    let n = axes.len();
    let mut folder = Folder::new(&statements);
    // One snapshot for both statements (WAL: a reader's transaction sees one commit).
    let tx = conn.unchecked_transaction()?;
    {
        let mut counts = tx.prepare(&statements.counts)?;
        let mut rows = counts.query(params_from_iter(values.iter()))?;
        while let Some(row) = rows.next()? {
            let status: String = row.get(n)?;
            let mechanism: Option<String> = row.get(n + 1)?;
            folder.count(key(row, axes)?, &status, mechanism.as_deref(), row.get(n + 2)?)?;
        }
    }
    {
        let mut probes = tx.prepare(&statements.probes)?;
        let mut rows = probes.query(params_from_iter(values.iter()))?;
        while let Some(row) = rows.next()? {
            folder.probes(key(row, axes)?, row.get(n)?)?;
        }
    }
    tx.finish()?;
    folder.finish()
}

/// The leading grouping columns of `row`.
fn key(row: &rusqlite::Row<'_>, axes: &[Axis]) -> Result<Vec<Part>, StoreError> {
    axes.iter()
        .enumerate()
        .map(|(i, axis)| {
            Ok(if aggregate::is_integer(*axis) {
                row.get::<_, Option<i64>>(i)?.map_or(Part::Null, Part::Int)
            } else {
                row.get::<_, Option<String>>(i)?.map_or(Part::Null, Part::Text)
            })
        })
        .collect()
}
