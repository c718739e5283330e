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
const _: () = assert!(size_of::<ExecHeader>().is_multiple_of(8));
const _: () =
    assert!(prevent::DFA_TABLE_LEN.is_power_of_two() && prevent::DFA_STATES_MAX <= 1 << 16);
const _: () = assert!(prevent::RULES_MAX <= 32 && prevent::ITEMS_MAX <= 64);

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
    /// Prevention's verdict on this exec: bits from [`prevent::verdict`];
    /// 0 when prevention is off (the capture-only program never sets it).
    pub prevent: u32,
    /// Prevented rules that matched, as bits by their index in the
    /// [`prevent::Policy`] in force.
    pub prevent_rules: u32,
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
    /// `task_struct.flags`, for `PF_KTHREAD` (prevention never kills a
    /// kernel thread).
    pub task_flags: u32,
}

/// Prevention: the fixed-layout policy user space compiles from the
/// prevented Sigma rules (`sensor::prevent`) and the eBPF program's
/// verdict. Everything the kernel decides is a lookup in these tables with
/// bounded loops; nothing here is interpreted beyond them.
///
/// How a rule is decided, bottom up:
/// - *atoms* (bits of a `u64`): "the image, in this view, satisfies one
///   of these Image values", "argv contains this token", "the uid is in
///   this set". Image and argv atoms come from two DFAs run over the
///   record's bytes; uid atoms from [`UidSet`]s.
/// - *items* (bits of a `u64`): one Sigma `field|modifiers: values` entry,
///   [`Item::mask`] of atoms of which any (or all) must be set.
/// - *rules*: a condition in disjunctive normal form over items, at most
///   [`TERMS_MAX`] terms of "these items set, those clear".
///
/// A rule is evaluated once per `Image` view (resolved path,
/// `ImageInvoked`, `Interpreter`), like the user-space engine does; a view
/// the kernel cannot render exactly is skipped and reported as undecided.
pub mod prevent {
    /// Rules prevented at once (bits of [`super::ExecHeader::prevent_rules`]).
    pub const RULES_MAX: usize = 16;
    /// Items across all prevented rules.
    pub const ITEMS_MAX: usize = 64;
    /// Atoms across all prevented rules; the two top bits are reserved.
    pub const ATOMS_MAX: usize = 62;
    /// Set in the resolved (leaf-first) view when the image is one of the
    /// allow-listed ancestor images.
    pub const ATOM_ALLOWED_IMAGE: u32 = 63;
    /// Set in a forward view (`ImageInvoked`, `Interpreter`) when the
    /// string is not the absolute, normalised path user space would make
    /// of it (relative, `//`, `.` or `..` components): the view is not
    /// decided in the kernel.
    pub const ATOM_NOT_NORMAL: u32 = 62;
    /// Terms of one rule's condition in disjunctive normal form.
    pub const TERMS_MAX: usize = 16;
    /// uids in one [`UidSet`] and in the allow-list.
    pub const UIDS_MAX: usize = 16;
    /// uid sets across all prevented rules.
    pub const UID_SETS_MAX: usize = 8;
    /// DFA limits: states, and byte classes (with the end-of-input class).
    pub const DFA_STATES_MAX: usize = 1024;
    pub const DFA_CLASSES_MAX: usize = 64;
    pub const DFA_TABLE_LEN: usize = DFA_STATES_MAX * DFA_CLASSES_MAX;
    /// Mode values of [`State::mode`].
    pub const MODE_OFF: u32 = 0;
    pub const MODE_DRY_RUN: u32 = 1;
    pub const MODE_ENFORCE: u32 = 2;

    /// Values of the allow-tracking map (per tgid).
    pub mod tracked {
        /// The process's current image is an allow-listed ancestor image.
        pub const OWN: u32 = 1 << 0;
        /// A process up its creator chain runs (or ran, when it forked
        /// this one) an allow-listed image.
        pub const ANCESTOR: u32 = 1 << 1;
    }

    /// Bits of [`super::ExecHeader::prevent`].
    pub mod verdict {
        /// The policy was evaluated for this exec.
        pub const CHECKED: u32 = 1 << 0;
        /// A prevented rule matched in a view the kernel decided.
        pub const MATCHED: u32 = 1 << 1;
        /// SIGKILL was sent to the new image before it ran.
        pub const KILLED: u32 = 1 << 2;
        /// Dry-run (or the breaker had tripped): it would have been killed.
        pub const WOULD_KILL: u32 = 1 << 3;
        /// Not killed: the real uid is allow-listed.
        pub const ALLOWED_UID: u32 = 1 << 4;
        /// Not killed: an ancestor runs an allow-listed image.
        pub const ALLOWED_ANCESTOR: u32 = 1 << 5;
        /// Not killed: pid 1 (of any pid namespace), a kernel thread, or
        /// the daemon itself.
        pub const PROTECTED: u32 = 1 << 6;
        /// This kill went over the kill-rate limit: the kernel switched
        /// the host to dry-run and did not kill.
        pub const BREAKER: u32 = 1 << 7;
        /// No decided view matched and at least one view could not be
        /// decided in the kernel: not killed (fail open).
        pub const UNDECIDED: u32 = 1 << 8;
        /// Which views were not decided: the resolved image (path cut,
        /// deleted or memfd), `ImageInvoked`, `Interpreter` (not an
        /// absolute normalised path).
        pub const UNDECIDED_RESOLVED: u32 = 1 << 9;
        pub const UNDECIDED_INVOKED: u32 = 1 << 10;
        pub const UNDECIDED_INTERPRETER: u32 = 1 << 11;
        /// `bpf_send_signal` failed; the process ran.
        pub const SIGNAL_FAILED: u32 = 1 << 12;
    }

    /// A deterministic automaton over bytes, built in user space.
    /// `next[state * DFA_CLASSES_MAX + class]`; `eoi` is the class of the
    /// end of input. `matches[state]` are the atoms set on entering the
    /// state, for the two renderings of a path: `[0]` the leaf-first
    /// component list the kernel keeps for the resolved image (and the
    /// only one for argv), `[1]` a forward string.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct Dfa {
        pub classes: [u8; 256],
        pub start: u32,
        pub eoi: u32,
        pub matches: [[u64; 2]; DFA_STATES_MAX],
        pub next: [u16; DFA_TABLE_LEN],
    }

    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Item {
        /// Atoms this item looks at.
        pub mask: u64,
        /// 1: every atom of `mask` must be set (`|all`); 0: any.
        pub all: u32,
        pub _pad: u32,
    }

    /// One conjunction: every item of `set` matched, none of `clear`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Term {
        pub set: u64,
        pub clear: u64,
    }

    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Rule {
        pub terms: [Term; TERMS_MAX],
        pub n_terms: u32,
        pub _pad: u32,
    }

    /// "The real uid is one of `uids[..n]`" sets atom `atom`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct UidSet {
        pub uids: [u32; UIDS_MAX],
        pub n: u32,
        pub atom: u32,
    }

    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct Policy {
        pub rules: [Rule; RULES_MAX],
        pub items: [Item; ITEMS_MAX],
        pub uid_sets: [UidSet; UID_SETS_MAX],
        pub allow_uids: [u32; UIDS_MAX],
        pub n_rules: u32,
        pub n_uid_sets: u32,
        pub n_allow_uids: u32,
        /// Items in use (the kernel evaluates only these).
        pub n_items: u32,
        /// 1 when a rule can match with no atom set (a term of only
        /// `not`s); otherwise the kernel skips evaluating a view whose
        /// atoms are all clear, the common case of an exec no prevented
        /// value mentions.
        pub empty_matches: u32,
        pub _pad: u32,
    }

    /// Prevention's switch and kill-rate breaker, shared by user space and
    /// the kernel. The kernel counts kills in a window and, past the
    /// limit, sets `mode` to dry-run and `tripped` to 1 itself: the
    /// daemon may lag behind a storm, the kernel cannot.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct State {
        /// `MODE_*`; user space sets it, the breaker lowers it.
        pub mode: u32,
        /// 1 once the breaker switched to dry-run; user space clears it.
        pub tripped: u32,
        /// The daemon's tgid: never killed.
        pub daemon_tgid: u32,
        /// Kills allowed per window.
        pub kill_limit: u32,
        /// 1: the fork and exit programs maintain the allow-tracking map
        /// (set while a prevention policy is loaded).
        pub track: u32,
        pub _pad: u32,
        pub window_ns: u64,
        /// Start of the current window (`bpf_ktime_get_boot_ns`) and kills
        /// in it; updated by the kernel.
        pub window_start: u64,
        pub window_kills: u64,
        /// Totals since load, for `sigexec status`.
        pub kills: u64,
        pub would_kill: u64,
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all are `#[repr(C)]`, made of integers only, with no padding
    // (fields ordered by size; explicit `_pad` fields where needed).
    unsafe impl aya::Pod for super::Offsets {}
    unsafe impl aya::Pod for super::prevent::Dfa {}
    unsafe impl aya::Pod for super::prevent::Policy {}
    unsafe impl aya::Pod for super::prevent::State {}
    unsafe impl bytemuck::Zeroable for super::prevent::Dfa {}
    unsafe impl bytemuck::Pod for super::prevent::Dfa {}
    unsafe impl bytemuck::Zeroable for super::prevent::Policy {}
    unsafe impl bytemuck::Pod for super::prevent::Policy {}
    unsafe impl bytemuck::Zeroable for super::ExecHeader {}
    unsafe impl bytemuck::Pod for super::ExecHeader {}
    unsafe impl bytemuck::Zeroable for super::TaskRecord {}
    unsafe impl bytemuck::Pod for super::TaskRecord {}
}
