//! Finding the PEM files of the plan in the filesystem of the container the plan names.
//!
//! Primary: the webhook mounts the volume that holds a file in the target container into the
//! sidecar at the same path (same `subPath`), so the path is opened directly. Only such files are
//! read from the sidecar's own filesystem: a path is opened directly when it lies on a volume
//! mounted into the proxy (not on its image's root filesystem), and, when a process of the
//! target container is visible, when that container has the very same mount there (same device,
//! same directory, same mount point; see [`super::mounts`]). Outside Kubernetes (tests, a proxy
//! run by hand) every path may be opened directly ([`DirectLookup::Any`]).
//!
//! Fallback (files baked into the image, `shareProcessNamespace: true`): the path is resolved
//! under `/proc/<pid>/root` of a process *of the target container*: the given `--target-pid`,
//! or else the processes whose mount table names the container (the kubelet's per-container
//! termination-log mount, see [`super::mounts`]), lowest pid first, remembered while they run
//! ([`pids`]). Processes of other containers, and the proxy's own, are never used.
//!
//! Under such a root, symlinks are resolved by hand, component by component: absolute link
//! targets restart at the root and `..` is clamped at it, so a link such as Kubernetes'
//! `tls.crt -> ..data/tls.crt` works while `evil -> ../../../etc/shadow` can never leave the
//! container's filesystem.
//!
//! Every PEM file is read with a size cap ([`MAX_PEM_BYTES`]): certificates and keys are a few
//! kilobytes, so anything larger is refused (a wrong path such as a log file or a device).

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::mounts::{self, Mount};

mod pids;

pub use pids::KnownPids;

/// Largest PEM file read (1 MiB).
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// A file of the plan could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct FileError {
    pub path: String,
    pub reason: String,
}

impl FileError {
    fn new(path: &str, reason: impl ToString) -> Self {
        FileError {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Which paths may be opened in the proxy's own filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DirectLookup {
    /// Any path that exists there (a proxy run outside Kubernetes, tests).
    Any,
    /// Only paths on a volume mounted into the proxy, shared with the target container.
    Volumes,
}

/// Where the plan's paths are looked up.
#[derive(Clone, Debug)]
pub struct FileResolver {
    pub direct: DirectLookup,
    /// A process of the target container whose `/proc/<pid>/root` is the fallback.
    pub target_pid: Option<u32>,
    /// Whether to look for the target container's processes when `target_pid` is not given.
    pub search_processes: bool,
    /// `/proc`, replaceable in tests (`<proc_dir>/self/mountinfo` is the proxy's mount table).
    pub proc_dir: PathBuf,
    /// The container processes found so far (shared by clones).
    pub known_pids: KnownPids,
}

impl Default for FileResolver {
    fn default() -> Self {
        FileResolver {
            direct: DirectLookup::Any,
            target_pid: None,
            search_processes: true,
            proc_dir: PathBuf::from("/proc"),
            known_pids: KnownPids::default(),
        }
    }
}

/// One read file: its name as shown (the plan's path, or `dir/name` for a directory entry) and
/// its bytes, or why it could not be read (only directory entries: they are skipped one by one).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct DirEntry {
    pub path: String,
    pub bytes: Result<Vec<u8>, String>,
}

/// The files of one container. Its processes are looked for once, and only when needed: a
/// path opened directly under [`DirectLookup::Any`] needs none.
pub struct ContainerFiles<'a> {
    resolver: &'a FileResolver,
    container: &'a str,
    /// Processes of the container, lowest first.
    pids: OnceCell<Vec<u32>>,
    /// The proxy's mount table, and the container's (from its first process), for
    /// [`DirectLookup::Volumes`].
    own_mounts: Vec<Mount>,
    target_mounts: OnceCell<Option<Vec<Mount>>>,
}

/// Maximum number of symlinks followed in one resolution (as Linux' ELOOP limit).
const MAX_LINKS: usize = 40;

impl FileResolver {
    /// The files of `container` (the plan entry's container).
    pub fn for_container<'a>(&'a self, container: &'a str) -> ContainerFiles<'a> {
        let own_mounts = match self.direct {
            DirectLookup::Any => Vec::new(),
            DirectLookup::Volumes => self.mounts_of("self").unwrap_or_default(),
        };
        ContainerFiles {
            resolver: self,
            container,
            pids: OnceCell::new(),
            own_mounts,
            target_mounts: OnceCell::new(),
        }
    }

    fn mounts_of(&self, who: &str) -> Option<Vec<Mount>> {
        std::fs::read_to_string(self.proc_dir.join(who).join("mountinfo"))
            .map(|t| mounts::parse_mountinfo(&t))
            .ok()
    }
}

impl ContainerFiles<'_> {
    /// The processes of the container (the given `--target-pid`, else those found).
    pub fn pids(&self) -> &[u32] {
        self.pids.get_or_init(|| {
            let r = self.resolver;
            match (r.target_pid, r.search_processes) {
                (Some(pid), _) => vec![pid],
                (None, true) => r.known_pids.of(&r.proc_dir, self.container),
                (None, false) => Vec::new(),
            }
        })
    }

    /// The container's mount table, from its first process.
    fn target_mounts(&self) -> Option<&[Mount]> {
        let first = || self.resolver.mounts_of(&self.pids().first()?.to_string());
        self.target_mounts.get_or_init(first).as_deref()
    }

    /// Whether `path` may be opened in the proxy's own filesystem.
    fn direct_allowed(&self, path: &str) -> bool {
        match self.resolver.direct {
            DirectLookup::Any => true,
            DirectLookup::Volumes => {
                let Some(own) = mounts::covering(&self.own_mounts, path) else {
                    return false;
                };
                mounts::is_volume(own)
                    && match self.target_mounts() {
                        Some(t) => {
                            mounts::covering(t, path).is_some_and(|m| mounts::same_mount(own, m))
                        }
                        None => true,
                    }
            }
        }
    }

    /// Where `path` lives: the proxy's own filesystem, or a resolved path under the root of a
    /// process of the container.
    pub fn locate(&self, path: &str) -> Result<PathBuf, FileError> {
        if self.direct_allowed(path) && std::fs::metadata(path).is_ok() {
            return Ok(PathBuf::from(path));
        }
        for pid in self.pids() {
            let root = self.resolver.proc_dir.join(pid.to_string()).join("root");
            if let Ok(p) = resolve_in_root(&root, Path::new(path))
                && std::fs::metadata(&p).is_ok()
            {
                return Ok(p);
            }
        }
        let mut tried = vec![match self.resolver.direct {
            DirectLookup::Any => "not in the proxy's filesystem".to_string(),
            DirectLookup::Volumes => "not on a volume the proxy shares with it".to_string(),
        }];
        match (self.resolver.target_pid, self.pids()) {
            (Some(pid), _) => tried.push(format!("not under /proc/{pid}/root")),
            (None, []) if self.resolver.search_processes => tried.push(format!(
                "no process of container `{}` is visible (the pod needs shareProcessNamespace: true)",
                self.container
            )),
            (None, []) => {}
            (None, pids) => {
                let list: Vec<String> = pids.iter().map(u32::to_string).collect();
                tried.push(format!("not under the root of its process(es) {}", list.join(", ")));
            }
        }
        Err(FileError::new(
            path,
            format!(
                "not found in container `{}` ({})",
                self.container,
                tried.join("; ")
            ),
        ))
    }

    /// Reads one file (at most [`MAX_PEM_BYTES`]).
    pub fn read(&self, path: &str) -> Result<Vec<u8>, FileError> {
        let p = self.locate(path)?;
        read_capped(&p).map_err(|reason| FileError::new(path, reason))
    }

    /// Reads a trust-root entry: a file, or every regular file directly in a directory (not
    /// recursive; names starting with `.` — Kubernetes' `..data` machinery — are skipped, the
    /// visible names being symlinks into it anyway). A directory entry that cannot be read is
    /// returned with its reason (the caller skips it); a named file that cannot be read is an
    /// error.
    pub fn read_file_or_dir(&self, path: &str) -> Result<Vec<DirEntry>, FileError> {
        let p = self.locate(path)?;
        let meta = std::fs::metadata(&p).map_err(|e| FileError::new(path, e))?;
        if !meta.is_dir() {
            let bytes = read_capped(&p).map_err(|reason| FileError::new(path, reason))?;
            return Ok(vec![DirEntry {
                path: path.to_owned(),
                bytes: Ok(bytes),
            }]);
        }
        let mut names: Vec<OsString> = std::fs::read_dir(&p)
            .map_err(|e| FileError::new(path, e))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .filter(|n| !n.to_string_lossy().starts_with('.'))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let display = format!("{}/{}", path.trim_end_matches('/'), name.to_string_lossy());
            // Entries are symlinks in Secret volumes: resolve them within the same root.
            let full = match p.strip_prefix(self.resolver.proc_dir.as_path()) {
                Ok(_) => {
                    let root = proc_root_of(&p, &self.resolver.proc_dir);
                    let inner = Path::new("/")
                        .join(p.strip_prefix(&root).unwrap_or(&p))
                        .join(&name);
                    resolve_in_root(&root, &inner)
                }
                Err(_) => Ok(p.join(&name)),
            };
            match full.and_then(|f| std::fs::metadata(&f).map(|m| (f, m))) {
                Ok((f, m)) if m.is_file() => out.push(DirEntry {
                    path: display,
                    bytes: read_capped(&f),
                }),
                Ok(_) => {}
                Err(e) => out.push(DirEntry {
                    path: display,
                    bytes: Err(e.to_string()),
                }),
            }
        }
        Ok(out)
    }
}

/// Reads a file of at most [`MAX_PEM_BYTES`]; the error is the reason.
fn read_capped(p: &Path) -> Result<Vec<u8>, String> {
    let too_big = |n: u64| {
        format!("the file is {n} bytes; PEM files over 1 MiB ({MAX_PEM_BYTES} bytes) are refused")
    };
    let f = std::fs::File::open(p).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    if len > MAX_PEM_BYTES {
        return Err(too_big(len));
    }
    // The size may change between the check and the read (or lie, for special files).
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// `/proc/<pid>/root` prefix of a path under it.
fn proc_root_of(p: &Path, proc_dir: &Path) -> PathBuf {
    let rel = p.strip_prefix(proc_dir).unwrap_or(p);
    let mut it = rel.components();
    let pid = it
        .next()
        .map(|c| c.as_os_str().to_owned())
        .unwrap_or_default();
    proc_dir.join(pid).join("root")
}

/// Resolves `path` as seen from a process whose filesystem root is `root`, following every
/// symlink by hand so the result never leaves `root`: absolute targets restart at `root`, `..`
/// stops at it. The returned path contains no symlink below `root`.
pub fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut pending: VecDeque<OsString> = components(path);
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = join(root, &resolved).join(&c);
        let meta = std::fs::symlink_metadata(&candidate)?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(io::Error::other("too many levels of symbolic links"));
            }
            let target = std::fs::read_link(&candidate)?;
            if target.is_absolute() {
                resolved.clear();
            }
            for (i, t) in components(&target).into_iter().enumerate() {
                pending.insert(i, t);
            }
        } else {
            resolved.push(c);
        }
    }
    Ok(join(root, &resolved))
}

fn components(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn join(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(parts);
    p
}

#[cfg(test)]
mod tests;
