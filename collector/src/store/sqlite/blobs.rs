//! The SQLite side of [`blobs`](crate::store::blobs): each blob stored once, counted references, a cached
//! lookup for reads, and the conversion of layout-4 rows.
//!
//! Tables (layout 5, `schema.rs`): `blobs (hash, bytes)` holds each blob once and is written once;
//! `blob_refs (hash, refs)` counts the stored rows whose skeleton references it. Counts live in a
//! table of their own because updating a row rewrites its whole record, and a blob's record is
//! kilobytes while a count is a few bytes.
//!
//! Garbage: reference counts, not a sweep. Every row stored adds one per distinct blob it
//! references, in the transaction that stores it; every row deleted ([`delete_measurements`],
//! used by `delete_probe` and retention) takes them back in its own transaction, and a blob whose
//! count reaches zero is deleted there and then. Nothing unreferenced outlives the transaction that
//! released it, and no periodic job has to read every skeleton to find out.

use std::collections::HashMap;

use rusqlite::{Connection, Params, Statement, params};

use crate::store::StoreError;
use crate::store::blobs::{self, Blob, BlobSource, Hash};

/// Blobs kept in memory by one reader: a query's rows share a few hundred chains.
const CACHED_BLOBS: usize = 512;
/// Rows converted per statement when migrating layout-4 rows.
pub(crate) const CONVERT_CHUNK: i64 = 1_000;

/// References taken by the rows of one batch, counted per blob until written.
#[derive(Default)]
pub(crate) struct Taken<'a> {
    by_hash: HashMap<Hash, (i64, &'a [u8])>,
}

impl<'a> Taken<'a> {
    /// A newly stored row references `blobs` (distinct, as [`blobs::split`] returns them).
    pub(crate) fn add(&mut self, blobs: &'a [Blob]) {
        for blob in blobs {
            self.by_hash.entry(blob.hash).or_insert((0, &blob.bytes)).0 += 1;
        }
    }

    /// Store the blobs not yet stored and add the references (inside the caller's transaction).
    pub(crate) fn write(self, tx: &Connection) -> Result<(), StoreError> {
        let mut count = tx.prepare_cached(
            "INSERT INTO blob_refs (hash, refs) VALUES (?1, ?2)
             ON CONFLICT (hash) DO UPDATE SET refs = refs + excluded.refs RETURNING refs",
        )?;
        let mut store = tx.prepare_cached("INSERT INTO blobs (hash, bytes) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING")?;
        for (hash, (refs, bytes)) in self.by_hash {
            let now: i64 = count.query_row(params![hash, refs], |r| r.get(0))?;
            // A count that is just these rows' is a blob nobody referenced before.
            if now == refs {
                store.execute(params![hash, bytes])?;
            }
        }
        Ok(())
    }
}

/// Delete the measurements matching `condition` (SQL over `measurements`' columns, with
/// `values` bound) inside the caller's transaction, and release the blobs they referenced;
/// returns how many rows were deleted.
pub(crate) fn delete_measurements<P: Params>(tx: &Connection, condition: &str, values: P) -> Result<u64, StoreError> {
    let mut released: HashMap<Hash, i64> = HashMap::new();
    let mut deleted = 0u64;
    {
        let mut statement = tx.prepare_cached(&format!("DELETE FROM measurements WHERE {condition} RETURNING skeleton"))?;
        let mut rows = statement.query(values)?;
        while let Some(row) = rows.next()? {
            let skeleton: Vec<u8> = row.get(0)?;
            for hash in blobs::references(&skeleton)? {
                *released.entry(hash).or_default() += 1;
            }
            deleted += 1;
        }
    }
    let mut release = tx.prepare_cached("UPDATE blob_refs SET refs = refs - ?2 WHERE hash = ?1 RETURNING refs")?;
    let mut forget_count = tx.prepare_cached("DELETE FROM blob_refs WHERE hash = ?1")?;
    let mut forget_blob = tx.prepare_cached("DELETE FROM blobs WHERE hash = ?1")?;
    for (hash, refs) in released {
        let left: i64 = release.query_row(params![hash, refs], |r| r.get(0))?;
        if left <= 0 {
            forget_count.execute(params![hash])?;
            forget_blob.execute(params![hash])?;
        }
    }
    Ok(deleted)
}

/// Blobs looked up on a reader connection, the recent ones kept in memory.
pub(crate) struct BlobLookup<'c> {
    statement: Statement<'c>,
    cache: HashMap<Hash, Vec<u8>>,
}

impl<'c> BlobLookup<'c> {
    pub(crate) fn new(conn: &'c Connection) -> Result<Self, StoreError> {
        Ok(BlobLookup { statement: conn.prepare("SELECT bytes FROM blobs WHERE hash = ?1")?, cache: HashMap::new() })
    }
}

impl BlobSource for BlobLookup<'_> {
    fn blob(&mut self, hash: &Hash) -> Result<Option<&[u8]>, StoreError> {
        if !self.cache.contains_key(hash) {
            let mut rows = self.statement.query(params![hash])?;
            let Some(row) = rows.next()? else { return Ok(None) };
            let bytes: Vec<u8> = row.get(0)?;
            if self.cache.len() >= CACHED_BLOBS {
                self.cache.clear();
            }
            self.cache.insert(*hash, bytes);
        }
        Ok(self.cache.get(hash).map(Vec::as_slice))
    }
}

/// Layout 4 → 5: turn every row's canonical body into its skeleton and store its blobs, a chunk
/// of rows at a time (memory stays bounded), inside the migration's transaction.
pub(crate) fn convert_bodies(tx: &Connection) -> Result<(), StoreError> {
    let mut select = tx.prepare("SELECT rowid, skeleton FROM measurements WHERE rowid > ?1 ORDER BY rowid LIMIT ?2")?;
    let mut update = tx.prepare("UPDATE measurements SET skeleton = ?2 WHERE rowid = ?1")?;
    let mut after = i64::MIN;
    loop {
        let chunk = select
            .query_map(params![after, CONVERT_CHUNK], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        let Some(&(last, _)) = chunk.last() else { return Ok(()) };
        let splits = chunk.iter().map(|(_, body)| blobs::split(body)).collect::<Result<Vec<_>, _>>()?;
        let mut taken = Taken::default();
        for ((rowid, _), split) in chunk.iter().zip(&splits) {
            update.execute(params![rowid, split.skeleton])?;
            taken.add(&split.blobs);
        }
        taken.write(tx)?;
        after = last;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::{DateTime, TimeZone, Utc};
    use vantage_measurement::wire::{KeyId, ObservedLocation, ProbeKey};
    use vantage_measurement::{Measurement, example};

    use crate::store::{Filter, SqliteStore, Store};

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).single().expect("valid time")
    }

    fn key(seed: u8) -> KeyId {
        ProbeKey::from_seed(&[seed; 32]).key_id()
    }

    /// Fleet measurements `range`, started a second apart.
    pub(crate) fn fleet(range: std::ops::Range<u64>) -> Vec<Measurement> {
        range.map(|n| example::tls_fleet(n, at(1_750_000_000 + i64::try_from(n).expect("small")))).collect()
    }

    /// What layout 4 returned for `m`: its canonical line, with the observed location appended
    /// when there was one. Written out here, not computed by the code under test.
    pub(crate) fn layout_4_line(m: &Measurement, observed: Option<&ObservedLocation>) -> String {
        let line = m.to_json_line().expect("line");
        match observed {
            Some(ObservedLocation { cc: Some(cc), asn: Some(asn) }) => {
                format!("{},\"collector_observed\":{{\"cc\":\"{cc}\",\"asn\":{asn}}}}}", &line[..line.len() - 1])
            }
            Some(_) => unimplemented!("the tests observe both or nothing"),
            None => line,
        }
    }

    async fn lines(store: &SqliteStore) -> Vec<String> {
        let mut rx = store.query(&Filter::default(), 100_000).await.expect("query");
        let mut out = Vec::new();
        while let Some(line) = rx.recv().await {
            out.push(line.expect("row"));
        }
        out
    }

    /// (blobs, blob_refs rows, sum of refs) as stored.
    fn blob_tables(store: &SqliteStore) -> (i64, i64, i64) {
        let conn = rusqlite::Connection::open(store.path()).expect("inspect");
        conn.query_row(
            "SELECT (SELECT COUNT(*) FROM blobs), (SELECT COUNT(*) FROM blob_refs), (SELECT COALESCE(SUM(refs), 0) FROM blob_refs)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("counts")
    }

    #[tokio::test]
    async fn rows_come_back_byte_for_byte_as_layout_4_returned_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let observed = ObservedLocation { cc: Some("DE".into()), asn: Some(3320) };
        let (signed, anonymous) = (fleet(0..300), fleet(300..400));
        store.insert_batch(&signed, Some(&key(1)), Some(&observed), at(1_750_000_000)).await.expect("signed");
        store.insert_batch(&anonymous, None, None, at(1_750_000_000)).await.expect("anonymous");
        let reset = example::tls_reset(at(1_750_001_000));
        store.insert_batch(std::slice::from_ref(&reset), None, None, at(1_750_001_000)).await.expect("example");

        let mut expected: Vec<String> = signed.iter().map(|m| layout_4_line(m, Some(&observed))).collect();
        expected.extend(anonymous.iter().map(|m| layout_4_line(m, None)));
        expected.push(layout_4_line(&reset, None));
        assert_eq!(lines(&store).await, expected);
        let (blobs, counted, refs) = blob_tables(&store);
        assert!(blobs > 0 && blobs < 400, "chains are shared, not one per row: {blobs}");
        assert_eq!(blobs, counted);
        assert!(refs >= 400, "every fleet row references a chain: {refs}");
    }

    #[tokio::test]
    async fn deleting_rows_releases_their_blobs_and_duplicates_take_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let (a, b) = (fleet(0..40), fleet(40..50));
        store.insert_batch(&a, Some(&key(1)), None, at(1_750_000_000)).await.expect("a");
        let after_a = blob_tables(&store);
        store.insert_batch(&a, Some(&key(1)), None, at(1_750_000_000)).await.expect("a again");
        assert_eq!(blob_tables(&store), after_a, "a duplicate takes no reference");
        store.insert_batch(&b, Some(&key(2)), None, at(1_750_000_000)).await.expect("b");

        assert_eq!(store.delete_probe(&key(1)).await.expect("delete a"), 40);
        let only_b = tempfile::tempdir().expect("tempdir");
        let fresh = SqliteStore::open(only_b.path()).await.expect("open");
        fresh.insert_batch(&b, Some(&key(2)), None, at(1_750_000_000)).await.expect("b alone");
        assert_eq!(blob_tables(&store), blob_tables(&fresh), "what is left is what b alone needs");
        assert_eq!(lines(&store).await, lines(&fresh).await);

        assert_eq!(store.delete_probe(&key(2)).await.expect("delete b"), 10);
        assert_eq!(blob_tables(&store), (0, 0, 0), "no blob outlives its last row");
    }

    #[tokio::test]
    async fn retention_releases_the_blobs_of_the_rows_it_drops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        store.insert_batch(&fleet(0..30), Some(&key(1)), None, at(1_750_000_000)).await.expect("insert");
        assert_ne!(blob_tables(&store), (0, 0, 0));
        // The fleet started on one day; keeping from two days later keeps nothing.
        assert_eq!(store.retain(at(1_750_000_000 + 2 * 86_400)).await.expect("retain"), 30);
        assert_eq!(blob_tables(&store), (0, 0, 0), "retention leaves no blob behind");
    }
}
