//! Losses are never silent: when the daemon cannot keep up (here: stopped
//! with SIGSTOP during a burst, with a tiny ring buffer), the kernel counts
//! every record it could not submit and the daemon writes the count into
//! the alert stream and the log, then carries on.

mod support;

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{ebpf_allowed, tempdir};

const SIGEXEC: &str = env!("CARGO_BIN_EXE_sigexec");

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill on a pid we own.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

#[test]
fn a_stalled_reader_loses_records_and_says_how_many() {
    if !ebpf_allowed("stall_loss") {
        return;
    }
    let (_guard, dir) = tempdir();
    let output = dir.join("out.jsonl");
    let mut daemon = Command::new(SIGEXEC)
        .args(["run", "--all-events", "--ringbuf-size", "16384", "--output"])
        .arg(&output)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sigexec");
    let stderr = daemon.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("sigexec ready") {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    rx.recv_timeout(Duration::from_secs(30)).expect("ready");

    signal(daemon.id(), libc::SIGSTOP);
    let mut pids = Vec::new();
    for _ in 0..300 {
        let mut c = Command::new("/bin/true").spawn().expect("spawn");
        pids.push(c.id());
        c.wait().expect("wait");
    }
    signal(daemon.id(), libc::SIGCONT);

    // The daemon recovers: a later exec is seen again.
    let marker = format!("after-stall-{}", std::process::id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        Command::new("/bin/true")
            .arg(&marker)
            .status()
            .expect("marker");
        std::thread::sleep(Duration::from_millis(200));
        let text = std::fs::read_to_string(&output).unwrap_or_default();
        if text.contains(&marker) && text.contains("\"kind\":\"loss\"") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery or no loss line:\n{text}"
        );
    };
    signal(daemon.id(), libc::SIGTERM);
    let status = daemon.wait().expect("wait daemon");
    let log = log.join().expect("log");
    assert!(status.success(), "{log:?}");

    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let lost: u64 = lines
        .iter()
        .filter(|l| l["kind"] == "loss")
        .map(|l| l["lost"].as_u64().expect("lost count"))
        .sum();
    let seen = lines
        .iter()
        .filter(|l| l["kind"] == "event")
        .filter(|l| {
            l["process"]["ProcessId"]
                .as_u64()
                .is_some_and(|p| pids.contains(&(p as u32)))
        })
        .count();
    let missing = (pids.len() - seen) as u64;
    eprintln!("stall: 300 execs, {seen} seen, {lost} records reported lost");
    assert!(missing > 0, "16 KiB cannot hold a 300-exec burst");
    assert!(
        lost >= missing,
        "reported {lost} lost, {missing} execs missing"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("kernel dropped exec records")),
        "loss logged: {log:?}"
    );
}
