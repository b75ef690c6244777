#!/usr/bin/env bash
# CPU per TLS handshake: vantage-probe against prometheus-blackbox-exporter, side by side on the
# same loopback TLS servers, whole process (user + system time), printing the ratio. Goal ≤ 0.35.
#   - vantage-probe: one `run` over N TLS targets; each measurement is a control handshake and a
#     target handshake, each followed by `GET /` (2N handshakes). Start-up is included.
#   - blackbox exporter: N probes of its http prober over https (one handshake and `GET /` each),
#     asked over one keep-alive connection; its CPU is read from /proc before and after (the
#     exporter is a daemon: its start-up is not counted, which favours it).
# Both verify the servers' certificates against the same CA. Loopback only (tests/bench/lib.sh);
# not part of tests/run.
#   tests/bench/tls-cpu.sh                 N = 1000, the static release build
#   PROBE=path/to/vantage-probe tests/bench/tls-cpu.sh 2000
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_packages time openssl curl prometheus-blackbox-exporter
probe=$(probe_binary)
n=${1:-1000}
ticks=$(getconf CLK_TCK)
start_servers

# --- vantage-probe ---
targets=$(targets_file "$n")
# shellcheck disable=SC2046 # probe_args is a word list
/usr/bin/time -f '%U %S' -o "$work/probe-time" "$probe" $(probe_args "$targets") >"$work/probe-out" 2>&1
require_all_ok "$n" "$work/probe-out"
probe_cpu=$(awk '{ printf "%.3f", $1 + $2 }' "$work/probe-time")

# --- blackbox exporter ---
bbe_port=${BENCH_BBE_PORT:-9115}
cat >"$work/blackbox.yml" <<YAML
modules:
  tls_connect:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      tls: true
      tls_config:
        ca_file: $work/ca.pem
        server_name: t0.bench.test
  https_get:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      tls_config:
        ca_file: $work/ca.pem
        server_name: t0.bench.test
YAML
prometheus-blackbox-exporter --config.file="$work/blackbox.yml" --web.listen-address="127.0.0.1:$bbe_port" \
  >"$work/bbe.log" 2>&1 &
bbe_pid=$!
server_pids+=("$bbe_pid")
for _ in $(seq 1 50); do
  if curl -fs -o /dev/null "http://127.0.0.1:$bbe_port/metrics"; then break; fi
  sleep 0.1
done
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# bbe_cpu MODULE [SCHEME [PATH]]: seconds of CPU the exporter spends on N probes with MODULE of
# SCHEMEhost:portPATH, round-robin over the same eight servers.
bbe_cpu() {
  local module=$1 scheme=${2:-} path=${3:-}
  for i in $(seq 0 $((n - 1))); do
    echo "url = \"http://127.0.0.1:$bbe_port/probe?module=$module&target=${scheme}127.0.0.$((i % servers + 1)):${port}${path}\""
  done >"$work/curl-$module.cfg"
  local before after succeeded
  before=$(cpu_ticks "$bbe_pid")
  curl -s -K "$work/curl-$module.cfg" >"$work/bbe-$module.out"
  after=$(cpu_ticks "$bbe_pid")
  succeeded=$(grep -c '^probe_success 1$' "$work/bbe-$module.out" || true)
  if [ "$succeeded" -ne "$n" ]; then
    echo "blackbox exporter $module: $succeeded of $n probes succeeded" >&2
    exit 1
  fi
  awk "BEGIN { printf \"%.3f\", ($after - $before) / $ticks }"
}
tls_cpu=$(bbe_cpu tls_connect)
https_cpu=$(bbe_cpu https_get https:// /)

per_handshake() { awk "BEGIN { printf \"%.0f\", $1 / $2 * 1e6 }"; }
ratio() { awk "BEGIN { printf \"%.2f\", ($probe_cpu / (2 * $n)) / ($1 / $n) }"; }
echo "vantage-probe run:            $probe_cpu s CPU, $((2 * n)) handshakes + GET: $(per_handshake "$probe_cpu" $((2 * n))) µs each"
echo "exporter tls_connect (tcp):   $tls_cpu s CPU, $n handshakes:       $(per_handshake "$tls_cpu" "$n") µs each"
echo "exporter https_get (http):    $https_cpu s CPU, $n handshakes + GET: $(per_handshake "$https_cpu" "$n") µs each"
echo "ratio probe/exporter per handshake: $(ratio "$tls_cpu") against tls_connect (headline), $(ratio "$https_cpu") against https_get"
echo "exporter: $(prometheus-blackbox-exporter --version 2>&1 | head -n 1)"
echo "probe: $probe ($(stat --format %s "$probe") bytes); machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
