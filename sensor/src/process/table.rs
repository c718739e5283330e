//! The process table: what the daemon knows of each live process, keyed by
//! tgid. Parent fields of an event come from here, not from re-reading
//! `/proc` when the child execs (the parent may have exited or exec'd
//! something else by then).
//!
//! Seeded from `/proc` after the sensor attaches (so nothing that execs
//! in between is missed: its record waits in the ring buffer), then
//! updated by every exec record. Without exit tracking, entries of dead
//! processes are pruned against `/proc` whenever the table outgrows its
//! bound; that costs one `stat` per entry, once per `max / 2` new
//! entries.

use std::{collections::HashMap, fs, path::Path, sync::Arc};

use super::{Enricher, ProcessCreate};

/// What a child needs to know of its parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    pub image: String,
    pub command_line: String,
    pub uid: u32,
    pub user: Arc<str>,
    pub guid: String,
}

impl Proc {
    pub fn from_event(event: &ProcessCreate, uid: u32) -> Proc {
        Proc {
            image: event.image.clone(),
            command_line: event.command_line.clone(),
            uid,
            user: event.user.as_str().into(),
            guid: event.process_guid.clone(),
        }
    }
}

pub struct Table {
    procs: HashMap<u32, Proc>,
    max: usize,
}

/// Default bound: well above the pid count of a busy host (pid_max is
/// 4 million on 64-bit, but live processes rarely pass tens of thousands).
pub const DEFAULT_MAX: usize = 65_536;

impl Table {
    pub fn new(max: usize) -> Table {
        Table {
            procs: HashMap::new(),
            max: max.max(16),
        }
    }

    /// A table holding every process `/proc` shows now (kernel threads,
    /// which have no exe, are left out).
    pub fn from_proc(enricher: &mut Enricher, max: usize) -> Table {
        let mut table = Table::new(max);
        let Ok(dir) = fs::read_dir("/proc") else {
            return table;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(proc) = read_proc(enricher, &entry.path(), pid) {
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

    /// Records that `pid` now runs `proc`.
    pub fn exec(&mut self, pid: u32, proc: Proc) {
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
    let start_ticks = start_ticks(&fs::read_to_string(dir.join("stat")).ok()?)?;
    let ns_per_tick = 1_000_000_000 / enricher.ticks_per_sec().max(1);
    Some(Proc {
        image: image.to_string_lossy().into_owned(),
        command_line: args.join(" "),
        uid,
        user: enricher.users.name(uid),
        guid: enricher.guid(pid, start_ticks * ns_per_tick),
    })
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
