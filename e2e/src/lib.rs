#![forbid(unsafe_code)]
//! End-to-end harness (real local control plane); see `e2e/README.md`.
//!
//! The suite itself is `e2e/scripts/run.sh` (root: builds Kubernetes once, starts a single-node
//! cluster, installs the chart, runs the checks). The Rust side holds the HTTPS test app
//! (`e2e-https-app`) and the chart test (`tests/chart.rs`).

/// The first line of every response of `e2e-https-app`, for `hostname`.
pub fn served_by_line(hostname: &str) -> String {
    format!("served-by: pod {hostname}")
}
