//! `process_termination` events for watched processes: who died, how, and
//! who sent the signal that killed it.
//!
//! A shell's built-in `kill` runs no program, so the exec stream cannot see
//! `kill -9 $(pidof wdserver)`. The kernel side reports every terminating
//! signal one process sends another (`signal_generate`) and every exit
//! (`sched_process_exit`, with the exit code). For processes whose image is
//! under a watched prefix (default: Kaspersky's install directories), the
//! table remembers the last such signal with a snapshot of its sender, and
//! the exit becomes a [`ProcessTermination`] event that Sigma rules with
//! `logsource: {product: linux, category: process_termination}` evaluate.

use serde::Serialize;

use crate::sigma;

/// Image prefixes watched by default.
pub const DEFAULT_WATCH: &[&str] = &["/opt/kaspersky/", "/var/opt/kaspersky/"];

/// The process that sent a terminating signal, as the table knew it when
/// the signal was sent (it may exit before its victim).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    pub pid: u32,
    pub signal: u32,
    pub image: Option<String>,
    pub command_line: Option<String>,
    pub user: Option<String>,
    pub guid: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessTermination {
    pub utc_time: String,
    pub process_guid: String,
    pub process_id: u32,
    pub image: String,
    pub command_line: String,
    pub user: String,
    /// The exit status, when the process exited by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u32>,
    /// The signal that ended the process, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_process_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_process_guid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_command_line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_user: Option<String>,
    pub hostname: String,
}

impl ProcessTermination {
    /// Splits the kernel's `exit_code` (`status << 8 | signal`) and fills
    /// the sender when the last recorded signal is the one that killed.
    pub fn set_exit(&mut self, exit_code: u32, sender: Option<&Sender>) {
        let signal = exit_code & 0x7f;
        if signal == 0 {
            self.exit_code = Some((exit_code >> 8) & 0xff);
            return;
        }
        self.signal = Some(signal);
        if let Some(s) = sender.filter(|s| s.signal == signal) {
            self.sender_process_id = Some(s.pid);
            self.sender_process_guid = s.guid.clone();
            self.sender_image = s.image.clone();
            self.sender_command_line = s.command_line.clone();
            self.sender_user = s.user.clone();
        }
    }
}

/// Whether `image` lies under one of the watched prefixes.
pub fn watched(watch: &[String], image: &str) -> bool {
    watch
        .iter()
        .any(|prefix| image.starts_with(prefix.as_str()))
}

impl sigma::Event for ProcessTermination {
    fn field(&self, name: &str) -> Option<sigma::Value<'_>> {
        fn s(v: &str) -> Option<sigma::Value<'_>> {
            Some(sigma::Value::Str(v.into()))
        }
        fn int<'a>(v: Option<u32>) -> Option<sigma::Value<'a>> {
            v.map(|v| sigma::Value::Int(i64::from(v)))
        }
        match name {
            "UtcTime" => s(&self.utc_time),
            "ProcessGuid" => s(&self.process_guid),
            "ProcessId" => int(Some(self.process_id)),
            "Image" => s(&self.image),
            "CommandLine" => s(&self.command_line),
            "User" => s(&self.user),
            "ExitCode" => int(self.exit_code),
            "Signal" => int(self.signal),
            "SenderProcessId" => int(self.sender_process_id),
            "SenderProcessGuid" => self.sender_process_guid.as_deref().and_then(s),
            "SenderImage" => self.sender_image.as_deref().and_then(s),
            "SenderCommandLine" => self.sender_command_line.as_deref().and_then(s),
            "SenderUser" => self.sender_user.as_deref().and_then(s),
            "Hostname" => s(&self.hostname),
            _ => None,
        }
    }

    fn for_each_string(&self, f: &mut dyn FnMut(&str)) {
        for v in [&self.image, &self.command_line, &self.user] {
            f(v);
        }
        for v in [
            &self.sender_image,
            &self.sender_command_line,
            &self.sender_user,
        ]
        .into_iter()
        .flatten()
        {
            f(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(signal: u32) -> Sender {
        Sender {
            pid: 7,
            signal,
            image: Some("/usr/bin/bash".into()),
            command_line: Some("bash -c kill -9 42".into()),
            user: Some("root".into()),
            guid: None,
        }
    }

    #[test]
    fn a_kill_names_its_sender_and_a_clean_exit_its_status() {
        let mut t = ProcessTermination::default();
        t.set_exit(9, Some(&sender(9)));
        assert_eq!((t.signal, t.exit_code), (Some(9), None));
        assert_eq!(t.sender_image.as_deref(), Some("/usr/bin/bash"));

        let mut t = ProcessTermination::default();
        t.set_exit(3 << 8, Some(&sender(15)));
        assert_eq!((t.signal, t.exit_code), (None, Some(3)));
        assert_eq!(t.sender_process_id, None);

        // Killed by another signal than the one recorded: no sender claimed.
        let mut t = ProcessTermination::default();
        t.set_exit(15, Some(&sender(9)));
        assert_eq!(t.signal, Some(15));
        assert_eq!(t.sender_process_id, None);
    }

    #[test]
    fn watch_prefixes() {
        let watch: Vec<String> = DEFAULT_WATCH.iter().map(|s| (*s).to_owned()).collect();
        assert!(watched(&watch, "/opt/kaspersky/kesl/libexec/kesl"));
        assert!(watched(
            &watch,
            "/var/opt/kaspersky/kesl/install-current/bin/wdserver"
        ));
        assert!(!watched(&watch, "/opt/kaspersky-fake/x"));
        assert!(!watched(&watch, "/usr/bin/bash"));
    }
}
