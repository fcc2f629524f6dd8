#!/usr/bin/env bash
# Stops the e2e cluster and removes every host change cluster-up made; also clears what an
# interrupted earlier run left (cluster-up calls it first). Safe to run any number of times.
#   1. while kubelet still runs: delete workloads and pods (CNI DEL releases veths and IPs,
#      kubelet unmounts volumes)
#   2. stop exactly the recorded daemon PIDs (reverse start order)
#   3. leftover containers/shims of *this* containerd, mounts under our state dirs, CNI netns
#   4. bridge, the /32 on lo, iptables chains (kubelet's and kube-proxy's KUBE-*, portmap's CNI-*,
#      ours), ip_forward and bridge-nf-call-iptables
# --quiet: less output (used by cluster-up).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
QUIET=0; [ "${1:-}" = --quiet ] && QUIET=1
say() { [ $QUIET = 1 ] || log "cluster-down: $*"; }
[ "$(id -u)" = 0 ] || die "cluster-down: must run as root"
T0=$SECONDS

pid_alive() { # pid name: alive and still the recorded program
  local pid=$1 name=$2
  kill -0 "$pid" 2>/dev/null || return 1
  [ "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)")" = "$name" ]
}
running() { local f=$E2E_RUN/pids/$1.pid; [ -f "$f" ] && pid_alive $(cat "$f"); }

# ---- 1. pods away while kubelet runs ------------------------------------------------------------
if running kubelet && running kube-apiserver && [ -f "$KUBECONFIG_FILE" ] && kc get --raw /readyz >/dev/null 2>&1; then
  say "deleting webhook configurations, workloads and pods"
  kc delete mutatingwebhookconfiguration,validatingwebhookconfiguration --all --wait=false >/dev/null 2>&1
  kc delete deploy,statefulset,daemonset,job,rs --all -A --wait=false >/dev/null 2>&1
  kc delete pod --all -A --grace-period=1 --timeout=60s >/dev/null 2>&1
  for _ in $(seq 1 60); do
    [ -z "$(ctrk tasks ls -q 2>/dev/null)" ] && break
    sleep 1
  done
  say "pods gone after $((SECONDS-T0))s"
fi

# ---- 2. daemons, by recorded PID ----------------------------------------------------------------
for ((i=${#DAEMONS[@]}-1; i>=0; i--)); do
  name=${DAEMONS[$i]}; f=$E2E_RUN/pids/$name.pid
  [ -f "$f" ] || continue
  read -r pid _ < "$f"; exe=$name
  if pid_alive "$pid" "$exe"; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do pid_alive "$pid" "$exe" || break; sleep 0.2; done
    pid_alive "$pid" "$exe" && kill -9 "$pid" 2>/dev/null
    say "stopped $name ($pid)"
  fi
  rm -f "$f"
done

# ---- 3. containers, shims, mounts, netns --------------------------------------------------------
# shims of our containerd (identified by its socket in their command line)
for pid in $(pgrep -f containerd-shim-runc-v2 2>/dev/null); do
  if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-address $CONTAINERD_SOCK"; then
    kill "$pid" 2>/dev/null && say "killed leftover shim $pid"
  fi
done
# containers whose bundle lives in our containerd state (runc v2 shims keep runc state here)
RUNC_ROOT=/run/containerd/runc/k8s.io
if [ -d "$RUNC_ROOT" ]; then
  for id in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do
    if runc --root "$RUNC_ROOT" state "$id" 2>/dev/null | grep -q "\"bundle\": \"$E2E_RSTATE/"; then
      runc --root "$RUNC_ROOT" kill "$id" KILL 2>/dev/null; sleep 0.1
      runc --root "$RUNC_ROOT" delete -f "$id" 2>/dev/null && say "removed leftover container $id"
    fi
  done
fi
mount | awk '{print $3}' | grep -E "^($E2E_STATE|$E2E_RSTATE)(/|$)" | sort -r | while read -r m; do
  umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
done
# CNI network namespaces created by our containerd's CRI (cni-<uuid>); none in use once step 2/3 ran
for ns in /var/run/netns/cni-*; do
  [ -e "$ns" ] || continue
  ip netns pids "$(basename "$ns")" 2>/dev/null | grep -q . && continue
  ip netns del "$(basename "$ns")" 2>/dev/null
done

# ---- 4. network, host state ---------------------------------------------------------------------
ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE" && say "removed bridge $BRIDGE"
ip -4 addr show dev lo | grep -q " $NODE_IP/" && ip addr del "$NODE_IP/32" dev lo && say "removed $NODE_IP from lo"
iptables -t nat -D PREROUTING -j "$NAT_CHAIN" 2>/dev/null
iptables -t nat -F "$NAT_CHAIN" 2>/dev/null; iptables -t nat -X "$NAT_CHAIN" 2>/dev/null
for ipt in iptables ip6tables; do
  for t in filter nat mangle; do
    chains=$($ipt -t $t -S 2>/dev/null | awk '/^-N (KUBE|CNI)-/{print $2}')
    [ -n "$chains" ] || continue
    for c in $chains; do $ipt -t $t -F "$c" 2>/dev/null; done
    $ipt -t $t -S | grep -E '^-A [A-Z]+ .*-j (KUBE|CNI)-' | sed 's/^-A/-D/' | while read -r rule; do
      eval "$ipt -t $t $rule" 2>/dev/null
    done
    for c in $chains; do $ipt -t $t -X "$c" 2>/dev/null; done
  done
done
if [ -f "$E2E_RUN/orig_bridge_nf" ]; then
  cat "$E2E_RUN/orig_bridge_nf" > /proc/sys/net/bridge/bridge-nf-call-iptables && rm -f "$E2E_RUN/orig_bridge_nf"
fi
if [ -f "$E2E_RUN/orig_ip_forward" ]; then
  cat "$E2E_RUN/orig_ip_forward" > /proc/sys/net/ipv4/ip_forward && rm -f "$E2E_RUN/orig_ip_forward"
fi
rm -rf "$CNI_IPAM_DIR" "$CNI_CONF" "$E2E_STATE" "$E2E_RSTATE" "$E2E_RUN/etcd-data" "$E2E_RUN/pids" \
  "$E2E_RUN/kubelet-pki"
say "done in $((SECONDS-T0))s"
