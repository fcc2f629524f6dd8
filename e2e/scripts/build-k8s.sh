#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl v1.20.2 from
# Debian bookworm's `kubernetes` source package (full upstream tree, vendored deps), with Debian's
# Go 1.19, and takes etcd 3.4 from Debian's etcd-server. Output: $K8S_BIN. Cached: a second run
# with the binaries present does nothing. Nothing is installed system-wide (apt-get download + dpkg -x).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
OUT=$E2E_CACHE/k8s-$K8S_VERSION
BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd)
cached() { [ -f "$OUT/.complete" ] || return 1; for b in "${BINS[@]}"; do [ -x "$OUT/bin/$b" ] || return 1; done; }
if cached; then
  log "build-k8s: cached in $OUT/bin ($("$OUT/bin/kube-apiserver" --version))"
  exit 0
fi
W=$E2E_CACHE/k8s-build
T0=$(date +%s)
rm -rf "$W" "$OUT"; mkdir -p "$W"/{deb,root,bin,home} "$W"/apt/{lists/partial,cache/archives/partial,sources.d}
log "build-k8s: downloading Go 1.19, rsync, etcd, reflect2 1.0.2 (.deb, extracted under $W/root)"
( cd "$W/deb" && apt-get download golang-1.19-go golang-1.19-src rsync libpopt0 etcd-server \
    golang-github-modern-go-reflect2-dev 2>&1 | grep -v '^W:' | tail -1 || true )
for f in "$W"/deb/*.deb; do dpkg -x "$f" "$W/root"; done
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/root/usr/lib/x86_64-linux-gnu exec %s/root/usr/bin/rsync "$@"\n' "$W" "$W" > "$W/bin/rsync"
chmod +x "$W/bin/rsync"

log "build-k8s: fetching the kubernetes $K8S_DEB_VERSION source package (deb-src from this machine's apt sources)"
: > "$W/apt/sources.list"
for f in /etc/apt/sources.list.d/*.sources; do
  [ -e "$f" ] && sed 's/^Types: deb$/Types: deb-src/' "$f" > "$W/apt/sources.d/$(basename "$f")"
done
if [ -f /etc/apt/sources.list ]; then sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > "$W/apt/sources.list"; fi
A=(-o "Dir::Etc::SourceList=$W/apt/sources.list" -o "Dir::Etc::SourceParts=$W/apt/sources.d"
   -o "Dir::State::Lists=$W/apt/lists" -o "Dir::Cache=$W/apt/cache")
apt-get "${A[@]}" update >/dev/null
( cd "$W" && apt-get "${A[@]}" source --download-only "kubernetes=$K8S_DEB_VERSION" 2>&1 | grep -v '^W:' | tail -1 )
cd "$W"
tar xzf kubernetes_*.orig.tar.gz
mkdir -p debsrc && tar xJf kubernetes_*deb12u1.debian.tar.xz -C debsrc
SRC=$W/kubernetes-${K8S_VERSION#v}
cd "$SRC"
log "build-k8s: applying $(wc -l < ../debsrc/debian/patches/series) Debian patches"
while read -r p; do
  [ -n "$p" ] && [ "${p#\#}" = "$p" ] && patch -s -p1 < "../debsrc/debian/patches/$p"
done < ../debsrc/debian/patches/series
# Required: vendored reflect2 v1.0.1 crashes kube-apiserver (SIGSEGV in mapiterinit) on the first
# custom-resource create under Go >= 1.18. Swap in Debian's reflect2 1.0.2 sources.
V=vendor/github.com/modern-go/reflect2
R2=$W/root/usr/share/gocode/src/github.com/modern-go/reflect2
find "$V" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
cp "$R2"/*.go "$R2"/*.s "$V"/
cat > "$W/version.env" <<EOT
KUBE_GIT_COMMIT='faecb196815e248d3ecfb03c680a4507229c2a56'
KUBE_GIT_TREE_STATE='clean'
KUBE_GIT_VERSION='$K8S_VERSION'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='20'
EOT
T1=$(date +%s)
log "build-k8s: sources ready in $((T1-T0))s; compiling (about 4 min on 2 cores; log: $W/make.log)"
export GOROOT=$W/root/usr/lib/go-1.19 PATH=$W/root/usr/lib/go-1.19/bin:$W/bin:$PATH
export GOFLAGS=-mod=vendor GOPROXY=off CGO_ENABLED=0 HOME=$W/home KUBE_GIT_VERSION_FILE=$W/version.env
export GOCACHE=$W/gocache
( while sleep 30; do log "build-k8s: still compiling ($(( $(date +%s) - T1 ))s)"; done ) & TICK=$!
trap 'kill $TICK 2>/dev/null || true' EXIT
if ! make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet cmd/kube-proxy cmd/kubectl" \
    > "$W/make.log" 2>&1; then
  tail -30 "$W/make.log"; die "build-k8s: make failed (see $W/make.log)"
fi
T2=$(date +%s)
kill $TICK 2>/dev/null || true
mkdir -p "$OUT/bin"
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do cp "_output/bin/$b" "$OUT/bin/"; done
cp "$W/root/usr/bin/etcd" "$OUT/bin/"
# also keep pause.c (the e2e pause image is compiled from it)
mkdir -p "$OUT/src" && cp build/pause/linux/pause.c "$OUT/src/"
"$OUT/bin/kube-apiserver" --version; "$OUT/bin/etcd" --version | head -1
touch "$OUT/.complete"
log "build-k8s: TIMING fetch+extract+patch $((T1-T0))s, make $((T2-T1))s, total $((T2-T0))s"
# The build tree and Go cache (~3 GB) are not needed any more.
cd / && rm -rf "$W"
