#!/usr/bin/env bash
# Data-path benchmark of `tls-steal-sidecar proxy` against nginx and HAProxy, at 1 and 2 workers.
#
# On loopback only (127.0.0.1), one HTTPS app (nginx, 1 worker, a static 1 KiB file, h2 and
# http/1.1, keep-alive) measured side by side in one run:
#   direct     the app itself (the limit)
#   tls-steal  tls-steal-proxy with W workers and a session whose filter is `x-steal` (so every
#              request is matched against a header filter), forwarding to the app through its
#              pooled TLS connections
#   nginx      nginx W workers: TLS termination, `map $http_x_steal` -> steal/app upstream,
#              proxy_pass https with an HTTP/1.1 keepalive pool (512) and verification
#   haproxy    HAProxy nbthread W: TLS termination, `use_backend steal if { req.hdr(x-steal) -m found }`,
#              TLS to the app (verify required, alpn http/1.1) with `http-reuse always`
# The steal backend answers "stolen"; it is checked once and never hit under load. The proxies
# run with W = each of BENCH_WORKERS in turn; the app and the load generators stay the same.
#
# Usage (as root): bash bench/proxy.sh   (about 7 minutes of measuring per worker count, after
#                  the build and after waiting up to BENCH_MAX_WAIT for a quiet machine)
# Env: BENCH_DIR (scratch, default /tmp/tls-steal-bench), BENCH_MAX_WAIT (seconds to wait for the
#      1-minute load average to drop below BENCH_MAX_LOAD=1.5; default 600), BENCH_ROUNDS (3),
#      BENCH_SECS (8), BENCH_LAT_ROUNDS (5) x BENCH_LAT_SECS (6) for latency, BENCH_WORKERS ("1 2"), BENCH_SKIP_BUILD=1, BENCH_SKIP_APT=1,
#      BENCH_SIDECAR / BENCH_STEAL_CLI (binaries; default the `dist` profile builds, as shipped).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/lib/proxies.sh"
D=${BENCH_DIR:-/tmp/tls-steal-bench}
MAX_WAIT=${BENCH_MAX_WAIT:-600}
MAX_LOAD=${BENCH_MAX_LOAD:-1.5}
ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECS:-8}
LAT_ROUNDS=${BENCH_LAT_ROUNDS:-5}
LAT_SECS=${BENCH_LAT_SECS:-6}
WORKERS=(${BENCH_WORKERS:-1 2})

[[ $(id -u) == 0 ]] || die "run as root (installs packages, raises limits)"
bench_packages
if [[ -z ${BENCH_SKIP_BUILD:-} ]]; then
  log "cargo build --profile dist -p tls-steal-sidecar -p kubectl-steal"
  (cd "$ROOT" && cargo build --profile dist -q -p tls-steal-sidecar -p kubectl-steal)
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SIDECAR=${BENCH_SIDECAR:-$TARGET_DIR/dist/tls-steal-sidecar}
STEAL_CLI=${BENCH_STEAL_CLI:-$TARGET_DIR/dist/kubectl-steal}
[[ -x $SIDECAR ]] || die "$SIDECAR missing"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
rm -rf "$D" && mkdir -p "$D"
SIDECAR_BUILT=$(date -u -r "$SIDECAR" +'%H:%M UTC')
bench_pin SIDECAR "$SIDECAR"
[[ -x $STEAL_CLI ]] && bench_pin STEAL_CLI "$STEAL_CLI"
bench_certs
THREADS=1 bench_app_conf

PIDS=()
cleanup() {
  for p in "${PIDS[@]}" ${TS_PID:-} ${HA_PID:-} ${SESSION_PID:-}; do kill "$p" 2>/dev/null || true; done
  [[ -f $D/app.pid ]] && kill "$(cat "$D/app.pid")" 2>/dev/null || true
  [[ -f $D/nginx.pid ]] && kill "$(cat "$D/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

start_app
TARGETS=(direct tls-steal nginx haproxy)
declare -A R # results: R[target/workers,metric]; the app's row is "direct/1"
COLS=(direct/1) # report columns, in order
for w in "${WORKERS[@]}"; do for t in tls-steal nginx haproxy; do COLS+=("$t/$w"); done; done

# RSS sampler: max summed RSS of $1's tree every 0.5 s into $2 until killed
sample_rss() { local m=0 v; while :; do v=$(rss_kb "$1"); ((v > m)) && m=$v && echo "$m" >"$2"; sleep 0.5; done; }

wait_quiet() {
  local waited=0
  while awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v m="$MAX_LOAD" 'BEGIN{exit !(l > m)}'; do
    ((waited >= MAX_WAIT)) && { log "load still $(cut -d' ' -f1 /proc/loadavg) after ${waited}s: measuring anyway"; break; }
    log "1-minute load $(cut -d' ' -f1 /proc/loadavg) > $MAX_LOAD, waiting (${waited}s/${MAX_WAIT}s)"
    sleep 15; waited=$((waited + 15))
  done
  WAITED=$((${WAITED:-0} + waited))
}

# run_load COL KIND ROUND: KIND = h1 | h2 ; records req/s, requests and CPU ticks
run_load() {
  local c=$1 kind=$2 out="$D/${1/\//-}.$2.$3.txt" u="https://127.0.0.1:${PORT[$1]}/1k"
  local c0 c1 n rps a0 a1
  sample_rss "${PID[$c]}" "$D/${c/\//-}.rssmax.$kind.$3" & local sp=$!
  a0=$(app_conns); c0=$(cpu_ticks "${PID[$c]}")
  if [[ $kind == h1 ]]; then
    wrk -t2 -c50 -d"${SECS}"s "$u" >"$out" 2>&1
    n=$(awk '/requests in/ {print $1}' "$out"); rps=$(awk '/^Requests\/sec/ {print $2}' "$out")
    grep -qE 'Non-2xx|Socket errors' "$out" && R[$c,err]+="$kind: $(grep -E 'Non-2xx|Socket errors' "$out" | tr -s ' ' | tr '\n' ' ') "
  else
    h2load -t2 -c50 -m10 -D "$SECS" "$u" >"$out" 2>&1
    n=$(awk '/^requests:/ {print $8}' "$out"); rps=$(awk '/^finished in/ {print $4}' "$out")
    local f; f=$(awk '/^requests:/ {print $10+$12+$14}' "$out"); ((f == 0)) || R[$c,err]+="$kind: $f failed/errored/timeout "
  fi
  c1=$(cpu_ticks "${PID[$c]}"); a1=$(app_conns)
  kill "$sp"; wait "$sp" 2>/dev/null || true
  R[$c,$kind,rps,$3]=${rps%.*}
  R[$c,$kind,n]=$(( ${R[$c,$kind,n]:-0} + n ))
  R[$c,$kind,cpu]=$(( ${R[$c,$kind,cpu]:-0} + c1 - c0 ))
  R[$c,$kind,appconns]=$(( ${R[$c,$kind,appconns]:-0} + a1 - a0 - 1 ))
  log "$(printf '%-11s %s round %s: %8s req/s (%s requests, %s CPU ticks, %s new app connections)' "$c" "$kind" "$3" "$rps" "$n" "$((c1 - c0))" "$((a1 - a0 - 1))")"
}

# new TLS handshakes: every request on a new connection (wrk sends `Connection: close`,
# reconnects, and does not resume TLS sessions)
run_handshakes() {
  local c=$1 out="$D/${1/\//-}.hs.txt" c0 a0 n
  c0=$(cpu_ticks "${PID[$c]}") a0=$(app_conns)
  wrk -t2 -c50 -d5s -H 'Connection: close' "https://127.0.0.1:${PORT[$c]}/1k" >"$out" 2>&1
  R[$c,hs]=$(awk '/^Requests\/sec/ {printf "%d", $2}' "$out")
  n=$(awk '/requests in/ {print $1}' "$out")
  R[$c,hs,cpu]=$(awk -v c="$(( $(cpu_ticks "${PID[$c]}") - c0 ))" -v n="$n" -v hz="$HZ" 'BEGIN{printf "%d", c/hz*1e6/n}')
  R[$c,hs,appconns]=$(( $(app_conns) - a0 - 1 ))
  grep -qE 'Non-2xx|Socket errors' "$out" && R[$c,err]+="hs: $(grep -E 'Non-2xx|Socket errors' "$out" | tr -s ' ' | tr '\n' ' ') "
  log "$(printf '%-11s new-connection: %s req/s, %s µs CPU each, %s new app connections' "$c" "${R[$c,hs]}" "${R[$c,hs,cpu]}" "${R[$c,hs,appconns]}")"
}

# latency at a fixed 2,000 req/s: h2load --h1, 20 keep-alive connections x --rps 100, per-request
# log; one run of LAT_SECS for column $1 in round $2 (p50 and p99 in µs into R[col,p50|p99,round]).
# The connections open one per h2load thread every 11 ms (-r2 --rate-period 11ms): h2load starts
# a connection's 100/s timer when its handshake completes, so connections opened together get
# timers in step by chance (how the proxy's and h2load's handshakes interleaved), and then
# several requests arrive at once for the whole run: a run's latency followed that chance more
# than the proxy (bench/proxy_timeline.sh; BENCHMARKS.md, issue 17). Spread, every proxy gets
# the same arrivals: the k-th connection of a thread sends k ms into each 10 ms period.
run_latency() {
  local c=$1 f="$D/${1/\//-}.lat.$2" p50 p99 latn t0
  # h2load appends to an existing log: the app's column runs again beside each worker count
  rm -f "$f.log"
  t0=$(cpu_ticks "${PID[$c]}")
  h2load --h1 -t2 -c20 --rps 100 "${SPREAD[@]}" -n $((2000 * LAT_SECS)) --log-file "$f.log" "https://127.0.0.1:${PORT[$c]}/1k" >"$f.txt" 2>&1
  read -r p50 p99 latn < <(lat_pcts "$f.log")
  R[$c,p50,$2]=$p50 R[$c,p99,$2]=$p99
  # CPU at ordinary load: is a proxy's added latency work, or the order it does the work in?
  R[$c,lat,cpu]=$(( ${R[$c,lat,cpu]:-0} + $(cpu_ticks "${PID[$c]}") - t0 ))
  R[$c,lat,n]=$(( ${R[$c,lat,n]:-0} + latn ))
  log "$(printf '%-11s at 2000 req/s, round %s: p50 %s µs, p99 %s µs (%s requests)' "$c" "$2" "$p50" "$p99" "$latn")"
}
# median of the numbers in "$@"
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
ms() { awk -v v="$1" 'BEGIN{printf "%.2f", v/1000}'; }
sms() { awk -v v="$1" 'BEGIN{printf "%+.2f", v/1000}'; }
# LAT_ROUNDS rounds, each column once per round in an order rotated every round (the machine's
# latency drifts within minutes and the second run of a round tends to be slower: a fixed order
# would charge that to one column); added latency = the median over rounds of (the column's
# figure - the app's figure in the same round)
measure_latency() {
  local cols=("$@") n=${#@} r i c d50 d99 a50 a99
  for r in $(seq "$LAT_ROUNDS"); do
    for i in $(seq 0 $((n - 1))); do run_latency "${cols[$(((i + r) % n))]}" "$r"; sleep 1; done
  done
  for c in "${cols[@]}"; do
    a50=() a99=() d50=() d99=()
    for r in $(seq "$LAT_ROUNDS"); do
      d50+=("${R[$c,p50,$r]}") d99+=("${R[$c,p99,$r]}")
      a50+=($((${R[$c,p50,$r]} - ${R[direct/1,p50,$r]}))) a99+=($((${R[$c,p99,$r]} - ${R[direct/1,p99,$r]})))
    done
    R[$c,p50]=$(ms "$(median "${d50[@]}")") R[$c,p99]=$(ms "$(median "${d99[@]}")")
    R[$c,latraw]="${d50[*]}"
    [[ $c == direct/* ]] || R[$c,added]="$(sms "$(median "${a50[@]}")") / $(sms "$(median "${a99[@]}")")"
  done
}

declare -A PORT=([direct/1]=$APP_PORT) PID=([direct/1]=$APP_PID)
R[direct/1,rss_idle]=$(rss_kb "$APP_PID")
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "uptime at start: $(uptime)"
for w in "${WORKERS[@]}"; do
  # ------------------------------------------------------------ the proxies with w workers
  # session API and admin ports apart per round: the last round's may still be in TIME_WAIT
  TS_SESSION=$((15400 + 10 * w)) TS_ADMIN=$((15401 + 10 * w))
  THREADS=$w bench_proxy_confs
  log "starting tls-steal-proxy, nginx, haproxy with $w worker(s)"
  THREADS=$w start_tls_steal; THREADS=$w start_nginx; THREADS=$w start_haproxy
  sleep 2
  PORT[tls-steal/$w]=$TS_PORT PORT[nginx/$w]=$NGINX_PORT PORT[haproxy/$w]=$HAPROXY_PORT
  PID[tls-steal/$w]=$TS_PID PID[nginx/$w]=$NG_PID PID[haproxy/$w]=$HA_PID
  cols=(direct/1 tls-steal/$w nginx/$w haproxy/$w)
  for c in "${cols[@]:1}"; do R[$c,rss_idle]=$(rss_kb "${PID[$c]}"); done
  R[tls-steal/$w,threads]="$(cat /proc/"$TS_PID"/task/*/comm | grep -cE '^tokio-(rt|runtime)-w|^tls-steal-w' || true) of $(ls /proc/"$TS_PID"/task | wc -l)"

  # a session for tls-steal
  SESSION_NOTE="no session"
  if [[ -x $STEAL_CLI ]]; then
    start_session "$STEAL_CLI" "$TS_SESSION" "$D/session.$w.log"
    sleep 2
  fi

  # correctness checks
  log "checks ($w worker(s))"
  for c in "${cols[@]}"; do
    u="https://127.0.0.1:${PORT[$c]}/1k"
    for v in --http1.1 --http2; do
      n=$(curl -sS --cacert "$D/ca.pem" $v -o /dev/null -w '%{http_code} %{size_download} %{http_version}' "$u")
      [[ $n == "200 1024 "* ]] || die "$c $v: got '$n'"
    done
    if [[ $c != direct/* ]]; then
      s=$(curl -sS --cacert "$D/ca.pem" -H 'x-steal: 1' "$u" || true)
      if [[ $s == stolen ]]; then R[$c,steal]=ok; else R[$c,steal]="FAILED ($s)"; fi
    fi
  done
  [[ ${R[tls-steal/$w,steal]} == ok ]] && SESSION_NOTE="a session with filter header '^x-steal:' registered (kubectl-steal --connect); x-steal requests were answered by the steal backend"
  log "steal routing: tls-steal=${R[tls-steal/$w,steal]} nginx=${R[nginx/$w,steal]} haproxy=${R[haproxy/$w,steal]}"

  wait_quiet
  LOAD_MEASURE=$(cut -d' ' -f1-3 /proc/loadavg)
  log "measuring $w worker(s); load $LOAD_MEASURE"
  # the app is measured again with every worker count: its figures vary with the machine's minute
  for c in "${cols[@]}"; do wrk -t2 -c50 -d1s "https://127.0.0.1:${PORT[$c]}/1k" >/dev/null 2>&1; h2load -t2 -c50 -m10 -D 1 "https://127.0.0.1:${PORT[$c]}/1k" >/dev/null 2>&1; done
  for r in $(seq "$ROUNDS"); do
    for kind in h1 h2; do
      for c in "${cols[@]}"; do run_load "$c" "$kind" "$w.$r"; sleep 1; done
    done
  done
  for c in "${cols[@]}"; do run_handshakes "$c"; sleep 1; done
  measure_latency "${cols[@]}"
  R[direct/1,p50/$w]=${R[direct/1,p50]} R[direct/1,p99/$w]=${R[direct/1,p99]}
  R[direct/1,latraw/$w]=${R[direct/1,latraw]}

  sleep 5
  for c in "${cols[@]:1}"; do
    R[$c,rss_after]=$(rss_kb "${PID[$c]}")
    R[$c,rss_load]=$(cat "$D/${c/\//-}".rssmax.* 2>/dev/null | sort -n | tail -1)
  done
  curl -s http://127.0.0.1:$TS_ADMIN/metrics >"$D/tls-steal.$w.metrics" || true
  kill "${SESSION_PID:-}" 2>/dev/null || true
  stop_pid "$TS_PID"; stop_pid "$NG_PID"; stop_pid "$HA_PID"; SESSION_PID= TS_PID= HA_PID=
done
R[direct/1,rss_after]=$(rss_kb "$APP_PID")
R[direct/1,rss_load]=$(cat "$D"/direct-1.rssmax.* 2>/dev/null | sort -n | tail -1)
R[direct/1,threads]=1
STEAL_HITS=$(wc -l <"$D/steal-hits.log" 2>/dev/null || echo 0)

# ---------------------------------------------------------------- report
# req/s of column $1, load $2: the median of its rounds (the issue's targets are read from medians)
rps() { local k v=(); for k in "${!R[@]}"; do [[ $k == "$1,$2,rps,"* ]] && v+=("${R[$k]}"); done; median "${v[@]}" | cut -d. -f1; }
us_per_req() { awk -v c="${R[$1,$2,cpu]}" -v n="${R[$1,$2,n]}" -v hz="$HZ" 'BEGIN{printf "%.1f", c/hz*1e6/n}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "-" }'; }

H1D=$(rps direct/1 h1) H2D=$(rps direct/1 h2)
{
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(uname -r), $(date -u +'%Y-%m-%d %H:%M UTC')"
  echo "Load average at start: $LOAD_START; waited ${WAITED:-0}s in all for a quiet machine; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "tls-steal-sidecar: dist-profile build of git $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && [[ -n $(git status --porcelain -- sidecar crds 2>/dev/null) ]] && echo ' + uncommitted changes in sidecar/ crds/'), binary built $SIDECAR_BUILT"
  echo "Versions: $(nginx -v 2>&1 | cut -d' ' -f3), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(h2load --version | head -1)"
  echo "Columns: proxy/workers (nginx worker_processes, haproxy nbthread, tls-steal workers); the app: nginx, 1 worker, measured again beside each worker count (the median of all its rounds shown)."
  echo "tls-steal: $SESSION_NOTE. Steal backend hits (all from the checks): $STEAL_HITS"
  echo "Throughput: median of $ROUNDS rounds of ${SECS}s; CPU/request over all rounds (proxy process only; for 'direct' the app's)."
  echo "Latency: $LAT_ROUNDS rounds of ${LAT_SECS}s, columns in a rotated order each round; p50 / p99 = medians over the rounds; added = median over the rounds of (proxy - app of the same round)."
  echo
  printf '| |'; for c in "${COLS[@]}"; do printf ' %s |' "$c"; done; echo
  printf '|---|'; for c in "${COLS[@]}"; do printf -- '---:|'; done; echo
  row() { local label=$1; shift; printf '| %s |' "$label"; for c in "${COLS[@]}"; do printf ' %s |' "$("$@" "$c")"; done; echo; }
  f_h1() { local v; v=$(rps "$1" h1); echo "$v ($(ratio "$v" "$H1D")×)"; }
  f_h2() { local v; v=$(rps "$1" h2); echo "$v ($(ratio "$v" "$H2D")×)"; }
  row "HTTP/1.1 keep-alive req/s (wrk -t2 -c50)" f_h1
  row "HTTP/2 req/s (h2load -t2 -c50 -m10)" f_h2
  f_vs() { # tls-steal only: against HAProxy at equal threads, and against its own first worker count
    [[ $1 == tls-steal/* ]] || { echo –; return; }
    local w=${1#*/} k out=""
    for k in h1 h2; do out+="$k $(ratio "$(rps "$1" $k)" "$(rps "haproxy/$w" $k)")× HAProxy, $(ratio "$(rps "$1" $k)" "$(rps "tls-steal/${WORKERS[0]}" $k)")× /${WORKERS[0]}; "; done
    echo "${out%; }"
  }
  row "tls-steal against HAProxy/equal threads and its own ${WORKERS[0]} worker (medians)" f_vs
  f_cpu1() { us_per_req "$1" h1; }; row "CPU µs/request, HTTP/1.1" f_cpu1
  f_cpu2() { us_per_req "$1" h2; }; row "CPU µs/request, HTTP/2" f_cpu2
  f_hs() { echo "${R[$1,hs]} (${R[$1,hs,cpu]} µs CPU)"; }; row "new TLS connection per request, req/s (wrk Connection: close)" f_hs
  f_p() { if [[ $1 == direct/1 ]]; then local w; for w in "${WORKERS[@]}"; do printf '%s / %s (beside %s) ' "${R[direct/1,p50/$w]}" "${R[direct/1,p99/$w]}" "$w"; done; else echo "${R[$1,p50]} / ${R[$1,p99]}"; fi; }
  row "p50 / p99 ms at 2,000 req/s (h2load --h1 -c20 --rps 100, connections spread)" f_p
  f_add() { echo "${R[$1,added]:-–}"; }; row "latency added over direct, p50 / p99 ms" f_add
  f_cpul() { us_per_req "$1" lat; }; row "CPU µs/request at 2,000 req/s (all latency rounds)" f_cpul
  f_ri() { mib "${R[$1,rss_idle]}"; }; row "RSS idle, MiB" f_ri
  f_rl() { mib "${R[$1,rss_load]:-0}"; }; row "RSS under load (max), MiB" f_rl
  f_ra() { mib "${R[$1,rss_after]}"; }; row "RSS after load (+5 s), MiB" f_ra
  f_ac() { echo "${R[$1,h1,appconns]} / ${R[$1,h2,appconns]} / ${R[$1,hs,appconns]}"; }; row "new app connections (h1 / h2 / handshake runs)" f_ac
  f_th() { echo "${R[$1,threads]:-–}"; }; row "tls-steal runtime threads, workers and blocking pool (of all threads)" f_th
  echo
  echo "Raw per-round req/s:"
  for c in "${COLS[@]}"; do
    printf '  %-11s h1:' "$c"; for k in $(printf '%s\n' "${!R[@]}" | grep "^$c,h1,rps," | sort); do printf ' %s' "${R[$k]}"; done
    printf '  h2:'; for k in $(printf '%s\n' "${!R[@]}" | grep "^$c,h2,rps," | sort); do printf ' %s' "${R[$k]}"; done
    printf '  errors: %s\n' "${R[$c,err]:-none}"
  done
  echo "Raw per-round p50 µs at 2,000 req/s:"
  for c in "${COLS[@]}"; do
    if [[ $c == direct/1 ]]; then for w in "${WORKERS[@]}"; do printf '  %-11s (beside %s worker(s)): %s\n' "$c" "$w" "${R[direct/1,latraw/$w]}"; done
    else printf '  %-11s %s\n' "$c" "${R[$c,latraw]}"; fi
  done
  echo "Scratch directory (configs, raw outputs): $D"
} | tee "$D/report.md"
