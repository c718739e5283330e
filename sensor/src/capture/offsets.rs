//! Kernel struct offsets for the eBPF program, read from the running
//! kernel's BTF at load time.
//!
//! Every offset the kernel side uses is named here once, as
//! `("struct", "member.path")`. A member the kernel lacks is a start-up
//! error naming it, except the audit fields (`loginuid`, `sessionid`), which
//! only exist with `CONFIG_AUDIT`: without them the record says "unset".

use sensor_common::{NO_OFFSET, Offsets};

use super::btf::{Btf, BtfError};

/// Offsets from `btf`, plus the classic tracepoint's record layout.
pub fn from_btf(btf: &Btf, tracepoint: TracepointLayout) -> Result<Offsets, BtfError> {
    let at = |ty: &str, path: &str| btf.member_offset(ty, path);
    let optional = |ty: &str, path: &str| btf.member_offset(ty, path).unwrap_or(NO_OFFSET);
    Ok(Offsets {
        task_real_parent: at("task_struct", "real_parent")?,
        task_tgid: at("task_struct", "tgid")?,
        task_cred: at("task_struct", "cred")?,
        task_mm: at("task_struct", "mm")?,
        task_fs: at("task_struct", "fs")?,
        task_loginuid: optional("task_struct", "loginuid"),
        task_sessionid: optional("task_struct", "sessionid"),
        task_start_boottime: at("task_struct", "start_boottime")?,
        cred_uid: at("cred", "uid")?,
        cred_gid: at("cred", "gid")?,
        cred_euid: at("cred", "euid")?,
        cred_egid: at("cred", "egid")?,
        bprm_file: at("linux_binprm", "file")?,
        bprm_filename: at("linux_binprm", "filename")?,
        bprm_interp: at("linux_binprm", "interp")?,
        bprm_argc: at("linux_binprm", "argc")?,
        mm_arg_start: at("mm_struct", "arg_start")?,
        mm_arg_end: at("mm_struct", "arg_end")?,
        mm_exe_file: at("mm_struct", "exe_file")?,
        file_f_path: at("file", "f_path")?,
        path_mnt: at("path", "mnt")?,
        path_dentry: at("path", "dentry")?,
        dentry_d_parent: at("dentry", "d_parent")?,
        dentry_d_name_name: at("dentry", "d_name.name")?,
        dentry_d_inode: at("dentry", "d_inode")?,
        inode_i_nlink: at("inode", "i_nlink")?,
        mount_mnt: at("mount", "mnt")?,
        mount_mnt_parent: at("mount", "mnt_parent")?,
        mount_mnt_mountpoint: at("mount", "mnt_mountpoint")?,
        vfsmount_mnt_root: at("vfsmount", "mnt_root")?,
        fs_pwd: at("fs_struct", "pwd")?,
        task_pid: at("task_struct", "pid")?,
        task_thread_pid: at("task_struct", "thread_pid")?,
        task_exit_code: at("task_struct", "exit_code")?,
        pid_level: at("pid", "level")?,
        pid_numbers: at("pid", "numbers")?,
        upid_size: btf.struct_size("upid")?,
        upid_nr: at("upid", "nr")?,
        tp_filename_loc: tracepoint.filename_loc,
        tp_old_pid: tracepoint.old_pid,
        task_flags: at("task_struct", "flags")?,
    })
}

/// Where the classic `sched/sched_process_exec` tracepoint keeps its
/// fields, from its `format` file. Stable since 3.x, but read rather than
/// assumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointLayout {
    pub filename_loc: u32,
    pub old_pid: u32,
}

impl Default for TracepointLayout {
    /// The layout every kernel since 3.4 has: an 8-byte common header, then
    /// `__data_loc char[] filename; pid_t pid; pid_t old_pid;`.
    fn default() -> Self {
        TracepointLayout {
            filename_loc: 8,
            old_pid: 16,
        }
    }
}

impl TracepointLayout {
    /// Reads the layout from tracefs; `None` where tracefs is not mounted or
    /// the format is not what we expect (the caller then uses the default).
    pub fn from_tracefs() -> Option<TracepointLayout> {
        ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .iter()
            .find_map(|root| {
                std::fs::read_to_string(format!("{root}/events/sched/sched_process_exec/format"))
                    .ok()
            })
            .and_then(|text| Self::parse_format(&text))
    }

    /// Parses lines like `field:__data_loc char[] filename; offset:8; size:4; signed:0;`.
    pub fn parse_format(text: &str) -> Option<TracepointLayout> {
        let offset_of = |name: &str| {
            text.lines().find_map(|line| {
                let decl = line.trim().strip_prefix("field:")?;
                let (decl, rest) = decl.split_once(';')?;
                if decl.split_whitespace().last()? != name {
                    return None;
                }
                let offset = rest.trim().strip_prefix("offset:")?.split(';').next()?;
                offset.trim().parse().ok()
            })
        };
        Some(TracepointLayout {
            filename_loc: offset_of("filename")?,
            old_pid: offset_of("old_pid")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_tracefs_format() {
        let format = "name: sched_process_exec\nID: 318\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
            \tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\
            \tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n\
            \tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;\n";
        assert_eq!(
            TracepointLayout::parse_format(format),
            Some(TracepointLayout {
                filename_loc: 8,
                old_pid: 16
            })
        );
        assert_eq!(TracepointLayout::parse_format("format:\n"), None);
    }
}
