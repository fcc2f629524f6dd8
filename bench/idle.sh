#!/usr/bin/env bash
# Memory per idle client connection: tls-steal-proxy against nginx and HAProxy (issue 20).
#
# On loopback only. For each protocol (HTTP/1.1, HTTP/2) and each N in BENCH_IDLE_COUNTS, each
# proxy (1 worker; the same app, certificates and routing as bench/proxy.sh) is started afresh,
# bench/lib/idle_clients.py opens N TLS connections through it, sends one GET on each and then holds them
# all idle. Read off per case:
#   RSS before          the proxy just started, one request served
#   RSS holding N idle  with every connection open and idle (3 s after the last request)
#   per connection      (holding - before) / N
#   app conns held      connections the app holds open while the clients idle (stub_status)
#   RSS 10 s after      10 s after the clients closed every connection
#
# Usage (as root): bash bench/idle.sh   (about 6 minutes)
# Env: BENCH_DIR (default /tmp/tls-steal-bench-idle), BENCH_IDLE_COUNTS ("1000 10000"),
#      BENCH_IDLE_PROTOS ("h1 h2"), BENCH_IDLE_PROXIES ("tls-steal nginx haproxy"),
#      BENCH_IDLE_PARALLEL (handshakes in flight at once, default 100),
#      BENCH_SKIP_BUILD=1, BENCH_SKIP_APT=1, BENCH_SIDECAR (the binary to measure).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/lib/proxies.sh"
D=${BENCH_DIR:-/tmp/tls-steal-bench-idle}
COUNTS=(${BENCH_IDLE_COUNTS:-1000 10000})
PROTOS=(${BENCH_IDLE_PROTOS:-h1 h2})
PROXIES=(${BENCH_IDLE_PROXIES:-tls-steal nginx haproxy})
THREADS=1
# Each proxy holds N client sockets (and, unpooled, N app sockets): N is capped to what the
# open-file hard limit allows (20,000 in this sandbox, and root cannot raise it here).
FD_LIMIT=$(ulimit -Hn); [[ $FD_LIMIT == unlimited ]] && FD_LIMIT=1048576
MAXCONN=$(( (FD_LIMIT - 800) / 2 < 12000 ? (FD_LIMIT - 800) / 2 : 12000 ))
for i in "${!COUNTS[@]}"; do
  if ((COUNTS[i] > MAXCONN - 100)); then
    log "N=${COUNTS[i]} lowered to $((MAXCONN - 100)): open-file hard limit $FD_LIMIT"
    COUNTS[i]=$((MAXCONN - 100))
  fi
done
# ports apart from bench/proxy.sh's, so the two can share a machine
APP_PORT=19443 STEAL_PORT=19444 APP_STATUS_PORT=19080
TS_PORT=25443 TS_ADMIN=25401 TS_SESSION=25400
NGINX_PORT=18443 HAPROXY_PORT=17443

[[ $(id -u) == 0 ]] || die "run as root (installs packages, raises limits)"
bench_packages
if [[ -z ${BENCH_SKIP_BUILD:-} ]]; then
  log "cargo build --profile dist -p tls-steal-sidecar"
  (cd "$ROOT" && cargo build --profile dist -q -p tls-steal-sidecar)
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SIDECAR=${BENCH_SIDECAR:-$TARGET_DIR/dist/tls-steal-sidecar}
CLIENTS=$ROOT/bench/lib/idle_clients.py

ulimit -n "$FD_LIMIT"
sysctl -qw net.core.somaxconn=4096 net.ipv4.ip_local_port_range="10000 65000" 2>/dev/null || true
rm -rf "$D" && mkdir -p "$D"
bench_pin SIDECAR "$SIDECAR"
bench_certs
bench_app_conf
bench_proxy_confs

cleanup() {
  for p in ${TS_PID:-} ${HA_PID:-}; do kill "$p" 2>/dev/null || true; done
  for f in app nginx; do [[ -f $D/$f.pid ]] && kill "$(cat "$D/$f.pid")" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
start_app

declare -A PORT=([tls-steal]=$TS_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT) R
# start_proxy NAME: sets P_PID
start_proxy() {
  case $1 in
    # keep-alive as long as the others' (300 s): the default 10 s header timeout would close
    # the first clients while the last ones are still connecting
    tls-steal) start_tls_steal --max-connections $MAXCONN --header-read-timeout 300 --idle-timeout 300 >/dev/null; P_PID=$TS_PID ;;
    nginx) start_nginx; P_PID=$NG_PID ;;
    haproxy) start_haproxy >/dev/null; P_PID=$HA_PID ;;
  esac
}

# one case: PROXY PROTO N
measure() {
  local p=$1 proto=$2 n=$3 pid before held after a0 a1 ready ok failed
  start_proxy "$p"; pid=$P_PID
  local curl_v=--http1.1; [[ $proto == h2 ]] && curl_v=--http2
  curl -sS --cacert "$D/ca.pem" $curl_v -o /dev/null "https://127.0.0.1:${PORT[$p]}/1k" || die "$p: no answer"
  sleep 1
  before=$(rss_kb "$pid"); a0=$(app_active)
  coproc CL { exec python3 "$CLIENTS" --connect "127.0.0.1:${PORT[$p]}" --name localhost --ca "$D/ca.pem" \
    --proto "$proto" --count "$n" --path /1k ${BENCH_IDLE_PARALLEL:+--parallel $BENCH_IDLE_PARALLEL} 2>>"$D/clients.log"; }
  read -r ready ok failed <&"${CL[0]}" || die "$p $proto $n: idle_clients.py ended early (see $D/clients.log)"
  sleep 3
  held=$(rss_kb "$pid"); a1=$(app_active)
  exec {CL[1]}>&-   # the clients let go of every connection
  wait "$CL_PID" 2>/dev/null || true
  sleep 10
  after=$(rss_kb "$pid")
  stop_pid "$pid"
  R[$p,$proto,$n]="$(mib "$before") | $(mib "$held") | $(awk -v a="$held" -v b="$before" -v n="$n" 'BEGIN{printf "%.1f", (a-b)*1.024/n}') | $((a1 - a0)) | $(mib "$after")"
  ((failed == 0)) || R[$p,$proto,$n]+=" ($failed connections failed)"
  log "$(printf '%-9s %s %6s: %s' "$p" "$proto" "$n" "RSS before | holding | KB per connection | app conns held | 10 s after = ${R[$p,$proto,$n]}; $ok idle")"
  sleep 1
}

for proto in "${PROTOS[@]}"; do
  for n in "${COUNTS[@]}"; do
    for p in "${PROXIES[@]}"; do measure "$p" "$proto" "$n"; done
  done
done

{
  echo
  if [[ -n ${BENCH_SIDECAR:-} ]]; then built="$BENCH_SIDECAR, built $(date -u -r "$BENCH_SIDECAR" +'%Y-%m-%d %H:%M UTC')"
  else built="dist build of git $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && [[ -n $(git status --porcelain -- sidecar 2>/dev/null) ]] && echo ' + uncommitted changes in sidecar/')"; fi
  echo "Machine: $(nproc) cores, $(uname -r), $(date -u +'%Y-%m-%d %H:%M UTC'); tls-steal-sidecar: $built"
  echo "Versions: $(nginx -v 2>&1 | cut -d' ' -f3), $(haproxy -v | head -1 | cut -d' ' -f1-3). Each proxy 1 worker, started afresh per case; KB = 1,000 bytes."
  echo
  echo "| proxy | protocol | idle clients | RSS before, MiB | RSS holding them, MiB | per connection, KB | app connections held | RSS 10 s after close, MiB |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
  for proto in "${PROTOS[@]}"; do for n in "${COUNTS[@]}"; do for p in "${PROXIES[@]}"; do
    echo "| $p | $proto | $n | ${R[$p,$proto,$n]} |"
  done; done; done
  echo "Scratch directory: $D"
} | tee "$D/report.md"
