#!/usr/bin/env bash
# A week in the lab: `vantage-probe daemon` measures the lab's clean scenario for a week of
# hourly cycles with time compressed (one hour of schedule = INTERVAL real seconds), uploading to
# the lab's collector, while its resident memory, open file descriptors and CPU time are read
# from /proc/<pid>/ and printed along the way. Flat columns are the point.
#
# Budgets are off here: they count real UTC days, and a compressed week fits in one.
# Needs root (network namespaces) and the workspace's binaries
# (`cargo build -p vantage-probe -p vantage-collector -p vantage-tests --bins`). Not part of
# tests/run: it takes minutes.
#
# Usage: tests/bench/daemon-week.sh [INTERVAL_SECS (default 3)] [CYCLES (default 168: a week hourly)]
set -euo pipefail

interval=${1:-3}
cycles=${2:-168}
bin="${CARGO_TARGET_DIR:-$(dirname "$0")/../../target}/debug"
work=$(mktemp -d)
cleanup() {
    [[ -n "${daemon:-}" ]] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    kill -INT "$lab" 2>/dev/null
    wait "$lab" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

"$bin/vantage-lab" up clean >"$work/up.log" 2>&1 &
lab=$!
for _ in $(seq 120); do grep -q 'Ctrl-C tears' "$work/up.log" && break; sleep 0.5; done
grep -q 'Ctrl-C tears' "$work/up.log" || { cat "$work/up.log"; exit 1; }
ns=$(awk '$2 == "probe" {print $1; exit}' "$work/up.log")
# The lab's probe command line, as a daemon: same targets, resolver, CA and collector.
read -r -a flags < <(grep -A1 '^measure:' "$work/up.log" | tail -1 \
    | sed -e 's/^ *ip netns exec [^ ]* [^ ]*vantage-probe run //' -e 's/ -vv//' -e 's/--json //')
data_dir=$(printf '%s\n' "${flags[@]}" | grep -A1 -x -- '--data-dir' | tail -1)

ip netns exec "$ns" "$bin/vantage-probe" daemon "${flags[@]}" \
    --interval "$interval" --daily-bytes 0 --max-per-hour 0 >/dev/null 2>"$work/daemon.log" &
daemon=$!

ticks=$(getconf CLK_TCK)
sample() {
    local rss hwm fds cpu accepted pending
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$daemon/status")
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$daemon/status")
    fds=$(find "/proc/$daemon/fd" -mindepth 1 -maxdepth 1 | wc -l)
    cpu=$(awk -v t="$ticks" '{printf "%.2f", ($14 + $15) / t}' "/proc/$daemon/stat")
    accepted=$(sed -n 's/.*"accepted": \([0-9]*\).*/\1/p' "$data_dir/daemon-state.json" 2>/dev/null | head -1 || true)
    pending=$(sed -n 's/.*"spool_pending": \([0-9]*\).*/\1/p' "$data_dir/daemon-state.json" 2>/dev/null | head -1 || true)
    printf '%6d %8.1f %10s %8s %8d %8d %4d %9s\n' "$1" "$(awk -v s="$1" -v i="$interval" 'BEGIN {print s / (i * 24)}')" \
        "${accepted:-0}" "${pending:-0}" "$rss" "$hwm" "$fds" "$cpu"
}

total=$((interval * cycles))
echo "daemon pid $daemon in $ns; ${cycles} cycles of ${interval} s (a simulated hour each) = ${total} s"
printf '%6s %8s %10s %8s %8s %8s %4s %9s\n' secs sim_day uploaded spooled rss_kB hwm_kB fds cpu_s
start=$(date +%s)
while :; do
    now=$(( $(date +%s) - start ))
    kill -0 "$daemon" 2>/dev/null || { echo "the daemon died:"; cat "$work/daemon.log"; exit 1; }
    sample "$now"
    (( now >= total )) && break
    sleep $(( interval * 6 ))
done

kill -TERM "$daemon"
wait "$daemon" && code=0 || code=$?
daemon=
echo "SIGTERM: exit $code"
echo "measurements: $(ip netns exec "$(awk '$2 == "helper" {print $1; exit}' "$work/up.log")" \
    curl -s "$(grep -o 'collector http://[^ ]*' "$work/up.log" | head -1 | cut -d' ' -f2)/api/v1/measurements?limit=100000" | grep -c '^{') at the collector"
