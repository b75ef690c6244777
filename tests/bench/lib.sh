# Shared by the footprint benchmarks (sourced, not run): a loopback TLS world and the probe.
#   - a CA and a P-256 leaf for *.bench.test and control.bench.test (openssl),
#   - eight `openssl s_server -www` on 127.0.0.1-127.0.0.8 (each answers GET / with a short
#     status page), so the probe's scheduler runs eight servers at once, as with real targets,
#   - targets files of N TLS targets spread over the eight addresses.
# Nothing leaves loopback: the probe runs with no helper, no DoH, no UDP resolver, no system
# resolver, and every target has a fixed address.

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$bench_dir/../.." && pwd)
work=$(mktemp -d /tmp/vantage-bench.XXXXXX)
server_pids=()
port=${BENCH_PORT:-8443}
servers=8

cleanup() {
  for pid in "${server_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The packages a benchmark needs, installed by name (idempotent), as tests/install-deps.sh does.
# Packages with a service (the blackbox exporter) must not start it: the benchmark starts its own.
need_packages() {
  export DEBIAN_FRONTEND=noninteractive
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

# The probe to measure: $PROBE, or the static release build (deploy/build-static.sh).
probe_binary() {
  if [ -n "${PROBE:-}" ]; then
    echo "$PROBE"
  else
    "$repo/deploy/build-static.sh" | tail -n 1
  fi
}

make_certs() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=vantage-bench-ca \
    -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bench.test \
    -keyout "$work/leaf.key" -out "$work/leaf.csr" 2>/dev/null
  printf 'subjectAltName=DNS:*.bench.test,DNS:control.bench.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    >"$work/leaf.ext"
  openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
    -extfile "$work/leaf.ext" -out "$work/leaf.pem" 2>/dev/null
}

start_servers() {
  make_certs
  for i in $(seq 1 "$servers"); do
    openssl s_server -quiet -www -accept "127.0.0.$i:$port" -cert "$work/leaf.pem" -key "$work/leaf.key" \
      </dev/null >/dev/null 2>&1 &
    server_pids+=($!)
  done
  for i in $(seq 1 "$servers"); do
    for _ in $(seq 1 50); do
      if (exec 3<>"/dev/tcp/127.0.0.$i/$port") 2>/dev/null; then continue 2; fi
      sleep 0.1
    done
    echo "openssl s_server on 127.0.0.$i:$port did not start" >&2
    exit 1
  done
}

# targets_file N: N TLS targets, round-robin over the servers.
targets_file() {
  local n=$1 file="$work/targets-$1.toml"
  awk -v n="$n" -v port="$port" -v servers="$servers" 'BEGIN {
    for (i = 0; i < n; i++) {
      printf "[[target]]\nname = \"t%d\"\ndomain = \"t%d.bench.test\"\naddress = \"127.0.0.%d\"\nport = %d\ntests = [\"tls\"]\ncontrol_sni = \"control.bench.test\"\n\n", i, i, i % servers + 1, port
    }
  }' >"$file"
  echo "$file"
}

# The probe's flags for a loopback-only run over a targets file.
probe_args() {
  echo run --targets "$1" --ca "$work/ca.pem" --no-helper --doh off --resolver off --no-system-resolver --timeout 5
}

# A run's totals line must say every measurement was ok: a failed handshake costs less and
# would flatter the numbers.
require_all_ok() { # require_all_ok <n> <output file>
  local want="$1 measurements: $1 ok, 0 blocked, 0 down, 0 inconclusive"
  if ! grep -qxF "$want" "$2"; then
    echo "expected \"$want\"; the run said:" >&2
    tail -n 3 "$2" >&2
    exit 1
  fi
}
