//! The processes of a container, found by their mount tables ([`super::super::mounts`]) and
//! remembered between reload passes.
//!
//! Why remembered: a search reads the mount table of every process the proxy can see, and the
//! reload loop looks for a port's files every second. With 77 processes visible that was ~87%
//! of an idle proxy's CPU (7.7 ms per second; BENCHMARKS.md, "idle CPU"). A remembered process
//! is checked by its start time (`/proc/<pid>/stat`, field 22), so a pid the kernel gave to
//! another process is never taken for it; once one of them has ended (the container restarted),
//! the next lookup searches again.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::super::mounts;

/// The processes found per container. Clones share what was found.
#[derive(Clone, Debug, Default)]
pub struct KnownPids(Arc<Mutex<HashMap<String, Vec<Started>>>>);

/// A process (pid) and when it started.
type Started = (u32, u64);

impl KnownPids {
    /// The processes of `container` under `proc_dir`, lowest first: those found before while
    /// every one of them still runs, else a new search. Nothing found is not remembered, so a
    /// container that has not started yet is looked for again at the next lookup.
    pub fn of(&self, proc_dir: &Path, container: &str) -> Vec<u32> {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = known.get(container)
            && found
                .iter()
                .all(|&(pid, start)| start_time(proc_dir, pid) == Some(start))
        {
            return found.iter().map(|&(pid, _)| pid).collect();
        }
        let pids = container_pids(proc_dir, container);
        // A process that ended meanwhile has no start time: then nothing is remembered.
        let found: Option<Vec<Started>> = (pids.iter())
            .map(|&pid| Some((pid, start_time(proc_dir, pid)?)))
            .collect();
        match found {
            Some(found) if !found.is_empty() => known.insert(container.to_owned(), found),
            _ => known.remove(container),
        };
        pids
    }

    /// Whether a search for `container` is remembered.
    #[cfg(test)]
    pub fn remembers(&self, container: &str) -> bool {
        (self.0.lock().unwrap()).contains_key(container)
    }
}

/// The processes under `proc_dir` whose mount table names `container`, lowest pid first; never
/// the proxy itself.
pub fn container_pids(proc_dir: &Path, container: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut pids: Vec<u32> = std::fs::read_dir(proc_dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.retain(|p| *p != me);
    pids.sort_unstable();
    pids.retain(|p| {
        std::fs::read_to_string(proc_dir.join(p.to_string()).join("mountinfo")).is_ok_and(|t| {
            mounts::may_belong_to(&t, container)
                && mounts::belongs_to(&mounts::parse_mountinfo(&t), container)
        })
    });
    pids
}

/// When process `pid` started (clock ticks after boot), `None` when it does not exist.
pub fn start_time(proc_dir: &Path, pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_dir.join(pid.to_string()).join("stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(19)?.parse().ok()
}
