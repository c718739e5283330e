//! `cargo xtask bench matcher`: builds `sigexec-bench` in release and runs
//! its `matcher` benchmark (what it measures is documented in
//! `bench/src/matcher.rs`).

use std::process::Command;

use crate::{status, workspace_root};

#[derive(clap::Args)]
pub struct Options {
    /// Minimum measuring time per engine and workload, in seconds.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Print the rules sigexec matched on each event.
    #[arg(long)]
    verbose: bool,
    /// Measure sigexec only (for running under a profiler).
    #[arg(long)]
    sigexec_only: bool,
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root()).args([
        "run",
        "--quiet",
        "--release",
        "--package",
        "sigexec-bench",
        "--",
        "matcher",
        "--seconds",
        &opts.seconds.to_string(),
    ]);
    if opts.verbose {
        cmd.arg("--verbose");
    }
    if opts.sigexec_only {
        cmd.arg("--sigexec-only");
    }
    status(&mut cmd)
}
