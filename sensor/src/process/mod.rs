//! Process context: turns a kernel [`ExecRecord`] into a [`ProcessCreate`]
//! event with the Sysmon field names, using a process table for the parent.
//!
//! - [`Table`]: what we know of each live process (image, command line,
//!   user, guid), seeded from `/proc` at start and updated from exec
//!   records. Fork and exit tracking come from the kernel in a later stage;
//!   until then the table is bounded by pruning pids that no longer exist.
//! - [`users::Users`]: uid -> name through NSS, cached.
//! - [`Enricher`]: the per-host constants (hostname, boot id, clock offset)
//!   and the conversion itself.

pub mod container;
pub mod event;
pub mod table;
pub mod termination;
pub mod users;

pub use event::ProcessCreate;
pub use table::{Proc, Table};
pub use termination::ProcessTermination;

use std::sync::Arc;

use crate::capture::ExecRecord;

/// Host facts and caches needed to build events. One per daemon.
pub struct Enricher {
    pub hostname: Arc<str>,
    /// First 32 bits of `/proc/sys/kernel/random/boot_id`, for guids.
    boot_id: u32,
    /// Wall-clock ns minus boot-clock ns, measured once at start.
    realtime_offset_ns: i128,
    /// Clock ticks per second, for guid start times (as /proc reports).
    ticks_per_sec: u64,
    pub users: users::Users,
    pub cgroups: container::Cgroups,
}

impl Enricher {
    pub fn new() -> Enricher {
        Enricher {
            hostname: hostname().into(),
            boot_id: boot_id(),
            realtime_offset_ns: realtime_offset_ns(),
            ticks_per_sec: ticks_per_sec(),
            users: users::Users::default(),
            cgroups: container::Cgroups::new(),
        }
    }

    /// `ProcessGuid`: boot id, pid and start time (in clock ticks, the
    /// resolution `/proc/PID/stat` gives, so a process seeded from /proc
    /// and one seen by the kernel get the same guid), shaped like a UUID.
    pub fn guid(&self, pid: u32, start_boottime_ns: u64) -> String {
        let ticks = start_boottime_ns / (1_000_000_000 / self.ticks_per_sec.max(1));
        format!(
            "{{{:08x}-{:04x}-{:04x}-{:04x}-{:012x}}}",
            self.boot_id,
            pid >> 16,
            pid & 0xffff,
            (ticks >> 48) & 0xffff,
            ticks & 0xffff_ffff_ffff
        )
    }

    pub fn ticks_per_sec(&self) -> u64 {
        self.ticks_per_sec
    }

    /// Wall-clock time of a kernel boot-clock timestamp, RFC 3339 UTC, ns.
    pub fn utc_time(&self, boot_ns: u64) -> String {
        let ns = boot_ns as i128 + self.realtime_offset_ns;
        time::OffsetDateTime::from_unix_timestamp_nanos(ns)
            .map(rfc3339)
            .unwrap_or_default()
    }

    /// Remembers, on a watched target, who sent it a terminating signal.
    pub fn signal(
        &mut self,
        table: &mut Table,
        watch: &[String],
        target: u32,
        sender: u32,
        signal: u32,
    ) {
        if !table
            .get(target)
            .is_some_and(|t| termination::watched(watch, &t.image))
        {
            return;
        }
        let from = table.get(sender);
        let snapshot = termination::Sender {
            pid: sender,
            signal,
            image: from.map(|p| p.image.clone()),
            command_line: from.map(|p| p.command_line.clone()),
            user: from.map(|p| p.user.to_string()),
            guid: from.map(|p| p.guid.clone()),
        };
        table.set_last_signal(target, snapshot);
    }

    /// The termination event of `pid`, if it is watched. Call before the
    /// exit is applied to the table.
    pub fn termination(
        &self,
        table: &Table,
        watch: &[String],
        pid: u32,
        exit_code: u32,
        boot_ns: u64,
    ) -> Option<ProcessTermination> {
        let proc = table.get(pid)?;
        if !termination::watched(watch, &proc.image) {
            return None;
        }
        let mut event = ProcessTermination {
            utc_time: self.utc_time(boot_ns),
            process_guid: proc.guid.clone(),
            process_id: pid,
            image: proc.image.clone(),
            command_line: proc.command_line.clone(),
            user: proc.user.to_string(),
            hostname: self.hostname.to_string(),
            ..ProcessTermination::default()
        };
        event.set_exit(exit_code, proc.last_signal.as_ref());
        Some(event)
    }

    /// Applies a fork record to `table`.
    pub fn fork(&mut self, table: &mut Table, tgid: u32, creator: u32, start_boottime: u64) {
        table.fork(tgid, creator, self.guid(tgid, start_boottime));
    }

    /// Builds the event for `rec` and records the new image in `table`.
    pub fn process_create(&mut self, rec: &ExecRecord, table: &mut Table) -> ProcessCreate {
        let event = event::build(self, rec, table);
        table.exec(rec.tgid, Proc::from_event(&event, rec.uid));
        event
    }
}

impl Default for Enricher {
    fn default() -> Self {
        Self::new()
    }
}

/// RFC 3339 with nanoseconds and a `Z`: `2026-12-03T18:47:35.123456789Z`.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return String::new();
    }
    let end = memchr::memchr(0, &buf).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn boot_id() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .and_then(|s| u32::from_str_radix(s.get(..8)?, 16).ok())
        .unwrap_or(0)
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into ts.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

fn realtime_offset_ns() -> i128 {
    // Sandwich the boot-clock read between two wall-clock reads and take
    // the midpoint, so the offset is good to well under a microsecond.
    let a = clock_ns(libc::CLOCK_REALTIME);
    let boot = clock_ns(libc::CLOCK_BOOTTIME);
    let b = clock_ns(libc::CLOCK_REALTIME);
    (a + b) / 2 - boot
}

fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(100)
}
