#!/usr/bin/env bash
# Starts a single-node Kubernetes v1.20.2 on this machine (root): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy (iptables mode, so
# ClusterIP Services route as in a real cluster), bridge CNI. First clears whatever
# an earlier run left behind (cluster-down.sh). Writes $KUBECONFIG_FILE. Prints timings.
# Traffic stays on this host: loopback, $NODE_IP (a /32 on lo) and the pod bridge $POD_CIDR.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
[ "$(id -u)" = 0 ] || die "cluster-up: must run as root"
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd; do
  [ -x "$K8S_BIN/$b" ] || die "cluster-up: $K8S_BIN/$b missing; run build-k8s.sh"
done
T0=$SECONDS
log "cluster-up: clearing leftovers of an earlier run"
"$HERE/cluster-down.sh" --quiet
mkdir -p "$E2E_RUN"/{pki,logs,pids} "$E2E_STATE" "$E2E_RSTATE"
cd "$E2E_RUN"

# ---- PKI, tokens, kubeconfigs -------------------------------------------------------------------
P=$E2E_RUN/pki
openssl genrsa -out "$P/ca.key" 2048 2>/dev/null
openssl req -x509 -new -nodes -key "$P/ca.key" -subj "/CN=tls-steal-e2e-ca" -days 7 -out "$P/ca.crt"
cert() { # name subject extensions
  openssl genrsa -out "$P/$1.key" 2048 2>/dev/null
  openssl req -new -key "$P/$1.key" -subj "$2" -out "$P/$1.csr"
  printf '%s\n' "$3" > "$P/$1.ext"
  openssl x509 -req -in "$P/$1.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -days 7 \
    -extfile "$P/$1.ext" -out "$P/$1.crt" 2>/dev/null
}
cert apiserver "/CN=kube-apiserver" "subjectAltName=IP:127.0.0.1,IP:$KUBERNETES_SVC_IP,IP:$NODE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
openssl genrsa -out "$P/sa.key" 2048 2>/dev/null
openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null
ADMIN_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
KUBELET_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
# Two developers for the "who may steal" check: alice gets tls-steal-user bound there, bob nothing.
ALICE_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
BOB_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat > tokens.csv <<EOT
$ADMIN_TOKEN,admin,admin-uid,"system:masters"
$KUBELET_TOKEN,system:node:$NODE_NAME,kubelet-uid,"system:nodes"
$ALICE_TOKEN,alice,alice-uid,"developers"
$BOB_TOKEN,bob,bob-uid,"developers"
EOT
chmod 600 tokens.csv
kubeconfig() { # file token
  cat > "$1" <<EOT
apiVersion: v1
kind: Config
clusters:
- name: tls-steal-e2e
  cluster: {server: "$APISERVER", certificate-authority: "$P/ca.crt"}
users:
- name: u
  user: {token: "$2"}
contexts:
- name: tls-steal-e2e
  context: {cluster: tls-steal-e2e, user: u}
current-context: tls-steal-e2e
EOT
  chmod 600 "$1"
}
kubeconfig "$KUBECONFIG_FILE" "$ADMIN_TOKEN"
kubeconfig "$E2E_RUN/alice.kubeconfig" "$ALICE_TOKEN"
kubeconfig "$E2E_RUN/bob.kubeconfig" "$BOB_TOKEN"
kubeconfig "$E2E_RUN/kubelet.kubeconfig" "$KUBELET_TOKEN"

# ---- configuration files ------------------------------------------------------------------------
echo 'nameserver 127.0.0.1' > resolv.conf   # pods must not reach outside DNS
cat > containerd.toml <<EOT
version = 2
root = "$E2E_STATE/containerd"
state = "$E2E_RSTATE/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: without this every sandbox fails
  # ("runc create failed: ... can't get final child's PID from pipe: EOF")
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
EOT
cat > kubelet-config.yaml <<EOT
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failSwapOn: false
clusterDomain: cluster.local
resolvConf: $E2E_RUN/resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"}
serializeImagePulls: false
EOT
mkdir -p /etc/cni/net.d
cat > "$CNI_CONF" <<EOT
{
  "cniVersion": "0.4.0",
  "name": "tls-steal-e2e",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$CNI_IPAM_DIR"}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOT

# ---- host network -------------------------------------------------------------------------------
[ -f "$E2E_RUN/orig_ip_forward" ] || cat /proc/sys/net/ipv4/ip_forward > "$E2E_RUN/orig_ip_forward"
ip -4 addr show dev lo | grep -q " $NODE_IP/" || ip addr add "$NODE_IP/32" dev lo
# the `kubernetes` Service for in-cluster clients (no kube-proxy): $KUBERNETES_SVC_IP:443 -> API server
iptables -t nat -N "$NAT_CHAIN" 2>/dev/null || iptables -t nat -F "$NAT_CHAIN"
iptables -t nat -A "$NAT_CHAIN" -d "$KUBERNETES_SVC_IP/32" -p tcp --dport 443 -j DNAT --to-destination "$NODE_IP:6443"
iptables -t nat -C PREROUTING -j "$NAT_CHAIN" 2>/dev/null || iptables -t nat -A PREROUTING -j "$NAT_CHAIN"
T1=$SECONDS

# ---- daemons ------------------------------------------------------------------------------------
log "cluster-up: containerd"
start_daemon containerd containerd --config "$E2E_RUN/containerd.toml"
wait_for 30 containerd ctrk version
for img in "$E2E_RUN"/images/*.tar; do
  [ -e "$img" ] || continue
  ctrk images import "$img" >/dev/null || die "importing $img"
done
log "cluster-up: images: $(ctrk images ls -q | grep -c "^$IMG_REPO/" || true) imported"
log "cluster-up: etcd"
start_daemon etcd "$K8S_BIN/etcd" --name "$NODE_NAME" --data-dir "$E2E_RUN/etcd-data" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster "$NODE_NAME=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381
wait_for 30 etcd curl -sf http://127.0.0.1:2379/health
log "cluster-up: kube-apiserver"
start_daemon kube-apiserver "$K8S_BIN/kube-apiserver" \
  --etcd-servers=http://127.0.0.1:2379 \
  --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port=6443 --insecure-port=0 \
  --endpoint-reconciler-type=none \
  --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --client-ca-file="$P/ca.crt" --token-auth-file="$E2E_RUN/tokens.csv" \
  --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP \
  --authorization-mode=Node,RBAC \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --api-audiences=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
  --enable-aggregator-routing=true \
  --enable-admission-plugins=NamespaceLifecycle,ServiceAccount,NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook
wait_for 90 kube-apiserver curl -sf --cacert "$P/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$APISERVER/readyz"
T2=$SECONDS
log "cluster-up: controller-manager, scheduler, kubelet"
# --node-monitor-grace-period 2m (default 40 s): the e2e stops kube-apiserver for 20 s, and the
# node lifecycle controller's own watches come back late enough that it would count the kubelet's
# Lease renewals as missed and mark the node NotReady (every Service losing its endpoints), a
# cluster effect the check is not about (docs/operating.md describes it for real clusters).
start_daemon kube-controller-manager "$K8S_BIN/kube-controller-manager" --kubeconfig="$KUBECONFIG_FILE" \
  --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
  --bind-address=127.0.0.1 --secure-port=10257 --port=0 --leader-elect=false --node-monitor-grace-period=2m \
  --use-service-account-credentials=true --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --controllers='*,-nodeipam,-cloud-node-lifecycle,-service,-route,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-csrsigning'
start_daemon kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig="$KUBECONFIG_FILE" \
  --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
  --bind-address=127.0.0.1 --secure-port=10259 --port=0 --leader-elect=false
start_daemon kubelet "$K8S_BIN/kubelet" --kubeconfig="$E2E_RUN/kubelet.kubeconfig" --config="$E2E_RUN/kubelet-config.yaml" \
  --container-runtime=remote --container-runtime-endpoint="unix://$CONTAINERD_SOCK" \
  --runtime-request-timeout=5m --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
  --network-plugin=cni --cni-bin-dir=/usr/lib/cni --cni-conf-dir=/etc/cni/net.d \
  --pod-infra-container-image="$PAUSE_IMAGE" \
  --root-dir="$E2E_STATE/kubelet" --cert-dir="$E2E_RUN/kubelet-pki" --v=1
# kube-proxy: conntrack sysctls left as they are (0 = do not set); pods on the bridge reach
# Services whose endpoints are on the same bridge through br_netfilter (bridge-nf-call-iptables).
BR_NF=/proc/sys/net/bridge/bridge-nf-call-iptables
if [ -w $BR_NF ]; then
  [ -f "$E2E_RUN/orig_bridge_nf" ] || cat $BR_NF > "$E2E_RUN/orig_bridge_nf"
  echo 1 > $BR_NF
fi
start_daemon kube-proxy "$K8S_BIN/kube-proxy" --kubeconfig="$KUBECONFIG_FILE" \
  --hostname-override="$NODE_NAME" --bind-address="$NODE_IP" --cluster-cidr="$POD_CIDR" \
  --proxy-mode=iptables --healthz-bind-address=127.0.0.1:10256 --metrics-bind-address=127.0.0.1:10249 \
  --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 --v=1
wait_for 60 "controller-manager /healthz" curl -sfk https://127.0.0.1:10257/healthz
wait_for 60 "scheduler /healthz" curl -sfk https://127.0.0.1:10259/healthz
node_ready() { [ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
wait_for 120 "node $NODE_NAME Ready" node_ready || { tail -20 "$E2E_RUN/logs/kubelet.log"; exit 1; }
wait_for 60 "kube-proxy /healthz" curl -sf http://127.0.0.1:10256/healthz || { tail -20 "$E2E_RUN/logs/kube-proxy.log"; exit 1; }
T3=$SECONDS
sa_ready() { [ -n "$(kc -n default get sa default -o jsonpath='{.secrets[0].name}')" ]; }
wait_for 60 "serviceaccount/default" sa_ready
T4=$SECONDS
log "cluster-up: TIMING leftovers+pki+config $((T1-T0))s, apiserver ready +$((T2-T1))s, node Ready +$((T3-T2))s, SA +$((T4-T3))s; total $((T4-T0))s"
log "cluster-up: ready. KUBECONFIG=$KUBECONFIG_FILE  kubectl=$K8S_BIN/kubectl"
