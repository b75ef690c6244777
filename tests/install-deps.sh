#!/usr/bin/env bash
# Installs the Debian packages the test suite needs. Idempotent: does nothing when all are present.
#   promtool (package prometheus)  checks the collector's /metrics output
#   ip (iproute2), unshare (util-linux)  network namespaces for the offline and lab tests
#   prometheus, systemd-analyze (systemd)  the operators' tests: rules, dashboards and units
#   nft, iptables, tc, sysctl, dnsmasq, curl  the censorship lab
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v hostname >/dev/null 2>&1 || need+=(hostname)
# Operators' tests (tests/tests/prometheus_*.rs, deploy_files.rs): a real Prometheus server on
# loopback runs the dashboards' and rules' PromQL; systemd-analyze verifies the unit files
# (installing the systemd package adds the tools; it does not replace a running init).
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The censorship lab (tests/tests/lab.rs, vantage-lab): censors and routers in namespaces
# (nftables; iptables for the string match; tc from iproute2; sysctl from procps), the lab's
# resolvers (dnsmasq-base: the program without a system service), and curl to ask the
# collector from inside the helper's namespace.
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v tc >/dev/null 2>&1 || need+=(iproute2)
command -v sysctl >/dev/null 2>&1 || need+=(procps)
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
command -v curl >/dev/null 2>&1 || need+=(curl)

# VPN endpoints (tests/tests/vpn_servers.rs): real OpenVPN, wireguard-go, strongSwan charon and a
# Tor relay in namespaces, socat as the random-bytes echo, nft as the censor. Services stay down
# (policy-rc.d below); the test starts its own.
command -v openvpn >/dev/null 2>&1 || need+=(openvpn)
command -v wireguard-go >/dev/null 2>&1 || need+=(wireguard-go)
command -v wg >/dev/null 2>&1 || need+=(wireguard-tools)
[ -x /usr/lib/ipsec/charon ] || need+=(strongswan-charon)
command -v swanctl >/dev/null 2>&1 || need+=(strongswan-swanctl)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v tor >/dev/null 2>&1 || need+=(tor)
command -v nft >/dev/null 2>&1 || need+=(nftables)

# The collector's status page test (collector/tests/api/status_page.rs) renders / in headless
# Chromium and keeps a screenshot in target/test-artifacts/.
command -v chromium >/dev/null 2>&1 || need+=(chromium)

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
# The prometheus package would start a server; the tests start their own, so keep services down.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
