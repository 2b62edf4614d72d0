//! Stopping on the signals a terminal, a service manager or a CI runner sends.
//!
//! SIGINT (Ctrl-C), SIGTERM (`kill`, systemd, CI timeouts) and SIGHUP (a closed terminal or SSH
//! session) all mean "stop now, cleanly": every long-running command cancels its work, lets the
//! backends stop it where it runs, and exits. A second signal exits at once (children still
//! die: they get a parent-death signal).

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

/// How long a stopping command waits for its tasks to stop where they run: the runner's grace
/// (10 s) plus time to abort a server's turn or kill a process group.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(15);

/// A signal that asks `stn` to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Interrupt,
    Terminate,
    Hangup,
}

impl Stop {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stop::Interrupt => "SIGINT",
            Stop::Terminate => "SIGTERM",
            Stop::Hangup => "SIGHUP",
        }
    }

    /// The shell's exit status for a process stopped by this signal (128 + number).
    pub(crate) fn exit_code(self) -> u8 {
        128 + match self {
            Stop::Hangup => 1,
            Stop::Interrupt => 2,
            Stop::Terminate => 15,
        }
    }
}

/// Resolves on the first SIGINT, SIGTERM or SIGHUP. Handlers are installed when this is
/// called, so call it before the work starts.
pub(crate) fn stop_requested() -> impl Future<Output = Stop> + Send + 'static {
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut hangup = signal(SignalKind::hangup()).ok();
    async move {
        tokio::select! {
            Some(()) = recv(&mut interrupt) => Stop::Interrupt,
            Some(()) = recv(&mut terminate) => Stop::Terminate,
            Some(()) = recv(&mut hangup) => Stop::Hangup,
        }
    }
}

async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// After the first stop signal, a second one exits at once with its status.
pub(crate) fn exit_on_second_signal() {
    tokio::spawn(async {
        let stop = stop_requested().await;
        crate::output::error_line(&format!("stn: {} again; exiting now", stop.name()));
        crate::telemetry::flush();
        std::process::exit(i32::from(stop.exit_code()));
    });
}
