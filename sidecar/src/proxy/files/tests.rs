use super::pids::{container_pids, start_time};
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

/// A termination-log mount line naming `container`.
fn term_log(container: &str) -> String {
    format!(
        "9 1 253:1 /var/lib/kubelet/pods/0b1e/containers/{container}/77 /dev/termination-log rw - ext4 /dev/vda1 rw\n"
    )
}

/// A fake `/proc`: each process with a mount table and a root.
struct FakeProc {
    dir: tempfile::TempDir,
}

impl FakeProc {
    fn new(self_mounts: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/self")).unwrap();
        std::fs::write(dir.path().join("proc/self/mountinfo"), self_mounts).unwrap();
        FakeProc { dir }
    }

    fn proc_dir(&self) -> PathBuf {
        self.dir.path().join("proc")
    }

    /// Process `pid` of `container`, whose root holds `files`.
    fn process(&self, pid: u32, container: &str, extra_mounts: &str, files: &[(&str, &str)]) {
        let root = self.dir.path().join(format!("roots/{pid}"));
        for (path, text) in files {
            let p = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::create_dir_all(&root).unwrap();
        let pd = self.proc_dir().join(pid.to_string());
        std::fs::create_dir_all(&pd).unwrap();
        symlink(&root, pd.join("root")).unwrap();
        let mounts = format!(
            "1 0 0:31 / / ro - overlay overlay rw\n{}{extra_mounts}",
            term_log(container)
        );
        std::fs::write(pd.join("mountinfo"), mounts).unwrap();
        self.started(pid, 1000 + u64::from(pid));
    }

    /// `pid`'s `stat`, with a command name that holds spaces and parentheses as real ones may.
    fn started(&self, pid: u32, start: u64) {
        let stat = format!(
            "{pid} (a (b) c) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 {start} 1000 10 1\n"
        );
        std::fs::write(self.proc_dir().join(pid.to_string()).join("stat"), stat).unwrap();
    }

    fn resolver(&self, direct: DirectLookup) -> FileResolver {
        FileResolver {
            direct,
            target_pid: None,
            search_processes: true,
            proc_dir: self.proc_dir(),
            known_pids: KnownPids::default(),
        }
    }
}

#[test]
fn the_fallback_reads_only_processes_of_the_named_container() {
    let fake = FakeProc::new(&term_log("tls-steal-proxy"));
    let cert = [("/etc/tls/app.crt", "from app")];
    // Lower pids of other containers hold the same path: never used.
    fake.process(5, "log", "", &[("/etc/tls/app.crt", "from log")]);
    fake.process(
        7,
        "tls-steal-proxy",
        "",
        &[("/etc/tls/app.crt", "from proxy")],
    );
    fake.process(20, "app", "", &[]);
    fake.process(30, "app", "", &cert);
    fake.process(40, "web", "", &[]);
    let r = fake.resolver(DirectLookup::Volumes);
    assert_eq!(container_pids(&fake.proc_dir(), "app"), vec![20, 30]);
    let files = r.for_container("app");
    assert_eq!(files.pids(), &[20, 30]);
    assert_eq!(files.read("/etc/tls/app.crt").unwrap(), b"from app");
    // Container `web` has no such file: the others' copies are not taken.
    let e = r.for_container("web").read("/etc/tls/app.crt").unwrap_err();
    assert!(
        e.to_string().contains("not found in container `web`"),
        "{e}"
    );
    assert!(e.to_string().contains("process(es) 40"), "{e}");
    let e = r.for_container("db").read("/etc/tls/app.crt").unwrap_err();
    assert!(
        e.to_string().contains(
            "no process of container `db` is visible (the pod needs shareProcessNamespace: true)"
        ),
        "{e}"
    );
    // An explicit --target-pid is used as given.
    let pinned = FileResolver {
        target_pid: Some(30),
        ..fake.resolver(DirectLookup::Volumes)
    };
    assert_eq!(
        pinned
            .for_container("app")
            .read("/etc/tls/app.crt")
            .unwrap(),
        b"from app"
    );
}

#[test]
fn the_proxy_opens_only_files_on_volumes_it_shares_with_the_container() {
    let fake = FakeProc::new("");
    let shared = fake.dir.path().join("shared");
    let own_image = fake.dir.path().join("image");
    for d in [&shared, &own_image] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("tls.crt"), "proxy's copy").unwrap();
    }
    let vol = |mp: &Path, root: &str| {
        format!(
            "50 1 253:1 {root} {} ro - ext4 /dev/vda1 rw\n",
            mp.display()
        )
    };
    std::fs::write(
        fake.proc_dir().join("self/mountinfo"),
        format!(
            "1 0 0:31 / / ro - overlay overlay rw\n{}",
            vol(&shared, "/var/lib/kubelet/pods/0b1e/volumes/secret/tls")
        ),
    )
    .unwrap();
    let in_shared = format!("{}/tls.crt", shared.display());
    let in_image = format!("{}/tls.crt", own_image.display());
    fake.process(
        20,
        "app",
        &vol(&shared, "/var/lib/kubelet/pods/0b1e/volumes/secret/tls"),
        &[(&in_image, "app's copy")],
    );
    fake.process(
        21,
        "other",
        &vol(&shared, "/var/lib/kubelet/pods/0b1e/volumes/secret/other"),
        &[],
    );
    let r = fake.resolver(DirectLookup::Volumes);
    // On the shared volume: the proxy's copy is the container's file.
    assert_eq!(
        r.for_container("app").read(&in_shared).unwrap(),
        b"proxy's copy"
    );
    // On the proxy's image filesystem: never; the container's own copy is read instead.
    assert_eq!(
        r.for_container("app").read(&in_image).unwrap(),
        b"app's copy"
    );
    // The container has another volume at that path: the proxy's copy is not its file.
    assert!(r.for_container("other").read(&in_shared).is_err());
    // No process visible (the usual case, all files on mirrored volumes): the mount decides.
    let no_procs = FileResolver {
        search_processes: false,
        ..r.clone()
    };
    assert_eq!(
        no_procs.for_container("app").read(&in_shared).unwrap(),
        b"proxy's copy"
    );
    assert!(no_procs.for_container("app").read(&in_image).is_err());
    // Outside Kubernetes every path may be opened directly.
    let any = FileResolver {
        search_processes: false,
        ..fake.resolver(DirectLookup::Any)
    };
    assert_eq!(
        any.for_container("app").read(&in_image).unwrap(),
        b"proxy's copy"
    );
}

#[test]
fn directories_and_the_size_cap() {
    let (d, root) = layout();
    let proc_dir = d.path().join("proc");
    std::fs::create_dir_all(proc_dir.join("42")).unwrap();
    symlink(&root, proc_dir.join("42/root")).unwrap();
    std::fs::write(
        root.join("etc/tls/big.pem"),
        vec![b'a'; MAX_PEM_BYTES as usize + 1],
    )
    .unwrap();
    let r = FileResolver {
        direct: DirectLookup::Volumes,
        target_pid: Some(42),
        search_processes: false,
        proc_dir,
        known_pids: KnownPids::default(),
    };
    let files = r.for_container("app");
    assert_eq!(files.read("/etc/tls/tls.crt").unwrap(), b"inside");
    let entries = files.read_file_or_dir("/etc/tls").unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].path, "/etc/tls/big.pem");
    let why = entries[0].bytes.as_ref().unwrap_err();
    assert!(
        why.contains("PEM files over 1 MiB (1048576 bytes) are refused"),
        "{why}"
    );
    assert_eq!(
        entries[1],
        DirEntry {
            path: "/etc/tls/tls.crt".into(),
            bytes: Ok(b"inside".to_vec())
        }
    );
    let e = files.read("/etc/tls/big.pem").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/etc/tls/big.pem: the file is 1048577 bytes"),
        "{e}"
    );
    let e = files.read_file_or_dir("/etc/tls/big.pem").unwrap_err();
    assert!(e.to_string().contains("over 1 MiB"), "{e}");
    // Exactly 1 MiB is fine.
    std::fs::write(
        root.join("etc/tls/big.pem"),
        vec![b'a'; MAX_PEM_BYTES as usize],
    )
    .unwrap();
    assert_eq!(
        files.read("/etc/tls/big.pem").unwrap().len(),
        MAX_PEM_BYTES as usize
    );
    let err = files.read("/etc/tls/missing.crt").unwrap_err();
    assert!(err.to_string().contains("/etc/tls/missing.crt"), "{err}");
}

#[test]
fn found_processes_are_remembered_while_they_run() {
    let fake = FakeProc::new(&term_log("tls-steal-proxy"));
    let cert = [("/etc/tls/app.crt", "from app")];
    fake.process(20, "app", "", &cert);
    fake.process(30, "app", "", &cert);
    let r = fake.resolver(DirectLookup::Volumes);
    assert_eq!(r.for_container("app").pids(), &[20, 30]);
    assert_eq!(start_time(&fake.proc_dir(), 20), Some(1020));
    assert!(r.known_pids.remembers("app"));
    // The next lookups take them without a search: a new process of the container is not
    // looked for while both still run.
    fake.process(10, "app", "", &cert);
    let again = r.for_container("app");
    assert_eq!(again.pids(), &[20, 30]);
    assert_eq!(again.read("/etc/tls/app.crt").unwrap(), b"from app");
    // Only the processes are remembered: a rotated file is read anew.
    let in_root = fake.dir.path().join("roots/20/etc/tls/app.crt");
    std::fs::write(&in_root, "rotated").unwrap();
    assert_eq!(
        r.for_container("app").read("/etc/tls/app.crt").unwrap(),
        b"rotated"
    );
    // Clones share them.
    assert_eq!(r.clone().for_container("app").pids(), &[20, 30]);

    // Pid 30 now belongs to another process (another start time, another container): searched
    // again.
    std::fs::remove_dir_all(fake.proc_dir().join("30")).unwrap();
    fake.process(30, "web", "", &[]);
    fake.started(30, 5000);
    assert_eq!(r.for_container("app").pids(), &[10, 20]);

    // The container restarted: its old processes are gone, the new one is found.
    for pid in [10, 20] {
        std::fs::remove_dir_all(fake.proc_dir().join(pid.to_string())).unwrap();
    }
    fake.process(50, "app", "", &[("/etc/tls/app.crt", "after the restart")]);
    let files = r.for_container("app");
    assert_eq!(files.pids(), &[50]);
    assert_eq!(
        files.read("/etc/tls/app.crt").unwrap(),
        b"after the restart"
    );

    // Not found is not remembered: a container that has not started is looked for each time.
    assert!(r.for_container("db").pids().is_empty());
    assert!(!r.known_pids.remembers("db"));
    fake.process(60, "db", "", &[]);
    assert_eq!(r.for_container("db").pids(), &[60]);
}

#[test]
fn a_file_opened_directly_needs_no_process_search() {
    let fake = FakeProc::new(&term_log("tls-steal-proxy"));
    fake.process(20, "app", "", &[]);
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("app.crt");
    std::fs::write(&cert, "direct").unwrap();
    let r = fake.resolver(DirectLookup::Any);
    let files = r.for_container("app");
    assert_eq!(files.read(&cert.display().to_string()).unwrap(), b"direct");
    assert!(!r.known_pids.remembers("app"), "searched for processes");
    // A path that is not there directly is looked for under the container's processes.
    assert!(files.read("/etc/tls/none.crt").is_err());
    assert!(r.known_pids.remembers("app"));
}

/// A real process in a mount namespace of its own, where a bind mount makes its mount table
/// look like that of container `app`: it is found, and read through its `/proc/<pid>/root`.
#[test]
fn a_real_process_is_found_by_its_mount_table() {
    if !Path::new("/usr/bin/unshare").exists() && !Path::new("/bin/unshare").exists() {
        panic!("this test needs util-linux's unshare (apt-get install util-linux)");
    }
    let dir = tempfile::tempdir().unwrap();
    let kubelet = dir.path().join("pods/0b1e/containers/app");
    std::fs::create_dir_all(&kubelet).unwrap();
    std::fs::write(kubelet.join("77"), "").unwrap();
    let target = dir.path().join("termination-log");
    std::fs::write(&target, "").unwrap();
    std::fs::write(dir.path().join("app.crt"), "real").unwrap();
    let script = format!(
        "mount --bind {} {} && exec sleep 60",
        kubelet.join("77").display(),
        target.display()
    );
    let mut child = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .spawn()
        .expect("unshare runs");
    let pid = child.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let found = loop {
        let pids = container_pids(Path::new("/proc"), "app");
        if pids.contains(&pid) || std::time::Instant::now() > deadline {
            break pids;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the namespaced process exited ({status}); unshare needs root (CAP_SYS_ADMIN)");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let r = FileResolver {
        direct: DirectLookup::Volumes,
        target_pid: None,
        search_processes: true,
        proc_dir: PathBuf::from("/proc"),
        known_pids: KnownPids::default(),
    };
    let app = dir.path().join("app.crt").display().to_string();
    let read = r.for_container("app").read(&app);
    let not_ours = container_pids(Path::new("/proc"), "tls-steal-test-nobody");
    let started = start_time(Path::new("/proc"), pid);
    let _ = child.kill();
    let _ = child.wait();
    assert!(found.contains(&pid), "pid {pid} not among {found:?}");
    assert!(started.is_some());
    assert_eq!(start_time(Path::new("/proc"), u32::MAX), None);
    assert!(!found.contains(&std::process::id()));
    assert!(not_ours.is_empty());
    assert_eq!(read.unwrap(), b"real");
}
