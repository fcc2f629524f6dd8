#!/usr/bin/env bash
# The main job: a local single-node Kubernetes (built once from Debian's sources, cached), the
# chart, an HTTPS demo app in an opted-in namespace, and `kubectl steal` taking the requests that
# carry `x-steal: yes` to a process on this machine while every other request reaches the pod.
# Root, Debian bookworm. KEEP_CLUSTER=1 leaves the cluster running (stop it with
# e2e/scripts/cluster-down.sh).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
E2E=$REPO/e2e/scripts
source "$E2E/lib.sh"
[ "$(id -u)" = 0 ] || die "demo.sh: run as root"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
BIN_DIR=$E2E_RUN/demo-bin
W=$E2E_RUN/demo; NS=demo

say "1/7 packages, Kubernetes binaries (first run compiles them: a few minutes), helm"
bash "$REPO/scripts/setup.sh"
"$E2E/deps.sh"; "$E2E/build-k8s.sh"; "$E2E/get-helm.sh" >/dev/null

say "2/7 building tls-steal (webhook, sidecar, kubectl-steal, demo app)"
(cd "$REPO" && cargo build -p tls-steal-webhook -p tls-steal-sidecar -p kubectl-steal -p tls-steal-e2e)
rm -rf "$BIN_DIR"; mkdir -p "$BIN_DIR"
for b in tls-steal-webhook tls-steal-sidecar kubectl-steal e2e-https-app; do cp "${CARGO_TARGET_DIR:-$REPO/target}/debug/$b" "$BIN_DIR/"; done
"$E2E/images.sh" "$BIN_DIR"

cleanup() {
  set +e
  [ -n "${STEAL_PID:-}" ] && kill -INT "$STEAL_PID" 2>/dev/null && wait "$STEAL_PID" 2>/dev/null
  [ -n "${APP_PID:-}" ] && kill "$APP_PID" 2>/dev/null
  if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
    say "cluster left running (KUBECONFIG=$KUBECONFIG_FILE); stop it with $E2E/cluster-down.sh"
  else
    say "tearing the cluster down"; "$E2E/cluster-down.sh" >/dev/null 2>&1
  fi
}
trap cleanup EXIT

say "3/7 starting the cluster (etcd, apiserver, controller-manager, scheduler, containerd, kubelet)"
"$E2E/cluster-up.sh"

say "4/7 installing the chart (CRDs, webhook, MutatingWebhookConfiguration)"
"$HELM" --kubeconfig "$KUBECONFIG_FILE" install tls-steal "$REPO/chart" -n tls-steal --create-namespace \
  -f "$REPO/e2e/fixtures/values-e2e.yaml" >/dev/null
kc -n tls-steal wait --for=condition=Available deploy/tls-steal-webhook --timeout=180s

say "5/7 an HTTPS app in namespace '$NS' (labelled tls-steal-injection=enabled) with its steal config"
rm -rf "$W"; mkdir -p "$W"
# The app's certificate as most teams have it: issued by their CA, for the Service's DNS name.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$W/ca.key" \
  -out "$W/ca.crt" -days 2 -subj /CN=demo-ca 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$W/demo.key" \
  -out "$W/demo.csr" -subj "/CN=demo-app.$NS.svc" 2>/dev/null
printf 'subjectAltName=DNS:demo-app,DNS:demo-app.%s.svc,DNS:demo-app.%s.svc.cluster.local\n' "$NS" "$NS" > "$W/demo.ext"
openssl x509 -req -in "$W/demo.csr" -CA "$W/ca.crt" -CAkey "$W/ca.key" -CAcreateserial -days 2 \
  -extfile "$W/demo.ext" -out "$W/demo.crt" 2>/dev/null
kc create namespace $NS >/dev/null
kc label namespace $NS tls-steal-injection=enabled >/dev/null
kc -n $NS create secret generic demo-app-tls --type=kubernetes.io/tls --from-file=tls.crt="$W/demo.crt" \
  --from-file=tls.key="$W/demo.key" --from-file=ca.crt="$W/ca.crt" >/dev/null
render() { sed -e "s/__NAMESPACE__/$NS/g" -e "s/__NAME__/demo-app/g" -e "s|__EXTRA_LABELS__||g" "$REPO/e2e/fixtures/$1"; }
render demo-config.yaml.in | tee "$W/config.yaml" | kc apply -f -
sleep 2   # the webhook's config cache follows the API server by watch
render demo-app.yaml.in | kc apply -f -
kc -n $NS rollout status deploy/demo-app --timeout=120s
POD=$(kc -n $NS get pods -l app=demo-app -o jsonpath='{.items[0].metadata.name}')
SVC=$(kc -n $NS get svc demo-app -o jsonpath='{.spec.clusterIP}')
echo "pod $POD has containers: $(kc -n $NS get pod "$POD" -o jsonpath='{range .spec.initContainers[*]}{.name} {end}{range .spec.containers[*]}{.name} {end}')"

say "6/7 a local HTTPS process on 127.0.0.1:18443, and kubectl steal deploy/demo-app --header 'x-steal: yes'"
"$BIN_DIR/e2e-https-app" --listen 127.0.0.1:18443 --cert "$W/demo.crt" --key "$W/demo.key" \
  --served-by "local process on this machine" > "$W/local-app.log" 2>&1 &
APP_PID=$!
KUBECONFIG=$KUBECONFIG_FILE "$BIN_DIR/kubectl-steal" -n $NS deploy/demo-app --port 443 \
  --header 'x-steal: yes' --to 127.0.0.1:18443 > "$W/kubectl-steal.log" 2>&1 &
STEAL_PID=$!
registered() { grep -q registered "$W/kubectl-steal.log"; }
wait_for 60 "the steal session to register" registered || { cat "$W/kubectl-steal.log"; die "no session"; }

say "7/7 requests to https://demo-app.$NS.svc (the Service, $SVC), as any client of the app sends them"
for h in "x-steal: yes" "x-steal: no"; do
  for v in --http1.1 --http2; do
    got=$(curl -sS $v --max-time 10 --cacert "$W/ca.crt" --resolve "demo-app.$NS.svc:443:$SVC" \
      -H "$h" "https://demo-app.$NS.svc/hello" | head -1)
    case $got in
      "served-by: local process on this machine") who="STOLEN: answered by the local process on this machine (127.0.0.1:18443)";;
      "served-by: pod $POD") who="answered by the app in pod $POD";;
      *) who="unexpected answer: $got";;
    esac
    printf '  curl %-9s -H %-14s -> %s\n' "$v" "'$h'" "$who"
  done
done
sleep 0.5
echo
echo "kubectl-steal's own output:"
sed 's/^/  | /' "$W/kubectl-steal.log"
echo
echo "Requests with 'x-steal: yes' were stolen: kubectl steal delivered them to the process on this"
echo "machine. The others reached the app in pod $POD, untouched."
