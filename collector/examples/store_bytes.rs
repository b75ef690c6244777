//! Bytes of SQLite file per stored TLS measurement, and the ingest time, on a realistic fleet.
//!
//! `cargo run --release -p vantage-collector --example store_bytes -- [measurements] [batch]`
//! (defaults 100 000 and 500). Writes [`example::tls_fleet`] measurements (2 000 probes, 100
//! targets, chains repeating across rows) in signed batches with an observed location, then
//! checkpoints the WAL and prints the file size per row, the space per table and index (when
//! SQLite has `dbstat`), and the time the inserts took. Not a test: numbers for
//! `docs/collector.md` § Store.

use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use vantage_collector::store::{SqliteStore, Store, blobs};
use vantage_measurement::example;
use vantage_measurement::wire::{ObservedLocation, ProbeKey};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let total: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100_000);
    let batch: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(500);
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path()).await?;
    let keys: Vec<_> = (0..example::FLEET_PROBES)
        .map(|i| ProbeKey::from_seed(&[(i % 251) as u8, (i / 251) as u8].repeat(16).try_into().unwrap_or([0; 32])).key_id())
        .collect();
    let observed = ObservedLocation { cc: Some("DE".into()), asn: Some(3320) };
    let start = Utc.timestamp_opt(1_750_000_000, 0).single().ok_or_else(|| anyhow::anyhow!("time"))?;
    let (mut line_bytes, mut inserting, mut splitting) = (0u64, std::time::Duration::ZERO, std::time::Duration::ZERO);
    for b in 0..total.div_ceil(batch) {
        let measurements: Vec<_> = (b * batch..((b + 1) * batch).min(total))
            .map(|n| example::tls_fleet(n, start + Duration::seconds(i64::try_from(n).unwrap_or(0))))
            .collect();
        for m in &measurements {
            let line = m.to_json_line()?;
            line_bytes += line.len() as u64;
            let began = Instant::now();
            std::hint::black_box(blobs::split(&line)?);
            splitting += began.elapsed();
        }
        let key = &keys[(b % example::FLEET_PROBES) as usize];
        let began = Instant::now();
        store.insert_batch(&measurements, Some(key), Some(&observed), start).await?;
        inserting += began.elapsed();
    }
    let path = store.path().to_path_buf();
    store.close().await?;
    let conn = rusqlite::Connection::open(&path)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let rows: u64 = conn.query_row("SELECT COUNT(*) FROM measurements", [], |r| r.get(0))?;
    let file = std::fs::metadata(&path)?.len();
    println!("rows {rows}, mean line {} B", line_bytes / rows.max(1));
    println!("file {file} B = {} B per measurement", file / rows.max(1));
    println!(
        "insert_batch {:.2} s = {:.0} measurements/s (one writer, fsync per batch of {batch})",
        inserting.as_secs_f64(),
        rows as f64 / inserting.as_secs_f64()
    );
    println!("blobs::split {:.2} µs per measurement (one core)", splitting.as_secs_f64() * 1e6 / rows.max(1) as f64);
    if let Ok(mut statement) = conn.prepare("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC") {
        let sizes = statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for size in sizes {
            let (name, bytes) = size?;
            println!("  {name:32} {bytes:>12} B {:>7.1} B/row", bytes as f64 / rows.max(1) as f64);
        }
    }
    Ok(())
}
