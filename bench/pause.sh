#!/usr/bin/env bash
# A keep-alive client that pauses: the time of its next request after 0.5 to 20 s of silence,
# through the app alone, tls-steal, nginx and HAProxy (1 worker each, on loopback). A proxy
# that closed its idle app connection meanwhile pays a new TLS handshake with the app there.
#
# Usage (as root): bash bench/pause.sh   (about 4 minutes)
# Env: PAUSE_ROUNDS (5), PAUSES ("0.5,1.5,3,5,10,20"), BENCH_DIR (/tmp/tls-steal-bench-pause),
#      BENCH_SIDECAR (default target/dist).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/lib/proxies.sh"
D=${BENCH_DIR:-/tmp/tls-steal-bench-pause}
THREADS=1

[[ $(id -u) == 0 ]] || die "run as root"
bench_packages python3
rm -rf "$D" && mkdir -p "$D"
bench_pin SIDECAR "${BENCH_SIDECAR:-$ROOT/target/dist/tls-steal-sidecar}"
bench_certs
bench_app_conf
bench_proxy_confs
start_app
start_tls_steal
start_nginx
start_haproxy
trap stop_all EXIT

log "median ms of the request after each pause, ${PAUSE_ROUNDS:-5} rounds"
python3 "$ROOT/bench/lib/pause_client.py" "$D/ca.pem" "${PAUSE_ROUNDS:-5}" "${PAUSES:-0.5,1.5,3,5,10,20}" \
  app=$APP_PORT tls-steal=$TS_PORT nginx=$NGINX_PORT haproxy=$HAPROXY_PORT
