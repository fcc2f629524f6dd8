#!/usr/bin/env bash
# Instructions per request of `tls-steal-sidecar proxy` (user space), counted by callgrind:
# repeatable whatever else the machine is doing, unlike req/s on a shared 2-core machine.
#
# Reuses the app, certificates and plan that `bench/proxy.sh` leaves in its scratch directory.
# The proxy runs under valgrind with one worker thread and a registered session (filter
# `^x-steal:`), and serves N1 then N2 requests (h2load, 50 connections) in two separate runs;
# (Ir(N2) - Ir(N1)) / (N2 - N1) cancels start-up and the 50 TLS handshakes. The certificate
# reload loop (time-driven, not request-driven) is subtracted from each run's total.
#
# Usage (as root): bash bench/proxy_instructions.sh [BIN...]   (default: target/dist binary)
# Env: BENCH_DIR (default /tmp/tls-steal-bench), KINDS ("h1 h2"), N1 (4000), N2 (12000).
# KINDS=conn counts a new TLS connection per request instead (Python's ssl client, ALPN
# http/1.1, one GET and `Connection: close` each, one after the other): the handshake, the
# hello read and the request; use smaller N1/N2 (200/600), valgrind makes handshakes slow.
# Under valgrind the h2 run's first burst opens many app connections (each request waiting for
# the slow first handshake starts one), so its figure includes handshakes: compare h2 rows with
# each other only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/lib/proxies.sh"   # bench/proxy.sh's ports, start_session
D=${BENCH_DIR:-/tmp/tls-steal-bench}
KINDS=${KINDS:-h1 h2}
N1=${N1:-4000}
N2=${N2:-12000}
CLI=${BENCH_STEAL_CLI:-$ROOT/target/dist/kubectl-steal}
[[ -x $CLI ]] || CLI=$ROOT/target/release/kubectl-steal
(($# > 0)) || set -- "$ROOT/target/dist/tls-steal-sidecar"

[[ -f $D/plan.json && -f $D/app.conf ]] || die "run bench/proxy.sh first (no $D/plan.json)"
bench_packages valgrind

nginx -c "$D/app.conf" -p "$D" -e "$D/app.err" 2>/dev/null || true
trap 'kill "$(cat "$D/app.pid" 2>/dev/null)" 2>/dev/null || true' EXIT

# total Ir of one proxy run serving N requests of KIND
count() {
  local bin=$1 kind=$2 n=$3 out vp sp
  out=$(mktemp /tmp/tls-steal-cg.XXXXXX)
  TLS_STEAL_SESSION_AUTHORIZATION=disabled TOKIO_WORKER_THREADS=1 RUST_LOG=warn \
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" proxy --plan "$D/plan.json" --listen 127.0.0.1:$TS_PORT \
    --admin 127.0.0.1:$TS_ADMIN --session-api 127.0.0.1:$TS_SESSION --orig-dst-override 127.0.0.1:$APP_PORT --drain-delay 0 2>/dev/null &
  vp=$!
  for _ in $(seq 150); do (echo >/dev/tcp/127.0.0.1/$TS_PORT) 2>/dev/null && break; sleep 0.2; done
  start_session "$CLI" "$TS_SESSION" /dev/null
  sp=$SESSION_PID
  sleep 3
  if [[ $kind == h1 ]]; then
    h2load --h1 -t2 -c50 -n "$n" "https://127.0.0.1:$TS_PORT/1k" >/dev/null 2>&1
  elif [[ $kind == conn ]]; then
    python3 - "$TS_PORT" "$n" <<'PY'
import socket, ssl, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
for _ in range(n):
    with socket.create_connection(("127.0.0.1", port)) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            t.sendall(b"GET /1k HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            while t.recv(65536):
                pass
PY
  else
    h2load -t2 -c50 -m10 -n "$n" "https://127.0.0.1:$TS_PORT/1k" >/dev/null 2>&1
  fi
  kill "$sp"; sleep 1; kill -INT "$vp"; wait "$vp" 2>/dev/null || true
  # The reload loop reads every port's files once a second: under valgrind a run lasts ~50x
  # longer, so its share would be charged to the requests; it is left out.
  local total reload
  total=$(awk '/^summary:/ {print $2}' "$out")
  reload=$(callgrind_annotate --inclusive=yes --threshold=100 "$out" 2>/dev/null |
    awk '/RawMaterial::read /{gsub(",", "", $1); print $1; exit}')
  echo $((total - ${reload:-0}))
  rm -f "$out"
}

echo "| binary | protocol | instructions/request |"
echo "|---|---|---:|"
for bin in "$@"; do
  for kind in $KINDS; do
    a=$(count "$bin" "$kind" "$N1")
    b=$(count "$bin" "$kind" "$N2")
    echo "| $(basename "$bin") | $kind | $(((b - a) / (N2 - N1))) |"
  done
done
