//! `cargo xtask bench` (or `bench report`): every benchmark in one run,
//! written to `BENCHMARKS.md` with the machine, kernel, commit, date and the
//! commands, so the figures in the README and the issues can be checked
//! and regenerated.
//!
//! The file is written only when every benchmark finished: a run that
//! failed (a wrong matcher answer, a soak that grew or lost records) leaves
//! the previous report alone and says why.

use std::{fmt::Write as _, process::Command};

use anyhow::Context as _;

use super::{exec, matcher, soak};
use crate::workspace_root;

#[derive(clap::Args)]
pub struct Options {
    /// Seconds per storm of the main exec comparison (the issue's
    /// zero-loss target is for 60 s at saturation).
    #[arg(long, default_value_t = 60)]
    pub exec_seconds: u64,
    /// Ring buffer sizes (bytes) of the sweep for the smallest ring with no
    /// loss at saturation.
    #[arg(long = "ringbuf-size", value_name = "BYTES", default_values_t = [262_144u32, 1_048_576, 4_194_304, 8_388_608])]
    pub ringbuf_sizes: Vec<u32>,
    /// Seconds per storm of the sweep.
    #[arg(long, default_value_t = 20)]
    pub sweep_seconds: u64,
    /// Minutes of the soak.
    #[arg(long, default_value_t = 5)]
    pub soak_minutes: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            exec_seconds: 60,
            ringbuf_sizes: vec![262_144, 1_048_576, 4_194_304, 8_388_608],
            sweep_seconds: 20,
            soak_minutes: 5,
        }
    }
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    let machine = machine()?;
    eprintln!("bench: exec storm, {} s per storm", opts.exec_seconds);
    let exec = exec::run(&exec::ExecOptions {
        seconds: opts.exec_seconds,
        workers: None,
        ringbuf_sizes: Vec::new(),
    })?;
    eprintln!("bench: ring buffer sweep");
    let sweep = exec::run(&exec::ExecOptions {
        seconds: opts.sweep_seconds,
        workers: None,
        ringbuf_sizes: opts.ringbuf_sizes.clone(),
    })?;
    eprintln!("bench: matcher");
    let matcher = matcher::run(&matcher::Options {
        seconds: 2.0,
        verbose: false,
        sigexec_only: false,
        passes: None,
        workload: None,
    })?;
    eprintln!("bench: soak, {} min", opts.soak_minutes);
    let soak = soak::run(&soak::SoakOptions {
        minutes: opts.soak_minutes,
        workers: None,
    })?;

    let mut md = String::new();
    let _ = write!(
        md,
        "# Benchmarks\n\n\
         Written by `cargo xtask bench` (every benchmark below, about {} minutes); \
         do not edit by hand. Each comparison is measured side by side in one \
         run on one machine, so the ratios hold where the absolute numbers do not.\n\n\
         {machine}\n\
         ## Exec storm: the sensor's cost\n\n\
         `cargo xtask bench exec --seconds {}`: one storm thread per core forks and \
         execs `/bin/true` as fast as it can (1% of the execs a stand-in \
         `pkill -9 wdserver` that a bundled rule matches), without the sensor, \
         with it, with it as deployed, and all that twice. The daemon runs the \
         bundled rules plus the 144 SigmaHQ linux rules; in the first table with \
         `--all-events`, so every exec it received is in its output and is \
         matched to the storm's pids; in the second as deployed (alerts only), \
         the runs the CPU, memory, latency and rate targets are read on. CPU is \
         the daemon's user + system time from `/proc`; latency is the kernel's \
         exec timestamp against the alert line's. Last, prevention's in-kernel \
         cost: the sensor alone against the sensor preventing every decidable \
         bundled rule (dry-run), interleaved.\n\n{exec}\n\
         ## Ring buffer size\n\n\
         `cargo xtask bench exec --seconds {} {}`: the same storm with \
         smaller rings; `lost` is what the kernel side counted, `seen` the \
         storm's distinct pids found in the output (a storm wraps pid_max).\n\n{sweep}\n\
         ## Sigma matching\n\n\
         `cargo xtask bench matcher`: the same rules and events through \
         sigexec's matcher and two other Rust Sigma engines, one thread, CPU \
         time; hit counts are checked so a fast wrong answer fails.\n\n\
         ```\n{matcher}```\n\n\
         ## Soak\n\n\
         `cargo xtask bench soak --minutes {}`: the storm at saturation without \
         `--all-events`, a sample every 10 s of the daemon's counters (over its \
         status socket) and its RSS.\n\n{soak}",
        (10 * opts.exec_seconds
            + 4 * opts.ringbuf_sizes.len() as u64 * opts.sweep_seconds
            + 60 * opts.soak_minutes
            + 90)
            / 60,
        opts.exec_seconds,
        opts.sweep_seconds,
        opts.ringbuf_sizes
            .iter()
            .map(|s| format!("--ringbuf-size {s}"))
            .collect::<Vec<_>>()
            .join(" "),
        opts.soak_minutes,
    );
    let path = workspace_root().join("BENCHMARKS.md");
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

/// The machine, kernel, commit and date, as a Markdown list.
fn machine() -> anyhow::Result<String> {
    let read = |cmd: &mut Command| -> String {
        cmd.output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned())
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let root = workspace_root();
    let commit =
        read(
            Command::new("git")
                .current_dir(&root)
                .args(["rev-parse", "--short", "HEAD"]),
        );
    let dirty = !read(Command::new("git").current_dir(&root).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .is_empty();
    Ok(format!(
        "- date: {}\n- machine: {cpu}, {cores} cores, {mem_gib:.0} GiB\n- kernel: {}\n- commit: {commit}{}\n",
        read(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
        read(Command::new("uname").args(["-sr"])),
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
    ))
}
