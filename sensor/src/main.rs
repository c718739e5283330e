//! `sigexec`: parse the command line, build, run, map to an exit code.

use std::{fs::File, io::Write as _, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Parser as _;
use sensor::{
    capture,
    cli::{Cli, Command, ReplayArgs, RuleSources, RulesCommand, RunArgs},
    daemon, engine, replay, rules,
};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SIGEXEC_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Replay(args) => replay_file(args),
        Command::Rules(RulesCommand::Check { paths }) => rules_check(paths),
        Command::Rules(RulesCommand::List(args)) => rules_list(args.into()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sigexec: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = daemon::Config {
        rules: args.rules.into(),
        output: args.output,
        all_events: args.all_events,
        capture: capture::Options {
            ringbuf_bytes: args.ringbuf_size,
            force_tracepoint: args.force_tracepoint,
        },
        loss_check: Duration::from_secs(1),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(daemon::run(config, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the default action (exit) still applies.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining and stopping"),
        _ = int.recv() => tracing::info!("SIGINT: draining and stopping"),
    }
}

fn replay_file(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let sources: RuleSources = args.rules.into();
    let loaded = rules::load(sources.bundled, &sources.paths);
    report_rule_problems(&loaded);
    let engine = engine::Engine::new(std::sync::Arc::new(loaded.rules));
    let hostname = hostname();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut line = Vec::new();
    let mut emit = |alert: &engine::Alert| {
        line.clear();
        serde_json::to_writer(&mut line, alert)?;
        line.push(b'\n');
        out.write_all(&line)
    };
    let name = args.file.display().to_string();
    let errors = if name == "-" {
        replay::replay(
            &engine,
            std::io::stdin().lock(),
            "<stdin>",
            &hostname,
            &mut emit,
        )?
    } else {
        let file = File::open(&args.file).with_context(|| format!("opening {name}"))?;
        replay::replay(&engine, file, &name, &hostname, &mut emit)?
    };
    for e in &errors {
        eprintln!("sigexec: {e}");
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn rules_check(paths: Vec<std::path::PathBuf>) -> anyhow::Result<ExitCode> {
    let loaded = rules::load(paths.is_empty(), &paths);
    let problems = report_rule_problems(&loaded);
    println!(
        "{} rules loaded, {} errors, {} skipped",
        loaded.rules.len(),
        problems,
        loaded.warnings.len()
    );
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn rules_list(sources: RuleSources) -> anyhow::Result<ExitCode> {
    let loaded = rules::load(sources.bundled, &sources.paths);
    let problems = report_rule_problems(&loaded);
    let mut stdout = std::io::stdout().lock();
    for rule in loaded.rules.rules() {
        match writeln!(stdout, "{}", rule.list_line()) {
            Ok(()) => {}
            // `sigexec rules list | head`: the reader has all it wants.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e).context("writing to stdout"),
        }
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints every read error, load error and skip to stderr; returns the
/// number of errors.
fn report_rule_problems(loaded: &rules::Loaded) -> usize {
    for e in &loaded.read_errors {
        eprintln!("error: {e}");
    }
    for e in &loaded.errors {
        eprintln!("error: {e}");
    }
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    loaded.read_errors.len() + loaded.errors.len()
}

fn hostname() -> String {
    sensor::process::Enricher::new().hostname.to_string()
}
