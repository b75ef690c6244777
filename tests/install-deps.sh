#!/usr/bin/env bash
# Installs the Debian packages the test suite needs. Idempotent: does nothing when all are present.
#   promtool (package prometheus)  checks the collector's /metrics output
#   ip (iproute2), unshare (util-linux)  network namespaces for the offline and lab tests
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v hostname >/dev/null 2>&1 || need+=(hostname)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "tests/install-deps.sh: missing ${need[*]}; run as root (or: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
echo "tests/install-deps.sh: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The prometheus package would start a server; we only want promtool, so keep services down.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
