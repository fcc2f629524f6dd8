#!/usr/bin/env bash
# Disk guard for scripts/test.sh. A clean full run (clippy, test build, e2e images and cluster)
# needs NEED_GB free where target/ lives; with less, the build would die midway with "No space
# left on device", so this says so first, naming the directory and what it found.
#   disk.sh check   fail early when less than NEED_GB is free
#   disk.sh report  print what the run left in target/ and what is still free
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
NEED_GB=${TLS_STEAL_NEED_GB:-12}
mkdir -p "$TARGET"
free_gb=$(df -P -BG "$TARGET" | awk 'NR==2 {gsub("G","",$4); print $4}')
case ${1:-check} in
  check)
    echo "disk: ${free_gb} GB free for $TARGET (a clean run needs about ${NEED_GB} GB)"
    if [ "$free_gb" -lt "$NEED_GB" ]; then
      echo "disk: not enough space for $TARGET: ${free_gb} GB free, ${NEED_GB} GB needed;" \
        "remove stale build output (cargo clean, or target/*/incremental) and run again" >&2
      exit 1
    fi ;;
  report)
    echo "disk: target/ holds $(du -sh "$TARGET" | cut -f1); ${free_gb} GB still free" ;;
  *) echo "usage: disk.sh check|report" >&2; exit 2 ;;
esac
