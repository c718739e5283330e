//! The `ProcessCreate` event: Sysmon for Linux's ProcessCreate fields (the
//! Sigma linux `process_creation` taxonomy) plus our documented extensions.
//! Field meanings are DESIGN.md's table; serialisation uses those names.

use serde::Serialize;

use super::{Enricher, Table};
use sensor_common::flags;

use crate::capture::ExecRecord;
use crate::sigma;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessCreate {
    pub utc_time: String,
    pub process_guid: String,
    pub process_id: u32,
    pub image: String,
    pub command_line: String,
    pub current_directory: String,
    pub user: String,
    pub logon_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminal_session_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_process_guid: Option<String>,
    pub parent_process_id: u32,
    /// The kernel's `real_parent` at exec, when it differs from the
    /// creator (re-parenting after the creator exited, `CLONE_PARENT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_parent_process_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_command_line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_user: Option<String>,
    /// The parent's `ImageInvoked` and `Interpreter` (aliases of
    /// `ParentImage` for rules, like `Image`'s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_image_invoked: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_interpreter: Option<String>,
    // Extensions (not Sysmon).
    /// The pid inside the process's own pid namespace, when that is not
    /// the initial one (containers, `unshare -p`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_process_id: Option<u32>,
    /// argv as the kernel copied it. An argument that is not valid UTF-8
    /// is written escaped (`\\` for a backslash, `\xNN` for a byte that
    /// is not UTF-8) and its index is listed in `ArgvEscaped`; the others
    /// are verbatim. `CommandLine` replaces invalid bytes with U+FFFD.
    pub argv: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub argv_escaped: Vec<usize>,
    pub image_invoked: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script_path: Option<String>,
    pub command_line_truncated: bool,
    pub command_line_length: u64,
    /// The executable had no link left at exec (deleted, or a memfd);
    /// `Image` then ends in ` (deleted)`, as `/proc/PID/exe` shows it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub image_deleted: bool,
    /// The executable lives on no mount tree (a memfd or other internal
    /// file): nothing on disk was run. `Image` is `/memfd:NAME (deleted)`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fileless: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_user: Option<String>,
    pub euid: u32,
    pub gid: u32,
    /// The thread id that called execve, when it was not the group leader
    /// (the kernel then gives the leader's pid to the new image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec_thread_id: Option<u32>,
    /// From the cgroup v2 path (docker, containerd, CRI-O, podman); absent
    /// on the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Images of the ancestors from the process table, nearest first (the
    /// parent's is `ParentImage`), up to pid 1 or [`ANCESTORS_MAX`] levels.
    /// Filled for events that are written out (alerts, `--all-events`).
    pub ancestor_images: Vec<String>,
    pub hostname: String,
}

/// How far `AncestorImages` goes up.
pub const ANCESTORS_MAX: usize = 32;

pub(super) fn build(enricher: &mut Enricher, rec: &ExecRecord, table: &Table) -> ProcessCreate {
    let cwd = lossy(&rec.cwd);
    let image_invoked = absolute(&cwd, &lossy(&rec.filename));
    let interp = lossy(&rec.interp);
    // binfmt_script (and binfmt_misc) replace bprm->interp; a plain binary
    // leaves it equal to the filename.
    let (interpreter, script_path) = if !interp.is_empty() && rec.interp != rec.filename {
        (Some(absolute(&cwd, &interp)), Some(image_invoked.clone()))
    } else {
        (None, None)
    };
    let mut argv_escaped = Vec::new();
    let argv: Vec<String> = rec
        .argv
        .iter()
        .enumerate()
        .map(|(i, a)| match std::str::from_utf8(a) {
            Ok(s) => s.to_owned(),
            Err(_) => {
                argv_escaped.push(i);
                escape(a)
            }
        })
        .collect();
    let command_line = rec
        .argv
        .iter()
        .map(|a| String::from_utf8_lossy(a))
        .collect::<Vec<_>>()
        .join(" ");
    let image_deleted = rec.flags & flags::EXE_UNLINKED != 0;
    let mut image = lossy(&rec.exe);
    if image_deleted {
        image.push_str(" (deleted)");
    }
    // The creator (from fork tracking) is the parent, even when it has
    // exited and the kernel re-parented the child to init or a subreaper.
    let ppid = table
        .get(rec.tgid)
        .and_then(|p| p.creator)
        .unwrap_or(rec.ppid);
    let parent = table.get(ppid);
    let user = enricher.users.name(rec.uid);
    ProcessCreate {
        utc_time: enricher.utc_time(rec.boot_ns),
        process_guid: enricher.guid(rec.tgid, rec.start_boottime),
        process_id: rec.tgid,
        image,
        command_line,
        current_directory: cwd,
        user: user.to_string(),
        logon_id: rec.uid,
        terminal_session_id: rec.sessionid,
        parent_process_guid: parent.map(|p| p.guid.clone()),
        parent_process_id: ppid,
        kernel_parent_process_id: (ppid != rec.ppid).then_some(rec.ppid),
        parent_image: parent.map(|p| p.image.clone()),
        parent_command_line: parent.map(|p| p.command_line.clone()),
        parent_user: parent.map(|p| p.user.to_string()),
        parent_image_invoked: parent
            .map(|p| p.image_invoked.clone())
            .filter(|i| !i.is_empty()),
        parent_interpreter: parent.and_then(|p| p.interpreter.clone()),
        namespace_process_id: (rec.ns_level > 0).then_some(rec.ns_pid),
        argv,
        argv_escaped,
        image_invoked,
        interpreter,
        script_path,
        command_line_truncated: rec.argv_truncated(),
        // The argv area is every argument plus its NUL; joined with spaces
        // that is one byte less.
        command_line_length: u64::from(rec.argv_true_len.saturating_sub(1)),
        image_deleted,
        fileless: rec.flags & flags::EXE_DETACHED != 0,
        login_uid: rec.loginuid,
        login_user: rec.loginuid.map(|u| enricher.users.name(u).to_string()),
        euid: rec.euid,
        gid: rec.gid,
        exec_thread_id: (rec.old_tid != 0 && rec.old_tid != rec.tgid).then_some(rec.old_tid),
        container_id: enricher.cgroups.container_id(rec.cgroup_id),
        // Filled by the caller when the event is written out: walking and
        // cloning up to 32 images per exec is wasted on the events that
        // raise nothing (rules do not read this field).
        ancestor_images: Vec::new(),
        hostname: enricher.hostname.to_string(),
    }
}

/// Lossless text for bytes that are not UTF-8: valid runs verbatim with
/// backslashes doubled, every other byte as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `path` made absolute against `cwd`, with `.` and `..` folded
/// lexically (as the shell showed it, not re-resolved on disk).
pub fn absolute(cwd: &str, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let joined;
    let full = if path.starts_with('/') {
        path
    } else {
        joined = format!("{cwd}/{path}");
        &joined
    };
    for part in full.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = String::with_capacity(full.len());
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

impl sigma::Event for ProcessCreate {
    fn field(&self, name: &str) -> Option<sigma::Value<'_>> {
        use sigma::Value::{Bool, Int};
        match name {
            "Image" => s(&self.image),
            "CommandLine" => s(&self.command_line),
            "CurrentDirectory" => s(&self.current_directory),
            "User" => s(&self.user),
            "LogonId" => int(self.logon_id),
            "ProcessId" => int(self.process_id),
            "ProcessGuid" => s(&self.process_guid),
            "ParentProcessId" => int(self.parent_process_id),
            "KernelParentProcessId" => self.kernel_parent_process_id.and_then(int),
            "ParentProcessGuid" => opt(&self.parent_process_guid),
            "ParentImage" => opt(&self.parent_image),
            "ParentCommandLine" => opt(&self.parent_command_line),
            "ParentUser" => opt(&self.parent_user),
            "ParentImageInvoked" => opt(&self.parent_image_invoked),
            "ParentInterpreter" => opt(&self.parent_interpreter),
            "TerminalSessionId" => self.terminal_session_id.and_then(int),
            "UtcTime" => s(&self.utc_time),
            "ImageInvoked" => s(&self.image_invoked),
            "Interpreter" => opt(&self.interpreter),
            "ScriptPath" => opt(&self.script_path),
            "CommandLineTruncated" => Some(Bool(self.command_line_truncated)),
            "CommandLineLength" => Some(Int(self.command_line_length as i64)),
            "LoginUid" => self.login_uid.and_then(int),
            "LoginUser" => opt(&self.login_user),
            "Euid" => int(self.euid),
            "Gid" => int(self.gid),
            "Hostname" => s(&self.hostname),
            "NamespaceProcessId" => self.namespace_process_id.and_then(int),
            "ContainerId" => opt(&self.container_id),
            "ImageDeleted" => Some(Bool(self.image_deleted)),
            "Fileless" => Some(Bool(self.fileless)),
            _ => None,
        }
    }

    fn for_each_string(&self, f: &mut dyn FnMut(&str)) {
        for v in [
            &self.image,
            &self.command_line,
            &self.current_directory,
            &self.user,
            &self.image_invoked,
        ] {
            f(v);
        }
        for v in [
            &self.parent_image,
            &self.parent_command_line,
            &self.parent_user,
            &self.interpreter,
            &self.script_path,
        ]
        .into_iter()
        .flatten()
        {
            f(v);
        }
    }
}

fn s(v: &str) -> Option<sigma::Value<'_>> {
    Some(sigma::Value::Str(v.into()))
}

fn opt(v: &Option<String>) -> Option<sigma::Value<'_>> {
    v.as_deref().and_then(s)
}

fn int<'a>(v: u32) -> Option<sigma::Value<'a>> {
    Some(sigma::Value::Int(i64::from(v)))
}

#[cfg(test)]
mod tests {
    use super::absolute;

    #[test]
    fn invalid_utf8_is_escaped_losslessly() {
        assert_eq!(super::escape(b"a\\b\xff\xfe\n"), "a\\\\b\\xff\\xfe\n");
        assert_eq!(super::escape("é".as_bytes()), "é");
    }

    #[test]
    fn relative_invocations_become_absolute() {
        assert_eq!(absolute("/tmp/t", "./kesl"), "/tmp/t/kesl");
        assert_eq!(absolute("/tmp/t", "bin/systemctl"), "/tmp/t/bin/systemctl");
        assert_eq!(absolute("/tmp/t", "../x"), "/tmp/x");
        assert_eq!(absolute("/", "a"), "/a");
        assert_eq!(absolute("/tmp", "/usr/bin//env"), "/usr/bin/env");
        assert_eq!(absolute("/tmp", "/a dir/b c"), "/a dir/b c");
    }
}
