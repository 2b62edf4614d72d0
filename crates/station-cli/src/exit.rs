//! The exit status of `stn`: one table, used by every command (documented in `stn --help` and
//! the README).

use station_core::{ErrorKind, Outcome, StopReason};

/// The task ran and ended as asked.
pub(crate) const DONE: u8 = 0;
/// The task ran and failed (agent error, deadline, a failed check).
pub(crate) const TASK_FAILED: u8 = 1;
/// Bad usage or config: a flag, a config key, an unknown session, input over a limit.
pub(crate) const USAGE: u8 = 2;
/// The backend cannot be reached or started.
pub(crate) const UNAVAILABLE: u8 = 3;
/// The task was stopped by a policy or a budget (today: the agent's turn limit).
pub(crate) const STOPPED_BY_LIMIT: u8 = 4;
/// Interrupted by SIGINT (Ctrl-C); SIGTERM and SIGHUP give 143 and 129 (128 + signal).
pub(crate) const INTERRUPTED: u8 = 130;

/// The table as `stn --help` prints it.
pub(crate) const HELP: &str = "\
Exit status:
  0    done: the task ran and succeeded
  1    the task ran and failed
  2    usage or config error (bad flag, config key, unknown session, input over a limit)
  3    backend unavailable (not reachable, not installed, did not start)
  4    stopped by policy or budget (e.g. the agent's turn limit)
  130  interrupted (SIGINT); SIGTERM 143, SIGHUP 129";

/// The status for a task that ran to an outcome.
pub(crate) fn for_outcome(outcome: &Outcome) -> u8 {
    if outcome.success {
        return DONE;
    }
    match outcome.stop_reason {
        // A turn limit is a budget the user set (`max_turns`).
        StopReason::MaxTurns | StopReason::BudgetExceeded => STOPPED_BY_LIMIT,
        _ => TASK_FAILED,
    }
}

/// The status for an error that stopped a command before or instead of an outcome.
pub(crate) fn for_error(err: &anyhow::Error) -> u8 {
    let Some(kind) = err
        .chain()
        .find_map(|e| e.downcast_ref::<station_core::Error>())
        .map(station_core::Error::kind)
    else {
        return TASK_FAILED;
    };
    for_error_kind(kind)
}

/// The status for an error of `kind`.
pub(crate) fn for_error_kind(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Config
        | ErrorKind::NotFound
        | ErrorKind::AmbiguousSession
        | ErrorKind::NotSupported
        | ErrorKind::Auth => USAGE,
        ErrorKind::Unavailable => UNAVAILABLE,
        ErrorKind::Cancelled => INTERRUPTED,
        _ => TASK_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_their_status() {
        assert_eq!(
            for_outcome(&Outcome::new(true, StopReason::Completed)),
            DONE
        );
        assert_eq!(
            for_outcome(&Outcome::failed(StopReason::Error, "x")),
            TASK_FAILED
        );
        assert_eq!(
            for_outcome(&Outcome::failed(StopReason::Timeout, "x")),
            TASK_FAILED
        );
        assert_eq!(
            for_outcome(&Outcome::failed(StopReason::MaxTurns, "x")),
            STOPPED_BY_LIMIT
        );
        assert_eq!(
            for_outcome(&Outcome::failed(StopReason::BudgetExceeded, "x")),
            STOPPED_BY_LIMIT
        );
    }

    #[test]
    fn errors_map_through_context() {
        let err = anyhow::Error::from(station_core::Error::config("bad")).context("loading");
        assert_eq!(for_error(&err), USAGE);
        let err = anyhow::Error::from(station_core::Error::Unavailable {
            backend: "opencode".into(),
            message: "down".into(),
        });
        assert_eq!(for_error(&err), UNAVAILABLE);
        assert_eq!(for_error(&anyhow::anyhow!("other")), TASK_FAILED);
    }
}
