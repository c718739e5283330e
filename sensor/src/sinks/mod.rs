//! Alert sinks: where alerts, events and the daemon's own records go.
//!
//! Each configured sink runs on its own thread behind a bounded queue, so a
//! sink that blocks or fails (disk full, collector down) never stops the
//! others or the capture: when its queue is full the message is dropped
//! for that sink only and counted; the daemon logs the counts. A thread,
//! not a tokio task, because every sink does blocking I/O (`write(2)`,
//! `fsync(2)`, a TCP connect) and a dedicated thread is the simplest way to
//! keep that off the async workers.
//!
//! Every message is serialised once (shared through an `Arc`) and written
//! with a single `write` per line or datagram, so a line is never split or
//! interleaved, whatever bytes argv held (serde_json escapes control
//! characters and newlines).
//!
//! - [`json`]: JSON lines to stdout or a file (`O_APPEND`, reopened on
//!   SIGHUP for logrotate, fsync policy).
//! - [`syslog`]: RFC 5424 to `/dev/log`, UDP or TCP (octet counting).
//! - [`asim`]: the Microsoft Sentinel ASIM `imProcessCreate` shape.
//! - [`ratelimit`]: per-rule token buckets in front of all sinks.

pub mod asim;
pub mod json;
pub mod ratelimit;
pub mod syslog;

use std::{
    io,
    path::PathBuf,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, RecvTimeoutError, SyncSender, TrySendError},
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

pub use json::JsonLines;
pub use ratelimit::{Limiter, RateLimit};

use crate::{engine::Alert, process::ProcessCreate};

/// One sink as configured (`sinks:` in the config file). Flat rather than
/// an internally tagged enum so that serde's `deny_unknown_fields` works.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    #[serde(rename = "type")]
    pub kind: SinkKind,
    #[serde(default)]
    pub format: Format,
    /// `file`: the file to append to.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `file`: when to fsync.
    #[serde(default)]
    pub fsync: Fsync,
    /// `syslog`: `unix` (default), `udp` or `tcp`.
    #[serde(default)]
    pub transport: Transport,
    /// `syslog`: socket path for `unix` (default `/dev/log`), `host:port`
    /// for `udp` and `tcp`.
    #[serde(default)]
    pub address: Option<String>,
    /// `syslog`: facility name (`auth`, `authpriv`, `daemon`, `local0`..).
    #[serde(default = "default_facility")]
    pub facility: String,
    /// Messages queued for this sink before new ones are dropped.
    #[serde(default = "default_backlog")]
    pub backlog: usize,
}

fn default_facility() -> String {
    "auth".into()
}

fn default_backlog() -> usize {
    4096
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            kind: SinkKind::Stdout,
            format: Format::Json,
            path: None,
            fsync: Fsync::Never,
            transport: Transport::Unix,
            address: None,
            facility: default_facility(),
            backlog: default_backlog(),
        }
    }
}

impl SinkConfig {
    /// JSON lines appended to `path` (`--output`).
    pub fn file(path: PathBuf) -> SinkConfig {
        SinkConfig {
            kind: SinkKind::File,
            path: Some(path),
            ..SinkConfig::default()
        }
    }

    /// What is wrong with this sink's keys, if anything.
    pub fn validate(&self) -> Result<(), String> {
        if self.backlog == 0 {
            return Err("backlog: must be at least 1".into());
        }
        match self.kind {
            SinkKind::File if self.path.is_none() => Err("type file needs `path`".into()),
            SinkKind::Syslog => {
                syslog::facility(&self.facility).ok_or_else(|| {
                    format!(
                        "facility: unknown facility '{}' (one of {})",
                        self.facility,
                        syslog::FACILITIES.join(", ")
                    )
                })?;
                if self.transport != Transport::Unix && self.address.is_none() {
                    return Err("syslog over udp or tcp needs `address: host:port`".into());
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A short name for logs: `file:/var/log/x`, `syslog+tcp:host:514`.
    pub fn name(&self) -> String {
        match self.kind {
            SinkKind::Stdout => "stdout".into(),
            SinkKind::File => format!(
                "file:{}",
                self.path
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display()
            ),
            SinkKind::Syslog => format!(
                "syslog+{}:{}",
                match self.transport {
                    Transport::Unix => "unix",
                    Transport::Udp => "udp",
                    Transport::Tcp => "tcp",
                },
                self.address.as_deref().unwrap_or(syslog::DEV_LOG)
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Stdout,
    File,
    Syslog,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The alert as sigexec writes it (Sysmon field names under `process`).
    #[default]
    Json,
    /// Sentinel ASIM `imProcessCreate`; only alerts and events are written.
    Asim,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Leave it to the kernel (a crash may lose the last seconds).
    #[default]
    Never,
    /// `fdatasync` after every line: an alert is on disk before the next.
    Always,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Unix,
    Udp,
    Tcp,
}

/// What travels to the sinks.
pub enum Body {
    Alert(Box<Alert>),
    Event(Box<ProcessCreate>),
    /// The daemon's own records (loss, rate-limit summary), `kind` inside.
    Record(serde_json::Value),
}

/// One message, serialised at most once per format, shared by all sinks.
pub struct Message {
    pub body: Body,
    json: OnceLock<String>,
}

#[derive(Serialize)]
struct EventLine<'a> {
    kind: &'static str,
    process: &'a ProcessCreate,
}

impl Message {
    pub fn new(body: Body) -> Arc<Message> {
        Arc::new(Message {
            body,
            json: OnceLock::new(),
        })
    }

    /// `alert`, `event`, or the record's own `kind`.
    pub fn kind(&self) -> &str {
        match &self.body {
            Body::Alert(_) => "alert",
            Body::Event(_) => "event",
            Body::Record(v) => v["kind"].as_str().unwrap_or("record"),
        }
    }

    /// The rule level of an alert.
    pub fn level(&self) -> Option<&str> {
        match &self.body {
            Body::Alert(a) => a.rule.level.as_deref(),
            _ => None,
        }
    }

    /// The sigexec JSON line (without the newline).
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| {
            let r = match &self.body {
                Body::Alert(a) => serde_json::to_string(a),
                Body::Event(e) => serde_json::to_string(&EventLine {
                    kind: "event",
                    process: e,
                }),
                Body::Record(v) => serde_json::to_string(v),
            };
            // Serialising these types cannot fail: string keys, no maps
            // with non-string keys, no user Serialize impls.
            r.unwrap_or_default()
        })
    }

    /// The text this sink's format gives, `None` when it skips the message.
    pub fn render(&self, format: Format) -> Option<String> {
        match format {
            Format::Json => Some(self.json().to_owned()),
            Format::Asim => asim::render(self),
        }
    }
}

/// Where a sink thread writes bytes; built by [`open`].
trait Output: Send {
    /// Writes one rendered message (no trailing newline) in one go.
    fn write(&mut self, text: &str, msg: &Message) -> io::Result<()>;
    /// Closes and reopens the target (SIGHUP, or after a failure).
    fn reopen(&mut self) -> io::Result<()>;
    /// Flush and sync at shutdown.
    fn finish(&mut self) -> io::Result<()>;
}

/// One running sink: its queue, its counters and its thread.
struct Running {
    name: String,
    config: SinkConfig,
    tx: Option<SyncSender<Arc<Message>>>,
    dropped: Arc<AtomicU64>,
    dropped_reported: u64,
    reopen: Arc<AtomicBool>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// All configured sinks.
pub struct Sinks {
    running: Vec<Running>,
}

/// Per-sink drop counts, for stats.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SinkStats {
    pub name: String,
    pub dropped: u64,
}

impl Sinks {
    /// Opens every sink (files are opened here, so a bad path fails the
    /// start or the reload; network sinks connect on their thread) and
    /// starts their threads.
    pub fn start(configs: &[SinkConfig]) -> anyhow::Result<Sinks> {
        let mut outputs = Vec::with_capacity(configs.len());
        for c in configs {
            let output = open(c).map_err(|e| anyhow::anyhow!("sink {}: {e}", c.name()))?;
            outputs.push(output);
        }
        let running = configs
            .iter()
            .zip(outputs)
            .map(|(c, output)| spawn(c.clone(), output))
            .collect();
        Ok(Sinks { running })
    }

    pub fn configs(&self) -> Vec<SinkConfig> {
        self.running.iter().map(|r| r.config.clone()).collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.running.iter().map(|r| r.name.clone()).collect()
    }

    /// Queues `msg` on every sink; a full queue drops it for that sink.
    pub fn send(&self, msg: &Arc<Message>) {
        for r in &self.running {
            let Some(tx) = &r.tx else { continue };
            match tx.try_send(Arc::clone(msg)) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    r.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Asks every sink to reopen its target before its next write.
    pub fn reopen(&self) {
        for r in &self.running {
            r.reopen.store(true, Ordering::Relaxed);
        }
    }

    /// Logs drops since the last call, one warning per sink that dropped.
    pub fn report_drops(&mut self) {
        for r in &mut self.running {
            let total = r.dropped.load(Ordering::Relaxed);
            if total > r.dropped_reported {
                warn!(
                    sink = %r.name,
                    dropped = total - r.dropped_reported,
                    dropped_total = total,
                    "sink dropped messages (backlog full or writes failing)"
                );
                r.dropped_reported = total;
            }
        }
    }

    pub fn stats(&self) -> Vec<SinkStats> {
        self.running
            .iter()
            .map(|r| SinkStats {
                name: r.name.clone(),
                dropped: r.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Closes every queue and waits until each sink has written its
    /// backlog and flushed, or `deadline` passes. Returns the names of the
    /// sinks that did not finish.
    pub async fn close(mut self, deadline: Instant) -> Vec<String> {
        for r in &mut self.running {
            r.tx = None;
        }
        let mut late = Vec::new();
        for r in &mut self.running {
            let Some(done) = r.done.take() else { continue };
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, done).await.is_err() {
                late.push(r.name.clone());
            }
        }
        self.report_drops();
        late
    }
}

fn open(c: &SinkConfig) -> io::Result<Box<dyn Output>> {
    Ok(match c.kind {
        SinkKind::Stdout => Box::new(JsonLines::stdout()),
        SinkKind::File => {
            let path = c
                .path
                .as_deref()
                .ok_or_else(|| io::Error::other("no path"))?;
            Box::new(JsonLines::append(path, c.fsync)?)
        }
        SinkKind::Syslog => Box::new(syslog::Syslog::new(c)?),
    })
}

/// How long a failing sink waits before trying its target again; messages
/// in between are dropped and counted.
const RETRY: Duration = Duration::from_secs(1);

fn spawn(config: SinkConfig, mut output: Box<dyn Output>) -> Running {
    let (tx, rx) = mpsc::sync_channel::<Arc<Message>>(config.backlog);
    let dropped = Arc::new(AtomicU64::new(0));
    let reopen = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let name = config.name();
    let format = config.format;
    {
        let dropped = Arc::clone(&dropped);
        let reopen = Arc::clone(&reopen);
        let sink = name.clone();
        let spawned = std::thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
                let mut failing_since: Option<Instant> = None;
                loop {
                    let msg = match rx.recv_timeout(Duration::from_secs(1)) {
                        Ok(m) => Some(m),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    };
                    if reopen.swap(false, Ordering::Relaxed) {
                        match output.reopen() {
                            Ok(()) => info!(sink = %sink, "sink reopened"),
                            Err(e) => error!(sink = %sink, error = %e, "reopening sink"),
                        }
                    }
                    let Some(msg) = msg else { continue };
                    let Some(text) = msg.render(format) else {
                        continue;
                    };
                    if let Some(since) = failing_since {
                        if since.elapsed() < RETRY {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        // Try again from a fresh connection or file.
                        let _ = output.reopen();
                    }
                    match output.write(&text, &msg) {
                        Ok(()) => {
                            if failing_since.take().is_some() {
                                info!(sink = %sink, "sink recovered");
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                            // This message only: the sink itself is fine.
                            dropped.fetch_add(1, Ordering::Relaxed);
                            warn!(sink = %sink, kind = msg.kind(), error = %e, "message dropped");
                        }
                        Err(e) => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            if failing_since.is_none() {
                                error!(sink = %sink, error = %e, "sink write failed; dropping until it recovers");
                            }
                            failing_since = Some(Instant::now());
                        }
                    }
                }
                if let Err(e) = output.finish() {
                    error!(sink = %sink, error = %e, "flushing sink");
                }
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            error!(sink = %name, error = %e, "starting sink thread");
        }
    }
    Running {
        name,
        config,
        tx: Some(tx),
        dropped,
        dropped_reported: 0,
        reopen,
        done: Some(done_rx),
    }
}
