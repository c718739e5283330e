//! `cargo xtask bench [what]`: benchmarks, one module per subject.
//! `matcher` runs a release build of the `sigexec-bench` workspace member
//! (outside `default-members`, so the engines it compares against never
//! become dependencies of the sensor); `exec` runs the release daemon
//! against an exec storm; `soak` keeps that storm up for minutes. With no
//! subject, `report` runs them all and rewrites `BENCHMARKS.md`.

mod exec;
mod matcher;
mod report;
mod soak;

#[derive(clap::Args)]
pub struct Options {
    #[command(subcommand)]
    what: Option<What>,
}

#[derive(clap::Subcommand)]
enum What {
    /// Exec storm with and without the sensor: overhead, loss, CPU, RSS,
    /// exec -> alert latency.
    Exec(exec::ExecOptions),
    /// Sigma matching: events/s per core for sigexec, rsigma-eval and
    /// sigma-rust on the same rules and events.
    Matcher(matcher::Options),
    /// An exec storm at saturation for minutes: RSS, process table and
    /// loss sampled every 10 s must end flat.
    Soak(soak::SoakOptions),
    /// Everything above, written to BENCHMARKS.md (the default).
    Report(report::Options),
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    match &opts.what {
        Some(What::Exec(o)) => exec::run(o).map(drop),
        Some(What::Matcher(o)) => matcher::run(o).map(drop),
        Some(What::Soak(o)) => soak::run(o).map(drop),
        Some(What::Report(o)) => report::run(o),
        None => report::run(&report::Options::default()),
    }
}
