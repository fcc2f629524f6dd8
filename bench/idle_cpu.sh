#!/usr/bin/env bash
# CPU of an idle tls-steal-proxy (no traffic after one request), per binary and per place its
# PEM files are found:
#   direct     the plan's paths are opened in the proxy's own filesystem (a proxy run by hand)
#   container  the files exist only under /proc/<pid>/root of a process of container `app`: a
#              process in a mount namespace of its own, with the PEM files on a private tmpfs
#              and a bind mount shaped like the kubelet's termination-log mount, which is how
#              the proxy tells a container's processes (sidecar/src/proxy/mounts.rs)
# Each proxy (2 workers, one port, the app of bench/proxy.sh behind it) answers one request,
# then idles for BENCH_IDLE_SECS; the figure is its utime+stime over that time. Also printed:
# how many processes the machine had, since the proxy looks for the container's processes
# among all it can see.
#
# Usage (as root): bash bench/idle_cpu.sh [BIN...]   (default: the target/dist binary; about
#                  1 minute per binary and round)
# Env: BENCH_DIR (default /tmp/tls-steal-bench-cpu), BENCH_IDLE_SECS (30), BENCH_ROUNDS (2).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/lib/proxies.sh"
D=${BENCH_DIR:-/tmp/tls-steal-bench-cpu}
SECS=${BENCH_IDLE_SECS:-30}
ROUNDS=${BENCH_ROUNDS:-2}
THREADS=2
# ports apart from bench/proxy.sh's and bench/idle.sh's, so they can share a machine
APP_PORT=29443 STEAL_PORT=29444 APP_STATUS_PORT=29080
TS_PORT=35443 TS_ADMIN=35401 TS_SESSION=35400
(($# > 0)) || set -- "$ROOT/target/dist/tls-steal-sidecar"
[[ $(id -u) == 0 ]] || die "run as root (mount namespaces)"
bench_packages

rm -rf "$D" && mkdir -p "$D"
bench_certs
bench_app_conf
bench_proxy_confs

# The container: its PEM files on a tmpfs only its mount namespace sees (empty mount point
# outside), its termination-log mount naming container `app`.
N=$D/ns
mkdir -p "$N/pods/0b1e/containers/app" "$N/tls"
touch "$N/pods/0b1e/containers/app/77" "$N/termination-log"
unshare --mount --propagation private sh -c "mount --bind $N/pods/0b1e/containers/app/77 $N/termination-log &&
  mount -t tmpfs none $N/tls && cp $D/chain.pem $D/leaf.key $D/ca.pem $N/tls/ && exec sleep 100000" &
NS_PID=$!
bench_plan "$N/tls" "$D/plan-container.json"

TS_PID=
trap 'kill $NS_PID ${TS_PID:-} 2>/dev/null || true; stop_all' EXIT
start_app
ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }

echo "| round | binary | files | idle CPU, ms per s | processes on the machine |"
echo "|---|---|---|---:|---:|"
for r in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    for files in direct container; do
      plan=$D/plan.json; [[ $files == container ]] && plan=$D/plan-container.json
      PLAN=$plan SIDECAR=$bin start_tls_steal
      code=$(curl -s --cacert "$D/ca.pem" --resolve localhost:$TS_PORT:127.0.0.1 -o /dev/null -w '%{http_code}' \
        "https://localhost:$TS_PORT/1k")
      [[ $code == 200 ]] || die "$(basename "$bin") with $files files answered $code"
      sleep 2
      a=$(ticks "$TS_PID"); sleep "$SECS"; b=$(ticks "$TS_PID")
      awk -v r="$r" -v b="$(basename "$bin")" -v f="$files" -v t=$((b - a)) -v hz="$HZ" -v s="$SECS" \
        -v n="$(ls /proc | grep -c '^[0-9]')" 'BEGIN {printf "| %d | %s | %s | %.2f | %d |\n", r, b, f, t * 1000 / hz / s, n}'
      stop_pid "$TS_PID"
      TS_PID=
    done
  done
done
