//! sigexec's kernel side: one record per exec, and, only when configured,
//! prevention's in-kernel check of that record (`prevent`).
//!
//! `sched_process_exec` fires in the new image's context after the point of
//! no return of execve, once `bprm` is complete: `current` is the new
//! process, its `mm` holds the argv the kernel copied, `bprm->file` is the
//! file actually loaded (the interpreter for a `#!` script).
//!
//! Two programs share one capture routine:
//! - `sched_process_exec` (`tp_btf`, 5.5+): gets `bprm` as an argument.
//! - `sched_process_exec_tp` (classic tracepoint): the fallback where BTF
//!   tracepoints are refused; it has no `bprm`, so it reads the exe from
//!   `mm->exe_file` and the filename from the tracepoint record, and marks
//!   the record [`flags::FALLBACK`].
//!
//! A third program, `sched_process_exec_prevent` (see [`prevent`]), is
//! loaded only when the config prevents rules: the BTF exec program
//! tail-calls it once the record is complete, and it decides, may kill,
//! and submits the record itself. A tail call, not more code in the exec
//! program: the capture alone takes most of the verifier's budget of one
//! million instructions (the path walks), and a tail-called program has a
//! budget of its own. It needs `bpf_loop` (5.17+); with the program array
//! empty the tail call fails at once and capture goes on as before.
//!
//! Struct offsets are not compiled in: user space reads them from the
//! running kernel's BTF and patches [`OFFSETS`] before load, which lets one
//! object run on every kernel of the lab matrix.
//!
//! The record is assembled in a scratch slot of an array map indexed by CPU
//! (per-CPU maps cap a value at 32 KiB; the slot is 256 KiB) and submitted
//! with `bpf_ringbuf_output` for only the bytes used. Every failed
//! submission is counted in [`LOST`]. The slot is per CPU, so a BPF program
//! preempted mid-capture by another exec on the same CPU (possible on a
//! fully preemptible kernel) could see its slot overwritten; every sensor
//! with per-CPU scratch space shares this window, and it cannot lose a
//! record, only mix two.
#![no_std]
#![no_main]
// BPF has atomic add but no compare-and-swap, so `AtomicU64::fetch_add`
// does not exist for it; the intrinsic lowers to the kernel's atomic add.
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "atomic_xadd for the kill counters")]

use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::generated::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns,
        bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user,
    },
    macros::{btf_tracepoint, map, tracepoint},
    maps::{Array, HashMap, PerCpuArray, ProgramArray, RingBuf},
    programs::{BtfTracePointContext, TracePointContext},
};
use sensor_common::{
    ARGV_MAX, COMM_LEN, EXEC_HEADER_SIZE, ExecHeader, NAME_MAX, NO_OFFSET, Offsets, PATH_DEPTH_MAX,
    PATH_MAX, SCRATCH_SIZE, SIGNAL_MASK, STRINGS_MASK, TaskRecord, flags, kind,
    prevent::{Dfa, Policy, State, tracked},
};

/// Kernel struct offsets, patched by user space before load.
#[unsafe(no_mangle)]
static OFFSETS: Offsets = unsafe { core::mem::zeroed() };

#[repr(C)]
pub struct Scratch {
    buf: [u8; SCRATCH_SIZE],
}

/// One scratch slot per possible CPU; user space sets `max_entries` to the
/// number of possible CPUs at load time.
#[map]
static SCRATCH: Array<Scratch> = Array::with_max_entries(1, 0);

/// Exec records to user space. User space sets the size at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Failed ring-buffer submissions, per CPU (index 0).
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Prevention's policy, automata and switch, written by user space (see
/// `sensor_common::prevent`). One entry each; the DFAs are ~145 KiB.
#[map]
static POLICY: Array<Policy> = Array::with_max_entries(1, 0);
#[map]
static IMAGE_DFA: Array<Dfa> = Array::with_max_entries(1, 0);
#[map]
static ARGV_DFA: Array<Dfa> = Array::with_max_entries(1, 0);
#[map]
static PREVENT_STATE: Array<State> = Array::with_max_entries(1, 0);

/// Slot 0: `sched_process_exec_prevent`, when prevention is configured.
#[map]
static PREVENT_PROG: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Processes under an allow-listed ancestor image (values from
/// `sensor_common::prevent::tracked`), kept by the fork, exec and exit
/// programs while `State::track` is set; only non-zero values are stored.
#[map]
static TRACKED: HashMap<u32, u32> = HashMap::with_max_entries(32768, 0);

macro_rules! off {
    ($field:ident) => {
        // SAFETY: OFFSETS is a plain-integer global; the volatile read keeps
        // LLVM from folding the zero it was compiled with.
        unsafe { core::ptr::read_volatile(&OFFSETS.$field) as usize }
    };
}

// After `off!`, which it uses.
mod prevent;

/// Reads a `T` at `base + off` from kernel memory.
#[inline(always)]
fn read<T: Copy>(base: *const u8, off: usize) -> Option<T> {
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: bpf_probe_read_kernel validates the source and writes exactly
    // size_of::<T>() bytes into `v` on success.
    let r = unsafe {
        bpf_probe_read_kernel(
            v.as_mut_ptr().cast(),
            size_of::<T>() as u32,
            base.wrapping_add(off).cast(),
        )
    };
    if r < 0 {
        None
    } else {
        // SAFETY: initialised by the successful read above.
        Some(unsafe { v.assume_init() })
    }
}

/// Reads a pointer at `base + off`; null if the read fails.
///
/// Branch-free on purpose: `bpf_probe_read_kernel` zeroes the destination
/// on failure, so the result is null without a test. A test here (`match`
/// on the return value) would give the verifier a "known null" path next to
/// an "unknown" one at every read, and inside the path walk those paths
/// multiply instead of merging.
#[inline(always)]
fn read_ptr(base: *const u8, off: usize) -> *const u8 {
    let mut v: *const u8 = core::ptr::null();
    // SAFETY: the helper writes at most size_of::<*const u8>() bytes into v
    // and validates the source.
    unsafe {
        bpf_probe_read_kernel(
            (&raw mut v).cast(),
            size_of::<*const u8>() as u32,
            base.wrapping_add(off).cast(),
        )
    };
    v
}

/// Where a string section lands: masked so the verifier can bound it.
#[inline(always)]
fn at(buf: *mut u8, off: usize) -> *mut c_void {
    buf.wrapping_add(off & STRINGS_MASK).cast()
}

/// Copies a kernel C string to `buf + off`; returns its length without NUL
/// (the NUL is written but not counted, so the next section overwrites it).
#[inline(always)]
fn copy_kstr(buf: *mut u8, off: usize, src: *const u8, truncated: &mut bool) -> usize {
    if src.is_null() {
        return 0;
    }
    // SAFETY: the destination is inside the scratch slot (masked offset plus
    // PATH_MAX stays below SCRATCH_SIZE); the helper bounds the source read.
    let n = unsafe { bpf_probe_read_kernel_str(at(buf, off), PATH_MAX as u32, src.cast()) };
    if n <= 0 {
        return 0;
    }
    let n = n as usize;
    if n >= PATH_MAX {
        *truncated = true;
    }
    n - 1
}

/// Writes the components of `struct path *path`, leaf first, each followed
/// by a NUL, at `buf + off`, and their total length to `*len`. Walks
/// `d_parent` and crosses mounts through `mnt_mountpoint` like the kernel's
/// `prepend_path`, up to the root of the mount tree. Returns whether the
/// walk reached the root.
///
/// Verifier cost: each iteration either crosses a mount or copies a name;
/// both go on to the next iteration. Were the running length kept in a
/// register, the two paths would reach the loop head with different length
/// ranges, the verifier could not prune either, and the states would
/// double per iteration (1M instructions at 16 levels). Kept in map memory
/// (volatile), the length is an unknown scalar the verifier does not track,
/// both paths reach the head in equal states, and verification stays
/// linear in `PATH_DEPTH_MAX`.
#[inline(always)]
fn walk_path(buf: *mut u8, off: usize, path: *const u8, len: *mut u32) -> Walk {
    // SAFETY: `len` points into the scratch slot's header.
    unsafe { core::ptr::write_volatile(len, 0) };
    let mut dentry = read_ptr(path, off!(path_dentry));
    let mut vfsmnt = read_ptr(path, off!(path_mnt));
    if dentry.is_null() || vfsmnt.is_null() {
        return Walk::Cut;
    }
    let mount_mnt = off!(mount_mnt);
    let mut mnt = vfsmnt.wrapping_sub(mount_mnt);
    for _ in 0..PATH_DEPTH_MAX {
        let mnt_root = read_ptr(vfsmnt, off!(vfsmount_mnt_root));
        let parent = read_ptr(dentry, off!(dentry_d_parent));
        if dentry == mnt_root || dentry == parent || parent.is_null() {
            if dentry != mnt_root {
                // A dentry that is its own parent but not a mount root:
                // an internal mount's file (memfd, anonymous inode) or a
                // lazily unmounted tree. Its own name is all there is
                // ("memfd:NAME"), as /proc/PID/exe shows it.
                if !copy_name(buf, off, dentry, len) {
                    return Walk::Cut;
                }
                return Walk::Detached;
            }
            let mnt_parent = read_ptr(mnt, off!(mount_mnt_parent));
            if mnt_parent == mnt || mnt_parent.is_null() {
                return Walk::Root;
            }
            dentry = read_ptr(mnt, off!(mount_mnt_mountpoint));
            mnt = mnt_parent;
            vfsmnt = mnt.wrapping_add(mount_mnt);
            continue;
        }
        if !copy_name(buf, off, dentry, len) {
            return Walk::Cut;
        }
        dentry = parent;
    }
    Walk::Cut
}

/// How a path walk ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Reached the root of the mount tree: the path is complete.
    Root,
    /// Ended at a dentry outside any tree (memfd and other internal files).
    Detached,
    /// Too deep, too long, or a read failed: leading components missing.
    Cut,
}

/// Appends `dentry`'s name and a NUL at `buf + off + *len`, advancing
/// `*len`. False when the path is already too long or the read fails.
#[inline(always)]
fn copy_name(buf: *mut u8, off: usize, dentry: *const u8, len: *mut u32) -> bool {
    // SAFETY: `len` points into the scratch slot's header.
    let written = unsafe { core::ptr::read_volatile(len) } as usize;
    if written > PATH_MAX {
        return false;
    }
    let name = read_ptr(dentry, off!(dentry_d_name_name));
    // SAFETY: masked destination offset + NAME_MAX is inside the slot.
    let n =
        unsafe { bpf_probe_read_kernel_str(at(buf, off + written), NAME_MAX as u32, name.cast()) };
    if n <= 0 {
        return false;
    }
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(len, (written + n as usize) as u32) };
    true
}

/// What the two entry points know about the exec.
struct Source {
    task: *const u8,
    /// `struct file *` of the loaded image.
    file: *const u8,
    filename: *const u8,
    interp: *const u8,
    argc: u32,
    old_tid: u32,
    flags: u32,
}

#[inline(always)]
fn capture(src: &Source, btf_ctx: Option<&BtfTracePointContext>) -> Option<()> {
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let slot = SCRATCH.get_ptr_mut(cpu)?;
    let buf = slot.cast::<u8>();
    let hdr = slot.cast::<ExecHeader>();
    let task = src.task;
    let mut flags = src.flags;

    // SAFETY: `hdr` points at the start of this CPU's scratch slot, which
    // is larger than the header; every write below stays inside it.
    let h = unsafe { &mut *hdr };
    h.kind = kind::EXEC;
    h.tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    h.old_tid = src.old_tid;
    h.argc = src.argc;
    let parent = read_ptr(task, off!(task_real_parent));
    h.ppid = read::<u32>(parent, off!(task_tgid)).unwrap_or(0);
    let cred = read_ptr(task, off!(task_cred));
    h.uid = read::<u32>(cred, off!(cred_uid)).unwrap_or(u32::MAX);
    h.gid = read::<u32>(cred, off!(cred_gid)).unwrap_or(u32::MAX);
    h.euid = read::<u32>(cred, off!(cred_euid)).unwrap_or(u32::MAX);
    h.egid = read::<u32>(cred, off!(cred_egid)).unwrap_or(u32::MAX);
    h.loginuid = u32::MAX;
    h.sessionid = u32::MAX;
    let loginuid = off!(task_loginuid);
    if loginuid != NO_OFFSET as usize {
        h.loginuid = read::<u32>(task, loginuid).unwrap_or(u32::MAX);
    }
    let sessionid = off!(task_sessionid);
    if sessionid != NO_OFFSET as usize {
        h.sessionid = read::<u32>(task, sessionid).unwrap_or(u32::MAX);
    }
    h.start_boottime = read::<u64>(task, off!(task_start_boottime)).unwrap_or(0);
    // The pid in the task's own pid namespace: thread_pid->numbers[level].
    let pid = read_ptr(task, off!(task_thread_pid));
    let level = read::<u32>(pid, off!(pid_level)).unwrap_or(0);
    h.ns_level = level;
    h.ns_pid = h.tgid;
    if level > 0 && level < 32 {
        let upid = off!(pid_numbers) + level as usize * off!(upid_size);
        h.ns_pid = read::<u32>(pid, upid + off!(upid_nr)).unwrap_or(h.tgid);
    }
    // SAFETY: plain helper calls; comm is written into the header.
    unsafe {
        h.boot_ns = bpf_ktime_get_boot_ns();
        h.cgroup_id = bpf_get_current_cgroup_id();
        bpf_get_current_comm(h.comm.as_mut_ptr().cast(), COMM_LEN as u32);
    }

    let mut off = EXEC_HEADER_SIZE;
    let mut name_truncated = false;
    let n = copy_kstr(buf, off, src.filename, &mut name_truncated);
    h.filename_len = n as u32;
    off += n;
    let n = copy_kstr(buf, off, src.interp, &mut name_truncated);
    h.interp_len = n as u32;
    off += n;
    if name_truncated {
        flags |= flags::NAME_TRUNCATED;
    }

    let f_path = src.file.wrapping_add(off!(file_f_path));
    h.exe_len = 0;
    let walk = if src.file.is_null() {
        Walk::Cut
    } else {
        walk_path(buf, off, f_path, &raw mut h.exe_len)
    };
    if walk == Walk::Cut {
        flags |= flags::EXE_TRUNCATED;
    } else if walk == Walk::Detached {
        flags |= flags::EXE_DETACHED;
    }
    // SAFETY: written by walk_path through a raw pointer.
    off += unsafe { core::ptr::read_volatile(&raw const h.exe_len) } as usize;
    if !src.file.is_null() {
        let dentry = read_ptr(f_path, off!(path_dentry));
        let inode = read_ptr(dentry, off!(dentry_d_inode));
        if read::<u32>(inode, off!(inode_i_nlink)) == Some(0) {
            flags |= flags::EXE_UNLINKED;
        }
    }

    let fs = read_ptr(task, off!(task_fs));
    h.cwd_len = 0;
    if fs.is_null()
        || walk_path(buf, off, fs.wrapping_add(off!(fs_pwd)), &raw mut h.cwd_len) != Walk::Root
    {
        flags |= flags::CWD_TRUNCATED;
    }
    // SAFETY: as above.
    off += unsafe { core::ptr::read_volatile(&raw const h.cwd_len) } as usize;

    let mm = read_ptr(task, off!(task_mm));
    let arg_start = read::<u64>(mm, off!(mm_arg_start)).unwrap_or(0);
    let arg_end = read::<u64>(mm, off!(mm_arg_end)).unwrap_or(0);
    let true_len = if arg_end > arg_start {
        arg_end - arg_start
    } else {
        0
    };
    let mut len = true_len;
    if len > ARGV_MAX as u64 {
        len = ARGV_MAX as u64;
        flags |= flags::ARGV_TRUNCATED;
    }
    let argv_off = off & STRINGS_MASK;
    // SAFETY: argv_off < STRINGS_AREA and len <= ARGV_MAX, whose sum is at
    // most SCRATCH_SIZE; the helper validates the user source.
    let r = unsafe {
        bpf_probe_read_user(
            buf.wrapping_add(argv_off).cast(),
            len as u32,
            arg_start as *const c_void,
        )
    };
    if r < 0 {
        flags |= flags::ARGV_READ_FAILED;
        len = 0;
    }
    h.argv_len = len as u32;
    h.argv_true_len = true_len.min(u32::MAX as u64) as u32;
    h.flags = flags;
    h.prevent = 0;
    h.prevent_rules = 0;
    if let Some(ctx) = btf_ctx {
        // Does not return when the prevention program is installed: it
        // submits the record. Fails at once (and we go on) when it is not.
        // SAFETY: the slot holds a program of this type, or nothing.
        unsafe { PREVENT_PROG.tail_call(ctx, 0) };
    }

    let total = argv_off + len as usize;
    // SAFETY: `buf` holds `total` initialised bytes inside the slot.
    let record = unsafe { core::slice::from_raw_parts(buf.cast_const(), total) };
    // Forced: the fork and exit records before it were written without a
    // wake-up, so the kernel's adaptive rule (wake only when the ring was
    // empty) would stay silent here too.
    if EVENTS
        .output::<[u8]>(record, BPF_RB_FORCE_WAKEUP as u64)
        .is_err()
    {
        count_lost();
    }
    Some(())
}

#[inline(always)]
fn count_lost() {
    if let Some(n) = LOST.get_ptr_mut(0) {
        // SAFETY: this CPU's own counter; programs on one CPU do not run
        // concurrently with themselves on that CPU except by preemption,
        // where a lost increment would be the only harm.
        unsafe { *n += 1 };
    }
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    // TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
    let task: *const u8 = ctx.arg(0);
    let old_pid: u32 = ctx.arg(1);
    let bprm: *const u8 = ctx.arg(2);
    let src = Source {
        task,
        file: read_ptr(bprm, off!(bprm_file)),
        filename: read_ptr(bprm, off!(bprm_filename)),
        interp: read_ptr(bprm, off!(bprm_interp)),
        argc: read::<u32>(bprm, off!(bprm_argc)).unwrap_or(0),
        old_tid: old_pid,
        flags: 0,
    };
    if capture(&src, Some(&ctx)).is_none() {
        count_lost();
    }
    0
}

/// Tail-called by `sched_process_exec` with the record complete in this
/// CPU's scratch slot: decides, may kill the new image before its first
/// instruction, and submits the record with the verdict.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec_prevent(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(slot) = SCRATCH.get_ptr_mut(cpu) else {
        count_lost();
        return 0;
    };
    let buf = slot.cast::<u8>();
    // SAFETY: the slot starts with the header the exec program wrote.
    let h = unsafe { &mut *slot.cast::<ExecHeader>() };
    // The same offsets the exec program computed: the strings area is
    // masked, argv follows it.
    let strings = EXEC_HEADER_SIZE
        + h.filename_len as usize
        + h.interp_len as usize
        + h.exe_len as usize
        + h.cwd_len as usize;
    let argv_off = strings & STRINGS_MASK;
    let bprm: *const u8 = ctx.arg(2);
    let same = read_ptr(bprm, off!(bprm_interp)) == read_ptr(bprm, off!(bprm_filename));
    let (verdict, rules) = prevent::decide(buf, h, task, argv_off, same);
    h.prevent = verdict;
    h.prevent_rules = rules;
    let total = argv_off + (h.argv_len as usize & (ARGV_MAX * 2 - 1)).min(ARGV_MAX);
    // SAFETY: `buf` holds the record's bytes inside the slot.
    let record = unsafe { core::slice::from_raw_parts(buf.cast_const(), total) };
    if EVENTS
        .output::<[u8]>(record, BPF_RB_FORCE_WAKEUP as u64)
        .is_err()
    {
        count_lost();
    }
    0
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec_tp(ctx: TracePointContext) -> i32 {
    // SAFETY: plain helper call.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let mm = read_ptr(task, off!(task_mm));
    let record = ctx.as_ptr().cast::<u8>().cast_const();
    // __data_loc: low 16 bits offset from the record start, high 16 length.
    let loc = read::<u32>(record, off!(tp_filename_loc)).unwrap_or(0);
    let src = Source {
        task,
        file: read_ptr(mm, off!(mm_exe_file)),
        filename: record.wrapping_add((loc & 0xffff) as usize),
        interp: core::ptr::null(),
        argc: 0,
        old_tid: read::<u32>(record, off!(tp_old_pid)).unwrap_or(0),
        flags: flags::FALLBACK,
    };
    if capture(&src, None).is_none() {
        count_lost();
    }
    0
}

/// Sends a fork or exit record; counts a loss when the ring is full.
#[inline(always)]
fn task_record(kind: u32, tgid: u32, creator: u32, value: u32, start_boottime: u64) {
    let rec = TaskRecord {
        kind,
        tgid,
        creator,
        value,
        start_boottime,
        // SAFETY: plain helper call.
        boot_ns: unsafe { bpf_ktime_get_boot_ns() },
    };
    // Forks and exits do not wake the reader: they ride along with the
    // next exec record or the reader's periodic drain (every second).
    // Waking it for each of them would triple the wake-ups of an exec storm
    // (fork, exec, exit) for records nobody waits on. Signals do wake it:
    // they are rare and may precede a watched process's death.
    let flags = if kind == kind::SIGNAL {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    };
    if EVENTS.output::<TaskRecord>(&rec, flags).is_err() {
        count_lost();
    }
}

/// New processes, for the process table's creator links. Threads (child
/// pid != child tgid) are skipped: they share their process's entry.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    // TP_PROTO(struct task_struct *parent, struct task_struct *child)
    let child: *const u8 = ctx.arg(1);
    let pid = read::<u32>(child, off!(task_pid)).unwrap_or(0);
    let tgid = read::<u32>(child, off!(task_tgid)).unwrap_or(0);
    if pid == 0 || pid != tgid {
        return 0;
    }
    let creator = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    let start = read::<u64>(child, off!(task_start_boottime)).unwrap_or(0);
    task_record(kind::FORK, tgid, creator, 0, start);
    if prevent::tracking() {
        // SAFETY: a plain u32 value read out of the map.
        if let Some(&parent) = unsafe { TRACKED.get(creator) } {
            // The child's creator is allow-listed or under one; a
            // fork-only child also carries its creator's image.
            let child_flags = tracked::ANCESTOR | (parent & tracked::OWN);
            if parent != 0 {
                let _ = TRACKED.insert(tgid, child_flags, 0);
            }
        }
    }
    0
}

/// Process exits, so the table can forget them after a grace period. Only
/// the thread group leader's exit is reported.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    // TP_PROTO(struct task_struct *p) (6.x adds a bool group_dead)
    let task: *const u8 = ctx.arg(0);
    let pid = read::<u32>(task, off!(task_pid)).unwrap_or(0);
    let tgid = read::<u32>(task, off!(task_tgid)).unwrap_or(0);
    if pid == 0 || pid != tgid {
        return 0;
    }
    let exit_code = read::<u32>(task, off!(task_exit_code)).unwrap_or(0);
    task_record(kind::EXIT, tgid, 0, exit_code, 0);
    if prevent::tracking() {
        let _ = TRACKED.remove(tgid);
    }
    0
}

/// Terminating signals sent by one process to another, so that the death
/// of a watched process can name who killed it, even with a shell built-in
/// `kill` that runs no program.
#[btf_tracepoint(function = "signal_generate")]
pub fn signal_generate(ctx: BtfTracePointContext) -> i32 {
    // TP_PROTO(int sig, struct kernel_siginfo *info, struct task_struct
    //          *task, int group, int result)
    let sig: i32 = ctx.arg(0);
    if !(1..64).contains(&sig) || SIGNAL_MASK & (1u64 << sig) == 0 {
        return 0;
    }
    let task: *const u8 = ctx.arg(2);
    let result: i32 = ctx.arg(4);
    let target = read::<u32>(task, off!(task_tgid)).unwrap_or(0);
    // SAFETY: plain helper call.
    let sender = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    if target == 0 || target == sender {
        return 0;
    }
    task_record(
        kind::SIGNAL,
        target,
        sender,
        sig as u32,
        result as u32 as u64,
    );
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL-compatible: bpf_probe_read_kernel and friends are GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
