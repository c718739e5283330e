//! `cargo xtask test`: set up, check formatting and clippy, and run every
//! test of the workspace, including the ones that load the eBPF program
//! (they need root; under `CI=true` they fail instead of skipping), then
//! the kernel matrix (`cargo xtask vm-test`) and the systemd lab
//! (`cargo xtask vm-test --systemd`) unless `--no-vm`.

use std::process::Command;

use crate::{setup, status, vm_test, workspace_root};

#[derive(clap::Args)]
pub struct Options {
    /// Skip `cargo fmt --check` and clippy.
    #[arg(long)]
    no_lint: bool,
    /// Skip the kernel matrix and the systemd lab (`cargo xtask vm-test`,
    /// `vm-test --systemd`: several minutes).
    #[arg(long)]
    no_vm: bool,
    /// Arguments passed to `cargo test` (after `--`), e.g. a test name.
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    setup::run(&setup::Options {})?;
    let root = workspace_root();
    let cargo = |args: &[&str]| {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&root).args(args);
        cmd
    };
    if !opts.no_lint {
        status(&mut cargo(&["fmt", "--all", "--check"]))?;
        status(&mut cargo(&[
            "clippy",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    let mut test = cargo(&["test", "--workspace", "--exclude", "sensor-ebpf"]);
    test.args(&opts.args);
    status(&mut test)?;
    if !opts.no_vm {
        // Both run, whatever the first says; either failing fails the test.
        let matrix = vm_test::run(&vm_test::Options::default());
        let lab = if setup::is_root() || std::env::var("CI").is_ok_and(|v| v == "true") {
            vm_test::run(&vm_test::Options {
                systemd: true,
                ..vm_test::Options::default()
            })
        } else {
            // Like the eBPF tests: off CI, a machine that cannot run it says
            // so; under CI=true the lab's own error fails the run.
            eprintln!("systemd lab skipped: needs root (debootstrap, a root-owned image)");
            Ok(())
        };
        matrix?;
        lab?;
    }
    Ok(())
}
