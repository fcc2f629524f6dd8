//! Finding the PEM files of the plan in the *target container's* filesystem.
//!
//! Primary: the webhook mounts the same volume into the sidecar at the same path, so the path is
//! opened directly. Fallback (files baked into the image, `shareProcessNamespace: true`): the
//! path is resolved under `/proc/<pid>/root` of a process of the target container — the given
//! `--target-pid`, or else the first other process whose root holds the file.
//!
//! Under such a root, symlinks are resolved by hand, component by component: absolute link
//! targets restart at the root and `..` is clamped at it, so a link such as Kubernetes'
//! `tls.crt -> ..data/tls.crt` works while `evil -> ../../../etc/shadow` can never leave the
//! container's filesystem.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

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

/// Where the plan's paths are looked up.
#[derive(Clone, Debug)]
pub struct FileResolver {
    /// Look up paths in our own filesystem first (the shared-volume case).
    pub direct: bool,
    /// A process of the target container whose `/proc/<pid>/root` is the fallback.
    pub target_pid: Option<u32>,
    /// Whether to search every visible process's root when `target_pid` is not given.
    pub search_processes: bool,
    /// `/proc`, replaceable in tests.
    pub proc_dir: PathBuf,
}

impl Default for FileResolver {
    fn default() -> Self {
        FileResolver {
            direct: true,
            target_pid: None,
            search_processes: true,
            proc_dir: PathBuf::from("/proc"),
        }
    }
}

/// Maximum number of symlinks followed in one resolution (as Linux' ELOOP limit).
const MAX_LINKS: usize = 40;

impl FileResolver {
    /// Where `path` lives: our own filesystem, or a resolved path under a process root.
    pub fn locate(&self, path: &str) -> Result<PathBuf, FileError> {
        if self.direct && std::fs::metadata(path).is_ok() {
            return Ok(PathBuf::from(path));
        }
        for root in self.roots() {
            if let Ok(p) = resolve_in_root(&root, Path::new(path))
                && std::fs::metadata(&p).is_ok()
            {
                return Ok(p);
            }
        }
        let mut reason = String::from("not found");
        match (self.target_pid, self.search_processes) {
            (Some(pid), _) => {
                reason.push_str(&format!(" (looked directly and under /proc/{pid}/root)"))
            }
            (None, true) => {
                reason.push_str(" (looked directly and under the root of every visible process)")
            }
            (None, false) => {}
        }
        Err(FileError::new(path, reason))
    }

    /// Reads one file.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, FileError> {
        let p = self.locate(path)?;
        std::fs::read(&p).map_err(|e| FileError::new(path, e))
    }

    /// Reads a trust-root entry: a file, or every regular file directly in a directory (not
    /// recursive; names starting with `.` — Kubernetes' `..data` machinery — are skipped, the
    /// visible names being symlinks into it anyway). Returns `(display path, bytes)` pairs.
    pub fn read_file_or_dir(&self, path: &str) -> Result<Vec<(String, Vec<u8>)>, FileError> {
        let p = self.locate(path)?;
        let meta = std::fs::metadata(&p).map_err(|e| FileError::new(path, e))?;
        if !meta.is_dir() {
            return Ok(vec![(
                path.to_owned(),
                std::fs::read(&p).map_err(|e| FileError::new(path, e))?,
            )]);
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
            let full = match p.strip_prefix(self.proc_dir.as_path()) {
                Ok(_) => {
                    let root = proc_root_of(&p, &self.proc_dir);
                    let inner = Path::new("/")
                        .join(p.strip_prefix(&root).unwrap_or(&p))
                        .join(&name);
                    resolve_in_root(&root, &inner).map_err(|e| FileError::new(&display, e))?
                }
                Err(_) => p.join(&name),
            };
            match std::fs::metadata(&full) {
                Ok(m) if m.is_file() => out.push((
                    display.clone(),
                    std::fs::read(&full).map_err(|e| FileError::new(&display, e))?,
                )),
                _ => {}
            }
        }
        Ok(out)
    }

    fn roots(&self) -> Vec<PathBuf> {
        if let Some(pid) = self.target_pid {
            return vec![self.proc_dir.join(pid.to_string()).join("root")];
        }
        if !self.search_processes {
            return Vec::new();
        }
        let me = std::process::id();
        let mut pids: Vec<u32> = std::fs::read_dir(&self.proc_dir)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        pids.retain(|p| *p != me);
        pids.sort_unstable();
        pids.into_iter()
            .map(|p| self.proc_dir.join(p.to_string()).join("root"))
            .collect()
    }
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
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A Kubernetes-like Secret volume under a fake container root, plus a secret outside it.
    fn layout() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let vol = root.join("etc/tls");
        std::fs::create_dir_all(vol.join("..2024_01_01")).unwrap();
        std::fs::write(vol.join("..2024_01_01/tls.crt"), b"inside").unwrap();
        symlink("..2024_01_01", vol.join("..data")).unwrap();
        symlink("..data/tls.crt", vol.join("tls.crt")).unwrap();
        std::fs::write(dir.path().join("outside"), b"secret").unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), b"container passwd").unwrap();
        (dir, root)
    }

    #[test]
    fn follows_kubernetes_data_links() {
        let (_d, root) = layout();
        let p = resolve_in_root(&root, Path::new("/etc/tls/tls.crt")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"inside");
        assert!(p.starts_with(&root));
    }

    #[test]
    fn relative_escape_is_clamped_at_root() {
        let (_d, root) = layout();
        symlink("../../../../../../outside", root.join("etc/tls/evil")).unwrap();
        // Clamped: resolves to <root>/outside, which does not exist.
        assert!(resolve_in_root(&root, Path::new("/etc/tls/evil")).is_err());
        symlink("../../../../etc/passwd", root.join("etc/tls/pw")).unwrap();
        let p = resolve_in_root(&root, Path::new("/etc/tls/pw")).unwrap();
        assert_eq!(std::fs::read(p).unwrap(), b"container passwd");
    }

    #[test]
    fn absolute_link_restarts_at_root() {
        let (d, root) = layout();
        let outside = d.path().join("outside");
        symlink(&outside, root.join("etc/tls/abs")).unwrap();
        // The absolute target is taken inside the root, where it does not exist.
        assert!(resolve_in_root(&root, Path::new("/etc/tls/abs")).is_err());
        symlink("/etc/passwd", root.join("etc/tls/abs2")).unwrap();
        let p = resolve_in_root(&root, Path::new("/etc/tls/abs2")).unwrap();
        assert_eq!(std::fs::read(p).unwrap(), b"container passwd");
    }

    #[test]
    fn dotdot_in_the_request_is_clamped() {
        let (_d, root) = layout();
        let p = resolve_in_root(&root, Path::new("/../../../etc/passwd")).unwrap();
        assert_eq!(std::fs::read(p).unwrap(), b"container passwd");
    }

    #[test]
    fn link_loops_end() {
        let (_d, root) = layout();
        symlink("b", root.join("a")).unwrap();
        symlink("a", root.join("b")).unwrap();
        assert!(resolve_in_root(&root, Path::new("/a")).is_err());
    }

    #[test]
    fn resolver_falls_back_to_proc_root_and_reads_directories() {
        let (d, root) = layout();
        let proc_dir = d.path().join("proc");
        std::fs::create_dir_all(proc_dir.join("42")).unwrap();
        symlink(&root, proc_dir.join("42/root")).unwrap();
        let r = FileResolver {
            direct: false,
            target_pid: Some(42),
            search_processes: false,
            proc_dir,
        };
        assert_eq!(r.read("/etc/tls/tls.crt").unwrap(), b"inside");
        let files = r.read_file_or_dir("/etc/tls").unwrap();
        assert_eq!(
            files,
            vec![("/etc/tls/tls.crt".to_owned(), b"inside".to_vec())]
        );
        let err = r.read("/etc/tls/missing.crt").unwrap_err();
        assert!(err.to_string().contains("/etc/tls/missing.crt"), "{err}");
    }
}
