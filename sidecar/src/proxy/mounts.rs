//! Mount tables (`/proc/<pid>/mountinfo`) and what they tell about containers.
//!
//! With `shareProcessNamespace: true` the proxy sees every process of the pod, but nothing in
//! `/proc` says which container a process belongs to by name. The kubelet's own mounts do: it
//! bind-mounts each container's termination-message file from
//! `<kubelet root>/pods/<pod uid>/containers/<container name>/<id>` (for every container, at its
//! `terminationMessagePath`), so a process of container `C` has a mount whose *root* (the 4th
//! field of `mountinfo`: the path inside the source filesystem) ends in
//! `pods/<uid>/containers/C/<id>`. That names the container without a Kubernetes API call and
//! without changing the app's containers; the proxy's own processes, and those of any other
//! container, never match.
//!
//! The same tables tell whether a path in the proxy's filesystem is on a volume (a mount other
//! than the image's root) and whether that mount is the very one the target container has at
//! that path (same device, same root, same mount point): only then is the proxy's copy the
//! target container's file.

use std::path::{Component, Path};

/// One line of `mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the filesystem.
    pub device: String,
    /// The mounted path inside that filesystem.
    pub root: String,
    /// Where it is mounted.
    pub mount_point: String,
    pub fs_type: String,
}

/// Parses `mountinfo` text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let fs_type = right.split(' ').next()?;
            (f.len() >= 5).then(|| Mount {
                device: f[2].to_owned(),
                root: unescape(f[3]),
                mount_point: unescape(f[4]),
                fs_type: fs_type.to_owned(),
            })
        })
        .collect()
}

/// `mountinfo` escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A cheap test on the raw `mountinfo` text that is true whenever [`belongs_to`] is: the reload
/// loop looks at every visible process once a second, and parsing each table cost ~5 M
/// instructions a second with ~70 processes in view (an idle proxy on a host). Container names
/// are DNS labels, so their escaped and unescaped forms are the same.
pub fn may_belong_to(mountinfo: &str, container: &str) -> bool {
    mountinfo.contains("/containers/") && mountinfo.contains(container)
}

/// Whether a mount table is that of a process of `container` (see the module documentation).
pub fn belongs_to(mounts: &[Mount], container: &str) -> bool {
    mounts.iter().any(|m| {
        let parts: Vec<&str> = m.root.split('/').filter(|p| !p.is_empty()).collect();
        parts
            .windows(5)
            .any(|w| w[0] == "pods" && w[2] == "containers" && w[3] == container)
    })
}

fn components(path: &str) -> Vec<&str> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect()
}

/// The mount that holds `path`: the one with the longest mount point that is a component-wise
/// prefix of it (the last one mounted there, as mounts stack).
pub fn covering<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    let target = components(path);
    mounts
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let mp = components(&m.mount_point);
            target.starts_with(&mp).then_some(((mp.len(), i), m))
        })
        .max_by_key(|(key, _)| *key)
        .map(|(_, m)| m)
}

/// Kernel filesystems that are never a volume holding certificates.
const PSEUDO: &[&str] = &[
    "proc",
    "sysfs",
    "devpts",
    "mqueue",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "bpf",
    "pstore",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "autofs",
    "binfmt_misc",
];

/// Whether `m` is a volume rather than the image's root filesystem or a kernel filesystem.
pub fn is_volume(m: &Mount) -> bool {
    !components(&m.mount_point).is_empty() && !PSEUDO.contains(&m.fs_type.as_str())
}

/// Whether two mounts show the same directory of the same filesystem at the same place.
pub fn same_mount(a: &Mount, b: &Mount) -> bool {
    a.device == b.device
        && a.root == b.root
        && components(&a.mount_point) == components(&b.mount_point)
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "\
1352 1183 0:312 / / ro,relatime master:401 - overlay overlay rw,lowerdir=/l
1353 1352 0:315 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1360 1352 253:1 /var/lib/kubelet/pods/0b1e/volumes/kubernetes.io~secret/tls /etc/tls ro,relatime - ext4 /dev/vda1 rw
1361 1352 253:1 /var/lib/kubelet/pods/0b1e/etc-hosts /etc/hosts rw,relatime - ext4 /dev/vda1 rw
1362 1352 253:1 /var/lib/kubelet/pods/0b1e/containers/app/5c0d2a1e /dev/termination-log rw,relatime - ext4 /dev/vda1 rw
1363 1352 253:1 /var/lib/kubelet/pods/0b1e/volumes/kubernetes.io~empty-dir/my\\040dir /data rw - ext4 /dev/vda1 rw
";

    #[test]
    fn parses_fields_and_unescapes() {
        let m = parse_mountinfo(APP);
        assert_eq!(m.len(), 6);
        assert_eq!(m[2].device, "253:1");
        assert_eq!(m[2].mount_point, "/etc/tls");
        assert_eq!(m[1].fs_type, "proc");
        assert!(m[5].root.ends_with("/my dir"), "{:?}", m[5].root);
        assert!(parse_mountinfo("garbage\n1 2 3\n").is_empty());
    }

    #[test]
    fn the_termination_log_names_the_container() {
        let m = parse_mountinfo(APP);
        assert!(belongs_to(&m, "app"));
        assert!(!belongs_to(&m, "ap"));
        assert!(!belongs_to(&m, "tls-steal-proxy"));
        // A kubelet root on its own filesystem: the root field starts at `/pods`.
        let own_fs = parse_mountinfo(
            "9 1 8:3 /pods/0b1e/containers/web/77 /dev/termination-log rw - xfs /dev/sdb rw\n",
        );
        assert!(belongs_to(&own_fs, "web"));
        // The container name must be the path segment after `containers`, not any segment.
        let other =
            parse_mountinfo("9 1 8:3 /srv/app/containers/web/x /mnt rw - xfs /dev/sdb rw\n");
        assert!(!belongs_to(&other, "web"));
    }

    #[test]
    fn the_raw_text_test_never_drops_a_match() {
        let tables = [
            APP,
            "9 1 8:3 /pods/0b1e/containers/web/77 /dev/termination-log rw - xfs /dev/sdb rw\n",
            "9 1 8:3 /pods//0b1e//containers//web//77 /dev/termination-log rw - xfs /dev/sdb rw\n",
            "9 1 8:3 /srv/app/containers/web/x /mnt rw - xfs /dev/sdb rw\n",
        ];
        for t in tables {
            for c in ["app", "web", "ap", "tls-steal-proxy"] {
                if belongs_to(&parse_mountinfo(t), c) {
                    assert!(may_belong_to(t, c), "{c} in {t}");
                }
            }
        }
        // What it is for: the tables of processes of no pod are not parsed.
        assert!(!may_belong_to(
            "1352 1183 0:312 / / ro - overlay overlay rw\n",
            "app"
        ));
        assert!(!may_belong_to(APP, "web"));
    }

    #[test]
    fn the_longest_mount_point_covers_a_path() {
        let m = parse_mountinfo(APP);
        assert_eq!(
            covering(&m, "/etc/tls/tls.crt").unwrap().mount_point,
            "/etc/tls"
        );
        assert_eq!(covering(&m, "/etc/tlsx/a").unwrap().mount_point, "/");
        assert!(is_volume(covering(&m, "/etc/tls/tls.crt").unwrap()));
        assert!(!is_volume(covering(&m, "/etc/ssl/cert.pem").unwrap()));
        assert!(!is_volume(covering(&m, "/proc/1/root").unwrap()));
        let a = covering(&m, "/etc/tls/x").unwrap().clone();
        let mut b = a.clone();
        assert!(same_mount(&a, &b));
        b.root = "/var/lib/kubelet/pods/0b1e/volumes/kubernetes.io~secret/other".into();
        assert!(!same_mount(&a, &b));
    }
}
