//! `cargo xtask run`: set up, build `sigexec` in release mode, and run
//! `sigexec run` in the foreground on the bundled rules, alerts on stdout.
//! Extra arguments after `--` go to `sigexec run`.

use std::process::Command;

use anyhow::bail;

use crate::{setup, status, workspace_root};

#[derive(clap::Args)]
pub struct Options {
    /// Arguments passed to `sigexec run` (after `--`).
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn run(opts: Options) -> anyhow::Result<()> {
    setup::run(&setup::Options {})?;
    let root = workspace_root();
    status(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "sensor",
        "--bin",
        "sigexec",
    ]))?;
    let binary = root.join("target/release/sigexec");
    if !setup::is_root() {
        bail!(
            "loading eBPF needs root (or CAP_BPF, CAP_PERFMON, CAP_SYS_RESOURCE): run `sudo {} run`",
            binary.display()
        );
    }
    eprintln!("xtask: starting {} run (Ctrl-C stops it)", binary.display());
    status(Command::new(&binary).arg("run").args(&opts.args))
}
