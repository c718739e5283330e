//! `sigexec-bench`: benchmarks run by `cargo xtask bench <what>`.
//!
//! A separate workspace member outside `default-members`, so that the
//! crates compared against (`rsigma-eval`, `sigma-rust`) are dependencies
//! of this binary only, never of the sensor. Always run in release:
//! `cargo run --release -p sigexec-bench -- matcher`.
//!
//! | verb | file |
//! |---|---|
//! | `matcher`: sigexec's Sigma matcher against two other Rust engines | `matcher.rs` |

mod matcher;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("matcher") => matcher::Options::parse(&args[1..]).and_then(|o| matcher::run(&o)),
        _ => Err(anyhow::anyhow!(
            "usage: sigexec-bench matcher [--seconds N | --passes N] [--workload benign|suspicious] [--verbose] [--sigexec-only]"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sigexec-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
