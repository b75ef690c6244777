//! How long the key-registration proof of work takes on this machine, one core:
//! `cargo run --release -p vantage-measurement --example registration_work [BITS] [KEYS]`.
//! Prints the hash rate and the mean solve time over KEYS random keys (default difficulty, 20
//! keys), in wall-clock time; on a busy machine run it under `time` and divide the hashes by the
//! user CPU seconds instead. docs/security.md quotes its numbers.

use std::time::Instant;

use vantage_measurement::wire::ProbeKey;
use vantage_measurement::wire::registration::{DEFAULT_DIFFICULTY_BITS, RegistrationChallenge, request, solve, verify};

fn main() {
    let mut args = std::env::args().skip(1);
    let bits: u8 = args.next().and_then(|a| a.parse().ok()).unwrap_or(DEFAULT_DIFFICULTY_BITS);
    let keys: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let challenge = RegistrationChallenge { salt: RegistrationChallenge::random_salt(), difficulty_bits: bits };
    let mut hashes: u64 = 0;
    let mut times = Vec::new();
    let mut requests = Vec::new();
    for _ in 0..keys {
        let key = ProbeKey::generate();
        let started = Instant::now();
        let nonce = solve(&key, &challenge).expect("solvable");
        times.push(started.elapsed().as_secs_f64());
        hashes += nonce + 1;
        requests.push(request(&key, &challenge, nonce).expect("request"));
    }
    // What a registration costs the collector: one hash and one signature check.
    let rounds = 2000 / requests.len().max(1) + 1;
    let started = Instant::now();
    for _ in 0..rounds {
        for r in &requests {
            verify(r, &challenge).expect("valid");
        }
    }
    let verify_us = started.elapsed().as_secs_f64() * 1e6 / (rounds * requests.len()) as f64;
    let total: f64 = times.iter().sum();
    times.sort_by(f64::total_cmp);
    println!(
        "{bits} bits, {keys} keys: {hashes} hashes, {:.1} M hashes/s; solve mean {:.2} s, median {:.2} s, max {:.2} s",
        hashes as f64 / total / 1e6,
        total / f64::from(keys),
        times[times.len() / 2],
        times[times.len() - 1],
    );
    println!("verifying one registration: {verify_us:.0} µs");
}
