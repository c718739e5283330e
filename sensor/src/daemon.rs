//! The `run` loop: capture -> process -> engine -> sinks, until shutdown.
//!
//! [`Pipeline`] is the synchronous part (one record in, one event and its
//! alerts out), so tests drive it directly with records from a real
//! [`Sensor`]. [`run`] adds the async reader, the loss reporting and the
//! shutdown drain.

use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use serde::Serialize;
use tracing::{error, info, warn};

use crate::{
    capture::{self, ExecRecord, Record, Sensor},
    cli::RuleSources,
    engine::{Alert, Engine, Hit},
    process::{Enricher, ProcessCreate, ProcessTermination, Table, table, termination},
    rules,
    sinks::JsonLines,
};

/// Everything `sigexec run` needs, resolved from flags.
#[derive(Clone, Debug)]
pub struct Config {
    pub rules: RuleSources,
    /// Alert file; stdout when `None`.
    pub output: Option<PathBuf>,
    pub all_events: bool,
    pub capture: capture::Options,
    /// How often the kernel's lost-record counter is read.
    pub loss_check: Duration,
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
        }
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
                alerts.push(Alert::new(
                    self.engine.rules(),
                    hit,
                    &self.enricher.hostname,
                    process.clone(),
                ));
            }
        }
        (event, alerts)
    }
}

/// A line in the alert stream saying the kernel dropped records.
#[derive(Serialize)]
struct LossRecord<'a> {
    timestamp: String,
    kind: &'static str,
    /// Records lost since the previous loss line.
    lost: u64,
    /// Records lost since the sensor started.
    lost_total: u64,
    host: crate::engine::Host,
    #[serde(skip)]
    _p: std::marker::PhantomData<&'a ()>,
}

#[derive(Serialize)]
struct EventLine<'a> {
    kind: &'static str,
    process: &'a ProcessCreate,
}

/// Loads the rules, attaches the sensor and runs until `shutdown`
/// resolves; then drains the ring buffer, flushes and returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let loaded = rules::load(config.rules.bundled, &config.rules.paths);
    for e in &loaded.read_errors {
        error!("rules: {e}");
    }
    for e in &loaded.errors {
        error!("rules: {e}");
    }
    for w in &loaded.warnings {
        warn!("rules: {w}");
    }
    info!(
        rules = loaded.rules.len(),
        errors = loaded.errors.len() + loaded.read_errors.len(),
        "rules loaded"
    );
    let engine = Engine::new(Arc::new(loaded.rules));

    let mut sink = match &config.output {
        Some(path) => JsonLines::append(path)
            .with_context(|| format!("opening alert output {}", path.display()))?,
        None => JsonLines::stdout(),
    };
    let mut sensor = Sensor::start(&config.capture).context("starting exec capture")?;
    // Seed the table after attaching: an exec in between waits in the ring.
    let mut pipeline = Pipeline::new(engine, Enricher::new());
    pipeline.set_full_events(config.all_events);
    info!(
        hook = ?sensor.hook(),
        processes = pipeline.table().len(),
        output = sink.target(),
        "sigexec ready"
    );

    let mut stats = Stats::default();
    let mut records = Vec::with_capacity(1024);
    let mut loss_check = tokio::time::interval(config.loss_check);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            read = sensor.read(&mut records, 1024) => {
                read.context("reading the ring buffer")?;
                process(&mut pipeline, &mut records, &mut sink, &config, &mut stats)?;
            }
            _ = loss_check.tick() => {
                // Forks and exits do not wake the reader (see sensor-ebpf);
                // collect whatever waits, so a watched process's exit is
                // reported within a tick even on an idle host.
                sensor.drain_now(&mut records);
                process(&mut pipeline, &mut records, &mut sink, &config, &mut stats)?;
                report_loss(&sensor, &mut sink, &mut stats, pipeline.hostname())?;
            }
            () = &mut shutdown => break,
        }
    }
    // Drain: whatever the kernel submitted before we stopped still counts.
    sensor.drain_now(&mut records);
    process(&mut pipeline, &mut records, &mut sink, &config, &mut stats)?;
    report_loss(&sensor, &mut sink, &mut stats, pipeline.hostname())?;
    info!(
        events = stats.events,
        alerts = stats.alerts,
        lost = stats.lost,
        decode_errors = sensor.decode_errors(),
        "sigexec stopped"
    );
    Ok(())
}

#[derive(Default)]
struct Stats {
    events: u64,
    alerts: u64,
    lost: u64,
}

fn process(
    pipeline: &mut Pipeline,
    records: &mut Vec<Record>,
    sink: &mut JsonLines,
    config: &Config,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    for rec in records.drain(..) {
        let Some((event, alerts)) = pipeline.handle(&rec) else {
            continue;
        };
        stats.events += 1;
        if config.all_events {
            sink.write(&EventLine {
                kind: "event",
                process: &event,
            })
            .with_context(|| format!("writing to {}", sink.target()))?;
        }
        for alert in &alerts {
            stats.alerts += 1;
            sink.write(alert)
                .with_context(|| format!("writing to {}", sink.target()))?;
        }
    }
    for (_, alerts) in pipeline.take_terminations() {
        for alert in &alerts {
            stats.alerts += 1;
            sink.write(alert)
                .with_context(|| format!("writing to {}", sink.target()))?;
        }
    }
    Ok(())
}

fn report_loss(
    sensor: &Sensor,
    sink: &mut JsonLines,
    stats: &mut Stats,
    hostname: &str,
) -> anyhow::Result<()> {
    let total = match sensor.lost() {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "reading the lost-record counter");
            return Ok(());
        }
    };
    if total > stats.lost {
        let lost = total - stats.lost;
        stats.lost = total;
        warn!(
            lost,
            lost_total = total,
            "kernel dropped exec records (ring buffer full)"
        );
        sink.write(&LossRecord {
            timestamp: crate::process::rfc3339(time::OffsetDateTime::now_utc()),
            kind: "loss",
            lost,
            lost_total: total,
            host: crate::engine::Host {
                hostname: hostname.to_owned(),
            },
            _p: std::marker::PhantomData,
        })
        .with_context(|| format!("writing to {}", sink.target()))?;
    }
    Ok(())
}
