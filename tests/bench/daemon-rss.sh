#!/usr/bin/env bash
# Peak RSS of `vantage-probe daemon` over N loopback TLS targets (N = 1,000 and 10,000 unless
# given), each measured once in a 60-second interval and uploaded to a loopback collector, read
# from /proc/<pid>/status (VmHWM) after one whole interval and a half. The goal is flat in N
# (≤ 11 MB at 10,000): the daemon keeps its plan and a state entry per target, and streams
# measurements to the spool. Loopback only (tests/bench/lib.sh); not part of tests/run.
#   tests/bench/daemon-rss.sh             the static release build (deploy/build-static.sh)
#   PROBE=path/to/vantage-probe tests/bench/daemon-rss.sh 1000
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_packages openssl curl
probe=$(probe_binary)
collector_bin=${COLLECTOR:-$repo/target/debug/vantage-collector}
[ -x "$collector_bin" ] || { echo "no collector at $collector_bin: cargo build --bins first" >&2; exit 1; }
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1000 10000)
interval=60
start_servers

printf '%-8s %-16s %-12s %-10s %s\n' targets "peak RSS (MiB)" "stored" "fds" "CPU (s)"
for n in "${counts[@]}"; do
  targets=$(targets_file "$n")
  "$collector_bin" serve --listen 127.0.0.1:0 --data-dir "$work/collector-$n" >"$work/collector-$n.log" 2>&1 &
  collector_pid=$!
  for _ in $(seq 1 100); do
    url=$(sed -n 's/^vantage-collector listening on //p' "$work/collector-$n.log")
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "the collector did not start" >&2; exit 1; }
  "$probe" daemon --collector "$url" --targets "$targets" --interval "$interval" --data-dir "$work/probe-$n" \
    --ca "$work/ca.pem" --no-helper --doh off --resolver off --no-system-resolver --timeout 5 \
    --daily-bytes 0 --max-per-hour 0 >"$work/daemon-$n.log" 2>&1 &
  daemon_pid=$!
  sleep $((interval * 3 / 2))
  kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$daemon_pid/status")
  fds=$(find "/proc/$daemon_pid/fd" -mindepth 1 | wc -l)
  cpu=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$daemon_pid/stat")
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" || { echo "the daemon did not stop cleanly" >&2; exit 1; }
  stored=$(curl -fsS "$url/api/v1/measurements?limit=100000" | wc -l)
  kill "$collector_pid"
  wait "$collector_pid" 2>/dev/null || true
  printf '%-8s %-16s %-12s %-10s %s\n' "$n" "$(awk "BEGIN { printf \"%.1f\", $kb / 1024 }")" "$stored" "$fds" "$cpu"
done
echo "probe: $probe ($(stat --format %s "$probe") bytes); interval ${interval} s; machine: $(nproc) cores"
