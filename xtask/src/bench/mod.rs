//! `cargo xtask bench <what>`: benchmarks, one module per subject. Each
//! runs a release build of the `sigexec-bench` workspace member (outside
//! `default-members`, so the engines it compares against never become
//! dependencies of the sensor).

mod matcher;

#[derive(clap::Args)]
pub struct Options {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Sigma matching: events/s per core for sigexec, rsigma-eval and
    /// sigma-rust on the same rules and events.
    Matcher(matcher::Options),
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    match &opts.what {
        What::Matcher(o) => matcher::run(o),
    }
}
