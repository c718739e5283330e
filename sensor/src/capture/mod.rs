//! Exec capture: loading and attaching the eBPF program, and reading its
//! ring buffer asynchronously on tokio.
//!
//! - [`btf`]: a small reader of the kernel's BTF, for struct offsets.
//! - [`offsets`]: the offsets the program needs, by name.
//! - [`record`]: decoding ring-buffer bytes into [`ExecRecord`]s.
//!
//! [`Sensor::start`] reads offsets from `/sys/kernel/btf/vmlinux`, patches
//! them into the embedded object, sizes the maps for this machine, and
//! attaches `tp_btf/sched_process_exec`, falling back to the classic
//! tracepoint where the kernel refuses BTF tracepoints.

pub mod btf;
pub mod offsets;
pub mod record;

use std::io;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::{BtfTracePoint, ProgramError, TracePoint},
};
use sensor_common::prevent::{Dfa, MODE_OFF, Policy, State};
use tokio::io::unix::AsyncFd;
use tracing::{debug, info, warn};

pub use record::{DecodeError, ExecRecord, Record};

/// The eBPF object built by `build.rs` from `sensor-ebpf`.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor"));

/// Default ring buffer size. An exec costs ~400 bytes of ring (its record
/// plus the fork and exit records), so 8 MiB holds ~20,000 execs: several
/// seconds of a saturated 2-core host with the reader stalled. The ring is
/// mapped twice into the daemon, so its size counts double in RSS; 4 MiB
/// was measured to lose records on a loaded test host (daemons starting
/// while builds and VMs ran), 16 MiB costs 32 MiB of RSS.
pub const DEFAULT_RINGBUF_BYTES: u32 = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "this binary was built without its eBPF program (AYA_BUILD_SKIP was set); rebuild without it"
    )]
    NoProgram,
    #[error("reading kernel BTF")]
    Btf(#[from] btf::BtfError),
    #[error("counting possible CPUs from {0}")]
    Cpus(&'static str, #[source] io::Error),
    #[error("ring buffer size {0} is not a power of two multiple of the page size")]
    RingSize(u32),
    #[error("loading the eBPF object (are you root, or do you hold CAP_BPF and CAP_PERFMON?)")]
    Load(#[from] aya::EbpfError),
    #[error("program {0} missing from the eBPF object")]
    MissingProgram(&'static str),
    #[error("map {0} missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("attaching {name}: BTF tracepoint refused ({btf}), classic tracepoint refused too")]
    Attach {
        name: &'static str,
        btf: Box<ProgramError>,
        #[source]
        classic: Box<ProgramError>,
    },
    #[error("program {0}")]
    Program(&'static str, #[source] ProgramError),
    #[error("map {0}")]
    Map(&'static str, #[source] aya::maps::MapError),
    #[error("registering the ring buffer with the event loop")]
    Poll(#[source] io::Error),
    #[error(
        "prevention needs the BTF tracepoint and bpf_loop (Linux 5.17 or later); this kernel \
         refused the prevention program ({0}); remove the prevent: rules to run detection only"
    )]
    Prevention(#[source] ProgramError),
}

/// Which hook carries the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// `tp_btf/sched_process_exec`: has `bprm` (filename, interp, file).
    BtfTracepoint,
    /// `tracepoint/sched/sched_process_exec`: no `bprm`, no interp.
    Tracepoint,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub ringbuf_bytes: u32,
    /// Skip `tp_btf` and use the classic tracepoint (tests of the fallback).
    pub force_tracepoint: bool,
    /// Load `sched_process_exec_prevent` (capture plus prevention) instead
    /// of the capture-only program; refused on kernels without it.
    pub prevent: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ringbuf_bytes: DEFAULT_RINGBUF_BYTES,
            force_tracepoint: false,
            prevent: false,
        }
    }
}

/// A loaded, attached exec sensor. Dropping it detaches the programs.
pub struct Sensor {
    /// Owns the programs and their links; dropped last.
    _ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    lost: PerCpuArray<MapData, u64>,
    hook: Hook,
    decode_errors: u64,
    /// Prevention's maps, when the prevention program is attached.
    prevention: Option<PreventMaps>,
}

/// Prevention's maps (`sensor_common::prevent`), written by the daemon.
pub struct PreventMaps {
    policy: Array<MapData, Policy>,
    image: Array<MapData, Dfa>,
    argv: Array<MapData, Dfa>,
    state: Array<MapData, State>,
    tracked: HashMap<MapData, u32, u32>,
}

impl PreventMaps {
    fn take(ebpf: &mut Ebpf) -> Result<PreventMaps, CaptureError> {
        fn array<V: aya::Pod>(
            ebpf: &mut Ebpf,
            name: &'static str,
        ) -> Result<Array<MapData, V>, CaptureError> {
            let map = ebpf.take_map(name).ok_or(CaptureError::MissingMap(name))?;
            Array::try_from(map).map_err(|e| CaptureError::Map(name, e))
        }
        let tracked = ebpf
            .take_map("TRACKED")
            .ok_or(CaptureError::MissingMap("TRACKED"))?;
        Ok(PreventMaps {
            policy: array(ebpf, "POLICY")?,
            image: array(ebpf, "IMAGE_DFA")?,
            argv: array(ebpf, "ARGV_DFA")?,
            state: array(ebpf, "PREVENT_STATE")?,
            tracked: HashMap::try_from(tracked).map_err(|e| CaptureError::Map("TRACKED", e))?,
        })
    }

    /// Installs a policy: prevention is switched off while the tables are
    /// written (the kernel reads them without a lock), then `state` is
    /// written with the new mode. Kill totals survive; the breaker's window
    /// and `tripped` start afresh.
    pub fn install(
        &mut self,
        tables: &crate::prevent::policy::Tables,
        mut state: State,
    ) -> Result<(), aya::maps::MapError> {
        let mut current = self.state.get(&0, 0)?;
        current.mode = MODE_OFF;
        current.track = 1;
        self.state.set(0, current, 0)?;
        // By reference: the tables are boxed, the DFAs ~145 KiB each.
        self.policy.set(0, tables.policy.as_ref(), 0)?;
        self.image.set(0, tables.image.as_ref(), 0)?;
        self.argv.set(0, tables.argv.as_ref(), 0)?;
        state.kills = current.kills;
        state.would_kill = current.would_kill;
        state.track = 1;
        self.state.set(0, state, 0)
    }

    /// The kernel's switch and counters.
    pub fn state(&self) -> Result<State, aya::maps::MapError> {
        self.state.get(&0, 0)
    }

    /// Writes the switch back (after `tripped` was seen, or to stop).
    pub fn set_state(&mut self, state: State) -> Result<(), aya::maps::MapError> {
        self.state.set(0, state, 0)
    }

    /// Adds allow-tracking entries (see `prevent::seed_tracked`); an entry
    /// the kernel already made is kept.
    pub fn seed(&mut self, entries: &[(u32, u32)]) {
        for (tgid, flags) in entries {
            // BPF_NOEXIST: a fork or exec seen since attach knows better.
            if let Err(e) = self.tracked.insert(tgid, flags, 1) {
                debug!(tgid, error = %e, "allow-tracking seed");
            }
        }
    }
}

impl Sensor {
    /// Loads and attaches the program. Must run inside a tokio runtime.
    pub fn start(options: &Options) -> Result<Sensor, CaptureError> {
        if PROGRAM.is_empty() {
            return Err(CaptureError::NoProgram);
        }
        let ring = options.ringbuf_bytes;
        let page = page_size();
        if !ring.is_power_of_two() || ring < page {
            return Err(CaptureError::RingSize(ring));
        }
        raise_memlock_limit();
        let btf = btf::Btf::from_sys_fs()?;
        let layout = offsets::TracepointLayout::from_tracefs().unwrap_or_default();
        let offsets = offsets::from_btf(&btf, layout)?;
        // Ours and aya's parse of the same 5 MiB blob need not coexist.
        drop(btf);
        debug!(?offsets, "kernel struct offsets from BTF");
        let cpus = aya::util::nr_cpus().map_err(|(path, e)| CaptureError::Cpus(path, e))?;

        // One parse of the kernel's BTF serves the loader's relocations and
        // the BTF tracepoint attach (each would otherwise parse its own).
        let kernel_btf = aya::Btf::from_sys_fs().map_err(|e| CaptureError::Load(e.into()))?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&kernel_btf))
            .override_global("OFFSETS", &offsets, true)
            .map_max_entries("SCRATCH", cpus as u32)
            .map_max_entries("EVENTS", ring)
            .load(PROGRAM)?;

        let hook = attach(
            &mut ebpf,
            &kernel_btf,
            options.force_tracepoint,
            options.prevent,
        )?;
        drop(kernel_btf);
        release_free_memory();
        info!(?hook, cpus, ringbuf_bytes = ring, "exec capture attached");

        let ring = ebpf
            .take_map("EVENTS")
            .ok_or(CaptureError::MissingMap("EVENTS"))?;
        let ring = RingBuf::try_from(ring).map_err(|e| CaptureError::Map("EVENTS", e))?;
        // SAFETY: the ring buffer owns its map fd, which stays open and
        // unchanged until the RingBuf (moved into the AsyncFd) is dropped.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| CaptureError::Poll(e.into()))?;
        let lost = ebpf
            .take_map("LOST")
            .ok_or(CaptureError::MissingMap("LOST"))?;
        let lost = PerCpuArray::try_from(lost).map_err(|e| CaptureError::Map("LOST", e))?;
        let prevention = if options.prevent {
            Some(PreventMaps::take(&mut ebpf)?)
        } else {
            None
        };
        Ok(Sensor {
            _ebpf: ebpf,
            ring,
            lost,
            hook,
            decode_errors: 0,
            prevention,
        })
    }

    /// Prevention's maps, when the prevention program is attached.
    pub fn prevention(&mut self) -> Option<&mut PreventMaps> {
        self.prevention.as_mut()
    }

    pub fn hook(&self) -> Hook {
        self.hook
    }

    /// Waits until the ring buffer has records, then appends up to `max`
    /// decoded records to `out`. Returns how many were appended.
    pub async fn read(&mut self, out: &mut Vec<Record>, max: usize) -> io::Result<usize> {
        loop {
            let mut guard = self.ring.readable_mut().await?;
            let n = drain(guard.get_inner_mut(), out, max, &mut self.decode_errors);
            if n > 0 {
                return Ok(n);
            }
            // Empty: the kernel notifies again on the next submission.
            guard.clear_ready();
        }
    }

    /// Appends whatever records are ready now, without waiting (shutdown
    /// drain).
    pub fn drain_now(&mut self, out: &mut Vec<Record>) -> usize {
        drain(
            self.ring.get_mut(),
            out,
            usize::MAX,
            &mut self.decode_errors,
        )
    }

    /// Records the kernel side failed to submit, summed over CPUs.
    pub fn lost(&self) -> Result<u64, aya::maps::MapError> {
        let values = self.lost.get(&0, 0)?;
        Ok(values.iter().sum())
    }

    /// Records that arrived but did not decode (a bug if ever non-zero).
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }
}

fn drain(
    ring: &mut RingBuf<MapData>,
    out: &mut Vec<Record>,
    max: usize,
    errors: &mut u64,
) -> usize {
    let mut n = 0;
    while n < max {
        let Some(item) = ring.next() else { break };
        match record::decode(&item) {
            Ok(r) => {
                out.push(r);
                n += 1;
            }
            Err(e) => {
                *errors += 1;
                warn!(error = %e, "undecodable exec record");
            }
        }
    }
    n
}

fn attach(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    force_tracepoint: bool,
    prevent: bool,
) -> Result<Hook, CaptureError> {
    const TP_PROG: &str = "sched_process_exec_tp";
    const BTF_PROG: &str = "sched_process_exec";
    // Prevention has no fallback: the classic tracepoint program lacks
    // `bprm`, and a kernel without bpf_loop cannot run the scans. Refusing
    // is better than running a sensor that was asked to prevent and can't.
    if prevent {
        install_prevention(ebpf, btf).map_err(CaptureError::Prevention)?;
    }
    let btf_error = if force_tracepoint && !prevent {
        ProgramError::UnexpectedProgramType
    } else {
        match attach_btf(ebpf, btf, BTF_PROG, "sched_process_exec") {
            Ok(()) => {
                // Fork and exit records feed the process table's creator
                // links; without them parents come from the kernel's
                // real_parent and dead entries are pruned against /proc.
                for (prog, tp, loses) in [
                    ("sched_process_fork", "sched_process_fork", "fork tracking"),
                    ("sched_process_exit", "sched_process_exit", "exit tracking"),
                    ("signal_generate", "signal_generate", "signal senders"),
                ] {
                    if let Err(e) = attach_btf(ebpf, btf, prog, tp) {
                        warn!(error = %e, "tp_btf/{tp} refused; no {loses}");
                    }
                }
                return Ok(Hook::BtfTracepoint);
            }
            Err(e) if prevent => return Err(CaptureError::Prevention(e)),
            Err(e) => {
                warn!(error = %e, "tp_btf/sched_process_exec refused; using the classic tracepoint");
                e
            }
        }
    };
    ensure_tracefs();
    let tp: &mut TracePoint = ebpf
        .program_mut(TP_PROG)
        .ok_or(CaptureError::MissingProgram(TP_PROG))?
        .try_into()
        .map_err(|e| CaptureError::Program(TP_PROG, e))?;
    let attached =
        retry_interrupted(|| tp.load()).and_then(|()| tp.attach("sched", "sched_process_exec"));
    match attached {
        Ok(_) => Ok(Hook::Tracepoint),
        Err(classic) => Err(CaptureError::Attach {
            name: "sched_process_exec",
            btf: Box::new(btf_error),
            classic: Box::new(classic),
        }),
    }
}

/// Loads the prevention program (not attached: the exec program
/// tail-calls it) and puts it in slot 0 of `PREVENT_PROG`.
fn install_prevention(ebpf: &mut Ebpf, btf: &aya::Btf) -> Result<(), ProgramError> {
    const PROG: &str = "sched_process_exec_prevent";
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(PROG)
        .ok_or(ProgramError::UnexpectedProgramType)?
        .try_into()?;
    retry_interrupted(|| prog.load("sched_process_exec", btf))?;
    let fd = prog.fd()?.try_clone().map_err(|e| {
        ProgramError::SyscallError(aya::sys::SyscallError {
            call: "dup",
            io_error: e,
        })
    })?;
    let map = ebpf
        .map_mut("PREVENT_PROG")
        .ok_or(ProgramError::UnexpectedProgramType)?;
    let mut slots = ProgramArray::try_from(map).map_err(ProgramError::MapError)?;
    slots.set(0, &fd, 0).map_err(ProgramError::MapError)?;
    Ok(())
}

fn attach_btf(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    name: &str,
    tracepoint: &str,
) -> Result<(), ProgramError> {
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(name)
        .ok_or(ProgramError::UnexpectedProgramType)?
        .try_into()?;
    retry_interrupted(|| prog.load(tracepoint, btf))?;
    prog.attach()?;
    Ok(())
}

/// The verifier abandons a load with EAGAIN when a signal is pending for
/// the loading thread (its main loop checks `signal_pending`), which a busy
/// process sees often while a large program verifies. Retried a bounded
/// number of times with a short pause.
fn retry_interrupted(
    mut load: impl FnMut() -> Result<(), ProgramError>,
) -> Result<(), ProgramError> {
    const ATTEMPTS: u32 = 50;
    let mut attempt = 1;
    loop {
        match load() {
            Err(ProgramError::LoadError { io_error, .. })
                if io_error.kind() == io::ErrorKind::WouldBlock && attempt < ATTEMPTS =>
            {
                debug!(attempt, "verifier interrupted (EAGAIN); retrying");
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Classic tracepoints attach through tracefs. Hosts that boot without it
/// mounted (minimal VMs, some containers) get it mounted at its standard
/// place; failure is left to the attach, which then names tracefs.
fn ensure_tracefs() {
    const TRACEFS: &str = "/sys/kernel/tracing";
    if std::path::Path::new(TRACEFS).join("events").exists()
        || std::path::Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        return;
    }
    // SAFETY: all arguments are NUL-terminated literals.
    let r = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r == 0 {
        info!("mounted tracefs at {TRACEFS}");
    } else {
        debug!(error = %io::Error::last_os_error(), "mounting tracefs at {TRACEFS}");
    }
}

/// Parsing the kernel's BTF (twice: ours and aya's) peaks at tens of MiB of
/// heap that is free once the programs are attached; hand it back to the
/// system so the daemon's resident size reflects its steady state.
fn release_free_memory() {
    // glibc keeps freed heap; musl's allocator returns it by itself.
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(n).unwrap_or(4096)
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it so the
/// 16 MiB ring buffer and scratch slots load there. Newer kernels use memcg
/// accounting and ignore it.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        debug!(error = %io::Error::last_os_error(), "could not raise RLIMIT_MEMLOCK");
    }
}
