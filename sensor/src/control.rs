//! Signals as one control stream (vector's `src/signal.rs`): SIGTERM and
//! SIGINT ask for a graceful stop, a second one for an immediate stop;
//! SIGHUP asks for a reload. The daemon reads [`Control`]s and never sees
//! a signal number.

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

/// What the operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// SIGHUP: re-read config and rules, reopen sinks.
    Reload,
    /// First SIGTERM or SIGINT: stop reading, drain, flush, exit 0.
    Shutdown(&'static str),
    /// A second SIGTERM or SIGINT while stopping: exit now.
    StopNow(&'static str),
}

/// Installs the handlers (inside a tokio runtime) and returns the stream.
/// Handlers are installed before this returns, so a signal sent after it
/// is never lost to the default action.
pub fn signals() -> std::io::Result<mpsc::UnboundedReceiver<Control>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stopping = false;
        loop {
            let name = tokio::select! {
                Some(()) = term.recv() => "SIGTERM",
                Some(()) = int.recv() => "SIGINT",
                Some(()) = hup.recv() => {
                    if tx.send(Control::Reload).is_err() {
                        return;
                    }
                    continue;
                }
                else => return,
            };
            let c = if stopping {
                Control::StopNow(name)
            } else {
                Control::Shutdown(name)
            };
            stopping = true;
            if tx.send(c).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
