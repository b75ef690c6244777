#!/usr/bin/env bash
# Bytes on the wire per measurement, by test kind, in the lab's clean scenario: what the daemon's
# budget charges (probe/src/daemon/budget.rs) comes from here.
#
# Brings up `vantage-lab up clean`, puts nftables counters on every packet into and out of the
# probe's namespace (IP length: headers and payload, both directions, controls, helper requests
# and the upload to the collector included), runs `vantage-probe run --tests KIND` once per kind
# and divides by the measurements it made. Needs root (network namespaces) and the workspace's
# binaries (`cargo build -p vantage-probe -p vantage-collector -p vantage-tests --bins`).
#
# Usage: tests/bench/daemon-bytes.sh        (CARGO_TARGET_DIR is honoured; debug profile)
set -euo pipefail

bin="${CARGO_TARGET_DIR:-$(dirname "$0")/../../target}/debug"
work=$(mktemp -d)
trap 'kill -INT "$lab" 2>/dev/null; wait "$lab" 2>/dev/null; rm -rf "$work"' EXIT

"$bin/vantage-lab" up clean >"$work/up.log" 2>&1 &
lab=$!
for _ in $(seq 120); do grep -q 'Ctrl-C tears' "$work/up.log" && break; sleep 0.5; done
grep -q 'Ctrl-C tears' "$work/up.log" || { cat "$work/up.log"; exit 1; }

ns=$(awk '$2 == "probe" {print $1; exit}' "$work/up.log")
# The lab's own probe command line, minus the namespace prefix and the debug logging.
read -r -a measure < <(grep -A1 '^measure:' "$work/up.log" | tail -1 | sed -e 's/^ *ip netns exec [^ ]* //' -e 's/ -vv//')

ip netns exec "$ns" nft -f - <<'NFT'
table inet vantage_bytes {
    chain in {
        type filter hook input priority 0; policy accept;
        counter
    }
    chain out {
        type filter hook output priority 0; policy accept;
        counter
    }
}
NFT

bytes() {
    ip netns exec "$ns" nft list table inet vantage_bytes | awk '/counter/ {for (i = 1; i <= NF; i++) if ($i == "bytes") sum += $(i + 1)} END {print sum + 0}'
}

printf '%-6s %13s %12s %16s\n' test measurements bytes bytes/measurement
for kind in dns tcp tls quic; do
    ip netns exec "$ns" nft reset counters table inet vantage_bytes >/dev/null
    n=$(ip netns exec "$ns" "${measure[@]}" --tests "$kind" 2>/dev/null | grep -c '^{' || true)
    total=$(bytes)
    printf '%-6s %13d %12d %16d\n' "$kind" "$n" "$total" "$(( n > 0 ? total / n : 0 ))"
done
