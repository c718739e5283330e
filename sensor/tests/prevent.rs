//! Prevention against the real kernel, through the `sigexec` binary as an
//! admin runs it: a fake `systemctl` (a copy of bash, run as
//! `bin/systemctl -c 'echo > stop; echo > kesl'`, so its command line says
//! `stop` and `kesl` and it creates files of those names only if it ran; a
//! copy of `touch` would do the same, but the lab VMs have only busybox's,
//! which dispatches on its name) is killed before it runs when a
//! non-allowed uid starts it, runs
//! for an allowed uid or under an allow-listed ancestor, runs in dry-run;
//! the kill-rate breaker drops the host to dry-run by itself; an
//! undecidable rule refuses the start.
//!
//! Root is always allow-listed here: other test runs on the same machine
//! run fake `systemctl stop kesl` as root, and must not be killed by ours.
//! The daemons run one at a time (two would both act on every exec).

mod service_support;
mod support;

use std::{
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _, process::ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    sync::Mutex,
    time::Duration,
};

use service_support::{json_lines, wait_line};
use support::{KESL_RULE, ebpf_allowed, tempdir};

/// Not allow-listed in any config here.
const INTRUDER: u32 = 65534;
/// Allow-listed in the enforce config.
const ADMIN: u32 = 4242;

static ONE_DAEMON: Mutex<()> = Mutex::new(());

/// A running `sigexec run` with prevention, and its files.
struct Daemon {
    inner: service_support::Daemon,
    dir: PathBuf,
    output: PathBuf,
    _guard: tempfile::TempDir,
}

impl Daemon {
    /// Starts `sigexec run` on the seed rule alone with this `prevent:`
    /// block and waits until it is ready. `None` only on a kernel older
    /// than 5.17 (no `bpf_loop`), after checking that sigexec refused to
    /// start there with the message that says so; on a newer kernel any
    /// failure to start fails the test.
    fn start(prevent: &str) -> Option<Daemon> {
        let (guard, dir) = tempdir();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let rules = dir.join("rules");
        std::fs::create_dir(&rules).expect("mkdir rules");
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../rules/proc_creation_lnx_av_kaspersky_av_disabled.yml"
            ),
            rules.join("seed.yml"),
        )
        .expect("copy seed rule");
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "rules: {{bundled: false, dirs: [{}]}}\nstats: {{socket: {}}}\nalerts: \
                 {{fold_ms: 0}}\nprevent:\n{prevent}",
                rules.display(),
                dir.join("status.sock").display()
            ),
        )
        .expect("write config");
        let output = dir.join("alerts.jsonl");
        let mut inner = service_support::Daemon::spawn(&[
            "--config",
            config.to_str().expect("utf-8"),
            "--output",
            output.to_str().expect("utf-8"),
        ]);
        if let Err(why) = inner.try_wait_log_n("sigexec ready", 1, Duration::from_secs(60)) {
            let refusal = "prevention needs the BTF tracepoint and bpf_loop (Linux 5.17 or later)";
            if kernel_version() < (5, 17) {
                assert!(why.contains(refusal), "{why}");
                eprintln!("prevention refused on this kernel, as it must be: {refusal}");
                return None;
            }
            panic!("sigexec not ready: {why}");
        }
        Some(Daemon {
            inner,
            dir,
            output,
            _guard: guard,
        })
    }

    /// A fresh directory anyone can write, holding `bin/systemctl`, a
    /// copy of bash.
    fn workdir(&self, name: &str) -> PathBuf {
        let work = self.dir.join(name);
        std::fs::create_dir_all(work.join("bin")).expect("mkdir work/bin");
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        std::fs::copy("/bin/bash", work.join("bin/systemctl")).expect("copy bash");
        work
    }

    /// Every JSON line written so far.
    fn lines(&self) -> Vec<serde_json::Value> {
        json_lines(&self.output)
    }

    /// Waits (10 s) for the first line `pick` accepts.
    fn wait_for(&self, pick: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        wait_line(&self.output, Duration::from_secs(10), pick)
    }

    /// The seed rule's alert for `pid`.
    fn alert_for(&self, pid: u32) -> serde_json::Value {
        self.wait_for(|l| {
            l["kind"] == "alert" && l["rule"]["id"] == KESL_RULE && l["process"]["ProcessId"] == pid
        })
    }

    fn status(&self) -> serde_json::Value {
        service_support::status(&self.dir.join("status.sock"))
    }

    /// SIGTERM; the exit status, the log and the alerts file.
    fn stop(mut self) -> (ExitStatus, Vec<String>, String) {
        self.inner.signal(libc::SIGTERM);
        let status = self.inner.wait_exit(Duration::from_secs(10));
        let output = std::fs::read_to_string(&self.output).unwrap_or_default();
        (status, self.inner.log(), output)
    }
}

/// The running kernel's (major, minor).
fn kernel_version() -> (u32, u32) {
    // SAFETY: an all-zero utsname is a valid out-parameter.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes into the struct we pass.
    assert_eq!(unsafe { libc::uname(&mut uts) }, 0, "uname");
    // SAFETY: uname NUL-terminates `release`.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }.to_string_lossy();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Runs `bin/systemctl -c 'echo > stop; echo > kesl; echo > <extra>...'`
/// in `work` as `uid`.
fn fake_systemctl(work: &Path, uid: u32, extra: &[&str]) -> (u32, ExitStatus) {
    fake_systemctl_as(work, uid, uid, extra)
}

/// The fake systemctl as `uid`, with the audit login uid `login` (set
/// here, so that the session the tests run in, whatever its own login uid,
/// never allows or refuses by accident). The uid change happens in the
/// same pre_exec, after the login uid is written: that write needs
/// CAP_AUDIT_CONTROL, which the new uid lacks.
fn fake_systemctl_as(work: &Path, uid: u32, login: u32, extra: &[&str]) -> (u32, ExitStatus) {
    let script: String = ["stop", "kesl"]
        .iter()
        .chain(extra)
        .map(|f| format!("echo > {f}; "))
        .collect();
    let mut cmd = Command::new("bin/systemctl");
    cmd.args(["-c", &script]).current_dir(work);
    // SAFETY: the closure only writes a file and makes async-signal-safe
    // system calls, before exec.
    unsafe {
        cmd.pre_exec(move || {
            std::fs::write("/proc/self/loginuid", login.to_string())?;
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(uid, uid, uid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("run fake systemctl");
    let pid = child.id();
    (pid, child.wait().expect("wait fake systemctl"))
}

fn ran(work: &Path) -> bool {
    work.join("stop").exists() || work.join("kesl").exists()
}

#[test]
fn enforce_kills_a_non_allowed_uid_before_it_writes_and_lets_allowed_ones_run() {
    if !ebpf_allowed("prevent_enforce") {
        return;
    }
    let _one = ONE_DAEMON.lock().unwrap_or_else(|e| e.into_inner());
    let Some(daemon) = Daemon::start(&format!(
        "  rules: [{KESL_RULE}]\n  mode: enforce\n  allow:\n    users: [0, {ADMIN}]\n"
    )) else {
        return;
    };
    let started = daemon.wait_for(|l| l["kind"] == "prevent" && l["event"] == "started");
    assert_eq!(started["mode"], "enforce");

    let work = daemon.workdir("intruder");
    let (pid, status) = fake_systemctl(&work, INTRUDER, &[]);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(!ran(&work), "the killed systemctl wrote its files");
    let alert = daemon.alert_for(pid);
    assert_eq!(alert["action"], "killed");
    assert_eq!(alert["process"]["LogonId"], INTRUDER);

    let work = daemon.workdir("admin");
    let (pid, status) = fake_systemctl(&work, ADMIN, &[]);
    let alert = daemon.alert_for(pid);
    assert!(status.success(), "{status:?} {alert}");
    assert!(ran(&work));
    assert_eq!(alert["action"], "allowed");
    assert_eq!(
        alert["action_reason"],
        "the user or login user is on prevent.allow.users"
    );

    // Another uid, but logged in as the admin (as after `sudo -u`): the
    // login uid allows it. (With root itself the config's `0` would allow
    // it anyway; root stays allowed here for the reason at the top.)
    let work = daemon.workdir("login-admin");
    let (pid, status) = fake_systemctl_as(&work, INTRUDER, ADMIN, &[]);
    let alert = daemon.alert_for(pid);
    assert!(status.success(), "{status:?} {alert}");
    assert!(ran(&work));
    assert_eq!(alert["action"], "allowed");
    assert_eq!(alert["process"]["LoginUid"], ADMIN);

    // An init script: the kernel loads the shell, and the rule's
    // `Image|endswith: /sh` matches through the `Interpreter` view, which
    // the kernel decides too.
    let work = daemon.workdir("initd");
    let script = work.join("kesl");
    std::fs::write(&script, "#!/bin/sh\necho > ran\n").expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut child = Command::new("./kesl")
        .arg("stop")
        .current_dir(&work)
        .uid(INTRUDER)
        .gid(INTRUDER)
        .spawn()
        .expect("run script");
    let pid = child.id();
    let status = child.wait().expect("wait script");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(!work.join("ran").exists(), "the killed script ran");
    let alert = daemon.alert_for(pid);
    assert_eq!(alert["action"], "killed");
    assert_eq!(alert["match"]["image_as"], "interpreter");

    let status = daemon.status();
    assert_eq!(status["prevent"]["mode"], "enforce");
    assert_eq!(status["prevent"]["kills"], 2);
    assert_eq!(status["prevent"]["breaker_tripped"], false);

    // Enforcement ends with the daemon, and that is an alert.
    let (exit, log, text) = daemon.stop();
    assert!(exit.success(), "{exit:?}\n{}", log.join("\n"));
    let stopped: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["kind"] == "prevent" && l["event"] == "stopped")
        .collect();
    assert_eq!(stopped.len(), 1, "{text}");
    assert_eq!(stopped[0]["level"], "high");
}

#[test]
fn an_allow_listed_ancestor_image_lets_its_children_run() {
    if !ebpf_allowed("prevent_ancestor") {
        return;
    }
    let _one = ONE_DAEMON.lock().unwrap_or_else(|e| e.into_inner());
    let (_guard, pm_dir) = tempdir();
    std::fs::set_permissions(&pm_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // A package manager stand-in: a shell named pkgmgr.
    let pkgmgr = pm_dir.join("pkgmgr");
    std::fs::copy("/bin/bash", &pkgmgr).expect("copy bash");
    let Some(daemon) = Daemon::start(&format!(
        "  rules: [{KESL_RULE}]\n  mode: enforce\n  allow:\n    users: [0]\n    \
         ancestor_images: [{}]\n",
        pkgmgr.display()
    )) else {
        return;
    };
    let work = daemon.workdir("upgrade");
    // `; true` keeps the shell from exec'ing systemctl in its own process:
    // the shell must be an ancestor, not the process itself.
    let status = Command::new(&pkgmgr)
        .args(["-c", "bin/systemctl -c 'echo > stop; echo > kesl'; true"])
        .current_dir(&work)
        .uid(INTRUDER)
        .gid(INTRUDER)
        .status()
        .expect("run pkgmgr");
    assert!(status.success(), "{status:?}");
    assert!(
        ran(&work),
        "systemctl under the allow-listed ancestor did not run"
    );
    let alert = daemon.wait_for(|l| {
        l["kind"] == "alert" && l["rule"]["id"] == KESL_RULE && l["process"]["LogonId"] == INTRUDER
    });
    assert_eq!(alert["action"], "allowed");
    assert_eq!(
        alert["action_reason"],
        "an ancestor runs an image on prevent.allow.ancestor_images"
    );
    // The same command outside the package manager is still killed.
    let work = daemon.workdir("outside");
    let (_, status) = fake_systemctl(&work, INTRUDER, &[]);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(!ran(&work));
    daemon.stop();
}

#[test]
fn dry_run_kills_nothing_and_says_would_kill() {
    if !ebpf_allowed("prevent_dry_run") {
        return;
    }
    let _one = ONE_DAEMON.lock().unwrap_or_else(|e| e.into_inner());
    // mode left out: dry-run is the default.
    let Some(daemon) = Daemon::start(&format!(
        "  rules: [{KESL_RULE}]\n  allow:\n    users: [0]\n"
    )) else {
        return;
    };
    let work = daemon.workdir("dry");
    let (pid, status) = fake_systemctl(&work, INTRUDER, &[]);
    assert!(status.success(), "{status:?}");
    assert!(ran(&work));
    let alert = daemon.alert_for(pid);
    assert_eq!(alert["action"], "would_kill");
    assert_eq!(alert["action_reason"], "dry-run");
    let status = daemon.status();
    assert_eq!(status["prevent"]["mode"], "dry-run");
    assert_eq!(status["prevent"]["kills"], 0);
    assert_eq!(status["prevent"]["would_kill"], 1);
    daemon.stop();
}

#[test]
fn the_kill_rate_breaker_trips_on_a_storm_and_the_host_is_back_to_dry_run() {
    if !ebpf_allowed("prevent_breaker") {
        return;
    }
    let _one = ONE_DAEMON.lock().unwrap_or_else(|e| e.into_inner());
    let Some(daemon) = Daemon::start(&format!(
        "  rules: [{KESL_RULE}]\n  mode: enforce\n  allow:\n    users: [0]\n  kill_rate:\n    \
         max_kills: 3\n    window_secs: 600\n"
    )) else {
        return;
    };
    let work = daemon.workdir("storm");
    let mut killed = 0;
    for i in 0..10 {
        let marker = format!("m{i}");
        let (_, status) = fake_systemctl(&work, INTRUDER, &[&marker]);
        let wrote = work.join(&marker).exists();
        if status.signal() == Some(libc::SIGKILL) {
            assert!(!wrote, "exec {i} was killed but ran");
            killed += 1;
        } else {
            assert!(status.success() && wrote, "exec {i}: {status:?}");
            assert!(i >= 3, "exec {i} ran before the limit was reached");
        }
    }
    assert_eq!(killed, 3, "the limit is 3 kills per window");
    let tripped = daemon.wait_for(|l| l["kind"] == "prevent" && l["event"] == "breaker_tripped");
    assert_eq!(tripped["mode"], "dry-run");
    assert_eq!(tripped["max_kills"], 3);
    assert_eq!(tripped["level"], "high");
    let status = daemon.status();
    assert_eq!(status["prevent"]["mode"], "dry-run");
    assert_eq!(status["prevent"]["configured_mode"], "enforce");
    assert_eq!(status["prevent"]["breaker_tripped"], true);
    assert_eq!(status["prevent"]["kills"], 3);
    // The exec that tripped it says so; the ones after are plain dry-run.
    let lines = daemon.lines();
    let actions: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["kind"] == "alert")
        .map(|l| {
            (
                l["action"].as_str().unwrap_or(""),
                l["action_reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(actions.iter().filter(|(a, _)| *a == "killed").count(), 3);
    assert!(
        actions.contains(&(
            "would_kill",
            "kill-rate breaker tripped: the kernel switched prevention to dry-run"
        )),
        "{actions:?}"
    );
    daemon.stop();
}

#[test]
fn a_rule_the_kernel_cannot_decide_refuses_the_start_and_says_which_part() {
    // Fails before anything is loaded: needs no root.
    let (_guard, dir) = tempdir();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let rules = dir.join("rules");
    std::fs::create_dir(&rules).expect("mkdir");
    std::fs::write(
        rules.join("parent.yml"),
        "title: Kesl stopped from a web server\nid: 6f0c59d4-0000-4000-8000-000000000009\n\
         logsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    \
         CommandLine|contains|all: [stop, kesl]\n    ParentImage|endswith: /nginx\n  \
         condition: sel\nlevel: high\n",
    )
    .expect("write rule");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: {{bundled: false, dirs: [{}]}}\nstats: {{socket: ''}}\nprevent:\n  rules: \
             [6f0c59d4-0000-4000-8000-000000000009]\n",
            rules.display()
        ),
    )
    .expect("write config");
    let stderr = service_support::refused_start(&config);
    let want = format!(
        "prevent.rules: {}:9:5: rule 'Kesl stopped from a web server': not decidable in the \
         kernel: search 'sel', ParentImage|endswith: field 'ParentImage' is not decided in the \
         kernel (Image, CommandLine, LogonId and User are)",
        rules.join("parent.yml").display()
    );
    assert!(stderr.contains(&want), "{stderr}");
}
