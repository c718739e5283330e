//! sigexec: an eBPF process-exec sensor with native Sigma matching.
//!
//! Layout, in the order an exec flows through it:
//!
//! - [`capture`]: loads the eBPF program, reads the ring buffer, decodes
//!   [`capture::ExecRecord`]s.
//! - [`process`]: process table and enrichment into
//!   [`process::ProcessCreate`] events (Sysmon field names).
//! - [`sigma`]: Sigma rules parsed and compiled into a [`sigma::RuleSet`];
//!   pure, no I/O.
//! - [`engine`]: evaluates events against the rule set, with `Image`
//!   aliases, producing [`engine::Alert`]s.
//! - [`exclusions`]: opt-in Sigma filters (`rules/filters/`) that mark
//!   alerts `suppressed_by` instead of paging.
//! - [`incident`]: folds alerts of one act into one; [`host_state`]:
//!   lowers alerts raised while the host shuts down.
//! - [`sinks`]: writes alerts (JSON lines).
//! - [`rules`]: where rule text comes from (bundled, directories).
//! - [`daemon`]: the `run` loop wiring it all, signals, shutdown drain.
//! - [`replay`]: events from JSON lines instead of the kernel.
//! - [`cli`]: command-line options.
//! - [`config`]: the config file and its resolution, with the flags, into
//!   the daemon's one config.
//! - [`control`]: signals as one control stream (stop, stop now, reload).
//! - [`status`]: `sigexec status` over a root-only Unix socket.

pub mod capture;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod engine;
pub mod exclusions;
pub mod host_state;
pub mod incident;
pub mod prevent;
pub mod process;
pub mod replay;
pub mod rules;
pub mod sigma;
pub mod sinks;
pub mod status;
