//! Hostile argv against the running daemon: newlines, ANSI escapes, empty
//! arguments (NULs back to back in the argv area), invalid UTF-8, a
//! 128 KiB argument, 10,000 tiny arguments, argc 0, a non-printable path.
//! Every alert is one valid JSON line, each hostile exec that says
//! `stop kesl` alerts, and the daemon stays up and stops cleanly.

mod support;

use std::{
    ffi::{CString, OsStr, OsString},
    io::{BufRead as _, BufReader},
    os::unix::ffi::{OsStrExt as _, OsStringExt as _},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{KESL_RULE, ebpf_allowed, fake_tool, tempdir};

const SIGEXEC: &str = env!("CARGO_BIN_EXE_sigexec");

/// The alert is `rule`'s, or has it folded in (one incident, one alert).
fn names_rule(alert: &serde_json::Value, rule: &str) -> bool {
    alert["rule"]["id"] == rule
        || alert["related"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["rule_id"] == rule))
}

#[test]
fn hostile_argv_never_breaks_a_line_or_the_daemon() {
    if !ebpf_allowed("hostile") {
        return;
    }
    let (_guard, dir) = tempdir();
    let output = dir.join("out.jsonl");
    let mut daemon = Command::new(SIGEXEC)
        .args(["run", "--output"])
        .arg(&output)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sigexec");
    let stderr = daemon.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("sigexec ready") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30)).expect("ready");

    let weird_dir = dir.join(OsStr::from_bytes(b"\x01\x7f\xff \x1b[2J dir"));
    let systemctl = fake_tool(&weird_dir, "systemctl");
    // The kernel caps one argument at 128 KiB with its NUL (MAX_ARG_STRLEN).
    let big = "x".repeat(128 * 1024 - 1);
    let tiny: Vec<&str> = std::iter::repeat_n("a", 10_000).collect();
    let cases: Vec<Vec<OsString>> = vec![
        vec!["stop".into(), "kesl\n{\"kind\":\"fake\"}\r\n".into()],
        vec!["stop".into(), "\u{1b}[31mkesl\u{1b}[0m".into()],
        vec!["stop".into(), "".into(), "".into(), "kesl".into()],
        vec![
            "stop".into(),
            OsString::from_vec(b"kesl\xff\xfe\xc3(".to_vec()),
        ],
        vec!["stop".into(), "kesl".into(), big.clone().into()],
        std::iter::once("stop".into())
            .chain(std::iter::once("kesl".into()))
            .chain(tiny.iter().map(OsString::from))
            .collect(),
    ];
    let mut pids = Vec::new();
    for args in &cases {
        let mut child = Command::new(&systemctl).args(args).spawn().expect("spawn");
        pids.push(child.id());
        child.wait().expect("wait");
    }
    // argc 0: no arguments at all (the kernel may add an empty one).
    let path = CString::new(systemctl.as_os_str().as_bytes()).expect("path");
    let null: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: the child only calls execve and _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            libc::execve(path.as_ptr(), null.as_ptr(), null.as_ptr());
            libc::_exit(127);
        }
    }
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };

    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&output).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not one JSON object: {e}: {l:?}"))
            })
            .collect();
        let alerted = pids
            .iter()
            .filter(|p| {
                lines
                    .iter()
                    .any(|l| l["process"]["ProcessId"] == **p && names_rule(l, KESL_RULE))
            })
            .count();
        if alerted == pids.len() {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "{alerted} of {} hostile execs alerted",
            pids.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        lines.iter().all(|l| l["kind"] == "alert"),
        "no forged kinds"
    );
    // The daemon is still up, and stops cleanly.
    assert!(daemon.try_wait().expect("poll").is_none(), "daemon died");
    // SAFETY: our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    assert!(daemon.wait().expect("wait").success());
    let _ = log.join();
    let truncated = lines
        .iter()
        .find(|l| l["process"]["ProcessId"] == pids[4])
        .expect("the 128 KiB case");
    assert_eq!(truncated["process"]["CommandLineTruncated"], true);
}
