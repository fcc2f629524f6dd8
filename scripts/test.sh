#!/usr/bin/env bash
# Runs every test of tls-steal: formatting, lints, unit and integration tests (real TLS on
# loopback, real iptables in network namespaces created and removed by the tests), then the e2e
# suite on a real local Kubernetes (e2e/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# A full run builds from clean (CI): incremental caches would only double the disk it needs.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
bash scripts/setup.sh
bash scripts/disk.sh check
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo nextest (unit and integration)"
cargo nextest run --workspace --locked --no-fail-fast
echo "== e2e: a real single-node Kubernetes (built once from Debian's sources, cached), the chart, real pods"
E2E_PROFILE=debug bash e2e/scripts/run.sh
bash scripts/disk.sh report
