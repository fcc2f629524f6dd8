# Shared settings of the e2e scripts (sourced, not run).
# Everything the suite writes outside the repository lives under $E2E_CACHE (kept between runs:
# Kubernetes binaries, helm) and $E2E_RUN (per run: PKI, logs, PIDs, kubeconfig; wiped by cluster-up).
E2E_CACHE=${E2E_CACHE:-/var/cache/tls-steal-e2e}
E2E_RUN=${E2E_RUN:-/var/tmp/tls-steal-e2e}
K8S_VERSION=v1.20.2
K8S_DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
K8S_BIN=$E2E_CACHE/k8s-$K8S_VERSION/bin      # kube-*, kubelet, kubectl, etcd
HELM=$E2E_CACHE/bin/helm
KUBECTL_CURRENT=$E2E_CACHE/bin/kubectl   # v1.32 (get-helm.sh), for what users' kubectl does; kc uses $K8S_BIN's v1.20
NODE_NAME=tls-steal-e2e
NODE_IP=10.99.99.1                           # a /32 on lo (no dummy module in this kernel)
POD_CIDR=10.244.0.0/24
BRIDGE=tlssteal0
CNI_CONF=/etc/cni/net.d/10-tls-steal-e2e.conflist
CNI_IPAM_DIR=/run/tls-steal-e2e-cni-ipam
IMG_REPO=tls-steal.local                     # local image names, never pulled (imagePullPolicy: Never)
PAUSE_IMAGE=$IMG_REPO/pause:3.4.1
KUBECONFIG_FILE=$E2E_RUN/admin.kubeconfig
E2E_STATE=${E2E_STATE:-/var/lib/tls-steal-e2e}   # containerd root, kubelet root-dir (wiped by cluster-up/down)
E2E_RSTATE=/run/tls-steal-e2e                  # containerd state + socket
CONTAINERD_SOCK=$E2E_RSTATE/containerd/containerd.sock
APISERVER=https://$NODE_IP:6443
# In-cluster clients (the webhook) use the `kubernetes` Service (first IP of the service range).
# The API server keeps that Service without endpoints (--endpoint-reconciler-type=none), so
# cluster-up DNATs exactly that one address to it; kube-proxy routes every other Service.
SERVICE_CIDR=10.0.0.0/24
KUBERNETES_SVC_IP=10.0.0.1
NAT_CHAIN=TLS-STEAL-E2E
DAEMONS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*"; exit 1; }
kc() { "$K8S_BIN/kubectl" --kubeconfig="$KUBECONFIG_FILE" "$@"; }
ctrk() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s
wait_for() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { log "timed out after ${limit}s waiting for $what"; return 1; }
    sleep 0.2
  done
}
# start_daemon NAME BINARY ARGS...: setsid (survives a `timeout` around the caller), PID recorded
start_daemon() {
  local name=$1; shift
  mkdir -p "$E2E_RUN/pids" "$E2E_RUN/logs"
  local pidfile=$E2E_RUN/pids/$name.pid
  rm -f "$pidfile"
  # the daemon writes its own PID (setsid may fork), then becomes the program
  setsid bash -c 'echo "$$ $1" > "$2"; shift 2; exec "$@"' _ "$name" "$pidfile" "$@" \
    > "$E2E_RUN/logs/$name.log" 2>&1 < /dev/null &
  local n=0; until [ -s "$pidfile" ] || [ $n -gt 50 ]; do sleep 0.05; n=$((n+1)); done
}
