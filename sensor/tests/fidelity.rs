//! Capture fidelity on the running kernel: every field of an exec event
//! in the awkward cases real hosts and attackers produce. Each test runs a
//! real exec and asserts the values a user would check.

mod support;

use std::{
    collections::HashSet,
    ffi::{CString, OsStr},
    os::unix::{ffi::OsStrExt as _, fs::symlink, process::CommandExt as _},
    process::Command,
};

use sensor::capture::Options;
use support::{
    Harness, KESL_RULE, SERVICE_STOP_RULE, Seen, ebpf_allowed, fake_tool, of_pids, rule_ids,
    tempdir,
};

fn run(cmd: &mut Command) -> u32 {
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

fn only(seen: &[Seen], pid: u32) -> &Seen {
    let mine = of_pids(seen, &HashSet::from([pid]));
    assert_eq!(mine.len(), 1, "one exec event for pid {pid}");
    mine[0]
}

/// The exec of `/bin/true <marker>` (wrappers such as setpriv or unshare
/// carry the marker in their own argv too).
fn by_marker<'a>(seen: &'a [Seen], marker: &str) -> &'a Seen {
    seen.iter()
        .find(|s| s.event.argv == ["/bin/true", marker])
        .unwrap_or_else(|| panic!("no exec with marker {marker}"))
}

#[test]
fn paths_with_spaces_deep_paths_and_symlinks() {
    if !ebpf_allowed("paths") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let (_guard, dir) = tempdir();
    let spaced = dir.join("a dir with spaces");
    let spaced_tool = fake_tool(&spaced, "systemctl");
    let mut deep = dir.clone();
    while deep.as_os_str().len() < 400 {
        deep.push("a-fairly-long-directory-name-0123456789");
    }
    let deep_tool = fake_tool(&deep, "true");
    let link = dir.join("sh");
    symlink(&deep_tool, &link).expect("symlink");
    let p1 = run(Command::new(&spaced_tool).args(["stop", "kesl"]));
    let p2 = run(&mut Command::new(&deep_tool));
    let p3 = run(Command::new(&link).args(["/etc/init.d/kesl", "stop"]));
    let seen = h.collect();

    let e1 = &only(&seen, p1).event;
    assert_eq!(e1.image, spaced_tool.to_str().expect("utf-8"));
    assert_eq!(
        rule_ids(&only(&seen, p1).alerts),
        [KESL_RULE, SERVICE_STOP_RULE]
    );

    let e2 = &only(&seen, p2).event;
    assert!(e2.image.len() > 300);
    assert_eq!(e2.image, deep_tool.to_str().expect("utf-8"));

    // Through a symlink named sh: Image is the resolved file, ImageInvoked
    // the link, and the kesl rule fires through the invoked alias.
    let s3 = only(&seen, p3);
    assert_eq!(s3.event.image, deep_tool.to_str().expect("utf-8"));
    assert_eq!(s3.event.image_invoked, link.to_str().expect("utf-8"));
    assert_eq!(rule_ids(&s3.alerts), [KESL_RULE]);
    assert_eq!(
        s3.alerts[0].evidence.image_as,
        sensor::engine::ImageAs::Invoked
    );
}

#[test]
fn memfd_exec_is_fileless_and_deleted_binaries_say_so() {
    if !ebpf_allowed("memfd") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let true_bytes = std::fs::read("/bin/true").expect("read /bin/true");
    // A memfd without CLOEXEC, so that the child can exec it by its
    // /proc/self/fd path.
    // SAFETY: the name is NUL-terminated; the fd is owned by this test.
    let memfd = unsafe { libc::memfd_create(c"kesl-payload".as_ptr(), 0) };
    assert!(
        memfd >= 0,
        "memfd_create: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: writing our own buffer to our own fd.
    let n = unsafe { libc::write(memfd, true_bytes.as_ptr().cast(), true_bytes.len()) };
    assert_eq!(n as usize, true_bytes.len());
    let p1 = run(&mut Command::new(format!("/proc/self/fd/{memfd}")));

    let (_guard, dir) = tempdir();
    let doomed = fake_tool(&dir, "doomed");
    let file = std::fs::File::open(&doomed).expect("open");
    std::fs::remove_file(&doomed).expect("unlink");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: clearing FD_CLOEXEC on our own fd so the child inherits it.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    let p2 = run(&mut Command::new(format!("/proc/self/fd/{fd}")));
    let seen = h.collect();
    // SAFETY: closing our own fd.
    unsafe { libc::close(memfd) };

    let e1 = &only(&seen, p1).event;
    assert_eq!(e1.image, "/memfd:kesl-payload (deleted)");
    assert!(e1.fileless);
    assert!(e1.image_deleted);

    let e2 = &only(&seen, p2).event;
    assert_eq!(e2.image, format!("{} (deleted)", doomed.display()));
    assert!(e2.image_deleted);
    assert!(!e2.fileless);
}

#[test]
fn hostile_arguments_survive_exactly() {
    if !ebpf_allowed("argv") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let invalid = OsStr::from_bytes(b"caf\xe9\\x");
    let control = "line1\nline2\r\u{1b}[31m\ttab";
    let p = run(Command::new("/bin/true").args([
        OsStr::new("a"),
        OsStr::new(""),
        OsStr::new("b"),
        invalid,
        OsStr::new(control),
    ]));
    let seen = h.collect();
    let e = &only(&seen, p).event;
    assert_eq!(
        e.argv,
        ["/bin/true", "a", "", "b", "caf\\xe9\\\\x", control],
        "empty argument kept, invalid UTF-8 escaped losslessly"
    );
    assert_eq!(e.argv_escaped, [4]);
    assert_eq!(
        e.command_line,
        format!("/bin/true a  b caf\u{fffd}\\x {control}")
    );
    // The alert/event JSON stays one line.
    let line = serde_json::to_string(&e).expect("serialize");
    assert!(!line.contains('\n'));
}

#[test]
fn argc_zero_is_an_event_not_a_crash() {
    if !ebpf_allowed("argc0") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let path = CString::new("/bin/true").expect("cstring");
    let argv: [*const libc::c_char; 1] = [std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: the child only calls execve and _exit, which are
    // async-signal-safe; all pointers were prepared before fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    assert!(pid > 0);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let seen = h.collect();
    let e = &only(&seen, pid as u32).event;
    assert!(e.image.ends_with("/true"));
    // Kernels since 5.18 give an argc-0 exec one empty argument.
    assert!(e.argv.is_empty() || e.argv == [""], "{:?}", e.argv);
    assert_eq!(e.command_line, "");
}

/// Helper mode of this test binary: exec /bin/true from a non-leader
/// thread. Runs only when the exec test below starts it.
#[test]
fn helper_exec_from_a_thread() {
    let Ok(marker) = std::env::var("SIGEXEC_THREAD_EXEC") else {
        return;
    };
    let t = std::thread::spawn(move || {
        let tid = unsafe { libc::gettid() };
        println!("tid={tid}");
        let err = Command::new("/bin/true").arg(&marker).exec();
        panic!("exec failed: {err}");
    });
    let _ = t.join();
}

#[test]
fn exec_from_a_thread_reports_the_process_id() {
    if !ebpf_allowed("thread_exec") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let marker = format!("thread-exec-{}", std::process::id());
    let out = Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "helper_exec_from_a_thread", "--nocapture"])
        .env("SIGEXEC_THREAD_EXEC", &marker)
        .output()
        .expect("run helper");
    let seen = h.collect();
    let e = &by_marker(&seen, &marker).event;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tid: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tid="))
        .and_then(|t| t.trim().parse().ok())
        .expect("helper printed its thread id");
    assert_ne!(e.process_id, tid);
    assert_eq!(e.exec_thread_id, Some(tid));
    assert!(e.image.ends_with("/true"));
}

#[test]
fn pid_namespace_uses_the_host_pid_and_reports_the_inner_one() {
    if !ebpf_allowed("pidns") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let marker = format!("pidns-{}", std::process::id());
    let status = Command::new("unshare")
        .args(["--fork", "--pid", "/bin/true", &marker])
        .status()
        .expect("run unshare");
    assert!(status.success());
    let seen = h.collect();
    let e = &by_marker(&seen, &marker).event;
    assert_eq!(e.namespace_process_id, Some(1));
    assert_ne!(e.process_id, 1);
}

#[test]
fn loginuid_survives_a_change_of_user() {
    if !ebpf_allowed("loginuid") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let marker = format!("loginuid-{}", std::process::id());
    // The change of user is done here rather than by util-linux's setpriv:
    // the lab guests have only busybox's, which cannot change uids.
    let mut cmd = Command::new("/bin/true");
    cmd.arg(&marker);
    // SAFETY: the closure only writes a file and makes async-signal-safe
    // system calls, before exec.
    unsafe {
        cmd.pre_exec(|| {
            std::fs::write("/proc/self/loginuid", "4242")?;
            let nobody = 65534;
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(nobody, nobody, nobody) != 0
                || libc::setresuid(nobody, nobody, nobody) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    assert!(cmd.status().expect("run /bin/true as nobody").success());
    let seen = h.collect();
    let e = &by_marker(&seen, &marker).event;
    assert_eq!(e.logon_id, 65534);
    assert_eq!(e.euid, 65534);
    assert_eq!(e.gid, 65534);
    assert_eq!(e.user, "nobody");
    assert_eq!(e.login_uid, Some(4242));
    assert_eq!(e.login_user.as_deref(), Some("4242"), "no name: the number");
    // Setting the loginuid starts a new audit session.
    assert!(e.terminal_session_id.is_some_and(|s| s != u32::MAX));
}

#[test]
fn container_id_comes_from_the_cgroup_path() {
    if !ebpf_allowed("container_id") {
        return;
    }
    let root = sensor::process::container::cgroup2_mount().expect("cgroup2 is mounted");
    let id = "3f4e2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    let parent = root.join(format!("sigexec-test-{}", std::process::id()));
    let scope = parent.join(format!("docker-{id}.scope"));
    std::fs::create_dir_all(&scope).expect("create cgroup");
    let mut h = Harness::start(&Options::default());
    let marker = format!("container-{}", std::process::id());
    let procs = scope.join("cgroup.procs");
    let mut cmd = Command::new("/bin/true");
    cmd.arg(&marker);
    // SAFETY: the closure only writes a file, before exec.
    unsafe {
        cmd.pre_exec(move || std::fs::write(&procs, "0"));
    }
    let pid = run(&mut cmd);
    let host = run(&mut Command::new("/bin/true"));
    let seen = h.collect();
    let _ = std::fs::remove_dir(&scope);
    let _ = std::fs::remove_dir(&parent);
    assert_eq!(only(&seen, pid).event.container_id.as_deref(), Some(id));
    assert_eq!(only(&seen, host).event.container_id, None);
}

#[test]
fn ancestry_lists_the_parents_images_nearest_first() {
    if !ebpf_allowed("ancestry") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let marker = format!("ancestry-{}", std::process::id());
    let script = format!("/bin/sh -c '/bin/true {marker}; :'; :");
    run(Command::new("/bin/bash").args(["-c", &script]));
    let seen = h.collect();
    let e = &by_marker(&seen, &marker).event;
    let sh = std::fs::canonicalize("/bin/sh").expect("sh");
    let bash = std::fs::canonicalize("/bin/bash").expect("bash");
    let me = std::env::current_exe().expect("exe");
    assert_eq!(
        e.ancestor_images[..3],
        [
            sh.to_string_lossy().into_owned(),
            bash.to_string_lossy().into_owned(),
            me.to_string_lossy().into_owned()
        ]
    );
    assert_eq!(
        e.parent_image.as_deref(),
        Some(e.ancestor_images[0].as_str())
    );
}

#[test]
fn a_full_ring_buffer_counts_every_lost_record() {
    if !ebpf_allowed("overflow") {
        return;
    }
    // 16 KiB holds a few dozen records: a burst we do not read overflows it.
    let mut h = Harness::start(&Options {
        ringbuf_bytes: 16 * 1024,
        ..Options::default()
    });
    let mut pids = HashSet::new();
    for _ in 0..300 {
        pids.insert(run(&mut Command::new("/bin/true")));
    }
    let lost = h.sensor.lost().expect("lost counter");
    // Empty the ring first, or the marker exec would be lost too.
    let mut early = Vec::new();
    h.sensor.drain_now(&mut early);
    let mut got = early
        .iter()
        .filter_map(|r| h.pipeline.handle(r))
        .filter(|(e, _)| pids.contains(&e.process_id))
        .count();
    let seen = h.collect();
    got += seen
        .iter()
        .filter(|s| pids.contains(&s.event.process_id))
        .count();
    let missing = pids.len() - got;
    eprintln!("overflow: 300 execs, {got} received, {lost} records lost");
    assert!(missing > 0, "the burst should overflow 16 KiB");
    // Every exec we did not receive is among the counted losses (which
    // also count the forks, exits and other processes' execs lost).
    assert!(lost >= missing as u64, "lost {lost} < missing {missing}");
}

#[test]
fn a_file_inside_an_overlay_root_shows_the_containers_path() {
    if !ebpf_allowed("overlay_root") {
        return;
    }
    let (_guard, dir) = tempdir();
    for d in ["upper", "work", "merged"] {
        std::fs::create_dir(dir.join(d)).expect("mkdir");
    }
    let mut h = Harness::start(&Options::default());
    let marker = format!("overlay-{}", std::process::id());
    // A container in miniature: a private mount namespace whose root is an
    // overlay (lower: the host's /), entered with pivot_root.
    let script = format!(
        "mount -t overlay overlay -o lowerdir=/,upperdir={d}/upper,workdir={d}/work {d}/merged \
         && mkdir -p {d}/merged/oldroot && cd {d}/merged && pivot_root . oldroot \
         && exec /bin/true {marker}",
        d = dir.display()
    );
    let status = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            &script,
        ])
        .status()
        .expect("run unshare");
    assert!(status.success());
    let seen = h.collect();
    let e = &by_marker(&seen, &marker).event;
    let inside = std::fs::canonicalize("/bin/true").expect("true");
    assert_eq!(
        e.image,
        inside.to_str().expect("utf-8"),
        "not {}/merged/...",
        dir.display()
    );
    assert_eq!(e.current_directory, "/");
}

#[test]
fn env_shebang_scripts_show_env_then_the_final_interpreter() {
    if !ebpf_allowed("env_shebang") {
        return;
    }
    let (_guard, dir) = tempdir();
    let script = dir.join("kesl");
    std::fs::write(&script, "#!/usr/bin/env bash\nexit 0\n").expect("write script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let mut h = Harness::start(&Options::default());
    let pid = run(Command::new(&script).arg("stop"));
    let seen = h.collect();
    let mine = of_pids(&seen, &HashSet::from([pid]));
    assert_eq!(mine.len(), 2, "env, then bash, in the same process");
    let (env, bash) = (&mine[0].event, &mine[1].event);
    let script = script.to_str().expect("utf-8");
    assert_eq!(env.interpreter.as_deref(), Some("/usr/bin/env"));
    assert_eq!(env.script_path.as_deref(), Some(script));
    assert!(bash.image.ends_with("/bash"), "{}", bash.image);
    assert_eq!(bash.argv[1..], [script.to_owned(), "stop".to_owned()]);
    // The stop is caught on the final interpreter.
    assert_eq!(rule_ids(&mine[1].alerts), [KESL_RULE]);
}

#[test]
fn a_scripts_child_knows_the_script_and_interpreter_of_its_parent() {
    if !ebpf_allowed("parent_aliases") {
        return;
    }
    let (_guard, dir) = tempdir();
    let systemctl = fake_tool(&dir, "systemctl");
    let script = dir.join("kesl");
    std::fs::write(
        &script,
        format!("#!/bin/sh\n{} stop kesl\n:\n", systemctl.display()),
    )
    .expect("write script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let mut h = Harness::start(&Options::default());
    let sh_pid = run(&mut Command::new(&script));
    let seen = h.collect();
    let child = seen
        .iter()
        .find(|s| s.event.parent_process_id == sh_pid && s.event.image.ends_with("/systemctl"))
        .expect("the script's child");
    let e = &child.event;
    let sh = std::fs::canonicalize("/bin/sh").expect("sh");
    assert_eq!(e.parent_image.as_deref(), sh.to_str());
    assert_eq!(e.parent_interpreter.as_deref(), Some("/bin/sh"));
    assert_eq!(e.parent_image_invoked.as_deref(), script.to_str());
    assert_eq!(rule_ids(&child.alerts), [KESL_RULE, SERVICE_STOP_RULE]);
}

/// Helper mode of this test binary: overwrite our own argv area in place
/// (through /proc/self/mem, as malware that hides its arguments does) and
/// wait to be killed.
#[test]
fn helper_rewrite_own_argv() {
    if std::env::var_os("SIGEXEC_REWRITE_ARGV").is_none() {
        return;
    }
    use std::io::{Seek as _, SeekFrom, Write as _};
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split_whitespace()
        .collect();
    // Fields 48 and 49 of /proc/PID/stat: arg_start, arg_end.
    let start: u64 = fields[45].parse().expect("arg_start");
    let end: u64 = fields[46].parse().expect("arg_end");
    let mut fake = b"innocent".to_vec();
    fake.resize((end - start) as usize, 0);
    let mut mem = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")
        .expect("open /proc/self/mem");
    mem.seek(SeekFrom::Start(start)).expect("seek");
    mem.write_all(&fake).expect("overwrite argv");
    println!("rewritten");
    std::thread::sleep(std::time::Duration::from_secs(30));
}

#[test]
fn a_process_that_rewrites_its_argv_still_shows_how_it_started() {
    if !ebpf_allowed("argv_rewrite") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    let marker = format!("rewrite-{}", std::process::id());
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "helper_rewrite_own_argv", "--nocapture", &marker])
        .env("SIGEXEC_REWRITE_ARGV", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn helper");
    // The test harness prints its own lines first.
    let line = std::io::BufRead::lines(std::io::BufReader::new(
        child.stdout.take().expect("stdout"),
    ))
    .map_while(Result::ok)
    .find(|l| l.contains("rewritten"))
    .unwrap_or_default();
    let rewritten =
        std::fs::read_to_string(format!("/proc/{}/cmdline", child.id())).unwrap_or_default();
    child.kill().expect("kill helper");
    child.wait().expect("wait");
    let seen = h.collect();
    assert!(line.contains("rewritten"), "{line:?}");
    assert!(
        rewritten.starts_with("innocent"),
        "argv rewritten: {rewritten:?}"
    );
    let e = &only(&seen, child.id()).event;
    assert_eq!(e.argv.last(), Some(&marker), "{:?}", e.argv);
    assert!(
        e.command_line.contains("helper_rewrite_own_argv"),
        "{}",
        e.command_line
    );
}

#[test]
fn process_guid_is_stable_across_exec_and_unique_per_process() {
    if !ebpf_allowed("guid") {
        return;
    }
    let mut h = Harness::start(&Options::default());
    // bash execs /bin/true in place: one process, two images.
    let same = run(Command::new("/bin/bash").args(["-c", "exec /bin/true guid"]));
    let other = run(Command::new("/bin/true").arg("guid"));
    let seen = h.collect();
    let mine = of_pids(&seen, &HashSet::from([same]));
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0].event.process_guid, mine[1].event.process_guid);
    assert_ne!(
        only(&seen, other).event.process_guid,
        mine[0].event.process_guid
    );
    // The second image's parent is still the test, not bash.
    assert_eq!(mine[1].event.parent_process_id, std::process::id());
    // The audit session is inherited from the test process.
    let session: Option<u32> = std::fs::read_to_string("/proc/self/sessionid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&s| s != u32::MAX);
    assert_eq!(mine[0].event.terminal_session_id, session);
}
