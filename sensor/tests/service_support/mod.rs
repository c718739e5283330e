//! Harness for tests that run `sigexec run` as a process: start it with a
//! config file, follow its log, send it signals, wait for its exit.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub const SIGEXEC: &str = env!("CARGO_BIN_EXE_sigexec");

pub struct Daemon {
    pub child: Child,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Starts `sigexec run ARGS` and waits for "sigexec ready".
    pub fn start(args: &[&str]) -> Daemon {
        let mut d = Daemon::spawn(args);
        d.wait_log("sigexec ready", Duration::from_secs(30));
        d
    }

    pub fn spawn(args: &[&str]) -> Daemon {
        Daemon::spawn_env(args, &[])
    }

    /// Like [`Daemon::spawn`], with extra environment variables.
    pub fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        // WATCHDOG_PID must name sigexec itself: a shell that sets it to
        // its own pid and then execs sigexec.
        let mut cmd = if env.iter().any(|(k, _)| *k == "WATCHDOG_USEC") {
            let mut c = Command::new("/bin/sh");
            c.args(["-c", "WATCHDOG_PID=$$ exec \"$0\" run \"$@\"", SIGEXEC]);
            c
        } else {
            let mut c = Command::new(SIGEXEC);
            c.arg("run");
            c
        };
        let mut child = cmd
            .args(args)
            .envs(env.iter().copied())
            .env("SIGEXEC_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sigexec run");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().expect("log lock").push(line);
                }
            })
        };
        Daemon {
            child,
            log,
            reader: Some(reader),
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Lines containing `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits until the log has at least `n` lines containing `needle`.
    pub fn wait_log_n(&mut self, needle: &str, n: usize, timeout: Duration) -> Vec<String> {
        self.try_wait_log_n(needle, n, timeout)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Daemon::wait_log_n`], but says why it gave up (sigexec
    /// exited, or `timeout` passed, with the log) instead of panicking, for
    /// a caller to whom an exit can be the expected answer.
    pub fn try_wait_log_n(
        &mut self,
        needle: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<String>, String> {
        let start = Instant::now();
        loop {
            let log = self.log();
            let hits: Vec<String> = log.iter().filter(|l| l.contains(needle)).cloned().collect();
            if hits.len() >= n {
                return Ok(hits);
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The whole log: the reader may still be draining stderr.
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return Err(format!(
                    "sigexec exited ({status}) before logging {needle:?}:\n{}",
                    self.log().join("\n")
                ));
            }
            if start.elapsed() >= timeout {
                return Err(format!(
                    "no {n} x {needle:?} in the log within {timeout:?}:\n{}",
                    log.join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_log_n(needle, 1, timeout).remove(0)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with the pid of our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits for the exit; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                start.elapsed() < timeout,
                "sigexec still running {timeout:?} after being asked to stop:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(r) = self.reader.take() {
            r.join().expect("log reader");
        }
        status
    }

    /// SIGTERM, then asserts exit 0 within 5 s.
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(5));
        assert!(
            status.success(),
            "exit {status}:\n{}",
            self.log().join("\n")
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `sigexec run --config CONFIG`, which must refuse to start;
/// returns what it said on stderr.
pub fn refused_start(config: &Path) -> String {
    let out = Command::new(SIGEXEC)
        .args(["run", "--config"])
        .arg(config)
        .output()
        .expect("run sigexec");
    assert!(
        !out.status.success(),
        "sigexec started with {}",
        config.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `sigexec status` of the daemon listening on `socket`, as JSON.
pub fn status(socket: &Path) -> serde_json::Value {
    let out = Command::new(SIGEXEC)
        .args(["status", "--socket"])
        .arg(socket)
        .output()
        .expect("sigexec status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status json")
}

/// A root-owned 0755 directory tree for rules (the daemon refuses others).
pub fn rules_dir(base: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = base.join("rules.d");
    std::fs::create_dir_all(&dir).expect("mkdir rules.d");
    for d in [base, dir.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

/// The bundled kesl rule's text.
pub fn kesl_rule_text() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rules/proc_creation_lnx_av_kaspersky_av_disabled.yml"
    ))
    .expect("read kesl rule")
}

/// JSON lines of `path` (what is there now). A last line without its
/// newline is being written as we read (a reader can see part of a
/// `write(2)` in progress) and is left for the next look.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// Waits until `path` has a line for which `pred` holds; returns it.
pub fn wait_line(
    path: &Path,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        if let Some(v) = json_lines(path).into_iter().find(|v| pred(v)) {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "no matching line in {} within {timeout:?}:\n{}",
            path.display(),
            std::fs::read_to_string(path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `path args` to completion; returns its pid.
pub fn exec(path: &Path, args: &[&str]) -> u32 {
    let mut child = Command::new(path).args(args).spawn().expect("spawn");
    let pid = child.id();
    assert!(child.wait().expect("wait").success());
    pid
}

/// Writes `dir/NAME.yml`: a rule that fires only for command lines
/// containing `token`, so that tests running at the same time (every
/// daemon sees every exec on the machine) never trigger each other's
/// rules. Returns the rule id.
pub fn unique_rule(dir: &Path, name: &str, token: &str) -> String {
    let id = format!(
        "5e1f2b7a-{:04x}-4000-8000-{:012x}",
        std::process::id() & 0xffff,
        (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
            & 0xffff_ffff_ffff) as u64
    );
    std::fs::write(
        dir.join(format!("{name}.yml")),
        format!(
            "title: Test {name}\nid: {id}\nlevel: high\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  selection:\n    CommandLine|contains: '{token}'\n  condition: selection\n"
        ),
    )
    .expect("write rule");
    id
}
