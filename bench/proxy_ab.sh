#!/usr/bin/env bash
# Two builds of `tls-steal-sidecar proxy` side by side (A and B, each with its own worker count
# and a registered `^x-steal:` session), against the same app, on loopback: throughput rounds
# alternated A, B, A, B (HTTP/1.1 keep-alive, HTTP/2, a new TLS connection per request), then
# latency rounds at 2,000 req/s with the order rotated each round, beside the app itself.
# Made for changes whose effect is smaller than the minute-to-minute drift of this VM: compare
# A and B of the same round, not runs.
#
# Usage (as root): bash bench/proxy_ab.sh BIN_A BIN_B [WORKERS_A] [WORKERS_B]   (default 2 2)
# Env: AB_ROUNDS (3) throughput rounds, AB_LAT_ROUNDS (6) latency rounds, BENCH_DIR
#      (/tmp/tls-steal-bench-ab), BENCH_STEAL_CLI (kubectl-steal, default target/dist).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/lib/proxies.sh"
D=${BENCH_DIR:-/tmp/tls-steal-bench-ab}
(($# >= 2)) || die "usage: bench/proxy_ab.sh BIN_A BIN_B [WORKERS_A] [WORKERS_B]"
WA=${3:-2}
WB=${4:-$WA}

[[ $(id -u) == 0 ]] || die "run as root"
bench_packages
rm -rf "$D" && mkdir -p "$D/a" "$D/b"
cp "$1" "$D/a/tls-steal-sidecar" && cp "$2" "$D/b/tls-steal-sidecar"
CLI=${BENCH_STEAL_CLI:-$ROOT/target/dist/kubectl-steal}
bench_pin CLI "$CLI"
bench_certs
THREADS=1 bench_app_conf
THREADS=1 bench_proxy_confs
start_app
SIDECAR=$D/a/tls-steal-sidecar THREADS=$WA start_tls_steal
A=$TS_PID
SIDECAR=$D/b/tls-steal-sidecar TS_PORT=16443 TS_ADMIN=16401 TS_SESSION=16400 THREADS=$WB start_tls_steal
B=$TS_PID
SESSIONS=()
for s in 15400 16400; do
  start_session "$CLI" "$s" "$D/session.$s.log"
  SESSIONS+=("$SESSION_PID")
done
# wait for each to be gone, so a script run next finds its ports free
trap 'kill "${SESSIONS[@]}" 2>/dev/null; stop_pid $A; stop_pid $B; stop_pid "$(cat "$D/app.pid")"' EXIT
sleep 2

declare -A PORT=([app]=$APP_PORT [A]=15443 [B]=16443)
url() { echo "https://127.0.0.1:${PORT[$1]}/1k"; }
log "A: $1 ($WA workers), B: $2 ($WB workers)"
echo "| round | build | HTTP/1.1 req/s | HTTP/2 req/s | new connection per request, req/s |"
echo "|---|---|---:|---:|---:|"
for r in $(seq "${AB_ROUNDS:-3}"); do
  for c in A B; do
    h1=$(wrk -t2 -c50 -d8s "$(url $c)" | awk '/Requests\/sec/ {print int($2)}')
    h2=$(h2load -t2 -c50 -m10 -D 8 "$(url $c)" | awk '/finished in/ {print int($4)}')
    hs=$(wrk -t2 -c50 -d5s -H 'Connection: close' "$(url $c)" | awk '/Requests\/sec/ {print int($2)}')
    echo "| $r | $c | $h1 | $h2 | $hs |"
  done
done

# p50/p99 in µs of one latency run (h2load's log holds every request's duration)
lat() {
  h2load --h1 -t2 -c20 --rps 100 "${SPREAD[@]}" -n 12000 --log-file "$D/lat.log" "$(url "$1")" >/dev/null 2>&1
  lat_pcts "$D/lat.log" | awk '{printf "%d / %d", $1, $2}'
  rm -f "$D/lat.log"
}
echo
echo "p50 / p99 µs at 2,000 req/s (h2load --h1 -t2 -c20 --rps 100 ${SPREAD[*]} -n 12000), in the order run:"
cols=(app A B)
for r in $(seq "${AB_LAT_ROUNDS:-6}"); do
  line="round $r:"
  for i in 0 1 2; do
    c=${cols[$(((i + r) % 3))]}
    line+="  $c $(lat "$c")"
    sleep 1
  done
  echo "$line"
done
