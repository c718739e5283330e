//! Is the host shutting down? Stops that systemd performs because the host
//! is powering off or rebooting are not an attack; alerts raised then are
//! annotated `host_state: "stopping"` and lowered (default: to
//! `informational`).
//!
//! The signal: systemd's own `SystemState`, which turns `stopping` when the
//! shutdown transaction starts (poweroff/reboot/halt target queued, by
//! `systemctl reboot`, `shutdown`, logind's power key, or an ACPI event
//! alike), read with `systemctl is-system-running`. systemctl talks to PID
//! 1 over its private socket, so the answer comes even after the D-Bus
//! daemon has been stopped, which is when KESL's ExecStop runs. The probe
//! runs only when an alert fires, with a bounded wait, and is cached for a
//! second. Where systemd is not PID 1 the probe answers nothing and alerts
//! are left alone.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::engine::Alert;

const CACHE_FOR: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

pub struct HostState {
    systemctl: PathBuf,
    cached: Option<(Instant, Option<String>)>,
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

    /// systemd's state (`running`, `degraded`, `stopping`, ...), if it
    /// answers.
    pub fn state(&mut self, now: Instant) -> Option<String> {
        if let Some((at, state)) = &self.cached
            && now.duration_since(*at) < CACHE_FOR
        {
            return state.clone();
        }
        let state = probe(&self.systemctl);
        self.cached = Some((now, state.clone()));
        state
    }

    /// Annotates and lowers `alert` when the host is stopping.
    pub fn annotate(&mut self, alert: &mut Alert, now: Instant) {
        if self.state(now).as_deref() == Some("stopping") {
            alert.host_state = Some("stopping".into());
            if let Some(level) = &self.stopping_level {
                alert.rule.level = Some(level.clone());
            }
        }
    }
}

fn probe(systemctl: &PathBuf) -> Option<String> {
    let mut child = Command::new(systemctl)
        .arg("is-system-running")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + PROBE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
    // is-system-running exits non-zero for every state but `running`; the
    // state word on stdout is what counts.
    let state = out.trim();
    (!state.is_empty() && !state.contains(' ')).then(|| state.to_owned())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::engine::{Evidence, Host, ImageAs, RuleRef};

    fn fake_systemctl(dir: &std::path::Path, state: &str) -> PathBuf {
        let path = dir.join("systemctl");
        std::fs::write(&path, format!("#!/bin/sh\necho {state}\nexit 1\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    fn alert() -> Alert {
        Alert {
            timestamp: String::new(),
            kind: "alert",
            rule: RuleRef {
                id: None,
                title: "t".into(),
                level: Some("high".into()),
                status: None,
                tags: Vec::new(),
                description: None,
                falsepositives: Vec::new(),
                references: Vec::new(),
                author: None,
                source: String::new(),
            },
            evidence: Evidence {
                image_as: ImageAs::Resolved,
                image: String::new(),
                parent_image_as: ImageAs::Resolved,
                parent_image: None,
            },
            host: Host {
                hostname: "h".into(),
            },
            host_state: None,
            related: Vec::new(),
            prevention: None,
            process: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_stopping_host_lowers_and_annotates_alerts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut hs = HostState::with_systemctl(
            fake_systemctl(dir.path(), "stopping"),
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
            fake_systemctl(dir.path(), "degraded"),
            dir.path().join("absent"),
        ] {
            let mut hs = HostState::with_systemctl(systemctl, Some("informational".into()));
            let mut a = alert();
            hs.annotate(&mut a, Instant::now());
            assert_eq!(a.host_state, None);
            assert_eq!(a.rule.level.as_deref(), Some("high"));
        }
    }
}
