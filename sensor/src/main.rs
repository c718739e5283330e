//! `sigexec`: parse the command line, build, run, map to an exit code.

use std::{fs::File, io::Write as _, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Parser as _;
use sensor::{
    cli::{Cli, Command, ReplayArgs, RuleSources, RulesCommand, RunArgs},
    config, control, daemon, engine, replay, rules,
};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Replay(args) => replay_file(args),
        Command::Rules(RulesCommand::Check {
            config: Some(path), ..
        }) => rules_check_config(path),
        Command::Rules(RulesCommand::Check { paths, .. }) => rules_check(paths),
        Command::Rules(RulesCommand::List(args)) => rules_list(args.into()),
        Command::Status { socket } => status(&socket),
        Command::Manpage => manpage(),
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
    let source = config::Source {
        overrides: args.into(),
    };
    // One thread runs the ring-buffer loop and drives the I/O driver
    // itself: a ring-buffer wake-up lands on the thread that processes it.
    // With a multi-thread runtime, `block_on` ran the loop on this thread
    // while a worker parked in epoll, so every exec cost two wake-ups (the
    // worker, then this thread), which measured as about twice the CPU per
    // exec. Rule compilation on reload runs on the blocking pool, and the
    // sinks have threads of their own, so nothing slow shares this thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let stopped = runtime.block_on(async {
        let control = control::signals().context("installing signal handlers")?;
        daemon::run(source, control).await
    })?;
    // Sink threads still blocked on a dead collector must not hold the
    // exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(match stopped {
        daemon::Stopped::Clean => ExitCode::SUCCESS,
        daemon::Stopped::Forced => ExitCode::FAILURE,
    })
}

fn manpage() -> anyhow::Result<ExitCode> {
    use clap::CommandFactory as _;
    let cmd = Cli::command().after_help(
        "FILES: /etc/sigexec/config.yaml (every key in /usr/share/doc/sigexec/config.example.yaml), \
         /etc/sigexec/rules.d/*.yml, /run/sigexec/status.sock. \
         SIGNALS: SIGHUP reloads config and rules and reopens sinks; SIGTERM drains and stops.",
    );
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .section("8")
        .render(&mut out)
        .context("rendering the man page")?;
    std::io::stdout()
        .write_all(&out)
        .context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

fn status(socket: &std::path::Path) -> anyhow::Result<ExitCode> {
    let text = sensor::status::query(socket)
        .with_context(|| format!("asking the daemon at {}", socket.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("reading its answer: {text}"))?;
    if let Some(e) = value.get("error") {
        anyhow::bail!("{}", e.as_str().unwrap_or("refused"));
    }
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(ExitCode::SUCCESS)
}

/// Logs to journald with structured fields when systemd connected our
/// stderr to the journal (`JOURNAL_STREAM`), else plain text on stderr
/// (colour only on a terminal).
fn init_logging() {
    use std::io::IsTerminal as _;
    use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let filter = EnvFilter::try_from_env("SIGEXEC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        tracing_subscriber::registry()
            .with(filter)
            .with(journald.with_syslog_identifier("sigexec".into()))
            .init();
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
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

/// `sigexec rules check --config PATH`: the daemon's own loader.
fn rules_check_config(path: std::path::PathBuf) -> anyhow::Result<ExitCode> {
    let source = config::Source {
        overrides: config::Overrides {
            config: Some(path),
            ..config::Overrides::default()
        },
    };
    let config = source.load()?;
    match daemon::load_engine(&config, daemon::Strictness::Reload) {
        Ok(engine) => {
            println!("{} rules loaded, 0 errors", engine.rules().len());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
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
