# Shared by the bench/proxy*.sh scripts and bench/idle.sh (sourced, not run): packages, the
# pinned binaries, certificates, and the configurations of the app and the three proxies, on
# loopback only.
#
# The caller sets D (scratch directory), THREADS (workers of each proxy), and may set MAXCONN
# (connection limit of every process) and the ports: APP_PORT STEAL_PORT APP_STATUS_PORT TS_PORT
# TS_ADMIN TS_SESSION NGINX_PORT HAPROXY_PORT (defaults below, those of bench/proxy.sh).

: "${MAXCONN:=8000}"
: "${APP_PORT:=9443}" "${STEAL_PORT:=9444}" "${APP_STATUS_PORT:=9080}"
: "${TS_PORT:=15443}" "${TS_ADMIN:=15401}" "${TS_SESSION:=15400}"
: "${NGINX_PORT:=8443}" "${HAPROXY_PORT:=7443}"
# h2load arguments that open the fixed-rate latency connections spread: one per thread every
# 11 ms (why: bench/proxy.sh, run_latency)
SPREAD=(-r2 --rate-period 11ms)

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# bench_packages [TOOL...]: nginx, haproxy, wrk, h2load, openssl, curl and each TOOL (a command
# named as its Debian package) from Debian (unless BENCH_SKIP_APT)
bench_packages() {
  [[ -n ${BENCH_SKIP_APT:-} ]] && return 0
  local need=() t
  for t in "$@"; do command -v "$t" >/dev/null || need+=("$t"); done
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
}

# bench_pin VAR PATH: copies a binary into $D/bin (a concurrent `cargo build` must not change
# what is measured) and points VAR at the copy
bench_pin() {
  [[ -x $2 ]] || die "$2 missing"
  mkdir -p "$D/bin"; cp "$2" "$D/bin/" && printf -v "$1" '%s' "$D/bin/$(basename "$2")"
}

# bench_certs: a CA and a leaf (ECDSA P-256, localhost + 127.0.0.1) in $D
bench_certs() {
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
}

# file descriptors a proxy asks for: 2 per connection and some, within the hard limit
fd_budget() {
  local want=$((MAXCONN * 2 + 1024)) hard; hard=$(ulimit -Hn)
  [[ $hard != unlimited ]] && ((want > hard)) && want=$hard
  echo "$want"
}

# nginx_head NAME WORKERS CONNECTIONS: the top of an nginx.conf up to the http block's TLS
# settings (keep-alive of 300 s, the bench certificate), shared by the app and the nginx proxy
nginx_head() {
  cat <<CONF
user root;
worker_processes $2;
worker_rlimit_nofile $(fd_budget);
pid $D/$1.pid;
error_log $D/$1.err warn;
events { worker_connections $3; }
http {
  access_log off;
  client_body_temp_path $D/tmp/$1-body; proxy_temp_path $D/tmp/$1-proxy;
  fastcgi_temp_path $D/tmp/$1-fcgi; uwsgi_temp_path $D/tmp/$1-uwsgi; scgi_temp_path $D/tmp/$1-scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  http2_max_concurrent_streams 1000;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate $D/chain.pem;
  ssl_certificate_key $D/leaf.key;
CONF
}

# bench_app_conf: the app (nginx, 1 worker: a static 1 KiB file, h2 and http/1.1, keep-alive),
# the steal backend (answers "stolen") and the app's stub_status (connection counts)
bench_app_conf() {
  mkdir -p "$D/www" "$D/tmp"
  head -c 1024 /dev/zero | tr '\0' 'a' >"$D/www/1k"
  cat >"$D/app.conf" <<CONF
$(nginx_head app 1 $((MAXCONN + 1024)))
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
CONF
}

# bench_proxy_confs: nginx (TLS termination, `map $http_x_steal` -> steal/app upstream,
# proxy_pass https with an HTTP/1.1 keepalive pool of 512 and verification) and HAProxy
# (`use_backend steal if { req.hdr(x-steal) -m found }`, verified TLS to the app, alpn
# http/1.1, `http-reuse always`), each with $THREADS workers; the tls-steal plan (one port, the
# app's own certificate, the app verified against the CA)
bench_proxy_confs() {
  cat >"$D/nginx.conf" <<CONF
$(nginx_head nginx "$THREADS" $((MAXCONN * 2 + 1024)))
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
CONF

  cat >"$D/haproxy.cfg" <<CONF
global
  nbthread $THREADS
  maxconn $MAXCONN
  ssl-server-verify required
defaults
  mode http
  maxconn $MAXCONN
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
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
CONF

  bench_plan "$D" "$D/plan.json"
}

# bench_plan PEM_DIR OUT: the tls-steal plan, with the PEM files of bench_certs under PEM_DIR
bench_plan() {
  # Its hash is the first 8 bytes of SHA-256 over the compact JSON of `ports` (crds/src/plan.rs).
  local ports hash
  ports='[{"port":'$APP_PORT',"container":"app","config":"MirrordTlsStealConfig/bench/bench","agentAsServer":{"authentication":{"certPem":"'$1/chain.pem'","keyPem":"'$1/leaf.key'"},"alpnProtocols":["h2","http/1.1"]},"agentAsClient":{"verification":{"acceptAnyCert":false,"trustRoots":["'$1/ca.pem'"]}}}]'
  hash=$(printf '%s' "$ports" | sha256sum | cut -c1-16)
  printf '{"version":1,"ports":%s,"configs":["MirrordTlsStealConfig/bench/bench"],"discarded":[],"rejected":[],"hash":"%s"}\n' \
    "$ports" "$hash" >"$2"
}

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
# connections the app holds open now, this query's own excluded (stub_status "Active connections")
app_active() { curl -s "http://127.0.0.1:$APP_STATUS_PORT/" | awk 'NR==1 {print $3 - 1}'; }
# connections the app has accepted so far (each call counts its own: differences subtract 1)
app_conns() { curl -s "http://127.0.0.1:$APP_STATUS_PORT/" | awk 'NR==3 {print $1}'; }
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }

# start_app, start_tls_steal ARGS... (the plan: PLAN, else $D/plan.json), start_nginx,
# start_haproxy: each sets its *_PID.
# Each process runs in a session of its own, so the scheduler's autogroups put the app, each
# proxy and the load generator (this script's session) in separate groups, as a pod's
# containers and its clients are in separate cgroups. nginx does this itself when it
# daemonizes; tls-steal and HAProxy get `setsid` (before 2026-12-07 they shared the load
# generator's group, and nginx alone had one of its own).
start_app() { nginx -c "$D/app.conf" -p "$D" -e "$D/app.err"; wait_port "$APP_PORT"; APP_PID=$(cat "$D/app.pid"); }
start_tls_steal() {
  TLS_STEAL_SESSION_AUTHORIZATION=disabled TOKIO_WORKER_THREADS=$THREADS RUST_LOG=warn setsid "$SIDECAR" proxy --plan "${PLAN:-$D/plan.json}" \
    --listen 127.0.0.1:$TS_PORT --admin 127.0.0.1:$TS_ADMIN --session-api 127.0.0.1:$TS_SESSION \
    --orig-dst-override 127.0.0.1:$APP_PORT "$@" 2>>"$D/tls-steal.log" &
  TS_PID=$!; wait_port "$TS_PORT"; own_session "$TS_PID"
}
start_nginx() { nginx -c "$D/nginx.conf" -p "$D" -e "$D/nginx.err"; wait_port "$NGINX_PORT"; NG_PID=$(cat "$D/nginx.pid"); }
start_haproxy() { setsid haproxy -f "$D/haproxy.cfg" -db 2>>"$D/haproxy.log" & HA_PID=$!; wait_port "$HAPROXY_PORT"; own_session "$HA_PID"; }
# own_session PID: PID leads its session (setsid ran in place: with job control it would have
# forked, and PID would be gone)
own_session() { [[ $(awk '{print $6}' /proc/"$1"/stat 2>/dev/null) == "$1" ]] || die "pid $1 is not a session leader"; }
# start_session CLI SESSION_PORT LOG: a kubectl-steal session on the tls-steal proxy whose session
# API is SESSION_PORT, stealing requests with an `x-steal` header to the steal backend (the
# other requests are still matched against its filter); sets SESSION_PID
start_session() {
  "$1" --connect 127.0.0.1:"$2" -p "$APP_PORT" --header '^x-steal:' --to 127.0.0.1:"$STEAL_PORT" \
    --trust-root "$D/ca.pem" --server-name localhost --client bench >"$3" 2>&1 &
  SESSION_PID=$!
}
# lat_pcts LOG: "p50 p99 count" in µs of the answered requests of an h2load --log-file
lat_pcts() {
  awk '$2 == 200 {print $3}' "$1" | sort -n |
    awk '{v[NR]=$1} END {printf "%d %d %d\n", v[int(NR*0.50)+1], v[int(NR*0.99)+1], NR}'
}
# stop_all: tls-steal, HAProxy, the nginx proxy and the app, each waited for (exit traps)
stop_all() {
  stop_pid "${TS_PID:-}"; stop_pid "${HA_PID:-}"
  stop_pid "$(cat "$D/nginx.pid" 2>/dev/null)"; stop_pid "$(cat "$D/app.pid" 2>/dev/null)"
}
# stop_pid PID: SIGTERM, then wait until it is gone (nginx: its master)
stop_pid() { kill "$1" 2>/dev/null || true; for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -9 "$1" 2>/dev/null || true; }
