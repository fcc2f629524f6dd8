#!/usr/bin/env bash
# Writes the e2e OCI image archives (no Docker, no registry) into $E2E_RUN/images:
#   pause            static pause (e2e/images/pause.c)                   -> $PAUSE_IMAGE
#   tls-steal-webhook   the webhook binary + its shared libraries (ldd)     -> $IMG_REPO/tls-steal-webhook:e2e
#   tls-steal-sidecar   the sidecar + libs + iptables (nft and legacy) + xtables modules + busybox
#   e2e-https-app    busybox + the HTTPS test app + libs
# Usage: images.sh [TARGET_DIR]   (default: <repo>/target/release). A missing binary skips its image.
# BAKED_TLS=DIR images.sh [TARGET_DIR] writes only e2e-https-app-baked: the test app with DIR's files
# in its image at /etc/app-tls (PEM files baked into an image, which the proxy reads through
# /proc/<pid>/root).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
REL=${1:-$REPO/target/release}
OUT=$E2E_RUN/images
MKOCI=$REPO/e2e/scripts/mkoci.py
mkdir -p "$OUT"
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT

# copy the shared libraries (and the dynamic loader) a binary needs into root $1
add_libs() {
  local root=$1; shift
  local lib
  # `ldd a b` prints "a:" headers; take only "x => /path" targets and the loader line
  for lib in $(ldd "$@" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $2 ~ /^\(/ {print $1}' | sort -u); do
    [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
  done
}
base_root() { # minimal filesystem: /etc files, /tmp, mount points; busybox if $2 = busybox
  local r=$1
  mkdir -p "$r"/{bin,etc,tmp,proc,sys,dev,run,usr/local/bin}
  chmod 1777 "$r/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$r/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$r/etc/group"
  : > "$r/etc/hosts"; : > "$r/etc/resolv.conf"
  if [ "${2:-}" = busybox ]; then
    cp /bin/busybox "$r/bin/busybox"
    for x in $(/bin/busybox --list); do [ "$x" = busybox ] || ln -sf busybox "$r/bin/$x"; done
  fi
}
image() { # root name entrypoint-json [mkoci options...]
  local root=$1 name=$2 entry=$3; shift 3
  python3 "$MKOCI" "$root" "$name" "$OUT/$(basename "${name%%:*}").tar" --entrypoint "$entry" "$@" | sed 's/^/  /'
}

app_image() { # name [dir whose files are baked in at /etc/app-tls]
  R=$W/$1; base_root "$R" busybox
  cp "$REL/e2e-https-app" "$R/usr/local/bin/"
  add_libs "$R" "$R/usr/local/bin/e2e-https-app"
  if [ -n "${2:-}" ]; then   # as an image build copies them: root's, the key readable by root only
    mkdir -p "$R/etc/app-tls" && cp "$2"/* "$R/etc/app-tls/" && chmod 644 "$R"/etc/app-tls/* &&
      chmod 600 "$R"/etc/app-tls/*.key
  fi
  image "$R" "$IMG_REPO/$1:e2e" '["/usr/local/bin/e2e-https-app"]'
}
if [ -n "${BAKED_TLS:-}" ]; then   # only the test app with certificates in its image (run.sh, check (h1))
  app_image e2e-https-app-baked "$BAKED_TLS"
  exit 0
fi

log "images: pause"
R=$W/pause; mkdir -p "$R"
gcc -Os -Wall -static -o "$R/pause" "$REPO/e2e/images/pause.c" && strip "$R/pause"
image "$R" "$PAUSE_IMAGE" '["/pause"]'

if [ -x "$REL/tls-steal-webhook" ]; then
  log "images: tls-steal-webhook"
  R=$W/webhook; base_root "$R"
  cp "$REL/tls-steal-webhook" "$R/usr/local/bin/"
  add_libs "$R" "$R/usr/local/bin/tls-steal-webhook"
  mkdir -p "$R/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/" 2>/dev/null || true
  image "$R" "$IMG_REPO/tls-steal-webhook:e2e" '["/usr/local/bin/tls-steal-webhook"]' --cmd '["serve"]' --user 65532:65532
else
  log "images: SKIP tls-steal-webhook (no $REL/tls-steal-webhook)"
fi

if [ -x "$REL/tls-steal-sidecar" ]; then
  log "images: tls-steal-sidecar (with iptables nft + legacy)"
  R=$W/sidecar; base_root "$R" busybox
  cp "$REL/tls-steal-sidecar" "$R/usr/local/bin/"
  mkdir -p "$R/usr/sbin"
  cp /usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi "$R/usr/sbin/"
  for n in iptables ip6tables; do
    for s in "" -save -restore; do
      ln -sf xtables-nft-multi "$R/usr/sbin/$n$s"
      ln -sf xtables-nft-multi "$R/usr/sbin/$n-nft$s"
      ln -sf xtables-legacy-multi "$R/usr/sbin/$n-legacy$s"
    done
  done
  mkdir -p "$R/usr/lib/x86_64-linux-gnu"
  cp -r /usr/lib/x86_64-linux-gnu/xtables "$R/usr/lib/x86_64-linux-gnu/"
  add_libs "$R" "$R/usr/local/bin/tls-steal-sidecar" /usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi \
    "$R"/usr/lib/x86_64-linux-gnu/xtables/*.so
  # like sidecar/Dockerfile: the proxy runs unprivileged; tls-steal-init sets runAsUser: 0 itself
  image "$R" "$IMG_REPO/tls-steal-sidecar:e2e" '["/usr/local/bin/tls-steal-sidecar"]' --cmd '["proxy"]' --user 65532:65532
else
  log "images: SKIP tls-steal-sidecar (no $REL/tls-steal-sidecar)"
fi

if [ -x "$REL/e2e-https-app" ]; then
  log "images: e2e-https-app"
  app_image e2e-https-app
else
  log "images: SKIP e2e-https-app (no $REL/e2e-https-app)"
fi
ls -la "$OUT" | sed 's/^/  /'
