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
    pub alerts_suppressed: u64,
    pub process_table: usize,
    pub rules: usize,
    pub reloads: u64,
    pub reload_failures: u64,
    pub sinks: Vec<crate::sinks::SinkStats>,
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
