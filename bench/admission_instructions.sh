#!/usr/bin/env bash
# Instructions per admission review (user space), counted by callgrind: repeatable whatever else
# the machine is doing, unlike reviews/s on a shared 2-core machine.
#
# Runs the admission bench's in-process part only (`Admission::review` on one task, no HTTP/TLS;
# `webhook/benches/admission.rs`, `in_process`) under callgrind, one dump per scenario, and
# divides the review's inclusive instructions by its calls (20 warm-up + 3,000 reviews each, all
# different).
#
# Usage: bash bench/admission_instructions.sh [BENCH_BIN...]   (default: builds the bench)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
if (($# == 0)); then
  bin=$(cd "$ROOT" && cargo bench -p tls-steal-webhook --bench admission --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*\))$/\1/p')
  set -- "$ROOT/$bin"
fi
# In the order `main` runs them.
NAMES=("spread, one ReplicaSet" "spread, a new ReplicaSet each" "spread, a new shape each"
  "one-namespace, one ReplicaSet" "one-namespace, a new shape each" "spread, skip")

echo "| binary | scenario | instructions/review |"
echo "|---|---|---:|"
for bin in "$@"; do
  d=$(mktemp -d /tmp/tls-steal-cg.XXXXXX)
  # No scenario name contains this: only the in-process part runs.
  ADMISSION_BENCH_ONLY=in-process-only valgrind --tool=callgrind --callgrind-out-file="$d/cg" \
    --dump-before='admission::in_process*' "$bin" --bench >/dev/null 2>&1
  i=0
  # cg.1 holds what ran before the first scenario; cg.2.. one scenario each; cg the last one.
  for f in $(ls "$d"/cg.* | sort -t. -k2 -n | tail -n +2) "$d/cg"; do
    tree=$(callgrind_annotate --inclusive=yes --tree=calling "$f" 2>/dev/null)
    ir=$(grep -E '^ *[0-9,]+ .*\*  \?\?\?:tls_steal_webhook::admission::Admission::review::\{\{closure\}\} ' <<<"$tree" |
      head -1 | awk '{gsub(",", "", $1); print $1}')
    calls=$(grep -E '>   \?\?\?:tls_steal_webhook::admission::Admission::review::\{\{closure\}\} \(' <<<"$tree" |
      head -1 | sed 's/.*(\([0-9,]*\)x).*/\1/; s/,//g')
    [[ -n $ir && -n $calls ]] || continue
    echo "| $(basename "$bin") | ${NAMES[$i]} | $((ir / calls)) |"
    i=$((i + 1))
  done
  rm -rf "$d"
done
