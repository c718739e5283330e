//! `cargo xtask bench <what>`: benchmarks, one module per subject.
//! `matcher` runs a release build of the `sigexec-bench` workspace member
//! (outside `default-members`, so the engines it compares against never
//! become dependencies of the sensor); `exec` runs the release daemon
//! against an exec storm.

mod exec;
mod matcher;

#[derive(clap::Args)]
pub struct Options {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Exec storm with and without the sensor: overhead, loss, CPU, RSS,
    /// exec -> alert latency.
    Exec(exec::ExecOptions),
    /// Sigma matching: events/s per core for sigexec, rsigma-eval and
    /// sigma-rust on the same rules and events.
    Matcher(matcher::Options),
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    match &opts.what {
        What::Exec(o) => exec::run(o),
        What::Matcher(o) => matcher::run(o),
    }
}
