#!/usr/bin/env bash
# The research API on a million rows, whole process: `research-load` (tests/src/bin/research-load.rs)
# fills a store through the Store API, starts a release `vantage-collector serve` on it and prints
# per backend the time to walk every row with the cursor (limit 10,000) and the median time of a
# day x country aggregation as JSON and CSV. SQLite always; PostgreSQL too with --temp-postgres
# (Debian's server in a temp directory, as the tests start it). Flags go to research-load
# (`--help`). Results: docs/performance.md, "Research API". Loopback only; not part of tests/run.
#   tests/bench/research.sh
#   tests/bench/research.sh --temp-postgres
#   tests/bench/research.sh --rows 100000
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
cargo build --release --quiet -p vantage-collector -p vantage-tests --bin vantage-collector --bin research-load
target=${CARGO_TARGET_DIR:-$repo/target}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -r)"
exec "$target/release/research-load" "$@"
