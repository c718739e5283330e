//! The `run` loop: capture -> process -> engine -> sinks, until shutdown.
//!
//! [`Pipeline`] is the synchronous part (one record in, one event and its
//! alerts out), so tests drive it directly with records from a real
//! [`Sensor`]. [`run`] adds the async reader, the loss reporting, reload
//! on [`Control::Reload`], stats, the status socket, sd_notify, and the
//! bounded shutdown drain.
//!
//! Reload is all or nothing: config, rules and sinks are built aside (rule
//! compilation on the blocking pool, so the ring buffer keeps being read
//! meanwhile and no exec is missed); only when all of it succeeded is the
//! engine swapped, between two records. On any failure the old set keeps
//! running and the log says exactly what failed.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::{
    capture::{self, ExecRecord, Record, Sensor},
    cli::RuleSources,
    config::{self, Source},
    control::Control,
    engine::{Alert, Engine, Hit},
    host_state::HostState,
    incident::Incidents,
    prevent::{self, Plan},
    process::{Enricher, ProcessCreate, ProcessTermination, Table, table, termination},
    rules,
    sigma::RuleSet,
    sinks::{self, Body, Limiter, Message, SinkConfig, Sinks},
    status::{self, Status},
};

/// Everything `sigexec run` needs, resolved from flags and the config file
/// by [`config::resolve`].
#[derive(Clone, Debug)]
pub struct Config {
    pub rules: RuleSources,
    pub sinks: Vec<SinkConfig>,
    pub all_events: bool,
    pub capture: capture::Options,
    /// How often the kernel's lost-record counter is read.
    pub loss_check: Duration,
    /// Per-rule limit; `None` lets every alert through.
    pub rate_limit: Option<sinks::RateLimit>,
    /// How often a stats record is logged; `None`: never.
    pub stats_interval: Option<Duration>,
    pub status_socket: Option<PathBuf>,
    /// Prometheus text endpoint (a loopback address); `None`: off.
    pub prometheus: Option<std::net::SocketAddr>,
    /// From the stop request to exit, drain and flush included.
    pub shutdown_timeout: Duration,
    /// How long an alert waits for related ones (0: no folding).
    pub fold: Duration,
    /// Level of alerts raised while the host shuts down; `None` keeps it.
    pub stopping_level: Option<String>,
    /// Image prefixes whose deaths become `process_termination` events.
    pub watch: Vec<String>,
    /// Opt-in exclusions (`exclusions:`), compiled with the rules.
    pub exclusions: crate::exclusions::Settings,
    /// `prevent:`; off when it names no rule.
    pub prevent: prevent::Config,
}

/// One exec record in, its event and alerts out.
pub struct Pipeline {
    engine: Engine,
    enricher: Enricher,
    table: Table,
    hits: Vec<Hit>,
    scratch: Vec<usize>,
    /// Image prefixes whose deaths become `process_termination` events.
    watch: Vec<String>,
    /// Termination events (and their alerts) produced since the last
    /// [`Pipeline::take_terminations`].
    terminations: Vec<(ProcessTermination, Vec<Alert>)>,
    /// Every event is written out (`--all-events`), not only alerts: fill
    /// the fields that are otherwise computed for alerts alone.
    full_events: bool,
    /// The prevention plan in force: says what the kernel did for each
    /// alert of a prevented rule.
    plan: Option<Arc<Plan>>,
}

impl Pipeline {
    pub fn new(engine: Engine, mut enricher: Enricher) -> Pipeline {
        let table = Table::from_proc(&mut enricher, table::DEFAULT_MAX);
        Pipeline {
            engine,
            enricher,
            table,
            hits: Vec::new(),
            scratch: Vec::new(),
            watch: termination::DEFAULT_WATCH
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            terminations: Vec::new(),
            full_events: false,
            plan: None,
        }
    }

    /// Sets the prevention plan whose verdicts the alerts report.
    pub fn set_plan(&mut self, plan: Option<Arc<Plan>>) {
        self.plan = plan;
    }

    /// Fill every field of every event (for `--all-events` and tests), not
    /// only of those that raise an alert.
    pub fn set_full_events(&mut self, full: bool) {
        self.full_events = full;
    }

    /// Replaces the watched image prefixes (default: Kaspersky's).
    pub fn set_watch(&mut self, watch: Vec<String>) {
        self.watch = watch;
    }

    /// Termination events of watched processes since the last call.
    pub fn take_terminations(&mut self) -> Vec<(ProcessTermination, Vec<Alert>)> {
        std::mem::take(&mut self.terminations)
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Swaps the rule set: the next record is evaluated with `engine`.
    pub fn set_engine(&mut self, engine: Engine) {
        self.engine = engine;
    }

    pub fn hostname(&self) -> &str {
        &self.enricher.hostname
    }

    /// Applies one record: forks and exits update the process table; an
    /// exec gives its event and alerts.
    pub fn handle(&mut self, rec: &Record) -> Option<(ProcessCreate, Vec<Alert>)> {
        match *rec {
            Record::Exec(ref exec) => Some(self.exec(exec)),
            Record::Fork {
                tgid,
                creator,
                start_boottime,
            } => {
                self.enricher
                    .fork(&mut self.table, tgid, creator, start_boottime);
                None
            }
            Record::Exit {
                tgid,
                exit_code,
                boot_ns,
            } => {
                if let Some(event) =
                    self.enricher
                        .termination(&self.table, &self.watch, tgid, exit_code, boot_ns)
                {
                    self.hits.clear();
                    self.engine
                        .evaluate_termination(&event, &mut self.hits, &mut self.scratch);
                    let process = serde_json::to_value(&event).unwrap_or_default();
                    let alerts = self
                        .hits
                        .iter()
                        .map(|hit| {
                            Alert::new(
                                self.engine.rules(),
                                hit,
                                &self.enricher.hostname,
                                process.clone(),
                            )
                        })
                        .collect();
                    self.terminations.push((event, alerts));
                }
                self.table.exit(tgid, boot_ns);
                None
            }
            Record::Signal {
                target,
                sender,
                signal,
                ..
            } => {
                self.enricher
                    .signal(&mut self.table, &self.watch, target, sender, signal);
                None
            }
        }
    }

    /// Enriches `rec`, updates the process table, and evaluates the rules.
    /// The alert vector is empty (and unallocated) for the common case of no
    /// hit.
    pub fn exec(&mut self, rec: &ExecRecord) -> (ProcessCreate, Vec<Alert>) {
        let mut event = self.enricher.process_create(rec, &mut self.table);
        self.hits.clear();
        self.engine
            .evaluate(&event, &mut self.hits, &mut self.scratch);
        if let Some(plan) = &self.plan {
            // A kill the matcher does not confirm must not be silent: raise
            // the prevented rule's alert anyway (its action says why).
            for rule in plan.rules_in(rec.prevent_rules) {
                if !self.hits.iter().any(|h| h.rule == rule) {
                    self.hits.push(Hit {
                        rule,
                        image_as: crate::engine::ImageAs::Resolved,
                        image: event.image.clone(),
                        parent_image_as: crate::engine::ImageAs::Resolved,
                        parent_image: event.parent_image.clone(),
                    });
                }
            }
        }
        if self.full_events || !self.hits.is_empty() {
            event.ancestor_images = self.table.ancestor_images(
                event.parent_process_id,
                crate::process::event::ANCESTORS_MAX,
            );
        }
        let mut alerts = Vec::new();
        if !self.hits.is_empty() {
            let process = serde_json::to_value(&event).unwrap_or_default();
            for hit in &self.hits {
                let mut alert = Alert::new(
                    self.engine.rules(),
                    hit,
                    &self.enricher.hostname,
                    process.clone(),
                );
                alert.prevention = self
                    .plan
                    .as_ref()
                    .and_then(|p| p.action(hit.rule, rec.prevent, rec.prevent_rules));
                alerts.push(alert);
            }
            self.suppress(&event, &mut alerts);
        }
        (event, alerts)
    }

    /// Marks the alerts an enabled exclusion covers: `suppressed_by`, the
    /// reason, and the lowered level. Runs only for execs with a hit on a
    /// rule some exclusion names, so the ancestry walk costs nothing on
    /// the common path.
    fn suppress(&self, event: &ProcessCreate, alerts: &mut [Alert]) {
        let exclusions = self.engine.exclusions();
        if !self.hits.iter().any(|h| exclusions.covers_rule(h.rule)) {
            return;
        }
        let ancestors = self.table.ancestors(
            event.parent_process_id,
            crate::process::event::ANCESTORS_MAX,
        );
        let verdict = exclusions.evaluate(event, &ancestors, jiff::Timestamp::now());
        for (hit, alert) in self.hits.iter().zip(alerts.iter_mut()) {
            let Some(excluded) =
                exclusions.excluding(hit.rule, alert.rule.level.as_deref(), &verdict)
            else {
                continue;
            };
            alert.suppressed_by = Some(excluded.name);
            alert.suppression = Some(excluded.suppression);
            if let Some(level) = exclusions.level() {
                alert.rule.level = Some(level.to_owned());
            }
        }
    }
}

/// How the daemon stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Drained and flushed within the bound.
    Clean,
    /// A second signal, or the bound passed: something may be unwritten.
    Forced,
}

/// How a rule problem is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    /// At start: log every bad rule and run with the good ones (a typo in
    /// one file must not leave the host unwatched). An untrusted rules path
    /// still refuses the start.
    Start,
    /// On reload: all or nothing; any problem keeps the running set.
    Reload,
}

/// Loads and compiles the rules `config` names, refusing rules paths a
/// non-root user could change. Blocking: call it off the async workers.
pub fn load_rules(config: &Config, strictness: Strictness) -> anyhow::Result<RuleSet> {
    let mut paths = Vec::new();
    for path in &config.rules.paths {
        // The default rules.d may simply not exist; any other configured
        // path must.
        if path.as_os_str() == config::DEFAULT_RULES_DIR && !path.exists() {
            continue;
        }
        config::check_rules_path(path)?;
        paths.push(path.clone());
    }
    let loaded = rules::load(config.rules.bundled, &paths);
    for w in &loaded.warnings {
        warn!("rules: {w}");
    }
    let mut problems: Vec<String> = loaded.read_errors.iter().map(|e| e.to_string()).collect();
    problems.extend(loaded.errors.iter().map(|e| e.to_string()));
    if !problems.is_empty() {
        if strictness == Strictness::Reload {
            anyhow::bail!(
                "{} rule error(s):\n  {}",
                problems.len(),
                problems.join("\n  ")
            );
        }
        for p in &problems {
            error!("rules: {p}");
        }
        error!(
            errors = problems.len(),
            loaded = loaded.rules.len(),
            "some rules did not load; running with the others"
        );
    }
    Ok(loaded.rules)
}

/// The engine `config` asks for: its rules (see [`load_rules`]) and the
/// enabled exclusions compiled for them. Blocking.
pub fn load_engine(config: &Config, strictness: Strictness) -> anyhow::Result<Engine> {
    let rules = load_rules(config, strictness)?;
    let (exclusions, warnings) = crate::exclusions::Exclusions::build(&config.exclusions, &rules)
        .map_err(|e| anyhow::anyhow!(e))?;
    for w in &warnings {
        warn!("{w}");
    }
    if !config.exclusions.enabled.is_empty() {
        info!(enabled = ?config.exclusions.enabled, "exclusions");
    }
    Ok(Engine::with_exclusions(Arc::new(rules), exclusions))
}

/// Config, compiled rules and prevention plan, built aside.
struct Prepared {
    config: Config,
    engine: Engine,
    plan: Option<Plan>,
}

fn prepare(source: &Source, strictness: Strictness) -> anyhow::Result<Prepared> {
    let config = source.load()?;
    let engine = load_engine(&config, strictness)?;
    // A prevented rule that the kernel cannot decide refuses the start (and
    // the reload): the admin asked for prevention, and must learn at once
    // that it would not happen, not when the attack comes.
    let plan = if config.prevent.enabled() {
        Some(Plan::compile(engine.rules(), &config.prevent)?)
    } else {
        None
    };
    Ok(Prepared {
        config,
        engine,
        plan,
    })
}

async fn prepare_blocking(source: Source, strictness: Strictness) -> anyhow::Result<Prepared> {
    tokio::task::spawn_blocking(move || prepare(&source, strictness))
        .await
        .context("rule compilation task")?
}

/// systemd's notify socket, when run as a `Type=notify` unit.
fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(false, state)
    {
        warn!(error = %e, "sd_notify");
    }
}

/// Counters for the stats record and `sigexec status`.
#[derive(Default)]
struct Counters {
    events: u64,
    alerts: u64,
    lost: u64,
    /// Alerts dropped by the rate limit.
    suppressed: u64,
    alerts_by_rule: BTreeMap<String, u64>,
    /// Alerts an exclusion marked `suppressed_by` (not in `alerts`).
    excluded: u64,
    excluded_by_filter: BTreeMap<String, u64>,
    reloads: u64,
    reload_failures: u64,
    /// Events at the previous stats record, and when.
    last_events: u64,
    last_at: Option<Instant>,
}

/// Loads config and rules, attaches the sensor and runs until a
/// [`Control::Shutdown`]; then drains the ring buffer, flushes every sink
/// and returns, within `shutdown_timeout`.
pub async fn run(
    source: Source,
    mut control: mpsc::UnboundedReceiver<Control>,
) -> anyhow::Result<Stopped> {
    let started = Instant::now();
    let Prepared {
        mut config,
        engine,
        plan,
    } = prepare_blocking(source.clone(), Strictness::Start).await?;
    info!(rules = engine.rules().len(), "rules loaded");
    let mut sinks = Sinks::start(&config.sinks)?;
    let excluded_sinks = match &config.exclusions.sinks {
        Some(list) => Some(Sinks::start(list).context("exclusions.sinks")?),
        None => None,
    };
    let mut sensor = Sensor::start(&config.capture).context("starting exec capture")?;
    // Seed the table after attaching: an exec in between waits in the ring.
    let mut pipeline = Pipeline::new(engine, Enricher::new());
    pipeline.set_full_events(config.all_events);
    pipeline.set_watch(config.watch.clone());
    let plan = plan.map(Arc::new);
    if let Some(plan) = &plan {
        start_prevention(&mut sensor, plan, &sinks, pipeline.hostname())?;
    }
    pipeline.set_plan(plan);
    let mut limiter = Limiter::new(config.rate_limit);
    let mut alerts = Outgoing {
        incidents: Incidents::new(config.fold),
        host_state: HostState::with_systemctl("systemctl".into(), config.stopping_level.clone()),
        excluded_sinks,
    };
    let listener = match &config.status_socket {
        Some(path) => match status::bind(path) {
            Ok(l) => Some(l),
            Err(e) => {
                warn!(socket = %path.display(), error = %e, "status socket disabled");
                None
            }
        },
        None => None,
    };
    let metrics = match config.prometheus {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                error!(address = %addr, error = %e, "prometheus endpoint disabled");
                None
            }
        },
        None => None,
    };
    let hook = sensor.hook();
    info!(
        hook = ?hook,
        processes = pipeline.table().len(),
        rules = pipeline.engine().rules().len(),
        sinks = ?sinks.names(),
        "sigexec ready"
    );
    let ready_status = format!(
        "watching execs with {} rules",
        pipeline.engine().rules().len()
    );
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&ready_status),
    ]);
    let mut watchdog_usec = 0;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec);
    // Ping at half the interval systemd expects.
    let mut watchdog_tick = tokio::time::interval(if watchdog {
        Duration::from_micros(watchdog_usec / 2).max(Duration::from_millis(100))
    } else {
        Duration::from_secs(3600)
    });

    let mut counters = Counters::default();
    let mut records = Vec::with_capacity(1024);
    let mut loss_check = tokio::time::interval(config.loss_check);
    let summary_every = config.stats_interval.unwrap_or(Duration::from_secs(60));
    let mut stats_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + summary_every, summary_every);
    let mut reload: Option<tokio::task::JoinHandle<anyhow::Result<Prepared>>> = None;
    let mut reload_again = false;
    let stop_reason = loop {
        tokio::select! {
            read = sensor.read(&mut records, 1024) => {
                read.context("reading the ring buffer")?;
                process(&mut pipeline, &mut records, &sinks, &config, &mut alerts, &mut limiter, &mut counters);
            }
            () = due(alerts.incidents.next_due()) => {
                alerts.release(Instant::now(), false, &sinks, &mut limiter, &mut counters);
            }
            _ = loss_check.tick() => {
                // Forks and exits do not wake the reader (see sensor-ebpf);
                // collect whatever waits, so a watched process's exit is
                // reported within a tick even on an idle host.
                sensor.drain_now(&mut records);
                process(&mut pipeline, &mut records, &sinks, &config, &mut alerts, &mut limiter, &mut counters);
                report_loss(&sensor, &sinks, &mut counters, pipeline.hostname());
                check_breaker(&mut sensor, &sinks, pipeline.hostname());
            }
            _ = stats_tick.tick() => {
                summarise(&mut limiter, &sinks, pipeline.hostname());
                sinks.report_drops();
                if let Some(s) = &mut alerts.excluded_sinks {
                    s.report_drops();
                }
                if config.stats_interval.is_some() {
                    let s = snapshot(&mut counters, &pipeline, &sinks, alerts.excluded_sinks.as_ref(), started, true);
                    info!(
                        events = s.events,
                        events_per_second = s.events_per_second,
                        lost = s.lost,
                        alerts = s.alerts,
                        alerts_suppressed = s.alerts_suppressed,
                        alerts_excluded = s.alerts_excluded,
                        alerts_by_rule = ?s.alerts_by_rule,
                        process_table = s.process_table,
                        rules = s.rules,
                        uptime_secs = s.uptime_secs,
                        "stats"
                    );
                }
            }
            _ = watchdog_tick.tick(), if watchdog => notify(&[sd_notify::NotifyState::Watchdog]),
            conn = accept(listener.as_ref()) => {
                if let Ok(stream) = conn {
                    let mut s = snapshot(&mut counters, &pipeline, &sinks, alerts.excluded_sinks.as_ref(), started, false);
                    s.prevent = prevent_status(&mut sensor, pipeline.plan.as_deref());
                    let mut body = serde_json::to_vec(&s).unwrap_or_default();
                    body.push(b'\n');
                    tokio::spawn(status::serve(stream, body));
                }
            }
            conn = accept_tcp(metrics.as_ref()) => {
                if let Ok(stream) = conn {
                    let s = snapshot(&mut counters, &pipeline, &sinks, alerts.excluded_sinks.as_ref(), started, false);
                    tokio::spawn(status::serve_prometheus(stream, status::prometheus(&s)));
                }
            }
            done = join(&mut reload) => {
                reload = None;
                match done {
                    Ok(Ok(prepared)) => apply(
                        prepared, &mut config, &mut pipeline, &mut sinks, &mut alerts, &mut limiter,
                        &mut counters, &mut sensor,
                    ),
                    Ok(Err(e)) => {
                        counters.reload_failures += 1;
                        error!("reload failed, keeping the previous config and rules: {e:#}");
                    }
                    Err(e) => {
                        counters.reload_failures += 1;
                        error!("reload failed, keeping the previous config and rules: {e}");
                    }
                }
                notify(&[sd_notify::NotifyState::Ready]);
                if std::mem::take(&mut reload_again) {
                    reload = Some(tokio::spawn(prepare_blocking(source.clone(), Strictness::Reload)));
                }
            }
            c = control.recv() => match c {
                Some(Control::Reload) => {
                    info!("SIGHUP: reloading config and rules, reopening sinks");
                    notify(&[sd_notify::NotifyState::Reloading]);
                    sinks.reopen();
                    if let Some(s) = &alerts.excluded_sinks {
                        s.reopen();
                    }
                    if reload.is_some() {
                        // One more after the one in flight: it may have
                        // read the files before they changed.
                        reload_again = true;
                    } else {
                        reload = Some(tokio::spawn(prepare_blocking(source.clone(), Strictness::Reload)));
                    }
                }
                Some(Control::Shutdown(sig)) => break sig,
                Some(Control::StopNow(sig)) => {
                    warn!("{sig}: stopping now, without draining");
                    return Ok(Stopped::Forced);
                }
                None => break "end of control stream",
            },
        }
    };
    info!("{stop_reason}: draining and stopping");
    notify(&[sd_notify::NotifyState::Stopping]);
    let deadline = Instant::now() + config.shutdown_timeout;
    // Drain: whatever the kernel submitted before we stopped still counts.
    sensor.drain_now(&mut records);
    process(
        &mut pipeline,
        &mut records,
        &sinks,
        &config,
        &mut alerts,
        &mut limiter,
        &mut counters,
    );
    alerts.release(Instant::now(), true, &sinks, &mut limiter, &mut counters);
    report_loss(&sensor, &sinks, &mut counters, pipeline.hostname());
    summarise(&mut limiter, &sinks, pipeline.hostname());
    check_breaker(&mut sensor, &sinks, pipeline.hostname());
    stop_prevention(&mut sensor, &sinks, pipeline.hostname(), stop_reason);
    drop(sensor);
    let excluded = alerts.excluded_sinks.take();
    let close_all = async move {
        let mut late = sinks.close(deadline).await;
        if let Some(s) = excluded {
            late.extend(s.close(deadline).await);
        }
        late
    };
    let late = tokio::select! {
        late = close_all => late,
        c = wait_stop_now(&mut control) => {
            warn!("{c}: stopping now, sinks not flushed");
            return Ok(Stopped::Forced);
        }
    };
    if listener.is_some()
        && let Some(path) = &config.status_socket
    {
        let _ = std::fs::remove_file(path);
    }
    info!(
        events = counters.events,
        alerts = counters.alerts,
        alerts_suppressed = counters.suppressed,
        alerts_excluded = counters.excluded,
        lost = counters.lost,
        "sigexec stopped"
    );
    if late.is_empty() {
        Ok(Stopped::Clean)
    } else {
        error!(sinks = ?late, "sinks did not flush within {:?}", config.shutdown_timeout);
        Ok(Stopped::Forced)
    }
}

async fn wait_stop_now(control: &mut mpsc::UnboundedReceiver<Control>) -> &'static str {
    loop {
        match control.recv().await {
            Some(Control::StopNow(sig) | Control::Shutdown(sig)) => return sig,
            Some(Control::Reload) => {}
            None => return std::future::pending().await,
        }
    }
}

async fn accept(
    listener: Option<&tokio::net::UnixListener>,
) -> std::io::Result<tokio::net::UnixStream> {
    match listener {
        Some(l) => l.accept().await.map(|(s, _)| s),
        None => std::future::pending().await,
    }
}

async fn accept_tcp(
    listener: Option<&tokio::net::TcpListener>,
) -> std::io::Result<tokio::net::TcpStream> {
    match listener {
        Some(l) => l.accept().await.map(|(s, _)| s),
        None => std::future::pending().await,
    }
}

async fn join<T>(
    task: &mut Option<tokio::task::JoinHandle<T>>,
) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

/// Swaps in a successfully prepared config and rule set.
#[expect(
    clippy::too_many_arguments,
    reason = "the daemon loop's state, borrowed piecewise so the reload cannot outlive it"
)]
fn apply(
    prepared: Prepared,
    config: &mut Config,
    pipeline: &mut Pipeline,
    sinks: &mut Sinks,
    out: &mut Outgoing,
    limiter: &mut Limiter,
    counters: &mut Counters,
    sensor: &mut Sensor,
) {
    let Prepared {
        config: new,
        engine,
        plan,
    } = prepared;
    if plan.is_some() && sensor.prevention().is_none() {
        counters.reload_failures += 1;
        error!(
            "reload failed, keeping the previous config and rules: prevent.rules were empty at \
             start, so the prevention program is not loaded; restart sigexec to start prevention"
        );
        return;
    }
    // Suppressed alerts' own sinks first: if they fail, nothing changed.
    let old_excluded = out.excluded_sinks.as_ref().map(Sinks::configs);
    let mut fresh_excluded = None;
    if new.exclusions.sinks != old_excluded
        && let Some(list) = &new.exclusions.sinks
    {
        match Sinks::start(list) {
            Ok(fresh) => fresh_excluded = Some(fresh),
            Err(e) => {
                counters.reload_failures += 1;
                error!(
                    "reload failed, keeping the previous config and rules: exclusions.sinks: {e:#}"
                );
                return;
            }
        }
    }
    if new.sinks != sinks.configs() {
        match Sinks::start(&new.sinks) {
            Ok(fresh) => {
                let old = std::mem::replace(sinks, fresh);
                let deadline = Instant::now() + new.shutdown_timeout;
                tokio::spawn(async move {
                    let late = old.close(deadline).await;
                    if !late.is_empty() {
                        error!(sinks = ?late, "replaced sinks did not flush in time");
                    }
                });
            }
            Err(e) => {
                counters.reload_failures += 1;
                error!("reload failed, keeping the previous config and rules: {e:#}");
                return;
            }
        }
    }
    if new.capture.ringbuf_bytes != config.capture.ringbuf_bytes
        || new.status_socket != config.status_socket
        || new.stats_interval != config.stats_interval
        || new.prometheus != config.prometheus
    {
        warn!(
            "capture.ringbuf_size, stats.interval_secs, stats.socket and stats.prometheus take \
             effect on restart"
        );
    }
    if new.exclusions.sinks != old_excluded {
        let old = std::mem::replace(&mut out.excluded_sinks, fresh_excluded);
        if let Some(old) = old {
            let deadline = Instant::now() + new.shutdown_timeout;
            tokio::spawn(async move {
                let late = old.close(deadline).await;
                if !late.is_empty() {
                    error!(sinks = ?late, "replaced exclusions.sinks did not flush in time");
                }
            });
        }
    }
    let count = engine.rules().len();
    let plan = plan.map(Arc::new);
    match &plan {
        Some(plan) => {
            if let Err(e) = start_prevention(sensor, plan, sinks, pipeline.hostname()) {
                error!("reload: prevention not updated: {e:#}");
            }
        }
        None if sensor.prevention().is_some() => {
            stop_prevention(
                sensor,
                sinks,
                pipeline.hostname(),
                "reload without prevent.rules",
            );
        }
        None => {}
    }
    pipeline.set_plan(plan);
    pipeline.set_engine(engine);
    pipeline.set_watch(new.watch.clone());
    pipeline.set_full_events(new.all_events);
    limiter.set_limit(new.rate_limit);
    // Keep what only a restart changes, so the warning above repeats
    // until then.
    let (capture, socket, stats, prometheus) = (
        config.capture.clone(),
        config.status_socket.clone(),
        config.stats_interval,
        config.prometheus,
    );
    *config = Config {
        capture,
        status_socket: socket,
        stats_interval: stats,
        prometheus,
        ..new
    };
    counters.reloads += 1;
    info!(rules = count, sinks = ?sinks.names(), "reloaded");
}

/// Alerts on their way out: folded into incidents, then annotated with
/// the host's state, rate limited and sent.
struct Outgoing {
    incidents: Incidents,
    host_state: HostState,
    /// `exclusions.sinks`: where suppressed alerts go instead of the
    /// alert sinks; `None`: the alert sinks.
    excluded_sinks: Option<Sinks>,
}

impl Outgoing {
    fn push(&mut self, alert: Alert, now: Instant) {
        self.incidents.push(alert, now);
    }

    /// Sends the incidents whose window closed (all of them if `flush`).
    fn release(
        &mut self,
        now: Instant,
        flush: bool,
        sinks: &Sinks,
        limiter: &mut Limiter,
        counters: &mut Counters,
    ) {
        let ready = if flush {
            self.incidents.flush()
        } else {
            self.incidents.ready(now)
        };
        for mut alert in ready {
            self.host_state.annotate(&mut alert, now);
            if let Some(filter) = &alert.suppressed_by {
                // An expected stop: counted apart, never as an alert, and
                // limited apart so it cannot use up the rule's own budget.
                counters.excluded += 1;
                *counters
                    .excluded_by_filter
                    .entry(filter.clone())
                    .or_default() += 1;
                let key = format!(
                    "suppressed_by:{filter}:{}",
                    alert.rule.id.as_deref().unwrap_or(&alert.rule.title)
                );
                if limiter.allow(&key, &alert.rule.title, now) {
                    let to = self.excluded_sinks.as_ref().unwrap_or(sinks);
                    to.send(&Message::new(Body::Alert(Box::new(alert))));
                } else {
                    counters.suppressed += 1;
                }
                continue;
            }
            counters.alerts += 1;
            let key = alert
                .rule
                .id
                .clone()
                .unwrap_or_else(|| alert.rule.title.clone());
            if limiter.allow(&key, &alert.rule.title, now) {
                sinks.send(&Message::new(Body::Alert(Box::new(alert))));
            } else {
                counters.suppressed += 1;
            }
            *counters.alerts_by_rule.entry(key).or_default() += 1;
        }
    }
}

/// Resolves at `at`, or never.
async fn due(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn process(
    pipeline: &mut Pipeline,
    records: &mut Vec<Record>,
    sinks: &Sinks,
    config: &Config,
    out: &mut Outgoing,
    limiter: &mut Limiter,
    counters: &mut Counters,
) {
    let now = Instant::now();
    for rec in records.drain(..) {
        let Some((event, alerts)) = pipeline.handle(&rec) else {
            continue;
        };
        counters.events += 1;
        if config.all_events {
            sinks.send(&Message::new(Body::Event(Box::new(event))));
        }
        for alert in alerts {
            out.push(alert, now);
        }
    }
    for (_, alerts) in pipeline.take_terminations() {
        for alert in alerts {
            out.push(alert, now);
        }
    }
    // With no hold, alerts leave at once instead of on the next timer.
    out.release(now, false, sinks, limiter, counters);
}

/// One `rate_limit` record per rule that had alerts suppressed.
fn summarise(limiter: &mut Limiter, sinks: &Sinks, hostname: &str) {
    for s in limiter.take_suppressed() {
        warn!(rule = %s.id, title = %s.title, suppressed = s.suppressed, "rate limit suppressed alerts");
        sinks.send(&Message::new(Body::Record(serde_json::json!({
            "timestamp": crate::process::rfc3339(time::OffsetDateTime::now_utc()),
            "kind": "rate_limit",
            "rule": { "id": s.id, "title": s.title },
            "suppressed": s.suppressed,
            "host": { "hostname": hostname },
        }))));
    }
}

fn snapshot(
    counters: &mut Counters,
    pipeline: &Pipeline,
    sinks: &Sinks,
    excluded_sinks: Option<&Sinks>,
    started: Instant,
    advance: bool,
) -> Status {
    let now = Instant::now();
    let since = counters.last_at.unwrap_or(started);
    let secs = now.duration_since(since).as_secs_f64();
    let rate = if secs > 0.0 {
        (counters.events - counters.last_events) as f64 / secs
    } else {
        0.0
    };
    if advance {
        counters.last_events = counters.events;
        counters.last_at = Some(now);
    }
    Status {
        uptime_secs: now.duration_since(started).as_secs(),
        events: counters.events,
        events_per_second: (rate * 10.0).round() / 10.0,
        lost: counters.lost,
        alerts: counters.alerts,
        alerts_by_rule: counters.alerts_by_rule.clone(),
        alerts_suppressed: counters.suppressed,
        alerts_excluded: counters.excluded,
        alerts_excluded_by_filter: counters.excluded_by_filter.clone(),
        process_table: pipeline.table().len(),
        rules: pipeline.engine().rules().len(),
        reloads: counters.reloads,
        reload_failures: counters.reload_failures,
        sinks: sinks
            .stats()
            .into_iter()
            .chain(excluded_sinks.into_iter().flat_map(|s| {
                s.stats().into_iter().map(|mut k| {
                    k.name = format!("exclusions:{}", k.name);
                    k
                })
            }))
            .collect(),
        prevent: None,
    }
}

/// A line in the alert stream saying the kernel dropped records.
#[derive(Serialize)]
struct LossRecord {
    timestamp: String,
    kind: &'static str,
    /// Records lost since the previous loss line.
    lost: u64,
    /// Records lost since the sensor started.
    lost_total: u64,
    host: crate::engine::Host,
}

fn report_loss(sensor: &Sensor, sinks: &Sinks, counters: &mut Counters, hostname: &str) {
    let total = match sensor.lost() {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "reading the lost-record counter");
            return;
        }
    };
    if total > counters.lost {
        let lost = total - counters.lost;
        counters.lost = total;
        warn!(
            lost,
            lost_total = total,
            "kernel dropped exec records (ring buffer full)"
        );
        let record = LossRecord {
            timestamp: crate::process::rfc3339(time::OffsetDateTime::now_utc()),
            kind: "loss",
            lost,
            lost_total: total,
            host: crate::engine::Host {
                hostname: hostname.to_owned(),
            },
        };
        sinks.send(&Message::new(Body::Record(
            serde_json::to_value(&record).unwrap_or_default(),
        )));
    }
}

/// Writes `plan` into the kernel, seeds the allow-tracking map from /proc
/// and says so in the alert stream.
fn start_prevention(
    sensor: &mut Sensor,
    plan: &Plan,
    sinks: &Sinks,
    hostname: &str,
) -> anyhow::Result<()> {
    let maps = sensor
        .prevention()
        .context("the prevention program is not loaded")?;
    let c = &plan.config;
    let state = sensor_common::prevent::State {
        mode: c.mode.kernel(),
        daemon_tgid: std::process::id(),
        kill_limit: c.max_kills,
        window_ns: u64::try_from(c.window.as_nanos()).unwrap_or(u64::MAX),
        ..Default::default()
    };
    maps.install(&plan.tables, state)
        .context("writing the prevention policy into the kernel")?;
    maps.seed(&prevent::seed_tracked(&c.ancestor_images));
    info!(mode = ?c.mode, rules = ?c.rules, "prevention active");
    prevent_record(
        sinks,
        hostname,
        "started",
        serde_json::json!({
            "mode": c.mode,
            "rules": c.rules,
            "max_kills": c.max_kills,
            "window_secs": c.window.as_secs(),
        }),
    );
    Ok(())
}

/// Switches prevention off in the kernel (the daemon is stopping, or a
/// reload dropped it): an alert, since from here on nothing is killed.
fn stop_prevention(sensor: &mut Sensor, sinks: &Sinks, hostname: &str, why: &str) {
    let Some(maps) = sensor.prevention() else {
        return;
    };
    let result = maps.state().and_then(|mut s| {
        s.mode = sensor_common::prevent::MODE_OFF;
        maps.set_state(s)
    });
    if let Err(e) = result {
        warn!(error = %e, "switching prevention off");
    }
    warn!("prevention stopped: {why}");
    prevent_record(
        sinks,
        hostname,
        "stopped",
        serde_json::json!({ "reason": why }),
    );
}

/// Reports a breaker trip the kernel made since the last check, once.
fn check_breaker(sensor: &mut Sensor, sinks: &Sinks, hostname: &str) {
    let Some(maps) = sensor.prevention() else {
        return;
    };
    let Ok(mut state) = maps.state() else {
        return;
    };
    if state.tripped == 0 {
        return;
    }
    state.tripped = 0;
    if let Err(e) = maps.set_state(state) {
        warn!(error = %e, "clearing the breaker flag");
    }
    error!(
        kills_in_window = state.window_kills,
        max_kills = state.kill_limit,
        "kill-rate breaker tripped: prevention is now dry-run until a reload or restart"
    );
    prevent_record(
        sinks,
        hostname,
        "breaker_tripped",
        serde_json::json!({
            "mode": prevent::Mode::DryRun,
            "kills_in_window": state.window_kills,
            "max_kills": state.kill_limit,
            "window_secs": state.window_ns / 1_000_000_000,
        }),
    );
}

/// A `{"kind":"prevent","event":...}` line in the alert stream.
fn prevent_record(sinks: &Sinks, hostname: &str, event: &str, details: serde_json::Value) {
    let mut record = serde_json::json!({
        "timestamp": crate::process::rfc3339(time::OffsetDateTime::now_utc()),
        "kind": "prevent",
        "event": event,
        "level": if event == "started" { "informational" } else { "high" },
        "host": { "hostname": hostname },
    });
    if let (Some(map), serde_json::Value::Object(more)) = (record.as_object_mut(), details) {
        map.extend(more);
    }
    sinks.send(&Message::new(Body::Record(record)));
}

/// Prevention's state for `sigexec status`.
fn prevent_status(sensor: &mut Sensor, plan: Option<&Plan>) -> Option<status::PreventStatus> {
    let plan = plan?;
    let state = sensor.prevention()?.state().ok()?;
    Some(status::PreventStatus {
        mode: match state.mode {
            sensor_common::prevent::MODE_ENFORCE => "enforce",
            sensor_common::prevent::MODE_DRY_RUN => "dry-run",
            _ => "off",
        }
        .to_owned(),
        configured_mode: plan.config.mode,
        rules: plan.config.rules.clone(),
        kills: state.kills,
        would_kill: state.would_kill,
        breaker_tripped: state.mode == sensor_common::prevent::MODE_DRY_RUN
            && plan.config.mode == prevent::Mode::Enforce,
        max_kills: plan.config.max_kills,
        window_secs: plan.config.window.as_secs(),
    })
}
