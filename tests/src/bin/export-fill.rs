//! Fill a SQLite store with N measurements received on one UTC day, for the export memory
//! benchmark (`tests/bench/export.sh`): written through the `Store` API in batches of 5,000,
//! spread over ten countries and two tests, each a TLS handshake with its certificate chain (the
//! fleet rows of `vantage_measurement::example`).
//!
//! `export-fill DATA_DIR ROWS YYYY-MM-DD`

use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::{Duration, NaiveDate};
use vantage_collector::{SqliteStore, Store};
use vantage_measurement::{TestKind, example};

const BATCH: usize = 5_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, rows, day] = args.as_slice() else { bail!("usage: export-fill DATA_DIR ROWS YYYY-MM-DD") };
    let rows: u64 = rows.parse().context("ROWS")?;
    let day: NaiveDate = day.parse().context("YYYY-MM-DD")?;
    let noon = day.and_hms_opt(12, 0, 0).context("noon")?.and_utc();
    let store = SqliteStore::open(&PathBuf::from(dir)).await?;
    let mut written = 0u64;
    while written < rows {
        let n = BATCH.min(usize::try_from(rows - written)?);
        let batch: Vec<_> = (0..n)
            .map(|i| {
                let k = written + i as u64;
                let mut m = example::tls_fleet(k, noon - Duration::seconds((k % 86_000) as i64));
                if k % 2 == 1 {
                    m.test = TestKind::Dns;
                }
                m
            })
            .collect();
        store.insert_batch(&batch, None, None, noon).await?;
        written += n as u64;
    }
    store.close().await?;
    println!("{written} rows received on {day} in {dir}");
    Ok(())
}
