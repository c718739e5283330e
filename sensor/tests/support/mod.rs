//! Shared harness for the tests that load the eBPF program on the running
//! kernel. They need root; off CI they skip with a printed reason, under
//! `CI=true` a machine that cannot load them is a failure.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use sensor::{
    capture::{Options, Sensor},
    daemon::Pipeline,
    engine::{Alert, Engine},
    process::{Enricher, ProcessCreate},
    rules,
};

/// The seed rule (SigmaHQ's).
pub const KESL_RULE: &str = "36388120-b3f1-4ce9-b50b-280d9a7f4c04";
/// The pack's service-manager rule (`rules/kesl/`), which also fires on
/// `systemctl stop kesl`.
pub const SERVICE_STOP_RULE: &str = "4bc4b942-1d01-4251-9a3c-f994c90c6e63";

/// `None` (after printing why) when this machine cannot run eBPF tests and
/// we are not on CI.
pub fn ebpf_allowed(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    let reason = "not root: loading eBPF needs CAP_BPF and CAP_PERFMON";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {reason} (CI=true: skipping is a failure)");
    }
    eprintln!("eBPF test skipped: {test}: {reason}");
    false
}

pub struct Harness {
    pub runtime: tokio::runtime::Runtime,
    pub sensor: Sensor,
    pub pipeline: Pipeline,
}

/// One captured exec with the alerts it raised.
pub struct Seen {
    pub event: ProcessCreate,
    pub alerts: Vec<Alert>,
}

impl Harness {
    pub fn start(options: &Options) -> Harness {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let sensor = {
            let _guard = runtime.enter();
            Sensor::start(options).expect("sensor loads and attaches")
        };
        let loaded = rules::load(true, &[]);
        assert!(
            loaded.errors.is_empty(),
            "bundled rules: {:?}",
            loaded.errors
        );
        let engine = Engine::new(std::sync::Arc::new(loaded.rules));
        let mut pipeline = Pipeline::new(engine, Enricher::new());
        pipeline.set_full_events(true);
        Harness {
            runtime,
            sensor,
            pipeline,
        }
    }

    /// Runs an exec with a unique argv as a marker, then collects every
    /// event up to it. Everything exec'd (and waited for) before the call
    /// is in the result: the ring buffer keeps submission order.
    pub fn collect(&mut self) -> Vec<Seen> {
        let marker = format!(
            "sigexec-test-marker-{}-{:?}",
            std::process::id(),
            Instant::now()
        );
        let status = Command::new("/bin/true")
            .arg(&marker)
            .status()
            .expect("run marker");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        let mut records = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "marker exec not seen within 20 s");
            let read = self.runtime.block_on(async {
                tokio::time::timeout(left, self.sensor.read(&mut records, 4096)).await
            });
            read.expect("marker exec not seen within 20 s")
                .expect("ring buffer read");
            for rec in records.drain(..) {
                let Some((event, alerts)) = self.pipeline.handle(&rec) else {
                    continue;
                };
                let done = event.argv.last().is_some_and(|a| *a == marker);
                seen.push(Seen { event, alerts });
                if done {
                    return seen;
                }
            }
        }
    }
}

/// The events of the given pids.
pub fn of_pids<'a>(seen: &'a [Seen], pids: &HashSet<u32>) -> Vec<&'a Seen> {
    seen.iter()
        .filter(|s| pids.contains(&s.event.process_id))
        .collect()
}

/// A copy of `/bin/true` at `dir/bin/<name>`: a harmless stand-in that is
/// named like a real tool (never touch a real service).
pub fn fake_tool(dir: &Path, name: &str) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    let path = bin.join(name);
    // Copied by a `cp` process, not by this one: a test binary runs tests
    // on several threads, and a child another thread forks while this
    // thread holds the copy open for writing inherits that descriptor
    // until it execs, so exec'ing the copy would fail with ETXTBSY.
    let copied = Command::new("cp")
        .arg("/bin/true")
        .arg(&path)
        .status()
        .expect("run cp");
    assert!(copied.success(), "cp /bin/true {}", path.display());
    path
}

/// A temporary directory with its canonical path (the kernel reports
/// resolved paths; /tmp may be a symlink).
pub fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().canonicalize().expect("canonical tempdir");
    (dir, path)
}

/// The rule ids of these alerts, sorted.
pub fn rule_ids(alerts: &[Alert]) -> Vec<String> {
    let mut ids: Vec<String> = alerts
        .iter()
        .map(|a| a.rule.id.clone().unwrap_or_default())
        .collect();
    ids.sort();
    ids
}
