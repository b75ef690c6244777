#!/usr/bin/env bash
# Builds the statically linked vantage-probe (glibc, crt-static) and checks that it is static:
# no interpreter, no shared library, so it runs on any x86_64 Linux with no glibc of the right
# version. Names are resolved by hickory (/etc/resolv.conf, /etc/hosts), never through glibc's
# NSS, which a static glibc binary could only reach by loading libnss_* of the host's glibc;
# tests/tests/package.rs runs the binary with NSS hidden to prove it.
#   deploy/build-static.sh            build, check, print the binary's path on stdout (last line)
# The .deb is made from this binary: cargo deb --no-build --target x86_64-unknown-linux-gnu -p vantage-probe
set -euo pipefail
cd "$(dirname "$0")/.."
triple=x86_64-unknown-linux-gnu
started=$(date +%s)
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros (they stay dynamic
# host programs); only the probe and its dependencies are linked statically.
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$triple" -p vantage-probe >&2
echo "deploy/build-static.sh: built in $(($(date +%s) - started)) s" >&2
binary="${CARGO_TARGET_DIR:-target}/$triple/release/vantage-probe"

# `file` says "statically linked" (or "static-pie linked"); ldd finds nothing to load.
description=$(file --brief "$binary")
case "$description" in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) echo "deploy/build-static.sh: $binary is not static: $description" >&2; exit 1 ;;
esac
if ldd "$binary" 2>&1 | grep -q '=>'; then
  echo "deploy/build-static.sh: ldd lists shared libraries for $binary:" >&2
  ldd "$binary" >&2
  exit 1
fi
bytes=$(stat --format %s "$binary")
echo "deploy/build-static.sh: $binary: static, $bytes bytes ($(awk "BEGIN { printf \"%.1f\", $bytes / 1048576 }") MiB)" >&2
realpath "$binary"
