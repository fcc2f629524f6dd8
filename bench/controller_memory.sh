#!/usr/bin/env bash
# RSS of the webhook replicas (admission) and the controller replicas (the rollout controller's
# watch caches: only the leader's grow) as workloads are added, on the local e2e cluster (issue 19: ≤ 4 KiB per workload).
#
# Needs a running cluster with tls-steal installed and the chart's controller on: `KEEP_CLUSTER=1
# E2E_ROLLOUT=0 bash e2e/scripts/run.sh` leaves one up (stop it with `e2e/scripts/cluster-down.sh`),
# then `helm upgrade tls-steal chart -n tls-steal --reuse-values --set controller.enabled=true`.
# Creates N Deployments (replicas 0, so no pods) in the namespace `tls-steal-mem`, each like a
# real one: three containers with env, probes, resources and ports, applied with `kubectl apply`
# (so with managedFields and the last-applied annotation), and prints the RSS of every webhook
# process after each step, once the controller's cache reports them all.
#
# First it opts the namespace in and applies CONFIGS steal configs (1,000; each targets one of the
# Deployments, deploy/mem-<i>, port 8443, with trustRoots), so the caches hold them and the
# controller plans the workloads they match (replicas 0: no pods, so nothing is rolled out); the
# baseline is taken after them.
#
# Usage (as root): bash bench/controller_memory.sh        Env: STEPS ("1000 5000"), CHUNK (500),
# CONFIGS (1000)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/e2e/scripts/lib.sh"
STEPS=(${STEPS:-1000 5000})
CHUNK=${CHUNK:-500}
CONFIGS=${CONFIGS:-1000}
NS=tls-steal-mem
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# RSS (KiB) of each webhook (`serve`) and controller (`controller`) process, one line per process:
# "<role>/<pid> <kib>"
rss() {
  local role p
  for role in serve controller; do
    for p in $(pgrep -f "tls-steal-webhook $role"); do echo "$role/$p $(awk '/^VmRSS:/ {print $2}' /proc/$p/status)"; done
  done
}

deployment() { # index
  cat <<YAML
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: mem-$1, namespace: $NS, labels: {app: mem-$1, team: bench}}
spec:
  replicas: 0
  selector: {matchLabels: {app: mem-$1}}
  template:
    metadata: {labels: {app: mem-$1, team: bench}}
    spec:
      containers:
YAML
  for c in app sidecar metrics; do
    cat <<YAML
      - name: $c
        image: registry.example/mem/$c:1.$1
        ports: [{containerPort: 8443, name: https}, {containerPort: 9090, name: metrics}]
        env:
$(for e in DATABASE_URL CACHE_URL LOG_LEVEL FEATURE_FLAGS REGION TIMEOUT_MS OTEL_ENDPOINT POOL_SIZE; do echo "        - {name: $e, value: \"value-of-$e-for-$c-in-deployment-$1\"}"; done)
        resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {cpu: "1", memory: 512Mi}}
        readinessProbe: {httpGet: {path: /ready, port: 8443, scheme: HTTPS}, periodSeconds: 5}
        livenessProbe: {httpGet: {path: /healthz, port: 8443, scheme: HTTPS}, periodSeconds: 10}
YAML
  done
}

config() { # index
  cat <<YAML
---
apiVersion: mirrord.metalbear.co/v1alpha
kind: MirrordTlsStealConfig
metadata: {name: mem-$1, namespace: $NS}
spec:
  targetPath: deploy/mem-$1
  ports:
  - port: 8443
    agentAsServer:
      authentication: {certPem: /tls/tls.crt, keyPem: /tls/tls.key}
    agentAsClient:
      verification: {trustRoots: [/tls/ca.crt]}
YAML
}

kc get ns "$NS" >/dev/null 2>&1 || kc create ns "$NS" >/dev/null
kc label ns "$NS" tls-steal-injection=enabled --overwrite >/dev/null
have_configs=$(kc -n "$NS" get mirrordtlsstealconfigs --no-headers 2>/dev/null | wc -l)
if ((have_configs < CONFIGS)); then
  for i in $(seq "$have_configs" $((CONFIGS - 1))); do config "$i"; done >"$E2E_RUN/mem-configs.yaml"
  kc apply -f "$E2E_RUN/mem-configs.yaml" >/dev/null
  log "$CONFIGS steal configs applied"; sleep 20
fi
have=$(kc -n "$NS" get deploy --no-headers 2>/dev/null | wc -l)
log "webhook processes at $have workloads and $CONFIGS configs in $NS:"; rss | sed 's/^/  pid rss_kib: /' >&2
declare -A BASE
while read -r p r; do BASE[$p]=$r; done < <(rss)
echo "| workloads in $NS | process | RSS MiB | KiB per workload over the start |"
echo "|---:|---|---:|---:|"
while read -r p r; do printf '| %d | %s | %.1f | – |\n' "$have" "$p" "$(awk -v k="$r" 'BEGIN{print k/1024}')"; done < <(rss)
for n in "${STEPS[@]}"; do
  while ((have < n)); do
    to=$((have + CHUNK)); ((to > n)) && to=$n
    for i in $(seq "$have" $((to - 1))); do deployment "$i"; done >"$E2E_RUN/mem-chunk.yaml"
    kc apply -f "$E2E_RUN/mem-chunk.yaml" >/dev/null
    have=$to; log "$have Deployments applied"
  done
  sleep 20 # the watch events reach every replica's cache (the controller's cache is what grows)
  while read -r p r; do
    per=$(awk -v r="$r" -v b="${BASE[$p]:-$r}" -v n="$n" 'BEGIN{printf "%.2f", (r-b)/n}')
    printf '| %d | %s | %.1f | %s |\n' "$n" "$p" "$(awk -v k="$r" 'BEGIN{print k/1024}')" "$per"
  done < <(rss)
done
log "done; delete with: kc delete ns $NS"
