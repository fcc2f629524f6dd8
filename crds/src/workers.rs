//! The proxy's worker-thread setting, spelt the same way by the proxy's `--workers`, the chart's
//! `sidecar.workers` and the pod annotation `tls-steal.io/proxy-workers`: `auto` or a count.

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;

/// `auto` (the proxy's CPU limit, else 2) or a number of worker threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Workers {
    #[default]
    Auto,
    Fixed(NonZeroUsize),
}

/// A setting that is neither `auto` nor a positive number.
#[derive(Debug, thiserror::Error)]
#[error(
    "--workers / sidecar.workers / tls-steal.io/proxy-workers: {0:?} is neither `auto` nor a positive number of worker threads"
)]
pub struct WorkersError(String);

impl FromStr for Workers {
    type Err = WorkersError;
    fn from_str(s: &str) -> Result<Self, WorkersError> {
        let t = s.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("auto") {
            return Ok(Workers::Auto);
        }
        t.parse()
            .map(Workers::Fixed)
            .map_err(|_| WorkersError(s.to_owned()))
    }
}

impl fmt::Display for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workers::Auto => f.write_str("auto"),
            Workers::Fixed(n) => write!(f, "{n}"),
        }
    }
}
