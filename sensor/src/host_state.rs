//! Is the host shutting down? Stops that systemd performs because the host
//! is powering off or rebooting are not an attack; alerts raised then are
//! annotated `host_state: "stopping"` and lowered (default: to
//! `informational`).
//!
//! The signal: a job for (or the activation of) `shutdown.target`, read
//! with `systemctl show --property=Job --property=ActiveState
//! shutdown.target`. Every way of powering off, rebooting, halting or
//! kexec-ing goes through that target (`systemctl reboot`, `shutdown`,
//! logind's power key, an ACPI event), and every service with default
//! dependencies is ordered before it, so its start job waits, queued,
//! while those services stop: exactly when KESL's ExecStop runs.
//!
//! Not `systemctl is-system-running`: its `stopping` comes only after
//! the boot transaction finished; until then it says `starting` whatever
//! is queued. A host told to reboot while a boot job still runs (a hung
//! mount, a slow oneshot) would never read as stopping; the systemd lab
//! (`cargo xtask vm-test --systemd`) met exactly that.
//!
//! systemctl talks to PID 1 over its private socket, so the answer comes
//! even after the D-Bus daemon has been stopped. The probe runs only when
//! an alert fires, with a bounded wait, and is cached for a second. Where
//! systemd is not PID 1 the probe answers nothing and alerts are left
//! alone.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::engine::Alert;

const CACHE_FOR: Duration = Duration::from_secs(1);
/// systemctl answers in milliseconds on an idle host, but PID 1 serves one
/// request at a time: in the lab's TCG guest, behind the `systemctl
/// list-unit-files` that `service kesl stop` runs, the probe waited over
/// 2 s (the alert then keeps its level, and the timeout is logged). The
/// wait blocks the alert path, only when an alert fires, at most once a
/// second.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct HostState {
    systemctl: PathBuf,
    cached: Option<(Instant, bool)>,
    /// The level alerts get while the host is stopping (`None`: keep).
    stopping_level: Option<String>,
}

impl HostState {
    /// Probes with `systemctl` from PATH; lowers to `informational`.
    pub fn systemd() -> HostState {
        HostState::with_systemctl("systemctl".into(), Some("informational".into()))
    }

    pub fn with_systemctl(systemctl: PathBuf, stopping_level: Option<String>) -> HostState {
        HostState {
            systemctl,
            cached: None,
            stopping_level,
        }
    }

    /// Whether systemd is shutting the host down (false when it does not
    /// answer).
    pub fn stopping(&mut self, now: Instant) -> bool {
        if let Some((at, stopping)) = self.cached
            && now.duration_since(at) < CACHE_FOR
        {
            return stopping;
        }
        let stopping = match probe(&self.systemctl) {
            Probe::Answer(out) => shutdown_pending(&out),
            Probe::NoSystemd => false,
            Probe::TimedOut => {
                // Not cached: the next alert asks again.
                tracing::warn!(
                    systemctl = %self.systemctl.display(),
                    timeout_ms = PROBE_TIMEOUT.as_millis() as u64,
                    "host state probe timed out; the alert keeps its level"
                );
                return false;
            }
        };
        self.cached = Some((now, stopping));
        stopping
    }

    /// Annotates and lowers `alert` when the host is stopping.
    pub fn annotate(&mut self, alert: &mut Alert, now: Instant) {
        if self.stopping(now) {
            alert.host_state = Some("stopping".into());
            if let Some(level) = &self.stopping_level {
                alert.rule.level = Some(level.clone());
            }
        }
    }
}

/// `systemctl show`'s answer for shutdown.target: `Job=<id>` while a job
/// is queued for it (no `Job` line, or an empty one, when there is none),
/// and its `ActiveState`.
fn shutdown_pending(show: &str) -> bool {
    show.lines().any(|line| match line.split_once('=') {
        Some(("Job", id)) => id.trim().parse::<u32>().is_ok_and(|id| id > 0),
        Some(("ActiveState", state)) => matches!(state.trim(), "active" | "activating"),
        _ => false,
    })
}

enum Probe {
    /// What `systemctl show` printed.
    Answer(String),
    /// systemctl missing or failing: systemd is not PID 1 here.
    NoSystemd,
    TimedOut,
}

fn probe(systemctl: &PathBuf) -> Probe {
    let spawn = || {
        Command::new(systemctl)
            .args([
                "show",
                "--property=Job",
                "--property=ActiveState",
                "shutdown.target",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
    };
    // ETXTBSY: the file is open for writing somewhere (a package upgrade
    // replacing systemctl, or, in a multi-threaded process, a child forked
    // while another thread wrote it and not yet exec'd). It clears within
    // moments; "no systemd" would be the wrong answer.
    let mut child = spawn();
    for _ in 0..20 {
        match &child {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(10));
                child = spawn();
            }
            _ => break,
        }
    }
    let Ok(mut child) = child else {
        return Probe::NoSystemd;
    };
    let deadline = Instant::now() + PROBE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Probe::TimedOut;
            }
            _ => return Probe::NoSystemd,
        }
    }
    let mut out = String::new();
    let read = child
        .stdout
        .take()
        .is_some_and(|mut stdout| std::io::Read::read_to_string(&mut stdout, &mut out).is_ok());
    if read {
        Probe::Answer(out)
    } else {
        Probe::NoSystemd
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// A systemctl that prints `out` for any arguments.
    fn fake_systemctl(dir: &std::path::Path, out: &str) -> PathBuf {
        let path = dir.join("systemctl");
        std::fs::write(&path, format!("#!/bin/sh\nprintf '{out}'\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    fn alert() -> Alert {
        Alert::for_test(None, "t", "high", serde_json::Value::Null)
    }

    #[test]
    fn a_stopping_host_lowers_and_annotates_alerts() {
        // systemd 252 during `systemctl poweroff`, boot finished or not.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut hs = HostState::with_systemctl(
            fake_systemctl(dir.path(), "Job=128\\nActiveState=inactive\\n"),
            Some("informational".into()),
        );
        let mut a = alert();
        hs.annotate(&mut a, Instant::now());
        assert_eq!(a.host_state.as_deref(), Some("stopping"));
        assert_eq!(a.rule.level.as_deref(), Some("informational"));
    }

    #[test]
    fn a_running_host_or_no_systemd_leaves_alerts_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        for systemctl in [
            fake_systemctl(dir.path(), "ActiveState=inactive\\n"),
            dir.path().join("absent"),
        ] {
            let mut hs = HostState::with_systemctl(systemctl, Some("informational".into()));
            let mut a = alert();
            hs.annotate(&mut a, Instant::now());
            assert_eq!(a.host_state, None);
            assert_eq!(a.rule.level.as_deref(), Some("high"));
        }
    }

    #[test]
    fn a_probe_that_times_out_keeps_the_level_and_is_not_cached() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("systemctl");
        std::fs::write(&path, "#!/bin/sh\nexec sleep 5\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut hs = HostState::with_systemctl(path, Some("informational".into()));
        let mut a = alert();
        let started = Instant::now();
        hs.annotate(&mut a, started);
        assert!(started.elapsed() < PROBE_TIMEOUT + Duration::from_secs(1));
        assert_eq!(a.host_state, None);
        assert_eq!(a.rule.level.as_deref(), Some("high"));
        assert!(hs.cached.is_none(), "a timed-out probe is asked again");
    }

    #[test]
    fn a_shutdown_job_or_an_active_shutdown_target_is_stopping() {
        assert!(shutdown_pending("Job=42\nActiveState=inactive\n"));
        assert!(shutdown_pending("ActiveState=active\n"));
        assert!(!shutdown_pending("ActiveState=inactive\n"));
        assert!(!shutdown_pending("Job=\nActiveState=inactive\n"));
        assert!(!shutdown_pending("Job=0\nActiveState=inactive\n"));
        assert!(!shutdown_pending(""));
    }
}
