#!/usr/bin/env bash
# Quick start: build, start a collector (SQLite under ./vantage-data), measure the built-in
# targets from this machine, submit, and show where the results are. The collector keeps
# running afterwards so Prometheus can scrape it; Ctrl-C stops it.
#
#   deploy/quickstart.sh [extra vantage-probe run flags, e.g. --cc DE --asn 3320]
set -euo pipefail
cd "$(dirname "$0")/.."

listen=${VANTAGE_LISTEN:-127.0.0.1:8080}
data=${VANTAGE_DATA_DIR:-./vantage-data}
url="http://$listen"

cargo build --release --locked --bins

# The probe below is this operator's own: trust its key so its measurements count at once. Every
# other probe registers and earns trust first (docs/security.md).
mkdir -p "$data"
./target/release/vantage-probe key-id --data-dir "$data/probe" > "$data/trusted-keys.txt"

./target/release/vantage-collector serve --listen "$listen" --data-dir "$data" --trusted-keys "$data/trusted-keys.txt" &
collector=$!
trap 'kill "$collector" 2>/dev/null; wait "$collector" 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/${listen%:*}/${listen##*:}") 2>/dev/null && break
  sleep 0.1
done

status=0
./target/release/vantage-probe run --collector "$url" --data-dir "$data/probe" "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "vantage-probe exited with status $status" >&2
fi

cat <<MSG

Results are in the collector:
  raw measurements (NDJSON):  $url/api/v1/measurements
  blocked only:               $url/api/v1/measurements?verdict=blocked
  Prometheus metrics:         $url/metrics
The collector keeps running for Prometheus to scrape (see README). Ctrl-C to stop.
MSG
wait "$collector"
