//! PostgreSQL's half of the lean layout: blobs stored once, found again for reads, dropped with
//! the partitions that used them.
//!
//! What is cut out of a line and how it is put back is `store::blobs` (pure, shared with SQLite).
//! Here, each blob keeps `last_day`: the latest day (the UUIDv7 day rows are filed under) of a
//! row that references it. Retention drops whole partitions, so a blob whose `last_day` is before
//! the first kept day has no row left and goes too: no reference counts, which partition drops
//! could not keep anyway. Deleting one probe's rows leaves the blobs (server certificate chains,
//! shared with other probes' rows); retention takes them once no kept day uses them.

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::{Object, Pool};
use tokio_postgres::GenericClient;

use crate::store::StoreError;
use crate::store::blobs::{self, Hash};

/// Blobs a reader keeps in memory; beyond this the cache starts again (a chain repeats across
/// many rows, so even a small cache saves most lookups).
const CACHED_BLOBS: usize = 512;

/// Store the blobs of a batch's rows (`(day, split)` pairs) inside the caller's transaction,
/// raising `last_day` where a row of a later day now uses a blob. Hashes are written in sorted
/// order, so two batches sharing blobs lock them in the same order and never deadlock.
pub(super) async fn put<'a>(
    tx: &impl GenericClient,
    rows: impl IntoIterator<Item = (i32, &'a blobs::Split)>,
) -> Result<(), StoreError> {
    let mut wanted: BTreeMap<Hash, (&[u8], i32)> = BTreeMap::new();
    for (day, split) in rows {
        for blob in &split.blobs {
            let entry = wanted.entry(blob.hash).or_insert((&blob.bytes, day));
            entry.1 = entry.1.max(day);
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let hashes: Vec<&[u8]> = wanted.keys().map(|h| h.as_slice()).collect();
    let bytes: Vec<&[u8]> = wanted.values().map(|(b, _)| *b).collect();
    let days: Vec<i32> = wanted.values().map(|(_, d)| *d).collect();
    tx.execute(
        "INSERT INTO blobs (hash, bytes, last_day)
         SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::integer[])
         ON CONFLICT (hash) DO UPDATE SET last_day = EXCLUDED.last_day WHERE blobs.last_day < EXCLUDED.last_day",
        &[&hashes, &bytes, &days],
    )
    .await?;
    Ok(())
}

/// Drop the blobs no kept row uses: those last used before `first_kept` (a day number).
pub(super) async fn drop_before(tx: &impl GenericClient, first_kept: i32) -> Result<u64, StoreError> {
    Ok(tx.execute("DELETE FROM blobs WHERE last_day < $1", &[&first_kept]).await?)
}

/// Puts stored skeletons back together for one streaming read. The read's own connection is busy
/// streaming rows, so blobs are fetched on a second one, taken from the pool when first needed.
pub(super) struct Lookup {
    pool: Pool,
    client: Option<Object>,
    cache: HashMap<Hash, Vec<u8>>,
}

impl Lookup {
    pub(super) fn new(pool: Pool) -> Self {
        Lookup { pool, client: None, cache: HashMap::new() }
    }

    /// The canonical line `skeleton` stands for.
    pub(super) async fn join(&mut self, skeleton: &[u8]) -> Result<String, StoreError> {
        let missing: Vec<Vec<u8>> =
            blobs::references(skeleton)?.into_iter().filter(|h| !self.cache.contains_key(h)).map(|h| h.to_vec()).collect();
        if !missing.is_empty() {
            if self.cache.len() + missing.len() > CACHED_BLOBS {
                self.cache.clear();
            }
            if self.client.is_none() {
                self.client = Some(self.pool.get().await?);
            }
            let client = self.client.as_ref().ok_or(StoreError::Closed)?;
            for row in client.query("SELECT hash, bytes FROM blobs WHERE hash = ANY($1)", &[&missing]).await? {
                let hash: Vec<u8> = row.try_get(0)?;
                let hash: Hash = hash.try_into().map_err(|_| StoreError::Corrupt("a blob's hash is not 32 bytes".into()))?;
                self.cache.insert(hash, row.try_get(1)?);
            }
        }
        blobs::join(skeleton, &mut self.cache)
    }
}
