#!/usr/bin/env bash
# Peak RSS of one `vantage-collector export` of a day of N measurements (N = 1,000,000 unless
# given), per format, from /usr/bin/time -v's "Maximum resident set size"; and the same for 1/10
# of N, to show it is flat in N (the export streams: one (country, test) group's files open at a
# time, a Merkle frontier of at most 64 hashes). The rows are written first through the Store API
# by `export-fill` (a SQLite store in a temporary directory; the fill is not timed).
# Not part of tests/run.
#   tests/bench/export.sh              1,000,000 rows
#   tests/bench/export.sh 200000
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
rows=${1:-1000000}
work=$(mktemp -d /tmp/vantage-export-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
target=${CARGO_TARGET_DIR:-$repo/target}
(cd "$repo" && cargo build -q --release -p vantage-collector --bin vantage-collector && cargo build -q -p vantage-tests --bin export-fill)
collector=$target/release/vantage-collector
fill=$target/debug/export-fill
day=$(date -u -d '3 days ago' +%F)
until=$(date -u -d '2 days ago' +%F)

printf '%-10s %-8s %-16s %-10s %-8s %s\n' rows format "peak RSS (MiB)" wall "CPU (s)" "output (MiB)"
for n in $((rows / 10)) "$rows"; do
  data=$work/data-$n
  "$fill" "$data" "$n" "$day" >/dev/null
  for format in ndjson csv ooni; do
    out=$work/out-$n-$format
    /usr/bin/time -v -o "$work/time" "$collector" export --since "$day" --until "$until" --format "$format" \
      --out "$out" --data-dir "$data" >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
    kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/time")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$work/time")
    cpu=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { printf "%.1f", u + s }' "$work/time")
    size=$(du -sm "$out" | cut -f1)
    printf '%-10s %-8s %-16s %-10s %-8s %s\n' "$n" "$format" "$(awk "BEGIN { printf \"%.1f\", $kb / 1024 }")" "$wall" "$cpu" "$size"
    rm -rf "$out"
  done
  echo "store: $(du -sm "$data" | cut -f1) MiB for $n rows"
  rm -rf "$data"
done
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
