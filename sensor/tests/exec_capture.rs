//! The sensor on the running kernel: real execs in, events and alerts out.
//! Each test loads its own sensor and looks only at the processes it
//! started (matched by pid), so tests may run in parallel.

mod support;

use std::{collections::HashSet, os::unix::fs::PermissionsExt as _, process::Command};

use sensor::{capture::Options, engine::ImageAs};
use support::{
    Harness, KESL_RULE, SERVICE_STOP_RULE, ebpf_allowed, fake_tool, of_pids, rule_ids, tempdir,
};

fn run(cmd: &mut Command) -> u32 {
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

#[test]
fn systemctl_stop_kesl_raises_one_alert_with_the_kernel_view() {
    if !ebpf_allowed("systemctl_stop_kesl") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let (_guard, dir) = tempdir();
    let systemctl = fake_tool(&dir, "systemctl");
    let pid = run(Command::new(&systemctl).args(["stop", "kesl"]));
    let seen = h.collect();
    let mine = of_pids(&seen, &HashSet::from([pid]));
    assert_eq!(mine.len(), 1, "exactly one exec event for the child");
    let s = mine[0];
    assert_eq!(rule_ids(&s.alerts), vec![KESL_RULE, SERVICE_STOP_RULE]);
    let e = &s.event;
    assert_eq!(e.image, systemctl.to_str().expect("utf-8 path"));
    assert_eq!(e.command_line, format!("{} stop kesl", systemctl.display()));
    assert_eq!(e.process_id, pid);
    assert_eq!(e.parent_process_id, std::process::id());
    let me = std::env::current_exe().expect("current exe");
    assert_eq!(e.parent_image.as_deref(), me.to_str());
    assert_eq!(s.alerts[0].evidence.image_as, ImageAs::Resolved);
    // The alert carries the same event.
    assert_eq!(s.alerts[0].process["Image"], e.image);
    assert_eq!(s.alerts[0].process["ProcessId"], pid);
}

#[test]
fn bash_with_stop_kesl_in_its_command_line_alerts() {
    if !ebpf_allowed("bash_stop_kesl") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let pid = run(Command::new("bash").args(["-c", "true stop kesl"]));
    let seen = h.collect();
    let mine = of_pids(&seen, &HashSet::from([pid]));
    assert_eq!(mine.len(), 1);
    assert!(
        mine[0].event.image.ends_with("/bash"),
        "{}",
        mine[0].event.image
    );
    assert_eq!(rule_ids(&mine[0].alerts), vec![KESL_RULE]);
}

#[test]
fn init_script_with_bash_shebang_alerts_on_the_resolved_interpreter() {
    if !ebpf_allowed("init_script_kesl") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let (_guard, dir) = tempdir();
    let script = dir.join("kesl");
    std::fs::write(&script, "#!/bin/bash\nexit 0\n").expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let pid = run(Command::new("./kesl").arg("stop").current_dir(&dir));
    let seen = h.collect();
    let mine = of_pids(&seen, &HashSet::from([pid]));
    assert_eq!(mine.len(), 1);
    let e = &mine[0].event;
    let bash = std::fs::canonicalize("/bin/bash").expect("bash");
    assert_eq!(e.image, bash.to_str().expect("utf-8"));
    assert!(e.command_line.contains("kesl"), "{}", e.command_line);
    assert!(e.command_line.contains("stop"), "{}", e.command_line);
    assert_eq!(e.interpreter.as_deref(), Some("/bin/bash"));
    let script = script.to_str().expect("utf-8");
    assert_eq!(e.script_path.as_deref(), Some(script));
    assert_eq!(e.image_invoked, script);
    assert_eq!(e.current_directory, dir.to_str().expect("utf-8"));
    assert_eq!(rule_ids(&mine[0].alerts), vec![KESL_RULE]);
}

#[test]
fn status_and_echo_do_not_alert() {
    if !ebpf_allowed("no_alert") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let (_guard, dir) = tempdir();
    let systemctl = fake_tool(&dir, "systemctl");
    let status = run(Command::new(&systemctl).args(["status", "kesl"]));
    let echo = run(Command::new("/bin/echo")
        .args(["stop", "kesl"])
        .stdout(std::process::Stdio::null()));
    let seen = h.collect();
    let mine = of_pids(&seen, &HashSet::from([status, echo]));
    // Both execs were seen, and neither alerted.
    assert_eq!(mine.len(), 2);
    for s in mine {
        assert!(
            s.alerts.is_empty(),
            "{}: {:?}",
            s.event.command_line,
            rule_ids(&s.alerts)
        );
    }
}

#[test]
fn long_argv_is_captured_in_full() {
    if !ebpf_allowed("long_argv") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let (_guard, dir) = tempdir();
    let systemctl = fake_tool(&dir, "systemctl");
    // argv area: every argument plus its NUL, 100,000 bytes in all.
    let path_len = systemctl.as_os_str().len();
    let pad = 100_000 - (path_len + 1) - "stop\0".len() - "kesl\0".len() - 1;
    let filler = "x".repeat(pad);
    let pid = run(Command::new(&systemctl).args(["stop", &filler, "kesl"]));
    let seen = h.collect();
    let mine = of_pids(&seen, &HashSet::from([pid]));
    assert_eq!(mine.len(), 1);
    let e = &mine[0].event;
    assert_eq!(e.command_line.len(), 100_000 - 1);
    assert_eq!(e.command_line_length, 100_000 - 1);
    assert!(!e.command_line_truncated);
    assert!(e.command_line.ends_with(" kesl"));
    assert_eq!(
        rule_ids(&mine[0].alerts),
        vec![KESL_RULE, SERVICE_STOP_RULE]
    );
}

#[test]
fn argv_beyond_the_capture_limit_is_flagged_with_its_true_length() {
    if !ebpf_allowed("huge_argv") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let big = "y".repeat(100_000);
    // Two 100,000-byte arguments: past the 128 KiB capture limit.
    let pid = run(Command::new("/bin/true").args([&big, &big]));
    let seen = h.collect();
    let mine = of_pids(&seen, &HashSet::from([pid]));
    assert_eq!(mine.len(), 1);
    let e = &mine[0].event;
    assert!(e.command_line_truncated);
    let true_len = "/bin/true".len() + 1 + 2 * (big.len() + 1) - 1;
    assert_eq!(e.command_line_length, true_len as u64);
    assert_eq!(e.argv.len(), 3, "the last argument is cut, not dropped");
    assert_eq!(
        e.command_line.len(),
        sensor_common::ARGV_MAX,
        "the captured part is the whole capture buffer"
    );
}

#[test]
fn a_burst_of_2000_execs_is_received_in_full() {
    if !ebpf_allowed("burst_2000") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let mut pids = HashSet::new();
    for _ in 0..2000 {
        pids.insert(run(&mut Command::new("/bin/true")));
    }
    let seen = h.collect();
    let got: HashSet<u32> = seen
        .iter()
        .filter(|s| s.event.image.ends_with("/true"))
        .map(|s| s.event.process_id)
        .filter(|p| pids.contains(p))
        .collect();
    let lost = h.sensor.lost().expect("lost counter");
    eprintln!(
        "burst: {} execs, {} received, {} events in all, {} lost",
        pids.len(),
        got.len(),
        seen.len(),
        lost
    );
    assert_eq!(got.len(), 2000);
    assert_eq!(lost, 0);
    assert_eq!(h.sensor.decode_errors(), 0);
}

#[test]
fn the_classic_tracepoint_fallback_also_catches_the_stop() {
    if !ebpf_allowed("tracepoint_fallback") {
        return;
    }
    let mut h = Harness::start(&Options {
        force_tracepoint: true,
        ..Options::default()
    });
    assert_eq!(h.sensor.hook(), sensor::capture::Hook::Tracepoint);
    let (_guard, dir) = tempdir();
    let systemctl = fake_tool(&dir, "systemctl");
    let pid = run(Command::new(&systemctl).args(["stop", "kesl"]));
    let seen = h.collect();
    let mine = of_pids(&seen, &HashSet::from([pid]));
    assert_eq!(mine.len(), 1);
    let e = &mine[0].event;
    assert_eq!(e.image, systemctl.to_str().expect("utf-8"));
    assert_eq!(e.image_invoked, systemctl.to_str().expect("utf-8"));
    assert_eq!(e.command_line, format!("{} stop kesl", systemctl.display()));
    assert_eq!(
        rule_ids(&mine[0].alerts),
        vec![KESL_RULE, SERVICE_STOP_RULE]
    );
}

#[test]
fn a_subshells_exec_has_the_shell_as_parent_image() {
    if !ebpf_allowed("subshell_parent") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let marker = format!("subshell-{}", std::process::id());
    // `( ...; /bin/true X )` forks a subshell that never execs itself; the
    // `:` keeps bash from exec'ing /bin/true in place of the subshell.
    let script = format!("( /bin/true {marker}; : ); :");
    let bash_pid = run(Command::new("/bin/bash").args(["-c", &script]));
    let seen = h.collect();
    let bash = std::fs::canonicalize("/bin/bash").expect("bash");
    let child = seen
        .iter()
        .find(|s| s.event.argv.last() == Some(&marker))
        .expect("the subshell's exec was seen");
    let e = &child.event;
    assert_ne!(e.parent_process_id, bash_pid, "the parent is the subshell");
    assert_eq!(e.parent_image.as_deref(), bash.to_str());
    assert_eq!(
        e.parent_command_line.as_deref(),
        Some(format!("/bin/bash -c {script}").as_str())
    );
}

#[test]
fn an_orphans_exec_keeps_its_creator_as_parent() {
    if !ebpf_allowed("reparented") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let marker = format!("orphan-{}", std::process::id());
    // The subshell outlives sh, is re-parented by the kernel, then execs.
    let script = format!("(sleep 0.3; exec /bin/true {marker}) & exit 0");
    let sh_pid = run(Command::new("/bin/sh").args(["-c", &script]));
    std::thread::sleep(std::time::Duration::from_millis(600));
    let seen = h.collect();
    let orphan = seen
        .iter()
        .find(|s| s.event.argv.last() == Some(&marker))
        .expect("the orphan's exec was seen");
    let e = &orphan.event;
    let sh = std::fs::canonicalize("/bin/sh").expect("sh");
    assert_eq!(e.parent_process_id, sh_pid, "creator, not the new parent");
    assert_eq!(e.parent_image.as_deref(), sh.to_str());
    assert!(
        e.kernel_parent_process_id.is_some_and(|p| p != sh_pid),
        "the kernel's parent after re-parenting is reported too: {:?}",
        e.kernel_parent_process_id
    );
}
