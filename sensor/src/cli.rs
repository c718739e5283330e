//! Command-line options, and their resolution into the one config each
//! command runs with. Nothing past [`Cli::parse`] and the `*Config`
//! constructors reads flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::capture;

#[derive(Debug, Parser)]
#[command(
    name = "sigexec",
    version,
    about = "eBPF process-exec sensor with native Sigma process_creation rules"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the sensor and write an alert line for every exec a rule matches.
    Run(RunArgs),
    /// Match events from a JSON-lines file (no root needed) and print alerts.
    Replay(ReplayArgs),
    /// Rule tools.
    #[command(subcommand)]
    Rules(RulesCommand),
}

#[derive(Debug, Args)]
pub struct RuleArgs {
    /// Rule file or directory (searched recursively for .yml/.yaml) to load
    /// in addition to the bundled rules. Repeatable.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Do not load the rules bundled into the binary.
    #[arg(long)]
    pub no_bundled: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Append alert lines to this file instead of writing them to stdout.
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Also write every exec event (kind "event"), not only alerts.
    #[arg(long)]
    pub all_events: bool,
    /// Ring buffer size in bytes (a power of two, at least a page).
    #[arg(long, value_name = "BYTES", default_value_t = capture::DEFAULT_RINGBUF_BYTES)]
    pub ringbuf_size: u32,
    /// Attach the classic tracepoint even where BTF tracepoints work.
    #[arg(long, hide = true)]
    pub force_tracepoint: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub rules: RuleArgs,
    /// JSON-lines file of events: alert-shaped objects (their `process`
    /// member is used) or flat objects of Sigma fields. `-` reads stdin.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Load and compile rules; print one line per problem; exit 1 if any.
    Check {
        /// Rule files or directories; the bundled rules when none is given.
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Print id, level, title and source of every loaded rule, one per
    /// line, tab-separated; problems go to stderr (exit 1 if any).
    List(RuleArgs),
}

/// Where rules come from, resolved.
#[derive(Clone, Debug)]
pub struct RuleSources {
    pub bundled: bool,
    pub paths: Vec<PathBuf>,
}

impl From<RuleArgs> for RuleSources {
    fn from(args: RuleArgs) -> Self {
        RuleSources {
            bundled: !args.no_bundled,
            paths: args.rules,
        }
    }
}
