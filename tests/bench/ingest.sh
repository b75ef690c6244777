#!/usr/bin/env bash
# Ingest speed, whole process: a release `vantage-collector serve` on loopback, loaded by the
# `ingest-load` binary (tests/src/bin/ingest-load.rs), printing per backend:
#   - throughput: 3 rounds of 100 gzip batches of 500 realistic TLS measurements (~3 KB each)
#     from 8 concurrent signed clients, in measurements/s;
#   - stored bytes per TLS measurement (the SQLite file after the collector closed it);
#   - batch latency p50/p99 with 1000 concurrent probes (distinct keys) posting batches of 10;
#   - /metrics render time with 100k series.
# SQLite always; PostgreSQL too with --temp-postgres (Debian's server in a temp directory, as the
# tests start it) or --database postgres://… (an empty database the benchmark may fill). Flags after the script's name go
# to ingest-load (`--help` lists them). Results and the machine they were
# measured on: docs/performance.md. Loopback only; not part of tests/run.
#   tests/bench/ingest.sh
#   tests/bench/ingest.sh --temp-postgres
#   tests/bench/ingest.sh --database postgres://vantage@127.0.0.1:5432/bench
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
cargo build --release --quiet -p vantage-collector -p vantage-tests --bin vantage-collector --bin ingest-load
target=${CARGO_TARGET_DIR:-$repo/target}
# 1000 probes hold 1000 connections, and the collector as many: more descriptors than the usual 1024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -r)"
exec "$target/release/ingest-load" "$@"
