//! How many workers (lanes: one thread and single-threaded runtime each, see `proxy::lanes`) the
//! proxy runs: the container's CPU limit when it has one, else 2,
//! never the node's CPU count (a pod without a limit on a 64-CPU node would otherwise run 64
//! workers, each with its own scheduler state, for a sidecar that rarely needs two).
//!
//! Order: `--workers N` (chart `sidecar.workers`, pod annotation `tls-steal.io/proxy-workers`,
//! set by the webhook) → `TOKIO_WORKER_THREADS` (benchmarks) → the CPU limit read from the
//! container's cgroup (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded up
//! → [`DEFAULT_WORKERS`].

use std::fmt;
use std::num::NonZeroUsize;
use std::path::Path;

/// Workers when the container has no CPU limit.
pub const DEFAULT_WORKERS: usize = 2;

pub use tls_steal_crds::workers::{Workers, WorkersError};

/// Where the count came from (logged at start).
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Flag,
    TokioEnv,
    CpuLimit(f64),
    NoCpuLimit,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("--workers"),
            Source::TokioEnv => f.write_str("TOKIO_WORKER_THREADS"),
            Source::CpuLimit(cpus) => write!(f, "the container's CPU limit ({cpus} CPUs)"),
            Source::NoCpuLimit => write!(f, "no CPU limit: default {DEFAULT_WORKERS}"),
        }
    }
}

/// The worker count and why. `cgroup`: the container's cgroup mount (`/sys/fs/cgroup`).
pub fn choose(flag: Workers, tokio_env: Option<&str>, cgroup: &Path) -> (usize, Source) {
    if let Workers::Fixed(n) = flag {
        return (n.get(), Source::Flag);
    }
    if let Some(n) = tokio_env.and_then(|v| v.trim().parse::<NonZeroUsize>().ok()) {
        return (n.get(), Source::TokioEnv);
    }
    match cpu_limit(cgroup) {
        Some(cpus) => ((cpus.ceil() as usize).max(1), Source::CpuLimit(cpus)),
        None => (DEFAULT_WORKERS, Source::NoCpuLimit),
    }
}

/// CPUs the cgroup may use, `None` without a limit (or when it cannot be read).
fn cpu_limit(cgroup: &Path) -> Option<f64> {
    let read = |p: &str| std::fs::read_to_string(cgroup.join(p)).ok();
    // cgroup v2: "max 100000" (no limit) or "150000 100000"
    if let Some(max) = read("cpu.max") {
        let mut it = max.split_whitespace();
        let (quota, period) = (it.next()?, it.next()?);
        return ratio(quota.parse().ok()?, period.parse().ok()?);
    }
    // cgroup v1: quota -1 means no limit
    for dir in ["cpu", "cpu,cpuacct"] {
        let quota = read(&format!("{dir}/cpu.cfs_quota_us"));
        let period = read(&format!("{dir}/cpu.cfs_period_us"));
        if let (Some(q), Some(p)) = (quota, period) {
            return ratio(q.trim().parse().ok()?, p.trim().parse().ok()?);
        }
    }
    None
}

fn ratio(quota: i64, period: i64) -> Option<f64> {
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cgroup(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    #[test]
    fn the_cpu_limit_rounded_up_else_two() {
        let auto = |files: &[(&str, &str)]| choose(Workers::Auto, None, cgroup(files).path());
        assert_eq!(
            auto(&[("cpu.max", "max 100000\n")]),
            (2, Source::NoCpuLimit)
        );
        assert_eq!(
            auto(&[("cpu.max", "50000 100000\n")]),
            (1, Source::CpuLimit(0.5))
        );
        assert_eq!(
            auto(&[("cpu.max", "150000 100000\n")]),
            (2, Source::CpuLimit(1.5))
        );
        assert_eq!(
            auto(&[("cpu.max", "400000 100000\n")]),
            (4, Source::CpuLimit(4.0))
        );
        // cgroup v1
        let v1 = [
            ("cpu,cpuacct/cpu.cfs_quota_us", "250000\n"),
            ("cpu,cpuacct/cpu.cfs_period_us", "100000\n"),
        ];
        assert_eq!(auto(&v1), (3, Source::CpuLimit(2.5)));
        let v1_none = [
            ("cpu/cpu.cfs_quota_us", "-1\n"),
            ("cpu/cpu.cfs_period_us", "100000\n"),
        ];
        assert_eq!(auto(&v1_none), (2, Source::NoCpuLimit));
        // Nothing readable (not in a container, or an unknown layout): the default.
        assert_eq!(auto(&[]), (2, Source::NoCpuLimit));
        assert_eq!(auto(&[("cpu.max", "garbage")]), (2, Source::NoCpuLimit));
    }

    #[test]
    fn the_flag_then_tokio_env_win() {
        let limited = cgroup(&[("cpu.max", "100000 100000")]);
        let three = Workers::Fixed(NonZeroUsize::new(3).unwrap());
        assert_eq!(choose(three, Some("5"), limited.path()), (3, Source::Flag));
        assert_eq!(
            choose(Workers::Auto, Some("5"), limited.path()),
            (5, Source::TokioEnv)
        );
        // An unusable TOKIO_WORKER_THREADS is ignored.
        assert_eq!(
            choose(Workers::Auto, Some("zero"), limited.path()),
            (1, Source::CpuLimit(1.0))
        );
    }

    #[test]
    fn parses_auto_or_a_count() {
        assert_eq!("auto".parse::<Workers>().unwrap(), Workers::Auto);
        assert_eq!("".parse::<Workers>().unwrap(), Workers::Auto);
        assert_eq!(
            "4".parse::<Workers>().unwrap(),
            Workers::Fixed(NonZeroUsize::new(4).unwrap())
        );
        for bad in ["0", "-1", "two"] {
            let e = bad.parse::<Workers>().unwrap_err().to_string();
            assert!(e.contains("--workers") && e.contains(bad), "{e}");
        }
    }
}
