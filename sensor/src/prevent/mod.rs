//! Prevention: opt-in, in-kernel kill of the execs that prevented rules
//! match (issue 9). The kernel side is `sensor-ebpf/src/prevent.rs`.
//!
//! - [`Config`]: the `prevent:` block, resolved (rule ids, mode,
//!   allow-lists, kill-rate breaker).
//! - [`Plan::compile`]: each prevented rule through
//!   [`crate::sigma::kernel::compile`] (refused with the part that is not
//!   decidable, never approximated), then [`policy::build`] into tables.
//! - [`Plan::action`]: what the kernel did with an exec, for the alert
//!   (`killed`, `would_kill`, `allowed`, `not_killed` with the reason).
//! - [`seed_tracked`]: the allow-tracking map for processes that were
//!   running before the daemon.
//!
//! Why in the kernel: the exec program sees the new image before its first
//! instruction; user space sees it milliseconds later, when `systemctl`
//! has already sent its D-Bus request.

pub mod policy;

use std::{collections::HashMap, time::Duration};

use sensor_common::prevent::{MODE_DRY_RUN, MODE_ENFORCE, verdict};
use serde::Serialize;

use crate::{
    process::users::UserRef,
    sigma::{RuleSet, kernel},
};

/// `prevent.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Alert with `action: would_kill`; kill nothing. The default.
    #[default]
    DryRun,
    /// Kill in the kernel; alert with `action: killed`.
    Enforce,
}

impl Mode {
    pub fn kernel(self) -> u32 {
        match self {
            Mode::DryRun => MODE_DRY_RUN,
            Mode::Enforce => MODE_ENFORCE,
        }
    }
}

/// The resolved `prevent:` block.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// Rule ids to prevent; empty: prevention off (the capture-only
    /// program is loaded).
    pub rules: Vec<String>,
    pub mode: Mode,
    /// Real uids allowed to run prevented commands (alerts only).
    pub allow_uids: Vec<u32>,
    /// Resolved image paths whose descendants are allowed (the package
    /// manager during upgrades).
    pub ancestor_images: Vec<String>,
    /// Kills per window before the kernel drops to dry-run.
    pub max_kills: u32,
    pub window: Duration,
}

impl Config {
    pub fn enabled(&self) -> bool {
        !self.rules.is_empty()
    }
}

/// Why prevention cannot start (or a reload is refused).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("prevent.rules: no loaded rule has id '{0}'")]
    UnknownRule(String),
    // Not `#[from]`: that would make it the source too, and `{:#}` would
    // print the message twice.
    #[error("prevent.rules: {0}")]
    NotDecidable(kernel::NotDecidable),
    #[error("prevent: {0}")]
    Policy(policy::PolicyError),
}

/// A compiled prevention plan: the tables and which rules they hold.
pub struct Plan {
    pub config: Config,
    pub tables: policy::Tables,
    /// Rule index in the [`RuleSet`] -> bit in the kernel's rule mask.
    bits: HashMap<usize, u32>,
}

impl Plan {
    /// Compiles the prevented rules of `rules`. Every rule must be
    /// decidable in the kernel: one that is not is an error, so the admin
    /// learns at load, not when the attack comes.
    pub fn compile(rules: &RuleSet, config: &Config) -> Result<Plan, PlanError> {
        let mut kernel_rules = Vec::new();
        let mut bits = HashMap::new();
        for id in &config.rules {
            let (index, rule) = rules
                .rules()
                .iter()
                .enumerate()
                .find(|(_, r)| r.meta.id.as_deref() == Some(id.as_str()))
                .ok_or_else(|| PlanError::UnknownRule(id.clone()))?;
            kernel_rules.push(kernel::compile(rule, &user_uid).map_err(PlanError::NotDecidable)?);
            bits.insert(index, kernel_rules.len() as u32 - 1);
        }
        let tables = policy::build(&kernel_rules, &config.allow_uids, &config.ancestor_images)
            .map_err(PlanError::Policy)?;
        Ok(Plan {
            config: config.clone(),
            tables,
            bits,
        })
    }

    /// Rule-set indices of the policy bits set in `mask`.
    pub fn rules_in(&self, mask: u32) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .bits
            .iter()
            .filter(|&(_, &bit)| mask & (1 << bit) != 0)
            .map(|(&index, _)| index)
            .collect();
        out.sort_unstable();
        out
    }

    /// Whether the rule at `index` of the rule set is prevented.
    pub fn prevents(&self, index: usize) -> bool {
        self.bits.contains_key(&index)
    }

    /// What the kernel did about rule `index` on an exec with this
    /// verdict; `None` for a rule that is not prevented.
    pub fn action(&self, index: usize, verdict: u32, rules: u32) -> Option<Action> {
        let bit = *self.bits.get(&index)?;
        Some(action(verdict, rules & (1 << bit) != 0))
    }
}

/// What prevention did with one exec, for one rule's alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Action {
    /// `killed`, `would_kill`, `allowed` or `not_killed`.
    pub action: &'static str,
    /// Why, when not simply killed.
    #[serde(rename = "action_reason", skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn action(v: u32, matched: bool) -> Action {
    let done = |action: &'static str, reason: Option<&str>| Action {
        action,
        reason: reason.map(str::to_owned),
    };
    if v & verdict::CHECKED == 0 {
        return done(
            "not_killed",
            Some("prevention was not active in the kernel"),
        );
    }
    if !matched {
        if v & verdict::UNDECIDED != 0 {
            let mut views = Vec::new();
            if v & verdict::UNDECIDED_RESOLVED != 0 {
                views.push("Image (path cut, deleted or memfd)");
            }
            if v & verdict::UNDECIDED_INVOKED != 0 {
                views.push("ImageInvoked (not an absolute normalised path)");
            }
            if v & verdict::UNDECIDED_INTERPRETER != 0 {
                views.push("Interpreter (not an absolute normalised path)");
            }
            return Action {
                action: "not_killed",
                reason: Some(format!(
                    "failed open: the kernel could not decide {}",
                    views.join(", ")
                )),
            };
        }
        return done(
            "not_killed",
            Some(
                "the kernel's check did not match this exec (it folds ASCII case only; the \
                 matcher folds Unicode)",
            ),
        );
    }
    if v & verdict::KILLED != 0 {
        return done("killed", None);
    }
    if v & verdict::BREAKER != 0 {
        return done(
            "would_kill",
            Some("kill-rate breaker tripped: the kernel switched prevention to dry-run"),
        );
    }
    if v & verdict::WOULD_KILL != 0 {
        return done("would_kill", Some("dry-run"));
    }
    if v & verdict::ALLOWED_UID != 0 {
        return done(
            "allowed",
            Some("the user or login user is on prevent.allow.users"),
        );
    }
    if v & verdict::ALLOWED_ANCESTOR != 0 {
        return done(
            "allowed",
            Some("an ancestor runs an image on prevent.allow.ancestor_images"),
        );
    }
    if v & verdict::PROTECTED != 0 {
        return done(
            "not_killed",
            Some("never killed: pid 1, a kernel thread or sigexec itself"),
        );
    }
    if v & verdict::SIGNAL_FAILED != 0 {
        return done("not_killed", Some("bpf_send_signal failed"));
    }
    done("not_killed", None)
}

/// A user name's uid through NSS, if the name maps back to itself (so a
/// rule's `User` means the same uid the event's `User` would show).
pub fn user_uid(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam reads a NUL-terminated string; the result points
    // into static storage, read at once, before any other NSS call.
    let uid = unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        if pw.is_null() {
            return None;
        }
        (*pw).pw_uid
    };
    let back = crate::process::users::Users::default().name(uid);
    back.eq_ignore_ascii_case(name).then_some(uid)
}

/// Resolves `prevent.allow.users` entries: numbers are uids, names go
/// through NSS.
pub fn resolve_users(entries: &[UserRef]) -> Result<Vec<u32>, String> {
    entries
        .iter()
        .map(|e| match e {
            UserRef::Uid(uid) => Ok(*uid),
            UserRef::Name(name) => user_uid(name)
                .ok_or_else(|| format!("'{name}' is neither a uid nor a user name known here")),
        })
        .collect()
}

/// Entries for the allow-tracking map from `/proc`: every running process
/// whose image is an allow-listed ancestor image ([`tracked::OWN`]) or
/// that descends from one ([`tracked::ANCESTOR`]), so that an upgrade
/// already under way when the daemon starts keeps running.
///
/// [`tracked::OWN`]: sensor_common::prevent::tracked::OWN
/// [`tracked::ANCESTOR`]: sensor_common::prevent::tracked::ANCESTOR
pub fn seed_tracked(ancestor_images: &[String]) -> Vec<(u32, u32)> {
    use sensor_common::prevent::tracked;
    if ancestor_images.is_empty() {
        return Vec::new();
    }
    let mut procs: HashMap<u32, (u32, bool)> = HashMap::new();
    for (pid, dir) in crate::process::table::proc_pids() {
        let exe = std::fs::read_link(dir.join("exe")).ok();
        let own = exe.is_some_and(|p| ancestor_images.iter().any(|a| p.as_os_str() == a.as_str()));
        let ppid = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|s| crate::process::table::stat_ppid(&s))
            .unwrap_or(0);
        procs.insert(pid, (ppid, own));
    }
    let mut out = Vec::new();
    for (&pid, &(ppid, own)) in &procs {
        let mut ancestor = false;
        let mut at = ppid;
        // Bounded: pid chains end at 0 or 1; a cycle cannot be longer
        // than the table.
        for _ in 0..procs.len().min(4096) {
            let Some(&(up, up_own)) = procs.get(&at) else {
                break;
            };
            if up_own {
                ancestor = true;
                break;
            }
            at = up;
        }
        let flags =
            if own { tracked::OWN } else { 0 } | if ancestor { tracked::ANCESTOR } else { 0 };
        if flags != 0 {
            out.push((pid, flags));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_say_what_the_kernel_did() {
        let a = |v, m| action(v, m);
        assert_eq!(
            a(verdict::CHECKED | verdict::MATCHED | verdict::KILLED, true).action,
            "killed"
        );
        assert_eq!(
            a(
                verdict::CHECKED | verdict::MATCHED | verdict::WOULD_KILL,
                true
            ),
            Action {
                action: "would_kill",
                reason: Some("dry-run".into())
            }
        );
        assert_eq!(
            a(
                verdict::CHECKED | verdict::MATCHED | verdict::ALLOWED_UID,
                true
            )
            .action,
            "allowed"
        );
        let undecided = a(
            verdict::CHECKED | verdict::UNDECIDED | verdict::UNDECIDED_RESOLVED,
            false,
        );
        assert_eq!(undecided.action, "not_killed");
        assert_eq!(
            undecided.reason.as_deref(),
            Some("failed open: the kernel could not decide Image (path cut, deleted or memfd)")
        );
        assert_eq!(a(0, false).action, "not_killed");
    }
}

#[cfg(test)]
mod bundled {
    use crate::sigma::kernel;

    /// The bundled rules the kernel decides, all prevented at once, fit
    /// its tables; the two it cannot decide are refused for the reason the
    /// README gives.
    #[test]
    fn every_decidable_bundled_rule_fits_one_policy() {
        let loaded = crate::rules::load(true, &[]);
        let mut decidable = Vec::new();
        let mut refused = Vec::new();
        for rule in loaded.rules.rules() {
            match kernel::compile(rule, &|_| None) {
                Ok(k) => decidable.push(k),
                Err(e) => refused.push(e.reason),
            }
        }
        assert_eq!(decidable.len(), 9);
        assert_eq!(
            refused,
            [
                "search 'selection', CommandLine|re|i: modifier 're' is not decided in the kernel",
                "a process_termination rule has no exec to stop",
            ]
        );
        let tables = super::policy::build(&decidable, &[0], &["/usr/bin/dpkg".into()])
            .expect("all nine fit");
        assert_eq!(tables.policy.n_rules, 9);
    }
}
