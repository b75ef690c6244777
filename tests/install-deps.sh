#!/usr/bin/env bash
# Installs every Debian package the test suite needs, by name, every time (apt-get install is
# idempotent), then checks what no package list can show: plugins, kernel features, privileges.
# Never guess from whether a program is on PATH: a machine that has it can still lack the plugin
# or library a test needs. A later feature that needs a package adds it here with its reason.
set -euo pipefail

packages=(
  # Network namespaces for the offline, lab and VPN tests: ip, tc (iproute2); unshare (util-linux).
  iproute2 util-linux
  # The censorship lab's censors and routers: nft, iptables' string match, sysctl (procps).
  nftables iptables procps
  # The lab's resolvers: dnsmasq the program, without a system service.
  dnsmasq-base
  # Asks the collector from inside the helper's namespace (lab) and the quickstart script.
  curl
  # The volunteer-safety test compares the outputs against this machine's own names.
  hostname
  # A real Prometheus server and promtool: /metrics lint, rule tests, dashboards' PromQL end to end.
  prometheus
  # systemd-analyze verifies the shipped unit files (it does not replace a running init).
  systemd
  # VPN endpoints (tests/tests/vpn_servers.rs), real servers in namespaces:
  openvpn
  wireguard-go wireguard-tools
  # strongSwan's IKE daemon and its control tool. charon only *recommends* the standard plugins,
  # and they carry the openssl plugin: x25519, ECP and MODP groups of the SA_INIT the probe offers.
  strongswan-charon strongswan-swanctl libstrongswan-standard-plugins
  # The random-bytes echo beside each VPN endpoint.
  socat
  # A real Tor relay's OR port for the Tor test.
  tor
  # The throughput reference endpoint (deploy/endpoints/throughput/nginx.conf) the lab's throttle-*
  # scenarios run, as operators do: nginx with its TLS module.
  nginx
  # A real obfs4 bridge (tests/tests/obfs4_bridge.rs): obfs4proxy as a managed server transport
  # in front of that relay; its handshake is also the codec's captured vector.
  obfs4proxy
  # The status page test renders / in headless Chromium and keeps a screenshot.
  chromium
  # docs/research.md's quick start, run as written by collector/tests/api/quickstart.rs: Debian's
  # python3 (/usr/bin/python3, whatever else is on PATH) with pandas.
  python3 python3-pandas
  # Builds libFuzzer's C++ runtime for the fuzz targets (fuzz/, built by tests/run so they can't rot).
  g++
  # The static probe and its .deb (tests/tests/package.rs): `file` tells static from dynamic,
  # strace shows that no NSS module is opened, xz compresses the .deb (cargo-deb built without
  # its own liblzma calls it); the .deb depends on ca-certificates (uploads verify the collector).
  file strace xz-utils ca-certificates
  # The .deb's maintainer scripts make and remove its system user (useradd, userdel).
  passwd
  # The PostgreSQL store's tests (tests/src/postgres.rs): initdb, pg_ctl, postgres and createdb
  # of a throwaway server. `postgresql` pulls the current major version (postgresql-15 and
  # postgresql-client-15 on Debian 12); the harness finds /usr/lib/postgresql/<version>/bin.
  # setpriv (util-linux, above) runs it as nobody when the suite runs as root.
  postgresql
)

if [ "$(id -u)" -ne 0 ]; then
  echo "tests/install-deps.sh: must run as root to install: ${packages[*]}" >&2
  echo "  (the lab and VPN tests need root for network namespaces too: sudo tests/run)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Packages with a service (prometheus, tor, openvpn) must not start it: the tests start their own.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq
echo "tests/install-deps.sh: apt-get install ${packages[*]}" >&2
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

# cargo-deb builds the probe's .deb (tests/tests/package.rs). Not in Debian: from crates.io, one
# pinned version, without its bundled liblzma (xz-utils above does the compression). Building it
# takes about 2 minutes once; afterwards `cargo install` sees the same version and returns at once.
cargo_deb_version=3.8.0
echo "tests/install-deps.sh: cargo install cargo-deb@$cargo_deb_version" >&2
env -u CARGO_TARGET_DIR cargo install --quiet --locked --no-default-features "cargo-deb@$cargo_deb_version"

# What a package list cannot show. Each check names the missing piece and what brings it.
missing=0
need() { # need <description> <what brings it> <command...>
  local what=$1 from=$2
  shift 2
  if ! "$@" >/dev/null 2>&1; then
    echo "tests/install-deps.sh: missing $what (from: $from)" >&2
    missing=1
  fi
}
need "strongSwan openssl plugin (x25519/ECP/MODP key exchange)" libstrongswan-standard-plugins \
  test -f /usr/lib/ipsec/plugins/libstrongswan-openssl.so
need "charon, the IKE daemon" strongswan-charon test -x /usr/lib/ipsec/charon
need "nginx with TLS (the throughput reference endpoint)" nginx \
  sh -c 'nginx -V 2>&1 | grep -q -- --with-http_ssl_module'
# The captured vector (engine/src/runner/obfs4/testdata) is obfs4proxy 0.0.14's, which
# completes the fix of the Elligator 2 distinguishers (0.0.12, 0.0.14) the codec matches.
need "obfs4proxy 0.0.14 or later" obfs4proxy \
  sh -c 'v=$(obfs4proxy -version | sed -n "s/^obfs4proxy-//p"); [ -n "$v" ] && dpkg --compare-versions "$v" ge 0.0.14'
need "/dev/net/tun for wireguard-go and the lab's QUIC middlebox" "the kernel's tun module" \
  test -c /dev/net/tun
need "network namespaces" "a kernel with CONFIG_NET_NS and CAP_SYS_ADMIN" \
  unshare --net true
need "nftables in a namespace" "nftables and the kernel's nf_tables" \
  unshare --net nft add table inet vantage_preflight
need "iptables' string match in a namespace" "iptables and the kernel's xt_string" \
  unshare --net iptables -A OUTPUT -m string --algo bm --string vantage -j DROP
need "ip6tables' string match in a namespace (the lab's IPv6 censors)" "ip6tables (iptables) and the kernel's ip6_tables" \
  unshare --net ip6tables -A OUTPUT -m string --algo bm --string vantage -j DROP
need "PostgreSQL server binaries (initdb, pg_ctl)" postgresql \
  sh -c 'ls /usr/lib/postgresql/*/bin/initdb /usr/lib/postgresql/*/bin/pg_ctl'
need "pandas for Debian's python3 (the research quick start)" python3-pandas \
  /usr/bin/python3 -c 'import pandas'
if [ "$missing" -ne 0 ]; then
  echo "tests/install-deps.sh: the suite cannot run here; see the lines above" >&2
  exit 1
fi
