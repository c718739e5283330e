//! One incident, one alert.
//!
//! Two patterns would otherwise page a SOC twice for one act:
//! - several rules firing on the same exec (`systemctl stop kesl` matches
//!   SigmaHQ's rule and the pack's service-manager rule);
//! - the stop that systemd carries out for a client: right after
//!   `systemctl stop kesl`, PID 1 execs the unit's `ExecStop`
//!   (`.../init.d/kesl stop`), which the same rules match again.
//!
//! [`Incidents`] folds an alert that belongs to a held one into it as a
//! `related` entry instead of writing it: same process (`ProcessGuid`:
//! several rules on one exec, always in the same batch), or a process PID 1
//! started whose command line names the unit the held alert's command acted
//! on. Only alerts on a service manager's command (`systemctl`, `service`,
//! ...) can be followed by such an exec, so only they wait, for a short
//! window ([`DEFAULT_HOLD`], well inside the "alert within a second"
//! promise); every other alert leaves with the batch it came in, without
//! added latency.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::engine::Alert;

/// How long a service manager's alert waits for the exec systemd makes on
/// its behalf. systemctl's D-Bus call, the job, and PID 1's fork and exec
/// of `ExecStop` take tens of milliseconds on an idle host.
pub const DEFAULT_HOLD: Duration = Duration::from_millis(250);

/// Tools whose command makes PID 1 run something for the unit named.
const SERVICE_MANAGERS: &[&str] = &[
    "systemctl",
    "service",
    "invoke-rc.d",
    "rc-service",
    "initctl",
];

/// A folded alert, as listed in the alert it joined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Related {
    pub rule_id: Option<String>,
    pub rule_title: String,
    pub level: Option<String>,
    /// Why it was folded: `same_process` or `service_manager`.
    pub reason: &'static str,
    #[serde(rename = "ProcessId")]
    pub process_id: Option<u64>,
    #[serde(rename = "Image")]
    pub image: Option<String>,
    #[serde(rename = "CommandLine")]
    pub command_line: Option<String>,
    #[serde(rename = "UtcTime")]
    pub utc_time: Option<String>,
    /// The exclusion that marked the folded alert, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed_by: Option<String>,
}

struct Held {
    alert: Alert,
    until: Instant,
}

/// Alerts waiting for their window to close.
pub struct Incidents {
    hold: Duration,
    held: Vec<Held>,
}

impl Incidents {
    pub fn new(hold: Duration) -> Incidents {
        Incidents {
            hold,
            held: Vec::new(),
        }
    }

    /// Takes a new alert: folds it into a held one, or holds it.
    pub fn push(&mut self, alert: Alert, now: Instant) {
        for held in &mut self.held {
            let Some(reason) = belongs(&held.alert, &alert) else {
                continue;
            };
            match (&held.alert.suppressed_by, &alert.suppressed_by) {
                // An expected stop (suppressed) must not hide a rule that
                // no exclusion covers on the same exec: that one pages.
                (Some(_), None) if reason == "same_process" => continue,
                // systemd running ExecStop for a suppressed stop is part of
                // that expected stop: folded, and the level stays lowered.
                (Some(_), None) => {
                    held.alert.related.push(related(&alert, reason));
                    return;
                }
                _ => {}
            }
            let higher = rank(alert.rule.level.as_deref()) > rank(held.alert.rule.level.as_deref());
            if higher
                && reason == "same_process"
                && alert.suppressed_by.is_none() == held.alert.suppressed_by.is_none()
            {
                // Several rules on one exec: the most severe one leads, so
                // that the alert's rule id, title and level agree (a SIEM
                // query on the critical rule's id finds the incident); the
                // others are listed under it.
                // A new alert has no `related` of its own yet.
                let before = std::mem::replace(&mut held.alert, alert);
                held.alert.related.push(related(&before, reason));
                held.alert.related.extend(before.related);
                return;
            }
            held.alert.related.push(related(&alert, reason));
            // A folded alert of a higher level raises the incident (the
            // exec systemd makes for a client stays under the client's
            // alert, which names who asked).
            if higher {
                held.alert.rule.level = alert.rule.level.clone();
            }
            return;
        }
        let until = if self.hold > Duration::ZERO && may_have_followers(&alert) {
            now + self.hold
        } else {
            now
        };
        self.held.push(Held { alert, until });
    }

    /// Alerts whose window has closed, in arrival order.
    pub fn ready(&mut self, now: Instant) -> Vec<Alert> {
        let (done, keep): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.until <= now);
        self.held = keep;
        done.into_iter().map(|h| h.alert).collect()
    }

    /// Every held alert, now (shutdown).
    pub fn flush(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.held)
            .into_iter()
            .map(|h| h.alert)
            .collect()
    }

    /// When the next held alert is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.iter().map(|h| h.until).min()
    }
}

fn str_of<'a>(alert: &'a Alert, field: &str) -> Option<&'a str> {
    alert.process.get(field).and_then(|v| v.as_str())
}

/// Why `new` belongs to the incident of `held`, if it does.
fn belongs(held: &Alert, new: &Alert) -> Option<&'static str> {
    let guid = str_of(held, "ProcessGuid");
    if guid.is_some() && guid == str_of(new, "ProcessGuid") {
        return Some("same_process");
    }
    // systemd (PID 1) running the unit's own command for the held client.
    let started_by_init = new.process.get("ParentProcessId").and_then(|v| v.as_u64()) == Some(1);
    if !started_by_init {
        return None;
    }
    let unit = acted_on_unit(held)?;
    let cmd = str_of(new, "CommandLine")?;
    cmd.split(|c: char| c == '/' || c.is_whitespace())
        .any(|word| word == unit)
        .then_some("service_manager")
}

/// Whether PID 1 may exec something for this alert's command soon.
fn may_have_followers(alert: &Alert) -> bool {
    let tool = |field: &str| {
        str_of(alert, field)
            .and_then(|p| p.rsplit('/').next())
            .is_some_and(|t| SERVICE_MANAGERS.contains(&t))
    };
    tool("Image") || tool("ImageInvoked")
}

/// The unit a service-manager command acted on: its last argument that is
/// not an option, without a `.service` suffix (`systemctl stop kesl.service`
/// -> `kesl`; `service kesl stop` -> `kesl`).
fn acted_on_unit(alert: &Alert) -> Option<&str> {
    let argv: Vec<&str> = alert
        .process
        .get("Argv")?
        .as_array()?
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    let tool = argv.first()?.rsplit('/').next()?;
    let args = argv.get(1..)?;
    let unit = match tool {
        // `service NAME VERB`
        "service" | "invoke-rc.d" | "rc-service" => args.iter().find(|a| !a.starts_with('-'))?,
        _ => args.iter().rev().find(|a| !a.starts_with('-'))?,
    };
    Some(unit.strip_suffix(".service").unwrap_or(unit))
}

fn related(alert: &Alert, reason: &'static str) -> Related {
    Related {
        rule_id: alert.rule.id.clone(),
        rule_title: alert.rule.title.clone(),
        level: alert.rule.level.clone(),
        reason,
        process_id: alert.process.get("ProcessId").and_then(|v| v.as_u64()),
        image: str_of(alert, "Image").map(str::to_owned),
        command_line: str_of(alert, "CommandLine").map(str::to_owned),
        utc_time: str_of(alert, "UtcTime").map(str::to_owned),
        suppressed_by: alert.suppressed_by.clone(),
    }
}

fn rank(level: Option<&str>) -> u8 {
    match level {
        Some("informational") => 1,
        Some("low") => 2,
        Some("medium") => 3,
        Some("high") => 4,
        Some("critical") => 5,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn alert(rule: &str, level: &str, process: serde_json::Value) -> Alert {
        Alert::for_test(Some(rule), rule, level, process)
    }

    fn systemctl_stop() -> serde_json::Value {
        json!({"ProcessGuid": "{a}", "ProcessId": 100, "ParentProcessId": 50,
               "Image": "/usr/bin/systemctl", "CommandLine": "systemctl stop kesl.service",
               "Argv": ["systemctl", "stop", "kesl.service"]})
    }

    fn exec_stop_from_pid1() -> serde_json::Value {
        json!({"ProcessGuid": "{b}", "ProcessId": 101, "ParentProcessId": 1,
               "Image": "/usr/bin/dash",
               "CommandLine": "/bin/sh /var/opt/kaspersky/kesl/install-current/etc/init.d/kesl stop",
               "Argv": ["/bin/sh", "/var/opt/kaspersky/kesl/install-current/etc/init.d/kesl", "stop"]})
    }

    #[test]
    fn a_stop_and_the_exec_stop_systemd_runs_for_it_are_one_alert() {
        let t0 = Instant::now();
        let mut inc = Incidents::new(DEFAULT_HOLD);
        inc.push(alert("seed", "high", systemctl_stop()), t0);
        inc.push(alert("service", "high", systemctl_stop()), t0);
        inc.push(
            alert("seed", "high", exec_stop_from_pid1()),
            t0 + Duration::from_millis(30),
        );
        assert!(
            inc.ready(t0 + Duration::from_millis(100)).is_empty(),
            "still held"
        );
        let out = inc.ready(t0 + DEFAULT_HOLD);
        assert_eq!(out.len(), 1);
        let reasons: Vec<_> = out[0].related.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, ["same_process", "service_manager"]);
        assert_eq!(out[0].related[1].process_id, Some(101));
    }

    #[test]
    fn unrelated_alerts_stay_apart() {
        let t0 = Instant::now();
        let mut inc = Incidents::new(DEFAULT_HOLD);
        inc.push(alert("seed", "high", systemctl_stop()), t0);
        // PID 1 stopping another unit is not this incident.
        let mut other = exec_stop_from_pid1();
        other["CommandLine"] = "/bin/sh /etc/init.d/nginx stop".into();
        other["Argv"] = json!(["/bin/sh", "/etc/init.d/nginx", "stop"]);
        inc.push(alert("seed", "high", other), t0);
        // The same unit named by a user's shell, not by PID 1: a new act.
        let mut by_user = exec_stop_from_pid1();
        by_user["ParentProcessId"] = 77.into();
        by_user["ProcessGuid"] = "{d}".into();
        inc.push(alert("seed", "high", by_user), t0);
        assert_eq!(inc.flush().len(), 3);
    }

    #[test]
    fn the_most_severe_rule_on_one_exec_leads_the_incident() {
        let t0 = Instant::now();
        let mut inc = Incidents::new(DEFAULT_HOLD);
        let p = json!({"ProcessGuid": "{c}", "Argv": ["kesl-control", "--stop-task", "1"]});
        inc.push(alert("control", "high", p.clone()), t0);
        inc.push(alert("file-protection", "critical", p.clone()), t0);
        inc.push(alert("lookup", "medium", p), t0);
        let out = inc.flush();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rule.id.as_deref(), Some("file-protection"));
        assert_eq!(out[0].rule.level.as_deref(), Some("critical"));
        let related: Vec<_> = out[0]
            .related
            .iter()
            .map(|r| r.rule_id.as_deref())
            .collect();
        assert_eq!(related, [Some("control"), Some("lookup")]);
    }

    #[test]
    fn a_more_severe_exec_stop_raises_the_clients_alert() {
        let t0 = Instant::now();
        let mut inc = Incidents::new(DEFAULT_HOLD);
        inc.push(alert("service", "medium", systemctl_stop()), t0);
        inc.push(alert("seed", "high", exec_stop_from_pid1()), t0);
        let out = inc.flush();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rule.id.as_deref(), Some("service"));
        assert_eq!(out[0].rule.level.as_deref(), Some("high"));
        assert_eq!(out[0].related[0].reason, "service_manager");
    }

    fn suppressed(mut a: Alert, filter: &str) -> Alert {
        a.suppressed_by = Some(filter.into());
        a.rule.level = Some("informational".into());
        a
    }

    #[test]
    fn exec_stop_of_a_suppressed_stop_stays_suppressed() {
        let t0 = Instant::now();
        let mut inc = Incidents::new(DEFAULT_HOLD);
        let stop = alert("seed", "high", systemctl_stop());
        inc.push(suppressed(stop, "config_management"), t0);
        // PID 1's ExecStop has systemd, not ansible, as its ancestry: no
        // exclusion marks it, yet it is the same expected stop.
        inc.push(
            alert("seed", "high", exec_stop_from_pid1()),
            t0 + Duration::from_millis(30),
        );
        let out = inc.flush();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].suppressed_by.as_deref(), Some("config_management"));
        assert_eq!(out[0].rule.level.as_deref(), Some("informational"));
        assert_eq!(out[0].related[0].reason, "service_manager");
    }

    #[test]
    fn a_suppressed_alert_does_not_hide_an_uncovered_rule_on_the_same_exec() {
        let t0 = Instant::now();
        let mut inc = Incidents::new(DEFAULT_HOLD);
        let stop = alert("seed", "high", systemctl_stop());
        inc.push(suppressed(stop, "package_manager"), t0);
        inc.push(alert("local-rule", "medium", systemctl_stop()), t0);
        let out = inc.flush();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].suppressed_by, None);
        assert_eq!(out[1].rule.level.as_deref(), Some("medium"));
        // The other way round, a suppressed hit joins the paging alert.
        let mut inc = Incidents::new(DEFAULT_HOLD);
        inc.push(alert("local-rule", "medium", systemctl_stop()), t0);
        let stop = alert("seed", "high", systemctl_stop());
        inc.push(suppressed(stop, "package_manager"), t0);
        let out = inc.flush();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].related[0].suppressed_by.as_deref(),
            Some("package_manager")
        );
        assert_eq!(out[0].rule.level.as_deref(), Some("medium"));
    }

    #[test]
    fn alerts_that_nothing_can_follow_leave_at_once() {
        let t0 = Instant::now();
        let mut inc = Incidents::new(DEFAULT_HOLD);
        let p = json!({"ProcessGuid": "{e}", "Image": "/usr/bin/pkill",
                       "Argv": ["pkill", "-9", "wdserver"]});
        inc.push(alert("kill", "high", p.clone()), t0);
        inc.push(alert("other", "medium", p), t0);
        let out = inc.ready(t0);
        assert_eq!(out.len(), 1, "same exec folded, no wait");
        assert_eq!(out[0].related.len(), 1);
        assert_eq!(inc.next_due(), None);
    }

    #[test]
    fn service_style_argument_order() {
        let a = alert(
            "s",
            "high",
            json!({"Argv": ["/usr/sbin/service", "kesl", "stop"]}),
        );
        assert_eq!(acted_on_unit(&a), Some("kesl"));
        let a = alert(
            "s",
            "high",
            json!({"Argv": ["systemctl", "disable", "--now", "kesl-supervisor.service"]}),
        );
        assert_eq!(acted_on_unit(&a), Some("kesl-supervisor"));
    }
}
