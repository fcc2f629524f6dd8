#!/usr/bin/env bash
# Runs every test of tls-steal: formatting, lints, unit and integration tests (real TLS on
# loopback, real iptables in network namespaces created and removed by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo nextest"
cargo nextest run --workspace --locked --no-fail-fast
