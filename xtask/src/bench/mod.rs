//! `cargo xtask bench <what>`: benchmarks, one module per subject.

mod exec;

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
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    match &opts.what {
        What::Exec(o) => exec::run(o),
    }
}
