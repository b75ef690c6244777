//! A decompression bomb costs the collector at most its decompressed cap in memory.
//!
//! Its own test binary, so the process's peak memory is this test's alone.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use vantage_collector::{App, Config};

/// Peak resident memory of this process, from /proc (Linux).
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM line");
    kib * 1024
}

#[tokio::test]
async fn a_gzip_bomb_is_refused_within_bounded_memory() {
    // 1 GiB of zeros, compressed in a stream so the test itself never holds it.
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..1024 {
        encoder.write_all(&zeros).expect("compress");
    }
    let bomb = encoder.finish().expect("finish");
    assert!(bomb.len() < 8 * 1024 * 1024, "the bomb fits under the compressed cap: {}", bomb.len());

    let dir = tempfile::tempdir().expect("tempdir");
    let app = App::bind(Config::new("127.0.0.1:0".parse().expect("addr"), dir.path())).await.expect("bind");
    let url = format!("http://{}/api/v1/measurements", app.local_addr());
    let server = tokio::spawn(app.serve(std::future::pending()));

    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let response = http.post(url).header("content-encoding", "gzip").body(bomb).send().await.expect("POST");
    let status = response.status();

    // The cap is 64 MiB; inflating the bomb would take 1 GiB. Allow for the runtime, the test's
    // own buffers and allocator slack, and nothing near the full inflation.
    let peak = peak_rss_bytes();
    assert!(peak < 400 * 1024 * 1024, "peak memory {} MiB", peak / (1024 * 1024));
    assert_eq!(status, 413);
    server.abort();
}
