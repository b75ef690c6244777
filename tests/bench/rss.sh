#!/usr/bin/env bash
# Peak RSS of one `vantage-probe run` over N loopback TLS targets (N = 300, 1,000, 10,000 unless
# given), read from /usr/bin/time -v's "Maximum resident set size". The goal is flat in N
# (≤ 11 MB at 10,000): a run keeps a short row per measurement for its table, never the
# measurements. Loopback only (tests/bench/lib.sh); not part of tests/run.
#   tests/bench/rss.sh                    the static release build (deploy/build-static.sh)
#   PROBE=path/to/vantage-probe tests/bench/rss.sh 300 1000
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_packages time openssl
probe=$(probe_binary)
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(300 1000 10000)
start_servers

printf '%-8s %-16s %-10s %s\n' targets "peak RSS (MiB)" "wall" "CPU (s)"
for n in "${counts[@]}"; do
  targets=$(targets_file "$n")
  # shellcheck disable=SC2046 # probe_args is a word list
  /usr/bin/time -v -o "$work/time-$n" "$probe" $(probe_args "$targets") >"$work/out-$n" 2>&1
  require_all_ok "$n" "$work/out-$n"
  kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/time-$n")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$work/time-$n")
  cpu=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { printf "%.2f", u + s }' "$work/time-$n")
  printf '%-8s %-16s %-10s %s\n' "$n" "$(awk "BEGIN { printf \"%.1f\", $kb / 1024 }")" "$wall" "$cpu"
done
echo "probe: $probe ($(stat --format %s "$probe") bytes); machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
