//! The daemon's configuration: `/etc/sigexec/config.yaml` (or `--config`)
//! read into [`File`], then merged with the command line in [`resolve`],
//! the one function that produces the [`daemon::Config`] `sigexec run`
//! works with (ripgrep's lowargs -> hiargs). Nothing past it reads flags
//! or the file. SIGHUP calls [`Source::load`] again with the same flags.
//!
//! Every key, with its default, is documented in
//! `packaging/config.example.yaml`; a test parses that file and checks it
//! equals the defaults, so the two cannot drift apart. Unknown keys are an
//! error naming the key, the file and its line:column.
//!
//! [`daemon::Config`]: crate::daemon::Config

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::{capture, cli::RuleSources, daemon, prevent, sinks};

/// Where the config file is looked for when `--config` is not given. Its
/// absence means "all defaults".
pub const DEFAULT_PATH: &str = "/etc/sigexec/config.yaml";
/// Where the admin's rules go.
pub const DEFAULT_RULES_DIR: &str = "/etc/sigexec/rules.d";
/// The `sigexec status` socket.
pub const DEFAULT_STATUS_SOCKET: &str = "/run/sigexec/status.sock";

/// The config file as written. Every struct refuses unknown keys.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct File {
    pub rules: RulesFile,
    pub capture: CaptureFile,
    pub sinks: Option<Vec<sinks::SinkConfig>>,
    pub rate_limit: RateLimitFile,
    pub stats: StatsFile,
    pub alerts: AlertsFile,
    pub watch: WatchFile,
    pub exclusions: crate::exclusions::ExclusionsFile,
    pub prevent: PreventFile,
    pub shutdown_timeout_secs: Option<f64>,
}

/// `prevent:`: in-kernel kill of the execs prevented rules match.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PreventFile {
    /// Ids of loaded rules to prevent; empty: prevention off.
    pub rules: Vec<String>,
    pub mode: prevent::Mode,
    pub allow: PreventAllowFile,
    pub kill_rate: KillRateFile,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PreventAllowFile {
    /// uids or user names whose execs are never killed (still alerted).
    pub users: Vec<crate::process::users::UserRef>,
    /// Resolved image paths: their descendants are never killed.
    pub ancestor_images: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KillRateFile {
    /// Kills per window before the kernel switches to dry-run.
    pub max_kills: u32,
    pub window_secs: u64,
}

impl Default for KillRateFile {
    fn default() -> Self {
        KillRateFile {
            max_kills: 10,
            window_secs: 60,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsFile {
    /// Milliseconds an alert waits for related ones to fold in; 0 writes
    /// every alert at once.
    pub fold_ms: u64,
    /// Level of alerts raised while systemd shuts the host down; "" keeps
    /// the rule's own level (they are still marked `host_state`).
    pub stopping_level: String,
}

impl Default for AlertsFile {
    fn default() -> Self {
        AlertsFile {
            fold_ms: crate::incident::DEFAULT_HOLD.as_millis() as u64,
            stopping_level: "informational".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WatchFile {
    /// Image prefixes whose deaths become process_termination events.
    pub images: Vec<String>,
}

impl Default for WatchFile {
    fn default() -> Self {
        WatchFile {
            images: crate::process::termination::DEFAULT_WATCH
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RulesFile {
    pub bundled: bool,
    pub dirs: Vec<PathBuf>,
}

impl Default for RulesFile {
    fn default() -> Self {
        RulesFile {
            bundled: true,
            dirs: vec![PathBuf::from(DEFAULT_RULES_DIR)],
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureFile {
    pub ringbuf_size: u32,
    pub all_events: bool,
}

impl Default for CaptureFile {
    fn default() -> Self {
        CaptureFile {
            ringbuf_size: capture::DEFAULT_RINGBUF_BYTES,
            all_events: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitFile {
    /// Alerts of one rule let through at once; 0 turns the limit off.
    pub burst: u32,
    /// Alerts of one rule per second, refilled continuously.
    pub per_second: f64,
}

impl Default for RateLimitFile {
    fn default() -> Self {
        RateLimitFile {
            burst: 100,
            per_second: 10.0,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StatsFile {
    /// Seconds between stats records in the log; 0 turns them off.
    pub interval_secs: u64,
    /// Unix socket for `sigexec status`; empty turns it off.
    pub socket: PathBuf,
    /// Prometheus text endpoint, `127.0.0.1:PORT` (loopback only: it has
    /// no authentication); empty (the default) turns it off.
    pub prometheus: String,
}

impl Default for StatsFile {
    fn default() -> Self {
        StatsFile {
            interval_secs: 60,
            socket: PathBuf::from(DEFAULT_STATUS_SOCKET),
            prometheus: String::new(),
        }
    }
}

/// What the command line says about `sigexec run`, kept for every reload.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--config`: the file must exist.
    pub config: Option<PathBuf>,
    /// `--rules`: added to the file's `rules.dirs`.
    pub rules: Vec<PathBuf>,
    pub no_bundled: bool,
    /// `--output`: replaces the file's sinks with one JSON-lines file.
    pub output: Option<PathBuf>,
    pub all_events: bool,
    pub ringbuf_size: Option<u32>,
    pub force_tracepoint: bool,
    pub status_socket: Option<PathBuf>,
}

/// Reads the config file named by `overrides` (or the default one) and
/// resolves it: what the daemon calls at start and on every SIGHUP.
#[derive(Clone, Debug)]
pub struct Source {
    pub overrides: Overrides,
}

impl Source {
    pub fn load(&self) -> Result<daemon::Config, ConfigError> {
        let file = match &self.overrides.config {
            Some(path) => read(path)?,
            None => match std::fs::metadata(DEFAULT_PATH) {
                Ok(_) => read(Path::new(DEFAULT_PATH))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
                Err(e) => {
                    return Err(ConfigError::Read {
                        path: DEFAULT_PATH.into(),
                        source: e,
                    });
                }
            },
        };
        resolve(&self.overrides, file)
    }
}

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `path:line:col: message`, as compilers print it.
    #[error("{}:{line}:{col}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// Parses `path` strictly.
pub fn read(path: &Path) -> Result<File, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parses config text; `path` is only for messages. An empty file is all
/// defaults.
pub fn parse(path: &Path, text: &str) -> Result<File, ConfigError> {
    if text.trim().is_empty() {
        return Ok(File::default());
    }
    serde_yaml::from_str(text).map_err(|e| {
        let (line, col) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let mut message = e.to_string();
        // serde_yaml appends " at line L column C"; we print it up front.
        if let Some(at) = message.find(" at line ") {
            message.truncate(at);
        }
        ConfigError::Parse {
            path: path.to_owned(),
            line,
            col,
            message,
        }
    })
}

/// The one place flags and file meet: flags win.
pub fn resolve(o: &Overrides, file: File) -> Result<daemon::Config, ConfigError> {
    let origin = o
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let invalid = |message: String| ConfigError::Invalid {
        path: origin.clone(),
        message,
    };
    let mut paths = file.rules.dirs;
    paths.extend(o.rules.iter().cloned());
    let sinks = match (&o.output, file.sinks) {
        (Some(path), _) => vec![sinks::SinkConfig::file(path.clone())],
        (None, Some(list)) => list,
        (None, None) => vec![sinks::SinkConfig::default()],
    };
    if sinks.is_empty() {
        return Err(invalid(
            "sinks: the list is empty; alerts would go nowhere (omit the key for stdout)".into(),
        ));
    }
    for (i, s) in sinks.iter().enumerate() {
        s.validate()
            .map_err(|m| invalid(format!("sinks[{i}]: {m}")))?;
    }
    let rate = &file.rate_limit;
    if !(rate.per_second.is_finite() && rate.per_second >= 0.0) {
        return Err(invalid(format!(
            "rate_limit.per_second: {} is not a non-negative number",
            rate.per_second
        )));
    }
    let ringbuf = o.ringbuf_size.unwrap_or(file.capture.ringbuf_size);
    if ringbuf < 4096 || !ringbuf.is_power_of_two() {
        return Err(invalid(format!(
            "capture.ringbuf_size: {ringbuf} is not a power of two of at least 4096"
        )));
    }
    let shutdown = file.shutdown_timeout_secs.unwrap_or(5.0);
    if !(shutdown.is_finite() && shutdown > 0.0 && shutdown <= 600.0) {
        return Err(invalid(format!(
            "shutdown_timeout_secs: {shutdown} is not between 0 and 600"
        )));
    }
    let socket = o.status_socket.clone().unwrap_or(file.stats.socket);
    let prometheus = match file.stats.prometheus.as_str() {
        "" => None,
        text => {
            let addr: std::net::SocketAddr = text.parse().map_err(|_| {
                invalid(format!(
                    "stats.prometheus: '{text}' is not an address like 127.0.0.1:9464"
                ))
            })?;
            if !addr.ip().is_loopback() {
                return Err(invalid(format!(
                    "stats.prometheus: {addr} is not a loopback address (the endpoint has no \
                     authentication; use 127.0.0.1 or [::1])"
                )));
            }
            Some(addr)
        }
    };
    let levels = ["informational", "low", "medium", "high", "critical"];
    let stopping_level = match file.alerts.stopping_level.as_str() {
        "" => None,
        level if levels.contains(&level) => Some(level.to_owned()),
        other => {
            return Err(invalid(format!(
                "alerts.stopping_level: '{other}' is not one of {}",
                levels.join(", ")
            )));
        }
    };
    let exclusions = crate::exclusions::Settings::resolve(file.exclusions).map_err(invalid)?;
    let p = &file.prevent;
    let allow_uids = prevent::resolve_users(&p.allow.users)
        .map_err(|m| invalid(format!("prevent.allow.users: {m}")))?;
    if let Some(bad) = p.allow.ancestor_images.iter().find(|i| !i.starts_with('/')) {
        return Err(invalid(format!(
            "prevent.allow.ancestor_images: '{bad}' is not an absolute path"
        )));
    }
    if p.kill_rate.max_kills == 0 || p.kill_rate.window_secs == 0 {
        return Err(invalid(
            "prevent.kill_rate: max_kills and window_secs must be at least 1".into(),
        ));
    }
    let prevent = prevent::Config {
        rules: p.rules.clone(),
        mode: p.mode,
        allow_uids,
        ancestor_images: p.allow.ancestor_images.clone(),
        max_kills: p.kill_rate.max_kills,
        window: Duration::from_secs(p.kill_rate.window_secs),
    };
    Ok(daemon::Config {
        exclusions,
        prevent,
        fold: Duration::from_millis(file.alerts.fold_ms),
        stopping_level,
        watch: file.watch.images,
        rules: RuleSources {
            bundled: file.rules.bundled && !o.no_bundled,
            paths,
        },
        sinks,
        all_events: o.all_events || file.capture.all_events,
        capture: capture::Options {
            ringbuf_bytes: ringbuf,
            force_tracepoint: o.force_tracepoint,
            prevent: !file.prevent.rules.is_empty(),
        },
        loss_check: Duration::from_secs(1),
        rate_limit: (rate.burst > 0).then_some(sinks::RateLimit {
            burst: rate.burst,
            per_second: rate.per_second,
        }),
        stats_interval: (file.stats.interval_secs > 0)
            .then(|| Duration::from_secs(file.stats.interval_secs)),
        status_socket: (!socket.as_os_str().is_empty()).then_some(socket),
        prometheus,
        shutdown_timeout: Duration::from_secs_f64(shutdown),
    })
}

/// Why a rules path may not be trusted.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing rules from {}: {} {reason}; anyone who can change the rules can blind the sensor \
     (fix: chown root:root and chmod go-w {})",
    path.display(), culprit.display(), culprit.display()
)]
pub struct InsecureRules {
    /// The configured path.
    pub path: PathBuf,
    /// The file or directory (the path or an ancestor) at fault.
    pub culprit: PathBuf,
    pub reason: String,
}

/// Refuses a rules path that a user other than root could change: the
/// path, every file under it, and every ancestor directory must be owned
/// by root and not group- or world-writable. A world-writable ancestor
/// with the sticky bit (`/tmp`) is accepted: there only the owner (root)
/// of our directory can rename or remove it. A missing path is not an
/// error here (the loader reports it, or skips a missing default).
pub fn check_rules_path(path: &Path) -> Result<(), InsecureRules> {
    let Ok(abs) = std::fs::canonicalize(path) else {
        return Ok(());
    };
    let refuse = |culprit: &Path, reason: String| InsecureRules {
        path: path.to_owned(),
        culprit: culprit.to_owned(),
        reason,
    };
    let check = |p: &Path, allow_sticky: bool| -> Result<(), InsecureRules> {
        let meta = std::fs::metadata(p).map_err(|e| refuse(p, format!("cannot be read: {e}")))?;
        if meta.uid() != 0 {
            return Err(refuse(
                p,
                format!("is owned by uid {}, not root", meta.uid()),
            ));
        }
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.mode() & 0o022 != 0 && !(allow_sticky && sticky && meta.is_dir()) {
            return Err(refuse(
                p,
                format!(
                    "is writable by group or others (mode {:o})",
                    meta.mode() & 0o7777
                ),
            ));
        }
        Ok(())
    };
    for ancestor in abs.ancestors().skip(1) {
        check(ancestor, true)?;
    }
    check(&abs, false)?;
    if abs.is_dir() {
        let mut stack = vec![abs];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let p = entry.path();
                check(&p, false)?;
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        parse(Path::new("/etc/sigexec/config.yaml"), text)
            .expect_err("must not parse")
            .to_string()
    }

    #[test]
    fn unknown_key_names_the_key_file_and_position() {
        let msg = parse_err("rules:\n  bundled: true\n  dirz: [/x]\n");
        assert!(
            msg.starts_with("/etc/sigexec/config.yaml:3:3: rules: unknown field `dirz`"),
            "{msg}"
        );
        let msg = parse_err("stats:\n  interval_secs: 10\nsink: []\n");
        assert!(
            msg.starts_with("/etc/sigexec/config.yaml:3:1: unknown field `sink`"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_sink_key_is_an_error() {
        let msg = parse_err("sinks:\n  - type: file\n    path: /x\n    fsycn: always\n");
        assert!(msg.contains("unknown field `fsycn`"), "{msg}");
        assert!(msg.starts_with("/etc/sigexec/config.yaml:"), "{msg}");
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(
            parse(Path::new("x"), "\n# nothing\n").expect("parse"),
            File::default()
        );
    }

    #[test]
    fn shipped_example_documents_exactly_the_defaults() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../packaging/config.example.yaml"
        );
        let file = read(Path::new(path)).expect("example parses");
        let defaults = File {
            sinks: Some(vec![sinks::SinkConfig::default()]),
            shutdown_timeout_secs: Some(5.0),
            ..File::default()
        };
        assert_eq!(file, defaults);
    }

    #[test]
    fn flags_override_the_file() {
        let file = parse(
            Path::new("c.yaml"),
            "rules:\n  bundled: true\n  dirs: [/etc/r]\ncapture:\n  ringbuf_size: 65536\n  all_events: false\nsinks:\n  - type: stdout\n",
        )
        .expect("parse");
        let o = Overrides {
            rules: vec!["/opt/r".into()],
            no_bundled: true,
            output: Some("/var/log/a.jsonl".into()),
            all_events: true,
            ringbuf_size: Some(1 << 20),
            ..Overrides::default()
        };
        let c = resolve(&o, file).expect("resolve");
        assert!(!c.rules.bundled);
        assert_eq!(
            c.rules.paths,
            [PathBuf::from("/etc/r"), PathBuf::from("/opt/r")]
        );
        assert_eq!(
            c.sinks,
            [sinks::SinkConfig::file("/var/log/a.jsonl".into())]
        );
        assert!(c.all_events);
        assert_eq!(c.capture.ringbuf_bytes, 1 << 20);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
    }

    #[test]
    fn bad_values_name_the_key() {
        let file = parse(Path::new("c.yaml"), "capture:\n  ringbuf_size: 5000\n").expect("parse");
        let err = resolve(
            &Overrides {
                config: Some("c.yaml".into()),
                ..Overrides::default()
            },
            file,
        )
        .expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "c.yaml: capture.ringbuf_size: 5000 is not a power of two of at least 4096"
        );
    }

    #[test]
    fn prevent_block_resolves_and_names_bad_values() {
        let o = Overrides {
            config: Some("c.yaml".into()),
            ..Overrides::default()
        };
        let file = parse(
            Path::new("c.yaml"),
            "prevent:\n  rules: [36388120-b3f1-4ce9-b50b-280d9a7f4c04]\n  mode: enforce\n  \
             allow:\n    users: [0, root, 1001]\n    ancestor_images: [/usr/bin/dpkg]\n  \
             kill_rate:\n    max_kills: 3\n    window_secs: 10\n",
        )
        .expect("parse");
        let c = resolve(&o, file).expect("resolve");
        assert_eq!(c.prevent.mode, prevent::Mode::Enforce);
        assert_eq!(c.prevent.allow_uids, [0, 0, 1001]);
        assert_eq!(c.prevent.max_kills, 3);
        assert_eq!(c.prevent.window, Duration::from_secs(10));
        assert!(c.capture.prevent);

        let msg = parse_err("prevent:\n  mode: enforcing\n");
        assert!(
            msg.starts_with(
                "/etc/sigexec/config.yaml:2:9: prevent.mode: unknown variant `enforcing`"
            ),
            "{msg}"
        );
        let msg = parse_err("prevent:\n  allow:\n    uids: [0]\n");
        assert!(
            msg.starts_with("/etc/sigexec/config.yaml:3:5: prevent.allow: unknown field `uids`"),
            "{msg}"
        );
        let file = parse(
            Path::new("c.yaml"),
            "prevent:\n  allow:\n    users: [no-such-user-here]\n",
        )
        .expect("parse");
        assert_eq!(
            resolve(&o, file).expect_err("unknown user").to_string(),
            "c.yaml: prevent.allow.users: 'no-such-user-here' is neither a uid nor a user name \
             known here"
        );
    }

    #[test]
    fn prometheus_endpoint_is_loopback_only() {
        let o = Overrides {
            config: Some("c.yaml".into()),
            ..Overrides::default()
        };
        let file =
            parse(Path::new("c.yaml"), "stats:\n  prometheus: 0.0.0.0:9464\n").expect("parse");
        assert_eq!(
            resolve(&o, file).expect_err("not loopback").to_string(),
            "c.yaml: stats.prometheus: 0.0.0.0:9464 is not a loopback address (the endpoint has \
             no authentication; use 127.0.0.1 or [::1])"
        );
        let file =
            parse(Path::new("c.yaml"), "stats:\n  prometheus: '[::1]:9464'\n").expect("parse");
        assert_eq!(
            resolve(&o, file).expect("loopback").prometheus,
            Some("[::1]:9464".parse().expect("addr"))
        );
    }

    #[test]
    fn rules_dir_writable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: ownership checks need files owned by root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = dir.path().join("rules.d");
        std::fs::create_dir(&rules).expect("mkdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::set_permissions(&rules, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        check_rules_path(&rules).expect("root-owned 0755 under sticky /tmp is fine");

        std::fs::set_permissions(&rules, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = check_rules_path(&rules)
            .expect_err("world-writable")
            .to_string();
        assert!(
            err.contains("is writable by group or others (mode 777)"),
            "{err}"
        );

        std::fs::set_permissions(&rules, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let file = rules.join("a.yml");
        std::fs::write(&file, "title: x\n").expect("write");
        std::os::unix::fs::chown(&file, Some(1000), None).expect("chown");
        let err = check_rules_path(&rules)
            .expect_err("user-owned file")
            .to_string();
        assert!(
            err.contains("a.yml is owned by uid 1000, not root"),
            "{err}"
        );

        std::os::unix::fs::chown(&file, Some(0), None).expect("chown");
        std::os::unix::fs::chown(dir.path(), Some(1000), None).expect("chown");
        let err = check_rules_path(&rules)
            .expect_err("user-owned parent")
            .to_string();
        assert!(err.contains("is owned by uid 1000, not root"), "{err}");
        assert!(
            err.starts_with(&format!("refusing rules from {}", rules.display())),
            "{err}"
        );
    }
}
