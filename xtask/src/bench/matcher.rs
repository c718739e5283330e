//! `cargo xtask bench matcher`: builds `sigexec-bench` in release and runs
//! its `matcher` benchmark (what it measures is documented in
//! `bench/src/matcher.rs`).

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::workspace_root;

#[derive(clap::Args)]
pub struct Options {
    /// Minimum measuring time per engine and workload, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Print the rules sigexec matched on each event.
    #[arg(long)]
    pub verbose: bool,
    /// Measure sigexec only (for running under a profiler).
    #[arg(long)]
    pub sigexec_only: bool,
    /// Exactly this many passes per engine and workload instead of
    /// `--seconds` (repeatable work for instruction-counting profilers).
    #[arg(long)]
    pub passes: Option<usize>,
    /// Only this workload (`benign` or `suspicious`).
    #[arg(long)]
    pub workload: Option<String>,
}

/// Runs the benchmark and prints its table; returns what it printed.
pub fn run(opts: &Options) -> anyhow::Result<String> {
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
    if let Some(n) = opts.passes {
        cmd.args(["--passes", &n.to_string()]);
    }
    if let Some(w) = &opts.workload {
        cmd.args(["--workload", w]);
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("running sigexec-bench")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    if !out.status.success() {
        bail!("sigexec-bench matcher failed: {}", out.status);
    }
    Ok(text)
}
