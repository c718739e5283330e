//! The stop no command line shows: a watched process killed with a shell's
//! built-in `kill` gives a `process_termination` event naming the sender,
//! and the bundled rule alerts on it.

mod support;

use std::process::{Command, Stdio};

use sensor::capture::Options;
use support::{Harness, ebpf_allowed, fake_tool, tempdir};

const KILLED_RULE: &str = "2f8862d4-3137-423a-8ef6-310a8de8a5ee";

#[test]
fn a_builtin_kill_of_a_watched_daemon_names_the_shell_that_sent_it() {
    if !ebpf_allowed("termination") {
        return;
    }
    let (_guard, dir) = tempdir();
    let install = dir.join("opt/kaspersky/kesl/bin");
    let wdserver = install.join("wdserver");
    std::fs::create_dir_all(&install).expect("mkdir");
    // Stand-ins that wait until killed: copies of bash blocked reading a
    // pipe nobody writes. Not copies of sleep: in the lab guests that is
    // busybox, which picks its applet by name and would refuse to run as
    // `wdserver`.
    std::fs::copy("/bin/bash", &wdserver).expect("copy bash");
    let unwatched = fake_tool(&dir, "wait-elsewhere");
    std::fs::copy("/bin/bash", &unwatched).expect("copy bash");

    let mut h = Harness::start(&Options::default());
    h.pipeline
        .set_watch(vec![format!("{}/opt/kaspersky/", dir.display())]);
    let mut daemon = Command::new(&wdserver)
        .args(["-c", "read -r line"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start fake daemon");
    let mut other = Command::new(&unwatched)
        .args(["-c", "read -r line"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start other");
    // Let the daemon's exec reach the table before it is killed.
    let _ = h.collect();
    let script = format!("kill -9 {}; kill -TERM {}", daemon.id(), other.id());
    let bash = Command::new("/bin/bash")
        .args(["-c", &script])
        .spawn()
        .expect("run bash");
    let bash_pid = bash.id();
    bash.wait_with_output().expect("wait bash");
    daemon.wait().expect("wait daemon");
    other.wait().expect("wait other");
    let _ = h.collect();
    let terminations = h.pipeline.take_terminations();
    assert_eq!(terminations.len(), 1, "only the watched process");
    let (event, alerts) = &terminations[0];
    assert_eq!(event.process_id, daemon.id());
    assert_eq!(event.image, wdserver.to_str().expect("utf-8"));
    assert_eq!(event.signal, Some(9));
    assert_eq!(event.exit_code, None);
    assert_eq!(event.sender_process_id, Some(bash_pid));
    let bash_image = std::fs::canonicalize("/bin/bash").expect("bash");
    assert_eq!(event.sender_image.as_deref(), bash_image.to_str());
    assert_eq!(
        event.sender_command_line.as_deref(),
        Some(format!("/bin/bash -c {script}").as_str())
    );
    let ids: Vec<_> = alerts.iter().map(|a| a.rule.id.clone()).collect();
    assert_eq!(ids, [Some(KILLED_RULE.to_owned())]);
    assert_eq!(alerts[0].process["SenderProcessId"], bash_pid);
}

#[test]
fn a_watched_process_that_exits_by_itself_is_no_alert() {
    if !ebpf_allowed("termination_clean") {
        return;
    }
    let (_guard, dir) = tempdir();
    let tool = fake_tool(&dir.join("opt/kaspersky/kesl"), "kesl-control");
    let mut h = Harness::start(&Options::default());
    h.pipeline
        .set_watch(vec![format!("{}/opt/kaspersky/", dir.display())]);
    let status = Command::new(&tool).status().expect("run");
    assert!(status.success());
    let _ = h.collect();
    let terminations = h.pipeline.take_terminations();
    assert_eq!(terminations.len(), 1);
    assert_eq!(terminations[0].0.exit_code, Some(0));
    assert_eq!(terminations[0].0.signal, None);
    assert!(terminations[0].1.is_empty());
}
