//! The process table: what the daemon knows of each live process, keyed by
//! tgid. Parent fields of an event come from here, not from re-reading
//! `/proc` when the child execs (the parent may have exited or exec'd
//! something else by then).
//!
//! Seeded from `/proc` after the sensor attaches (so nothing that execs
//! in between is missed: its record waits in the ring buffer), then
//! updated from the kernel: a fork copies the creator's entry (a subshell
//! runs its parent's image until it execs) and remembers the creator; an
//! exec replaces the image; an exit marks the entry and it is evicted
//! [`EXIT_GRACE_NS`] later, so a child exec'd just after its parent died
//! still finds it. Where fork/exit records are unavailable (classic
//! tracepoint fallback), dead entries are pruned against `/proc` whenever
//! the table outgrows its bound.

use std::{
    collections::{HashMap, VecDeque},
    fs,
    path::Path,
    sync::Arc,
};

use super::{Enricher, ProcessCreate};

/// What a child needs to know of its parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    pub image: String,
    /// The path given to execve, made absolute (empty for seeded
    /// processes, whose invocation /proc does not keep).
    pub image_invoked: String,
    pub interpreter: Option<String>,
    pub command_line: String,
    pub uid: u32,
    pub user: Arc<str>,
    pub guid: String,
    /// The process that forked this one, from a fork record; `None` for
    /// processes seeded from /proc.
    pub creator: Option<u32>,
    /// The parent to follow for ancestry: the creator, else the kernel's
    /// parent at exec or at seeding.
    pub parent: Option<u32>,
    /// Kernel boot-clock time of the exit, once the process has exited.
    pub exited_ns: Option<u64>,
    /// The last terminating signal another process sent it (watched
    /// processes only).
    pub last_signal: Option<super::termination::Sender>,
}

impl Proc {
    pub fn from_event(event: &ProcessCreate, uid: u32) -> Proc {
        Proc {
            image: event.image.clone(),
            image_invoked: event.image_invoked.clone(),
            interpreter: event.interpreter.clone(),
            command_line: event.command_line.clone(),
            uid,
            user: event.user.as_str().into(),
            guid: event.process_guid.clone(),
            creator: None,
            parent: Some(event.parent_process_id),
            exited_ns: None,
            last_signal: None,
        }
    }
}

pub struct Table {
    procs: HashMap<u32, Proc>,
    max: usize,
    /// Exited processes in exit order: (pid, exit time, guid).
    exited: VecDeque<(u32, u64, String)>,
}

/// How long an exited process stays in the table (kernel boot clock).
pub const EXIT_GRACE_NS: u64 = 5_000_000_000;

/// Default bound: well above the pid count of a busy host (pid_max is
/// 4 million on 64-bit, but live processes rarely pass tens of thousands).
pub const DEFAULT_MAX: usize = 65_536;

impl Table {
    pub fn new(max: usize) -> Table {
        Table {
            procs: HashMap::new(),
            max: max.max(16),
            exited: VecDeque::new(),
        }
    }

    /// A table holding every process `/proc` shows now (kernel threads,
    /// which have no exe, are left out).
    pub fn from_proc(enricher: &mut Enricher, max: usize) -> Table {
        let mut table = Table::new(max);
        for (pid, dir) in proc_pids() {
            if let Some(proc) = read_proc(enricher, &dir, pid) {
                table.procs.insert(pid, proc);
            }
        }
        table
    }

    pub fn get(&self, pid: u32) -> Option<&Proc> {
        self.procs.get(&pid)
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Images of `pid` and its ancestors (creator if known, else nothing:
    /// seeded processes have no recorded parent), nearest first.
    pub fn ancestor_images(&self, pid: u32, max: usize) -> Vec<String> {
        self.ancestors(pid, max)
            .into_iter()
            .map(|p| p.image.clone())
            .collect()
    }

    /// The entries of `pid` and its ancestors, nearest first, as
    /// [`Table::ancestor_images`] lists their images.
    pub fn ancestors(&self, pid: u32, max: usize) -> Vec<&Proc> {
        let mut out = Vec::new();
        let mut next = Some(pid);
        while let Some(p) = next {
            if out.len() >= max {
                break;
            }
            let Some(proc) = self.procs.get(&p) else {
                break;
            };
            out.push(proc);
            next = proc.parent.filter(|&q| q != p && q != 0);
        }
        out
    }

    /// `creator` forked `child`: the child runs the creator's image until
    /// it execs. Unknown creators leave the child unknown.
    pub fn fork(&mut self, child: u32, creator: u32, guid: String) {
        let Some(parent) = self.procs.get(&creator) else {
            return;
        };
        let proc = Proc {
            guid,
            creator: Some(creator),
            parent: Some(creator),
            exited_ns: None,
            last_signal: None,
            ..parent.clone()
        };
        self.insert(child, proc);
    }

    pub fn set_last_signal(&mut self, pid: u32, sender: super::termination::Sender) {
        if let Some(proc) = self.procs.get_mut(&pid) {
            proc.last_signal = Some(sender);
        }
    }

    /// `pid` exited at `now_ns`; entries that exited more than
    /// [`EXIT_GRACE_NS`] before `now_ns` are evicted.
    pub fn exit(&mut self, pid: u32, now_ns: u64) {
        if let Some(proc) = self.procs.get_mut(&pid) {
            proc.exited_ns = Some(now_ns);
            self.exited.push_back((pid, now_ns, proc.guid.clone()));
        }
        while let Some((pid, at, guid)) = self.exited.front() {
            if now_ns.saturating_sub(*at) < EXIT_GRACE_NS {
                break;
            }
            // Evict only the same process life: the pid may have been
            // reused by a newer fork since.
            if self
                .procs
                .get(pid)
                .is_some_and(|p| p.guid == *guid && p.exited_ns.is_some())
            {
                self.procs.remove(pid);
            }
            self.exited.pop_front();
        }
    }

    /// Records that `pid` now runs `proc`, keeping what the fork told us.
    pub fn exec(&mut self, pid: u32, mut proc: Proc) {
        if let Some(old) = self.procs.get(&pid) {
            proc.creator = old.creator;
            proc.parent = old.creator.or(proc.parent);
        }
        self.insert(pid, proc);
    }

    fn insert(&mut self, pid: u32, proc: Proc) {
        self.procs.insert(pid, proc);
        if self.procs.len() > self.max {
            self.procs
                .retain(|pid, _| Path::new(&format!("/proc/{pid}")).exists());
            if self.procs.len() > self.max / 2 {
                // Still crowded with live processes: let the bound grow
                // rather than prune on every exec.
                self.max = self.procs.len() * 2;
            }
        }
    }
}

fn read_proc(enricher: &mut Enricher, dir: &Path, pid: u32) -> Option<Proc> {
    let image = fs::read_link(dir.join("exe")).ok()?;
    let cmdline = fs::read(dir.join("cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .strip_suffix(&[0])
        .unwrap_or(&cmdline)
        .split(|&b| b == 0)
        .filter(|_| !cmdline.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let status = fs::read_to_string(dir.join("status")).ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())?;
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    let start_ticks = start_ticks(&stat)?;
    let ns_per_tick = 1_000_000_000 / enricher.ticks_per_sec().max(1);
    Some(Proc {
        image: image.to_string_lossy().into_owned(),
        image_invoked: String::new(),
        interpreter: None,
        command_line: args.join(" "),
        uid,
        user: enricher.users.name(uid),
        guid: enricher.guid(pid, start_ticks * ns_per_tick),
        creator: None,
        parent: stat_ppid(&stat),
        exited_ns: None,
        last_signal: None,
    })
}

/// Every process `/proc` lists now: its pid and its `/proc/PID`.
pub(crate) fn proc_pids() -> impl Iterator<Item = (u32, std::path::PathBuf)> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((pid, entry.path()))
        })
}

/// Field 4 of `/proc/PID/stat` (the parent pid).
pub(crate) fn stat_ppid(stat: &str) -> Option<u32> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks). `comm` (field
/// 2) may hold spaces and parentheses, so count from its last `)`.
fn start_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_survives_hostile_comm() {
        let stat = "42 (a) b) (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(start_ticks(stat), Some(123456));
        assert_eq!(stat_ppid(stat), Some(1));
    }

    fn proc(image: &str, guid: &str) -> Proc {
        Proc {
            image: image.into(),
            image_invoked: image.into(),
            interpreter: None,
            command_line: image.into(),
            uid: 0,
            user: "root".into(),
            guid: guid.into(),
            creator: None,
            parent: None,
            exited_ns: None,
            last_signal: None,
        }
    }

    #[test]
    fn a_forked_child_carries_its_creators_image_until_it_execs() {
        let mut t = Table::new(100);
        t.exec(10, proc("/usr/bin/bash", "g10"));
        t.fork(11, 10, "g11".into());
        let child = t.get(11).expect("child known");
        assert_eq!(child.image, "/usr/bin/bash");
        assert_eq!(child.creator, Some(10));
        assert_eq!(child.guid, "g11");
        t.exec(11, proc("/usr/bin/true", "g11"));
        let child = t.get(11).expect("child known");
        assert_eq!(child.image, "/usr/bin/true");
        assert_eq!(child.creator, Some(10), "exec keeps the creator");
    }

    #[test]
    fn exited_processes_stay_for_the_grace_period_then_go() {
        let mut t = Table::new(100);
        t.exec(10, proc("/usr/bin/bash", "g10"));
        t.exec(20, proc("/usr/bin/sleep", "g20"));
        t.exit(10, 1_000);
        assert!(t.get(10).is_some(), "still there within the grace period");
        t.exit(20, 1_000 + EXIT_GRACE_NS);
        assert!(t.get(10).is_none(), "evicted after the grace period");
        assert!(t.get(20).is_some());
    }

    #[test]
    fn eviction_spares_a_reused_pid() {
        let mut t = Table::new(100);
        t.exec(1, proc("/sbin/init", "g1"));
        t.exec(10, proc("/usr/bin/bash", "old"));
        t.exit(10, 0);
        t.fork(10, 1, "new".into());
        t.exit(99, EXIT_GRACE_NS * 2);
        assert_eq!(t.get(10).map(|p| p.guid.as_str()), Some("new"));
    }

    #[test]
    fn seeds_this_process_from_proc() {
        let mut enricher = Enricher::new();
        let table = Table::from_proc(&mut enricher, DEFAULT_MAX);
        let me = table
            .get(std::process::id())
            .expect("own process in the table");
        let exe = std::env::current_exe().expect("current exe");
        assert_eq!(me.image, exe.to_string_lossy());
        // SAFETY: getuid has no preconditions.
        assert_eq!(me.uid, unsafe { libc::getuid() });
    }
}
