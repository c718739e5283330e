//! Wire types and limits shared by sigexec's eBPF programs (`sensor-ebpf`)
//! and user space (`sensor`).
//!
//! Everything here is `#[repr(C)]` and `no_std`. The `user` feature adds the
//! `aya::Pod` impls that user space needs to hand [`Offsets`] to the loader.
//!
//! # The exec record
//!
//! One record per exec, variable length, written by the kernel side into a
//! per-CPU scratch slot and submitted to the ring buffer with only the bytes
//! used:
//!
//! ```text
//! ExecHeader | filename | interp | exe path | cwd path | argv
//! ```
//!
//! The length of every section is in the header. `filename` and `interp`
//! are the kernel's `bprm->filename` / `bprm->interp` without their NUL.
//! A path section is the names of its components, each followed by one NUL,
//! leaf first (the order the kernel side walks `d_parent`); user space
//! reverses and joins them. argv is the raw `arg_start..arg_end` area of the
//! new process (NUL-separated, as the kernel laid it out).
#![no_std]

/// Most argv bytes captured per exec. Beyond this the record carries
/// [`flags::ARGV_TRUNCATED`] and the true length. Power of two.
pub const ARGV_MAX: usize = 128 * 1024;

/// Most bytes of one path (exe, cwd, filename, interp) captured; the
/// kernel's own `PATH_MAX`.
pub const PATH_MAX: usize = 4096;

/// Longest name of one path component, with its NUL (`NAME_MAX` + 1).
pub const NAME_MAX: usize = 256;

/// Most components walked for one path (each mount crossing costs one
/// iteration too). Deeper paths are cut at the root side and flagged.
pub const PATH_DEPTH_MAX: u32 = 160;

/// `TASK_COMM_LEN`.
pub const COMM_LEN: usize = 16;

/// Every variable section before argv starts below this offset; the eBPF
/// side masks section offsets with `STRINGS_MASK` so the verifier can bound
/// them. Must be a power of two larger than the header plus two strings of
/// `PATH_MAX` and two paths of `PATH_MAX + NAME_MAX`.
pub const STRINGS_AREA: usize = 32 * 1024;

/// `STRINGS_AREA - 1`, for masking offsets in the eBPF program.
pub const STRINGS_MASK: usize = STRINGS_AREA - 1;

/// Size of one per-CPU scratch slot: the strings area plus the largest
/// argv read, rounded up to a power of two.
pub const SCRATCH_SIZE: usize = 256 * 1024;

const _: () = assert!(STRINGS_AREA >= size_of::<ExecHeader>() + 4 * (PATH_MAX + NAME_MAX));
const _: () = assert!(STRINGS_AREA + ARGV_MAX <= SCRATCH_SIZE);
const _: () = assert!(ARGV_MAX.is_power_of_two() && SCRATCH_SIZE.is_power_of_two());

/// Record kinds (first field of every record).
pub mod kind {
    /// An [`super::ExecHeader`] record.
    pub const EXEC: u32 = 1;
    /// A [`super::TaskRecord`]: a new process (not a thread) was forked.
    pub const FORK: u32 = 2;
    /// A [`super::TaskRecord`]: a thread group leader exited.
    pub const EXIT: u32 = 3;
    /// A [`super::TaskRecord`]: a process sent a terminating signal to
    /// another.
    pub const SIGNAL: u32 = 4;
}

/// Signals worth a record: those whose default action ends or stops the
/// target. SIGCHLD, SIGWINCH and friends (sent constantly) are left out.
pub const SIGNAL_MASK: u64 = (1 << 1) // SIGHUP
    | (1 << 2) // SIGINT
    | (1 << 3) // SIGQUIT
    | (1 << 6) // SIGABRT
    | (1 << 9) // SIGKILL
    | (1 << 10) // SIGUSR1
    | (1 << 12) // SIGUSR2
    | (1 << 15) // SIGTERM
    | (1 << 19); // SIGSTOP

/// Fork, exit and signal records, for the process table: who created
/// whom, who signalled whom, and when a process is gone. Fixed size.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskRecord {
    /// [`kind::FORK`] or [`kind::EXIT`].
    pub kind: u32,
    /// Fork: the new process's tgid. Exit: the exiting tgid. Signal: the
    /// target's tgid.
    pub tgid: u32,
    /// Fork: the creator's tgid (`current` at fork, not `real_parent`,
    /// which `CLONE_PARENT` changes). Signal: the sender's tgid. Exit: 0.
    pub creator: u32,
    /// Exit: `task->exit_code` (status << 8, or the killing signal).
    /// Signal: the signal number.
    pub value: u32,
    /// Fork: the child's `start_boottime`. Signal: the tracepoint's result
    /// (0 delivered, 1 ignored, 2 already pending, ...). Exit: 0.
    pub start_boottime: u64,
    /// `bpf_ktime_get_boot_ns()` at the tracepoint.
    pub boot_ns: u64,
}

/// Size of [`TaskRecord`] on the wire.
pub const TASK_RECORD_SIZE: usize = size_of::<TaskRecord>();

/// Bits of [`ExecHeader::flags`].
pub mod flags {
    /// argv was longer than [`super::ARGV_MAX`]; `argv_true_len` has the
    /// real length.
    pub const ARGV_TRUNCATED: u32 = 1 << 0;
    /// Reading argv from the new process's memory failed; the argv section
    /// is empty.
    pub const ARGV_READ_FAILED: u32 = 1 << 1;
    /// The exe path walk stopped before reaching the root (too deep or too
    /// long); the path is missing its leading components.
    pub const EXE_TRUNCATED: u32 = 1 << 2;
    /// Same for the cwd.
    pub const CWD_TRUNCATED: u32 = 1 << 3;
    /// `filename` or `interp` did not fit in [`super::PATH_MAX`].
    pub const NAME_TRUNCATED: u32 = 1 << 4;
    /// Captured by the classic-tracepoint fallback: no `bprm`, so no
    /// `interp`; the exe comes from `mm->exe_file`.
    pub const FALLBACK: u32 = 1 << 5;
    /// The exe's dentry is unlinked (the file was deleted, or is a memfd).
    pub const EXE_UNLINKED: u32 = 1 << 6;
    /// The exe is not reachable from any mount tree: a memfd or another
    /// internal file. The exe path is just its name (`/memfd:NAME`).
    pub const EXE_DETACHED: u32 = 1 << 7;
}

/// Fixed part of an exec record. Field order keeps every field naturally
/// aligned with no padding, so the layout is the same in both crates and
/// can be checked with `size_of`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecHeader {
    /// [`kind::EXEC`].
    pub kind: u32,
    /// Bits from [`flags`].
    pub flags: u32,
    /// Thread group id of the new image (`current->tgid`).
    pub tgid: u32,
    /// Thread id before exec (`old_pid`): differs from `tgid` when a
    /// non-leader thread called execve.
    pub old_tid: u32,
    /// `real_parent->tgid` at exec time.
    pub ppid: u32,
    /// Real uid / gid, effective uid / gid (`current->cred`), in the init
    /// user namespace.
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// Audit login uid (`u32::MAX` when unset or the kernel lacks audit).
    pub loginuid: u32,
    /// Audit session id (`u32::MAX` when unset or unavailable).
    pub sessionid: u32,
    /// `bprm->argc`, 0 when unknown (fallback path).
    pub argc: u32,
    /// `bpf_ktime_get_boot_ns()` at the tracepoint.
    pub boot_ns: u64,
    /// `task->start_boottime`: with boot id and tgid, identifies the
    /// process for its whole life (ProcessGuid).
    pub start_boottime: u64,
    /// cgroup v2 id of the new process.
    pub cgroup_id: u64,
    /// `comm` after exec (basename of the file, at most 15 bytes).
    pub comm: [u8; COMM_LEN],
    /// Section lengths in bytes, in record order.
    pub filename_len: u32,
    pub interp_len: u32,
    pub exe_len: u32,
    pub cwd_len: u32,
    /// argv bytes in the record.
    pub argv_len: u32,
    /// `arg_end - arg_start`: the real size of argv.
    pub argv_true_len: u32,
    /// The pid in the process's own pid namespace (equals `tgid` in the
    /// initial namespace) and that namespace's level (0 = initial).
    pub ns_pid: u32,
    pub ns_level: u32,
}

/// Size of [`ExecHeader`] on the wire.
pub const EXEC_HEADER_SIZE: usize = size_of::<ExecHeader>();

/// Sentinel for an offset the running kernel does not have (e.g. no
/// `loginuid` without `CONFIG_AUDIT`): the eBPF side skips the read.
pub const NO_OFFSET: u32 = u32::MAX;

/// Kernel struct member offsets, read from the running kernel's BTF by user
/// space at load time and patched into the program as a read-only global.
/// Each field is `struct.member` in bytes; see `sensor::capture::offsets`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Offsets {
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_cred: u32,
    pub task_mm: u32,
    pub task_fs: u32,
    pub task_loginuid: u32,
    pub task_sessionid: u32,
    pub task_start_boottime: u32,
    pub cred_uid: u32,
    pub cred_gid: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
    pub bprm_file: u32,
    pub bprm_filename: u32,
    pub bprm_interp: u32,
    pub bprm_argc: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_exe_file: u32,
    pub file_f_path: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_name_name: u32,
    pub dentry_d_inode: u32,
    pub inode_i_nlink: u32,
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    pub vfsmount_mnt_root: u32,
    pub fs_pwd: u32,
    pub task_pid: u32,
    pub task_thread_pid: u32,
    pub task_exit_code: u32,
    pub pid_level: u32,
    pub pid_numbers: u32,
    pub upid_size: u32,
    pub upid_nr: u32,
    /// Offsets of `filename`'s `__data_loc` word and of `old_pid` in the
    /// classic `sched/sched_process_exec` tracepoint record (from its
    /// `format` file in tracefs).
    pub tp_filename_loc: u32,
    pub tp_old_pid: u32,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are `#[repr(C)]`, made of integers only, with no padding
    // (checked by the size assertions in `sensor::capture`).
    unsafe impl aya::Pod for super::Offsets {}
    unsafe impl bytemuck::Zeroable for super::ExecHeader {}
    unsafe impl bytemuck::Pod for super::ExecHeader {}
    unsafe impl bytemuck::Zeroable for super::TaskRecord {}
    unsafe impl bytemuck::Pod for super::TaskRecord {}
}
