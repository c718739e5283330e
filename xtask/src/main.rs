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

/// `2026-12-03T18:47:35.123456789Z` (the daemon's timestamps and
/// `UtcTime`) -> ns since the epoch.
pub fn rfc3339_ns(s: &str) -> Option<i128> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (h, min, sec) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let ns: i64 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60 + sec;
    Some(secs as i128 * 1_000_000_000 + ns as i128)
}

#[cfg(test)]
mod tests {
    use super::rfc3339_ns;

    #[test]
    fn parses_the_daemons_timestamps() {
        assert_eq!(
            rfc3339_ns("1970-01-01T00:00:01.000000002Z"),
            Some(1_000_000_002)
        );
        let a = rfc3339_ns("2026-12-03T23:59:59.999999999Z").expect("parse");
        let b = rfc3339_ns("2026-12-04T00:00:00.000000000Z").expect("parse");
        assert_eq!(b - a, 1);
        assert_eq!(
            rfc3339_ns("2024-03-01T00:00:00.5Z").map(|n| n % 1_000_000_000),
            Some(500_000_000)
        );
    }
}
