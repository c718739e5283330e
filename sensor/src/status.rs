//! `sigexec status`: the daemon's counters as one JSON object over a Unix
//! socket that only root may use (the socket is 0600 in a 0700 directory,
//! and the peer's uid is checked as well).

use std::{
    collections::BTreeMap,
    io::{self, Read as _},
    os::unix::fs::PermissionsExt as _,
    path::Path,
};

use serde::{Deserialize, Serialize};

/// What `sigexec status` prints and the stats log record carries.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Status {
    pub uptime_secs: u64,
    pub events: u64,
    /// Over the last stats interval (or since start, before the first).
    pub events_per_second: f64,
    pub lost: u64,
    pub alerts: u64,
    /// Alerts per rule (id, or title for rules without one), before the
    /// rate limit.
    pub alerts_by_rule: BTreeMap<String, u64>,
    /// Alerts dropped by the rate limit.
    pub alerts_suppressed: u64,
    /// Alerts an exclusion marked `suppressed_by` (expected stops), not
    /// counted in `alerts`; per filter below.
    #[serde(default)]
    pub alerts_excluded: u64,
    #[serde(default)]
    pub alerts_excluded_by_filter: BTreeMap<String, u64>,
    pub process_table: usize,
    pub rules: usize,
    pub reloads: u64,
    pub reload_failures: u64,
    pub sinks: Vec<crate::sinks::SinkStats>,
    /// Prevention, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prevent: Option<PreventStatus>,
}

/// `sigexec status`'s `prevent` member.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct PreventStatus {
    /// What the kernel does now: `enforce`, `dry-run` or `off`.
    pub mode: String,
    /// What the config asked for.
    pub configured_mode: crate::prevent::Mode,
    pub rules: Vec<String>,
    /// Execs killed, and matched but not killed in dry-run, since start.
    pub kills: u64,
    pub would_kill: u64,
    /// The kill-rate breaker switched an enforcing host to dry-run.
    pub breaker_tripped: bool,
    pub max_kills: u32,
    pub window_secs: u64,
}

/// Binds the status socket. An existing socket that answers belongs to a
/// running daemon and is left alone (an error); a stale one is replaced.
pub fn bind(path: &Path) -> io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another sigexec answers on it",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Writes `status` to `stream` if the peer is root.
pub async fn serve(mut stream: tokio::net::UnixStream, body: Vec<u8>) {
    use tokio::io::AsyncWriteExt as _;
    let root = stream.peer_cred().is_ok_and(|c| c.uid() == 0);
    let reply = if root {
        body
    } else {
        b"{\"error\":\"sigexec status is for root only\"}\n".to_vec()
    };
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
}

/// The client side: the daemon's JSON text.
pub fn query(path: &Path) -> io::Result<String> {
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

/// The Prometheus text exposition (format 0.0.4) of `s`.
pub fn prometheus(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP sigexec_{name} {help}");
        let _ = writeln!(out, "# TYPE sigexec_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "sigexec_{name}{labels} {value}");
        }
    };
    let one = |v: String| vec![(String::new(), v)];
    metric(
        "events_total",
        "counter",
        "Exec events processed.",
        &one(s.events.to_string()),
    );
    metric(
        "lost_total",
        "counter",
        "Records the kernel dropped (ring buffer full).",
        &one(s.lost.to_string()),
    );
    metric(
        "alerts_total",
        "counter",
        "Alerts by rule, before the rate limit.",
        &s.alerts_by_rule
            .iter()
            .map(|(rule, n)| (format!("{{rule=\"{}\"}}", escape(rule)), n.to_string()))
            .collect::<Vec<_>>(),
    );
    metric(
        "alerts_suppressed_total",
        "counter",
        "Alerts held back by the rate limit.",
        &one(s.alerts_suppressed.to_string()),
    );
    metric(
        "alerts_excluded_total",
        "counter",
        "Alerts an exclusion marked suppressed_by (expected stops), by filter; not in \
         alerts_total.",
        &s.alerts_excluded_by_filter
            .iter()
            .map(|(f, n)| (format!("{{filter=\"{}\"}}", escape(f)), n.to_string()))
            .collect::<Vec<_>>(),
    );
    metric(
        "process_table",
        "gauge",
        "Processes in the process table.",
        &one(s.process_table.to_string()),
    );
    metric("rules", "gauge", "Rules loaded.", &one(s.rules.to_string()));
    metric(
        "reloads_total",
        "counter",
        "Successful reloads.",
        &one(s.reloads.to_string()),
    );
    metric(
        "reload_failures_total",
        "counter",
        "Failed reloads.",
        &one(s.reload_failures.to_string()),
    );
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since start.",
        &one(s.uptime_secs.to_string()),
    );
    metric(
        "sink_dropped_total",
        "counter",
        "Messages a sink dropped (backlog full or writes failing).",
        &s.sinks
            .iter()
            .map(|k| {
                (
                    format!("{{sink=\"{}\"}}", escape(&k.name)),
                    k.dropped.to_string(),
                )
            })
            .collect::<Vec<_>>(),
    );
    out
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Answers one HTTP request, whatever it asks, with `body`.
pub async fn serve_prometheus(mut stream: tokio::net::TcpStream, body: String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // Read the request head (up to a blank line or 8 KiB) before answering.
    let mut req = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    if read.is_err() {
        return;
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_help_type_and_labelled_samples() {
        let mut s = Status {
            events: 7,
            rules: 2,
            ..Status::default()
        };
        s.alerts_by_rule.insert("r\"1".into(), 3);
        let text = prometheus(&s);
        assert!(
            text.contains("# TYPE sigexec_events_total counter\nsigexec_events_total 7\n"),
            "{text}"
        );
        assert!(
            text.contains("sigexec_alerts_total{rule=\"r\\\"1\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("sigexec_rules 2\n"), "{text}");
    }
}
