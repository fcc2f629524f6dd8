#!/usr/bin/env bash
# Data-path benchmark of `tls-steal-sidecar proxy` against nginx and HAProxy (issue 3, "Benchmark").
#
# On loopback only (127.0.0.1), one HTTPS app (nginx, 1 worker, a static 1 KiB file, h2 and
# http/1.1, keep-alive) measured side by side in one run:
#   direct     the app itself (the limit)
#   tls-steal  tls-steal-proxy (tokio, TOKIO_WORKER_THREADS=1) with a session whose filter is
#              `x-steal` (so every request is matched against a header filter), forwarding to the
#              app through its pooled TLS connections
#   nginx      nginx 1 worker: TLS termination, `map $http_x_steal` -> steal/app upstream,
#              proxy_pass https with an HTTP/1.1 keepalive pool (512) and verification
#   haproxy    HAProxy nbthread 1: TLS termination, `use_backend steal if { req.hdr(x-steal) -m found }`,
#              TLS to the app (verify required, alpn http/1.1) with `http-reuse always`
# The steal backend (127.0.0.1:9444) answers "stolen"; it is checked once and never hit under load.
#
# Usage (as root): bash bench/proxy.sh   (about 4 minutes of measuring, after the build and after
#                  waiting up to BENCH_MAX_WAIT for a quiet machine)
# Env: BENCH_DIR (scratch, default /tmp/tls-steal-bench), BENCH_MAX_WAIT (seconds to wait for the
#      1-minute load average to drop below BENCH_MAX_LOAD=1.5; default 600), BENCH_ROUNDS (2),
#      BENCH_SECS (8), BENCH_SKIP_BUILD=1, BENCH_SKIP_APT=1,
#      BENCH_SIDECAR / BENCH_STEAL_CLI (binaries; default the `dist` profile builds, as shipped).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
D=${BENCH_DIR:-/tmp/tls-steal-bench}
MAX_WAIT=${BENCH_MAX_WAIT:-600}
MAX_LOAD=${BENCH_MAX_LOAD:-1.5}
ROUNDS=${BENCH_ROUNDS:-2}
SECS=${BENCH_SECS:-8}
THREADS=1 # worker threads/processes of every proxy and of the app

APP_PORT=9443 STEAL_PORT=9444 APP_STATUS_PORT=9080
TS_PORT=15443 TS_ADMIN=15401 TS_SESSION=15400
NGINX_PORT=8443 HAPROXY_PORT=7443

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (installs packages, raises limits)"

# ---------------------------------------------------------------- packages and build
if [[ -z ${BENCH_SKIP_APT:-} ]]; then
  need=()
  command -v nginx >/dev/null || need+=(nginx)
  command -v haproxy >/dev/null || need+=(haproxy)
  command -v wrk >/dev/null || need+=(wrk)
  command -v h2load >/dev/null || need+=(nghttp2-client)
  command -v openssl >/dev/null || need+=(openssl)
  command -v curl >/dev/null || need+=(curl)
  if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

if [[ -z ${BENCH_SKIP_BUILD:-} ]]; then
  log "cargo build --profile dist -p tls-steal-sidecar -p kubectl-steal"
  (cd "$ROOT" && cargo build --profile dist -q -p tls-steal-sidecar -p kubectl-steal)
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SIDECAR=${BENCH_SIDECAR:-$TARGET_DIR/dist/tls-steal-sidecar}
STEAL_CLI=${BENCH_STEAL_CLI:-$TARGET_DIR/dist/kubectl-steal}
[[ -x $SIDECAR ]] || die "$SIDECAR missing"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
rm -rf "$D" && mkdir -p "$D"/www "$D"/tmp "$D"/bin
# pinned copies: a concurrent `cargo build` must not change what is measured
SIDECAR_BUILT=$(date -u -r "$SIDECAR" +'%H:%M UTC')
cp "$SIDECAR" "$D/bin/tls-steal-sidecar" && SIDECAR=$D/bin/tls-steal-sidecar
[[ -x $STEAL_CLI ]] && cp "$STEAL_CLI" "$D/bin/kubectl-steal" && STEAL_CLI=$D/bin/kubectl-steal
head -c 1024 /dev/zero | tr '\0' 'a' >"$D/www/1k"

# ---------------------------------------------------------------- certificates (ECDSA P-256)
log "certificates"
(
  cd "$D"
  openssl ecparam -name prime256v1 -genkey -noout -out ca.key
  openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=tls-steal bench CA" -out ca.pem \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
  openssl ecparam -name prime256v1 -genkey -noout -out leaf.key.ec
  openssl pkcs8 -topk8 -nocrypt -in leaf.key.ec -out leaf.key
  openssl req -new -key leaf.key -subj "/CN=localhost" -out leaf.csr
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' >leaf.ext
  openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -sha256 \
    -extfile leaf.ext -out leaf.pem
  cat leaf.pem ca.pem >chain.pem
  cat chain.pem leaf.key >haproxy.pem
) 2>"$D/openssl.log"

# ---------------------------------------------------------------- configurations
cat >"$D/app.conf" <<EOF
user root;
worker_processes $THREADS;
pid $D/app.pid;
error_log $D/app.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $D/tmp/app-body; proxy_temp_path $D/tmp/app-proxy;
  fastcgi_temp_path $D/tmp/app-fcgi; uwsgi_temp_path $D/tmp/app-uwsgi; scgi_temp_path $D/tmp/app-scgi;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  http2_max_concurrent_streams 1000;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate $D/chain.pem;
  ssl_certificate_key $D/leaf.key;
  server {
    listen 127.0.0.1:$APP_PORT ssl http2 backlog=4096;
    root $D/www;
    location / { }
  }
  server {
    listen 127.0.0.1:$STEAL_PORT ssl http2;
    access_log $D/steal-hits.log;
    location / { return 200 "stolen\n"; }
  }
  server {
    listen 127.0.0.1:$APP_STATUS_PORT;
    location / { stub_status; }
  }
}
EOF

cat >"$D/nginx.conf" <<EOF
user root;
worker_processes $THREADS;
pid $D/nginx.pid;
error_log $D/nginx.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $D/tmp/ng-body; proxy_temp_path $D/tmp/ng-proxy;
  fastcgi_temp_path $D/tmp/ng-fcgi; uwsgi_temp_path $D/tmp/ng-uwsgi; scgi_temp_path $D/tmp/ng-scgi;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  http2_max_concurrent_streams 1000;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate $D/chain.pem;
  ssl_certificate_key $D/leaf.key;
  upstream app   { server 127.0.0.1:$APP_PORT;   keepalive 512; keepalive_requests 10000000; keepalive_timeout 60s; }
  upstream steal { server 127.0.0.1:$STEAL_PORT; keepalive 16; }
  map \$http_x_steal \$backend { default app; "~." steal; }
  server {
    listen 127.0.0.1:$NGINX_PORT ssl http2 backlog=4096;
    location / {
      proxy_pass https://\$backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_ssl_server_name on;
      proxy_ssl_name localhost;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate $D/ca.pem;
      proxy_ssl_session_reuse on;
    }
  }
}
EOF

cat >"$D/haproxy.cfg" <<EOF
global
  nbthread $THREADS
  maxconn 8000
  ssl-server-verify required
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 120s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT ssl crt $D/haproxy.pem alpn h2,http/1.1
  acl steal req.hdr(x-steal) -m found
  use_backend be_steal if steal
  default_backend be_app
backend be_app
  server app 127.0.0.1:$APP_PORT ssl verify required ca-file $D/ca.pem sni str(localhost) alpn http/1.1
backend be_steal
  server steal 127.0.0.1:$STEAL_PORT ssl verify required ca-file $D/ca.pem sni str(localhost) alpn http/1.1
EOF

# The steal plan: one port (the app's), the app's own certificate, the app verified against the CA.
# Its hash is the first 8 bytes of SHA-256 over the compact JSON of `ports` (crds/src/plan.rs).
PORTS_JSON='[{"port":'$APP_PORT',"container":"app","config":"MirrordTlsStealConfig/bench/bench","agentAsServer":{"authentication":{"certPem":"'$D/chain.pem'","keyPem":"'$D/leaf.key'"},"alpnProtocols":["h2","http/1.1"]},"agentAsClient":{"verification":{"acceptAnyCert":false,"trustRoots":["'$D/ca.pem'"]}}}]'
HASH=$(printf '%s' "$PORTS_JSON" | sha256sum | cut -c1-16)
printf '{"version":1,"ports":%s,"configs":["MirrordTlsStealConfig/bench/bench"],"discarded":[],"rejected":[],"hash":"%s"}\n' \
  "$PORTS_JSON" "$HASH" >"$D/plan.json"

# ---------------------------------------------------------------- helpers
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f $D/app.pid ]] && kill "$(cat "$D/app.pid")" 2>/dev/null || true
  [[ -f $D/nginx.pid ]] && kill "$(cat "$D/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

# every pid of a process tree rooted at $1 (nginx master + workers)
tree() { echo "$1"; local c; for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do tree "$c"; done; }
# summed VmRSS (KiB) of the trees rooted at "$@"
rss_kb() {
  local p t=0 v
  for p in $(for r in "$@"; do tree "$r"; done); do
    v=$(awk '/^VmRSS:/ {print $2}' /proc/"$p"/status 2>/dev/null || true)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
# summed utime+stime (clock ticks) of the trees rooted at "$@"
cpu_ticks() {
  local p t=0 v
  for p in $(for r in "$@"; do tree "$r"; done); do
    v=$(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || true)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK)
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; die "port $1 never opened"; }

# ---------------------------------------------------------------- start everything
log "starting the app, tls-steal-proxy, nginx, haproxy"
nginx -c "$D/app.conf" -p "$D" -e "$D/app.err"
wait_port $APP_PORT
APP_PID=$(cat "$D/app.pid")

TOKIO_WORKER_THREADS=$THREADS RUST_LOG=warn "$SIDECAR" proxy --plan "$D/plan.json" \
  --listen 127.0.0.1:$TS_PORT --admin 127.0.0.1:$TS_ADMIN --session-api 127.0.0.1:$TS_SESSION \
  --orig-dst-override 127.0.0.1:$APP_PORT 2>"$D/tls-steal.log" &
TS_PID=$!; PIDS+=("$TS_PID")

nginx -c "$D/nginx.conf" -p "$D" -e "$D/nginx.err"
haproxy -f "$D/haproxy.cfg" -db 2>"$D/haproxy.log" &
HA_PID=$!; PIDS+=("$HA_PID")
wait_port $TS_PORT; wait_port $NGINX_PORT; wait_port $HAPROXY_PORT
NG_PID=$(cat "$D/nginx.pid")
sleep 2

declare -A PORT=([direct]=$APP_PORT [tls-steal]=$TS_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT)
declare -A PID=([direct]=$APP_PID [tls-steal]=$TS_PID [nginx]=$NG_PID [haproxy]=$HA_PID)
TARGETS=(direct tls-steal nginx haproxy)
declare -A R # results: R[target,metric]

for t in "${TARGETS[@]}"; do R[$t,rss_idle]=$(rss_kb "${PID[$t]}"); done
ts_threads=$(cat /proc/"$TS_PID"/task/*/comm | grep -cE '^tokio-(rt|runtime)-w' || true)
ts_all_threads=$(ls /proc/"$TS_PID"/task | wc -l)

# ---------------------------------------------------------------- a session for tls-steal
SESSION_NOTE="no session"
if [[ -x $STEAL_CLI ]]; then
  "$STEAL_CLI" --connect 127.0.0.1:$TS_SESSION -p $APP_PORT --header '^x-steal:' \
    --to 127.0.0.1:$STEAL_PORT --trust-root "$D/ca.pem" --server-name localhost --client bench \
    >"$D/session.log" 2>&1 &
  PIDS+=($!)
  sleep 2
fi

# ---------------------------------------------------------------- correctness checks
log "checks"
for t in "${TARGETS[@]}"; do
  u="https://127.0.0.1:${PORT[$t]}/1k"
  for v in --http1.1 --http2; do
    n=$(curl -sS --cacert "$D/ca.pem" $v -o /dev/null -w '%{http_code} %{size_download} %{http_version}' "$u")
    [[ $n == "200 1024 "* ]] || die "$t $v: got '$n'"
  done
  if [[ $t != direct ]]; then
    s=$(curl -sS --cacert "$D/ca.pem" -H 'x-steal: 1' "$u" || true)
    if [[ $s == stolen ]]; then R[$t,steal]=ok; else R[$t,steal]="FAILED ($s)"; fi
  fi
done
[[ ${R[tls-steal,steal]} == ok ]] && SESSION_NOTE="a session with filter header '^x-steal:' registered (kubectl-steal --connect); x-steal requests were answered by the steal backend"
log "steal routing: tls-steal=${R[tls-steal,steal]} nginx=${R[nginx,steal]} haproxy=${R[haproxy,steal]}"

# ---------------------------------------------------------------- wait for a quiet machine
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "uptime at start: $(uptime)"
waited=0
while awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v m="$MAX_LOAD" 'BEGIN{exit !(l > m)}'; do
  ((waited >= MAX_WAIT)) && { log "load still $(cut -d' ' -f1 /proc/loadavg) after ${waited}s: measuring anyway"; break; }
  log "1-minute load $(cut -d' ' -f1 /proc/loadavg) > $MAX_LOAD, waiting (${waited}s/${MAX_WAIT}s)"
  sleep 15; waited=$((waited + 15))
done
LOAD_MEASURE=$(cut -d' ' -f1-3 /proc/loadavg)
log "measuring; load $LOAD_MEASURE"

# connections the app has accepted so far (each call counts its own: differences subtract 1)
app_conns() { curl -s http://127.0.0.1:$APP_STATUS_PORT/ | awk 'NR==3 {print $1}'; }

# RSS sampler: max summed RSS of $1's tree every 0.5 s into $2 until killed
sample_rss() { local m=0 v; while :; do v=$(rss_kb "$1"); ((v > m)) && m=$v && echo "$m" >"$2"; sleep 0.5; done; }

# run_load TARGET KIND: KIND = h1 | h2 ; records req/s, requests and CPU ticks
run_load() {
  local t=$1 kind=$2 out="$D/$1.$2.$3.txt" u="https://127.0.0.1:${PORT[$1]}/1k"
  local c0 c1 n rps a0 a1
  sample_rss "${PID[$t]}" "$D/$t.rssmax.$kind.$3" & local sp=$!
  a0=$(app_conns); c0=$(cpu_ticks "${PID[$t]}")
  if [[ $kind == h1 ]]; then
    wrk -t2 -c50 -d"${SECS}"s "$u" >"$out" 2>&1
    n=$(awk '/requests in/ {print $1}' "$out"); rps=$(awk '/^Requests\/sec/ {print $2}' "$out")
    grep -qE 'Non-2xx|Socket errors' "$out" && R[$t,err]+="$kind: $(grep -E 'Non-2xx|Socket errors' "$out" | tr -s ' ' | tr '\n' ' ') "
  else
    h2load -t2 -c50 -m10 -D "$SECS" "$u" >"$out" 2>&1
    n=$(awk '/^requests:/ {print $8}' "$out"); rps=$(awk '/^finished in/ {print $4}' "$out")
    local f; f=$(awk '/^requests:/ {print $10+$12+$14}' "$out"); ((f == 0)) || R[$t,err]+="$kind: $f failed/errored/timeout "
  fi
  c1=$(cpu_ticks "${PID[$t]}"); a1=$(app_conns)
  kill "$sp"; wait "$sp" 2>/dev/null || true
  R[$t,$kind,rps,$3]=${rps%.*}
  R[$t,$kind,n]=$(( ${R[$t,$kind,n]:-0} + n ))
  R[$t,$kind,cpu]=$(( ${R[$t,$kind,cpu]:-0} + c1 - c0 ))
  R[$t,$kind,appconns]=$(( ${R[$t,$kind,appconns]:-0} + a1 - a0 - 1 ))
  log "$(printf '%-9s %s round %s: %8s req/s (%s requests, %s CPU ticks, %s new app connections)' "$t" "$kind" "$3" "$rps" "$n" "$((c1 - c0))" "$((a1 - a0 - 1))")"
}

# warm-up: pools, caches
for t in "${TARGETS[@]}"; do wrk -t2 -c50 -d1s "https://127.0.0.1:${PORT[$t]}/1k" >/dev/null 2>&1; h2load -t2 -c50 -m10 -D 1 "https://127.0.0.1:${PORT[$t]}/1k" >/dev/null 2>&1; done

for r in $(seq "$ROUNDS"); do
  for kind in h1 h2; do
    for t in "${TARGETS[@]}"; do run_load "$t" "$kind" "$r"; sleep 1; done
  done
done

# new TLS handshakes: every request on a new connection (wrk sends `Connection: close`, reconnects,
# and does not resume TLS sessions)
for t in "${TARGETS[@]}"; do
  out="$D/$t.hs.txt" c0=$(cpu_ticks "${PID[$t]}") a0=$(app_conns)
  wrk -t2 -c50 -d5s -H 'Connection: close' "https://127.0.0.1:${PORT[$t]}/1k" >"$out" 2>&1
  R[$t,hs]=$(awk '/^Requests\/sec/ {printf "%d", $2}' "$out")
  n=$(awk '/requests in/ {print $1}' "$out")
  R[$t,hs,cpu]=$(awk -v c="$(( $(cpu_ticks "${PID[$t]}") - c0 ))" -v n="$n" -v hz="$HZ" 'BEGIN{printf "%d", c/hz*1e6/n}')
  R[$t,hs,appconns]=$(( $(app_conns) - a0 - 1 ))
  grep -qE 'Non-2xx|Socket errors' "$out" && R[$t,err]+="hs: $(grep -E 'Non-2xx|Socket errors' "$out" | tr -s ' ' | tr '\n' ' ') "
  log "$(printf '%-9s new-connection: %s req/s, %s µs CPU each, %s new app connections' "$t" "${R[$t,hs]}" "${R[$t,hs,cpu]}" "${R[$t,hs,appconns]}")"
  sleep 1
done

# latency at a fixed 2,000 req/s: h2load --h1, 20 keep-alive connections x --rps 100, per-request log
for t in "${TARGETS[@]}"; do
  h2load --h1 -t2 -c20 --rps 100 -D "$SECS" --log-file "$D/$t.lat.log" "https://127.0.0.1:${PORT[$t]}/1k" >"$D/$t.lat.txt" 2>&1
  read -r p50 p99 latn < <(awk '$2 == 200 {print $3}' "$D/$t.lat.log" | sort -n |
    awk '{v[NR]=$1} END {printf "%.2f %.2f %d\n", v[int(NR*0.50)+1]/1000, v[int(NR*0.99)+1]/1000, NR}')
  R[$t,p50]=$p50 R[$t,p99]=$p99 R[$t,latn]=$latn
  R[$t,latrate]=$(awk '/^finished in/ {printf "%d", $4}' "$D/$t.lat.txt")
  log "$(printf '%-9s at 2000 req/s: p50 %s ms, p99 %s ms (%s requests, %s req/s achieved)' "$t" "${R[$t,p50]}" "${R[$t,p99]}" "${R[$t,latn]}" "${R[$t,latrate]}")"
  sleep 1
done

sleep 5
for t in "${TARGETS[@]}"; do
  R[$t,rss_after]=$(rss_kb "${PID[$t]}")
  R[$t,rss_load]=$(cat "$D/$t".rssmax.* 2>/dev/null | sort -n | tail -1)
done
STEAL_HITS=$(wc -l <"$D/steal-hits.log" 2>/dev/null || echo 0)
curl -s http://127.0.0.1:$TS_ADMIN/metrics >"$D/tls-steal.metrics" || true

# ---------------------------------------------------------------- report
best() { local m=0 r v; for r in $(seq "$ROUNDS"); do v=${R[$1,$2,rps,$r]:-0}; ((v > m)) && m=$v; done; echo "$m"; }
us_per_req() { awk -v c="${R[$1,$2,cpu]}" -v n="${R[$1,$2,n]}" -v hz="$HZ" 'BEGIN{printf "%.1f", c/hz*1e6/n}'; }
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "-" }'; }

H1D=$(best direct h1) H2D=$(best direct h2)
{
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(uname -r), $(date -u +'%Y-%m-%d %H:%M UTC')"
  echo "Load average at start: $LOAD_START; when measuring began: $LOAD_MEASURE (waited ${waited}s); at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "tls-steal-sidecar: dist-profile build of git $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && [[ -n $(git status --porcelain -- sidecar crds 2>/dev/null) ]] && echo ' + uncommitted changes in sidecar/ crds/'), binary built $SIDECAR_BUILT"
  echo "Versions: $(nginx -v 2>&1 | cut -d' ' -f3), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(h2load --version | head -1)"
  echo "Worker threads: app nginx $THREADS worker; nginx $THREADS worker; haproxy nbthread $THREADS; tls-steal TOKIO_WORKER_THREADS=$THREADS (threads at start: $ts_all_threads, of which $ts_threads tokio runtime threads = 1 worker + the blocking pool's)"
  echo "tls-steal: $SESSION_NOTE. Steal backend hits (all from the checks): $STEAL_HITS"
  echo "Throughput: best of $ROUNDS rounds of ${SECS}s; CPU/request over all rounds (proxy process only; for 'direct' the app's)."
  echo
  echo "| | direct (app) | tls-steal | nginx | haproxy |"
  echo "|---|---:|---:|---:|---:|"
  row() { local label=$1; shift; printf '| %s |' "$label"; for t in "${TARGETS[@]}"; do printf ' %s |' "$("$@" "$t")"; done; echo; }
  f_h1() { local v; v=$(best "$1" h1); echo "$v ($(ratio "$v" "$H1D")×)"; }
  f_h2() { local v; v=$(best "$1" h2); echo "$v ($(ratio "$v" "$H2D")×)"; }
  row "HTTP/1.1 keep-alive req/s (wrk -t2 -c50)" f_h1
  row "HTTP/2 req/s (h2load -t2 -c50 -m10)" f_h2
  f_cpu1() { us_per_req "$1" h1; }; row "CPU µs/request, HTTP/1.1" f_cpu1
  f_cpu2() { us_per_req "$1" h2; }; row "CPU µs/request, HTTP/2" f_cpu2
  f_hs() { echo "${R[$1,hs]} (${R[$1,hs,cpu]} µs CPU)"; }; row "new TLS connection per request, req/s (wrk Connection: close)" f_hs
  f_p() { echo "${R[$1,p50]} / ${R[$1,p99]}"; }; row "p50 / p99 ms at 2,000 req/s (h2load --h1 -c20 --rps 100)" f_p
  f_ri() { mib "${R[$1,rss_idle]}"; }; row "RSS idle, MiB" f_ri
  f_rl() { mib "${R[$1,rss_load]}"; }; row "RSS under load (max), MiB" f_rl
  f_ra() { mib "${R[$1,rss_after]}"; }; row "RSS after load (+5 s), MiB" f_ra
  f_ac() { echo "${R[$1,h1,appconns]} / ${R[$1,h2,appconns]} / ${R[$1,hs,appconns]}"; }; row "new app connections (h1 / h2 / handshake runs)" f_ac
  echo
  echo "Raw per-round req/s:"
  for t in "${TARGETS[@]}"; do
    printf '  %-9s h1:' "$t"; for r in $(seq "$ROUNDS"); do printf ' %s' "${R[$t,h1,rps,$r]}"; done
    printf '  h2:'; for r in $(seq "$ROUNDS"); do printf ' %s' "${R[$t,h2,rps,$r]}"; done
    printf '  errors: %s\n' "${R[$t,err]:-none}"
  done
  echo "Scratch directory (configs, raw outputs): $D"
} | tee "$D/report.md"
