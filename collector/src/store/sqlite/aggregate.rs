//! [`Store::aggregate`](crate::store::Store::aggregate) on SQLite: the shared statements
//! (`store/aggregate.rs`) run at once, each on a reader connection of its own in a thread of its
//! own (each about half the work; on a million rows this halves the wait), so a long aggregation
//! never holds up ingest. The two readers take their snapshots independently: a batch committed
//! between them can be in the distinct-probe count and not in the row counts (its group is then
//! left out, or its key counted a moment early), never the other way round for a whole group.

use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use crate::store::aggregate::{self, Dialect, Folder, Part};
use crate::store::{AggregateRow, Aggregation, Axis, StoreError};

/// Run `aggregation` on readers of the file at `path`.
pub(super) fn run(path: &std::path::Path, aggregation: &Aggregation) -> Result<Vec<AggregateRow>, StoreError> {
    let statements = aggregate::statements(aggregation, Dialect::Sqlite);
    let mut values: Vec<Value> = statements.values.iter().map(super::value).collect();
    if let Some(keys) = &statements.counted {
        values.push(Value::Text(serde_json::to_string(keys).map_err(|e| StoreError::Encode(e.to_string()))?));
    }
    let axes = &statements.axes;
    let mut folder = Folder::new(&statements);
    let (counted, probes) = std::thread::scope(|scope| {
        let probes = scope.spawn(|| probe_rows(&super::open_reader(path)?, &statements.probes, &values, axes));
        let counted = count_rows(&super::open_reader(path)?, &statements.counts, &values, axes);
        let probes = probes.join().map_err(|_| StoreError::Task("the probe count panicked".into()))?;
        Ok::<_, StoreError>((counted, probes))
    })?;
    for (key, status, mechanism, count) in counted? {
        folder.count(key, &status, mechanism.as_deref(), count)?;
    }
    for (key, count) in probes? {
        folder.probes(key, count)?;
    }
    folder.finish()
}

type Counted = (Vec<Part>, String, Option<String>, i64);

fn count_rows(conn: &Connection, sql: &str, values: &[Value], axes: &[Axis]) -> Result<Vec<Counted>, StoreError> {
    let n = axes.len();
    let mut statement = conn.prepare(sql)?;
    let mut rows = statement.query(params_from_iter(values.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push((key(row, axes)?, row.get(n)?, row.get(n + 1)?, row.get(n + 2)?));
    }
    Ok(out)
}

fn probe_rows(conn: &Connection, sql: &str, values: &[Value], axes: &[Axis]) -> Result<Vec<(Vec<Part>, i64)>, StoreError> {
    let mut statement = conn.prepare(sql)?;
    let mut rows = statement.query(params_from_iter(values.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push((key(row, axes)?, row.get(axes.len())?));
    }
    Ok(out)
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
