//! `cargo xtask`: project chores. One module per verb.
//!
//! - `setup`: install the eBPF toolchain (idempotent).
//! - `run`: setup, build, start the daemon in the foreground.
//! - `test`: setup, lint, run every test.
//! - `bench`: benchmarks (`bench exec`: the sensor's cost on an exec storm;
//!   `bench matcher`: Sigma matching against other engines).
//! - `package`: build the Debian package.
//! - `vm-test`: the integration tests on a matrix of kernels under qemu;
//!   `vm-test --systemd`: the package on a systemd guest.

mod bench;
mod package;
mod run;
mod setup;
mod systemd_lab;
mod test;
mod vm_test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "sigexec project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what building the eBPF program needs (idempotent).
    Setup(setup::Options),
    /// Set up, build, and run `sigexec run` on the bundled rules.
    Run(run::Options),
    /// Set up, check formatting and lints, and run every test.
    Test(test::Options),
    /// Benchmarks (release builds): `bench exec`, `bench matcher`.
    Bench(bench::Options),
    /// Build the Debian package (binary, unit, config, man page).
    Package(package::Options),
    /// Run the sensor's integration tests on a matrix of kernels (qemu).
    VmTest(vm_test::Options),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Setup(opts) => setup::run(&opts),
        Command::Run(opts) => run::run(opts),
        Command::Test(opts) => test::run(&opts),
        Command::Bench(opts) => bench::run(&opts),
        Command::Package(opts) => package::run(&opts),
        Command::VmTest(opts) => vm_test::run(&opts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `cmd`, failing with the command line when it does not succeed.
pub fn status(cmd: &mut std::process::Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .map_err(|e| anyhow::anyhow!("starting {cmd:?}: {e}"))?;
    if !status.success() {
        anyhow::bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// The workspace root (xtask's parent directory).
pub fn workspace_root() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}
