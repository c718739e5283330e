//! `ContainerId`: from the process's cgroup v2 path.
//!
//! The kernel record carries the cgroup v2 id (`bpf_get_current_cgroup_id`),
//! which is the inode number of the cgroup's directory in the cgroup2
//! mount. [`Cgroups`] maps ids to paths by scanning that mount, rescanning
//! on a miss at most once a second (a new container's first exec finds its
//! directory already there: the runtime creates it before starting the
//! process), and extracts the container id from the path the way the
//! runtimes name their cgroups:
//!
//! | runtime | cgroup leaf |
//! |---|---|
//! | docker (systemd driver) | `docker-<64 hex>.scope` |
//! | docker (cgroupfs driver) | `/docker/<64 hex>` |
//! | containerd / k8s | `cri-containerd-<64 hex>.scope`, `/kubepods/.../<64 hex>` |
//! | CRI-O | `crio-<64 hex>.scope` (not `crio-conmon-`, the monitor) |
//! | podman | `libpod-<64 hex>.scope` (not `libpod-conmon-`) |
//!
//! Limit: on hybrid cgroup hosts (v1 controllers, v2 mounted aside and
//! unused), processes all sit in the v2 root and no id is found.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// cgroup id -> container id, with the cgroup2 mount scanned on demand.
pub struct Cgroups {
    root: Option<PathBuf>,
    ids: HashMap<u64, Option<String>>,
    last_scan: Option<Instant>,
}

const RESCAN_EVERY: Duration = Duration::from_secs(1);
/// Bound on directories visited per scan (a host with thousands of pods
/// stays well under it).
const SCAN_MAX: usize = 100_000;

impl Cgroups {
    pub fn new() -> Cgroups {
        Cgroups {
            root: cgroup2_mount(),
            ids: HashMap::new(),
            last_scan: None,
        }
    }

    /// The container id of the cgroup `id`, if it is a container's.
    pub fn container_id(&mut self, id: u64) -> Option<String> {
        if let Some(known) = self.ids.get(&id) {
            return known.clone();
        }
        let due = self.last_scan.is_none_or(|t| t.elapsed() >= RESCAN_EVERY);
        if due {
            self.scan();
            if let Some(known) = self.ids.get(&id) {
                return known.clone();
            }
        }
        None
    }

    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        let Some(root) = self.root.clone() else {
            return;
        };
        let mut stack = vec![root.clone()];
        let mut seen = 0;
        while let Some(dir) = stack.pop() {
            seen += 1;
            if seen > SCAN_MAX {
                break;
            }
            let Ok(meta) = fs::metadata(&dir) else {
                continue;
            };
            let rel = dir.strip_prefix(&root).unwrap_or(&dir);
            self.ids
                .entry(meta.ino())
                .or_insert_with(|| container_id_from_path(&rel.to_string_lossy()));
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
    }
}

impl Default for Cgroups {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the cgroup2 hierarchy is mounted (`/sys/fs/cgroup` on unified
/// hosts, `/sys/fs/cgroup/unified` on hybrid ones).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        // "... mount-point ... - cgroup2 cgroup2 rw"
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mount_point = left.split_whitespace().nth(4)?;
        Some(Path::new(mount_point).to_path_buf())
    })
}

/// The container id named by a cgroup path, innermost component first.
pub fn container_id_from_path(path: &str) -> Option<String> {
    path.rsplit('/').find_map(|component| {
        let name = component.strip_suffix(".scope").unwrap_or(component);
        if name.contains("conmon") {
            return None;
        }
        let id = [
            "docker-",
            "cri-containerd-",
            "crio-",
            "libpod-",
            "containerd-",
        ]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::container_id_from_path;

    const ID: &str = "3f4e2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

    #[test]
    fn runtimes_cgroup_names() {
        for path in [
            format!("system.slice/docker-{ID}.scope"),
            format!("docker/{ID}"),
            format!("kubepods.slice/kubepods-besteffort.slice/cri-containerd-{ID}.scope"),
            format!("kubepods/besteffort/pod1234/{ID}"),
            format!("machine.slice/libpod-{ID}.scope/container"),
            format!("kubepods.slice/crio-{ID}.scope"),
        ] {
            assert_eq!(container_id_from_path(&path).as_deref(), Some(ID), "{path}");
        }
    }

    #[test]
    fn host_and_monitor_cgroups_have_no_container_id() {
        for path in [
            "user.slice/user-1000.slice/session-2.scope".to_owned(),
            "system.slice/sshd.service".to_owned(),
            format!("machine.slice/libpod-conmon-{ID}.scope"),
            format!("kubepods.slice/crio-conmon-{ID}.scope"),
            String::new(),
        ] {
            assert_eq!(container_id_from_path(&path), None, "{path}");
        }
    }
}
