#!/usr/bin/env bash
# Where each proxy's added latency goes at the fixed rate: a packet capture on loopback during
# `h2load --h1 -t2 -c20 --rps 100` (2,000 req/s), split by bench/lib/timeline.py into the
# request's time inside the proxy (in), the app's time (app) and the response's time inside the
# proxy (out). The app alone, tls-steal, nginx and HAProxy run one after another, the order
# rotated each round, with the same worker count and a registered `^x-steal:` session.
#
# Usage (as root): bash bench/proxy_timeline.sh [WORKERS]   (default 1)
# Env: TL_ROUNDS (4; a round runs each proxy once per way of opening the connections),
#      BENCH_DIR (/tmp/tls-steal-bench-timeline), BENCH_SIDECAR and BENCH_STEAL_CLI (default
#      target/dist).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/lib/proxies.sh"
D=${BENCH_DIR:-/tmp/tls-steal-bench-timeline}
THREADS=${1:-1}

[[ $(id -u) == 0 ]] || die "run as root"
bench_packages tcpdump python3
rm -rf "$D" && mkdir -p "$D"
bench_pin SIDECAR "${BENCH_SIDECAR:-$ROOT/target/dist/tls-steal-sidecar}"
bench_pin CLI "${BENCH_STEAL_CLI:-$ROOT/target/dist/kubectl-steal}"
bench_certs
THREADS=1 bench_app_conf
bench_proxy_confs
start_app
start_tls_steal
start_nginx
start_haproxy
start_session "$CLI" "$TS_SESSION" "$D/session.log"
trap 'kill $SESSION_PID 2>/dev/null; stop_all' EXIT
sleep 2

declare -A PORT=([app]=$APP_PORT [tls-steal]=$TS_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT)
cols=(app tls-steal nginx haproxy)
# h2load starts a connection's 100/s timer when its handshake completes, so with the 20
# connections opened together (`together`) the timers' phases, and how many requests arrive at
# once, follow how the proxy's handshakes and h2load's own happened to interleave. `spread`
# opens one connection per h2load thread every 11 ms (-r2 --rate-period 11ms): each handshake
# is over before the next starts, and the k-th connection's timer fires k ms into the 10 ms
# period, the same for every proxy.
declare -A LOAD=([together]="-D 6" [spread]="${SPREAD[*]} -n 12000")
log "$THREADS worker(s); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Per request, µs, at 2,000 req/s (h2load --h1 -t2 -c20 --rps 100 for 6 s; capture of seconds 2-5), $THREADS worker(s):"
echo
echo "| round: proxy | connect mean / max | h2load p50 / p99 | captured | wire p50 / p99 | matched | in p50 / mean | app p50 / mean | out p50 / mean | requests per burst |"
echo "|---|---|---|---:|---|---:|---|---|---|---:|"
for r in $(seq "${TL_ROUNDS:-4}"); do
  for i in 0 1 2 3; do for mode in together spread; do
    c=${cols[$(((i + r) % 4))]}
    port=${PORT[$c]}
    h2load --h1 -t2 -c20 --rps 100 ${LOAD[$mode]} --log-file "$D/lat.log" "https://127.0.0.1:$port/1k" >"$D/h2load.out" 2>&1 &
    load=$!
    sleep 2
    timeout 3 tcpdump -i lo -nn -s 96 -B 32768 -w "$D/cap.pcap" "tcp port $port or tcp port $APP_PORT" 2>/dev/null || true
    wait $load
    client=$(lat_pcts "$D/lat.log" | awk '{printf "%d / %d", $1, $2}')
    # time for the 20 connections to open (h2load: TCP and TLS handshakes), mean / max
    connect=$(awk '/^time for connect:/ {print $6 " / " $5}' "$D/h2load.out")
    tcpdump -nn -tt -r "$D/cap.pcap" 2>/dev/null >"$D/cap.txt"
    python3 "$ROOT/bench/lib/timeline.py" "$D/cap.txt" "$port" "$APP_PORT" "$r: $c, $mode" |
      awk -v c="$client" -v h="$connect" -F'|' 'BEGIN {OFS = "|"} {$3 = " " h " | " c " |" $3; print}'
    rm -f "$D/lat.log" "$D/cap.pcap" "$D/cap.txt"
    sleep 1
  done; done
done
