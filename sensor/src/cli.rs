//! Command-line options, and their resolution into the one config each
//! command runs with. Nothing past [`Cli::parse`] and the `*Config`
//! constructors reads flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

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
    /// Write the man page (roff) to stdout; `cargo xtask package` uses it.
    #[command(hide = true)]
    Manpage,
    /// Print the running daemon's counters (root only).
    Status {
        /// The daemon's status socket.
        #[arg(long, value_name = "PATH", default_value = crate::config::DEFAULT_STATUS_SOCKET)]
        socket: PathBuf,
    },
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
    /// Config file [default: /etc/sigexec/config.yaml, if it exists].
    /// Flags override what it says.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Append alert lines to this file instead of the config's sinks.
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Also write every exec event (kind "event"), not only alerts.
    #[arg(long)]
    pub all_events: bool,
    /// Ring buffer size in bytes (a power of two, at least a page)
    /// [default: capture.ringbuf_size].
    #[arg(long, value_name = "BYTES")]
    pub ringbuf_size: Option<u32>,
    /// The `sigexec status` socket [default: stats.socket].
    #[arg(long, value_name = "PATH")]
    pub status_socket: Option<PathBuf>,
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
        #[arg(value_name = "PATH", conflicts_with = "config")]
        paths: Vec<PathBuf>,
        /// Check what `sigexec run --config PATH` would load, with the
        /// same loader (ownership checks included) that start and SIGHUP
        /// use.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
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

impl From<RunArgs> for Overrides {
    fn from(a: RunArgs) -> Self {
        Overrides {
            config: a.config,
            rules: a.rules.rules,
            no_bundled: a.rules.no_bundled,
            output: a.output,
            all_events: a.all_events,
            ringbuf_size: a.ringbuf_size,
            force_tracepoint: a.force_tracepoint,
            status_socket: a.status_socket,
        }
    }
}
