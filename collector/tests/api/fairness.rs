//! One client can't starve fifty: with the default limits, an abusive client posting signed
//! batches at full speed from one address gets `429`s, while every request of 50 honest probes
//! (each its own 127.0.0.x address and key, posting a few batches at a probe's pace) succeeds.
//!
//! Three rounds, each on a fresh collector: no abuser; an abuser that keeps exactly its share of
//! the ingest slots busy (limited by the rate); an abuser with many connections (limited by its
//! share of the slots, then the rate). The honest latencies of each are printed (run with
//! `--nocapture`) for docs/security.md; they are measurements, not assertions: timing depends on
//! the machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vantage_measurement::wire::{KEY_HEADER, ProbeKey, SIGNATURE_HEADER};

use crate::support::{Collector, gzip, http_client_from, measurement, ndjson, post_signed_with};

const HONEST_PROBES: u8 = 50;
/// Batches each honest probe posts, and the pause between two: a daemon posts once a minute, so
/// 50 probes at this pace are a fleet of about 3,000 daemons.
const HONEST_BATCHES: usize = 3;
const HONEST_PACE: Duration = Duration::from_secs(1);
const HONEST_LINES: usize = 20;
/// The abuser's batches: four times a probe's (the collector takes up to 10,000 lines). Without
/// the limits, 64 connections of these keep every ingest slot busy and honest batches wait out
/// the slot wait: 503 after 10 s (measured on a debug build; the numbers are in docs/security.md).
const ABUSER_LINES: usize = 2000;
/// The most requests the abuser sends in a round, whatever happens.
const ABUSER_MAX_REQUESTS: usize = 1_000_000;

/// What one round saw.
struct Round {
    /// Every honest request's status and latency.
    honest: Vec<(u16, Duration)>,
    /// The abuser's answers: (200, 429, anything else).
    abuser: (usize, usize, usize),
    abuser_elapsed: Duration,
}

async fn honest_probe(collector: Arc<Collector>, n: u8) -> Vec<(u16, Duration)> {
    let http = http_client_from([127, 0, 0, n + 1].into());
    let key = ProbeKey::from_seed(&[n; 32]);
    // Spread the starts over a second, as probes' schedules are.
    tokio::time::sleep(Duration::from_millis(u64::from(n) * 20)).await;
    let mut seen = Vec::new();
    for batch in 0..HONEST_BATCHES {
        if batch > 0 {
            tokio::time::sleep(HONEST_PACE).await;
        }
        let lines: Vec<_> = (0..HONEST_LINES).map(|_| measurement()).collect();
        let started = Instant::now();
        let status = post_signed_with(&http, &collector, &key, &lines).await.status().as_u16();
        seen.push((status, started.elapsed()));
    }
    seen
}

/// The abuser's signed batches, made before the round starts: it spends its time sending, not
/// signing.
type Bodies = Arc<Vec<(String, String, Vec<u8>)>>;

fn abuser_bodies() -> Bodies {
    Arc::new(
        (0..4u8)
            .map(|i| {
                let lines: Vec<_> = (0..ABUSER_LINES).map(|_| measurement()).collect();
                let (key, body) = (ProbeKey::from_seed(&[100 + i; 32]), gzip(ndjson(&lines).as_bytes()));
                (key.public_key_base64(), key.sign_base64(&body), body)
            })
            .collect(),
    )
}

/// Post the same signed batches (stored once, then duplicates: each still verified, inflated and
/// parsed) over `connections` at once, each as fast as answers come, from 127.0.0.250, until `stop`.
async fn abuser(
    collector: Arc<Collector>,
    bodies: Bodies,
    connections: usize,
    stop: Arc<AtomicBool>,
) -> ((usize, usize, usize), Duration) {
    let http = http_client_from([127, 0, 0, 250].into());
    let started = Instant::now();
    let loops = (0..connections).map(|i| {
        let (http, collector, stop, bodies) = (http.clone(), Arc::clone(&collector), Arc::clone(&stop), Arc::clone(&bodies));
        tokio::spawn(async move {
            let mut counts = (0, 0, 0);
            let (key, signature, body) = &bodies[i % bodies.len()];
            for _ in 0..ABUSER_MAX_REQUESTS / connections {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let sent = http
                    .post(collector.url("/api/v1/measurements"))
                    .header("content-encoding", "gzip")
                    .header(KEY_HEADER, key.as_str())
                    .header(SIGNATURE_HEADER, signature.as_str())
                    .body(body.clone())
                    .send()
                    .await;
                match sent.map(|r| r.status().as_u16()) {
                    Ok(200) => counts.0 += 1,
                    Ok(429) => counts.1 += 1,
                    _ => counts.2 += 1,
                }
            }
            counts
        })
    });
    let mut total = (0, 0, 0);
    for counts in futures::future::join_all(loops).await {
        let (ok, limited, other) = counts.expect("abuser loop");
        total = (total.0 + ok, total.1 + limited, total.2 + other);
    }
    (total, started.elapsed())
}

/// One round against a fresh collector with the default limits; an abuser with this many
/// connections, if any.
async fn round(abuser_connections: Option<usize>) -> Round {
    let collector = Arc::new(Collector::start().await);
    let stop = Arc::new(AtomicBool::new(false));
    let bodies = abuser_bodies();
    let abuse = abuser_connections.map(|n| tokio::spawn(abuser(Arc::clone(&collector), bodies, n, Arc::clone(&stop))));
    let probes = (1..=HONEST_PROBES).map(|n| tokio::spawn(honest_probe(Arc::clone(&collector), n)));
    let honest: Vec<_> = futures::future::join_all(probes).await.into_iter().flat_map(|p| p.expect("honest probe")).collect();
    stop.store(true, Ordering::Relaxed);
    let (abuser, abuser_elapsed) = match abuse {
        Some(task) => task.await.expect("abuser"),
        None => ((0, 0, 0), Duration::ZERO),
    };
    Round { honest, abuser, abuser_elapsed }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn report(label: &str, round: &Round) {
    let mut latencies: Vec<Duration> = round.honest.iter().map(|(_, d)| *d).collect();
    latencies.sort();
    let (ok, limited, other) = round.abuser;
    eprintln!(
        "fairness {label}: {} honest requests, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; abuser: {ok} x 200, {limited} x 429, \
         {other} other in {:.1} s ({:.0} requests/s)",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        round.abuser_elapsed.as_secs_f64(),
        (ok + limited + other) as f64 / round.abuser_elapsed.as_secs_f64().max(f64::EPSILON),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_abusive_client_gets_429s_while_fifty_honest_probes_all_succeed() {
    use vantage_collector::limits::INGEST_AT_ONCE_PER_SOURCE;
    let calm = round(None).await;
    report("without abuser", &calm);
    let share = round(Some(INGEST_AT_ONCE_PER_SOURCE as usize)).await;
    report("abuser on its share of the slots", &share);
    let stormy = round(Some(64)).await;
    report("abuser with 64 connections", &stormy);

    for (label, round) in [("without abuser", &calm), ("abuser on its share", &share), ("abuser with 64 connections", &stormy)] {
        assert_eq!(round.honest.len(), usize::from(HONEST_PROBES) * HONEST_BATCHES, "{label}");
        let failed: Vec<_> = round.honest.iter().filter(|(status, _)| *status != 200).collect();
        assert!(failed.is_empty(), "{label}: honest requests failed: {failed:?}");
    }
    let (_, limited, _) = stormy.abuser;
    assert!(limited > 0, "the abuser was never limited: {:?}", stormy.abuser);
}
