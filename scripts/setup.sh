#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian bookworm machine (root). Safe to run again.
set -euo pipefail
PKGS=(iptables iproute2 curl openssl python3 nghttp2-client libcap2-bin util-linux)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt
echo "setup: ok"
