//! Prevention: decide, on the record already assembled in the scratch
//! slot, whether a prevented rule matches this exec, and kill the new
//! image with `bpf_send_signal(SIGKILL)` before it runs.
//!
//! `sched_process_exec` fires in the new image's context after the point
//! of no return; a pending SIGKILL is delivered on the way back to user
//! mode, so the image never executes an instruction. No LSM is needed.
//!
//! The policy is tables (`sensor_common::prevent`): two DFAs, one over
//! image paths and one over argv, set "atoms"; items and rules in
//! disjunctive normal form combine them. Scans run under `bpf_loop`
//! (5.17+): the verifier checks one step, not one step per byte, which is
//! what lets argv be scanned to its captured length (128 KiB). User space
//! loads this program only where `bpf_loop` exists.
//!
//! Safety rails, all in here because the daemon can lag: never pid 1 (of
//! any namespace), a kernel thread or the daemon; a kill-rate breaker that
//! switches the host to dry-run by itself.

use core::{ffi::c_void, intrinsics::AtomicOrdering};

use aya_ebpf::helpers::generated::{bpf_ktime_get_boot_ns, bpf_loop, bpf_send_signal};
use sensor_common::{
    EXEC_HEADER_SIZE, ExecHeader, SCRATCH_SIZE, flags,
    prevent::{
        ATOM_ALLOWED_IMAGE, ATOM_NOT_NORMAL, DFA_CLASSES_MAX, DFA_STATES_MAX, DFA_TABLE_LEN, Dfa,
        ITEMS_MAX, MODE_DRY_RUN, MODE_ENFORCE, MODE_OFF, Policy, RULES_MAX, TERMS_MAX,
        UID_SETS_MAX, UIDS_MAX, tracked, verdict,
    },
};

use crate::{ARGV_DFA, IMAGE_DFA, OFFSETS, POLICY, PREVENT_STATE, TRACKED, read};

const SIGKILL: u32 = 9;
/// `PF_KTHREAD` from include/linux/sched.h (stable since 2.6).
const PF_KTHREAD: u32 = 0x0020_0000;

/// Atomic `*counter += 1`, shared by every CPU.
#[inline(always)]
fn add(counter: *mut u64) {
    // SAFETY: `counter` points at an aligned u64 in a map value.
    unsafe { core::intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, 1) };
}

/// Whether the fork and exit programs keep the allow-tracking map.
#[inline(always)]
pub fn tracking() -> bool {
    match PREVENT_STATE.get_ptr(0) {
        Some(s) => {
            // SAFETY: a plain u32 field of the map value; volatile because
            // user space writes it.
            let track = unsafe { core::ptr::read_volatile(&raw const (*s).track) };
            track != 0
        }
        None => false,
    }
}

/// One DFA scan, shared with the `bpf_loop` callback through the caller's
/// stack.
#[repr(C)]
struct Scan {
    buf: *const u8,
    dfa: *const Dfa,
    off: u64,
    state: u64,
    found: [u64; 2],
}

/// One byte: `state = next[state][class(byte)]`, then collect the atoms
/// of the state entered. The DFA reports a match on the transition after
/// it (regex-automata's delayed matches), so collecting at every state and
/// after the end-of-input transition sees every match.
extern "C" fn scan_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Scan` on the caller's stack, alive for the
    // whole `bpf_loop` call.
    let s = unsafe { &mut *ctx.cast::<Scan>() };
    // SAFETY: the offset is masked into the scratch slot.
    let byte = unsafe {
        *s.buf
            .add((s.off.wrapping_add(i)) as usize & (SCRATCH_SIZE - 1))
    };
    // SAFETY: user space wrote the DFA before enabling prevention; every
    // index below is masked into its array.
    let dfa = unsafe { &*s.dfa };
    let class = dfa.classes[byte as usize] as usize & (DFA_CLASSES_MAX - 1);
    let state = s.state as usize & (DFA_STATES_MAX - 1);
    let next = dfa.next[(state * DFA_CLASSES_MAX + class) & (DFA_TABLE_LEN - 1)] as usize
        & (DFA_STATES_MAX - 1);
    s.state = next as u64;
    s.found[0] |= dfa.matches[next][0];
    s.found[1] |= dfa.matches[next][1];
    0
}

/// Runs `dfa` over `len` bytes at `buf + off` and the end of input;
/// returns the atoms of both renderings.
#[inline(always)]
fn scan(buf: *const u8, dfa: &Dfa, off: usize, len: u32) -> [u64; 2] {
    let mut s = Scan {
        buf,
        dfa,
        off: off as u64,
        state: u64::from(dfa.start),
        found: [0, 0],
    };
    // SAFETY: the callback is a static function taking (u64, *mut c_void);
    // the context outlives the call.
    unsafe {
        bpf_loop(
            len,
            scan_step as *mut c_void,
            (&raw mut s).cast::<c_void>(),
            0,
        )
    };
    let state = s.state as usize & (DFA_STATES_MAX - 1);
    let eoi = dfa.eoi as usize & (DFA_CLASSES_MAX - 1);
    let next = dfa.next[(state * DFA_CLASSES_MAX + eoi) & (DFA_TABLE_LEN - 1)] as usize
        & (DFA_STATES_MAX - 1);
    [
        s.found[0] | dfa.matches[next][0],
        s.found[1] | dfa.matches[next][1],
    ]
}

/// Evaluation of items, terms and uid sets, one `bpf_loop` step each.
///
/// Not plain loops: each item or term sets a bit or not, and the verifier
/// follows both outcomes with the accumulated mask as a precise value, so
/// the states of a 64-item loop never merge (it hit the 1M-instruction
/// limit). Under `bpf_loop` the step is verified once.
#[repr(C)]
struct Eval {
    policy: *const Policy,
    atoms: u64,
    uid: u64,
    items: u64,
    rules: u64,
}

extern "C" fn item_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the caller's `Eval`; `policy` a map value.
    let e = unsafe { &mut *ctx.cast::<Eval>() };
    // SAFETY: as above; the index is masked into the array.
    let item = unsafe { &(*e.policy).items[i as usize & (ITEMS_MAX - 1)] };
    let hit = e.atoms & item.mask;
    let ok = if item.all != 0 {
        item.mask != 0 && hit == item.mask
    } else {
        hit != 0
    };
    if ok {
        e.items |= 1 << (i & 63);
    }
    0
}

extern "C" fn term_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: as in `item_step`.
    let e = unsafe { &mut *ctx.cast::<Eval>() };
    let r = (i as usize / TERMS_MAX) & (RULES_MAX - 1);
    let t = i as usize % TERMS_MAX;
    // SAFETY: both indices are masked into their arrays.
    let rule = unsafe { &(*e.policy).rules[r] };
    let term = &rule.terms[t];
    if (t as u32) < rule.n_terms && e.items & term.set == term.set && e.items & term.clear == 0 {
        e.rules |= 1 << r;
    }
    0
}

extern "C" fn uid_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: as in `item_step`.
    let e = unsafe { &mut *ctx.cast::<Eval>() };
    let s = (i as usize / UIDS_MAX) & (UID_SETS_MAX - 1);
    let u = i as usize % UIDS_MAX;
    // SAFETY: both indices are masked into their arrays.
    let set = unsafe { &(*e.policy).uid_sets[s] };
    if (u as u32) < set.n && u64::from(set.uids[u]) == e.uid {
        e.atoms |= 1 << (set.atom & 63);
    }
    0
}

/// Runs `step` `n` times over `e`.
#[inline(always)]
fn run(n: u32, step: extern "C" fn(u64, *mut c_void) -> i64, e: &mut Eval) {
    // SAFETY: the callback is a static function; `e` outlives the call.
    unsafe { bpf_loop(n, step as *mut c_void, (e as *mut Eval).cast(), 0) };
}

/// Rules (bits) matching with these atoms.
#[inline(always)]
fn rules_matching(policy: &Policy, atoms: u64) -> u32 {
    // No atom of any item set: no item matches, and only a rule with a
    // term of `not`s alone could (user space says whether there is one).
    // Most execs end here, without a step of the loops below.
    if atoms & !(1 << ATOM_NOT_NORMAL | 1 << ATOM_ALLOWED_IMAGE) == 0 && policy.empty_matches == 0 {
        return 0;
    }
    let mut e = Eval {
        policy,
        atoms,
        uid: 0,
        items: 0,
        rules: 0,
    };
    run(policy.n_items.min(ITEMS_MAX as u32), item_step, &mut e);
    run(
        policy.n_rules.min(RULES_MAX as u32) * TERMS_MAX as u32,
        term_step,
        &mut e,
    );
    e.rules as u32
}

/// The verdict on the exec whose record is in `buf` (bits of
/// `sensor_common::prevent::verdict`) and the rules that matched.
#[inline(always)]
///
/// `interp_is_filename`: `bprm->interp` is `bprm->filename` (no `#!`
/// rewrite): user space shows no `Interpreter` then, and that view is not
/// evaluated.
pub fn decide(
    buf: *mut u8,
    h: &ExecHeader,
    task: *const u8,
    argv_off: usize,
    interp_is_filename: bool,
) -> (u32, u32) {
    let Some(state) = PREVENT_STATE.get_ptr_mut(0) else {
        return (0, 0);
    };
    // SAFETY: the map value lives as long as the program; fields written
    // by user space are read volatile.
    let mode = unsafe { core::ptr::read_volatile(&raw const (*state).mode) };
    if mode == MODE_OFF {
        return (0, 0);
    }
    let (Some(policy), Some(image), Some(argv)) =
        (POLICY.get(0), IMAGE_DFA.get(0), ARGV_DFA.get(0))
    else {
        return (0, 0);
    };
    let buf = buf.cast_const();
    let mut v = verdict::CHECKED;

    // Views of Image, rendered as the kernel has them.
    let filename_off = EXEC_HEADER_SIZE;
    let interp_off = filename_off + h.filename_len as usize;
    let exe_off = interp_off + h.interp_len as usize;
    let resolved = scan(buf, image, exe_off, h.exe_len)[0];
    let invoked = scan(buf, image, filename_off, h.filename_len)[1];
    let has_interp = h.interp_len > 0 && !interp_is_filename;
    let interp = if has_interp {
        scan(buf, image, interp_off, h.interp_len)[1]
    } else {
        0
    };
    // A cut, deleted or detached exe is not the string user space shows
    // (`... (deleted)`, missing leading components).
    let resolved_ok =
        h.flags & (flags::EXE_TRUNCATED | flags::EXE_DETACHED | flags::EXE_UNLINKED) == 0;
    let invoked_ok = invoked & (1 << ATOM_NOT_NORMAL) == 0 && h.flags & flags::NAME_TRUNCATED == 0;
    let interp_ok =
        has_interp && interp & (1 << ATOM_NOT_NORMAL) == 0 && h.flags & flags::NAME_TRUNCATED == 0;

    // Atoms every view shares: argv tokens and uid sets.
    // `CommandLine` is argv joined with spaces: the NULs between arguments
    // read as spaces (the DFA's class map), the final one not at all.
    let mut argv_len = h.argv_len;
    if argv_len > 0 {
        let last = (argv_off + argv_len as usize - 1) & (SCRATCH_SIZE - 1);
        // SAFETY: masked into the scratch slot.
        if unsafe { *buf.add(last) } == 0 {
            argv_len -= 1;
        }
    }
    let mut uids = Eval {
        policy,
        atoms: scan(buf, argv, argv_off, argv_len)[0],
        uid: u64::from(h.uid),
        items: 0,
        rules: 0,
    };
    run(
        policy.n_uid_sets.min(UID_SETS_MAX as u32) * UIDS_MAX as u32,
        uid_step,
        &mut uids,
    );
    let common = uids.atoms;
    let mut rules = 0u32;
    if resolved_ok {
        rules |= rules_matching(policy, common | resolved);
    }
    if invoked_ok {
        rules |= rules_matching(policy, common | invoked);
    }
    if interp_ok {
        rules |= rules_matching(policy, common | interp);
    }
    rules &= (1u32 << policy.n_rules.min(RULES_MAX as u32)) - 1;

    // Allow-tracking: read this process's entry before the exec changes
    // its own image.
    // SAFETY: a plain u32 value.
    let entry = unsafe { TRACKED.get(h.tgid) }.copied().unwrap_or(0);
    let own_allowed = resolved_ok && resolved & (1 << ATOM_ALLOWED_IMAGE) != 0;
    let updated = (entry & tracked::ANCESTOR) | if own_allowed { tracked::OWN } else { 0 };
    if updated != entry {
        if updated == 0 {
            let _ = TRACKED.remove(h.tgid);
        } else {
            let _ = TRACKED.insert(h.tgid, updated, 0);
        }
    }

    if rules == 0 {
        if !resolved_ok {
            v |= verdict::UNDECIDED | verdict::UNDECIDED_RESOLVED;
        }
        if !invoked_ok {
            v |= verdict::UNDECIDED | verdict::UNDECIDED_INVOKED;
        }
        if has_interp && !interp_ok {
            v |= verdict::UNDECIDED | verdict::UNDECIDED_INTERPRETER;
        }
        return (v, 0);
    }
    v |= verdict::MATCHED;

    // The real uid or the audit login uid: every KESL stop runs as root,
    // so what tells an admin's `sudo systemctl stop kesl` from an
    // intruder's is who logged in (sudo and su keep the login uid; a
    // service such as a web server has none).
    for u in 0..UIDS_MAX {
        if (u as u32) < policy.n_allow_uids
            && (policy.allow_uids[u] == h.uid
                || (h.loginuid != u32::MAX && policy.allow_uids[u] == h.loginuid))
        {
            v |= verdict::ALLOWED_UID;
        }
    }
    if entry & (tracked::ANCESTOR) != 0 {
        v |= verdict::ALLOWED_ANCESTOR;
    }
    let task_flags = read::<u32>(task, off!(task_flags)).unwrap_or(PF_KTHREAD);
    // SAFETY: as above.
    let daemon = unsafe { core::ptr::read_volatile(&raw const (*state).daemon_tgid) };
    if h.tgid <= 1 || h.ns_pid == 1 || task_flags & PF_KTHREAD != 0 || h.tgid == daemon {
        v |= verdict::PROTECTED;
    }
    if v & (verdict::ALLOWED_UID | verdict::ALLOWED_ANCESTOR | verdict::PROTECTED) != 0 {
        return (v, rules);
    }
    // SAFETY: the counters are naturally aligned u64 fields of the map
    // value, which lives as long as the program.
    let (kills, would_kill, window_kills) = unsafe {
        (
            &raw mut (*state).kills,
            &raw mut (*state).would_kill,
            &raw mut (*state).window_kills,
        )
    };
    if mode != MODE_ENFORCE {
        v |= verdict::WOULD_KILL;
        add(would_kill);
        return (v, rules);
    }
    // The breaker: kills per window, counted here so that a storm is cut
    // off at the kernel's pace, not the daemon's.
    // SAFETY: plain helper call; the window fields are u64s of the value.
    unsafe {
        let now = bpf_ktime_get_boot_ns();
        let start = core::ptr::read_volatile(&raw const (*state).window_start);
        let window = core::ptr::read_volatile(&raw const (*state).window_ns);
        if now.wrapping_sub(start) > window {
            // Racy between CPUs on purpose: two resets in one instant
            // only forget a kill or two of the old window.
            core::ptr::write_volatile(&raw mut (*state).window_start, now);
            core::ptr::write_volatile(window_kills, 0);
        }
    }
    add(window_kills);
    // SAFETY: as above.
    let in_window = unsafe { core::ptr::read_volatile(window_kills) };
    // SAFETY: as above.
    let limit = unsafe { core::ptr::read_volatile(&raw const (*state).kill_limit) };
    if in_window > u64::from(limit) {
        // SAFETY: as above; user space reads both and clears `tripped`.
        unsafe {
            core::ptr::write_volatile(&raw mut (*state).mode, MODE_DRY_RUN);
            core::ptr::write_volatile(&raw mut (*state).tripped, 1);
        }
        add(would_kill);
        return (v | verdict::BREAKER | verdict::WOULD_KILL, rules);
    }
    // SAFETY: plain helper call; signals `current`, the new image.
    if unsafe { bpf_send_signal(SIGKILL) } < 0 {
        return (v | verdict::SIGNAL_FAILED, rules);
    }
    add(kills);
    (v | verdict::KILLED, rules)
}
