//! Decoding of the kernel's exec records (layout in `sensor_common`) into
//! owned [`ExecRecord`]s.
//!
//! Records come from our own eBPF program, but decoding still treats them as
//! untrusted bytes: every length is checked against the buffer, and a record
//! that does not add up is an error, never a panic or an out-of-bounds read.

use sensor_common::{EXEC_HEADER_SIZE, ExecHeader, TASK_RECORD_SIZE, TaskRecord, flags, kind};
use thiserror::Error;

/// One ring-buffer record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Boxed: an exec record is ~200 bytes of owned buffers' headers, the
    /// others 16, and most records in a storm are forks and exits.
    Exec(Box<ExecRecord>),
    /// A new process (not a thread): `tgid` was forked by `creator`.
    Fork {
        tgid: u32,
        creator: u32,
        start_boottime: u64,
    },
    /// The thread group `tgid` ended with `exit_code` (the kernel's
    /// `status << 8 | signal`).
    Exit {
        tgid: u32,
        exit_code: u32,
        boot_ns: u64,
    },
    /// `sender` sent the terminating signal `signal` to `target`; `result`
    /// is the kernel's (0 delivered, 1 ignored, 2 already pending).
    Signal {
        target: u32,
        sender: u32,
        signal: u32,
        result: u32,
        boot_ns: u64,
    },
}

/// One exec as the kernel saw it, before any enrichment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecRecord {
    pub tgid: u32,
    pub old_tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// `None` when unset (`(uid_t)-1`) or unavailable.
    pub loginuid: Option<u32>,
    pub sessionid: Option<u32>,
    pub argc: u32,
    pub boot_ns: u64,
    pub start_boottime: u64,
    pub cgroup_id: u64,
    pub comm: Vec<u8>,
    /// `bprm->filename`: the path as given to execve (may be relative).
    pub filename: Vec<u8>,
    /// `bprm->interp`: equals `filename` unless a binfmt handler (`#!`)
    /// replaced it; empty on the fallback path.
    pub interp: Vec<u8>,
    /// Absolute path of the loaded file (the interpreter for a script),
    /// from the dentry walk.
    pub exe: Vec<u8>,
    /// Absolute cwd of the new process.
    pub cwd: Vec<u8>,
    /// argv strings, without their NULs.
    pub argv: Vec<Vec<u8>>,
    /// Bytes of argv in the process (NULs included), however many were
    /// captured.
    pub argv_true_len: u32,
    /// Bits from `sensor_common::flags`.
    pub flags: u32,
    /// The pid in the process's own pid namespace, and that namespace's
    /// depth (0 = the initial namespace, where `ns_pid == tgid`).
    pub ns_pid: u32,
    pub ns_level: u32,
    /// Prevention's verdict (`sensor_common::prevent::verdict` bits) and
    /// the prevented rules that matched, by policy bit; 0 when off.
    pub prevent: u32,
    pub prevent_rules: u32,
}

impl ExecRecord {
    pub fn argv_truncated(&self) -> bool {
        self.flags & flags::ARGV_TRUNCATED != 0
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown record kind {0}")]
    Kind(u32),
    #[error("record sections add up to {want} bytes but the record has {have}")]
    Sections { want: usize, have: usize },
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let kind = bytes
        .get(..4)
        .map(|k| u32::from_ne_bytes([k[0], k[1], k[2], k[3]]))
        .ok_or(DecodeError::Short(bytes.len()))?;
    match kind {
        kind::EXEC => decode_exec(bytes).map(|r| Record::Exec(Box::new(r))),
        kind::FORK | kind::EXIT | kind::SIGNAL => {
            let raw = bytes
                .get(..TASK_RECORD_SIZE)
                .ok_or(DecodeError::Short(bytes.len()))?;
            let t: TaskRecord = bytemuck::pod_read_unaligned(raw);
            Ok(match kind {
                kind::FORK => Record::Fork {
                    tgid: t.tgid,
                    creator: t.creator,
                    start_boottime: t.start_boottime,
                },
                kind::EXIT => Record::Exit {
                    tgid: t.tgid,
                    exit_code: t.value,
                    boot_ns: t.boot_ns,
                },
                _ => Record::Signal {
                    target: t.tgid,
                    sender: t.creator,
                    signal: t.value,
                    result: t.start_boottime as u32,
                    boot_ns: t.boot_ns,
                },
            })
        }
        other => Err(DecodeError::Kind(other)),
    }
}

/// Decodes an exec record.
pub fn decode_exec(bytes: &[u8]) -> Result<ExecRecord, DecodeError> {
    let header = bytes
        .get(..EXEC_HEADER_SIZE)
        .ok_or(DecodeError::Short(bytes.len()))?;
    let h: ExecHeader = bytemuck::pod_read_unaligned(header);
    if h.kind != kind::EXEC {
        return Err(DecodeError::Kind(h.kind));
    }
    let lens = [
        h.filename_len,
        h.interp_len,
        h.exe_len,
        h.cwd_len,
        h.argv_len,
    ];
    let want = lens
        .iter()
        .try_fold(EXEC_HEADER_SIZE, |acc, &n| acc.checked_add(n as usize))
        .unwrap_or(usize::MAX);
    if want != bytes.len() {
        return Err(DecodeError::Sections {
            want,
            have: bytes.len(),
        });
    }
    let mut rest = &bytes[EXEC_HEADER_SIZE..];
    let mut take = |n: u32| {
        let (section, tail) = rest.split_at(n as usize);
        rest = tail;
        section
    };
    let filename = take(h.filename_len).to_vec();
    let interp = take(h.interp_len).to_vec();
    let exe = join_components(take(h.exe_len));
    let cwd = join_components(take(h.cwd_len));
    let argv = split_argv(take(h.argv_len));
    let comm_end = memchr::memchr(0, &h.comm).unwrap_or(h.comm.len());
    let unset = |v: u32| (v != u32::MAX).then_some(v);
    Ok(ExecRecord {
        tgid: h.tgid,
        old_tid: h.old_tid,
        ppid: h.ppid,
        uid: h.uid,
        gid: h.gid,
        euid: h.euid,
        egid: h.egid,
        loginuid: unset(h.loginuid),
        sessionid: unset(h.sessionid),
        argc: h.argc,
        boot_ns: h.boot_ns,
        start_boottime: h.start_boottime,
        cgroup_id: h.cgroup_id,
        comm: h.comm[..comm_end].to_vec(),
        filename,
        interp,
        exe,
        cwd,
        argv,
        argv_true_len: h.argv_true_len,
        flags: h.flags,
        ns_pid: h.ns_pid,
        ns_level: h.ns_level,
        prevent: h.prevent,
        prevent_rules: h.prevent_rules,
    })
}

/// Turns leaf-first, NUL-terminated components into an absolute path.
/// No components means the root itself (or nothing was walked: the header
/// flags tell which).
fn join_components(section: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(section.len() + 1);
    let parts = section
        .split(|&b| b == 0)
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>();
    for part in parts.iter().rev() {
        path.push(b'/');
        path.extend_from_slice(part);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    path
}

/// Splits the raw argv area on NULs. The kernel ends every argument with a
/// NUL, so a trailing NUL closes the last argument rather than starting an
/// empty one; empty arguments inside (`a '' b`) are kept. A truncated area
/// ends mid-argument: that partial argument is kept.
fn split_argv(area: &[u8]) -> Vec<Vec<u8>> {
    if area.is_empty() {
        return Vec::new();
    }
    let body = area.strip_suffix(&[0]).unwrap_or(area);
    body.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sections<'a> {
        filename: &'a [u8],
        interp: &'a [u8],
        exe: &'a [u8],
        cwd: &'a [u8],
        argv: &'a [u8],
    }

    fn record(h: ExecHeader, s: &Sections<'_>) -> Vec<u8> {
        let mut h = h;
        h.kind = kind::EXEC;
        h.filename_len = s.filename.len() as u32;
        h.interp_len = s.interp.len() as u32;
        h.exe_len = s.exe.len() as u32;
        h.cwd_len = s.cwd.len() as u32;
        h.argv_len = s.argv.len() as u32;
        let mut out = bytemuck::bytes_of(&h).to_vec();
        for part in [s.filename, s.interp, s.exe, s.cwd, s.argv] {
            out.extend_from_slice(part);
        }
        out
    }

    fn kesl() -> Sections<'static> {
        Sections {
            filename: b"/etc/init.d/kesl",
            interp: b"/bin/sh",
            exe: b"dash\0bin\0usr\0",
            cwd: b"root\0",
            argv: b"/bin/sh\0/etc/init.d/kesl\0stop\0",
        }
    }

    #[test]
    fn decodes_a_script_exec() {
        let h = ExecHeader {
            tgid: 42,
            ppid: 1,
            loginuid: u32::MAX,
            sessionid: 7,
            comm: *b"kesl\0\0\0\0\0\0\0\0\0\0\0\0",
            argv_true_len: 31,
            ..Default::default()
        };
        let r = decode_exec(&record(h, &kesl())).expect("valid record");
        assert_eq!(r.tgid, 42);
        assert_eq!(r.exe, b"/usr/bin/dash");
        assert_eq!(r.cwd, b"/root");
        assert_eq!(r.filename, b"/etc/init.d/kesl");
        assert_eq!(r.interp, b"/bin/sh");
        assert_eq!(r.comm, b"kesl");
        assert_eq!(r.loginuid, None);
        assert_eq!(r.sessionid, Some(7));
        assert_eq!(
            r.argv,
            vec![
                b"/bin/sh".to_vec(),
                b"/etc/init.d/kesl".to_vec(),
                b"stop".to_vec()
            ]
        );
        assert!(!r.argv_truncated());
    }

    #[test]
    fn decodes_fork_and_exit_records() {
        let fork = TaskRecord {
            kind: kind::FORK,
            tgid: 20,
            creator: 10,
            start_boottime: 5,
            ..Default::default()
        };
        assert_eq!(
            decode(bytemuck::bytes_of(&fork)),
            Ok(Record::Fork {
                tgid: 20,
                creator: 10,
                start_boottime: 5
            })
        );
        let exit = TaskRecord {
            kind: kind::EXIT,
            tgid: 20,
            value: 9,
            boot_ns: 9,
            ..Default::default()
        };
        assert_eq!(
            decode(bytemuck::bytes_of(&exit)),
            Ok(Record::Exit {
                tgid: 20,
                exit_code: 9,
                boot_ns: 9
            })
        );
        let signal = TaskRecord {
            kind: kind::SIGNAL,
            tgid: 20,
            creator: 30,
            value: 15,
            start_boottime: 0,
            boot_ns: 7,
        };
        assert_eq!(
            decode(bytemuck::bytes_of(&signal)),
            Ok(Record::Signal {
                target: 20,
                sender: 30,
                signal: 15,
                result: 0,
                boot_ns: 7
            })
        );
        assert_eq!(
            decode(&bytemuck::bytes_of(&exit)[..8]),
            Err(DecodeError::Short(8))
        );
    }

    #[test]
    fn keeps_empty_arguments() {
        let s = Sections {
            argv: b"printf\0\0b\0",
            ..kesl()
        };
        let r = decode_exec(&record(ExecHeader::default(), &s)).expect("valid record");
        assert_eq!(r.argv, vec![b"printf".to_vec(), Vec::new(), b"b".to_vec()]);
    }

    #[test]
    fn argc_zero_is_an_empty_argv() {
        let s = Sections {
            argv: b"",
            ..kesl()
        };
        let r = decode_exec(&record(ExecHeader::default(), &s)).expect("valid record");
        assert!(r.argv.is_empty());
    }

    #[test]
    fn truncated_argv_keeps_the_partial_argument_and_true_length() {
        let h = ExecHeader {
            flags: flags::ARGV_TRUNCATED,
            argv_true_len: 200_000,
            ..Default::default()
        };
        let s = Sections {
            argv: b"echo\0aaaa",
            ..kesl()
        };
        let r = decode_exec(&record(h, &s)).expect("valid record");
        assert_eq!(r.argv, vec![b"echo".to_vec(), b"aaaa".to_vec()]);
        assert!(r.argv_truncated());
        assert_eq!(r.argv_true_len, 200_000);
    }

    #[test]
    fn invalid_utf8_is_kept_as_bytes() {
        let s = Sections {
            argv: b"cat\0\xff\xfe\n\0",
            exe: b"\xc3(\0tmp\0",
            ..kesl()
        };
        let r = decode_exec(&record(ExecHeader::default(), &s)).expect("valid record");
        assert_eq!(r.argv[1], b"\xff\xfe\n");
        assert_eq!(r.exe, b"/tmp/\xc3(");
    }

    #[test]
    fn root_exe_and_empty_walk() {
        let s = Sections { exe: b"", ..kesl() };
        let r = decode_exec(&record(ExecHeader::default(), &s)).expect("valid record");
        assert_eq!(r.exe, b"/");
    }

    #[test]
    fn short_and_inconsistent_records_are_errors() {
        assert_eq!(decode(&[0; 3]), Err(DecodeError::Short(3)));
        assert_eq!(decode_exec(&[1, 0, 0, 0, 0]), Err(DecodeError::Short(5)));
        let mut bytes = record(ExecHeader::default(), &kesl());
        bytes.pop();
        let have = bytes.len();
        assert_eq!(
            decode_exec(&bytes),
            Err(DecodeError::Sections {
                want: have + 1,
                have
            })
        );
        let mut bytes = record(ExecHeader::default(), &kesl());
        bytes[0] = 9;
        assert_eq!(decode(&bytes), Err(DecodeError::Kind(9)));
        // Lengths that overflow when added are an error too.
        let h = ExecHeader {
            kind: kind::EXEC,
            filename_len: u32::MAX,
            interp_len: u32::MAX,
            ..Default::default()
        };
        assert!(matches!(
            decode_exec(bytemuck::bytes_of(&h)),
            Err(DecodeError::Sections { .. })
        ));
    }
}
