//! `cargo xtask bench soak`: an exec storm at saturation for M minutes
//! against one release daemon, sampled every 10 s, to show that nothing
//! grows without bound and nothing is lost over time.
//!
//! The daemon runs as in `bench exec` (bundled + SigmaHQ rules, 1% of the
//! execs a stand-in `pkill -9 wdserver` that a rule matches) but without
//! `--all-events`: an hour of saturation would write gigabytes. Loss is
//! therefore judged from the daemon's own counters, read over its status
//! socket: the records the kernel failed to hand over (`lost`, from the
//! per-CPU counters of the eBPF side) must stay 0, and the records received
//! (`events`) must cover every exec the storm made. Each sample is a row:
//! elapsed time, execs so far, events so far, lost, RSS and the process
//! table's size.
//!
//! "Ends flat" is a rule of thumb, not a statistic: after the first sample
//! (allocator and table warm-up), the largest value of the second half of
//! the run may exceed the largest of the first half by at most 5% or 1 MiB
//! of RSS (whichever is larger), and by at most 5% or 64 entries of the
//! table. A leak of a few bytes per exec breaks it within minutes at 2,500
//! exec/s; jitter from the allocator does not.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::exec::{build_sigexec, own_rss_kib, storm, wait_ready};
use crate::workspace_root;

#[derive(clap::Args, Clone)]
pub struct SoakOptions {
    /// Minutes of storm.
    #[arg(long, default_value_t = 10)]
    pub minutes: u64,
    /// Storm threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
}

/// One sample of the daemon.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    elapsed_secs: u64,
    execs: u64,
    events: u64,
    lost: u64,
    /// RSS without the ring buffer's mapping (see `own_rss_kib`).
    rss_kib: u64,
    table: u64,
}

/// Runs the soak, prints the series and the verdict; returns the Markdown
/// table for `BENCHMARKS.md`, or an error when something grew or was lost.
pub fn run(opts: &SoakOptions) -> anyhow::Result<String> {
    let root = workspace_root();
    let sigexec = build_sigexec()?;
    let workers = opts.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let dir = std::env::temp_dir().join(format!("sigexec-soak-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("bin"))?;
    let pkill = dir.join("bin/pkill");
    std::fs::copy("/bin/true", &pkill).context("copying /bin/true")?;
    let socket = dir.join("status.sock");
    let mut daemon = Command::new(&sigexec)
        .args(["run", "--rules"])
        .arg(root.join("sensor/tests/sigma/sigmahq-linux"))
        .arg("--output")
        .arg(dir.join("alerts.jsonl"))
        .arg("--status-socket")
        .arg(&socket)
        .stderr(Stdio::piped())
        .spawn()
        .context("starting sigexec run")?;
    let log = wait_ready(&mut daemon)?;
    let pid = daemon.id();
    println!(
        "soak: {workers} workers for {} min, 1% matching execs, bundled + SigmaHQ rules, a sample every 10 s",
        opts.minutes
    );
    println!("{}", Sample::header());

    let start = Instant::now();
    let end = Duration::from_secs(opts.minutes * 60);
    let mut execs = 0;
    let mut samples = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        while start.elapsed() < end {
            // 10 s slices of the storm; sampling between two slices costs
            // the storm a few milliseconds of idle workers.
            execs += storm(workers, Duration::from_secs(10), &pkill).execs;
            let s = sample(&sigexec, &socket, pid, start, execs)?;
            println!("{}", s.row());
            samples.push(s);
        }
        Ok(())
    })();
    // Let the daemon drain what the storm left in the ring, then read the
    // final counters before stopping it.
    std::thread::sleep(Duration::from_millis(1500));
    let last = sample(&sigexec, &socket, pid, start, execs);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let exit = daemon.wait()?;
    let _ = log.join();
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    let last = last?;
    if !exit.success() {
        bail!("sigexec run exited with {exit}");
    }

    let verdict = Verdict::of(&samples, &last);
    let summary = verdict.summary(&last);
    println!("\n{summary}");
    if !verdict.failures.is_empty() {
        bail!("soak failed: {}", verdict.failures.join("; "));
    }
    let mut table = format!("{}\n", Sample::header());
    for s in &samples {
        table.push_str(&s.row());
        table.push('\n');
    }
    table.push_str(&format!("\n{summary}\n"));
    Ok(table)
}

fn sample(
    sigexec: &Path,
    socket: &Path,
    pid: u32,
    start: Instant,
    execs: u64,
) -> anyhow::Result<Sample> {
    let out = Command::new(sigexec)
        .args(["status", "--socket"])
        .arg(socket)
        .output()
        .context("running sigexec status")?;
    if !out.status.success() {
        bail!(
            "sigexec status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("sigexec status prints JSON")?;
    let field = |k: &str| {
        v[k].as_u64()
            .with_context(|| format!("sigexec status has no {k}"))
    };
    Ok(Sample {
        elapsed_secs: start.elapsed().as_secs(),
        execs,
        events: field("events")?,
        lost: field("lost")?,
        rss_kib: own_rss_kib(pid)?,
        table: field("process_table")?,
    })
}

impl Sample {
    fn header() -> &'static str {
        "| s | execs | events | lost | RSS MiB (ring mapping excluded) | process table |\n|---|---|---|---|---|---|"
    }

    fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.1} | {} |",
            self.elapsed_secs,
            self.execs,
            self.events,
            self.lost,
            self.rss_kib as f64 / 1024.0,
            self.table
        )
    }
}

/// What the series says.
#[derive(Debug)]
struct Verdict {
    /// Largest RSS (KiB) of the first and of the second half.
    rss: (u64, u64),
    /// Largest process-table size of the first and of the second half.
    table: (u64, u64),
    /// Each way the run failed, in words.
    failures: Vec<String>,
}

impl Verdict {
    /// `samples`: the series; `last`: the counters after the final drain.
    fn of(samples: &[Sample], last: &Sample) -> Verdict {
        // The first sample is warm-up (allocator arenas, the table filling
        // with the storm's live processes); with a single sample it is all
        // there is.
        let steady = if samples.len() > 1 {
            &samples[1..]
        } else {
            samples
        };
        let (first, second) = steady.split_at(steady.len() / 2);
        let first = if first.is_empty() { second } else { first };
        let max = |s: &[Sample], f: fn(&Sample) -> u64| s.iter().map(f).max().unwrap_or(0);
        let rss = (max(first, |s| s.rss_kib), max(second, |s| s.rss_kib));
        let table = (max(first, |s| s.table), max(second, |s| s.table));
        let grew =
            |(a, b): (u64, u64), pct: f64, abs: u64| b > a + ((a as f64 * pct) as u64).max(abs);
        let mut failures = Vec::new();
        if grew(rss, 0.05, 1024) {
            failures.push(format!(
                "RSS grew: {} KiB at most in the first half, {} KiB in the second",
                rss.0, rss.1
            ));
        }
        if grew(table, 0.05, 64) {
            failures.push(format!(
                "the process table grew: {} entries at most in the first half, {} in the second",
                table.0, table.1
            ));
        }
        if last.lost > 0 {
            failures.push(format!("{} records lost", last.lost));
        }
        if last.events < last.execs {
            failures.push(format!(
                "{} events received for {} execs",
                last.events, last.execs
            ));
        }
        Verdict {
            rss,
            table,
            failures,
        }
    }

    fn summary(&self, last: &Sample) -> String {
        format!(
            "{}: {} execs, {} events received, {} lost; peak RSS {:.1} MiB in the first half, {:.1} MiB in the second; process table at most {} then {}",
            if self.failures.is_empty() {
                "flat"
            } else {
                "NOT flat"
            },
            last.execs,
            last.events,
            last.lost,
            self.rss.0 as f64 / 1024.0,
            self.rss.1 as f64 / 1024.0,
            self.table.0,
            self.table.1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{Sample, Verdict};

    fn series(rss: &[u64], table: &[u64]) -> Vec<Sample> {
        rss.iter()
            .zip(table)
            .enumerate()
            .map(|(i, (&rss_kib, &table))| Sample {
                elapsed_secs: 10 * (i as u64 + 1),
                execs: 25_000 * (i as u64 + 1),
                events: 25_000 * (i as u64 + 1),
                lost: 0,
                rss_kib,
                table,
            })
            .collect()
    }

    #[test]
    fn jitter_after_warm_up_is_flat() {
        let s = series(
            &[9_000, 20_000, 20_400, 20_100, 20_900, 20_300, 20_800],
            &[300, 410, 395, 420, 400, 415, 405],
        );
        let v = Verdict::of(&s, &s[s.len() - 1]);
        assert!(v.failures.is_empty(), "{:?}", v.failures);
    }

    #[test]
    fn a_steady_leak_is_not_flat() {
        // 2 MiB a sample: the second half's peak is 6 MiB over the first's.
        let rss: Vec<u64> = (0..7).map(|i| 20_000 + i * 2_048).collect();
        let s = series(&rss, &[400; 7]);
        let v = Verdict::of(&s, &s[6]);
        assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
        assert!(v.failures[0].starts_with("RSS grew"), "{:?}", v.failures);
    }

    #[test]
    fn a_growing_table_and_any_loss_fail() {
        let s = series(&[20_000; 5], &[400, 400, 600, 900, 1_200]);
        let mut last = s[4].clone();
        last.lost = 3;
        last.events = last.execs - 3;
        let v = Verdict::of(&s, &last);
        assert_eq!(v.failures.len(), 3, "{:?}", v.failures);
        assert!(v.failures[0].starts_with("the process table grew"));
        assert_eq!(v.failures[1], "3 records lost");
        assert_eq!(v.failures[2], "124997 events received for 125000 execs");
    }
}
